//! Membership and dialing: the members learned from handshakes and PeerMembers, the dial
//! targets with capped exponential back-off, and what a lost peer connection schedules.

use std::net::SocketAddr;

use super::{MemberInfo, Target, TargetState};
use crate::engine::{Action, ConnId, Engine, Now, PeerConn, Phase};
use crate::event::{ActorId, EventId, VersionVector};
use crate::protocol::{Member, PeerFrame};
use crate::storage::Log;

impl<L: Log> Engine<L> {
    /// Dialing `addr` failed (refused, unreachable, timed out).
    pub fn handle_dial_failed(&mut self, now: Now, addr: SocketAddr) {
        self.observe_time(now);
        log::debug!("could not connect to peer {addr}");
        self.target_failed(addr);
        self.debug_check_invariants();
    }

    /// The actors this node has an established peer connection to.
    pub fn connected_peers(&self) -> Vec<ActorId> {
        let members = self.cluster.members.iter();
        members
            .filter(|(_, m)| m.conn.is_some())
            .map(|(a, _)| *a)
            .collect()
    }

    pub(super) fn member_list(&self, except: Option<ActorId>) -> Vec<Member> {
        let members = self.cluster.members.iter();
        members
            .filter(|(actor, _)| Some(**actor) != except)
            .map(|(actor, m)| Member {
                actor_id: actor.0,
                addr: m.addr.to_string(),
            })
            .collect()
    }

    pub(super) fn mark_own(&mut self, addr: SocketAddr) {
        if let Some(target) = self.cluster.targets.get_mut(&addr) {
            target.state = TargetState::Own;
        }
    }

    /// Records an established connection to `actor`: its address, connection and handshake
    /// vector; its dial targets are satisfied. Returns true when the member is new.
    pub(super) fn record_member(
        &mut self,
        conn: ConnId,
        actor: ActorId,
        addr: Option<SocketAddr>,
        their_vector: VersionVector,
    ) -> bool {
        // Id order after a lost data directory (docs/clustering.md, "Losing a data
        // directory"). Lamport: the handshake carries the peer's counters, so this node's
        // next events sort after every event the peer holds, and so after everything the
        // peer can have delivered in id order (its stable clock never passes the events it
        // holds); a node restarted empty thereby creates no event below what its peers
        // delivered before it lost its directory.
        let ahead_max = self
            .counter
            .saturating_add(self.config.cluster.peer_counter_ahead_max)
            .min(EventId::COUNTER_MAX);
        // The peer's claim about this node's own events counts for replicas only up to this
        // node's counter before the handshake moved it: no event of its own above that
        // exists, so a larger claim (up to 2^64 - 2) would make acks of events it never
        // received wait for nothing (docs/clustering.md, "What a member is trusted with").
        let durable_own = their_vector.get(self.config.actor_id).min(self.counter);
        self.counter = self.counter.max(their_vector.counter_max().min(ahead_max));
        // The other way round: a promise the member made before this handshake may be stale
        // (it may have restarted on an empty directory since, with a lower counter). It keeps
        // counting only up to what this node's clocks have already passed; beyond that the
        // member must promise again on this connection.
        let passed = self
            .cluster
            .members
            .values()
            .map(|m| m.clock)
            .fold(self.cluster.own_clock, u64::min);
        let mut changed = false;
        match self.cluster.members.get_mut(&actor) {
            Some(member) => {
                member.conn = Some(conn);
                member.clock = member.clock.min(passed);
                member.clock_received = member.clock_received.min(passed);
                member.clock_sent = 0;
                member.durable_own = durable_own;
                member.handshake_vector = Some(their_vector);
                member.last_vector = None;
                if let Some(addr) = addr {
                    member.addr = addr;
                }
            }
            None => {
                if let Some(addr) = addr {
                    let member = MemberInfo {
                        addr,
                        conn: Some(conn),
                        durable_own,
                        handshake_vector: Some(their_vector),
                        last_vector: None,
                        clock: 0,
                        clock_received: 0,
                        clock_sent: 0,
                        clock_behind_since_ms: None,
                        disconnected_since_ms: self.now_ms,
                    };
                    self.cluster.members.insert(actor, member);
                    changed = true;
                }
            }
        }
        if let Some(addr) = addr {
            if !self.add_target(addr, Some(actor)) {
                log::warn!("not dialing {addr} of member {actor}: this node dials as many addresses as it may");
            }
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

    /// Adds members learned from a peer, up to `members_max` members in all; returns true
    /// when the member set changed.
    pub(super) fn learn_members(&mut self, members: &[Member]) -> bool {
        let mut changed = false;
        let mut ignored_addrs = 0usize;
        for member in members {
            let actor = ActorId(member.actor_id);
            if actor == self.config.actor_id || actor.0 == 0 || self.is_removed(actor) {
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
                    last_vector: None,
                    durable_own: 0,
                    clock: 0,
                    clock_received: 0,
                    clock_sent: 0,
                    clock_behind_since_ms: None,
                    disconnected_since_ms: self.now_ms,
                });
                log::info!("learned of member {actor} at {addr}");
                changed = true;
            }
            if !self.add_target(addr, Some(actor)) {
                ignored_addrs += 1;
            }
        }
        if ignored_addrs > 0 {
            log::warn!(
                "not dialing {ignored_addrs} member addresses a peer listed: this node dials at most {} addresses besides --peer-addr",
                self.config.cluster.members_max
            );
        }
        changed
    }

