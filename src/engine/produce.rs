//! Produce and batch produce: validate, assign ids, append, and hold the reply until the
//! turn's sync.

use super::streams::ProduceRequest;
use super::{ConnId, Engine, Now, PendingReply};
use crate::event::{validate_namespace, Event, EventId, EventRef};
use crate::protocol::{ErrorCode, Expectation, NewEvent, NewEventView, ProduceBatch};
use crate::storage::Log;

impl<L: Log> Engine<L> {
    /// A Produce, decoded as a view of the connection's input (`decode_produce_view`): its
    /// event is encoded from those bytes into the log's record buffer, with no owned copy.
    pub(super) fn on_produce(
        &mut self,
        now: Now,
        conn: ConnId,
        op_id: u64,
        event: NewEventView<'_>,
    ) {
        let request = ProduceRequest {
            op_id,
            events: std::slice::from_ref(&event),
            count: 1,
            expect: Expectation::Any,
            single: true,
        };
        // An expectation of `Any` needs no lookup: the produce is always handled.
        self.on_produce_request(now, conn, request, usize::MAX);
    }

    /// The reply for a produce that arrives after an append failed in the same turn, or while
    /// the node catches up with its peers after start-up.
    pub(super) fn refuse_after_failure(&mut self, conn: ConnId, op_id: u64) -> bool {
        if self.produces_held() {
            let message = self.hold_message();
            self.hold_reply(PendingReply::Error {
                conn,
                op_id,
                code: ErrorCode::NotReady,
                message: message.to_string(),
            });
            return true;
        }
        let Some(message) = &self.turn_failure else {
            return false;
        };
        let reply = PendingReply::Error {
            conn,
            op_id,
            code: ErrorCode::StorageFailure,
            message: message.clone(),
        };
        self.hold_reply(reply);
        true
    }

