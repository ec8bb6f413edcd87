//! Clustering: peer connections, the handshake, replication in both directions, membership,
//! dialing with back-off, the catch-up hold after an unclean start, and status.
//!
//! A peer connection is an ordinary connection whose first frame is PeerHello (from the
//! dialer) instead of Hello; the acceptor answers PeerWelcome. Both carry the sender's version
//! vector, and each side then feeds the other a replication stream: a tailing subscription of
//! every namespace that starts at the earliest record the other's vector does not cover. Events
//! go out as PeerEvent frames under credit (PeerCredit), so the existing back-pressure applies.
//! A received event is appended only if its counter is above the highest this node holds for
//! its actor (otherwise it is a duplicate), and its credit is given back only after the turn's
//! sync made it durable.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::connection::Subscription;
use super::{Action, ConnId, Engine, Now, Phase};
use crate::event::{ActorId, Cursor, Event, EventId, StartPosition, VersionVector};
use crate::protocol::{
    ErrorCode, ErrorFrame, Frame, Member, MemberState, MemberStatus, NamespaceGlob, PeerHandshake,
    Status, PROTOCOL_VERSION,
};
use crate::storage::{Log, Offset};

/// The subscription id of a peer connection's replication stream (a peer connection has no
/// other subscription).
const PEER_SUBSCRIPTION: u32 = 0;

/// Where dialing one address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    /// Dial when the monotonic clock reaches `due_ms`.
    Waiting { due_ms: u64 },
    /// A Dial action is out, or the dialed connection is in its handshake.
    Dialing,
    /// The actor behind this address is connected (over this or another connection).
    Satisfied,
    /// This address reaches this node itself, or a node with the same actor id: never dialed.
    Own,
}

/// An address this node dials.
#[derive(Debug, Clone)]
struct Target {
    state: TargetState,
    /// Failed attempts since the last successful handshake (drives the back-off).
    attempt: u32,
    /// The actor this address turned out to reach, once a handshake told us.
    actor: Option<ActorId>,
}

/// What this node knows about another member.
#[derive(Debug, Clone)]
struct MemberInfo {
    addr: SocketAddr,
    /// The established connection to it, if any.
    conn: Option<ConnId>,
    /// Its vector as of its last handshake with this node, since this node started.
    handshake_vector: Option<VersionVector>,
}

/// The refusal of produces after a start that may have lost acknowledged events (a
/// non-`always` fsync policy): until every known peer has shaken hands and this node holds all
/// of its own events that the peer held, or until the time-out.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Off,
    /// Not yet started (the engine learns the time with its first input).
    Pending {
        timeout_ms: u64,
    },
    On {
        deadline_ms: u64,
    },
}

/// The cluster state of one engine.
#[derive(Debug)]
pub(super) struct Cluster {
    targets: BTreeMap<SocketAddr, Target>,
    members: BTreeMap<ActorId, MemberInfo>,
    rng_state: u64,
    hold: Hold,
    /// PeerEvent frames were received this turn on these connections.
    credit_due: Vec<ConnId>,
}

impl Cluster {
    /// `held`: the log's vector. If it holds events of other actors, this node has been a
    /// cluster member even if it has no `--peer-addr`.
    ///
    /// A log that already holds events of more actors than `actors_max` (written before the
    /// limit existed, or under a higher one) is served as it is: nothing stored is refused or
    /// dropped, only events of further new actors are. Its vector still encodes (at most
    /// 65,535 entries); peers whose limit is lower refuse its handshake, which is logged.
    pub(super) fn new(config: &super::EngineConfig, held: &VersionVector) -> Cluster {
        let foreign_events = held.iter().any(|(a, _)| a != config.actor_id);
        if held.len() > config.cluster.actors_max {
            log::warn!(
                "the log holds events of {} actors, over the limit of {}: they are served, but events of new actors are refused, and peers with the same limit refuse this node's handshake",
                held.len(),
                config.cluster.actors_max
            );
        }
        let mut targets = BTreeMap::new();
        for addr in &config.cluster.peer_addrs {
            let state = if Some(*addr) == config.advertised_addr {
                TargetState::Own
            } else {
                TargetState::Waiting { due_ms: 0 }
            };
            let target = Target {
                state,
                attempt: 0,
                actor: None,
            };
            targets.insert(*addr, target);
        }
        let hold = match config.catch_up_timeout_ms {
            Some(timeout_ms) if !config.cluster.peer_addrs.is_empty() || foreign_events => {
                Hold::Pending { timeout_ms }
            }
            _ => Hold::Off,
        };
        Cluster {
            targets,
            members: BTreeMap::new(),
            // xorshift must not start at 0.
            rng_state: config.seed | 1,
            hold,
            credit_due: Vec::new(),
        }
    }

