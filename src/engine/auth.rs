//! Client authentication and permissions, when the server runs with an auth table
//! (`Config::auth`, from `--auth-file`): Hello's token names a principal, and produces,
//! subscriptions and status requests are checked against its permissions. Without a table
//! every check passes. docs/security.md states the rules; this file only applies them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{ConnId, Engine, Now, Phase};
use crate::auth_file::AuthTable;
use crate::auth_file::Principal;
use crate::protocol::{ChannelBinding, ErrorCode};
use crate::storage::Log;

/// Failed handshakes per source address, each in its own one-second window of the monotonic
/// clock, so that a guesser from one address is capped without locking out the others. The
/// table holds at most `auth_failure_sources_max` addresses; an entry whose window ended is
/// dropped when room is needed. While the table is full of addresses that failed this
/// second, the failures of every other address share one `overflow` window (so an attacker
/// with more addresses than the table still gets at most `sources_max + 1` windows' worth of
/// guesses a second, and only untracked addresses can be held up by it).
#[derive(Debug, Default)]
pub(super) struct AuthFailures {
    sources: HashMap<Source, FailureWindow>,
    overflow: FailureWindow,
}

/// Where failed handshakes are counted: an IPv4 address, an IPv6 /64 (what one host or
/// customer usually holds), or unknown (no address was reported) and shared. Kept as numbers:
/// the engine names no socket type but `SocketAddr` (tests/architecture.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Prefix(u64),
    Unknown,
}

impl Source {
    fn of(addr: Option<SocketAddr>) -> Source {
        match addr {
            Some(SocketAddr::V4(addr)) => Source::V4(u32::from(*addr.ip())),
            Some(SocketAddr::V6(addr)) => match addr.ip().to_ipv4_mapped() {
                Some(ip) => Source::V4(u32::from(ip)),
                None => Source::V6Prefix((addr.ip().to_bits() >> 64) as u64),
            },
            None => Source::Unknown,
        }
    }
}

/// Failed handshakes from one source in its current one-second window.
#[derive(Debug, Default, Clone, Copy)]
struct FailureWindow {
    start_ms: u64,
    count: u32,
    /// Hellos refused unchecked in this window because the cap was reached.
    refused_unchecked: u64,
}

impl FailureWindow {
    /// Starts a new window when this one has ended, saying how many Hellos it refused
    /// unchecked.
    fn roll(&mut self, now_ms: u64, source: &dyn std::fmt::Display, cap: u32) {
        if now_ms.saturating_sub(self.start_ms) < WINDOW_MS {
            return;
        }
        if self.refused_unchecked > 0 {
            log::warn!(
                "{} more handshakes from {source} refused unchecked: over {cap} failed handshakes a second",
                self.refused_unchecked,
            );
        }
        *self = FailureWindow {
            start_ms: now_ms,
            ..FailureWindow::default()
        };
    }

    fn is_live(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.start_ms) < WINDOW_MS
    }
}

impl AuthFailures {
    /// The window that counts `source`'s failures: its own, a new one when the table has
    /// room (after dropping ended windows if it is full), or the shared overflow window.
    fn window(&mut self, source: Source, now_ms: u64, sources_max: usize) -> &mut FailureWindow {
        if !self.sources.contains_key(&source) && self.sources.len() >= sources_max {
            self.sources.retain(|_, window| window.is_live(now_ms));
        }
        if self.sources.contains_key(&source) || self.sources.len() < sources_max {
            return self.sources.entry(source).or_insert(FailureWindow {
                start_ms: now_ms,
                ..FailureWindow::default()
            });
        }
        &mut self.overflow
    }

    /// Failed handshakes counted so far in `source`'s current window (0 without one).
    fn current(&self, source: Source, now_ms: u64, sources_max: usize) -> u32 {
        let window = match self.sources.get(&source) {
            Some(window) => window,
            None if self.sources.len() >= sources_max
                && self.sources.values().all(|w| w.is_live(now_ms)) =>
            {
                &self.overflow
            }
            None => return 0,
        };
        if window.is_live(now_ms) {
            window.count
        } else {
            0
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(ip) => {
                let [a, b, c, d] = ip.to_be_bytes();
                write!(f, "{a}.{b}.{c}.{d}")
            }
            Source::V6Prefix(prefix) => {
                let group = |shift: u32| (prefix >> shift) & 0xFFFF;
                write!(
                    f,
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    group(48),
                    group(32),
                    group(16),
                    group(0)
                )
            }
            Source::Unknown => write!(f, "an unknown address"),
        }
    }
}

