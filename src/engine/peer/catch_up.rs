//! The catch-up hold: after a start that may have lost acknowledged events, produces are
//! refused until this node holds every own event its peers held, or until the time-out.

use super::TargetState;
use crate::engine::{Engine, Now};
use crate::event::ActorId;
use crate::storage::Log;

/// The refusal of produces after a start that may have lost acknowledged events (a
/// non-`always` fsync policy): until every known peer has shaken hands and this node holds all
/// of its own events that the peer held, or until the time-out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hold {
    Off,
    /// Not yet started (the engine learns the time with its first input).
    Pending {
        timeout_ms: u64,
        /// Held because the data directory is new (or was lost), not for the fsync policy.
        fresh: bool,
    },
    On {
        deadline_ms: u64,
    },
}

impl<L: Log> Engine<L> {
    /// True while produces are refused because the node is catching up with its peers after
    /// a start that may have lost acknowledged events.
    pub fn is_holding_produces(&self) -> bool {
        !matches!(self.cluster.hold, Hold::Off)
    }

    /// True when this start's catch-up hold ended by `--catch-up-timeout` rather than by
    /// meeting every member (docs/clustering.md, "After a catch-up time-out").
    pub fn catch_up_timed_out(&self) -> bool {
        self.cluster.hold_timed_out
    }

    /// True when produces must be refused now.
    pub(in crate::engine) fn produces_held(&self) -> bool {
        matches!(self.cluster.hold, Hold::On { .. } | Hold::Pending { .. })
    }

    /// Starts, or releases, the catch-up hold; called at every turn end.
    pub(in crate::engine) fn update_hold(&mut self, now: Now) {
        match self.cluster.hold {
            Hold::Off => {}
            Hold::Pending { timeout_ms, fresh } => {
                if fresh {
                    // The usual first start of a new member; also the start after a lost
                    // data directory, which this node cannot tell apart.
                    log::info!(
                        "new (or lost) data directory: refusing produces (NotReady) until this node has met every known member and received back its own events they hold, or for at most {timeout_ms} ms (--catch-up-timeout), so that it never gives the id of an event it lost to a new one"
                    );
                } else {
                    log::warn!(
                        "started with peers and an fsync policy other than always, which may have lost acknowledged events in an unclean shutdown: refusing produces (NotReady) until this node has met every known member and received back its own events they hold, or for at most {timeout_ms} ms (--catch-up-timeout), so that it never gives the id of an event it lost to a new one"
                    );
                }
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
                        "catch-up time-out passed before this node met every known member: accepting produces; if a member not met holds events this node lost (an unclean shutdown, a lost data directory), their ids may be given again, and id-order consumers may see some events late (docs/clustering.md, \"After a catch-up time-out\")"
                    );
                    self.cluster.hold = Hold::Off;
                    self.cluster.hold_timed_out = true;
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
            .all(|(actor, _)| actor == own || handshaken(actor) || self.is_removed(actor));
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