    /// Adds `addr` to the addresses this node dials. Returns false when it is new and the
    /// table is full: at most `members_max` addresses besides the `--peer-addr`s, so a peer
    /// that lists a known actor under ever new addresses cannot grow it (each would be
    /// dialed).
    pub(super) fn add_target(&mut self, addr: SocketAddr, actor: Option<ActorId>) -> bool {
        if Some(addr) == self.config.advertised_addr {
            return true;
        }
        let targets_max = self.config.cluster.members_max + self.config.cluster.peer_addrs.len();
        if !self.cluster.targets.contains_key(&addr) && self.cluster.targets.len() >= targets_max {
            return false;
        }
        let connected = actor
            .and_then(|a| self.cluster.members.get(&a))
            .is_some_and(|m| m.conn.is_some());
        let target = self.cluster.targets.entry(addr).or_insert(Target {
            state: TargetState::Waiting { due_ms: 0 },
            attempt: 0,
            actor,
            known_since_ms: self.now_ms,
            refused: None,
        });
        if target.actor.is_none() {
            target.actor = actor;
        }
        if connected && matches!(target.state, TargetState::Waiting { .. }) {
            target.state = TargetState::Satisfied;
        }
        true
    }

    pub(super) fn broadcast_members(&mut self) {
        let peers: Vec<(ConnId, ActorId)> = self
            .cluster
            .members
            .iter()
            .filter_map(|(actor, m)| m.conn.map(|c| (c, *actor)))
            .collect();
        for (conn, actor) in peers {
            let list = self.member_list(Some(actor));
            self.send(conn, &PeerFrame::PeerMembers(list));
        }
    }

    /// A connection was forgotten (closed by either side): if it was a peer connection,
    /// schedule a reconnect.
    /// `stream_vector`: the vector of the connection's replication stream when it ended (what
    /// this node knew the member held, or had sent it), kept for Status.
    pub(in crate::engine) fn peer_connection_gone(
        &mut self,
        conn: ConnId,
        phase: Phase,
        stream_vector: Option<VersionVector>,
    ) {
        match phase {
            Phase::PeerAwaitingWelcome { addr, .. } | Phase::PeerAwaitingAccept { addr, .. } => {
                self.target_failed(addr)
            }
            Phase::Peer(PeerConn { actor, .. }) => {
                let Some(member) = self.cluster.members.get_mut(&actor) else {
                    return;
                };
                if member.conn != Some(conn) {
                    return;
                }
                member.conn = None;
                if stream_vector.is_some() {
                    member.last_vector = stream_vector;
                }
                // `handle_closed` carries no time: the last time the engine was given is at
                // most one reactor turn old.
                member.disconnected_since_ms = self.now_ms;
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
            Phase::AwaitingHello { .. }
            | Phase::Client(_)
            | Phase::PeerAwaitingProof { .. }
            | Phase::Closing { .. } => {}
        }
    }

    /// Schedules the next dial of `addr` with capped exponential back-off and jitter.
    fn target_failed(&mut self, addr: SocketAddr) {
        let now_ms = self.now_ms;
        let initial = super::super::millis(self.config.cluster.dial_backoff_initial).max(1);
        let max = super::super::millis(self.config.cluster.dial_backoff_max).max(initial);
        let random = self.cluster.next_random();
        // While a node on an empty data directory waits for every member it knows, it
        // forgets none: the one down may hold its old events (docs/clustering.md, "Losing a
        // data directory"); they stay bounded by `members_max` and the capped back-off.
        let waiting = self.empty_dir_hold_waits();
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
            && !waiting
        {
            // A discovered address is forgotten once it failed this often, unless its member
            // answered a handshake since this node started (then it is a real member that is
            // down, and is redialed at the capped back-off).
            let actor = target.actor;
            let member = actor.and_then(|a| self.cluster.members.get(&a));
            // A member of the data directory's list answered before a restart.
            let persisted = actor.is_some_and(|a| self.cluster.records.contains_key(&a));
            let answered = persisted
                || member.is_some_and(|m| m.handshake_vector.is_some() || m.conn.is_some());
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
    pub(in crate::engine) fn dial_due(&mut self, now: Now) {
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
    pub(in crate::engine) fn next_dial_ms(&self) -> Option<u64> {
        let targets = self.cluster.targets.values();
        targets
            .filter_map(|t| match t.state {
                TargetState::Waiting { due_ms } => Some(due_ms),
                _ => None,
            })
            .min()
    }
}
