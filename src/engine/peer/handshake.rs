//! The peer handshake, four frames on one connection:
//!
//! 1. the dialer sends PeerHello (who it is, a fresh nonce);
//! 2. the acceptor checks the identity and answers PeerWelcome (who it is, its own nonce);
//! 3. the dialer sends PeerProof: an HMAC keyed with the cluster secret over both nonces,
//!    both actor ids and its role, then its vector and members;
//! 4. the acceptor checks the proof and answers PeerAccept (its own proof, vector, members),
//!    and the dialer checks that.
//!
//! The secret never crosses the network, a recorded handshake fails against a fresh nonce, and
//! the acceptor, which anyone can reach, proves nothing and reveals nothing (no vector, no
//! members) until the dialer has proved the secret. Over TLS both proofs are also bound to the
//! TLS session (the connection's channel binding), so a proof relayed by a man in the middle
//! that terminates TLS fails. When two nodes dial each other, the rule in `resolve_duplicate`
//! keeps one connection.

use std::net::SocketAddr;

use super::PEER_SUBSCRIPTION;
use crate::engine::connection::{PendingPeer, Stream, Subscription};
use crate::engine::tail_index::ReadPosition;
use crate::engine::{ConnId, Engine, Now, PeerConn, Phase};
use crate::event::{ActorId, Cursor};
use crate::protocol::{
    ErrorCode, ErrorFrame, NamespaceGlob, PeerFrame, PeerHandshake, PeerNonce, PeerProof, PeerRole,
    PeerTranscript, PROTOCOL_VERSION,
};
use crate::storage::Log;

