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
//!
//! This file holds the cluster state and the status; `handshake` admits peers, `replication`
//! runs the streams, `membership` learns members and dials them, `catch_up` holds produces
//! after an unclean start.

mod catch_up;
mod clock;
mod handshake;
mod membership;
mod proof_failures;
mod removal;
mod replication;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{ConnId, Engine, PeerConn, Phase};
use crate::event::{ActorId, VersionVector};
use crate::protocol::{
    ErrorCode, MemberState, MemberStatus, PeerFrame, PeerNonce, ServerFrame, Status,
};
use crate::storage::Log;
use catch_up::Hold;

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
    /// When (monotonic ms) this node learned of the address: for Status while no handshake
    /// has identified it.
    known_since_ms: u64,
    /// The code of the Error with which the node at this address last refused this node's
    /// handshake, until a handshake with it completes: for the catch-up hold's "waits for"
    /// (an address that refuses is not one that "never answered"). Only the code is kept:
    /// the peer's message is logged when it arrives.
    refused: Option<ErrorCode>,
}

/// What this node knows about another member.
#[derive(Debug, Clone)]
struct MemberInfo {
    addr: SocketAddr,
    /// The established connection to it, if any.
    conn: Option<ConnId>,
    /// Its vector as of its last handshake with this node, since this node started.
    handshake_vector: Option<VersionVector>,
    /// Its replication stream's vector when its last connection ended: what this node knew
    /// it held or had sent it (for Status while it is not connected).
    last_vector: Option<VersionVector>,
    /// The highest of this node's own counters that the member is known to hold durably: its
    /// entry for this node in its last handshake vector, then raised by the PeerCredit it
    /// returns after its sync (credit comes back in the order the events were sent).
    durable_own: u64,
    /// Id order: the member's promised clock, committed after a successful sync
    /// (`clock.rs`); 0 until it promised anything since this node started.
    clock: u64,
    /// The largest clock it promised, committed or not yet.
    clock_received: u64,
    /// The clock this node last promised it on its current connection.
    clock_sent: u64,
    /// While `clock` is below this node's own clock: since when (monotonic ms) it has held
    /// it back without moving (for Status: `clock.rs`).
    clock_behind_since_ms: Option<u64>,
    /// While `conn` is `None`: since when (monotonic ms) it has been without a connection
    /// (its connection ended, or this node learned of it then).
    disconnected_since_ms: u64,
}

impl crate::engine::connection::Connection {
    /// The vector of a peer connection's replication stream: what this node knows the peer
    /// holds or has sent it (None for other connections).
    pub(in crate::engine) fn stream_vector(&self) -> Option<VersionVector> {
        if !matches!(self.phase, Phase::Peer(_)) {
            return None;
        }
        let stream = self.subscriptions.get(&PEER_SUBSCRIPTION)?;
        Some(stream.filter.vector.clone())
    }
}

impl MemberInfo {
    /// A member without a connection, since `since_ms`.
    fn disconnected(addr: SocketAddr, since_ms: u64) -> MemberInfo {
        MemberInfo {
            addr,
            conn: None,
            handshake_vector: None,
            last_vector: None,
            durable_own: 0,
            clock: 0,
            clock_received: 0,
            clock_sent: 0,
            clock_behind_since_ms: None,
            disconnected_since_ms: since_ms,
        }
    }
}

/// The cluster state of one engine.
#[derive(Debug)]
pub(super) struct Cluster {
    targets: BTreeMap<SocketAddr, Target>,
    members: BTreeMap<ActorId, MemberInfo>,
    /// The member list of the data directory (`removal.rs`): every member that completed a
    /// handshake, and every removed member.
    records: BTreeMap<ActorId, crate::storage::MemberRecord>,
    rng_state: u64,
    /// HMAC key of the handshake nonces (`nonce_key` and `seed` of the engine config).
    nonce_key: ring::hmac::Key,
    /// Nonces made so far: the n-th nonce is the HMAC of n, so none repeats in a run.
    nonce_count: u64,
    hold: Hold,
    /// The catch-up hold ended by its time-out rather than by meeting every member.
    hold_timed_out: bool,
    /// Failed PeerProofs per source address (`proof_failures.rs`).
    proof_failures: proof_failures::ProofFailures,
    /// PeerEvent frames were received this turn on these connections.
    credit_due: Vec<ConnId>,
    /// This node's counter as of its last successful sync: its own events at or below it
    /// are durable, and new ones get higher counters.
    own_clock: u64,
    /// Refusals of an actor id held from another address (`check_actor_address`): logged at
    /// most once a second.
    actor_conflict_log: crate::engine::log_limit::LogLimit,
}

