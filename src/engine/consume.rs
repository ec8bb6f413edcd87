//! Subscriptions: start, credit, unsubscribe, and feeding events from the log.
//!
//! A subscription is a cursor into the log plus credit. Feeding reads durable records from the
//! log (its cache or disk) straight into the connection's output buffer, and stops when the
//! credit runs out, when the output passes the high-water mark, or when the turn's budget is
//! spent; then the subscription waits for the thing that stopped it.

use std::collections::VecDeque;

use super::connection::{Stream, Subscription};
use super::replicas::REPLICATION_IN_FLIGHT_MAX;
use super::tail_index::{ReadPosition, TailIndex};
use super::turn_namespaces::TurnNamespaces;
use super::{ConnId, Engine, EngineStats, Phase};
use crate::event::{ActorId, Cursor, EventRef};
use crate::event::{Order, StartPosition};
use crate::protocol::{
    encode_event, encode_peer_event, EndReason, ErrorCode, ErrorScope, GlobError, NamespaceGlob,
    ServerFrame, Subscribe,
};
use crate::storage::{HideRules, Log, NamespaceKey, Offset, StorageError};

/// A subscription reads through the namespace index only when at least this many records lie
/// between it and the durable end: below that, reading them (mostly from the cache) costs
/// less than the index lookups and one positioned read per match.
const INDEX_GAP_MIN: u64 = 1024;

/// An index query whose positions hold at least one record in `DENSE_SHARE` of the range
/// they span (and at least `DENSE_POSITIONS_MIN` positions) found a namespace that most
/// records belong to: the subscription then scans instead (`Subscription::scan_dense`), as
/// each query re-reads the namespace's whole offset list of a sealed segment (as long as the
/// segment's records) to return at most `INDEX_POSITIONS_PER_QUERY_MAX` of them, and reads
/// each position on its own. A scan goes back to the index once it looked at
/// `SPARSE_LOOKED_AT_MIN` records of which fewer than one in `SPARSE_SHARE` matched (the gap
/// between the two shares keeps a subscription from flipping on every turn).
const DENSE_SHARE: u64 = 4;
const DENSE_POSITIONS_MIN: usize = 64;
const SPARSE_SHARE: u64 = 8;
const SPARSE_LOOKED_AT_MIN: u64 = 1024;

/// What the namespace index can select for a glob: the glob itself when it has no wildcard,
/// or its literal part up to the last `/` before the first wildcard when that is more than
/// `/` (cut at a `/` so that no spelling of `**` can make the literal part longer than what
/// every match starts with). `None`: the glob needs a scan.
pub(super) fn index_key(pattern: &str) -> Option<NamespaceKey> {
    let wildcard = pattern.find(['*', '?', '[']);
    let Some(wildcard) = wildcard else {
        return Some(NamespaceKey::Exact(pattern.to_string()));
    };
    let literal = &pattern[..wildcard];
    let cut = literal.rfind('/')?;
    (cut > 0).then(|| NamespaceKey::Prefix(literal[..cut].to_string()))
}

/// What feeding consumers may still do this turn. A record is looked at only while both are
/// positive, so a turn does at most `match_steps_per_turn_max` plus one match's steps.
pub(super) struct FeedBudget {
    pub(super) records: u64,
    /// Bytes of records (namespace and data) looked at: `feed_bytes_per_turn_max`.
    pub(super) bytes: u64,
    pub(super) match_steps: u64,
}

impl FeedBudget {
    pub(super) fn spent(&self) -> bool {
        self.records == 0 || self.bytes == 0 || self.match_steps == 0
    }
}

/// Why feeding one subscription stopped.
pub(super) enum Stop {
    /// It may go on: the turn's budget ran out.
    Budget,
    /// It waits for credit, for its output to drain, or for new events.
    Waiting,
    /// It ended (limit, end of stream, or a storage error) and was removed.
    Ended,
}

