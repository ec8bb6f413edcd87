//! Replication over an established peer connection: where a peer's stream starts, the
//! PeerEvent/PeerCredit exchange, and the credit given back once the turn's sync made the
//! received events durable.

use super::PEER_SUBSCRIPTION;
use crate::engine::{ConnId, Engine, PeerConn, Phase};
use crate::event::{ActorId, Cursor, Event, EventId, StartPosition, VersionVector};
use crate::protocol::{ErrorCode, PeerFrame};
use crate::storage::{Log, Offset};

impl<L: Log> Engine<L> {
    /// Where the replication stream to a peer with `vector` starts; warns when retention
    /// deleted records the peer may not hold.
    pub(super) fn peer_start(&mut self, actor: ActorId, vector: &VersionVector) -> Offset {
        let position = StartPosition::Cursor(Cursor::from_vector(vector.clone()));
        match self.log.find_start(&position) {
            Ok(next) => {
                let start = self.log.start();
                if start > Offset(0) && next == start && next < self.log.durable_end() {
                    log::warn!(
                        "peer {actor} may have a gap: its stream starts at the oldest retained record (offset {start}); records before it were deleted by retention and are not sent"
                    );
                }
                next
            }
            Err(error) => {
                log::error!("could not find where peer {actor}'s stream starts: {error}; starting at the oldest retained record");
                self.log.start()
            }
        }
    }

    /// Retention deleted records: a connected peer whose stream had not reached them yet
    /// will never be sent them. Says so loudly, once per deletion.
    pub(in crate::engine) fn warn_peer_retention_gaps(&mut self) {
        let start = self.log.start();
        let clock = self.tail.clock();
        for connection in self.conns.iter_mut().flatten() {
            let Some(&PeerConn { actor, .. }) = connection.peer() else {
                continue;
            };
            if let Some(sub) = connection.subscriptions.get_mut(&PEER_SUBSCRIPTION) {
                let next = sub.position.next(clock);
                if next < start {
                    log::warn!(
                        "peer {actor} has a gap: retention deleted records {next}..{start} before they were sent to it"
                    );
                    sub.position.set_next(start, clock);
                }
            }
        }
    }

    /// A frame on a peer connection: the next handshake frame while the handshake runs,
    /// else a frame of the established connection.
    pub(in crate::engine) fn on_peer_frame(&mut self, conn: ConnId, frame: PeerFrame) -> bool {
        // Checked by the caller: `on_frame` runs only for open connections.
        let phase = self.conn(conn).expect("connection is open").phase.clone();
        let (expected, addr) = match (phase, frame) {
            (Phase::Peer(_), frame) => return self.on_established_peer_frame(conn, frame),
            (Phase::PeerAwaitingWelcome { addr, nonce, .. }, PeerFrame::PeerWelcome(welcome)) => {
                return self.on_peer_welcome(conn, addr, nonce, welcome)
            }
            (Phase::PeerAwaitingAccept { addr, pending, .. }, PeerFrame::PeerAccept(accept)) => {
                return self.on_peer_accept(conn, addr, pending, accept)
            }
            (Phase::PeerAwaitingProof { pending, .. }, PeerFrame::PeerProof(proof)) => {
                return self.on_peer_proof(conn, pending, proof)
            }
            (Phase::PeerAwaitingWelcome { addr, .. }, PeerFrame::Error(error)) => {
                self.on_peer_refused(conn, addr, None, error);
                return false;
            }
            (Phase::PeerAwaitingAccept { addr, pending, .. }, PeerFrame::Error(error)) => {
                self.on_peer_refused(conn, addr, Some(pending.actor), error);
                return false;
            }
            (Phase::PeerAwaitingWelcome { addr, .. }, _) => ("PeerWelcome", Some(addr)),
            (Phase::PeerAwaitingAccept { addr, .. }, _) => ("PeerAccept", Some(addr)),
            (Phase::PeerAwaitingProof { .. }, PeerFrame::Error(error)) => {
                log::warn!(
                    "{conn}: peer closed the connection in its handshake: {}",
                    error.message
                );
                self.forget(conn);
                return false;
            }
            (Phase::PeerAwaitingProof { .. }, _) => ("PeerProof", None),
            (Phase::AwaitingHello { .. } | Phase::Client(_) | Phase::Closing { .. }, _) => {
                unreachable!("{conn}: peer frames are decoded only on peer connections")
            }
        };
        if let Some(addr) = addr {
            log::warn!("{conn}: peer at {addr} broke the handshake: expected {expected}");
        }
        let message = format!("the next frame of the peer handshake must be {expected}");
        self.close_with_error(conn, ErrorCode::UnexpectedFrame, &message)
    }