impl Cluster {
    /// `held`: the log's vector. If it holds events of other actors, this node has been a
    /// cluster member even if it has no `--peer-addr`.
    ///
    /// A log that already holds events of more actors than `actors_max` (written before the
    /// limit existed, or under a higher one) is served as it is: nothing stored is refused or
    /// dropped, only events of further new actors are. Its vector still encodes (at most
    /// 65,535 entries); peers whose limit is lower refuse its handshake, which is logged.
    ///
    /// `fresh`: the data directory has never handed out a counter (it has no counter lease).
    /// With peers configured, the node may have lost its directory, so it holds produces
    /// until it caught up with them (whatever its fsync policy), as after an unclean start
    /// but with no time-out unless the operator set one: otherwise it would hand out again
    /// the ids of the events it created before, which a member it has not met may hold. The first produce after the hold writes the lease, so only starts before
    /// that are held again (a restart in the middle of the catch-up is).
    pub(super) fn new(config: &super::EngineConfig, held: &VersionVector, fresh: bool) -> Cluster {
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
                // The engine's clock starts at the server's start.
                known_since_ms: 0,
                refused: None,
            };
            targets.insert(*addr, target);
        }
        let peers = !config.cluster.peer_addrs.is_empty();
        // An empty directory first, whatever the fsync policy: its hold has no time-out
        // unless the operator set one (`--empty-dir-catch-up-timeout`).
        let hold = match config.catch_up_timeout_ms {
            _ if fresh && peers => Hold::Pending {
                timeout_ms: config.catch_up_timeout_fresh_ms,
                fresh: true,
            },
            Some(timeout_ms) if peers || foreign_events => Hold::Pending {
                timeout_ms: Some(timeout_ms),
                fresh: false,
            },
            _ => Hold::Off,
        };
        Cluster {
            targets,
            members: BTreeMap::new(),
            records: BTreeMap::new(),
            // xorshift must not start at 0.
            rng_state: config.seed | 1,
            nonce_key: {
                let mut material = config.nonce_key.to_vec();
                material.extend_from_slice(&config.seed.to_be_bytes());
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &material)
            },
            nonce_count: 0,
            hold,
            hold_timed_out: false,
            proof_failures: proof_failures::ProofFailures::default(),
            credit_due: Vec::new(),
            own_clock: 0,
            actor_conflict_log: Default::default(),
        }
    }

    fn next_random(&mut self) -> u64 {
        crate::random::next_u64(&mut self.rng_state)
    }

    /// A fresh handshake nonce: HMAC-SHA256 of a counter under the start-up key. Unpredictable
    /// without the key (which never leaves the process), and never the same twice in a run;
    /// a restart draws a new key.
    fn next_nonce(&mut self) -> PeerNonce {
        self.nonce_count += 1;
        let mut message = b"flo peer nonce".to_vec();
        message.extend_from_slice(&self.nonce_count.to_be_bytes());
        let tag = ring::hmac::sign(&self.nonce_key, &message);
        let mut nonce = [0u8; crate::protocol::PEER_NONCE_SIZE];
        // An HMAC-SHA256 tag is 32 bytes, the nonce's size.
        nonce.copy_from_slice(tag.as_ref());
        nonce
    }
}

