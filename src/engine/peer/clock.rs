//! Stable clocks for id order: what each member has promised (PeerClock), what this node
//! promises its peers, and the stable clock id-order subscriptions release events up to.
//!
//! A PeerClock with counter C from member M says: every event of M's own with a counter up to
//! C was sent on this connection before the frame, and M will never create another one (its
//! Lamport counter is at least C). M sends it only when its replication stream to this node
//! is caught up with its whole log, everything of it durable, and once M has reached every
//! address it dials (so the member lists it sent name every member it knows: a member this
//! node has never heard of cannot hold events below a clock it was promised).
//!
//! The promise is committed here only after the turn's sync made the events received before
//! it durable; a failed sync drops it (and closes every peer connection). The node's stable
//! clock is the smallest of its own counter as of its last successful sync and every known
//! member's committed promise (0 for a member that has promised nothing yet, or an address
//! not yet reached): no event with a counter at or below it can still arrive.

use crate::engine::{ConnId, Engine, Phase};
use crate::event::EventId;
use crate::protocol::{ErrorCode, OrderHolder, OrderStatus, PeerFrame};
use crate::storage::Log;

use super::{TargetState, PEER_SUBSCRIPTION};

impl<L: Log> Engine<L> {
    /// The counter up to which every event this node will ever hold is durable here now.
    pub(in crate::engine) fn stable_clock(&self) -> u64 {
        if self.has_unreached_targets() {
            return 0;
        }
        let members = self.cluster.members.values();
        members
            .map(|m| m.clock)
            .fold(self.cluster.own_clock, u64::min)
    }

    /// The stable clock and what holds it back (for the simulation's failure messages).
    pub fn id_order_state(&self) -> (u64, String) {
        let clock = self.tail.clock();
        let members: Vec<String> = self
            .cluster
            .members
            .iter()
            .map(|(a, m)| {
                let stream = m
                    .conn
                    .and_then(|c| self.conn(c))
                    .and_then(|c| c.subscriptions.get(&PEER_SUBSCRIPTION))
                    .map(|s| (s.position.next(clock), s.credit, s.position.is_queued()));
                let given = m.conn.and_then(|c| self.conn(c)).map(|c| match &c.phase {
                    Phase::Peer(peer) => (
                        peer.credit_given,
                        peer.events_this_turn,
                        peer.replication_sent.len(),
                    ),
                    _ => (0, 0, 0),
                });
                format!(
                    "{a}: clock {} sent {} conn {:?} stream {stream:?} given {given:?} end {}",
                    m.clock,
                    m.clock_sent,
                    m.conn,
                    self.log.end()
                )
            })
            .collect();
        let targets: Vec<String> = self
            .cluster
            .targets
            .iter()
            .map(|(addr, t)| format!("{addr}: {:?} {:?}", t.actor, t.state))
            .collect();
        (
            self.stable_clock(),
            format!(
                "{}; own {} counter {}; members {members:?}; targets {targets:?}",
                self.stable_clock_holder(),
                self.cluster.own_clock,
                self.counter
            ),
        )
    }

    /// Says what holds the stable clock back, for OrderStalled and the log.
    pub(in crate::engine) fn stable_clock_holder(&self) -> String {
        if let Some((addr, _)) = self.unreached_target() {
            return format!("the peer at {addr} has not been reached yet");
        }
        let slowest = self.cluster.members.iter().min_by_key(|(_, m)| m.clock);
        match slowest {
            Some((actor, member)) if member.clock < self.cluster.own_clock => {
                let state = if member.conn.is_some() {
                    "connected"
                } else {
                    "disconnected"
                };
                format!(
                    "member {actor} at {} ({state}) has promised only counter {}",
                    member.addr, member.clock
                )
            }
            _ => format!("this node's counter {}", self.cluster.own_clock),
        }
    }

    /// True while an address this node dials has never answered a handshake: its member is
    /// unknown, so nothing can be promised about its events.
    fn has_unreached_targets(&self) -> bool {
        self.unreached_target().is_some()
    }

    /// The first address this node dials that has never answered a handshake.
    fn unreached_target(&self) -> Option<(&std::net::SocketAddr, &super::Target)> {
        self.cluster.targets.iter().find(|(_, t)| {
            t.actor.is_none() && !matches!(t.state, TargetState::Own | TargetState::Satisfied)
        })
    }

    /// A PeerClock from the member on `conn`: remembered until the turn's sync.
    pub(super) fn on_peer_clock(
        &mut self,
        conn: ConnId,
        actor: crate::event::ActorId,
        counter: u64,
    ) -> bool {
        let ahead_max = self
            .counter
            .saturating_add(self.config.cluster.peer_counter_ahead_max)
            .min(EventId::COUNTER_MAX);
        if counter > ahead_max {
            let message = format!(
                "PeerClock {counter} is more than {} above this node's counter {}",
                self.config.cluster.peer_counter_ahead_max, self.counter
            );
            log::error!("{conn}: {message}");
            return self.close_with_error(conn, ErrorCode::MalformedFrame, &message);
        }
        if let Some(member) = self.cluster.members.get_mut(&actor) {
            member.clock_received = member.clock_received.max(counter);
        }
        if let Some(peer) = self.conn_mut(conn).and_then(|c| c.peer_mut()) {
            peer.clock_promised = peer.clock_promised.max(counter);
        }
        true
    }

