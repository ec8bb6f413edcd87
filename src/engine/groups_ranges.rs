//! Range acks of consumer groups (GroupAckRange, protocol.md section 16): one frame of 25
//! bytes acknowledges every event in flight to a membership from the delivery of one id to the
//! delivery of another, in the membership's delivery order.
//!
//! A member may hold up to `groups.in_flight_max` events (100,000 by default), so one frame
//! can ask for that many acks. The work is charged to the turn's frame budget
//! (`frames_per_turn_total_max`), one unit per `ACKS_PER_FRAME_UNIT` events, and what does
//! not fit is done in later turns: until the range is done the connection's later frames
//! wait in its input buffer (`input_deferred`), so they are handled in order after it (a Ping
//! sent after a range is answered only once the whole range is acknowledged and journaled).

use super::{ConnId, Engine};
use crate::protocol::{ErrorCode, ErrorScope, GroupAckRange};
use crate::storage::Log;

/// Events a range ack (or a GroupAck, GroupNack) may settle for one unit of the turn's frame
/// budget: 16384 units a turn acknowledge at most 65,536 events a turn.
pub(super) const ACKS_PER_FRAME_UNIT: usize = 4;

impl<L: Log> Engine<L> {
    /// GroupAckRange: finds the delivery numbers of `first` and `last`, which must both be in
    /// flight to this membership (else `NotPending` naming the first that is not, and nothing
    /// is acknowledged), and queues the range between them (in either order) for
    /// `continue_group_ack_range`, which `decode_input` calls before the next frame.
    pub(super) fn on_group_ack_range(&mut self, conn: ConnId, range: GroupAckRange) {
        let id = range.subscription_id;
        let scope = ErrorScope::Subscription(id);
        let Some(name) = self.groups.memberships.get(&(conn, id)) else {
            let message = "GroupAckRange for an id that is not a group membership";
            return self.send_error(conn, scope, ErrorCode::UnknownGroup, message);
        };
        // Every membership names an existing group.
        let group = self.groups.groups.get(name).expect("group of a membership");
        let sequence_of = |event_id| {
            let offset = group.pending_by_id.get(&event_id)?;
            match group.pending.get(offset)?.state {
                super::groups::PendingState::InFlight {
                    member, sequence, ..
                } if member == (conn, id) => Some(sequence),
                _ => None,
            }
        };
        let (first, last) = match (sequence_of(range.first), sequence_of(range.last)) {
            (Some(first), Some(last)) => (first, last),
            (first, _) => {
                let missing = if first.is_none() {
                    range.first
                } else {
                    range.last
                };
                let message = format!(
                    "event {missing} is not in flight to this membership of group {name:?} \
                     (acknowledged, timed out, parked or never delivered to it): the range \
                     acknowledged nothing"
                );
                return self.send_error(conn, scope, ErrorCode::NotPending, &message);
            }
        };
        // `decode_input` continues a queued range before it decodes another frame of the
        // connection, so none is queued here.
        let previous = self
            .groups
            .ack_ranges
            .insert(conn, (id, first.min(last), first.max(last)));
        assert!(previous.is_none(), "{conn}: a second range ack queued");
    }

    /// True while a GroupAckRange of `conn` is not done: its later frames wait.
    pub(super) fn group_ack_range_queued(&self, conn: ConnId) -> bool {
        !self.groups.ack_ranges.is_empty() && self.groups.ack_ranges.contains_key(&conn)
    }

    /// Acknowledges what fits `units_max` frame units of the connection's queued range and
    /// returns the units used (at least one when there was a range).
    pub(super) fn continue_group_ack_range(&mut self, conn: ConnId, units_max: usize) -> usize {
        let Some(&(id, from, to)) = self.groups.ack_ranges.get(&conn) else {
            return 0;
        };
        let Some(name) = self.groups.memberships.get(&(conn, id)) else {
            // The membership ended (`leave_group` drops its range too).
            self.groups.ack_ranges.remove(&conn);
            return 0;
        };
        // Every membership names an existing group.
        let group = self
            .groups
            .groups
            .get_mut(name)
            .expect("group of a membership");
        let entries_max = units_max.max(1).saturating_mul(ACKS_PER_FRAME_UNIT);
        let Some(member) = group.member_mut((conn, id)) else {
            self.groups.ack_ranges.remove(&conn);
            return 0;
        };
        let settled: Vec<(u64, crate::storage::Offset)> = (member.in_flight.range(from..=to))
            .take(entries_max)
            .map(|(sequence, offset)| (*sequence, *offset))
            .collect();
        for (_, offset) in &settled {
            group.ack_offset(*offset);
        }
        match settled.last() {
            Some(&(last, _)) if settled.len() == entries_max && last < to => {
                self.groups.ack_ranges.insert(conn, (id, last + 1, to));
            }
            _ => {
                self.groups.ack_ranges.remove(&conn);
            }
        }
        self.stats.group_range_acks = self
            .stats
            .group_range_acks
            .saturating_add(settled.len() as u64);
        settled.len().div_ceil(ACKS_PER_FRAME_UNIT).max(1)
    }
}