impl<L: Log> Engine<L> {
    /// The cluster status, as a StatusRequest answers it.
    pub fn status(&self) -> Status {
        let durable_end = self.log.durable_end();
        let clock = self.tail.clock();
        let mut members = Vec::new();
        let since = |ms: u64| self.now_ms.saturating_sub(ms);
        for (actor, member) in &self.cluster.members {
            let connected = member.conn.and_then(|c| self.conn(c)).is_some();
            let (state, vector, lag) = match member.conn.and_then(|c| self.conn(c)) {
                Some(connection) => match connection.subscriptions.get(&PEER_SUBSCRIPTION) {
                    Some(sub) => (
                        MemberState::Connected,
                        sub.filter.vector.clone(),
                        durable_end.0.saturating_sub(sub.position.next(clock).0),
                    ),
                    None => (MemberState::Connected, VersionVector::new(), 0),
                },
                None => (
                    self.target_state_of(member.addr),
                    member
                        .last_vector
                        .as_ref()
                        .or(member.handshake_vector.as_ref())
                        .cloned()
                        .unwrap_or_default(),
                    0,
                ),
            };
            members.push(MemberStatus {
                actor_id: actor.0,
                addr: member.addr.to_string(),
                state,
                vector,
                lag,
                disconnected_ms: if connected {
                    0
                } else {
                    since(member.disconnected_since_ms)
                },
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
                    disconnected_ms: since(target.known_since_ms),
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
            order: self.order_status(),
            hold: self.produce_hold(),
        }
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

    /// Status is held with the turn's produce replies and built after the sync: replies
    /// come in order (protocol.md section 14), so it never overtakes the Ack of an earlier
    /// Produce, and it reports only durable state (the turn's appends are synced or
    /// discarded by then). It is counted at the size of a Status built now.
    /// Building a Status visits every connection and subscription (its id-order block), now
    /// and again when it is sent: charged to the turn's frame budget (attack round 8).
    pub(super) fn on_status_request(&mut self, conn: ConnId, hold: bool) {
        self.charge_scan(self.connection_scan_entries().saturating_mul(2));
        let mut encoded = Vec::new();
        crate::protocol::encode(&self.status_frame(hold), &mut encoded);
        let size = encoded.len();
        self.hold_reply(super::PendingReply::Status {
            conn,
            size,
            report: super::Report::Status { hold },
        });
    }

    /// MembersRequest (and the answer to ChangeMember): held in order like Status.
    pub(in crate::engine) fn on_members_request(&mut self, conn: ConnId) {
        let mut encoded = Vec::new();
        crate::protocol::encode(&ServerFrame::Members(self.member_entries()), &mut encoded);
        let size = encoded.len();
        self.hold_reply(super::PendingReply::Status {
            conn,
            size,
            report: super::Report::Members,
        });
    }

    /// The Status frame that answers a StatusRequest now: the one place it is built, both to
    /// count a held request (`on_status_request`) and to send it (`send_reply`). The hold
    /// fields go only to a client that asked for them (`hold`): a client that predates them
    /// refuses a Status with bytes after `waiting_ms` as malformed (protocol.md section 14).
    pub(in crate::engine) fn status_frame(&self, hold: bool) -> ServerFrame {
        let mut status = self.status();
        if !hold {
            status.hold = None;
        }
        ServerFrame::Status(status)
    }

    /// How many other members are known to hold this node's own event `counter` durably.
    pub(in crate::engine) fn durable_members(&self, counter: u64) -> usize {
        let members = self.cluster.members.values();
        members.filter(|m| m.durable_own >= counter).count()
    }

    /// The members that could ever hold this node's events: itself, every member it knows
    /// (connected or not, removed ones excepted), and every configured address no handshake
    /// has identified yet (it may be a member not otherwise known). A produce asking for more
    /// replicas than this is refused at once (`validate_request`).
    pub(in crate::engine) fn members_known(&self) -> usize {
        let unidentified = (self.cluster.targets.values())
            .filter(|t| t.actor.is_none() && t.state != TargetState::Own)
            .count();
        1 + self.cluster.members.len() + unidentified
    }

    /// Member `actor` holds this node's events up to `counter` durably (credit came back).
    pub(in crate::engine) fn cluster_raise_durable_own(&mut self, actor: ActorId, counter: u64) {
        if let Some(member) = self.cluster.members.get_mut(&actor) {
            member.durable_own = member.durable_own.max(counter);
        }
    }

    /// The connections that completed a peer handshake.
    pub(in crate::engine) fn peer_conns(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .flatten()
            .filter(|c| matches!(c.phase, Phase::Peer(_)))
            .map(|c| c.id)
            .collect()
    }

    /// Keep-alives for peer connections (a PeerCredit of 0), so idle time-outs only close dead
    /// ones.
    pub(super) fn peer_keepalives(&mut self) {
        let peers = self.peer_conns();
        for conn in peers {
            self.send(conn, &PeerFrame::PeerCredit { count: 0 });
        }
        self.send_clocks(true);
    }

    /// The cluster's half of [`Engine::check_invariants`]: a member's connection is an
    /// established peer connection to that member, and every established peer connection is
    /// its member's connection.
    pub(in crate::engine) fn check_peer_invariants(&self) {
        assert!(
            self.cluster.proof_failures.len()
                <= self.config.cluster.peer_proof_failure_addresses_max,
            "the failed peer proof table holds {} addresses, over its limit",
            self.cluster.proof_failures.len()
        );
        for (actor, member) in &self.cluster.members {
            if let Some(conn) = member.conn {
                let phase = self.conn(conn).map(|c| &c.phase);
                assert!(
                    matches!(phase, Some(Phase::Peer(peer)) if peer.actor == *actor),
                    "member {actor}: its connection {conn} is not an established peer connection to it ({phase:?})"
                );
            }
        }
        for connection in self.conns.iter().flatten() {
            if let Some(&PeerConn {
                actor,
                events_this_turn,
                ..
            }) = connection.peer()
            {
                assert!(
                    events_this_turn == 0 || self.cluster.credit_due.contains(&connection.id),
                    "{}: PeerEvent credit owed but the connection is not due credit",
                    connection.id
                );
                let member = self.cluster.members.get(&actor).and_then(|m| m.conn);
                assert_eq!(
                    member,
                    Some(connection.id),
                    "{}: an established peer connection that is not member {actor}'s",
                    connection.id
                );
            }
        }
    }
}