impl<L: Log> Engine<L> {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, subscribe: Subscribe) {
        let scope = ErrorScope::Subscription(subscribe.subscription_id);
        // Checked by the caller: frames are handled only for open connections.
        let connection = self.conn(conn).expect("connection is open");
        if connection
            .subscriptions
            .contains_key(&subscribe.subscription_id)
        {
            let message = "the subscription id is already in use on this connection";
            return self.send_error(conn, scope, ErrorCode::DuplicateSubscription, message);
        }
        if connection.subscriptions.len() >= self.config.subscriptions_per_connection_max as usize {
            let message = format!(
                "a connection may have at most {} subscriptions",
                self.config.subscriptions_per_connection_max
            );
            return self.send_error(conn, scope, ErrorCode::TooManySubscriptions, &message);
        }
        if let StartPosition::Cursor(cursor) = &subscribe.start {
            if cursor.vector.len() > self.config.cursor_entries_max as usize {
                let message = format!(
                    "a cursor may have at most {} vector entries; this one has {}",
                    self.config.cursor_entries_max,
                    cursor.vector.len()
                );
                return self.send_error(conn, scope, ErrorCode::CursorTooLarge, &message);
            }
        }
        let glob_length_max = self.config.wire.glob_length_max as usize;
        let glob = match NamespaceGlob::with_length_max(&subscribe.glob, glob_length_max) {
            Ok(glob) => glob,
            Err(error) => {
                // A glob over the limit is not echoed back: the reply stays small.
                let message = match error {
                    GlobError::TooLong { .. } => error.to_string(),
                    _ => format!("invalid glob {:?}: {error}", subscribe.glob),
                };
                return self.send_error(conn, scope, ErrorCode::InvalidGlob, &message);
            }
        };
        if let Err(message) = self.check_consume(conn, &subscribe.glob) {
            return self.send_error(conn, scope, ErrorCode::PermissionDenied, &message);
        }
        let unindexed_max = self.config.unindexed_globs_max;
        if !self.tail.admits(glob.as_str(), unindexed_max) {
            let message = format!(
                "the server already holds {unindexed_max} distinct globs with a wildcard in \
                 their first and last segments, each matched against every produce; start the \
                 glob with a literal segment (/app/**) or end it with one (/**/orders), or use \
                 one of the globs held"
            );
            return self.send_error(conn, scope, ErrorCode::TooManySubscriptions, &message);
        }
        // "End" means after everything appended so far, including this turn's appends that
        // are not durable yet (a produce sent before the Subscribe on the same connection).
        let start = match subscribe.start {
            StartPosition::End => Ok(self.log.end()),
            _ => self.log.find_start(&subscribe.start),
        };
        let next = match start {
            Ok(offset) => offset,
            // The search met damage before it found its record, so that record is at the
            // damage or after it: reading from there meets the damage again and skips it.
            Err(StorageError::Unreadable { offsets, .. }) if subscribe.skip_damaged => {
                offsets.start
            }
            Err(error) => {
                let message = format!("could not find the start position: {error}");
                return self.send_error(conn, scope, ErrorCode::StorageFailure, &message);
            }
        };
        // A subscription from the end has no stored events to deliver: it is caught up (or,
        // without tail, at its end) as soon as it exists, whatever its credit and whatever is
        // appended after it in the same turn (protocol.md, section 7).
        let from_end = subscribe.start == StartPosition::End;
        if from_end && !subscribe.tail {
            let frame = ServerFrame::End {
                subscription_id: subscribe.subscription_id,
                reason: EndReason::EndOfStream,
            };
            return self.send(conn, &frame);
        }
        let subscription = Subscription {
            id: subscribe.subscription_id,
            glob,
            filter: subscribe.start.cursor().unwrap_or_default(),
            position: ReadPosition::new(next, self.tail.clock()),
            remaining: (subscribe.limit > 0).then_some(subscribe.limit),
            credit: subscribe.credit as u64,
            stream: if subscribe.tail {
                Stream::Tail {
                    caught_up_sent: from_end,
                }
            } else {
                Stream::Bounded
            },
            skip_damaged: subscribe.skip_damaged,
            order: match subscribe.order {
                Order::Arrival => None,
                Order::Id => Some(Box::new(super::order::OrderBuffer::starting_at(
                    &subscribe.start.cursor().unwrap_or_default(),
                ))),
            },
            scan_dense: false,
        };
        let id_order = subscription.order.is_some();
        let (entry, glob) = (
            (conn, subscribe.subscription_id),
            subscription.glob.as_str(),
        );
        self.tail.insert(entry, glob, id_order);
        // Checked above: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection
            .subscriptions
            .insert(subscribe.subscription_id, Box::new(subscription));
        if from_end {
            let frame = ServerFrame::CaughtUp {
                subscription_id: subscribe.subscription_id,
            };
            self.send(conn, &frame);
        }
        self.recount_memory(conn);
        self.mark_ready(conn, subscribe.subscription_id);
    }

    pub(super) fn on_credit(&mut self, conn: ConnId, id: u32, count: u32) {
        if self.on_group_credit(conn, id, count) {
            return;
        }
        let Some(subscription) = self.subscription_mut(conn, id) else {
            let message = "credit for a subscription that is not open";
            let scope = ErrorScope::Subscription(id);
            return self.send_error(conn, scope, ErrorCode::UnknownSubscription, message);
        };
        subscription.credit = subscription.credit.saturating_add(count as u64);
        self.mark_ready(conn, id);
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, id: u32) {
        // Checked by the caller: frames are handled only for open connections.
        let connection = self.conn_mut(conn).expect("connection is open");
        let Some(removed) = connection.subscriptions.remove(&id) else {
            let message = if self.groups.is_member((conn, id)) {
                "unsubscribe for a group membership: a membership ends with LeaveGroup"
            } else {
                "unsubscribe for a subscription that is not open"
            };
            let scope = ErrorScope::Subscription(id);
            return self.send_error(conn, scope, ErrorCode::UnknownSubscription, message);
        };
        self.tail.remove((conn, id), removed.glob.as_str());
        self.memory_waiting.remove(&(conn, id));
        let reason = EndReason::Unsubscribed;
        self.send(
            conn,
            &ServerFrame::End {
                subscription_id: id,
                reason,
            },
        );
    }

    /// Puts a subscription in the ready queue unless it is there already.
    pub(super) fn mark_ready(&mut self, conn: ConnId, id: u32) {
        let clock = self.tail.clock();
        if let Some(subscription) = self.subscription_mut(conn, id) {
            if subscription.position.queue(clock) {
                self.ready.push_back((conn, id));
            }
        }
    }

    /// New events became durable. A tailing subscription that was waiting at the old end
    /// wakes only if one of the turn's namespaces matches its glob; otherwise it skips the new
    /// records without reading them.
    ///
    /// Matching here is charged against `match_steps_per_turn_max`. Once that is spent, the
    /// remaining waiting subscriptions are woken without matching: feeding reads the new
    /// records and matches them under its own budget, carrying what is left to the next turn.
    /// Waking is always safe (a woken subscription that wants nothing only moves its cursor),
    /// skipping happens only after every namespace of the turn failed to match, so no event
    /// is lost and none is delivered out of order.
    ///
    /// Only the subscriptions the tail index names are looked at, in the order of a pass over
    /// every connection and its subscriptions; the others match none of the turn's namespaces
    /// and skip the new records lazily (`tail_index.rs`). A turn with more distinct namespaces
    /// than `turn_namespaces_matched_max` wakes every waiting subscription in that pass. The
    /// subscriptions left out are not matched, so not charged: the budget lasts longer than
    /// in a pass over everyone, and its running out wakes only the remaining candidates.
    pub(super) fn wake_tailing_consumers(&mut self, durable_before: Offset) {
        let durable_end = self.log.durable_end();
        // With many distinct namespaces in one turn, matching each against every glob costs
        // more than letting the subscriptions read the records themselves.
        let steps_left = if self.turn_namespaces.len() > self.config.turn_namespaces_matched_max {
            0
        } else {
            self.config.match_steps_per_turn_max
        };
        // The engine's buffers, lent and given back empty (no allocation per turn).
        let mut woken = std::mem::take(&mut self.woken);
        let mut candidates = std::mem::take(&mut self.tail_candidates);
        // Every wake starts where the previous one ended (the durable end moves only at a
        // turn's sync, which is followed by a wake): what the index leaves out was moved by
        // each earlier wake. Were it not so, the pass over everything still wakes exactly.
        debug_assert_eq!(
            durable_before,
            self.tail.end(),
            "a durable end was not woken"
        );
        let indexed = steps_left > 0 && durable_before == self.tail.end() && self.tail.may_skip();
        let mut steps_left = steps_left;
        if indexed {
            // A group of subscriptions on one glob with wildcards at both ends is matched
            // once, through one of them, under the same budget as the visits below.
            let Engine {
                conns,
                tail,
                turn_namespaces,
                stats,
                ..
            } = &mut *self;
            let group_matches = |(conn, id): (ConnId, u32)| {
                // The index files open subscriptions only (`check_invariants`).
                let connection = conns[conn.slot as usize].as_ref().expect("filed: open");
                let glob = &connection.subscriptions.get(&id).expect("filed").glob;
                turn_namespaces.names().any(|namespace| {
                    if steps_left == 0 {
                        return true;
                    }
                    let (matched, cost) = glob.matches_with_cost(namespace);
                    steps_left = steps_left.saturating_sub(cost);
                    stats.match_steps_charged += cost;
                    matched
                })
            };
            tail.candidates(turn_namespaces.names(), &mut candidates, group_matches);
        }
        let Engine {
            conns,
            tail,
            turn_namespaces,
            stats,
            ..
        } = self;
        let mut wake = Wake {
            tail,
            turn_namespaces,
            durable_before,
            durable_end,
            steps_left,
            stats,
            woken: &mut woken,
        };
        if indexed {
            for &(conn, id) in &candidates {
                // The index files open subscriptions only (`check_invariants`).
                let connection = conns[conn.slot as usize].as_mut().expect("filed: open");
                let subscription = connection.subscriptions.get_mut(&id).expect("filed");
                wake.visit(conn, subscription);
            }
        } else {
            for connection in conns.iter_mut().flatten() {
                for subscription in connection.subscriptions.values_mut() {
                    wake.visit(connection.id, subscription);
                }
            }
        }
        self.tail.advance(durable_end);
        candidates.clear();
        self.tail_candidates = candidates;
        for (conn, id) in woken.drain(..) {
            self.mark_ready(conn, id);
        }
        self.woken = woken;
    }

    /// Feeds ready subscriptions until none is left or the turn's budgets (records looked at,
    /// glob matching) are spent.
    pub(super) fn feed_consumers(&mut self) {
        let mut budget = FeedBudget {
            records: self.config.records_per_turn_max,
            bytes: self.config.feed_bytes_per_turn_max,
            match_steps: self.config.match_steps_per_turn_max,
        };
        while !budget.spent() {
            let Some((conn, id)) = self.ready.pop_front() else {
                break;
            };
            let clock = self.tail.clock();
            let Some(subscription) = self.subscription_mut(conn, id) else {
                continue;
            };
            subscription.position.unqueue(clock);
            self.report_skipped(conn, id);
            match self.feed_one(conn, id, &mut budget) {
                Stop::Budget => self.mark_ready(conn, id),
                Stop::Waiting | Stop::Ended => {}
            }
            self.check_memory(conn);
        }
    }

    /// Retention deleted records this subscription had not read yet: it moves on to the
    /// oldest retained record and, never silently, tells the consumer how many it lost
    /// (Skipped) and logs it. A peer stream has no such frame; the warning says which peer.
    fn report_skipped(&mut self, conn: ConnId, id: u32) {
        let start = self.log.start();
        let clock = self.tail.clock();
        let Some(subscription) = self.subscription_mut(conn, id) else {
            return;
        };
        let next = subscription.position.next(clock);
        if next >= start {
            return;
        }
        let count = start.0 - next.0;
        subscription.position.set_next(start, clock);
        let peer = subscription.stream == Stream::Replication;
        if peer {
            log::warn!(
                "{conn}: retention deleted {count} records before they were sent to this peer"
            );
            return;
        }
        log::warn!(
            "{conn}: subscription {id}: retention deleted {count} records it had not read; \
             it goes on after them"
        );
        let frame = ServerFrame::Skipped {
            subscription_id: id,
            count,
        };
        self.send(conn, &frame);
    }

    /// Delivers what one subscription may take now, then sends CaughtUp or End if due.
    fn feed_one(&mut self, conn: ConnId, id: u32, budget: &mut FeedBudget) -> Stop {
        let ordered = self
            .subscription_mut(conn, id)
            .is_some_and(|s| s.order.is_some());
        if ordered {
            return self.feed_ordered(conn, id, budget);
        }
        let durable_end = self.log.durable_end();
        let clock = self.tail.clock();
        let Some(from) = self
            .subscription_mut(conn, id)
            .map(|s| s.position.next(clock))
        else {
            return Stop::Ended;
        };
        let Some(fed) = self.read_into_output(conn, id, durable_end, budget) else {
            return Stop::Ended;
        };
        self.after_output_written(conn, id, fed.stopped_by_memory);
        match fed.next {
            Ok(next) => self.after_feed(conn, id, next, durable_end, fed.stopped_by_budget),
            Err(StorageError::Unreadable { context, offsets })
                if self.skip_damaged(conn, id, from, &offsets) =>
            {
                let count = offsets.end.0 - from.0.max(offsets.start.0);
                log::warn!(
                    "{conn}: subscription {id}: skipped {count} unreadable records, as it \
                     asked: corrupt log: {context}"
                );
                let frame = ServerFrame::Skipped {
                    subscription_id: id,
                    count,
                };
                self.send(conn, &frame);
                // Goes on after the damage, this turn or the next (as if stopped by the
                // budget: the records up to the durable end are still to be looked at).
                self.after_feed(conn, id, offsets.end, durable_end, true)
            }
            Err(error) => self.fail_read(conn, id, error),
        }
    }

    /// Reads the log from the subscription's next record and encodes what it may deliver
    /// straight into the connection's output; the distance to `durable_end` decides whether
    /// it reads through the namespace index. `None`: the subscription is gone.
    fn read_into_output(
        &mut self,
        conn: ConnId,
        id: u32,
        durable_end: Offset,
        budget: &mut FeedBudget,
    ) -> Option<Fed> {
        // What the server's connections may still take before `connections_memory_max`.
        let memory_room =
            (self.config.connections_memory_max).saturating_sub(self.connections_memory);
        let high_water = self.config.send_buffer_high_water;
        let own_actor = self.config.actor_id;
        let hide = self.log.hide_rules();
        let clock = self.tail.clock();
        let Engine {
            log, conns, stats, ..
        } = self;
        // Checked by the caller: the subscription exists, so the connection does.
        let connection = conns[conn.slot as usize].as_mut().expect("open");
        let already_sent = connection.output_sent();
        let mut output = std::mem::take(connection.output_buffer());
        let Some(subscription) = connection.subscriptions.get_mut(&id) else {
            *connection.output_buffer() = output;
            return None;
        };
        let (replication_sent, own_passed) = match &mut connection.phase {
            Phase::Peer(peer) => (Some(&mut peer.replication_sent), Some(&mut peer.own_passed)),
            _ => (None, None),
        };
        let from = subscription.position.next(clock);
        let gap = durable_end.0.saturating_sub(from.0);
        let key = (gap >= INDEX_GAP_MIN && !subscription.scan_dense)
            .then(|| index_key(subscription.glob.as_str()))
            .flatten();
        // How many matches one index query may return: every delivery the subscription may
        // still make this turn, plus one, so that a subscription whose credit or limit runs
        // out still finds out whether another match follows (as a scan does).
        let deliveries_max = subscription
            .credit
            .min(subscription.remaining.unwrap_or(u64::MAX))
            .min(budget.records);
        let mut delivery = Delivery {
            id,
            output_start: output.len(),
            output: &mut output,
            subscription: &mut *subscription,
            replication_sent,
            own_passed,
            budget,
            stats,
            already_sent,
            high_water,
            memory_room,
            own_actor,
            hide: &hide,
            stopped_by_budget: false,
            stopped_by_memory: None,
            looked_at: 0,
            matched: 0,
        };
        // The index's work (entries and records it reads) is charged to the turn's record
        // budget, like the records a scan looks at.
        let work_max = delivery.budget.records;
        let mut work = work_max;
        let mut dense = false;
        let result = match &key {
            Some(key) => {
                let (limit, work) = (deliveries_max, &mut work);
                read_indexed(log, key, from, limit, work, &mut dense, &mut |event| {
                    delivery.offer(event)
                })
            }
            None => log
                .read(from, &mut |_, event| delivery.offer(event))
                .map(IndexedRead::Done),
        };
        let (mut stopped_by_budget, stopped_by_memory) =
            (delivery.stopped_by_budget, delivery.stopped_by_memory);
        let (looked_at, matched) = (delivery.looked_at, delivery.matched);
        if key.is_some() {
            subscription.scan_dense = dense;
        } else if subscription.scan_dense
            && looked_at >= SPARSE_LOOKED_AT_MIN
            && matched * SPARSE_SHARE < looked_at
        {
            subscription.scan_dense = false;
        }
        if key.is_some() {
            // An index query is at least one unit of the turn's budget, besides the records
            // it delivers, so a query that finds nothing still brings the turn closer to its
            // end.
            let spent = (work_max - work).max(1);
            budget.records = budget.records.saturating_sub(spent);
        }
        if matches!(result, Ok(IndexedRead::More(_))) {
            stopped_by_budget = true;
        }
        *connection.output_buffer() = output;
        Some(Fed {
            next: result.map(IndexedRead::offset),
            stopped_by_budget,
            stopped_by_memory,
        })
    }

    /// Queues the connection's new output and counts its memory; a subscription that the
    /// connections' memory limit stopped waits for output to drain.
    fn after_output_written(&mut self, conn: ConnId, id: u32, stopped_by_memory: Option<usize>) {
        // Checked by the caller: the subscription existed, so the connection does.
        let connection = self.conn_mut(conn).expect("open");
        if !connection.has_output_queued && connection.output_len() > 0 {
            connection.has_output_queued = true;
            self.output_queue.push_back(conn);
        }
        self.recount_memory(conn);
        if let Some(size) = stopped_by_memory {
            self.memory_waiting.insert((conn, id), size);
        }
    }

    /// The log could not be read: the subscription ends with StorageFailure.
    fn fail_read(&mut self, conn: ConnId, id: u32, error: StorageError) -> Stop {
        let message = format!("could not read the log: {error}");
        log::error!("{conn}: subscription {id}: {message}");
        self.end_subscription(conn, id, None);
        let scope = ErrorScope::Subscription(id);
        self.send_error(conn, scope, ErrorCode::StorageFailure, &message);
        Stop::Ended
    }

    /// Whether the subscription asked to skip damaged ranges and this one lies ahead of it:
    /// it then moves past the damage (a range that does not would make it read the same
    /// records again, so that ends the subscription as without the option).
    pub(super) fn skip_damaged(
        &mut self,
        conn: ConnId,
        id: u32,
        from: Offset,
        offsets: &std::ops::Range<Offset>,
    ) -> bool {
        self.subscription_mut(conn, id)
            .is_some_and(|subscription| subscription.skip_damaged)
            && offsets.end > from
            && offsets.end > offsets.start
    }

    fn after_feed(
        &mut self,
        conn: ConnId,
        id: u32,
        next: Offset,
        durable_end: Offset,
        stopped_by_budget: bool,
    ) -> Stop {
        let clock = self.tail.clock();
        // Checked by the caller: the subscription still exists.
        let subscription = self.subscription_mut(conn, id).expect("subscription");
        subscription.position.set_next(next, clock);
        if subscription.remaining == Some(0) {
            self.end_subscription(conn, id, Some(EndReason::LimitReached));
            return Stop::Ended;
        }
        if next >= durable_end {
            match subscription.stream {
                Stream::Bounded => {
                    self.end_subscription(conn, id, Some(EndReason::EndOfStream));
                    return Stop::Ended;
                }
                Stream::Tail {
                    caught_up_sent: false,
                } => {
                    subscription.stream = Stream::Tail {
                        caught_up_sent: true,
                    };
                    let frame = ServerFrame::CaughtUp {
                        subscription_id: id,
                    };
                    self.send(conn, &frame);
                }
                Stream::Tail {
                    caught_up_sent: true,
                }
                | Stream::Replication => {}
            }
            return Stop::Waiting;
        }
        if stopped_by_budget {
            Stop::Budget
        } else {
            Stop::Waiting
        }
    }

    pub(super) fn end_subscription(&mut self, conn: ConnId, id: u32, reason: Option<EndReason>) {
        let removed = self
            .conn_mut(conn)
            .and_then(|connection| connection.subscriptions.remove(&id));
        if let Some(removed) = &removed {
            self.tail.remove((conn, id), removed.glob.as_str());
        }
        if removed.is_some_and(|s| s.position.is_queued()) {
            // A subscription ended while queued (an id-order one stalled, at housekeeping)
            // leaves the queue too: a new one under the same id starts unqueued.
            self.ready.retain(|entry| *entry != (conn, id));
        }
        self.memory_waiting.remove(&(conn, id));
        self.recount_memory(conn);
        if let Some(reason) = reason {
            let frame = ServerFrame::End {
                subscription_id: id,
                reason,
            };
            self.send(conn, &frame);
        }
    }
}

