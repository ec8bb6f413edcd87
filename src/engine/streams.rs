//! Namespaces as streams: conditional produce (ProduceIf: append only if a namespace's newest
//! event is the one the client expects) and idempotent produce (SetProducer: a retried produce
//! is answered with its original ack instead of being stored again; the newest SetProducer of
//! an id fences the older connections of that id). protocol.md section 6 has the rules;
//! docs/limits.md the bounds.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{ConnId, Engine, Now, PendingReply, Phase};
use crate::event::EventId;
use crate::protocol::{ErrorCode, Expectation, NewEvent, NewEventView, ProduceIf};
use crate::storage::{LastScan, Log, ProducedRecord};

/// What one produce frame asks for, whatever its kind.
pub(super) struct ProduceRequest<'a> {
    pub op_id: u64,
    /// Views of the received frame's events (a Produce's borrow the connection's input).
    pub events: &'a [NewEventView<'a>],
    /// The number of events the frame holds: `events.len()`, or more when the batch decoder
    /// kept only the first `batch_events_max` (the batch is then refused by this count).
    pub count: usize,
    pub expect: Expectation,
    /// A Produce (one event; its errors do not name an event of a batch).
    pub single: bool,
}

/// The idempotent producer a connection speaks for, and the sequence number of its next
/// produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSlot {
    pub producer_id: u64,
    pub next_sequence: u64,
}

/// What the table knows about a producer's sequence number.
#[derive(Debug, PartialEq, Eq)]
enum SequenceCheck {
    /// Above every sequence stored for the producer: append it.
    New,
    /// Stored already, as this.
    Stored(ProducedRecord),
    /// At or below the newest stored one, and not in the window.
    Unknown { newest: u64 },
}

/// The recent acks of idempotent producers: per producer at most `producer_window`, at most
/// `producers_max` producers (the one unused longest is forgotten first).
#[derive(Debug, Default)]
pub(super) struct Producers {
    by_id: HashMap<u64, ProducerAcks>,
    /// Producer ids by the tick of their last use, oldest first.
    by_use: BTreeMap<u64, u64>,
    tick: u64,
    /// Records added this turn, undone if the turn's sync fails.
    turn_added: Vec<ProducedRecord>,
    /// The connection that sent the newest SetProducer of each producer id: the only one whose
    /// numbered produces are taken; an older one is fenced (`ProducerFenced`). One entry per
    /// open client connection at most (a connection speaks for one producer, and its entry
    /// goes when it closes or names another), so bounded by `connections_max`. Not durable:
    /// after a restart no connection of before is left to fence.
    owners: HashMap<u64, ConnId>,
}

#[derive(Debug)]
struct ProducerAcks {
    last_use: u64,
    /// Ascending by sequence.
    acks: VecDeque<ProducedRecord>,
}

impl Producers {
    fn check(&self, producer_id: u64, sequence: u64) -> SequenceCheck {
        let Some(producer) = self.by_id.get(&producer_id) else {
            return SequenceCheck::New;
        };
        let newest = producer.acks.back().map_or(0, |ack| ack.sequence);
        if sequence > newest {
            return SequenceCheck::New;
        }
        match producer.acks.iter().find(|ack| ack.sequence == sequence) {
            Some(ack) => SequenceCheck::Stored(*ack),
            None => SequenceCheck::Unknown { newest },
        }
    }