    /// A frame on an established peer connection.
    fn on_established_peer_frame(&mut self, conn: ConnId, frame: PeerFrame) -> bool {
        match frame {
            PeerFrame::PeerEvent(event) => return self.on_peer_event(conn, event),
            PeerFrame::PeerCredit { count } => return self.on_peer_credit(conn, count),
            PeerFrame::PeerMembers(members) => {
                if self.learn_members(&members) {
                    self.broadcast_members();
                }
            }
            PeerFrame::PeerClock { counter } => {
                // Checked by the caller: the connection is an established peer connection.
                let Some(Phase::Peer(peer)) = self.conn(conn).map(|c| &c.phase) else {
                    unreachable!("{conn}: PeerClock is handled only on established peer connections")
                };
                return self.on_peer_clock(conn, peer.actor, counter);
            }
            PeerFrame::PeerMembership(records) => {
                // Checked by the caller: the connection is an established peer connection.
                let Some(Phase::Peer(peer)) = self.conn(conn).map(|c| &c.phase) else {
                    unreachable!(
                        "{conn}: PeerMembership is handled only on established peer connections"
                    )
                };
                return self.on_peer_membership(conn, peer.actor, records);
            }
            PeerFrame::PeerPurge(rule) => self.on_peer_purge(rule),
            PeerFrame::Error(error) => {
                match error.code {
                    ErrorCode::DuplicatePeerConnection => {
                        log::debug!("{conn}: duplicate closed by the peer: {}", error.message)
                    }
                    ErrorCode::ShuttingDown => log::info!("{conn}: peer is shutting down"),
                    _ => log::warn!("{conn}: peer closed the connection: {}", error.message),
                }
                self.forget(conn);
                return false;
            }
            PeerFrame::PeerHello(_)
            | PeerFrame::PeerWelcome(_)
            | PeerFrame::PeerProof(_)
            | PeerFrame::PeerAccept(_) => {
                return self.close_with_error(
                    conn,
                    ErrorCode::UnexpectedFrame,
                    "only PeerEvent, PeerCredit, PeerMembers, PeerClock, PeerMembership and PeerPurge are valid on a peer connection after the handshake",
                )
            }
        }
        true
    }

    /// PeerCredit: more PeerEvents this node may send. The first grant is the peer's window
    /// (at most `PEER_CREDIT_WINDOW_MAX`); later ones give back credit for events this node
    /// sent, so the credit it holds never passes that window. A peer that grants more would
    /// make this node queue and send without bound: the connection is closed.
    fn on_peer_credit(&mut self, conn: ConnId, count: u32) -> bool {
        if count == 0 {
            return true;
        }
        let remaining = self
            .conn(conn)
            .and_then(|c| c.subscriptions.get(&PEER_SUBSCRIPTION))
            .map_or(0, |sub| sub.credit);
        let window_max = u64::from(crate::protocol::PEER_CREDIT_WINDOW_MAX);
        // Checked by the caller: the connection is an established peer connection.
        let Some(peer) = self.conn_mut(conn).and_then(|c| c.peer_mut()) else {
            unreachable!("{conn}: PeerCredit is handled only on established peer connections")
        };
        let count = u64::from(count);
        let window = *peer.credit_window_received.get_or_insert(count);
        // At most 2^32 - 1 + 2^16: no overflow.
        let after = remaining + count;
        if window > window_max {
            let message =
                format!("PeerCredit window {window} is over the protocol's limit of {window_max}");
            return self.peer_violation(conn, &message);
        }
        if after > window {
            let message = format!(
                "PeerCredit {count} would give {after} credit, more than the window of {window} this peer granted first: credit beyond the PeerEvents sent"
            );
            return self.peer_violation(conn, &message);
        }
        // Fits in u32: at most the window.
        self.on_replicas_credited(conn, count as u32);
        if let Some(sub) = self.subscription_mut(conn, PEER_SUBSCRIPTION) {
            sub.credit = after;
        }
        self.mark_ready(conn, PEER_SUBSCRIPTION);
        true
    }

