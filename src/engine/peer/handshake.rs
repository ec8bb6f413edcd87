//! The peer handshake: PeerHello from the dialer, PeerWelcome from the acceptor, the checks
//! both must pass, and the rule that keeps one connection when two nodes dial each other.

use std::net::SocketAddr;

use super::PEER_SUBSCRIPTION;
use crate::engine::connection::{Stream, Subscription};
use crate::engine::{ConnId, Engine, Now, PeerConn, Phase};
use crate::event::{ActorId, Cursor};
use crate::protocol::{
    ErrorCode, ErrorFrame, NamespaceGlob, PeerFrame, PeerHandshake, PROTOCOL_VERSION,
};
use crate::storage::Log;

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<L: Log> Engine<L> {
    /// An outbound connection to `addr` (asked for with [`Action::Dial`](crate::engine::Action::Dial)) is connected: the
    /// engine sends PeerHello on it.
    pub fn handle_dialed(&mut self, now: Now, conn: ConnId, addr: SocketAddr) {
        self.observe_time(now);
        self.handle_connect(now, conn);
        let deadline_ms = now.monotonic.0 + super::super::millis(self.config.handshake_timeout);
        // Just inserted by `handle_connect`.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::PeerAwaitingWelcome { addr, deadline_ms };
        let hello = self.own_handshake();
        self.send(conn, &PeerFrame::PeerHello(hello));
        self.debug_check_invariants();
    }

    fn own_handshake(&self) -> PeerHandshake {
        PeerHandshake {
            protocol_version: PROTOCOL_VERSION,
            actor_id: self.config.actor_id.0,
            advertised_addr: self
                .config
                .advertised_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            secret: self.config.cluster_secret.clone(),
            vector: self.log.version_vector().clone(),
            members: self.member_list(None),
        }
    }

    /// Checks what both handshake frames must satisfy. Returns the refusal, if any.
    fn check_handshake(&self, handshake: &PeerHandshake) -> Option<(ErrorCode, String)> {
        if handshake.protocol_version != PROTOCOL_VERSION {
            let message = format!(
                "peer protocol version {} is not supported; this server speaks version {}",
                handshake.protocol_version, PROTOCOL_VERSION
            );
            return Some((ErrorCode::UnsupportedVersion, message));
        }
        if !constant_time_eq(&handshake.secret, &self.config.cluster_secret) {
            let message = "the cluster secret does not match".to_string();
            return Some((ErrorCode::AuthFailed, message));
        }
        if handshake.actor_id == self.config.actor_id.0 {
            let message = format!(
                "actor id {} is this server's own: a node dialed itself, or two nodes share an actor id",
                handshake.actor_id
            );
            return Some((ErrorCode::ActorIdConflict, message));
        }
        if handshake.actor_id == 0 {
            return Some((ErrorCode::ActorIdConflict, "actor id 0 is not valid".into()));
        }
        if handshake.vector.len() > self.config.cluster.actors_max {
            let message = format!(
                "the handshake vector lists {} actors, over this node's limit of {}",
                handshake.vector.len(),
                self.config.cluster.actors_max
            );
            return Some((ErrorCode::MalformedFrame, message));
        }
        let actor = ActorId(handshake.actor_id);
        let members = &self.cluster.members;
        if !members.contains_key(&actor) && members.len() >= self.config.cluster.members_max {
            let message = format!(
                "this node already knows {} members, its limit",
                self.config.cluster.members_max
            );
            return Some((ErrorCode::TooManyConnections, message));
        }
        if handshake.advertised_addr.parse::<SocketAddr>().is_err() {
            let message = format!(
                "advertised address {:?} is not an IP address and port",
                handshake.advertised_addr
            );
            return Some((ErrorCode::MalformedFrame, message));
        }
        None
    }

    /// PeerHello on a new connection: this node is the acceptor.
    pub(in crate::engine) fn on_peer_hello(&mut self, conn: ConnId, hello: PeerHandshake) -> bool {
        if !self.accepts_peer_hello() {
            log::warn!(
                "{conn}: refusing PeerHello from actor {}: this server is not configured for clustering",
                hello.actor_id
            );
            let message = "this server is not configured for clustering (no --peer-addr and no --cluster-secret); it accepts no peers";
            return self.close_with_error(conn, ErrorCode::UnexpectedFrame, message);
        }
        if let Some((code, message)) = self.check_handshake(&hello) {
            log::warn!(
                "{conn}: refusing peer {} ({}): {message}",
                hello.actor_id,
                hello.advertised_addr
            );
            return self.close_with_error(conn, code, &message);
        }
        let actor = ActorId(hello.actor_id);
        // PeerWelcome goes out even when this connection then loses to an existing one, so
        // the dialer learns which actor the address reaches and stops dialing it.
        let welcome = self.own_handshake();
        self.send(conn, &PeerFrame::PeerWelcome(welcome));
        if !self.resolve_duplicate(conn, actor, actor) {
            return false;
        }
        self.establish(conn, actor, actor, hello);
        true
    }

    /// PeerWelcome on a connection this node dialed.
    pub(in crate::engine) fn on_peer_welcome(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        welcome: PeerHandshake,
    ) -> bool {
        if let Some((code, message)) = self.check_handshake(&welcome) {
            log::warn!("{conn}: peer at {addr} refused: {message}");
            if code == ErrorCode::ActorIdConflict {
                self.mark_own(addr);
            }
            return self.close_with_error(conn, code, &message);
        }
        let actor = ActorId(welcome.actor_id);
        if let Some(target) = self.cluster.targets.get_mut(&addr) {
            target.actor = Some(actor);
        }
        let own = self.config.actor_id;
        if !self.resolve_duplicate(conn, actor, own) {
            return false;
        }
        self.establish(conn, actor, own, welcome);
        true
    }

    /// An Error frame on a connection this node dialed, before PeerWelcome.
    pub(in crate::engine) fn on_peer_refused(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        error: ErrorFrame,
    ) {
        match error.code {
            ErrorCode::DuplicatePeerConnection => {
                log::debug!("{conn}: peer at {addr}: {}", error.message)
            }
            ErrorCode::ActorIdConflict => {
                log::error!(
                    "peer at {addr} refused us: {}; not dialing {addr} again",
                    error.message
                );
                self.mark_own(addr);
            }
            _ => log::warn!("peer at {addr} refused us: {}", error.message),
        }
        self.forget(conn);
    }

    /// A handshake with `actor` completed on `conn`, opened by `dialed_by`. If another
    /// connection to the same actor is established, the one dialed by the lower actor id
    /// survives (both nodes apply the same rule). Returns false when `conn` was closed.
    fn resolve_duplicate(&mut self, conn: ConnId, actor: ActorId, dialed_by: ActorId) -> bool {
        let existing = self.cluster.members.get(&actor).and_then(|m| m.conn);
        let Some(existing) = existing.filter(|c| *c != conn) else {
            return true;
        };
        let existing_dialed_by = match self.conn(existing).map(|c| &c.phase) {
            Some(Phase::Peer(peer)) => peer.dialed_by,
            _ => return true,
        };
        let keep_new = dialed_by < existing_dialed_by;
        let message = format!(
            "actor {actor} is already connected; keeping the connection dialed by actor {}",
            dialed_by.min(existing_dialed_by)
        );
        log::debug!("{conn}: {message}");
        if keep_new {
            if let Some(member) = self.cluster.members.get_mut(&actor) {
                member.conn = None;
            }
            self.close_with_error(existing, ErrorCode::DuplicatePeerConnection, &message);
            true
        } else {
            self.close_with_error(conn, ErrorCode::DuplicatePeerConnection, &message)
        }
    }

    /// The handshake succeeded: start replicating to the peer, learn its members.
    fn establish(
        &mut self,
        conn: ConnId,
        actor: ActorId,
        dialed_by: ActorId,
        handshake: PeerHandshake,
    ) {
        let their_vector = handshake.vector.clone();
        let next = self.peer_start(actor, &their_vector);
        // A constant pattern that the glob tests show is valid.
        let glob = NamespaceGlob::new("/**").expect("`/**` is a valid glob");
        let window = self.config.cluster.peer_credit_window;
        let mut peer = PeerConn::new(actor, dialed_by, u64::from(window));
        // The peer holds a prefix of this node's own events, up to its vector's entry.
        peer.own_passed = their_vector.get(self.config.actor_id);
        // Checked by the callers: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::Peer(peer);
        connection.subscriptions.insert(
            PEER_SUBSCRIPTION,
            Subscription {
                id: PEER_SUBSCRIPTION,
                glob,
                filter: Cursor::from_vector(their_vector.clone()),
                next,
                remaining: None,
                credit: 0,
                queued: false,
                stream: Stream::Replication,
                order: None,
            },
        );
        self.send(conn, &PeerFrame::PeerCredit { count: window });
        // Checked by `check_handshake`; a member without an address could not be redialed.
        let addr = handshake.advertised_addr.parse::<SocketAddr>().ok();
        let entries: Vec<String> = their_vector
            .iter()
            .map(|(actor, counter)| format!("{actor}:{counter}"))
            .collect();
        log::info!(
            "{conn}: peer {actor} ({}) connected; its vector {{{}}}",
            handshake.advertised_addr,
            entries.join(", ")
        );
        let mut changed = self.record_member(conn, actor, addr, their_vector);
        changed |= self.learn_members(&handshake.members);
        if changed {
            self.broadcast_members();
        }
    }
}
