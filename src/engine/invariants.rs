//! The engine's invariants: facts it keeps in two places (a flag and a queue, a counter and
//! the table, a member's connection and that connection's phase) checked against each other.
//!
//! [`Engine::check_invariants`] runs after every `handle_*` input in debug builds and after
//! every step of the cluster simulation; a failure is a bug in the engine, never bad input.

use super::connection::{Connection, Stream};
use super::{Engine, Phase};
use crate::storage::Log;

impl<L: Log> Engine<L> {
    /// Asserts every invariant of the engine's state. Panics, naming the broken one, on a bug.
    pub fn check_invariants(&self) {
        let live = self.conns.iter().flatten().count();
        let counted: usize = self.conns.iter().flatten().map(|c| c.memory_counted).sum();
        assert_eq!(
            self.connections_memory, counted,
            "connections_memory disagrees with the sum over the connections"
        );
        for (conn, id) in self.memory_waiting.keys() {
            assert!(
                self.conn(*conn)
                    .is_some_and(|c| c.subscriptions.contains_key(id)),
                "{conn}: subscription {id} waits for memory but is not open"
            );
        }
        assert_eq!(
            self.connection_count, live,
            "connection_count disagrees with the connection table"
        );
        let subscriptions: usize = (self.conns.iter().flatten())
            .map(|c| c.subscriptions.len())
            .sum();
        assert_eq!(
            self.tail.len(),
            subscriptions,
            "the tail index files another number of subscriptions than are open"
        );
        for (slot, connection) in self.conns.iter().enumerate() {
            if let Some(connection) = connection {
                assert_eq!(
                    connection.id.slot as usize, slot,
                    "{}: wrong slot",
                    connection.id
                );
                self.check_connection(connection);
            }
        }
        for reply in &self.pending_replies {
            let conn = reply.conn();
            if let Some(connection) = self.conn(conn) {
                assert!(
                    !connection.phase.is_peer(),
                    "{conn}: a produce reply is held for a peer connection"
                );
            }
        }
        for conn in &self.closing_conns {
            if let Some(connection) = self.conn(*conn) {
                assert!(
                    matches!(connection.phase, Phase::Closing { .. }),
                    "{conn}: queued for closing without the Closing phase"
                );
            }
        }
        for (producer_id, conn) in self.producer_owners() {
            let slot = match self.conn(conn).map(|c| &c.phase) {
                Some(Phase::Client(client)) => client.producer,
                _ => None,
            };
            assert_eq!(
                slot.map(|slot| slot.producer_id),
                Some(producer_id),
                "{conn}: owns producer {producer_id} but is not an open client speaking for it"
            );
        }
        self.check_peer_invariants();
        self.check_group_invariants();
        self.check_replica_invariants();
    }

    /// [`Engine::check_invariants`] in debug builds; nothing in release builds.
    pub(super) fn debug_check_invariants(&self) {
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    fn check_connection(&self, connection: &Connection) {
        let conn = connection.id;
        assert_eq!(
            connection.memory_counted,
            connection.memory_bytes(),
            "{conn}: memory_counted is out of date (a change was not recounted)"
        );
        let in_output_queue = self.output_queue.iter().filter(|c| **c == conn).count();
        assert_eq!(
            in_output_queue,
            usize::from(connection.has_output_queued),
            "{conn}: has_output_queued disagrees with the output queue"
        );
        let in_reply_queue = self.reply_queue.iter().filter(|c| **c == conn).count();
        assert_eq!(
            in_reply_queue,
            usize::from(connection.has_reply_queued),
            "{conn}: has_reply_queued disagrees with the reply queue"
        );
        let held: usize = self
            .pending_replies
            .iter()
            .filter(|r| r.conn() == conn)
            .map(|r| r.encoded_size())
            .sum();
        assert_eq!(
            connection.held_reply_bytes, held,
            "{conn}: held_reply_bytes disagrees with the held replies"
        );
        if connection.input_paused {
            assert!(
                connection.output_owed() >= self.config.send_buffer_high_water
                    || self.input_resumed.contains(&conn),
                "{conn}: input paused although no output is owed over the high-water mark"
            );
            assert!(!connection.input.is_empty(), "{conn}: paused with no input");
        }
        let closing = matches!(connection.phase, Phase::Closing { .. });
        assert_eq!(
            closing,
            self.closing_conns.contains(&conn),
            "{conn}: the Closing phase disagrees with the closing list"
        );
        assert!(
            !(closing && connection.input_deferred),
            "{conn}: closing with frames waiting to be decoded"
        );
        let peer = matches!(connection.phase, Phase::Peer(_));
        if let Some(peer) = connection.peer() {
            assert!(
                peer.credit_given <= u64::from(self.config.cluster.peer_credit_window),
                "{conn}: more peer credit given than the window"
            );
        }
        for (id, subscription) in &connection.subscriptions {
            assert_eq!(
                *id, subscription.id,
                "{conn}: subscription filed under another id"
            );
            assert!(
                self.tail.contains(
                    (conn, *id),
                    subscription.glob.as_str(),
                    subscription.order.is_some()
                ),
                "{conn}: subscription {id} is not in the tail index"
            );
            let in_ready = self.ready.iter().filter(|r| **r == (conn, *id)).count();
            assert_eq!(
                in_ready,
                usize::from(subscription.position.is_queued()),
                "{conn}: subscription {id}: queued disagrees with the ready queue"
            );
            if subscription.stream == Stream::Replication {
                assert!(
                    peer || closing,
                    "{conn}: a replication stream on a connection that is no peer"
                );
            } else {
                assert!(!peer, "{conn}: a client subscription on a peer connection");
            }
        }
    }
}