    /// A ProduceBatch (`expect` is `Any`) or a ProduceIf, its events decoded as views of the
    /// connection's input (`decode_produce_many_view`). `count` is the number of events in
    /// the frame: `events.len()`, or more when only the first `batch_events_max` were kept.
    /// Returns false when the frame waits for its expectation's lookup, which may read at
    /// most `units_max` records this call (`on_produce_request`).
    pub(super) fn on_produce_many(
        &mut self,
        now: Now,
        conn: ConnId,
        (op_id, expect): (u64, Expectation),
        events: &[NewEventView<'_>],
        count: usize,
        units_max: usize,
    ) -> bool {
        debug_assert!(
            count == events.len() || count > self.config.batch_events_max,
            "the events of a batch within the limit were not all kept"
        );
        let request = ProduceRequest {
            op_id,
            events,
            count,
            expect,
            single: false,
        };
        self.on_produce_request(now, conn, request, units_max)
    }

    /// A ProduceBatch decoded into owned events (the server decodes one as views instead:
    /// `decode_produce_many`).
    pub(super) fn on_produce_batch(&mut self, now: Now, conn: ConnId, batch: ProduceBatch) {
        let events: Vec<NewEventView<'_>> = batch.events.iter().map(NewEvent::view).collect();
        let count = events.len();
        let op = (batch.op_id, Expectation::Any);
        self.on_produce_many(now, conn, op, &events, count, usize::MAX);
    }

    /// The checks of every produce frame before its sequence number and expectation: a
    /// batch's size, each event's namespace, size and permission.
    pub(super) fn validate_request(
        &self,
        conn: ConnId,
        request: &ProduceRequest<'_>,
    ) -> Result<(), (ErrorCode, String)> {
        let replicas = self.replicas_for(conn);
        if replicas > 1 && !self.accepts_peer_hello() {
            // No member can ever join a server outside any cluster: waiting the replication
            // time-out only to fail would tell the user nothing (walk9).
            let message = format!(
                "{replicas} replicas asked, but this server is not in a cluster (started without --peer-addr and --cluster-secret): it is the only member, so at most 1 replica can hold the events; nothing was appended. Produce with replicas 1, or start a cluster (docs/clustering.md)"
            );
            return Err((ErrorCode::NotReady, message));
        }
        // Counted only when more than one replica is asked: not on the common produce path.
        let members = if replicas > 1 {
            self.members_known()
        } else {
            1
        };
        if usize::from(replicas) > members {
            // The same for a cluster with fewer members than asked: the time-out would end
            // in `reached K of N replicas` whatever happens meanwhile, short of a new member
            // joining in those seconds (session 10's leftover).
            let floor = match self.config.cluster.min_replicas {
                min if min == replicas => format!(" (the server's --min-replicas is {min})"),
                _ => String::new(),
            };
            let message = format!(
                "{replicas} replicas asked{floor}, but this node knows {members} cluster members (itself included), so at most {members} can hold the events; nothing was appended. Produce with at most {members} replicas, or add members first (docs/clustering.md, \"Replicated acks\")"
            );
            return Err((ErrorCode::NotReady, message));
        }
        let events = &request.events;
        if request.single {
            // A Produce carries exactly one event.
            return self.validate(conn, &events[0]);
        }
        if request.count == 0 {
            return Err((
                ErrorCode::InvalidBatch,
                "a batch must hold at least one event".into(),
            ));
        }
        // Checked by the frame's count: the decoder keeps only the first `batch_events_max`.
        if request.count > self.config.batch_events_max {
            let message = format!(
                "a batch may hold at most {} events; this one has {}",
                self.config.batch_events_max, request.count
            );
            return Err((ErrorCode::InvalidBatch, message));
        }
        for (index, event) in events.iter().enumerate() {
            if let Err((code, message)) = self.validate(conn, event) {
                return Err((code, format!("event {index} of the batch: {message}")));
            }
        }
        Ok(())
    }

    fn validate(&self, conn: ConnId, event: &NewEventView<'_>) -> Result<(), (ErrorCode, String)> {
        self.validate_parts(event.namespace, event.data.len())?;
        self.check_produce(conn, event.namespace)
    }

    /// The same rules for an event that arrives already stored elsewhere (replication).
    pub(super) fn validate_stored(&self, event: &Event) -> Result<(), (ErrorCode, String)> {
        self.validate_parts(&event.namespace, event.data.len())
    }

    fn validate_parts(&self, namespace: &str, data_len: usize) -> Result<(), (ErrorCode, String)> {
        let wire = &self.config.wire;
        validate_namespace(namespace, wire.namespace_length_max as usize)
            .map_err(|error| (ErrorCode::InvalidNamespace, error.to_string()))?;
        if data_len > wire.event_data_size_max as usize {
            let message = format!(
                "event data is {data_len} bytes, over the limit of {}",
                wire.event_data_size_max
            );
            return Err((ErrorCode::EventTooLarge, message));
        }
        Ok(())
    }

    /// Appends the events with consecutive counters and one timestamp. The reply is an ack
    /// until the turn's sync says otherwise.
    pub(super) fn append_all(
        &mut self,
        now: Now,
        conn: ConnId,
        op_id: u64,
        events: &[NewEventView<'_>],
    ) -> PendingReply {
        let count = events.len() as u32;
        // Counters never wrap: a produce that would pass the last counter is refused.
        let last = self.counter.checked_add(u64::from(count));
        if last.is_none_or(|last| last > EventId::COUNTER_MAX) {
            let message = format!(
                "this node's event counter {} is at its end ({}); it cannot create {count} more events",
                self.counter,
                EventId::COUNTER_MAX
            );
            log::error!("{message}");
            return PendingReply::Error {
                conn,
                op_id,
                code: ErrorCode::StorageFailure,
                message,
            };
        }
        // The ids must be leased durably before they are handed out (and so before any ack),
        // or a restart after losing these events could give them again.
        if let Err(error) = self.log.reserve_counters(self.counter + u64::from(count)) {
            let message = format!("the events were not stored: {error}");
            self.storage_failures
                .failed(self.now_ms, "counter lease failed", &error);
            return PendingReply::Error {
                conn,
                op_id,
                code: ErrorCode::StorageFailure,
                message,
            };
        }
        let first_id = EventId {
            counter: self.counter + 1,
            actor: self.config.actor_id,
        };
        for event in events {
            self.counter += 1;
            let id = EventId {
                counter: self.counter,
                actor: self.config.actor_id,
            };
            self.observe_appended(event.namespace, id);
            let stored = EventRef {
                id,
                parent_id: event.parent_id,
                namespace: event.namespace,
                timestamp_ms: now.wall.0,
                data: event.data,
            };
            let data_bytes = stored.data.len();
            if let Err(error) = self.log.append_view(stored) {
                // A failed append discards the whole turn's appends (the `Log` contract), so
                // every reply of this turn becomes an error at the turn's end, and no more
                // appends are taken this turn.
                self.storage_failures
                    .failed(self.now_ms, "append failed", &error);
                let message = format!("the events were not stored: {error}");
                self.turn_failure = Some(message.clone());
                return PendingReply::Error {
                    conn,
                    op_id,
                    code: ErrorCode::StorageFailure,
                    message,
                };
            }
            self.metrics.on_append(self.config.actor_id.0, data_bytes);
        }
        self.stats.events_appended += count as u64;
        PendingReply::Ack {
            conn,
            op_id,
            first_id,
            count,
            timestamp_ms: now.wall.0,
            replicas: self.replicas_for(conn),
        }
    }
}

/// An empty vector with the allocation of `views`, for views of another lifetime: the batch
/// decoder's vector is kept from frame to frame without holding a borrow of any input. The
/// elements have the same layout, so the collection reuses the allocation in place (std's
/// in-place iteration; `tests/alloc_path.rs` would count an allocation per batch if it did
/// not).
pub(super) fn recycle_views<'to>(mut views: Vec<NewEventView<'_>>) -> Vec<NewEventView<'to>> {
    views.clear();
    views
        .into_iter()
        .map(|_| unreachable!("the vector was cleared"))
        .collect()
}