    /// Turn end, after the sync: commits the promises received this turn (or drops them if
    /// the sync failed), and moves this node's own clock to its counter. Returns true when the
    /// stable clock moved on.
    pub(in crate::engine) fn commit_clocks(&mut self, failed: bool) -> bool {
        let before = self.stable_clock();
        let mut moved = Vec::new();
        for (actor, member) in self.cluster.members.iter_mut() {
            if failed {
                member.clock_received = member.clock;
            } else if member.clock_received > member.clock {
                member.clock = member.clock_received;
                moved.push(*actor);
            }
        }
        // While the catch-up hold is on, own events this node lost may still come back from
        // its peers, below its counter: its own clock waits.
        if !failed && self.log.end() == self.log.durable_end() && !self.produces_held() {
            self.cluster.own_clock = self.cluster.own_clock.max(self.promisable_counter());
        }
        // For Status: since when each member's clock has held this node's back without moving.
        let (own, now_ms) = (self.cluster.own_clock, self.now_ms);
        for (actor, member) in self.cluster.members.iter_mut() {
            member.clock_behind_since_ms = if member.clock >= own {
                None
            } else if moved.contains(actor) {
                Some(now_ms)
            } else {
                Some(member.clock_behind_since_ms.unwrap_or(now_ms))
            };
        }
        self.stable_clock() > before
    }

    /// Id order for Status: the stable clock, what holds it below this node's own clock, and
    /// what the id-order subscriptions have waiting.
    pub(in crate::engine) fn order_status(&self) -> OrderStatus {
        let stable_clock = self.stable_clock();
        let since = |ms: u64| self.now_ms.saturating_sub(ms);
        let held_by = if stable_clock >= self.cluster.own_clock {
            None
        } else if let Some((addr, target)) = self.unreached_target() {
            Some(OrderHolder {
                actor_id: 0,
                addr: addr.to_string(),
                clock: 0,
                held_ms: since(target.known_since_ms),
            })
        } else {
            let slowest = self.cluster.members.iter().min_by_key(|(_, m)| m.clock);
            slowest.map(|(actor, member)| OrderHolder {
                actor_id: actor.0,
                addr: member.addr.to_string(),
                clock: member.clock,
                held_ms: member.clock_behind_since_ms.map_or(0, since),
            })
        };
        let mut order = OrderStatus {
            stable_clock,
            held_by,
            ..OrderStatus::default()
        };
        for connection in self.conns.iter().flatten() {
            for subscription in connection.subscriptions.values() {
                let Some(buffer) = subscription.order.as_ref() else {
                    continue;
                };
                if let Some(since_ms) = buffer.stalled_since_ms() {
                    order.waiting_subscriptions = order.waiting_subscriptions.saturating_add(1);
                    order.waiting_events += buffer.held() as u64;
                    order.waiting_ms = order.waiting_ms.max(since(since_ms));
                }
            }
        }
        order
    }

    /// The highest counter this node may promise: its counter, but no higher than the
    /// counter a restart would start at (the largest counter in its durable log, or its
    /// counter lease). A handshake moves the counter past the events the peer holds without
    /// storing anything, and a received event moves it before its sync; a crash then forgets
    /// that move, and the restarted node would create events below what it promised (the
    /// simulation's seed 8353 did: promised 4194315, then created 4194312 after a restart).
    fn promisable_counter(&self) -> u64 {
        let durable = self.log.version_vector().counter_max();
        self.counter.min(durable.max(self.log.counter_floor()))
    }

    /// Sends each peer the clock this node can promise it, when it is above what that peer
    /// was last told (`force`: also when it is not, as a keep-alive): this node's counter
    /// when the peer's stream has passed every own event in the log, else the highest own
    /// counter the stream has passed.
    pub(in crate::engine) fn send_clocks(&mut self, force: bool) {
        // While the catch-up hold is on, this node may lack own events its peers hold (it
        // lost them), so it cannot say it sent them all; and its counter may already have
        // moved past them at the handshakes.
        if self.has_unreached_targets() || self.produces_held() {
            return;
        }
        let own_held = self.log.version_vector().get(self.config.actor_id);
        let counter = self.promisable_counter();
        let mut due = Vec::new();
        for (actor, member) in &self.cluster.members {
            let Some(conn) = member.conn else {
                continue;
            };
            let Some(Phase::Peer(peer)) = self.conn(conn).map(|c| &c.phase) else {
                continue;
            };
            let promise = if peer.own_passed >= own_held {
                counter
            } else {
                peer.own_passed
            };
            if promise > member.clock_sent || (force && promise > 0) {
                due.push((*actor, conn, promise));
            }
        }
        for (actor, conn, promise) in due {
            self.send(conn, &PeerFrame::PeerClock { counter: promise });
            if let Some(member) = self.cluster.members.get_mut(&actor) {
                member.clock_sent = promise;
            }
        }
    }
}
