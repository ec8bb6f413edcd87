//! The catch-up hold: after a start that may have lost acknowledged events, produces are
//! refused until this node holds every own event its peers held, or until the time-out. On
//! an empty data directory (perhaps a lost one) there is no time-out unless the operator set
//! one: a member not met may hold events whose ids the node would otherwise give again.

use super::TargetState;
use crate::engine::{Engine, Now};
use crate::event::ActorId;
use crate::protocol::ProduceHold;
use crate::storage::Log;

/// The refusal of produces after a start that may have lost acknowledged events (a
/// non-`always` fsync policy, or an empty data directory): until every known peer has shaken
/// hands and this node holds all of its own events that the peer held, or until the time-out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hold {
    Off,
    /// Not yet started (the engine learns the time with its first input).
    Pending {
        /// `None`: no time-out (an empty directory without `--empty-dir-catch-up-timeout`).
        timeout_ms: Option<u64>,
        /// Held because the data directory is new (or was lost), not for the fsync policy.
        fresh: bool,
    },
    On {
        deadline_ms: Option<u64>,
        fresh: bool,
        /// When the hold started (for Status).
        since_ms: u64,
        /// When to log again whom the hold waits for (a hold without a time-out only).
        remind_ms: u64,
    },
}

/// How often a hold without a time-out logs whom it still waits for.
const HOLD_REMINDER_MS: u64 = 30_000;

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

    /// True while the hold of an empty data directory, with no time-out, is on.
    pub(in crate::engine) fn empty_dir_hold_waits(&self) -> bool {
        matches!(
            self.cluster.hold,
            Hold::Pending {
                timeout_ms: None,
                ..
            } | Hold::On {
                deadline_ms: None,
                ..
            }
        )
    }

    /// The NotReady message for a produce refused by the hold.
    pub(in crate::engine) fn hold_message(&self) -> &'static str {
        match self.empty_dir_hold_waits() {
            true => "this node started on an empty data directory and takes produces only once it has met every member it knows, with no time-out, so that it never gives the id of an event it may have lost to a new one (`flo-client status` on it and its log name the member it waits for; docs/clustering.md, \"Losing a data directory\"); retry shortly",
            false => "this node is catching up with its cluster members after its start: it takes produces once it has met every member it knows (or after --catch-up-timeout); retry shortly",
        }
    }

    /// Starts, or releases, the catch-up hold; called at every turn end.
    pub(in crate::engine) fn update_hold(&mut self, now: Now) {
        let now_ms = now.monotonic.0;
        match self.cluster.hold {
            Hold::Off => {}
            Hold::Pending { timeout_ms, fresh } => {
                let option = if fresh {
                    "--empty-dir-catch-up-timeout"
                } else {
                    "--catch-up-timeout"
                };
                let limit = match timeout_ms {
                    Some(ms) => format!("or for at most {ms} ms ({option})"),
                    None => format!("with no time-out ({option} is not set)"),
                };
                if fresh {
                    // The usual first start of a new member; also the start after a lost
                    // data directory, which this node cannot tell apart.
                    log::info!(
                        "new (or lost) data directory: refusing produces (NotReady) until this node has met every known member and received back its own events they hold, {limit}, so that it never gives the id of an event it lost to a new one"
                    );
                } else {
                    log::warn!(
                        "started with peers and an fsync policy other than always, which may have lost acknowledged events in an unclean shutdown: refusing produces (NotReady) until this node has met every known member and received back its own events they hold, {limit}, so that it never gives the id of an event it lost to a new one"
                    );
                }
                self.cluster.hold = Hold::On {
                    deadline_ms: timeout_ms.map(|ms| now_ms.saturating_add(ms)),
                    fresh,
                    since_ms: now_ms,
                    remind_ms: now_ms.saturating_add(HOLD_REMINDER_MS),
                };
            }
            Hold::On {
                deadline_ms,
                fresh,
                since_ms,
                remind_ms,
            } => {
                if self.caught_up_with_peers() {
                    log::info!("caught up with every known peer: accepting produces");
                    self.cluster.hold = Hold::Off;
                } else if deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
                    if fresh {
                        log::warn!(
                            "--empty-dir-catch-up-timeout passed before this node met every known member: accepting produces; if this node lost its data directory and a member not met holds its events, their ids will be given again to new events, which that member then drops as duplicates (docs/clustering.md, \"Losing a data directory\")"
                        );
                    } else {
                        log::warn!(
                            "catch-up time-out passed before this node met every known member: accepting produces; if a member not met holds events this node lost in an unclean shutdown, this node will not get them back, and id-order consumers may see them late (docs/clustering.md, \"After a catch-up time-out\")"
                        );
                    }
                    self.cluster.hold = Hold::Off;
                    self.cluster.hold_timed_out = true;
                } else if deadline_ms.is_none() && now_ms >= remind_ms {
                    log::warn!(
                        "still refusing produces after a start on an empty data directory: waiting for {}; start it (or heal the network); if it is gone for good, run `flo-client cluster remove ACTOR` on a member this node has met (or drop a --peer-addr that will never answer and restart); --empty-dir-catch-up-timeout takes produces after a time-out at the risk of giving lost ids again (docs/clustering.md, \"Losing a data directory\")",
                        self.hold_waits_for().waits_for
                    );
                    self.cluster.hold = Hold::On {
                        deadline_ms,
                        fresh,
                        since_ms,
                        remind_ms: now_ms.saturating_add(HOLD_REMINDER_MS),
                    };
                }
            }
        }
    }

    /// Whether a member removed from the cluster had the address `addr`: a `--peer-addr` that
    /// never answered since the start is not waited for then (it is still dialed: the address
    /// may belong to a new member now).
    fn removed_at(&self, addr: std::net::SocketAddr) -> bool {
        self.cluster
            .records
            .values()
            .any(|r| r.removed && r.addr.parse::<std::net::SocketAddr>().ok() == Some(addr))
    }

    /// The catch-up hold for Status: `None` when produces are not held.
    pub(in crate::engine) fn produce_hold(&self) -> Option<ProduceHold> {
        let (since_ms, deadline_ms) = match self.cluster.hold {
            Hold::Off => return None,
            // Not started yet: the engine has not seen the time.
            Hold::Pending { .. } => (self.now_ms, None),
            Hold::On {
                since_ms,
                deadline_ms,
                ..
            } => (since_ms, deadline_ms),
        };
        Some(ProduceHold {
            held_ms: self.now_ms.saturating_sub(since_ms),
            // A deadline already passed is released at the next turn end: at least 1 ms.
            timeout_left_ms: deadline_ms.map_or(0, |d| d.saturating_sub(self.now_ms).max(1)),
            ..self.hold_waits_for()
        })
    }

    /// Whom the hold still waits for, for the log and Status: the first address or member
    /// not met, or the first member holding own events this node has not received back yet.
    fn hold_waits_for(&self) -> ProduceHold {
        let waits = |actor: Option<ActorId>, addr: String, waits_for: String| ProduceHold {
            actor_id: actor.map_or(0, |a| a.0),
            addr,
            held_ms: 0,
            timeout_left_ms: 0,
            waits_for,
        };
        let own = self.config.actor_id;
        let held = self.log.version_vector().get(own);
        for (addr, target) in &self.cluster.targets {
            if matches!(target.state, TargetState::Own) {
                continue;
            }
            let met = target
                .actor
                .and_then(|a| self.cluster.members.get(&a))
                .is_some_and(|m| m.handshake_vector.is_some())
                || (target.actor.is_none() && self.removed_at(*addr));
            if !met {
                let text = match (target.actor, target.refused) {
                    (Some(actor), None) => {
                        format!("member {} at {addr}, not met since the start", actor.0)
                    }
                    (None, None) => format!("--peer-addr {addr}, which has never answered"),
                    (Some(actor), Some(code)) => format!(
                        "member {} at {addr}, which refused this node's handshake: {code:?} \
                         (this node's log says why)",
                        actor.0
                    ),
                    (None, Some(code)) => format!(
                        "--peer-addr {addr}, which refused this node's handshake: {code:?} (this \
                         node's log says why)"
                    ),
                };
                return waits(target.actor, addr.to_string(), text);
            }
        }
        for (actor, member) in &self.cluster.members {
            let addr = member.addr.to_string();
            match &member.handshake_vector {
                None if !self.is_removed(*actor) => {
                    let text = format!("member {}, not met since the start", actor.0);
                    return waits(Some(*actor), addr, text);
                }
                Some(vector) if vector.get(own) > held => {
                    let text = format!(
                        "member {} to send back this node's events up to counter {} (it holds up to {held})",
                        actor.0,
                        vector.get(own)
                    );
                    return waits(Some(*actor), addr, text);
                }
                _ => {}
            }
        }
        for (actor, _) in self.log.version_vector().iter() {
            if actor != own && !self.is_removed(actor) {
                let text = format!("member {}, whose events the log holds", actor.0);
                return waits(Some(actor), String::new(), text);
            }
        }
        let text = "no member (the hold ends at the next turn)".to_string();
        waits(None, String::new(), text)
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
        let targets_known = self.cluster.targets.iter().all(|(addr, t)| match t.state {
            TargetState::Own => true,
            _ => {
                t.actor
                    .and_then(|a| self.cluster.members.get(&a))
                    .is_some_and(|m| m.handshake_vector.is_some())
                    || (t.actor.is_none() && self.removed_at(*addr))
            }
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