    /// Remembers `record` (appended this turn, or loaded at start-up).
    pub(super) fn remember(&mut self, record: ProducedRecord, window: usize, producers_max: usize) {
        self.tick += 1;
        let tick = self.tick;
        let producer = self
            .by_id
            .entry(record.producer_id)
            .or_insert_with(|| ProducerAcks {
                last_use: tick,
                acks: VecDeque::new(),
            });
        self.by_use.remove(&producer.last_use);
        producer.last_use = tick;
        self.by_use.insert(tick, record.producer_id);
        if producer
            .acks
            .back()
            .is_some_and(|ack| ack.sequence >= record.sequence)
        {
            // A start-up replay of a journal rewritten with an older window; keep the newest.
            return;
        }
        producer.acks.push_back(record);
        while producer.acks.len() > window {
            producer.acks.pop_front();
        }
        while self.by_id.len() > producers_max {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
    }

    /// Every remembered record, for a journal rewrite.
    fn snapshot(&self) -> Vec<ProducedRecord> {
        let mut records: Vec<ProducedRecord> = Vec::new();
        for producer_id in self.by_use.values() {
            if let Some(producer) = self.by_id.get(producer_id) {
                records.extend(producer.acks.iter().copied());
            }
        }
        records
    }

    fn len(&self) -> usize {
        self.by_id
            .values()
            .map(|producer| producer.acks.len())
            .sum()
    }

    /// The turn's sync failed: its records are gone from the log, so from here too.
    fn forget_turn(&mut self) {
        for record in std::mem::take(&mut self.turn_added).into_iter().rev() {
            if let Some(producer) = self.by_id.get_mut(&record.producer_id) {
                if producer.acks.back() == Some(&record) {
                    producer.acks.pop_back();
                }
            }
        }
    }
}

impl<L: Log> Engine<L> {
    /// Loads the produced records the log kept (start-up).
    pub(super) fn load_producers(&mut self) {
        let limits = &self.config.streams;
        let (window, producers_max) = (limits.producer_window, limits.producers_max);
        for record in self.log.take_produced() {
            self.producers.remember(record, window, producers_max);
        }
    }

    /// A ProduceIf decoded into owned events (the server decodes one as views instead:
    /// `decode_produce_many`).
    pub(super) fn on_produce_if(&mut self, now: Now, conn: ConnId, produce: ProduceIf) {
        let events: Vec<NewEventView<'_>> = produce.events.iter().map(NewEvent::view).collect();
        let count = events.len();
        let op = (produce.op_id, produce.expect);
        let handled = self.on_produce_many(now, conn, op, &events, count, usize::MAX);
        debug_assert!(handled, "a lookup without a bound always ends");
    }

    /// The connection speaks for `producer_id` from now on (0: for none), and fences every
    /// older connection of that id: the newest SetProducer wins.
    pub(super) fn on_set_producer(&mut self, conn: ConnId, producer_id: u64, next_sequence: u64) {
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        let Phase::Client(client) = &mut connection.phase else {
            return;
        };
        let previous = std::mem::replace(
            &mut client.producer,
            (producer_id != 0).then_some(ProducerSlot {
                producer_id,
                next_sequence,
            }),
        );
        self.release_producer(conn, previous);
        if producer_id != 0 {
            self.producers.owners.insert(producer_id, conn);
        }
    }

    /// The connection no longer speaks for `slot`'s producer (it named another, or it is
    /// closing): forgets it as the owner, unless a newer connection already took the id over.
    pub(super) fn release_producer(&mut self, conn: ConnId, slot: Option<ProducerSlot>) {
        let Some(slot) = slot else {
            return;
        };
        if self.producers.owners.get(&slot.producer_id) == Some(&conn) {
            self.producers.owners.remove(&slot.producer_id);
        }
    }

    /// Every producer id with its owning connection (for the invariant check).
    pub(super) fn producer_owners(&self) -> impl Iterator<Item = (u64, ConnId)> + '_ {
        self.producers.owners.iter().map(|(id, conn)| (*id, *conn))
    }

    /// Every produce frame: the sequence number, validation, the producer's window, the
    /// expectation, then the append. Returns false, having done nothing (the sequence number
    /// is given back), when the expectation's lookup read `units_max` records of the log
    /// without reaching its end (`last_id`): the frame waits in the connection's input, the
    /// lookup is kept, and the frame is handled again in a later turn.
    pub(super) fn on_produce_request(
        &mut self,
        now: Now,
        conn: ConnId,
        request: ProduceRequest<'_>,
        units_max: usize,
    ) -> bool {
        let sequence = self.take_sequence(conn);
        let op_id = request.op_id;
        if self.refuse_after_failure(conn, op_id) {
            return true;
        }
        let error = |(code, message)| PendingReply::Error {
            conn,
            op_id,
            code,
            message,
        };
        let reply = if let Err(refusal) = self.validate_request(conn, &request) {
            error(refusal)
        } else if let Some(reply) = self.check_sequence(conn, op_id, sequence) {
            reply
        } else if let Err(refusal) = self.check_expectation(conn, &request, units_max) {
            match refusal {
                Some(refusal) => error(refusal),
                None => {
                    self.give_back_sequence(conn, sequence);
                    return false;
                }
            }
        } else {
            let reply = self.append_all(now, conn, op_id, request.events);
            if let (
                Some((producer_id, sequence)),
                PendingReply::Ack {
                    first_id,
                    count,
                    timestamp_ms,
                    ..
                },
            ) = (sequence, &reply)
            {
                self.record_produced(ProducedRecord {
                    producer_id,
                    sequence,
                    first_id: *first_id,
                    count: *count,
                    timestamp_ms: *timestamp_ms,
                });
            }
            reply
        };
        self.hold_reply(reply);
        true
    }