const WINDOW_MS: u64 = 1000;

impl<L: Log> Engine<L> {
    /// The reactor's note of a new connection's address, for the log of a refused handshake.
    pub fn handle_peer_addr(&mut self, conn: ConnId, addr: SocketAddr) {
        if let Some(connection) = self.conn_mut(conn) {
            connection.peer_addr = Some(addr);
        }
    }

    /// The reactor's note that the connection runs over TLS, with the value both ends export
    /// from the session (protocol.md section 15, "Channel binding"). Given once, after the TLS
    /// handshake and before the connection's first input; peer proofs on it are bound to it.
    pub fn handle_channel_binding(&mut self, conn: ConnId, binding: ChannelBinding) {
        if let Some(connection) = self.conn_mut(conn) {
            connection.channel_binding = Some(binding);
        }
    }

    /// A new auth table (the auth file was reloaded). New handshakes use it. An open client
    /// connection keeps going with the new permissions of its principal when the table still
    /// has a principal of that name with the same token; otherwise (the principal was
    /// removed or its token changed: a revocation) it is closed with AuthFailed.
    pub fn handle_auth_reload(&mut self, now: Now, table: Arc<AuthTable>) {
        self.observe_time(now);
        let mut revoked = Vec::new();
        for connection in self.conns.iter_mut().flatten() {
            let Phase::Client(client) = &mut connection.phase else {
                continue;
            };
            let current = client.principal.as_ref().and_then(|old| {
                table
                    .principals()
                    .iter()
                    .find(|new| new.name == old.name && new.token_hash == old.token_hash)
            });
            match current {
                Some(principal) => client.principal = Some(Arc::clone(principal)),
                None => revoked.push(connection.id),
            }
        }
        log::info!(
            "auth table reloaded: {} principals; {} connections closed as their token is no longer valid",
            table.principals().len(),
            revoked.len()
        );
        self.config.limits.auth = Some(table);
        // Closed at the end of the turn, after any replies they are owed.
        for conn in revoked {
            self.close_with_error(conn, ErrorCode::AuthFailed, "the token was revoked");
        }
        self.debug_check_invariants();
    }

    /// Checks Hello's token. On success returns the principal for the client connection
    /// (`None` on a server without an auth table); on failure returns the message of the
    /// AuthFailed error that closes it.
    pub(super) fn authenticate(
        &mut self,
        conn: ConnId,
        token: &[u8],
    ) -> Result<Option<Arc<Principal>>, String> {
        let Some(auth) = self.config.auth.clone() else {
            return Ok(None);
        };
        let now_ms = self.now_ms;
        let cap = self.config.auth_failures_per_second_max;
        let sources_max = self.config.auth_failure_sources_max;
        let source = Source::of(self.conn(conn).and_then(|c| c.peer_addr));
        // Past the cap every Hello from the source is refused without looking at its token:
        // checking it would give a guesser more tries. Legitimate clients retry after the
        // second ends; other addresses are not held up.
        if self.auth_failures.current(source, now_ms, sources_max) >= cap {
            let window = self.auth_failures.window(source, now_ms, sources_max);
            window.refused_unchecked += 1;
            return Err("too many failed handshakes from this address; retry in a second".into());
        }
        let address = self.peer_description(conn);
        match auth.authenticate(token) {
            Some(principal) => {
                log::debug!("{conn} from {address}: authenticated as {}", principal.name);
                Ok(Some(principal))
            }
            None => {
                let window = self.auth_failures.window(source, now_ms, sources_max);
                window.roll(now_ms, &source, cap);
                window.count += 1;
                let what = if token.is_empty() { "no" } else { "an unknown" };
                log::warn!("{conn} from {address}: handshake refused: {what} auth token");
                // Said to the client's user, who cannot act on the server's --auth-file.
                Err(format!(
                    "{what} auth token; this server requires a principal's token (flo-client: FLO_TOKEN or --token; ask the server's operator for one)"
                ))
            }
        }
    }

    pub(in crate::engine) fn peer_description(&self, conn: ConnId) -> String {
        match self.conn(conn).and_then(|c| c.peer_addr) {
            Some(addr) => addr.to_string(),
            None => "an unknown address".into(),
        }
    }

    /// The principal of an open client connection, when the server has an auth table.
    pub(super) fn principal(&self, conn: ConnId) -> Option<&Arc<Principal>> {
        self.conn(conn)?.client()?.principal.as_ref()
    }