impl<L: Log> Engine<L> {
    /// An outbound connection to `addr` (asked for with [`Action::Dial`](crate::engine::Action::Dial)) is connected: the
    /// engine sends PeerHello on it.
    pub fn handle_dialed(&mut self, now: Now, conn: ConnId, addr: SocketAddr) {
        self.observe_time(now);
        self.handle_connect(now, conn);
        let deadline_ms = now.monotonic.0 + super::super::millis(self.config.handshake_timeout);
        let nonce = self.cluster.next_nonce();
        // Just inserted by `handle_connect`.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::PeerAwaitingWelcome {
            addr,
            deadline_ms,
            nonce,
        };
        let hello = self.own_handshake(nonce);
        self.send(conn, &PeerFrame::PeerHello(hello));
        self.debug_check_invariants();
    }

    fn own_handshake(&self, nonce: PeerNonce) -> PeerHandshake {
        PeerHandshake {
            protocol_version: PROTOCOL_VERSION,
            actor_id: self.config.actor_id.0,
            advertised_addr: self
                .config
                .advertised_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            nonce,
        }
    }

    /// This node's proof for `transcript` in `role`, with its vector and members.
    fn own_proof(&self, transcript: &PeerTranscript, role: PeerRole) -> PeerProof {
        PeerProof {
            proof: transcript.proof(&self.config.cluster_secret, role),
            vector: self.log.version_vector().clone(),
            members: self.member_list(None),
        }
    }

    /// Checks the identity a PeerHello or PeerWelcome claims. Returns the advertised address,
    /// or the refusal.
    fn check_identity(&self, handshake: &PeerHandshake) -> Result<SocketAddr, (ErrorCode, String)> {
        if handshake.protocol_version != PROTOCOL_VERSION {
            let message = format!(
                "peer protocol version {} is not supported; this server speaks version {}",
                handshake.protocol_version, PROTOCOL_VERSION
            );
            return Err((ErrorCode::UnsupportedVersion, message));
        }
        if handshake.actor_id == self.config.actor_id.0 {
            let message = format!(
                "actor id {} is this server's own: a node dialed itself, or two nodes share an actor id",
                handshake.actor_id
            );
            return Err((ErrorCode::ActorIdConflict, message));
        }
        if handshake.actor_id == 0 {
            return Err((ErrorCode::ActorIdConflict, "actor id 0 is not valid".into()));
        }
        if let Some(message) = self.removed_refusal(ActorId(handshake.actor_id)) {
            return Err((ErrorCode::MemberRemoved, message));
        }
        self.check_member_room(ActorId(handshake.actor_id))?;
        handshake
            .advertised_addr
            .parse::<SocketAddr>()
            .map_err(|_| {
                let message = format!(
                    "advertised address {:?} is not an IP address and port",
                    handshake.advertised_addr
                );
                (ErrorCode::MalformedFrame, message)
            })
    }

    /// An actor this node does not know yet is refused when it knows `members_max` already.
    fn check_member_room(&self, actor: ActorId) -> Result<(), (ErrorCode, String)> {
        let members = &self.cluster.members;
        if !members.contains_key(&actor) && members.len() >= self.config.cluster.members_max {
            let message = format!(
                "this node already knows {} members, its limit",
                self.config.cluster.members_max
            );
            return Err((ErrorCode::TooManyConnections, message));
        }
        Ok(())
    }

    /// Checks the proof in a PeerProof (from the dialer) or PeerAccept (from the acceptor),
    /// then what the frame carries.
    fn check_proof(
        &self,
        pending: &PendingPeer,
        role: PeerRole,
        proof: &PeerProof,
    ) -> Result<(), (ErrorCode, String)> {
        let secret = &self.config.cluster_secret;
        if !pending.transcript.verify(secret, role, &proof.proof) {
            let message = "the handshake proof does not match: the peer does not hold this node's cluster secret (or replayed an old handshake)";
            return Err((ErrorCode::AuthFailed, message.into()));
        }
        // Members may have been learned since the first frame.
        self.check_member_room(pending.actor)?;
        if proof.vector.len() > self.config.cluster.actors_max {
            let message = format!(
                "the handshake vector lists {} actors, over this node's limit of {}",
                proof.vector.len(),
                self.config.cluster.actors_max
            );
            return Err((ErrorCode::MalformedFrame, message));
        }
        Ok(())
    }

    /// PeerHello on a new connection: this node is the acceptor. It answers PeerWelcome with
    /// its nonce and waits for the dialer's proof.
    pub(in crate::engine) fn on_peer_hello(&mut self, conn: ConnId, hello: PeerHandshake) -> bool {
        let address = self.peer_description(conn);
        if !self.accepts_peer_hello() {
            log::warn!(
                "{conn} from {address}: refusing PeerHello from actor {}: this server is not configured for clustering",
                hello.actor_id
            );
            let message = "this server is not configured for clustering (no --peer-addr and no --cluster-secret); it accepts no peers";
            return self.close_with_error(conn, ErrorCode::UnexpectedFrame, message);
        }
        if let Some(source) = self.conn(conn).and_then(|c| c.peer_addr) {
            let now_ms = self.now_ms;
            let limits = &self.config.cluster;
            if let Err(seconds) = self.cluster.proof_failures.check(limits, source, now_ms) {
                log::debug!("{conn} from {source}: PeerHello refused unchecked: too many failed peer proofs");
                let message = format!(
                    "too many failed peer proofs from this address (over {} in {} s); retry in {seconds} s",
                    limits.peer_proof_failures_max,
                    limits.peer_proof_failure_window.as_secs()
                );
                return self.close_with_error(conn, ErrorCode::AuthFailed, &message);
            }
        }
        let advertised_addr = match self.check_identity(&hello) {
            Ok(addr) => addr,
            Err((code, message)) => {
                log::warn!(
                    "{conn} from {address}: refusing peer {} ({}): {message}",
                    hello.actor_id,
                    hello.advertised_addr
                );
                return self.close_with_error(conn, code, &message);
            }
        };
        // Checked by the caller: the connection is open, in its first phase.
        let deadline_ms = match self.conn(conn).expect("connection is open").phase {
            Phase::AwaitingHello { deadline_ms } => deadline_ms,
            ref other => unreachable!("{conn}: PeerHello in phase {other:?}"),
        };
        let nonce = self.cluster.next_nonce();
        // Checked by the caller: the connection is open.
        let channel_binding = self.conn(conn).expect("connection is open").channel_binding;
        let pending = PendingPeer {
            actor: ActorId(hello.actor_id),
            advertised_addr,
            transcript: PeerTranscript {
                dialer_nonce: hello.nonce,
                acceptor_nonce: nonce,
                dialer_actor: hello.actor_id,
                acceptor_actor: self.config.actor_id.0,
                channel_binding,
            },
        };
        // Checked above.
        self.conn_mut(conn).expect("connection is open").phase = Phase::PeerAwaitingProof {
            pending,
            deadline_ms,
        };
        let welcome = self.own_handshake(nonce);
        self.send(conn, &PeerFrame::PeerWelcome(welcome));
        true
    }

    /// PeerProof on a connection this node accepted: if the dialer proved the secret, answer
    /// PeerAccept and start replicating.
    pub(in crate::engine) fn on_peer_proof(
        &mut self,
        conn: ConnId,
        pending: PendingPeer,
        proof: PeerProof,
    ) -> bool {
        if let Err((code, message)) = self.check_proof(&pending, PeerRole::Dialer, &proof) {
            let source = self.conn(conn).and_then(|c| c.peer_addr);
            let failures = match (code, source) {
                (ErrorCode::AuthFailed, Some(source)) => {
                    let limits = &self.config.cluster;
                    let count = self
                        .cluster
                        .proof_failures
                        .record(limits, source, self.now_ms);
                    format!(
                        " (failed proof {count} of at most {} from {} in {} s)",
                        limits.peer_proof_failures_max,
                        source.ip(),
                        limits.peer_proof_failure_window.as_secs()
                    )
                }
                _ => String::new(),
            };
            log::warn!(
                "{conn} from {}: refusing peer {} ({}): {message}{failures}",
                self.peer_description(conn),
                pending.actor,
                pending.advertised_addr
            );
            return self.close_with_error(conn, code, &message);
        }
        let actor = pending.actor;
        if let Err(message) = self.check_actor_address(conn, actor, pending.advertised_addr) {
            let description = self.peer_description(conn);
            self.log_actor_conflict(&format!(
                "{conn} from {description}: refusing peer: {message}"
            ));
            return self.close_with_error(conn, ErrorCode::ActorIdConflict, &message);
        }
        // PeerAccept goes out even when this connection then loses to an existing one, so
        // the dialer learns which actor the address reaches and stops dialing it.
        let accept = self.own_proof(&pending.transcript, PeerRole::Acceptor);
        self.send(conn, &PeerFrame::PeerAccept(accept));
        if !self.resolve_duplicate(conn, actor, actor) {
            return false;
        }
        self.establish(conn, actor, actor, pending.advertised_addr, proof);
        true
    }

    /// PeerWelcome on a connection this node dialed: send this node's proof.
    pub(in crate::engine) fn on_peer_welcome(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        nonce: PeerNonce,
        welcome: PeerHandshake,
    ) -> bool {
        let advertised_addr = match self.check_identity(&welcome) {
            Ok(advertised_addr) => advertised_addr,
            Err((code, message)) => {
                log::warn!("{conn}: peer at {addr} refused: {message}");
                if code == ErrorCode::ActorIdConflict {
                    self.mark_own(addr);
                }
                return self.close_with_error(conn, code, &message);
            }
        };
        // Checked by the caller: the connection is open.
        let channel_binding = self.conn(conn).expect("connection is open").channel_binding;
        let pending = PendingPeer {
            actor: ActorId(welcome.actor_id),
            advertised_addr,
            transcript: PeerTranscript {
                dialer_nonce: nonce,
                acceptor_nonce: welcome.nonce,
                dialer_actor: self.config.actor_id.0,
                acceptor_actor: welcome.actor_id,
                channel_binding,
            },
        };
        let proof = self.own_proof(&pending.transcript, PeerRole::Dialer);
        self.send(conn, &PeerFrame::PeerProof(proof));
        // Checked by the caller: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        let Phase::PeerAwaitingWelcome { deadline_ms, .. } = connection.phase else {
            unreachable!("{conn}: PeerWelcome is handled only while awaiting it")
        };
        connection.phase = Phase::PeerAwaitingAccept {
            addr,
            pending,
            deadline_ms,
        };
        true
    }

    /// PeerAccept on a connection this node dialed: if the acceptor proved the secret, start
    /// replicating.
    pub(in crate::engine) fn on_peer_accept(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        pending: PendingPeer,
        accept: PeerProof,
    ) -> bool {
        if let Err((code, message)) = self.check_proof(&pending, PeerRole::Acceptor, &accept) {
            log::warn!(
                "{conn}: peer {} at {addr} refused: {message}",
                pending.actor
            );
            return self.close_with_error(conn, code, &message);
        }
        let actor = pending.actor;
        if let Err(message) = self.check_actor_address(conn, actor, pending.advertised_addr) {
            self.log_actor_conflict(&format!("{conn}: peer at {addr}: {message}"));
            if let Some(target) = self.cluster.targets.get_mut(&addr) {
                target.refused = Some(ErrorCode::ActorIdConflict);
            }
            return self.close_with_error(conn, ErrorCode::ActorIdConflict, &message);
        }
        if let Some(target) = self.cluster.targets.get_mut(&addr) {
            target.actor = Some(actor);
            target.refused = None;
        }
        let own = self.config.actor_id;
        if !self.resolve_duplicate(conn, actor, own) {
            return false;
        }
        self.establish(conn, actor, own, pending.advertised_addr, accept);
        true
    }

    /// An Error frame on a connection this node dialed, before PeerAccept. `acceptor`: the
    /// actor the acceptor's PeerWelcome named, when it came before the Error.
    pub(in crate::engine) fn on_peer_refused(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        acceptor: Option<ActorId>,
        error: ErrorFrame,
    ) {
        if error.code != ErrorCode::DuplicatePeerConnection {
            if let Some(target) = self.cluster.targets.get_mut(&addr) {
                target.refused = Some(error.code);
            }
        }
        match error.code {
            ErrorCode::DuplicatePeerConnection => {
                log::debug!("{conn}: peer at {addr}: {}", error.message)
            }
            // After a PeerWelcome of another actor the address is not this node's own: the
            // acceptor holds a connection of this node's actor id from another address
            // (`check_actor_address`). Dialed again after the back-off.
            ErrorCode::ActorIdConflict if acceptor.is_some_and(|a| a != self.config.actor_id) => {
                log::error!("peer at {addr} refused us: {}", error.message)
            }
            ErrorCode::ActorIdConflict => {
                log::error!(
                    "peer at {addr} refused us: {}; not dialing {addr} again",
                    error.message
                );
                self.mark_own(addr);
            }
            ErrorCode::MemberRemoved => {
                log::error!("peer at {addr} refused us: {}", error.message)
            }
            _ => log::warn!("peer at {addr} refused us: {}", error.message),
        }
        self.forget(conn);
    }

    /// Refuses a handshake of `actor` advertising `advertised` while another connection of
    /// that actor, from another advertised address, is established: two nodes share an actor
    /// id (or the member moved and its old connection has not ended yet; then the next dial
    /// after it ends succeeds). Two connections of one node (both nodes dialed at once)
    /// advertise the same address and go to `resolve_duplicate`. Attack round 18: a second
    /// node with a copied `--actor-id` lost to the first by the duplicate rule after its
    /// handshake had completed, so it reconnected about 13 times a second without end, logged
    /// only at debug level here, and both nodes acknowledged different events under the same
    /// ids.
    fn check_actor_address(
        &self,
        conn: ConnId,
        actor: ActorId,
        advertised: SocketAddr,
    ) -> Result<(), String> {
        let Some(member) = self.cluster.members.get(&actor) else {
            return Ok(());
        };
        match member.conn {
            Some(existing) if existing != conn && member.addr != advertised => Err(format!(
                "actor {actor} is connected from {}, not {advertised}: two nodes share actor id {actor} (give each its own --actor-id; their events would share ids), or the member moved and its old connection has not ended yet",
                member.addr
            )),
            _ => Ok(()),
        }
    }

    /// Logs an actor id conflict as an error, at most once a second (a conflicting node
    /// redials after every back-off, and a holder of the secret could dial at will).
    fn log_actor_conflict(&mut self, line: &str) {
        if let Some(held_back) = self.cluster.actor_conflict_log.allow(self.now_ms) {
            if held_back > 0 {
                log::error!("{line} ({held_back} more such refusals not logged)");
            } else {
                log::error!("{line}");
            }
        }
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
        addr: SocketAddr,
        handshake: PeerProof,
    ) {
        let their_vector = handshake.vector.clone();
        let next = self.peer_start(actor, &their_vector);
        // A constant pattern that the glob tests show is valid.
        let glob = NamespaceGlob::new("/**").expect("`/**` is a valid glob");
        let window = self.config.cluster.peer_credit_window;
        let mut peer = PeerConn::new(actor, dialed_by, u64::from(window));
        // The peer holds a prefix of this node's own events, up to its vector's entry.
        peer.own_passed = their_vector.get(self.config.actor_id);
        let position = ReadPosition::new(next, self.tail.clock());
        self.tail
            .insert((conn, PEER_SUBSCRIPTION), glob.as_str(), false);
        // Checked by the callers: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::Peer(peer);
        connection.subscriptions.insert(
            PEER_SUBSCRIPTION,
            Box::new(Subscription {
                id: PEER_SUBSCRIPTION,
                glob,
                filter: Cursor::from_vector(their_vector.clone()),
                position,
                remaining: None,
                credit: 0,
                stream: Stream::Replication,
                skip_damaged: false,
                order: None,
                scan_dense: false,
            }),
        );
        self.send(conn, &PeerFrame::PeerCredit { count: window });
        // Before any event: the peer hides what this node purged before it sees it.
        self.send_purges_to(conn);
        let entries: Vec<String> = their_vector
            .iter()
            .map(|(actor, counter)| format!("{actor}:{counter}"))
            .collect();
        log::info!(
            "{conn}: peer {actor} ({addr}) connected; its vector {{{}}}",
            entries.join(", ")
        );
        let mut changed = self.record_member(conn, actor, Some(addr), their_vector);
        self.persist_member(actor, addr);
        changed |= self.learn_members(&handshake.members);
        if changed {
            self.broadcast_members();
        }
        self.send_membership(conn);
    }
}
