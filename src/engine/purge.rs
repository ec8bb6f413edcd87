//! Purges: the Purge and PurgesRequest frames, purge tombstones between peers (PeerPurge),
//! and the check that hides purged events (and those past a per-namespace retention rule)
//! from every reader.
//!
//! A Purge is validated when it arrives and held with the turn's replies; the turn's sync
//! (`handle_turn_sync`) hands every purge of the turn, the clients' and the peers', to
//! `Log::add_purges` in one call, which makes the new set durable (one file write and
//! fdatasync) before any Purged reply goes out: group commit, as for produces. So a flood of
//! purges costs one write per turn, and the turn's input bound limits how many there are.
//!
//! A purge that changed the set is sent to every connected peer as a PeerPurge; a peer merges
//! it the same way (durably, at its next sync) and passes on what changed for it, so the set
//! spreads through any connected cluster and stops (a merge that changes nothing is not passed
//! on). A peer that was down gets the whole set when it connects again: each side sends all its
//! purges after the handshake. Purges merge by keeping the later bound, so the order in which
//! a node learns them does not matter. docs/operations.md ("Purges in a cluster") states the
//! rule for events that arrive after a purge with ids before it: they are hidden too.

use crate::event::{EventId, PurgeBefore, PurgeRule};
use crate::protocol::{
    self, ErrorCode, ErrorFrame, ErrorScope, NamespaceGlob, PeerFrame, Purged, PurgesReply,
    RetentionInfo, ServerFrame,
};
use crate::storage::{Log, PurgeError, PurgeLimits};

use super::{ConnId, Engine, Now, PendingReply};

impl<L: Log> Engine<L> {
    /// A client's Purge: admin only, the glob and the bound checked now, applied at the turn's
    /// sync.
    pub(super) fn on_purge(&mut self, now: Now, conn: ConnId, rule: PurgeRule) {
        if let Err(message) = self.check_admin(conn, "purge") {
            return self.send_error(
                conn,
                ErrorScope::Connection,
                ErrorCode::PermissionDenied,
                &message,
            );
        }
        let length_max = self.config.wire.glob_length_max as usize;
        if let Err(error) = NamespaceGlob::with_length_max(&rule.glob, length_max) {
            let message = format!("cannot purge {:?}: {error}", rule.glob);
            return self.send_error(
                conn,
                ErrorScope::Connection,
                ErrorCode::InvalidGlob,
                &message,
            );
        }
        // Refused in its place among the held Purge answers, so answers stay in order.
        let refusal = self
            .purge_bound_ahead(now, &rule)
            .map(|message| Box::new(error_frame(ErrorCode::PurgeBoundAhead, message)));
        let mut encoded = Vec::new();
        let frame = ServerFrame::Purged(Purged {
            rule: rule.clone(),
            changed: true,
        });
        protocol::encode(&frame, &mut encoded);
        // The answer is a Purged of this size or an Error; the latter's message is bounded
        // by the glob too.
        let size = encoded.len() + 160;
        self.hold_reply(PendingReply::Purge {
            conn,
            rule,
            answer: refusal,
            size,
        });
    }

    /// Why a client's purge bound lies ahead of this server, if it does: a time past its
    /// clock, or an id whose counter is past the next one it would issue (its Lamport counter,
    /// which is at least every counter it has stored, plus one). Such a purge would hide
    /// events not written yet, every later event of the glob up to the bound, with no way
    /// back (bounds only go up). A peer's tombstone is not checked: its bound was checked
    /// against the clock and counter of the member that took the purge, which may be ahead
    /// of this one (docs/operations.md, "Purges in a cluster").
    /// The id the next produce here would get: a purge bound past it (ids are ordered by
    /// counter, then actor: the next counter with a larger actor is past it too) would hide
    /// events not written yet.
    fn next_id(&self) -> EventId {
        EventId {
            counter: self.counter.saturating_add(1),
            actor: self.config.actor_id,
        }
    }

    fn purge_bound_ahead(&self, now: Now, rule: &PurgeRule) -> Option<String> {
        let glob = &rule.glob;
        match rule.before {
            PurgeBefore::Time(ms) if ms > now.wall.0.saturating_add(1) => Some(format!(
                "cannot purge {glob} before {ms} ms since the epoch: that is {} past this \
                 server's clock ({} ms); a purge bound in the future would hide events not \
                 written yet, for good. Purge before a time up to now",
                roughly(ms - now.wall.0),
                now.wall.0
            )),
            PurgeBefore::Id(id) if id > self.next_id() => {
                let next = self.next_id();
                Some(format!(
                    "cannot purge {glob} before {id}: it is past the next id this server would \
                     issue ({next}); a purge bound ahead of the log would hide events not \
                     written yet, for good. Purge before an id this server has stored (an id of another \
                     member once it has replicated here)"
                ))
            }
            PurgeBefore::Time(_) | PurgeBefore::Id(_) => None,
        }
    }