    /// Whether the connection's principal may produce to `namespace`.
    pub(super) fn check_produce(
        &self,
        conn: ConnId,
        namespace: &str,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(principal) = self.principal(conn) else {
            return Ok(());
        };
        if principal.may_produce(namespace) {
            return Ok(());
        }
        let message = format!(
            "{} may not produce to {namespace:?}; it may produce to {}",
            principal.name,
            describe_permissions(&principal.produce)
        );
        Err((ErrorCode::PermissionDenied, message))
    }

    /// Whether every namespace `glob` matches is one the connection's principal may consume.
    /// A glob wider than the permissions is refused, not narrowed (docs/security.md).
    pub(super) fn check_consume(&self, conn: ConnId, glob: &str) -> Result<(), String> {
        let Some(principal) = self.principal(conn) else {
            return Ok(());
        };
        if principal.may_consume(glob) {
            return Ok(());
        }
        Err(format!(
            "{} may not consume everything {glob:?} matches; subscribe within its permissions: {}",
            principal.name,
            describe_permissions(&principal.consume)
        ))
    }

    /// The name of the connection's principal, when the server has an auth table.
    pub(super) fn principal_name(&self, conn: ConnId) -> Option<String> {
        self.principal(conn).map(|principal| principal.name.clone())
    }

    /// Whether the connection's principal may `what` (join, change) `group`, named `name`:
    /// a group with an owner is the owner's and the admins'; one without is anyone's.
    pub(super) fn check_group_owner(
        &self,
        conn: ConnId,
        name: &str,
        group: &super::groups::Group,
        what: &str,
    ) -> Result<(), String> {
        let (Some(principal), Some(owner)) = (self.principal(conn), group.owner.as_deref()) else {
            return Ok(());
        };
        if principal.admin || principal.name == owner {
            return Ok(());
        }
        Err(format!(
            "{} may not {what} group {name:?}: it was created by {owner} (only {owner} or an \
             admin may)",
            principal.name
        ))
    }

    /// Whether the connection's principal may do an admin's `what` (ask for the status,
    /// inspect or change groups).
    pub(super) fn check_admin(&self, conn: ConnId, what: &str) -> Result<(), String> {
        match self.principal(conn) {
            Some(principal) if !principal.admin => {
                Err(format!("{} may not {what} (admin = false)", principal.name))
            }
            _ => Ok(()),
        }
    }
}

/// Permissions listed in a `PermissionDenied` message at most: the file may hold many, and a
/// message is one line.
const PERMISSIONS_LISTED_MAX: usize = 8;

/// A principal's permissions for a refusal's message, so a client that was refused learns what
/// it may do instead of guessing (walkthrough, session 9: `flo-client consume` with a token
/// for `/orders/**` was told only to "subscribe within its permissions").
fn describe_permissions(permissions: &[crate::auth_file::Permission]) -> String {
    if permissions.is_empty() {
        return "nothing".into();
    }
    let listed: Vec<String> = permissions
        .iter()
        .take(PERMISSIONS_LISTED_MAX)
        .map(ToString::to_string)
        .collect();
    let mut text = listed.join(", ");
    let more = permissions.len().saturating_sub(PERMISSIONS_LISTED_MAX);
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod permission_tests {
    use super::describe_permissions;
    use crate::auth_file::Permission;

    #[test]
    fn a_refusal_lists_at_most_eight_permissions() {
        assert_eq!(describe_permissions(&[]), "nothing");
        let two = [
            Permission::Prefix("/orders/".into()),
            Permission::Exact("/audit".into()),
        ];
        assert_eq!(describe_permissions(&two), "/orders/**, /audit");
        let many: Vec<Permission> = (0..10)
            .map(|n| Permission::Exact(format!("/{n}")))
            .collect();
        assert_eq!(
            describe_permissions(&many),
            "/0, /1, /2, /3, /4, /5, /6, /7 and 2 more"
        );
    }
}

#[cfg(test)]
mod source_tests {
    use super::Source;

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_prefixes_and_print_as_such() {
        let source = |addr: &str| Source::of(Some(addr.parse().expect("an address")));
        assert_eq!(source("10.1.2.3:5").to_string(), "10.1.2.3");
        assert_eq!(source("[::ffff:10.1.2.3]:5"), source("10.1.2.3:6"));
        assert_eq!(
            source("[2001:db8:1:2:3::9]:5").to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            source("[2001:db8:1:2:3::9]:5"),
            source("[2001:db8:1:2::1]:7")
        );
        assert_ne!(source("[2001:db8:1:2::1]:5"), source("[2001:db8:1:3::1]:5"));
        assert_eq!(Source::of(None).to_string(), "an unknown address");
    }
}