    /// A peer broke a rule a correct peer never breaks (docs/clustering.md, "What a member is
    /// trusted with"): logged, counted (`flo_peer_violations_total`) and closed with
    /// MalformedFrame. Returns false (the connection is closed).
    pub(super) fn peer_violation(&mut self, conn: ConnId, message: &str) -> bool {
        log::error!("{conn} from {}: {message}", self.peer_description(conn));
        self.stats.peer_violations += 1;
        self.close_with_error(conn, ErrorCode::MalformedFrame, message)
    }

    /// A replicated event: appended unless this node already holds its actor's counter.
    fn on_peer_event(&mut self, conn: ConnId, event: Event) -> bool {
        // Checked by the caller: the connection is open.
        let connection = self.conn(conn).expect("connection is open");
        let Some(&PeerConn {
            credit_given,
            actor: peer,
            clock_promised,
            ..
        }) = connection.peer()
        else {
            unreachable!("{conn}: PeerEvent is handled only on established peer connections")
        };
        if credit_given == 0 {
            return self.close_with_error(
                conn,
                ErrorCode::UnexpectedFrame,
                "PeerEvent without credit",
            );
        }
        if let Err(message) = self.check_replicated_id(event.id) {
            log::error!("{conn}: replicated event {} refused: {message}", event.id);
            let message = format!("replicated event {} refused: {message}", event.id);
            return self.close_with_error(conn, ErrorCode::MalformedFrame, &message);
        }
        if event.id.actor == peer
            && event.id.counter <= clock_promised
            && event.id.counter > self.log.version_vector().get(peer)
        {
            // PeerClock promised that every event of the peer's own up to it had been sent
            // before: id-order subscriptions may already have been released past this one.
            // A copy of an event this node holds is dropped below as always: it changes
            // nothing, and a correct peer can relay one of its own events back late (after
            // a catch-up hold that ended by its time-out).
            let message = format!(
                "replicated event {} refused: peer {peer} promised (PeerClock {clock_promised}) that it had sent every event of its own up to that counter",
                event.id
            );
            return self.peer_violation(conn, &message);
        }
        if !self.may_speak_for(peer, event.id.actor) {
            let message = format!(
                "replicated event {} refused: actor {} is not peer {peer}, not this node, not a known member and not in the peer's handshake vector",
                event.id, event.id.actor
            );
            log::error!("{conn} from {}: {message}", self.peer_description(conn));
            return self.close_with_error(conn, ErrorCode::ActorNotAllowed, &message);
        }
        if let Err((_, message)) = self.validate_stored(&event) {
            // The origin validated it, so this peer is broken or hostile: storing it would
            // serve an invalid event, and skipping it would leave a hole in the origin's
            // prefix, so the connection is closed instead.
            log::error!("{conn}: replicated event {} refused: {message}", event.id);
            let message = format!("replicated event {} refused: {message}", event.id);
            return self.close_with_error(conn, ErrorCode::MalformedFrame, &message);
        }
        // Checked by the caller: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        let Some(PeerConn {
            credit_given,
            events_this_turn,
            ..
        }) = connection.peer_mut()
        else {
            unreachable!("{conn}: PeerEvent is handled only on established peer connections")
        };
        *credit_given -= 1;
        *events_this_turn += 1;
        if *events_this_turn == 1 {
            self.cluster.credit_due.push(conn);
        }
        let id = event.id;
        // The peer holds what it sent: never send it back.
        if let Some(sub) = self.subscription_mut(conn, PEER_SUBSCRIPTION) {
            sub.filter.observe(id);
        }
        if id.counter == 0 || self.turn_failure.is_some() {
            return true;
        }
        if id.counter <= self.log.version_vector().get(id.actor) {
            return true;
        }
        self.observe_appended(&event.namespace, id);
        let data_bytes = event.data.len();
        match self.log.append(event) {
            Ok(_) => {
                self.metrics.on_append(id.actor.0, data_bytes);
                self.counter = self.counter.max(id.counter);
                self.stats.events_replicated += 1;
            }
            Err(error) => {
                let what = format!("append of replicated event {id} failed");
                self.storage_failures.failed(self.now_ms, &what, &error);
                self.turn_failure = Some(format!("the events were not stored: {error}"));
            }
        }
        true
    }

    /// True when `peer` may send events of `actor` (docs/clustering.md, "Which actors a peer
    /// may send"): its own; this node's (its lost events coming back after an unclean
    /// restart); a member this node knows (every member relays the others' events); one
    /// whose events the peer held at its handshake (relayed from before); or one whose
    /// events this node already holds. Anything else names an actor no member declared.
    fn may_speak_for(&self, peer: ActorId, actor: ActorId) -> bool {
        actor == peer
            || actor == self.config.actor_id
            || self.cluster.members.contains_key(&actor)
            || self.log.version_vector().get(actor) > 0
            || self
                .cluster
                .members
                .get(&peer)
                .and_then(|m| m.handshake_vector.as_ref())
                .is_some_and(|vector| vector.get(actor) > 0)
    }

    /// The rules a replicated event's id must meet before anything is stored or observed:
    /// a real actor, a counter at most `peer_counter_ahead_max` above this node's Lamport
    /// counter (and at most `EventId::COUNTER_MAX`), and, for an actor this node holds no
    /// events of yet, room under `actors_max`.
    fn check_replicated_id(&self, id: EventId) -> Result<(), String> {
        if id.actor.0 == 0 {
            return Err("actor 0 is no actor".into());
        }
        let ahead_max = self
            .counter
            .saturating_add(self.config.cluster.peer_counter_ahead_max)
            .min(EventId::COUNTER_MAX);
        if id.counter > ahead_max {
            return Err(format!(
                "its counter is more than {} above this node's counter {} (or past {})",
                self.config.cluster.peer_counter_ahead_max,
                self.counter,
                EventId::COUNTER_MAX
            ));
        }
        let vector = self.log.version_vector();
        if vector.get(id.actor) == 0 && vector.len() >= self.config.cluster.actors_max {
            return Err(format!(
                "this node already holds events of {} actors, its limit",
                self.config.cluster.actors_max
            ));
        }
        Ok(())
    }

    /// Turn end, after the sync. On success, gives back the credit of the turn's replicated
    /// events (they are durable now). On failure, the log discarded the turn's appends, so
    /// every replication stream would have a hole: every peer connection is closed and
    /// re-handshakes from the log's real vector.
    pub(in crate::engine) fn after_sync_peers(&mut self, failed: bool) {
        let due = std::mem::take(&mut self.cluster.credit_due);
        if failed {
            // Also the connections this node dialed whose PeerProof went out this turn: its
            // vector counted the appends the log just discarded, so the peer would skip them
            // for good (it filters its whole stream by that vector).
            let peers: Vec<ConnId> = self
                .conns
                .iter()
                .flatten()
                .filter(|c| matches!(c.phase, Phase::Peer(_) | Phase::PeerAwaitingAccept { .. }))
                .map(|c| c.id)
                .collect();
            for conn in peers {
                let message = "this node could not store replicated events; reconnect";
                self.close_with_error(conn, ErrorCode::StorageFailure, message);
            }
            return;
        }
        let window = u64::from(self.config.cluster.peer_credit_window);
        for conn in due {
            let Some(connection) = self.conn_mut(conn) else {
                continue;
            };
            // A peer connection closed this turn is owed no more credit.
            let Some(PeerConn {
                credit_given,
                events_this_turn,
                ..
            }) = connection.peer_mut()
            else {
                continue;
            };
            let count = std::mem::take(events_this_turn);
            let count = count.min((window - (*credit_given).min(window)) as u32);
            if count > 0 {
                *credit_given += u64::from(count);
                self.send(conn, &PeerFrame::PeerCredit { count });
            }
        }
    }
}