/// One wake of tail subscriptions (`wake_tailing_consumers`), visiting them one at a time.
struct Wake<'a> {
    tail: &'a TailIndex,
    turn_namespaces: &'a TurnNamespaces,
    durable_before: Offset,
    durable_end: Offset,
    /// What is left of `match_steps_per_turn_max`; at 0 a waiting subscription is woken
    /// without matching.
    steps_left: u64,
    stats: &'a mut EngineStats,
    /// The subscriptions to queue, in the order visited.
    woken: &'a mut Vec<(ConnId, u32)>,
}

impl Wake<'_> {
    /// A subscription that waits at the end of the log (not queued, not behind the old
    /// durable end) wakes if one of the turn's namespaces matches its glob, else moves to
    /// the new durable end.
    fn visit(&mut self, conn: ConnId, subscription: &mut Subscription) {
        self.stats.tail_subscriptions_visited += 1;
        let clock = self.tail.clock();
        let position = &mut subscription.position;
        if position.is_queued() {
            return;
        }
        let next = position.next(clock);
        let waiting = next >= self.durable_before;
        let glob = &subscription.glob;
        let (steps_left, stats) = (&mut self.steps_left, &mut *self.stats);
        let wanted = waiting
            && self.turn_namespaces.names().any(|namespace| {
                if *steps_left == 0 {
                    return true;
                }
                let (matched, cost) = glob.matches_with_cost(namespace);
                *steps_left = steps_left.saturating_sub(cost);
                stats.match_steps_charged += cost;
                matched
            });
        if wanted || !waiting {
            // Behind the old end, no later wake moves it either.
            position.hold(next);
        } else {
            position.skip_to(self.durable_end, clock);
        }
        if wanted {
            self.woken.push((conn, subscription.id));
        }
    }
}

