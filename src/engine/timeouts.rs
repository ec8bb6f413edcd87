//! Connection time-outs: handshake, frame, peer silence and idle. Each check walks every
//! connection (`check_timeouts`), closes those whose time-out passed and schedules the next
//! check at the earliest deadline left, never within `timeout_check_interval_min` of the last
//! one; deadlines that come sooner than the scheduled check (a new connection, a partial
//! frame, a handshake done) bring it forward (`note_deadline`). So a connection is closed
//! between its deadline and `timeout_check_interval_min` later whether or not events flow to
//! it (review18, finding 7: checked only at housekeeping, once a second, a consumer fed
//! events was closed up to 1 s late), at a cost of at most one walk per interval.

use super::connection::{Connection, Phase};
use super::{millis, ConnId, Engine, Now};
use crate::protocol::ErrorCode;
use crate::storage::Log;

impl<L: Log> Engine<L> {
    /// The connection's earliest time-out: its deadline in monotonic milliseconds, and the
    /// reason given when it passes. Of the time-outs that passed by `now_ms`, the first in the
    /// order below (handshake, frame, peer silence, idle) is given; when none has, the
    /// earliest. `None`: no time-out applies (a closing connection, a client with
    /// `idle_timeout` zero and no partial frame).
    pub(super) fn timeout_of(
        &self,
        connection: &Connection,
        now_ms: u64,
    ) -> Option<(u64, &'static str)> {
        let handshake = match connection.phase {
            Phase::AwaitingHello { deadline_ms }
            | Phase::PeerAwaitingWelcome { deadline_ms, .. }
            | Phase::PeerAwaitingAccept { deadline_ms, .. }
            | Phase::PeerAwaitingProof { deadline_ms, .. } => {
                Some((deadline_ms, "no handshake within the handshake time-out"))
            }
            Phase::Closing { .. } => return None,
            Phase::Client(_) | Phase::Peer(_) => None,
        };
        let frame = (connection.paused_at_ms.is_none())
            .then_some(connection.frame_started_ms)
            .flatten()
            .map(|started| {
                let deadline_ms = started.saturating_add(millis(self.config.frame_timeout));
                (
                    deadline_ms,
                    "a frame was not completed within the frame time-out",
                )
            });
        let since_input = |timeout: std::time::Duration, reason| {
            let deadline_ms = connection.last_input_ms.saturating_add(millis(timeout));
            (deadline_ms, reason)
        };
        // Peers send a keep-alive every housekeeping interval, so a peer that is silent for the
        // handshake time-out is gone (power off, network black hole).
        let peer = matches!(connection.phase, Phase::Peer(_)).then(|| {
            let reason = "no bytes from the peer within the handshake time-out";
            since_input(self.config.handshake_timeout, reason)
        });
        // Any byte resets the timer (`handle_input_within`), a partial frame's too.
        let idle = (millis(self.config.idle_timeout) > 0).then(|| {
            let reason = "no bytes received within the idle time-out";
            since_input(self.config.idle_timeout, reason)
        });
        let timeouts = [handshake, frame, peer, idle].into_iter().flatten();
        let passed = timeouts
            .clone()
            .find(|(deadline_ms, _)| now_ms >= *deadline_ms);
        passed.or_else(|| timeouts.min_by_key(|(deadline_ms, _)| *deadline_ms))
    }

    /// A deadline of the connection may have come sooner (it was accepted, a frame started,
    /// its handshake ended): the next time-out check comes no later than it.
    pub(super) fn note_deadline(&mut self, conn: ConnId) {
        let Some(connection) = self.conn(conn) else {
            return;
        };
        if let Some((deadline_ms, _)) = self.timeout_of(connection, 0) {
            let check_ms = deadline_ms.max(self.timeout_check_allowed_ms);
            self.next_timeout_check_ms = self.next_timeout_check_ms.min(check_ms);
        }
    }

    /// Closes the connections whose time-out passed, and schedules the next check at the
    /// earliest deadline left, but not sooner than `timeout_check_interval_min` from now: a
    /// connection is closed between its deadline and that much later (protocol.md section
    /// 10), and a walk of every connection costs at most one per interval however the
    /// clients move their deadlines.
    pub(super) fn check_timeouts(&mut self, now: Now) {
        let now_ms = now.monotonic.0;
        self.stats.timeout_checks += 1;
        let mut expired = Vec::new();
        let mut earliest_ms = u64::MAX;
        for connection in self.conns.iter().flatten() {
            match self.timeout_of(connection, now_ms) {
                Some((deadline_ms, reason)) if now_ms >= deadline_ms => {
                    expired.push((connection.id, reason))
                }
                Some((deadline_ms, _)) => earliest_ms = earliest_ms.min(deadline_ms),
                None => {}
            }
        }
        self.timeout_check_allowed_ms =
            now_ms.saturating_add(millis(self.config.timeout_check_interval_min).max(1));
        self.next_timeout_check_ms = earliest_ms.max(self.timeout_check_allowed_ms);
        for (conn, reason) in expired {
            log::info!("{conn}: closing: {reason}");
            self.close_with_error(conn, ErrorCode::Timeout, reason);
        }
    }
}
