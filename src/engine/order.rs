//! Id order: subscriptions that deliver events in the total order of ids (counter, actor),
//! the same sequence on every node of a cluster.
//!
//! An id-order subscription reads the log in this node's order like any other, but puts the
//! matching events in a reorder buffer instead of sending them. Once it has read up to the
//! durable end, it releases, smallest id first, every buffered event whose counter is at most
//! the node's *stable clock* (`Engine::stable_clock`): no event with such a counter can still
//! reach this node, because every member has promised (PeerClock) that it sent all of its own
//! events up to its clock, and this node's own future events are above its counter. So the
//! delivered events are always a prefix of the cluster's id order.
//!
//! The buffer is bounded by `order_buffer_bytes_max`. When an event does not fit, the buffered
//! events with the largest ids are dropped from memory, and the earliest log offset among
//! them is remembered; once the buffer has drained, the subscription reads the log again from
//! there (events already delivered are covered by its cursor and skipped). Every buffered
//! event is smaller than every dropped one, so releasing from the buffer never overtakes a
//! dropped event. Memory stays bounded at the cost of reading some records twice.

use std::collections::BTreeMap;

use super::connection::Stream;
use super::consume::{event_frame_size_max, wanted, FeedBudget, Stop};
use super::{millis, ConnId, Engine};
use crate::event::{Event, EventId};
use crate::protocol::{encode_event, EndReason, ErrorCode, ErrorScope, ServerFrame};
use crate::storage::{Log, Offset, StorageError};

/// What one buffered event costs besides its frame size (a B-tree entry, the offset).
const BUFFERED_EVENT_BYTES_FIXED: usize = 64;

/// The events an id-order subscription has read and not yet delivered.
#[derive(Debug, Default)]
pub struct OrderBuffer {
    /// Smallest id first, with the log offset each was read at.
    events: BTreeMap<EventId, (Offset, Event)>,
    /// The memory `events` holds, counted as `buffered_size`.
    bytes: usize,
    /// Events were dropped from memory for lack of room: the earliest offset among them.
    rewind: Option<Offset>,
    /// The largest id delivered so far, or covered by the cursor the subscription started
    /// at (an event arriving below it is delivered late).
    released: EventId,
    /// Since when the smallest buffered event has waited for the stable clock.
    stalled_since_ms: Option<u64>,
    /// Damaged records before this offset were already reported with Skipped (skip_damaged).
    skipped_until: Offset,
}

impl OrderBuffer {
    /// The buffer of a subscription that starts at `cursor`: an event below the largest id
    /// the cursor covers is late for that consumer, also after a resubscription.
    pub(super) fn starting_at(cursor: &crate::event::Cursor) -> OrderBuffer {
        let covered = cursor
            .vector
            .iter()
            .map(|(actor, counter)| EventId { counter, actor })
            .fold(cursor.floor, EventId::max);
        OrderBuffer {
            released: covered,
            ..OrderBuffer::default()
        }
    }

    /// The memory the buffer holds, counted in its connection's budget.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    /// Since when (monotonic ms) its smallest event has waited for the stable clock, if it
    /// waits.
    pub fn stalled_since_ms(&self) -> Option<u64> {
        self.stalled_since_ms
    }

    /// The events it holds.
    pub fn held(&self) -> usize {
        self.events.len()
    }

    fn buffered_size(event: &Event) -> usize {
        event_frame_size_max(event.view()) + BUFFERED_EVENT_BYTES_FIXED
    }

    /// Buffers an event read at `offset`; drops the largest ids while over `bytes_max` (one
    /// event always stays, so a single event larger than the limit still goes through).
    fn insert(&mut self, offset: Offset, event: Event, bytes_max: usize) {
        let size = Self::buffered_size(&event);
        if self.events.insert(event.id, (offset, event)).is_none() {
            self.bytes += size;
        }
        while self.bytes > bytes_max && self.events.len() > 1 {
            // Checked by the loop condition: the map has entries.
            let (_, (offset, event)) = self.events.pop_last().expect("not empty");
            self.bytes -= Self::buffered_size(&event);
            self.rewind = Some(self.rewind.map_or(offset, |r| r.min(offset)));
        }
    }
}