/// An event frame up to this size is fed to a connection with no unsent output even when
/// it takes the connections over `connections_memory_max` (see `feed_one`).
const SMALL_EVENT_SIZE_MAX: usize = 64 * 1024;

/// What reading the log for one subscription came to.
struct Fed {
    /// The next record to look at, or the error that stopped the read.
    next: Result<Offset, StorageError>,
    stopped_by_budget: bool,
    /// The size of the event that would have taken the connections over their memory limit.
    stopped_by_memory: Option<usize>,
}

/// One subscription's delivery from the log into its connection's output, a record at a time.
struct Delivery<'a> {
    id: u32,
    subscription: &'a mut Subscription,
    /// The peer's list of events sent and not yet credited; `Some` on peer connections.
    replication_sent: Option<&'a mut VecDeque<u64>>,
    /// The stream's highest own counter passed; `Some` on peer connections.
    own_passed: Option<&'a mut u64>,
    /// The connection's output buffer: `already_sent` bytes at its front are sent, and this
    /// delivery appends from `output_start` on.
    output: &'a mut Vec<u8>,
    output_start: usize,
    already_sent: usize,
    budget: &'a mut FeedBudget,
    stats: &'a mut EngineStats,
    high_water: usize,
    memory_room: usize,
    own_actor: ActorId,
    /// Purges and per-namespace retention: what no subscription (and no peer) is sent.
    hide: &'a HideRules,
    stopped_by_budget: bool,
    stopped_by_memory: Option<usize>,
    /// Records looked at, and those of them the subscription wanted (for `scan_dense`).
    looked_at: u64,
    matched: u64,
}

