//! Client authentication and permissions, when the server runs with an auth table
//! (`Config::auth`, from `--auth-file`): Hello's token names a principal, and produces,
//! subscriptions and status requests are checked against its permissions. Without a table
//! every check passes. docs/security.md states the rules; this file only applies them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{ConnId, Engine, Now, Phase};
use crate::auth_file::AuthTable;
use crate::auth_file::Principal;
use crate::protocol::ErrorCode;
use crate::storage::Log;

/// Failed handshakes in the current one-second window of the monotonic clock.
#[derive(Debug, Default)]
pub(super) struct AuthFailures {
    window_start_ms: u64,
    count: u32,
    /// Hellos refused unchecked in this window because the cap was reached.
    refused_unchecked: u64,
}

const WINDOW_MS: u64 = 1000;

impl<L: Log> Engine<L> {
    /// The reactor's note of a new connection's address, for the log of a refused handshake.
    pub fn handle_peer_addr(&mut self, conn: ConnId, addr: SocketAddr) {
        if let Some(connection) = self.conn_mut(conn) {
            connection.peer_addr = Some(addr);
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
        let failures = &mut self.auth_failures;
        if now_ms.saturating_sub(failures.window_start_ms) >= WINDOW_MS {
            if failures.refused_unchecked > 0 {
                log::warn!(
                    "{} more handshakes refused unchecked: over {} failed handshakes a second",
                    failures.refused_unchecked,
                    self.config.auth_failures_per_second_max
                );
            }
            *failures = AuthFailures {
                window_start_ms: now_ms,
                ..AuthFailures::default()
            };
        }
        // Past the cap every Hello is refused without looking at its token: checking it would
        // give a guesser more tries. Legitimate clients retry after the second ends.
        if failures.count >= self.config.auth_failures_per_second_max {
            failures.refused_unchecked += 1;
            return Err("too many failed handshakes on this server; retry in a second".into());
        }
        let address = self.peer_description(conn);
        match auth.authenticate(token) {
            Some(principal) => {
                log::debug!("{conn} from {address}: authenticated as {}", principal.name);
                Ok(Some(principal))
            }
            None => {
                self.auth_failures.count += 1;
                let what = if token.is_empty() { "no" } else { "an unknown" };
                log::warn!("{conn} from {address}: handshake refused: {what} auth token");
                Err(format!(
                    "{what} auth token; this server requires one (--auth-file)"
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
        let message = format!("{} may not produce to {namespace:?}", principal.name);
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
            "{} may not consume everything {glob:?} matches; subscribe within its permissions",
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