impl<L: Log> Engine<L> {
    /// Feeds an id-order subscription: reads up to the durable end into its buffer, then
    /// releases what the stable clock allows, then sends CaughtUp or End if due.
    pub(super) fn feed_ordered(&mut self, conn: ConnId, id: u32, budget: &mut FeedBudget) -> Stop {
        let durable_end = self.log.durable_end();
        let bytes_max = self.config.cluster.order_buffer_bytes_max;
        let hide = self.log.hide_rules();
        let clock = self.tail.clock();
        let Engine {
            log, conns, stats, ..
        } = self;
        // Checked by the caller: the subscription exists, so the connection does.
        let connection = conns[conn.slot as usize].as_mut().expect("open");
        let Some(subscription) = connection.subscriptions.get_mut(&id) else {
            return Stop::Ended;
        };
        // Checked by the caller: this is an id-order subscription.
        let order = subscription.order.as_mut().expect("id order");
        let mut stopped_by_budget = false;
        let from = subscription.position.next(clock);
        let result = log.read(from, &mut |offset, event| {
            if budget.spent() {
                stopped_by_budget = true;
                return false;
            }
            budget.records -= 1;
            let size = (event.namespace.len() + event.data.len()) as u64;
            budget.bytes = budget.bytes.saturating_sub(size);
            let (steps, charged) = (&mut budget.match_steps, &mut stats.match_steps_charged);
            if wanted(
                &subscription.glob,
                &subscription.filter,
                &hide,
                event,
                steps,
                charged,
            ) {
                order.insert(offset, event.to_event(), bytes_max);
            }
            true
        });
        match result {
            Ok(next) => subscription.position.set_next(next, clock),
            Err(StorageError::Unreadable { context, offsets })
                if self.skip_damaged(conn, id, from, &offsets) =>
            {
                // Checked by the caller: the subscription exists.
                let subscription = self.subscription_mut(conn, id).expect("subscription");
                subscription.position.set_next(offsets.end, clock);
                let order = subscription.order.as_mut().expect("id order");
                // A read again after the buffer overflowed meets the same damage: Skipped
                // counts each lost record once.
                let count = offsets
                    .end
                    .0
                    .saturating_sub(from.0.max(offsets.start.0).max(order.skipped_until.0));
                order.skipped_until = order.skipped_until.max(offsets.end);
                if count > 0 {
                    log::warn!(
                        "{conn}: subscription {id}: skipped {count} unreadable records, as it \
                         asked: corrupt log: {context}"
                    );
                    let frame = ServerFrame::Skipped {
                        subscription_id: id,
                        count,
                    };
                    self.send(conn, &frame);
                }
                // Goes on after the damage, this turn or the next.
                self.recount_memory(conn);
                return self.after_feed_ordered(conn, id, false, true);
            }
            Err(error) => {
                let message = format!("could not read the log: {error}");
                log::error!("{conn}: subscription {id}: {message}");
                self.end_subscription(conn, id, None);
                let scope = ErrorScope::Subscription(id);
                self.send_error(conn, scope, ErrorCode::StorageFailure, &message);
                return Stop::Ended;
            }
        }
        let read_all = subscription.position.next(clock) >= durable_end;
        if read_all {
            self.release_ordered(conn, id);
        }
        self.recount_memory(conn);
        self.after_feed_ordered(conn, id, read_all, stopped_by_budget)
    }

    /// Delivers buffered events, smallest id first, while their counter is at most the
    /// stable clock and the subscription has credit, limit and room in its output.
    fn release_ordered(&mut self, conn: ConnId, id: u32) {
        let stable = self.stable_clock();
        let high_water = self.config.send_buffer_high_water;
        let now_ms = self.now_ms;
        let Engine { conns, stats, .. } = self;
        // Checked by the caller: the subscription exists, so the connection does.
        let connection = conns[conn.slot as usize].as_mut().expect("open");
        let already_sent = connection.output_sent();
        let mut output = std::mem::take(connection.output_buffer());
        // Checked by the caller.
        let subscription = connection.subscriptions.get_mut(&id).expect("subscription");
        let order = subscription.order.as_mut().expect("id order");
        while let Some(entry) = order.events.first_entry() {
            if entry.key().counter > stable {
                break;
            }
            if subscription.credit == 0
                || subscription.remaining == Some(0)
                || output.len() - already_sent >= high_water
            {
                break;
            }
            let (event_id, (_, event)) = entry.remove_entry();
            order.bytes -= OrderBuffer::buffered_size(&event);
            if event_id < order.released {
                log::warn!(
                    "{conn}: subscription {id}: event {event_id} arrived after {} was delivered in id order; delivered late",
                    order.released
                );
                stats.events_delivered_late += 1;
            }
            order.released = order.released.max(event_id);
            encode_event(id, event.view(), &mut output);
            subscription.filter.observe(event_id);
            subscription.credit -= 1;
            stats.events_delivered += 1;
            if let Some(remaining) = subscription.remaining.as_mut() {
                *remaining -= 1;
            }
        }
        let waiting = order
            .events
            .first_key_value()
            .is_some_and(|(first, _)| first.counter > stable);
        order.stalled_since_ms = if waiting {
            Some(order.stalled_since_ms.unwrap_or(now_ms))
        } else {
            None
        };
        *connection.output_buffer() = output;
        if !connection.has_output_queued && connection.output_len() > 0 {
            connection.has_output_queued = true;
            self.output_queue.push_back(conn);
        }
    }