impl Delivery<'_> {
    /// Looks at one record: delivers it if the subscription wants it and may take it now.
    /// False stops the read before this record.
    fn offer(&mut self, event: EventRef<'_>) -> bool {
        if self.budget.spent() {
            self.stopped_by_budget = true;
            return false;
        }
        let wanted = self.wants(event);
        if wanted {
            // Only a delivery needs credit, limit and room in the output; records the
            // subscription skips are passed over without them, so CaughtUp and End still
            // come when the credit is spent.
            if !self.may_take(event) || !self.encode(event) {
                return false;
            }
            self.subscription.credit -= 1;
            self.stats.events_delivered += 1;
            if let Some(remaining) = self.subscription.remaining.as_mut() {
                *remaining -= 1;
            }
        }
        if event.id.actor == self.own_actor {
            if let Some(own_passed) = self.own_passed.as_deref_mut() {
                *own_passed = (*own_passed).max(event.id.counter);
            }
        }
        self.budget.records -= 1;
        self.looked_at += 1;
        self.matched += u64::from(wanted);
        let size = (event.namespace.len() + event.data.len()) as u64;
        self.budget.bytes = self.budget.bytes.saturating_sub(size);
        true
    }

    /// Matches the record against the glob (charging the steps to the turn) and the filter.
    fn wants(&mut self, event: EventRef<'_>) -> bool {
        let subscription = &self.subscription;
        let (glob, filter) = (&subscription.glob, &subscription.filter);
        let steps = &mut self.budget.match_steps;
        let charged = &mut self.stats.match_steps_charged;
        wanted(glob, filter, self.hide, event, steps, charged)
    }

    /// Credit, limit, the connection's high-water mark and the connections' memory allow
    /// one more event now.
    fn may_take(&mut self, event: EventRef<'_>) -> bool {
        let subscription = &self.subscription;
        if subscription.credit == 0
            || subscription.remaining == Some(0)
            || self.output.len() - self.already_sent >= self.high_water
        {
            return false;
        }
        // The event waits (nothing is dropped) while its copy would take all connections
        // together past their limit; it is fed once output drains. One small event to a
        // connection with nothing unsent always goes: a healthy consumer is not starved by
        // others' unread copies, and if that takes the total over the limit, the connection
        // holding the most is closed.
        let size = event_frame_size_max(event);
        let added = self.output.len() - self.output_start + size;
        let idle = self.output.len() == self.already_sent && size <= SMALL_EVENT_SIZE_MAX;
        if added > self.memory_room && !idle {
            self.stopped_by_memory = Some(size);
            return false;
        }
        true
    }

    /// Appends the Event frame, or for a replication stream the PeerEvent frame. False: a
    /// peer has as many events in flight as it may.
    fn encode(&mut self, event: EventRef<'_>) -> bool {
        if self.subscription.stream != Stream::Replication {
            encode_event(self.id, event, self.output);
            return true;
        }
        // Credit comes back in the order events were sent: remembering each sent event's
        // own counter tells which of them the peer holds durably.
        let Some(replication_sent) = self.replication_sent.as_deref_mut() else {
            unreachable!("a replication stream is fed only on a peer connection")
        };
        if replication_sent.len() >= REPLICATION_IN_FLIGHT_MAX {
            return false;
        }
        let own = if event.id.actor == self.own_actor {
            event.id.counter
        } else {
            0
        };
        replication_sent.push_back(own);
        encode_peer_event(event, self.output);
        self.subscription.filter.observe(event.id);
        true
    }
}

