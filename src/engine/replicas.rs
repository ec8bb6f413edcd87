//! Replicated acks: a produce's ack waits until enough members hold its events durably.
//!
//! A connection asks for `replicas` with SetReplicas (0, the default, means the server's
//! `min_replicas`; the server's value is also a floor). After the turn's sync an ack that needs
//! more than one replica, and every reply behind it on the same connection (acks stay in
//! produce order), waits in the connection's `waiting_replies`. This node knows which of its
//! own events a member holds durably from two sources: the member's entry for this node in its
//! handshake vector, and PeerCredit, which a receiver returns only after the sync that made the
//! events durable, in the order they were sent (`PeerConn::replication_sent` remembers that
//! order). Each origin's events are held as a prefix on every node, so "holds counter c" means
//! "holds every own event up to c". A reply that waits past `replication_timeout` becomes a
//! ReplicationTimeout error naming the replicas reached; its events stay appended.

use super::{ConnId, Engine, PendingReply, Phase, Report};
use crate::event::ActorId;
use crate::protocol::{self, ErrorCode, ErrorScope, ServerFrame};
use crate::storage::Log;

/// The most PeerEvent frames a replication stream has in flight (sent, not yet credited):
/// the largest credit window a receiver may give (`peer_credit_window` is at most 65,536), so
/// a peer that hands out more credit cannot make this node remember more.
pub(super) const REPLICATION_IN_FLIGHT_MAX: usize =
    crate::protocol::PEER_CREDIT_WINDOW_MAX as usize;

/// A reply released by the sync that waits for replicas, or behind one that does.
#[derive(Debug)]
pub(in crate::engine) struct WaitingReply {
    reply: PendingReply,
    /// Members (this node counts) that must hold `last_counter` before the ack goes out.
    replicas: u8,
    /// The counter of the last event the reply acknowledges (0 for an error).
    last_counter: u64,
    /// When the reply becomes ReplicationTimeout, in monotonic milliseconds.
    deadline_ms: u64,
}

impl<L: Log> Engine<L> {
    /// SetReplicas: later produces of this connection need `replicas` members.
    pub(super) fn on_set_replicas(&mut self, conn: ConnId, replicas: u8) {
        if let Some(connection) = self.conn_mut(conn) {
            if let Phase::Client(client) = &mut connection.phase {
                client.replicas = replicas;
            }
        }
    }

    /// The replicas a produce on this connection needs now.
    pub(super) fn replicas_for(&self, conn: ConnId) -> u8 {
        let asked = (self.conn(conn).and_then(|c| c.client())).map_or(0, |c| c.replicas);
        asked.max(self.config.cluster.min_replicas)
    }

    /// Members (this node included) known to hold this node's own event `counter` durably.
    pub(super) fn replicas_reached(&self, counter: u64) -> usize {
        1 + self.durable_members(counter)
    }

    /// True when the reply goes to the connection's waiting queue instead of out now.
    pub(super) fn must_wait(&self, reply: &PendingReply) -> bool {
        let waiting = self
            .conn(reply.conn())
            .is_some_and(|c| !c.waiting_replies.is_empty());
        match reply {
            PendingReply::Ack {
                first_id,
                count,
                replicas,
                ..
            } => {
                waiting
                    || self.replicas_reached(first_id.counter + u64::from(*count) - 1)
                        < usize::from(*replicas)
            }
            PendingReply::Error { .. }
            | PendingReply::Status { .. }
            | PendingReply::Purge { .. } => waiting,
        }
    }

    /// Queues a reply (released by the sync) behind the connection's waiting replies.
    pub(super) fn wait_for_replicas(&mut self, reply: PendingReply) {
        let (replicas, last_counter) = match &reply {
            PendingReply::Ack {
                first_id,
                count,
                replicas,
                ..
            } => (*replicas, first_id.counter + u64::from(*count) - 1),
            PendingReply::Error { .. }
            | PendingReply::Status { .. }
            | PendingReply::Purge { .. } => (1, 0),
        };
        let deadline_ms = self
            .now_ms
            .saturating_add(super::millis(self.config.cluster.replication_timeout));
        let conn = reply.conn();
        let size = reply.encoded_size();
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        connection.waiting_reply_bytes += size;
        connection.waiting_replies.push_back(WaitingReply {
            reply,
            replicas,
            last_counter,
            deadline_ms,
        });
        if !self.waiting_conns.contains(&conn) {
            self.waiting_conns.push(conn);
        }
    }

    /// A peer returned `count` credit: the first `count` events sent to it and not yet
    /// credited are durable on it.
    pub(super) fn on_replicas_credited(&mut self, conn: ConnId, count: u32) {
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        let Some(peer) = connection.peer_mut() else {
            return;
        };
        let actor = peer.actor;
        let take = (count as usize).min(peer.replication_sent.len());
        let durable = peer.replication_sent.drain(..take).max().unwrap_or(0);
        self.raise_durable_own(actor, durable);
    }