    fn next_random(&mut self) -> u64 {
        crate::random::next_u64(&mut self.rng_state)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<L: Log> Engine<L> {
    /// An outbound connection to `addr` (asked for with [`Action::Dial`]) is connected: the
    /// engine sends PeerHello on it.
    pub fn handle_dialed(&mut self, now: Now, conn: ConnId, addr: SocketAddr) {
        self.observe_time(now);
        self.handle_connect(now, conn);
        let deadline_ms = now.monotonic.0 + super::millis(self.config.handshake_timeout);
        // Just inserted by `handle_connect`.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::PeerAwaitingWelcome { addr, deadline_ms };
        let hello = self.own_handshake();
        self.send(conn, &Frame::PeerHello(hello));
    }

    /// Dialing `addr` failed (refused, unreachable, timed out).
    pub fn handle_dial_failed(&mut self, now: Now, addr: SocketAddr) {
        self.observe_time(now);
        log::debug!("could not connect to peer {addr}");
        self.target_failed(addr);
    }

    /// The cluster status, as a StatusRequest answers it.
    pub fn status(&self) -> Status {
        let durable_end = self.log.durable_end();
        let mut members = Vec::new();
        for (actor, member) in &self.cluster.members {
            let (state, vector, lag) = match member.conn.and_then(|c| self.conn(c)) {
                Some(connection) => match connection.subscriptions.get(&PEER_SUBSCRIPTION) {
                    Some(sub) => (
                        MemberState::Connected,
                        sub.filter.vector.clone(),
                        durable_end.0.saturating_sub(sub.next.0),
                    ),
                    None => (MemberState::Connected, VersionVector::new(), 0),
                },
                None => (
                    self.target_state_of(member.addr),
                    member.handshake_vector.clone().unwrap_or_default(),
                    0,
                ),
            };
            members.push(MemberStatus {
                actor_id: actor.0,
                addr: member.addr.to_string(),
                state,
                vector,
                lag,
            });
        }
        // Addresses not yet identified by a handshake are listed with actor 0.
        for (addr, target) in &self.cluster.targets {
            if target.actor.is_none() && target.state != TargetState::Own {
                members.push(MemberStatus {
                    actor_id: 0,
                    addr: addr.to_string(),
                    state: self.target_state_of(*addr),
                    vector: VersionVector::new(),
                    lag: 0,
                });
            }
        }
        Status {
            actor_id: self.config.actor_id.0,
            counter: self.counter,
            event_count: self.log.stats().event_count,
            durable_end: durable_end.0,
            vector: self.log.version_vector().clone(),
            members,
        }
    }

    /// True while produces are refused because the node is catching up with its peers after
    /// a start that may have lost acknowledged events.
    pub fn is_holding_produces(&self) -> bool {
        !matches!(self.cluster.hold, Hold::Off)
    }

    /// The actors this node has an established peer connection to.
    pub fn connected_peers(&self) -> Vec<ActorId> {
        let members = self.cluster.members.iter();
        members
            .filter(|(_, m)| m.conn.is_some())
            .map(|(a, _)| *a)
            .collect()
    }

    fn target_state_of(&self, addr: SocketAddr) -> MemberState {
        match self.cluster.targets.get(&addr).map(|t| t.state) {
            Some(TargetState::Dialing) => MemberState::Connecting,
            Some(TargetState::Satisfied) => MemberState::Connected,
            Some(TargetState::Waiting { .. }) | Some(TargetState::Own) | None => {
                MemberState::BackingOff
            }
        }
    }

    pub(super) fn on_status_request(&mut self, conn: ConnId) {
        let status = self.status();
        self.send(conn, &Frame::Status(status));
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

    fn member_list(&self, except: Option<ActorId>) -> Vec<Member> {
        let members = self.cluster.members.iter();
        members
            .filter(|(actor, _)| Some(**actor) != except)
            .map(|(actor, m)| Member {
                actor_id: actor.0,
                addr: m.addr.to_string(),
            })
            .collect()
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
    pub(super) fn on_peer_hello(&mut self, conn: ConnId, hello: PeerHandshake) -> bool {
        if !self.config.accepts_peers && self.config.cluster.peer_addrs.is_empty() {
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
        self.send(conn, &Frame::PeerWelcome(welcome));
        if !self.resolve_duplicate(conn, actor, actor) {
            return false;
        }
        self.establish(conn, actor, actor, hello);
        true
    }

    /// PeerWelcome on a connection this node dialed.
    pub(super) fn on_peer_welcome(
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
    pub(super) fn on_peer_refused(&mut self, conn: ConnId, addr: SocketAddr, error: ErrorFrame) {
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

    fn mark_own(&mut self, addr: SocketAddr) {
        if let Some(target) = self.cluster.targets.get_mut(&addr) {
            target.state = TargetState::Own;
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
        let existing_dialed_by = match self.conn(existing).map(|c| c.phase) {
            Some(Phase::Peer { dialed_by, .. }) => dialed_by,
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
        // Checked by the callers: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.phase = Phase::Peer { actor, dialed_by };
        connection.peer_credit_given = u64::from(window);
        connection.subscriptions.insert(
            PEER_SUBSCRIPTION,
            Subscription {
                id: PEER_SUBSCRIPTION,
                glob,
                filter: Cursor::from_vector(their_vector.clone()),
                next,
                remaining: None,
                tail: true,
                credit: 0,
                caught_up_sent: true,
                queued: false,
                peer: true,
            },
        );
        self.send(conn, &Frame::PeerCredit { count: window });
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

    /// Records an established connection to `actor`: its address, connection and handshake
    /// vector; its dial targets are satisfied. Returns true when the member is new.
    fn record_member(
        &mut self,
        conn: ConnId,
        actor: ActorId,
        addr: Option<SocketAddr>,
        their_vector: VersionVector,
    ) -> bool {
        let mut changed = false;
        match self.cluster.members.get_mut(&actor) {
            Some(member) => {
                member.conn = Some(conn);
                member.handshake_vector = Some(their_vector);
                if let Some(addr) = addr {
                    member.addr = addr;
                }
            }
            None => {
                if let Some(addr) = addr {
                    let member = MemberInfo {
                        addr,
                        conn: Some(conn),
                        handshake_vector: Some(their_vector),
                    };
                    self.cluster.members.insert(actor, member);
                    changed = true;
                }
            }
        }
        if let Some(addr) = addr {
            self.add_target(addr, Some(actor));
        }
        for target in self.cluster.targets.values_mut() {
            if target.actor == Some(actor) {
                target.attempt = 0;
                if target.state != TargetState::Own {
                    target.state = TargetState::Satisfied;
                }
            }
        }
        changed
    }

    /// Where the replication stream to a peer with `vector` starts; warns when retention
    /// deleted records the peer may not hold.
    fn peer_start(&mut self, actor: ActorId, vector: &VersionVector) -> Offset {
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
    pub(super) fn warn_peer_retention_gaps(&mut self) {
        let start = self.log.start();
        for connection in self.conns.iter_mut().flatten() {
            let Phase::Peer { actor, .. } = connection.phase else {
                continue;
            };
            if let Some(sub) = connection.subscriptions.get_mut(&PEER_SUBSCRIPTION) {
                if sub.next < start {
                    log::warn!(
                        "peer {actor} has a gap: retention deleted records {}..{start} before they were sent to it",
                        sub.next
                    );
                    sub.next = start;
                }
            }
        }
    }

    /// Adds members learned from a peer, up to `members_max` members in all; returns true
    /// when the member set changed.
    fn learn_members(&mut self, members: &[Member]) -> bool {
        let mut changed = false;
        for member in members {
            let actor = ActorId(member.actor_id);
            if actor == self.config.actor_id || actor.0 == 0 {
                continue;
            }
            let known = &self.cluster.members;
            if !known.contains_key(&actor) && known.len() >= self.config.cluster.members_max {
                log::warn!(
                    "ignoring members beyond the limit of {}, starting with actor {actor} at {:?}",
                    self.config.cluster.members_max,
                    member.addr
                );
                break;
            }
            let Ok(addr) = member.addr.parse::<SocketAddr>() else {
                log::warn!(
                    "ignoring member {actor} with invalid address {:?}",
                    member.addr
                );
                continue;
            };
            if let std::collections::btree_map::Entry::Vacant(entry) =
                self.cluster.members.entry(actor)
            {
                entry.insert(MemberInfo {
                    addr,
                    conn: None,
                    handshake_vector: None,
                });
                log::info!("learned of member {actor} at {addr}");
                changed = true;
            }
            self.add_target(addr, Some(actor));
        }
        changed
    }

    fn add_target(&mut self, addr: SocketAddr, actor: Option<ActorId>) {
        if Some(addr) == self.config.advertised_addr {
            return;
        }
        let connected = actor
            .and_then(|a| self.cluster.members.get(&a))
            .is_some_and(|m| m.conn.is_some());
        let target = self.cluster.targets.entry(addr).or_insert(Target {
            state: TargetState::Waiting { due_ms: 0 },
            attempt: 0,
            actor,
        });
        if target.actor.is_none() {
            target.actor = actor;
        }
        if connected && matches!(target.state, TargetState::Waiting { .. }) {
            target.state = TargetState::Satisfied;
        }
    }

    fn broadcast_members(&mut self) {
        let peers: Vec<(ConnId, ActorId)> = self
            .cluster
            .members
            .iter()
            .filter_map(|(actor, m)| m.conn.map(|c| (c, *actor)))
            .collect();
        for (conn, actor) in peers {
            let list = self.member_list(Some(actor));
            self.send(conn, &Frame::PeerMembers(list));
        }
    }

    /// A frame on an established peer connection.
    pub(super) fn on_peer_frame(&mut self, conn: ConnId, frame: Frame) -> bool {
        match frame {
            Frame::PeerEvent(event) => return self.on_peer_event(conn, event),
            Frame::PeerCredit { count } => {
                if count > 0 {
                    if let Some(sub) = self.subscription_mut(conn, PEER_SUBSCRIPTION) {
                        sub.credit = sub.credit.saturating_add(u64::from(count));
                    }
                    self.mark_ready(conn, PEER_SUBSCRIPTION);
                }
            }
            Frame::PeerMembers(members) => {
                if self.learn_members(&members) {
                    self.broadcast_members();
                }
            }
            Frame::Error(error) => {
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
            Frame::PeerHello(_)
            | Frame::PeerWelcome(_)
            | Frame::Hello(_)
            | Frame::Produce(_)
            | Frame::ProduceBatch(_)
            | Frame::Subscribe(_)
            | Frame::Credit { .. }
            | Frame::Unsubscribe { .. }
            | Frame::Ping { .. }
            | Frame::StatusRequest
            | Frame::Status(_)
            | Frame::Welcome(_)
            | Frame::Ack(_)
            | Frame::Event { .. }
            | Frame::CaughtUp { .. }
            | Frame::Skipped { .. }
            | Frame::End { .. }
            | Frame::Pong { .. } => {
                return self.close_with_error(
                    conn,
                    ErrorCode::UnexpectedFrame,
                    "only PeerEvent, PeerCredit and PeerMembers are valid on a peer connection after the handshake",
                )
            }
        }
        true
    }

    /// A replicated event: appended unless this node already holds its actor's counter.
    fn on_peer_event(&mut self, conn: ConnId, event: Event) -> bool {
        // Checked by the caller: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        if connection.peer_credit_given == 0 {
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
        connection.peer_credit_given -= 1;
        connection.peer_events_this_turn += 1;
        if connection.peer_events_this_turn == 1 {
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
        if !self.turn_namespaces.contains(&event.namespace) {
            self.turn_namespaces.insert(event.namespace.clone());
        }
        match self.log.append(event) {
            Ok(_) => {
                self.counter = self.counter.max(id.counter);
                self.stats.events_replicated += 1;
            }
            Err(error) => {
                log::error!("append of replicated event {id} failed: {error}");
                self.turn_failure = Some(format!("the events were not stored: {error}"));
            }
        }
        true
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
    pub(super) fn after_sync_peers(&mut self, failed: bool) {
        let due = std::mem::take(&mut self.cluster.credit_due);
        if failed {
            let peers = self.peer_conns();
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
            let count = std::mem::take(&mut connection.peer_events_this_turn);
            let count = count.min((window - connection.peer_credit_given.min(window)) as u32);
            if count > 0 {
                connection.peer_credit_given += u64::from(count);
                self.send(conn, &Frame::PeerCredit { count });
            }
        }
    }

    /// A connection was forgotten (closed by either side): if it was a peer connection,
    /// schedule a reconnect.
    pub(super) fn peer_connection_gone(&mut self, conn: ConnId, phase: Phase) {
        match phase {
            Phase::PeerAwaitingWelcome { addr, .. } => self.target_failed(addr),
            Phase::Peer { actor, .. } => {
                let Some(member) = self.cluster.members.get_mut(&actor) else {
                    return;
                };
                if member.conn != Some(conn) {
                    return;
                }
                member.conn = None;
                log::info!("{conn}: peer {actor} disconnected");
                let addrs: Vec<SocketAddr> = self
                    .cluster
                    .targets
                    .iter()
                    .filter(|(_, t)| t.actor == Some(actor) && t.state == TargetState::Satisfied)
                    .map(|(addr, _)| *addr)
                    .collect();
                for addr in addrs {
                    self.target_failed(addr);
                }
            }
            Phase::AwaitingHello { .. } | Phase::Ready | Phase::Closing { .. } => {}
        }
    }

    /// Schedules the next dial of `addr` with capped exponential back-off and jitter.
    fn target_failed(&mut self, addr: SocketAddr) {
        let now_ms = self.now_ms;
        let initial = super::millis(self.config.cluster.dial_backoff_initial).max(1);
        let max = super::millis(self.config.cluster.dial_backoff_max).max(initial);
        let random = self.cluster.next_random();
        let Some(target) = self.cluster.targets.get_mut(&addr) else {
            return;
        };
        if target.state == TargetState::Own {
            return;
        }
        let delay = initial
            .saturating_mul(1u64 << target.attempt.min(20))
            .min(max);
        // Jitter: between half the delay and the whole of it.
        let delay = delay / 2 + random % (delay / 2 + 1);
        target.attempt = target.attempt.saturating_add(1);
        if target.attempt >= self.config.cluster.discovery_attempts_max
            && !self.config.cluster.peer_addrs.contains(&addr)
        {
            // A discovered address is forgotten once it failed this often, unless its member
            // answered a handshake since this node started (then it is a real member that is
            // down, and is redialed at the capped back-off).
            let actor = target.actor;
            let member = actor.and_then(|a| self.cluster.members.get(&a));
            let answered = member.is_some_and(|m| m.handshake_vector.is_some() || m.conn.is_some());
            if !answered {
                let attempts = target.attempt;
                self.cluster.targets.remove(&addr);
                if let Some(actor) = actor {
                    if member.is_some_and(|m| m.addr == addr) {
                        self.cluster.members.remove(&actor);
                    }
                }
                log::info!(
                    "forgetting discovered member at {addr}: it never answered in {attempts} attempts"
                );
                return;
            }
        }
        target.state = TargetState::Waiting {
            due_ms: now_ms + delay,
        };
    }

    /// Emits Dial actions for targets whose time came; called at every turn end.
    pub(super) fn dial_due(&mut self, now: Now) {
        let mut due = Vec::new();
        for (addr, target) in &mut self.cluster.targets {
            let TargetState::Waiting { due_ms } = target.state else {
                continue;
            };
            let connected = target
                .actor
                .and_then(|a| self.cluster.members.get(&a))
                .is_some_and(|m| m.conn.is_some());
            if connected {
                target.state = TargetState::Satisfied;
            } else if now.monotonic.0 >= due_ms {
                target.state = TargetState::Dialing;
                due.push(*addr);
            }
        }
        for addr in due {
            log::debug!("dialing peer {addr}");
            self.closing.push_back(Action::Dial { addr });
        }
    }

    /// The earliest time a waiting target is due, if any.
    pub(super) fn next_dial_ms(&self) -> Option<u64> {
        let targets = self.cluster.targets.values();
        targets
            .filter_map(|t| match t.state {
                TargetState::Waiting { due_ms } => Some(due_ms),
                _ => None,
            })
            .min()
    }

    /// The connections that completed a peer handshake.
    fn peer_conns(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .flatten()
            .filter(|c| matches!(c.phase, Phase::Peer { .. }))
            .map(|c| c.id)
            .collect()
    }

    /// Keep-alives for peer connections (a PeerCredit of 0), so idle time-outs only close dead
    /// ones.
    pub(super) fn peer_keepalives(&mut self) {
        let peers = self.peer_conns();
        for conn in peers {
            self.send(conn, &Frame::PeerCredit { count: 0 });
        }
    }

    /// True when produces must be refused now.
    pub(super) fn produces_held(&self) -> bool {
        matches!(self.cluster.hold, Hold::On { .. } | Hold::Pending { .. })
    }

    /// Starts, or releases, the catch-up hold; called at every turn end.
    pub(super) fn update_hold(&mut self, now: Now) {
        match self.cluster.hold {
            Hold::Off => {}
            Hold::Pending { timeout_ms } => {
                log::warn!(
                    "started with fsync policy other than always and peers configured: refusing produces (NotReady) until this node has caught up with every known peer, or for at most {timeout_ms} ms, so that it cannot reuse the ids of events it lost in an unclean shutdown"
                );
                self.cluster.hold = Hold::On {
                    deadline_ms: now.monotonic.0.saturating_add(timeout_ms),
                };
            }
            Hold::On { deadline_ms } => {
                if self.caught_up_with_peers() {
                    log::info!("caught up with every known peer: accepting produces");
                    self.cluster.hold = Hold::Off;
                } else if now.monotonic.0 >= deadline_ms {
                    log::warn!(
                        "catch-up time-out passed before every peer was reached: accepting produces; if an unreachable peer holds events this node lost in an unclean shutdown, their ids may be reused"
                    );
                    self.cluster.hold = Hold::Off;
                }
            }
        }
    }

    /// Every known target has shaken hands since start-up, and this node holds every one of
    /// its own events that each of those peers held at its handshake.
    ///
    /// "Known" includes every actor whose events the log holds: a node that forgot its member
    /// list in a restart still knows those actors were members, and waits until they have
    /// connected (they dial it, or its peers tell it their addresses).
    fn caught_up_with_peers(&self) -> bool {
        let own = self.config.actor_id;
        let held = self.log.version_vector().get(own);
        let handshaken = |actor: ActorId| {
            self.cluster
                .members
                .get(&actor)
                .is_some_and(|m| m.handshake_vector.is_some())
        };
        let log_actors_known = self
            .log
            .version_vector()
            .iter()
            .all(|(actor, _)| actor == own || handshaken(actor));
        if !log_actors_known {
            return false;
        }
        let targets_known = self.cluster.targets.values().all(|t| match t.state {
            TargetState::Own => true,
            _ => t
                .actor
                .and_then(|a| self.cluster.members.get(&a))
                .is_some_and(|m| m.handshake_vector.is_some()),
        });
        let members_caught_up = self
            .cluster
            .members
            .values()
            .all(|m| match &m.handshake_vector {
                Some(vector) => vector.get(own) <= held,
                None => false,
            });
        targets_known && members_caught_up
    }
}