    fn after_feed_ordered(
        &mut self,
        conn: ConnId,
        id: u32,
        read_all: bool,
        stopped_by_budget: bool,
    ) -> Stop {
        let stable = self.stable_clock();
        let clock = self.tail.clock();
        // Checked by the caller: the subscription still exists.
        let subscription = self.subscription_mut(conn, id).expect("subscription");
        if subscription.remaining == Some(0) {
            self.end_subscription(conn, id, Some(EndReason::LimitReached));
            return Stop::Ended;
        }
        if !read_all {
            return if stopped_by_budget {
                Stop::Budget
            } else {
                Stop::Waiting
            };
        }
        let order = subscription.order.as_mut().expect("id order");
        if order.events.is_empty() {
            if let Some(rewind) = order.rewind.take() {
                // The buffer drained: read the events dropped for lack of room again.
                subscription.position.set_next(rewind, clock);
                return Stop::Budget;
            }
        }
        let releasable = order
            .events
            .first_key_value()
            .is_some_and(|(first, _)| first.counter <= stable);
        let delivered_all = order.events.is_empty() && order.rewind.is_none();
        match subscription.stream {
            Stream::Bounded if delivered_all => {
                self.end_subscription(conn, id, Some(EndReason::EndOfStream));
                return Stop::Ended;
            }
            Stream::Tail {
                caught_up_sent: false,
            } if !releasable && order.rewind.is_none() => {
                subscription.stream = Stream::Tail {
                    caught_up_sent: true,
                };
                let frame = ServerFrame::CaughtUp {
                    subscription_id: id,
                };
                self.send(conn, &frame);
            }
            Stream::Bounded | Stream::Tail { .. } | Stream::Replication => {}
        }
        Stop::Waiting
    }

    /// The stable clock moved on: id-order subscriptions holding events may release some.
    ///
    /// Only the id-order subscriptions are looked at (the tail index lists them in the order
    /// of a pass over every connection and its subscriptions): the stable clock moves with
    /// every produce on a node alone, and that pass cost every produce about 20 ns per
    /// subscription of any kind (2 ms with 100,000 idle ones, attack F4).
    pub(super) fn wake_ordered(&mut self) {
        let mut woken = Vec::new();
        for (conn, id) in self.tail.id_order() {
            // The index files open subscriptions only (`check_invariants`).
            let connection = self.conns[conn.slot as usize]
                .as_ref()
                .expect("filed: open");
            let subscription = connection.subscriptions.get(&id).expect("filed");
            let holding = subscription
                .order
                .as_ref()
                .is_some_and(|o| !o.events.is_empty());
            if holding && !subscription.position.is_queued() {
                woken.push((conn, id));
            }
        }
        for (conn, id) in woken {
            self.mark_ready(conn, id);
        }
    }

    /// Ends the id-order subscriptions whose next event has waited for the stable clock
    /// longer than `order_stall_timeout`, with OrderStalled naming what holds the clock back.
    pub(super) fn end_stalled_ordered(&mut self, now_ms: u64) {
        let timeout_ms = millis(self.config.cluster.order_stall_timeout);
        let mut stalled = Vec::new();
        for (conn, id) in self.tail.id_order() {
            // The index files open subscriptions only (`check_invariants`).
            let connection = self.conns[conn.slot as usize]
                .as_ref()
                .expect("filed: open");
            let subscription = connection.subscriptions.get(&id).expect("filed");
            let since = subscription.order.as_ref().and_then(|o| o.stalled_since_ms);
            if since.is_some_and(|since| now_ms >= since.saturating_add(timeout_ms)) {
                stalled.push((conn, id));
            }
        }
        if stalled.is_empty() {
            return;
        }
        let message = format!(
            "id order stalled for {} ms: {}; resume from the cursor later, or consume in arrival order",
            timeout_ms,
            self.stable_clock_holder()
        );
        for (conn, id) in stalled {
            log::warn!("{conn}: subscription {id}: {message}");
            self.end_subscription(conn, id, None);
            let scope = ErrorScope::Subscription(id);
            self.send_error(conn, scope, ErrorCode::OrderStalled, &message);
        }
    }
}