    /// Undoes `take_sequence` for a produce that waits (it is handled again later).
    fn give_back_sequence(&mut self, conn: ConnId, sequence: Option<(u64, u64)>) {
        let Some((_, sequence)) = sequence else {
            return;
        };
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        if let Phase::Client(client) = &mut connection.phase {
            if let Some(slot) = client.producer.as_mut() {
                slot.next_sequence = sequence;
            }
        }
    }

    /// The sequence number of this produce, if the connection is an idempotent producer.
    fn take_sequence(&mut self, conn: ConnId) -> Option<(u64, u64)> {
        let Phase::Client(client) = &mut self.conn_mut(conn)?.phase else {
            return None;
        };
        let slot = client.producer.as_mut()?;
        let sequence = slot.next_sequence;
        // Saturates: a producer at the last sequence number repeats it, and its produces are
        // answered as retries (documented in protocol.md).
        slot.next_sequence = slot.next_sequence.saturating_add(1);
        Some((slot.producer_id, sequence))
    }

    fn check_sequence(
        &self,
        conn: ConnId,
        op_id: u64,
        sequence: Option<(u64, u64)>,
    ) -> Option<PendingReply> {
        let (producer_id, sequence) = sequence?;
        let owner = self.producers.owners.get(&producer_id).copied();
        if owner != Some(conn) {
            return Some(PendingReply::Error {
                conn,
                op_id,
                code: ErrorCode::ProducerFenced,
                message: format!(
                    "producer {producer_id} was taken over by a newer connection (a later \
                     SetProducer with this id{}): nothing was appended; two processes share \
                     the producer id, or this connection was replaced by a reconnect",
                    owner.map_or(String::new(), |owner| format!(", {owner}"))
                ),
            });
        }
        match self.producers.check(producer_id, sequence) {
            SequenceCheck::New => None,
            SequenceCheck::Stored(record) => Some(PendingReply::Ack {
                conn,
                op_id,
                first_id: record.first_id,
                count: record.count,
                timestamp_ms: record.timestamp_ms,
                replicas: self.replicas_for(conn),
            }),
            SequenceCheck::Unknown { newest } => Some(PendingReply::Error {
                conn,
                op_id,
                code: ErrorCode::SequenceUnknown,
                message: format!(
                    "producer {producer_id} sequence {sequence} is not among the last {} acks \
                     kept (the newest is {newest}); it was refused or is too old: nothing was \
                     appended",
                    self.config.streams.producer_window
                ),
            }),
        }
    }

    fn record_produced(&mut self, record: ProducedRecord) {
        let limits = &self.config.streams;
        let (window, producers_max) = (limits.producer_window, limits.producers_max);
        self.producers.remember(record, window, producers_max);
        self.producers.turn_added.push(record);
        self.log.append_produced(&record);
    }