    /// A PeerPurge: merged at this turn's sync like a client's, without a reply. A peer's
    /// glob was checked by the peer; one that does not compile here is refused by the merge.
    /// Under `--peer-purges refuse` it is ignored: logged and counted, never merged or passed
    /// on (PeerPurge has no answer).
    pub(super) fn on_peer_purge(&mut self, rule: PurgeRule) {
        if self.config.cluster.peer_purges == crate::config::PeerPurges::Refuse {
            log::info!(
                "ignoring a peer's purge of {} before {:?}: this node runs with --peer-purges refuse",
                rule.glob,
                rule.before
            );
            self.stats.peer_purges_refused += 1;
            return;
        }
        let length_max = self.config.wire.glob_length_max as usize;
        if rule.glob.len() > length_max {
            log::warn!("ignoring a peer's purge of a glob longer than {length_max} bytes");
            return;
        }
        // Bounded by the peer's input per turn, like every frame.
        self.peer_purges.push(rule);
    }

    /// Applies the turn's purges (one durable write), fills in the held replies, and sends
    /// what changed to the peers. Called by the turn's sync, before the replies are released.
    pub(super) fn commit_purges(&mut self) {
        let mut rules: Vec<PurgeRule> = self
            .pending_replies
            .iter()
            .filter_map(|reply| match reply {
                PendingReply::Purge {
                    rule, answer: None, ..
                } => Some(rule.clone()),
                _ => None,
            })
            .collect();
        let from_clients = rules.len();
        rules.append(&mut self.peer_purges);
        if rules.is_empty() {
            return;
        }
        let limits = PurgeLimits {
            rules_max: self.config.storage.purge_rules_max,
            glob_bytes_max: self.config.storage.purge_glob_bytes_max,
        };
        let outcomes = match self.log.add_purges(&rules, limits) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                log::error!("could not record {} purges: {error}", rules.len());
                let message = format!("the purge was not recorded: {error}");
                let answer = error_frame(ErrorCode::StorageFailure, message);
                self.answer_purges(&mut std::iter::repeat_with(|| Some(answer.clone())));
                return;
            }
        };
        let mut changed = Vec::new();
        let mut answers = Vec::with_capacity(from_clients);
        for (index, (rule, outcome)) in rules.into_iter().zip(outcomes).enumerate() {
            let answer = match outcome {
                Ok(true) => {
                    log::info!("purged {} before {:?}", rule.glob, rule.before);
                    changed.push(rule.clone());
                    ServerFrame::Purged(Purged {
                        rule,
                        changed: true,
                    })
                }
                Ok(false) => ServerFrame::Purged(Purged {
                    rule,
                    changed: false,
                }),
                Err(error @ (PurgeError::Full { .. } | PurgeError::GlobBytesFull { .. })) => {
                    error_frame(ErrorCode::PurgeRulesFull, error.to_string())
                }
                Err(error @ PurgeError::Glob(_)) => {
                    error_frame(ErrorCode::InvalidGlob, error.to_string())
                }
            };
            if index < from_clients {
                answers.push(Some(answer));
            } else if let ServerFrame::Error(error) = answer {
                log::warn!("a peer's purge was refused: {}", error.message);
            }
        }
        self.answer_purges(&mut answers.into_iter());
        for rule in changed {
            self.send_to_peers(&PeerFrame::PeerPurge(rule));
        }
    }

    /// Sets the answers of the held Purge replies without one, in order.
    fn answer_purges(&mut self, answers: &mut dyn Iterator<Item = Option<ServerFrame>>) {
        for reply in &mut self.pending_replies {
            if let PendingReply::Purge { answer, .. } = reply {
                if answer.is_none() {
                    *answer = answers.next().flatten().map(Box::new);
                }
            }
        }
    }

    /// Sends `frame` on every established peer connection.
    fn send_to_peers(&mut self, frame: &PeerFrame) {
        let peers = self.peer_conns();
        for conn in peers {
            self.send(conn, frame);
        }
    }

    /// Sends every purge this node holds to a peer whose handshake just completed: a node
    /// that was down learns the purges it missed (bounded by `purge_rules_max`).
    pub(super) fn send_purges_to(&mut self, conn: ConnId) {
        for rule in self.log.hide_rules().purges() {
            self.send(conn, &PeerFrame::PeerPurge(rule));
        }
    }

    /// A PurgesRequest: admin only, answered at once with the purges and retention rules.
    pub(super) fn on_purges_request(&mut self, conn: ConnId) {
        if let Err(message) = self.check_admin(conn, "list purges") {
            return self.send_error(
                conn,
                ErrorScope::Connection,
                ErrorCode::PermissionDenied,
                &message,
            );
        }
        let reply = self.purges_reply();
        self.send(conn, &ServerFrame::Purges(reply));
    }

    pub(super) fn purges_reply(&self) -> PurgesReply {
        let hide = self.log.hide_rules();
        PurgesReply {
            purges: hide.purges(),
            retention: hide
                .retention()
                .into_iter()
                .map(|(rule, cutoff_ms)| RetentionInfo {
                    glob: rule.glob,
                    keep_ms: rule.keep_ms,
                    cutoff_ms,
                })
                .collect(),
        }
    }
}

/// A duration for people: `3 days`, `5 hours`, `42 s`.
fn roughly(ms: u64) -> String {
    match ms {
        86_400_000.. => format!("{} days", ms / 86_400_000),
        3_600_000.. => format!("{} hours", ms / 3_600_000),
        _ => format!("{} s", ms.div_ceil(1000)),
    }
}

fn error_frame(code: ErrorCode, message: String) -> ServerFrame {
    ServerFrame::Error(ErrorFrame {
        scope: ErrorScope::Connection,
        code,
        message,
    })
}