/// Whether a reader with `glob` and `filter` wants `event`, which no purge or retention rule
/// hides: the glob's matching and the rules' (`HideRules::hides_with_cost`) are charged to the
/// turn's `match_steps`, so a turn's matching is bounded whatever the globs, the rules and the
/// namespaces (at most the budget plus one record's).
pub(super) fn wanted(
    glob: &NamespaceGlob,
    filter: &Cursor,
    hide: &HideRules,
    event: EventRef<'_>,
    steps: &mut u64,
    charged: &mut u64,
) -> bool {
    let (matched, cost) = glob.matches_with_cost(event.namespace);
    charge_match(steps, charged, cost);
    if !matched || filter.covers(event.id) {
        return false;
    }
    !hidden_charged(hide, event, steps, charged)
}

/// `HideRules::hides`, its cost charged to a turn's `steps` and counted in `charged`.
pub(super) fn hidden_charged(
    hide: &HideRules,
    event: EventRef<'_>,
    steps: &mut u64,
    charged: &mut u64,
) -> bool {
    let (hidden, cost) = hide.hides_with_cost(event);
    charge_match(steps, charged, cost);
    hidden
}

fn charge_match(steps: &mut u64, charged: &mut u64, cost: u64) {
    *steps = steps.saturating_sub(cost);
    *charged = charged.saturating_add(cost);
}