    /// Sends the waiting replies that have their replicas, or whose time-out passed, in order
    /// per connection. Runs at every turn end, after the sync and the turn's credit.
    pub(super) fn release_replicated(&mut self) {
        let now_ms = self.now_ms;
        let mut conns = std::mem::take(&mut self.waiting_conns);
        conns.retain(|&conn| {
            while let Some(front) = self.conn(conn).and_then(|c| c.waiting_replies.front()) {
                let reached = match front.reply {
                    PendingReply::Ack { .. } => self.replicas_reached(front.last_counter),
                    PendingReply::Error { .. }
                    | PendingReply::Status { .. }
                    | PendingReply::Purge { .. } => usize::MAX,
                };
                let (needed, expired) = (usize::from(front.replicas), now_ms >= front.deadline_ms);
                if reached < needed && !expired {
                    return true;
                }
                // Checked by the loop condition: the connection and its front exist.
                let connection = self.conn_mut(conn).expect("connection is open");
                let waiting = connection.waiting_replies.pop_front().expect("front");
                connection.waiting_reply_bytes -= waiting.reply.encoded_size();
                if reached >= needed {
                    self.send_reply(waiting.reply);
                } else {
                    self.send_replication_timeout(waiting, reached);
                }
            }
            false
        });
        self.waiting_conns = conns;
    }

    fn send_replication_timeout(&mut self, waiting: WaitingReply, reached: usize) {
        let PendingReply::Ack { conn, op_id, .. } = waiting.reply else {
            unreachable!("only acks wait for replicas")
        };
        let message = format!(
            "reached {reached} of {} replicas within {} ms; the events stay appended on this node and keep replicating",
            waiting.replicas,
            super::millis(self.config.cluster.replication_timeout)
        );
        self.send_reply(PendingReply::Error {
            conn,
            op_id,
            code: ErrorCode::ReplicationTimeout,
            message,
        });
    }

    /// Sends a reply the sync confirmed (and, where asked, the replicas): the one path by
    /// which produce replies leave the engine. It queues the connection in the reply queue,
    /// which `poll_action` hands out before feeding's output.
    pub(super) fn send_reply(&mut self, reply: PendingReply) {
        let conn = reply.conn();
        self.send_reply_uncounted(reply);
        self.recount_memory(conn);
    }

    /// `send_reply` without recounting the connection's memory: for a caller that recounts
    /// each connection it replied to once it sent them all (`release_replies`, whose
    /// `check_memory` does), so a turn's acks cost one recount a connection instead of one
    /// an ack (about 40 instructions an event, issue 13 session 15).
    pub(super) fn send_reply_uncounted(&mut self, reply: PendingReply) {
        let conn = reply.conn();
        let report = match &reply {
            PendingReply::Status {
                report: Report::Status { hold },
                ..
            } => Some(self.status_frame(*hold)),
            PendingReply::Status {
                report: Report::Info,
                ..
            } => Some(ServerFrame::Info(self.info())),
            PendingReply::Status {
                report: Report::Members,
                ..
            } => Some(ServerFrame::Members(self.member_entries())),
            PendingReply::Ack { .. } | PendingReply::Error { .. } => None,
            PendingReply::Purge { answer, rule, .. } => Some(match answer {
                Some(frame) => (**frame).clone(),
                None => ServerFrame::Error(protocol::ErrorFrame {
                    scope: ErrorScope::Connection,
                    code: ErrorCode::StorageFailure,
                    message: format!("the purge of {} was not recorded", rule.glob),
                }),
            }),
        };
        if let PendingReply::Error { code, .. } = &reply {
            self.metrics.on_produce_error(*code);
        }
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        let output = connection.output_buffer();
        match reply {
            PendingReply::Ack {
                op_id,
                first_id,
                count,
                timestamp_ms,
                ..
            } => {
                let ack = protocol::Ack {
                    op_id,
                    first_id,
                    count,
                    timestamp_ms,
                };
                protocol::encode_ack(&ack, output);
            }
            PendingReply::Error {
                op_id,
                code,
                message,
                ..
            } => protocol::encode_error(ErrorScope::Produce(op_id), code, &message, output),
            PendingReply::Status { .. } | PendingReply::Purge { .. } => {
                // Computed above, before the connection was borrowed.
                let report = report.expect("computed for a Status, Info or Purge reply");
                protocol::encode(&report, output);
            }
        }
        self.queue_reply(conn);
    }

    /// Replicated acks' half of [`Engine::check_invariants`]: a connection with waiting
    /// replies is in `waiting_conns` (or its replies would never be released), and its
    /// `waiting_reply_bytes` is their size.
    pub(super) fn check_replica_invariants(&self) {
        for connection in self.conns.iter().flatten() {
            let conn = connection.id;
            let size: usize = connection
                .waiting_replies
                .iter()
                .map(|w| w.reply.encoded_size())
                .sum();
            assert_eq!(
                connection.waiting_reply_bytes, size,
                "{conn}: waiting_reply_bytes disagrees with its waiting replies"
            );
            assert!(
                connection.waiting_replies.is_empty() || self.waiting_conns.contains(&conn),
                "{conn}: replies wait for replicas but the connection is not in waiting_conns"
            );
        }
    }

    /// The earliest deadline of a waiting reply, if any.
    pub(super) fn next_replication_deadline_ms(&self) -> Option<u64> {
        self.waiting_conns
            .iter()
            .filter_map(|&conn| self.conn(conn)?.waiting_replies.front())
            .map(|w| w.deadline_ms)
            .min()
    }

    /// A member holds this node's events up to `counter` durably.
    fn raise_durable_own(&mut self, actor: ActorId, counter: u64) {
        self.cluster_raise_durable_own(actor, counter);
    }
}