    /// The expectation of a ProduceIf, against the log and the turn's earlier appends.
    /// `Err(None)`: the lookup of the namespace's newest event has not reached the log's end
    /// within `units_max` records (`last_id`), so it cannot be checked yet.
    fn check_expectation(
        &mut self,
        conn: ConnId,
        request: &ProduceRequest<'_>,
        units_max: usize,
    ) -> Result<(), Option<(ErrorCode, String)>> {
        if request.expect == Expectation::Any {
            return Ok(());
        }
        // Validated: a ProduceIf has at least one event.
        let namespace = request.events[0].namespace;
        let last = match self.last_id(conn, namespace, units_max) {
            Ok(Some(last)) => last,
            Ok(None) => return Err(None),
            Err(error) => {
                let message = format!("cannot read the newest event of {namespace}: {error}");
                return Err(Some((ErrorCode::StorageFailure, message)));
            }
        };
        let holds = match request.expect {
            Expectation::Any => true,
            Expectation::NoEvents => last.is_none(),
            Expectation::HasEvents => last.is_some(),
            Expectation::LastIs(id) => last == Some(id),
        };
        if holds {
            return Ok(());
        }
        let actual = last.map_or("none".to_string(), |id| id.to_string());
        let expected = match request.expect {
            Expectation::Any => "any",
            Expectation::NoEvents => "no events",
            Expectation::HasEvents => "some event",
            Expectation::LastIs(_) => "another newest event",
        };
        let message = format!("{actual}: the newest event of {namespace} is {actual}, expected {expected}; nothing was appended");
        Err(Some((ErrorCode::ExpectationFailed, message)))
    }

    /// The id of the newest event of `namespace`: this turn's appends first, then the
    /// remembered ids, then the log (`Log::last_in_namespace_within`). `None` while the log's
    /// lookup goes on: a log without its namespace index reads its records, at most
    /// `units_max` of them per call (at least one), and the lookup is kept in the connection
    /// (`Connection::last_scan`) for its next call, in a later turn, which goes on from there.
    /// Before, the whole log was read in the frame's turn (100,000 records for one frame,
    /// holding up every other connection: attack round 13). The work is charged to the turn's
    /// frame budget after the frame (`decode_input`), so a flood of conditional produces on
    /// new namespaces is spread over turns too (attack round 3, F3).
    fn last_id(
        &mut self,
        conn: ConnId,
        namespace: &str,
        units_max: usize,
    ) -> Result<Option<Option<EventId>>, crate::storage::StorageError> {
        let kept = self.conn_mut(conn).and_then(|c| c.last_scan.take());
        if kept.is_some() {
            // Its memory leaves the connection's count; a lookup still going on comes back.
            self.recount_memory(conn);
        }
        if let Some(id) = self.turn_namespaces.get(namespace) {
            return Ok(Some(Some(id)));
        }
        if let Some(&last) = self.last_ids.get(namespace) {
            return Ok(Some(last));
        }
        let mut scan = kept
            .filter(|scan| scan.namespace() == namespace)
            .unwrap_or_else(|| LastScan::new(namespace));
        let budget = u64::try_from(units_max.max(1)).unwrap_or(u64::MAX);
        let mut work = budget;
        let found = self.log.last_in_namespace_within(&mut scan, &mut work);
        let spent = usize::try_from(budget - work).unwrap_or(usize::MAX);
        self.frame_units_charged = self.frame_units_charged.saturating_add(spent);
        match found? {
            Some(last) => {
                self.last_ids.insert(namespace.to_string(), last);
                Ok(Some(last))
            }
            None => {
                if let Some(connection) = self.conn_mut(conn) {
                    connection.last_scan = Some(scan);
                }
                self.recount_memory(conn);
                Ok(None)
            }
        }
    }

    /// An event of `namespace` was appended as `id` (a produce or a replicated event).
    pub(super) fn observe_appended(&mut self, namespace: &str, id: EventId) {
        self.turn_namespaces.observe(namespace, id);
        if let Some(last) = self.last_ids.get_mut(namespace) {
            *last = Some(id);
        }
    }

    /// The turn's sync is done: on failure, what this turn remembered is undone; the memory
    /// of newest ids is bounded here, between turns, when nothing in it is undurable.
    pub(super) fn streams_after_sync(&mut self, failed: bool) {
        if failed {
            self.last_ids.clear();
            self.producers.forget_turn();
        }
        self.producers.turn_added.clear();
        if self.last_ids.len() > self.config.streams.last_ids_max {
            self.last_ids.clear();
        }
    }

    /// Compacts the produced journal once it holds far more records than the window keeps.
    pub(super) fn compact_produced(&mut self) {
        let live = self.producers.len() as u64;
        if self.log.produced_count() <= 2 * live + 1024 {
            return;
        }
        let snapshot = self.producers.snapshot();
        if let Err(error) = self.log.rewrite_produced(&snapshot) {
            log::warn!("cannot compact the produced journal: {error}");
        }
    }
}