/// At least the encoded size of the Event (or PeerEvent) frame that carries `event`: its
/// namespace and data plus the fixed fields (ids, timestamp, lengths, frame header).
pub(super) fn event_frame_size_max(event: EventRef<'_>) -> usize {
    64 + event.namespace.len() + event.data.len()
}

/// At most this many positions are asked of one index query (the vector they go into is
/// bounded by it).
const INDEX_POSITIONS_PER_QUERY_MAX: u64 = 1024;

/// How an index read ended.
enum IndexedRead {
    /// As a scan ends: `deliver` stopped before the record at this offset, or the durable end.
    Done(Offset),
    /// The query stopped with more of the log to search from this offset.
    More(Offset),
}

impl IndexedRead {
    fn offset(self) -> Offset {
        match self {
            IndexedRead::Done(offset) | IndexedRead::More(offset) => offset,
        }
    }
}

/// Reads the records `key` selects from `from` on through the namespace index, handing each
/// to `deliver` (false: stop before it), as a scan would hand every record. The records the
/// index skips are ones `deliver` would pass over (their namespace cannot match the glob), so
/// the subscription receives exactly what a scan delivers. `dense` tells whether the
/// positions found fill at least one in `DENSE_SHARE` of the records they span.
fn read_indexed<L: Log>(
    log: &mut L,
    key: &NamespaceKey,
    from: Offset,
    deliveries_max: u64,
    work: &mut u64,
    dense: &mut bool,
    deliver: &mut dyn FnMut(EventRef<'_>) -> bool,
) -> Result<IndexedRead, StorageError> {
    let count_max = deliveries_max
        .saturating_add(1)
        .min(INDEX_POSITIONS_PER_QUERY_MAX) as usize;
    let mut found = Vec::new();
    let searched_to = log.find_namespace_within(key, from, count_max, work, &mut found)?;
    if let (Some(first), Some(last)) = (found.first(), found.last()) {
        let span = last.0 - first.0 + 1;
        *dense = found.len() >= DENSE_POSITIONS_MIN && span <= DENSE_SHARE * found.len() as u64;
    }
    for position in found {
        let mut stopped = false;
        log.read_one(position, &mut |event| stopped = !deliver(event))?;
        if stopped {
            return Ok(IndexedRead::Done(position));
        }
    }
    if searched_to >= log.durable_end() {
        Ok(IndexedRead::Done(searched_to))
    } else {
        Ok(IndexedRead::More(searched_to))
    }
}

#[cfg(test)]
mod index_key_tests {
    use super::*;

    #[test]
    fn globs_give_exact_names_literal_prefixes_or_nothing() {
        let exact = |s: &str| Some(NamespaceKey::Exact(s.into()));
        let prefix = |s: &str| Some(NamespaceKey::Prefix(s.into()));
        assert_eq!(index_key("/accounts/42"), exact("/accounts/42"));
        assert_eq!(index_key("/accounts/42/**"), prefix("/accounts/42"));
        assert_eq!(index_key("/accounts/4?/x"), prefix("/accounts"));
        assert_eq!(index_key("/a[bc]/x"), None);
        assert_eq!(index_key("/**"), None);
        assert_eq!(index_key("/*/x"), None);
    }
}
