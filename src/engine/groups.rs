//! Consumer groups (docs/consumers.md): durable, server-side consumers whose members compete
//! for events, acknowledge them, and get them redelivered on time-out, nack or disconnect;
//! an event delivered `max_deliveries` times is parked.
//!
//! State lives here; the group journal (`storage::groups`) only records it. A group reads the
//! log like a subscription (durable records only, under credit, the high-water mark and the
//! turn's budget) and never copies an event: a pending entry is an offset and an id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::connection::Connection;
use super::consume::{hidden_charged, wanted};
use super::groups_compaction::Compaction;
use super::log_limit::{held_back_suffix, LogLimit};
use super::{millis, ConnId, Engine, Now};
use crate::config::GroupLimits;
use crate::event::{Cursor, EventId, StartPosition};
use crate::protocol::{
    encode_event, EndReason, ErrorCode, ErrorScope, GlobError, GroupAck, GroupSettings, JoinGroup,
    NamespaceGlob, ServerFrame,
};
use crate::storage::groups::{
    GroupRecord, GroupStore, MemoryGroupStore, ACK_OFFSETS_PER_RECORD_MAX,
};
use crate::storage::{Log, Offset, StorageError};

/// What one pending entry costs (the pending table, the id index and its timer, with the
/// trees' and the hash map's overhead): measured about 170 bytes (attack2 finding 2), plus
/// the member's delivery-order entry while it is in flight (a `u64` and an offset in a
/// `BTreeMap`, about 32 bytes with the node's share).
pub const GROUP_PENDING_ENTRY_BYTES: u64 = 224;
/// What one acknowledged offset above a floor costs in its `BTreeSet` (8 bytes plus node
/// overhead; measured 40 to 60 bytes with the allocator's share, attack2 finding 3).
pub const GROUP_ACKED_ENTRY_BYTES: u64 = 48;
/// What one parked event costs in its `BTreeMap` (an offset and an id, 24 bytes, plus node
/// overhead): counted like an acknowledged offset (attack5 finding F3: parked events were not
/// counted at all).
pub const GROUP_PARKED_ENTRY_BYTES: u64 = 48;

/// A membership: the connection and the subscription id of its JoinGroup.
pub(super) type MemberKey = (ConnId, u32);

/// Every group, the journal, and which connection is a member of which group.
/// What group delivery may still do this turn: records looked at (`records_per_turn_max`)
/// and glob matching, the group's glob and the purge rules (`match_steps_per_turn_max`).
pub(super) struct GroupBudget {
    pub(super) records: u64,
    pub(super) match_steps: u64,
}

pub(super) struct Groups {
    pub(super) store: Box<dyn GroupStore>,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) memberships: HashMap<MemberKey, String>,
    /// A GroupAckRange not yet done (its work is charged to the turn's frame budget): the
    /// membership's subscription id and the delivery numbers left, both included. At most
    /// one per connection: its later frames wait until it is done (`groups_ranges.rs`).
    pub(super) ack_ranges: HashMap<ConnId, (u32, u64, u64)>,
    /// The journal size right after the last compaction (or load).
    pub(super) snapshot_bytes: u64,
    /// A compaction of the journal in progress (`groups_compaction.rs`).
    pub(super) compaction: Option<Compaction>,
    /// The lines "group created" and "group deleted" (GroupAdmin create and delete, one per
    /// frame): at most one line a second each for all groups (attack round 8).
    pub(super) created_log: LogLimit,
    pub(super) deleted_log: LogLimit,
    /// The group whose due timers used up the last turn's `groups.expiries_per_turn_max`:
    /// the next turn starts with the group after it, so every group's time-outs are handled
    /// in turn (attack round 9).
    expiry_ran_out: Option<String>,
    /// Events delivered to members so far (wrapping): the turn summary that tells the
    /// reactor a member may answer soon (`Engine::take_member_deliveries`).
    pub(super) deliveries: u64,
}

pub(super) struct Group {
    /// The principal that created the group (with an auth file): only it, or an admin, may
    /// join or administer the group. `None` for groups created without an auth file (or in a
    /// version 1 journal): any principal allowed to consume its glob may join.
    pub(super) owner: Option<String>,
    glob: NamespaceGlob,
    pub(super) glob_text: String,
    /// Ack time-out, max deliveries and max in flight: the group's, journaled with it; a
    /// member may lower them for itself (`Member::own`).
    pub(super) settings: GroupSettings,
    /// Events this cursor covers are never delivered (cursor and after-id starts).
    pub(super) filter: Cursor,
    /// The floor last written to the journal. Every pending entry below it is a replayed
    /// parked event (an operator's replay; docs/consumers.md): the floor ignores those.
    pub(super) floor_written: Offset,
    /// The next record to look at for new deliveries.
    pub(super) next: Offset,
    /// Acknowledged offsets at or above the floor.
    pub(super) acked: BTreeSet<Offset>,
    /// Acknowledged this turn, written to the journal at its end.
    pub(super) acked_this_turn: Vec<Offset>,
    pub(super) parked: BTreeMap<Offset, EventId>,
    pub(super) pending: BTreeMap<Offset, Pending>,
    pub(super) pending_by_id: HashMap<EventId, Offset>,
    /// Pending entries whose delay has passed, waiting for a member, oldest first.
    pub(super) redeliver: BTreeSet<Offset>,
    /// (when, offset): ack deadlines of in-flight entries and the end of nack delays.
    pub(super) timers: BTreeSet<(u64, Offset)>,
    /// Delivery counts recovered from the journal for records not delivered since start-up
    /// (in offset order: a compaction walks it a piece at a time).
    pub(super) recovered_deliveries: BTreeMap<Offset, u32>,
    pub(super) members: Vec<Member>,
    round_robin: usize,
    /// The warnings "parked after N deliveries" and "the parked list is full" (a member that
    /// nacks everything causes one per frame): at most one line a second each.
    park_log: LogLimit,
    parked_full_log: LogLimit,
    /// The GroupAdmin lines "settings now", "parked events replayed" and "reset to offset"
    /// (one per frame): at most one line a second each (attack round 8).
    pub(super) settings_log: LogLimit,
    pub(super) replay_log: LogLimit,
    pub(super) reset_log: LogLimit,
}

pub(super) struct Pending {
    pub(super) id: EventId,
    pub(super) deliveries: u32,
    /// When it was first delivered (since start-up or its replay): the age `Groups` reports.
    pub(super) first_delivered_ms: Option<u64>,
    pub(super) state: PendingState,
}

pub(super) enum PendingState {
    InFlight {
        member: MemberKey,
        deadline_ms: u64,
        /// Its number in the member's delivery order (`Member::in_flight`).
        sequence: u64,
    },
    /// Nacked or released: delivered again once `ready_ms` passed (then also in `redeliver`).
    Waiting { ready_ms: u64 },
}

pub(super) struct Member {
    pub(super) key: MemberKey,
    pub(super) credit: u64,
    /// The events in flight to this member by their number in its delivery order (the order
    /// its Event frames went out), for GroupAckRange.
    pub(super) in_flight: BTreeMap<u64, Offset>,
    /// The number of the next delivery to this member.
    next_sequence: u64,
    /// The member's own settings from its JoinGroup (0: the group's): each may only lower
    /// the group's value, for this member.
    pub(super) own: GroupSettings,
    caught_up_sent: bool,
}

/// `own` when it is set (not 0) and lower than the group's `value`, else `value`.
fn lowered<T: Ord + Default>(own: T, value: T) -> T {
    if own == T::default() {
        value
    } else {
        own.min(value)
    }
}

impl Member {
    /// Events in flight to this member.
    pub(super) fn in_flight_count(&self) -> u32 {
        u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX)
    }

    /// The member's settings: the group's, lowered by its own.
    pub(super) fn settings(&self, group: &GroupSettings) -> GroupSettings {
        GroupSettings {
            ack_timeout_ms: lowered(self.own.ack_timeout_ms, group.ack_timeout_ms),
            max_deliveries: lowered(self.own.max_deliveries, group.max_deliveries),
            max_in_flight: lowered(self.own.max_in_flight, group.max_in_flight),
        }
    }

    fn may_take_more(&self, group: &GroupSettings) -> bool {
        self.credit > 0 && self.in_flight_count() < self.settings(group).max_in_flight
    }
}

/// The settings a new group gets from a creation's values: 0 means the server's default;
/// `Err` names a value beyond the server's limits.
pub(super) fn creation_settings(
    asked: GroupSettings,
    limits: &GroupLimits,
) -> Result<GroupSettings, String> {
    let ack_timeout_max = millis(limits.ack_timeout_max);
    if u64::from(asked.ack_timeout_ms) > ack_timeout_max {
        return Err(format!(
            "an ack time-out of {} ms is longer than this server allows \
             (groups.ack_timeout_max, {ack_timeout_max} ms)",
            asked.ack_timeout_ms
        ));
    }
    if asked.max_in_flight > limits.in_flight_max {
        return Err(format!(
            "max in flight {} is more than this server allows (groups.in_flight_max, {})",
            asked.max_in_flight, limits.in_flight_max
        ));
    }
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    Ok(GroupSettings {
        // Validated at start-up: at most u32::MAX ms.
        ack_timeout_ms: or(
            asked.ack_timeout_ms,
            ack_timeout_max.min(millis(limits.ack_timeout_default)) as u32,
        ),
        max_deliveries: if asked.max_deliveries == 0 {
            limits.max_deliveries_default
        } else {
            asked.max_deliveries
        },
        max_in_flight: or(asked.max_in_flight, limits.in_flight_default),
    })
}

/// A JoinGroup's values, lowered to the server's limits (a join is not refused for them).
fn join_settings(join: &JoinGroup, limits: &GroupLimits) -> GroupSettings {
    let ack_timeout_max = u32::try_from(millis(limits.ack_timeout_max)).unwrap_or(u32::MAX);
    GroupSettings {
        ack_timeout_ms: join.ack_timeout_ms.min(ack_timeout_max),
        max_deliveries: join.max_deliveries,
        max_in_flight: join.max_in_flight.min(limits.in_flight_max),
    }
}

/// The settings of a group a JoinGroup creates: each of the join's values where it is above
/// the server's default (lowered to the limits), else the default.
fn seeded_settings(join: &JoinGroup, limits: &GroupLimits) -> GroupSettings {
    let asked = join_settings(join, limits);
    let defaults = default_settings(limits);
    GroupSettings {
        ack_timeout_ms: asked.ack_timeout_ms.max(defaults.ack_timeout_ms),
        max_deliveries: asked.max_deliveries.max(defaults.max_deliveries),
        max_in_flight: asked.max_in_flight.max(defaults.max_in_flight),
    }
}

/// The server's default settings (a group journaled without a Settings record has them).
pub(super) fn default_settings(limits: &GroupLimits) -> GroupSettings {
    // The defaults are valid creation values: validated at start-up.
    creation_settings(GroupSettings::default(), limits).expect("default group settings")
}

impl Group {
    fn new(
        glob: NamespaceGlob,
        glob_text: String,
        start: Offset,
        filter: Cursor,
        owner: Option<String>,
        settings: GroupSettings,
    ) -> Group {
        Group {
            owner,
            glob,
            glob_text,
            settings,
            filter,
            floor_written: start,
            next: start,
            acked: BTreeSet::new(),
            acked_this_turn: Vec::new(),
            parked: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_by_id: HashMap::new(),
            redeliver: BTreeSet::new(),
            timers: BTreeSet::new(),
            recovered_deliveries: BTreeMap::new(),
            members: Vec::new(),
            round_robin: 0,
            park_log: LogLimit::default(),
            parked_full_log: LogLimit::default(),
            settings_log: LogLimit::default(),
            replay_log: LogLimit::default(),
            reset_log: LogLimit::default(),
        }
    }

    /// The journal record of the group's settings.
    pub(super) fn settings_record(&self, name: &str) -> GroupRecord {
        GroupRecord::Settings {
            group: name.to_string(),
            ack_timeout_ms: self.settings.ack_timeout_ms,
            max_deliveries: self.settings.max_deliveries,
            max_in_flight: self.settings.max_in_flight,
        }
    }

    /// The memory of this group's pending entries, acknowledged window and parked events.
    pub(super) fn memory_bytes(&self) -> u64 {
        self.pending.len() as u64 * GROUP_PENDING_ENTRY_BYTES
            + self.acked.len() as u64 * GROUP_ACKED_ENTRY_BYTES
            + self.parked.len() as u64 * GROUP_PARKED_ENTRY_BYTES
    }

    /// Every matching record below this is acknowledged or parked (or a replayed parked
    /// event, pending below the written floor, which the floor does not wait for).
    pub(super) fn floor(&self) -> Offset {
        match self.pending.range(self.floor_written..).next() {
            Some((&lowest, _)) => lowest.min(self.next),
            None => self.next,
        }
    }

    /// Forgets the state of records at or past `end` (the log's end after it lost a tail);
    /// true when there was some. Called at start-up, before any member joins.
    fn forget_from(&mut self, end: Offset) -> bool {
        let mut changed = false;
        for position in [&mut self.floor_written, &mut self.next] {
            if *position > end {
                *position = end;
                changed = true;
            }
        }
        changed |= !self.acked.split_off(&end).is_empty();
        changed |= !self.parked.split_off(&end).is_empty();
        for (offset, pending) in self.pending.split_off(&end) {
            self.pending_by_id.remove(&pending.id);
            self.redeliver.remove(&offset);
            changed = true;
        }
        self.timers.retain(|(_, offset)| *offset < end);
        let counted = self.recovered_deliveries.len();
        self.recovered_deliveries.retain(|offset, _| *offset < end);
        changed | (self.recovered_deliveries.len() != counted)
    }

    /// The index of the next member (round robin) that may take one more event.
    fn pick_member(&mut self, has_room: &dyn Fn(ConnId) -> bool) -> Option<usize> {
        let count = self.members.len();
        for step in 0..count {
            let index = (self.round_robin + step) % count;
            let member = &self.members[index];
            if member.may_take_more(&self.settings) && has_room(member.key.0) {
                self.round_robin = (index + 1) % count;
                return Some(index);
            }
        }
        None
    }

    pub(super) fn member_mut(&mut self, key: MemberKey) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.key == key)
    }

    /// The deliveries after which member `key`'s events are parked (the group's, or the
    /// member's lower own value; the group's once the member left).
    fn max_deliveries_of(&self, key: MemberKey) -> u32 {
        let settings = match self.members.iter().find(|m| m.key == key) {
            Some(member) => member.settings(&self.settings),
            None => self.settings,
        };
        u32::from(settings.max_deliveries)
    }

    /// Takes the pending entry at `offset` out of its member's hands or its wait for
    /// redelivery (its timer and queue places), as an ack or a release does.
    fn unhold(&mut self, offset: Offset) {
        let Some(pending) = self.pending.get(&offset) else {
            return;
        };
        match pending.state {
            PendingState::InFlight {
                member,
                deadline_ms,
                sequence,
            } => {
                self.timers.remove(&(deadline_ms, offset));
                if let Some(member) = self.members.iter_mut().find(|m| m.key == member) {
                    member.in_flight.remove(&sequence);
                }
            }
            PendingState::Waiting { ready_ms } => {
                self.timers.remove(&(ready_ms, offset));
                self.redeliver.remove(&offset);
            }
        }
    }

    /// Restarts the ack time-out of `event_id` if it is in flight to member `key` (its deadline
    /// becomes now plus the member's ack time-out); false if it is not.
    fn extend(&mut self, key: MemberKey, event_id: EventId, now_ms: u64) -> bool {
        let Some(&offset) = self.pending_by_id.get(&event_id) else {
            return false;
        };
        let Some(member) = self.members.iter().find(|m| m.key == key) else {
            return false;
        };
        let ack_timeout_ms = u64::from(member.settings(&self.settings).ack_timeout_ms);
        let Some(Pending {
            state:
                PendingState::InFlight {
                    member,
                    deadline_ms,
                    ..
                },
            ..
        }) = self.pending.get_mut(&offset)
        else {
            return false;
        };
        if *member != key {
            return false;
        }
        let old = *deadline_ms;
        *deadline_ms = now_ms.saturating_add(ack_timeout_ms);
        let new = *deadline_ms;
        self.timers.remove(&(old, offset));
        self.timers.insert((new, offset));
        true
    }

    /// Acknowledges the pending entry at `offset` (from any member).
    pub(super) fn ack_offset(&mut self, offset: Offset) {
        self.unhold(offset);
        let Some(pending) = self.pending.remove(&offset) else {
            return;
        };
        self.pending_by_id.remove(&pending.id);
        // A replayed parked event below the floor is journaled, not kept: the floor is
        // already past it.
        if offset >= self.floor_written {
            self.acked.insert(offset);
        }
        self.acked_this_turn.push(offset);
    }

    /// Records a delivery of the record at `offset` to member `index`.
    fn delivered(&mut self, index: usize, offset: Offset, id: EventId, now_ms: u64) -> u32 {
        let settings = self.members[index].settings(&self.settings);
        let member = &mut self.members[index];
        member.credit -= 1;
        let sequence = member.next_sequence;
        member.next_sequence += 1;
        member.in_flight.insert(sequence, offset);
        let deadline_ms = now_ms.saturating_add(u64::from(settings.ack_timeout_ms));
        let key = member.key;
        let (previous, first_delivered_ms) = match self.pending.get(&offset) {
            Some(pending) => (pending.deliveries, pending.first_delivered_ms),
            None => (self.recovered_deliveries.remove(&offset).unwrap_or(0), None),
        };
        let deliveries = previous.saturating_add(1);
        self.pending.insert(
            offset,
            Pending {
                id,
                deliveries,
                first_delivered_ms: Some(first_delivered_ms.unwrap_or(now_ms)),
                state: PendingState::InFlight {
                    member: key,
                    deadline_ms,
                    sequence,
                },
            },
        );
        self.pending_by_id.insert(id, offset);
        self.timers.insert((deadline_ms, offset));
        deliveries
    }

    /// Takes an entry out of its member's hands (time-out, nack, the member left): it is
    /// parked if it was delivered `max_deliveries` times, else redelivered after `delay_ms`.
    /// Returns the record to journal, if any.
    fn release(
        &mut self,
        name: &str,
        offset: Offset,
        delay_ms: u64,
        max_deliveries: u32,
        now_ms: u64,
        parked_max: usize,
    ) -> Option<GroupRecord> {
        // Nacked again while waiting: the new delay replaces the old one, whose timer would
        // otherwise fire later as an ack time-out of the redelivered event.
        self.unhold(offset);
        let pending = self.pending.get_mut(&offset)?;
        if pending.deliveries >= max_deliveries {
            if self.parked.len() < parked_max {
                let id = pending.id;
                self.pending.remove(&offset);
                self.pending_by_id.remove(&id);
                self.parked.insert(offset, id);
                if let Some(held_back) = self.park_log.allow(now_ms) {
                    log::warn!(
                        "group {name}: event {id} parked after {max_deliveries} deliveries{}",
                        held_back_suffix(held_back)
                    );
                }
                return Some(GroupRecord::Park {
                    group: name.to_string(),
                    offset,
                    id,
                });
            }
            if let Some(held_back) = self.parked_full_log.allow(now_ms) {
                log::warn!(
                    "group {name}: the parked list is full; redelivering instead{}",
                    held_back_suffix(held_back)
                );
            }
        }
        let ready_ms = now_ms.saturating_add(delay_ms);
        pending.state = PendingState::Waiting { ready_ms };
        if delay_ms == 0 {
            self.redeliver.insert(offset);
        } else {
            self.timers.insert((ready_ms, offset));
        }
        None
    }
}

impl Groups {
    /// Groups created by the principal `owner` (a pass over the groups, at most `groups_max`,
    /// once per group creation).
    fn owned_by(&self, owner: &str) -> usize {
        self.groups
            .values()
            .filter(|group| group.owner.as_deref() == Some(owner))
            .count()
    }

    /// No groups, on a store that keeps them in memory only.
    pub(super) fn new() -> Groups {
        Groups {
            store: Box::new(MemoryGroupStore::new()),
            groups: BTreeMap::new(),
            memberships: HashMap::new(),
            ack_ranges: HashMap::new(),
            snapshot_bytes: 0,
            compaction: None,
            created_log: LogLimit::default(),
            deleted_log: LogLimit::default(),
            expiry_ran_out: None,
            deliveries: 0,
        }
    }

    /// The groups recorded in `store` (start-up recovery).
    pub(super) fn load(
        mut store: Box<dyn GroupStore>,
        glob_length_max: usize,
        defaults: GroupSettings,
    ) -> Result<Groups, StorageError> {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        // Replayed parked events not yet acknowledged or parked again, per group.
        let mut replayed: HashMap<String, BTreeMap<Offset, EventId>> = HashMap::new();
        // Records come one at a time, streamed from the journal (attack5 F2: a load of the
        // whole file had taken 2.1 GB for a 909 MB journal).
        store.load(&mut |record| {
            match record {
                GroupRecord::Create {
                    group,
                    glob,
                    start,
                    filter,
                    owner,
                } => {
                    let compiled =
                        NamespaceGlob::with_length_max(&glob, glob_length_max.max(glob.len()))
                            .map_err(|error| StorageError::Corrupt {
                                context: format!("group journal: glob {glob:?}: {error}"),
                            })?;
                    replayed.remove(&group);
                    let created = Group::new(compiled, glob, start, filter, owner, defaults);
                    groups.insert(group, created);
                }
                GroupRecord::Settings {
                    group,
                    ack_timeout_ms,
                    max_deliveries,
                    max_in_flight,
                } => {
                    if let Some(group) = groups.get_mut(&group) {
                        // Journaled after validation; a damaged 0 would mean "never", so it
                        // is read as the default instead.
                        let or =
                            |value: u32, default: u32| if value == 0 { default } else { value };
                        group.settings = GroupSettings {
                            ack_timeout_ms: or(ack_timeout_ms, defaults.ack_timeout_ms),
                            max_deliveries: if max_deliveries == 0 {
                                defaults.max_deliveries
                            } else {
                                max_deliveries
                            },
                            max_in_flight: or(max_in_flight, defaults.max_in_flight),
                        };
                    }
                }
                GroupRecord::Floor { group, floor } => {
                    if let Some(group) = groups.get_mut(&group) {
                        group.floor_written = floor;
                        group.next = floor;
                        group.acked = group.acked.split_off(&floor);
                        group
                            .recovered_deliveries
                            .retain(|offset, _| *offset >= floor);
                    }
                }
                GroupRecord::Ack {
                    group: name,
                    offsets,
                } => {
                    if let Some(group) = groups.get_mut(&name) {
                        if let Some(replayed) = replayed.get_mut(&name) {
                            for offset in &offsets {
                                replayed.remove(offset);
                            }
                        }
                        let floor = group.floor_written;
                        group
                            .acked
                            .extend(offsets.into_iter().filter(|o| *o >= floor));
                    }
                }
                GroupRecord::Deliveries {
                    group,
                    offset,
                    count,
                } => {
                    if let Some(group) = groups.get_mut(&group) {
                        group.recovered_deliveries.insert(offset, count);
                    }
                }
                GroupRecord::Park {
                    group: name,
                    offset,
                    id,
                } => {
                    if let Some(group) = groups.get_mut(&name) {
                        group.parked.insert(offset, id);
                        group.recovered_deliveries.remove(&offset);
                        if let Some(replayed) = replayed.get_mut(&name) {
                            replayed.remove(&offset);
                        }
                    }
                }
                GroupRecord::Replay {
                    group: name,
                    offset,
                    id,
                } => {
                    if let Some(group) = groups.get_mut(&name) {
                        group.parked.remove(&offset);
                        group.recovered_deliveries.remove(&offset);
                        replayed.entry(name).or_default().insert(offset, id);
                    }
                }
                GroupRecord::Reset {
                    group: name,
                    start,
                    filter,
                } => {
                    if let Some(group) = groups.get_mut(&name) {
                        group.reset(start, filter);
                        replayed.remove(&name);
                    }
                }
                GroupRecord::Delete { group } => {
                    groups.remove(&group);
                    replayed.remove(&group);
                }
            }
            Ok(())
        })?;
        for (name, replayed) in replayed {
            if let Some(group) = groups.get_mut(&name) {
                // At or above the floor a replayed event is delivered again anyway (nothing
                // marks it acknowledged or parked); below it, it waits as a pending entry.
                let floor = group.floor_written;
                for (offset, id) in replayed.range(..floor) {
                    group.replay(*offset, *id);
                }
            }
        }
        let snapshot_bytes = store.size_bytes();
        Ok(Groups {
            store,
            groups,
            memberships: HashMap::new(),
            ack_ranges: HashMap::new(),
            snapshot_bytes,
            compaction: None,
            created_log: LogLimit::default(),
            deleted_log: LogLimit::default(),
            expiry_ran_out: None,
            deliveries: 0,
        })
    }

    /// The memory the groups' pending entries, acknowledged windows and parked events hold,
    /// as counted against `groups.memory_max`.
    pub(super) fn memory_bytes(&self) -> u64 {
        self.groups.values().map(Group::memory_bytes).sum()
    }

    /// True when `conn` has a membership with this subscription id.
    pub(super) fn is_member(&self, key: MemberKey) -> bool {
        self.memberships.contains_key(&key)
    }

    /// Memberships `conn` holds (they count against `subscriptions_per_connection_max`).
    pub(super) fn membership_count(&self, conn: ConnId) -> usize {
        self.memberships.keys().filter(|(c, _)| *c == conn).count()
    }
}

impl<L: Log> Engine<L> {
    /// Replaces the (empty, in-memory) group state with what `store` recorded. Called once,
    /// before the first input.
    pub fn load_groups(&mut self, store: Box<dyn GroupStore>) -> Result<(), StorageError> {
        let glob_length_max = self.config.wire.glob_length_max as usize;
        let defaults = default_settings(&self.config.groups);
        self.groups = Groups::load(store, glob_length_max, defaults)?;
        // A power loss under a non-`always` fsync policy can leave the log ending below
        // offsets the journal (synced on its own schedule) recorded as acknowledged, parked or
        // pending. Later records take those offsets again: state there describes records that
        // no longer exist and would hide the new ones from the group (never delivered).
        // Forget it, and rewrite the journal at once, so that its old records cannot bring it
        // back at the next start.
        let end = self.log.durable_end();
        let mut forgot = false;
        for (name, group) in &mut self.groups.groups {
            if group.forget_from(end) {
                log::warn!(
                    "group {name:?}: its journal recorded offsets at or past the log's end \
                     ({end}; the log lost its unsynced tail): forgotten, the group delivers \
                     what is written there from now on"
                );
                forgot = true;
            }
        }
        if forgot {
            let snapshot = self.groups.snapshot();
            self.groups.store.rewrite(&snapshot)?;
            self.groups.snapshot_bytes = self.groups.store.size_bytes();
        }
        Ok(())
    }

    pub(super) fn on_join_group(&mut self, conn: ConnId, join: JoinGroup) {
        let id = join.subscription_id;
        let scope = ErrorScope::Subscription(id);
        let limits = self.config.groups.clone();
        // Checked by the caller: frames are handled only for open connections.
        let connection = self.conn(conn).expect("connection is open");
        if connection.subscriptions.contains_key(&id) || self.groups.is_member((conn, id)) {
            let message = "the subscription id is already in use on this connection";
            return self.send_error(conn, scope, ErrorCode::DuplicateSubscription, message);
        }
        let open = connection.subscriptions.len() + self.groups.membership_count(conn);
        if open >= self.config.subscriptions_per_connection_max as usize {
            let message = format!(
                "a connection may have at most {} subscriptions and group memberships",
                self.config.subscriptions_per_connection_max
            );
            return self.send_error(conn, scope, ErrorCode::TooManySubscriptions, &message);
        }
        if let Err(message) = validate_group_name(&join.group, limits.name_length_max as usize) {
            return self.send_error(conn, scope, ErrorCode::InvalidGroupName, &message);
        }
        // As for Subscribe, before anything is created: a member reads what the glob matches.
        if let Err(message) = self.check_consume(conn, &join.glob) {
            return self.send_error(conn, scope, ErrorCode::PermissionDenied, &message);
        }
        match self.groups.groups.get(&join.group) {
            Some(group) => {
                if let Err(message) = self.check_group_owner(conn, &join.group, group, "join") {
                    return self.send_error(conn, scope, ErrorCode::PermissionDenied, &message);
                }
            }
            None => {
                // The creating join may raise the group's settings above the server's
                // defaults (up to the limits), never lower them: its lower values are its own
                // caps (a `consume --limit 2` window must not become every member's).
                let settings = seeded_settings(&join, &limits);
                let created =
                    self.create_group(conn, &join.group, &join.glob, &join.start, settings);
                if let Err((code, message)) = created {
                    return self.send_error(conn, scope, code, &message);
                }
            }
        }
        // Just created or checked above.
        let group = self
            .groups
            .groups
            .get_mut(&join.group)
            .expect("group exists");
        if group.glob_text != join.glob {
            let message = format!(
                "group {:?} exists with the glob {:?}; a member must join with the same glob",
                join.group, group.glob_text
            );
            return self.send_error(conn, scope, ErrorCode::GroupGlobMismatch, &message);
        }
        group.members.push(Member {
            key: (conn, id),
            credit: u64::from(join.credit),
            in_flight: BTreeMap::new(),
            next_sequence: 0,
            own: join_settings(&join, &limits),
            caught_up_sent: false,
        });
        self.groups.memberships.insert((conn, id), join.group);
    }

    /// Creates a group (for a JoinGroup, or a GroupAdmin create), owned by the principal of
    /// `conn` (with an auth file), which may own at most `groups.per_principal_max` groups.
    pub(super) fn create_group(
        &mut self,
        conn: ConnId,
        name: &str,
        glob_text: &str,
        start: &StartPosition,
        settings: GroupSettings,
    ) -> Result<(), (ErrorCode, String)> {
        if self.groups.groups.len() >= self.config.groups.groups_max {
            let message = format!(
                "the server keeps at most {} groups",
                self.config.groups.groups_max
            );
            return Err((ErrorCode::TooManyGroups, message));
        }
        let owner = self.principal_name(conn);
        if let Some(owner) = &owner {
            let owned = self.groups.owned_by(owner);
            let quota = self.config.groups.per_principal_max;
            if owned >= quota {
                let message = format!(
                    "{owner} has created {owned} groups, its quota (groups.per_principal_max                      {quota}); delete one of them (flo-client groups delete) first"
                );
                return Err((ErrorCode::GroupQuotaExceeded, message));
            }
        }
        let glob_length_max = self.config.wire.glob_length_max as usize;
        let glob = NamespaceGlob::with_length_max(glob_text, glob_length_max).map_err(|error| {
            let message = match error {
                GlobError::TooLong { .. } => error.to_string(),
                _ => format!("invalid glob {glob_text:?}: {error}"),
            };
            (ErrorCode::InvalidGlob, message)
        })?;
        let (start, filter) = self.resolve_group_start(start)?;
        self.groups.store.append(&GroupRecord::Create {
            group: name.to_string(),
            glob: glob_text.to_string(),
            start,
            filter: filter.clone(),
            owner: owner.clone(),
        });
        if let Some(held_back) = self.groups.created_log.allow(self.now_ms) {
            let by = owner
                .as_ref()
                .map_or(String::new(), |owner| format!(" by {owner}"));
            let suffix = held_back_suffix(held_back);
            log::info!("group {name:?} created at offset {start}{by}{suffix}");
        }
        let group = Group::new(glob, glob_text.to_string(), start, filter, owner, settings);
        self.groups.store.append(&group.settings_record(name));
        self.groups.groups.insert(name.to_string(), group);
        Ok(())
    }

    /// Credit for a group membership; false when `id` is not one.
    pub(super) fn on_group_credit(&mut self, conn: ConnId, id: u32, count: u32) -> bool {
        let Some(name) = self.groups.memberships.get(&(conn, id)) else {
            return false;
        };
        // Every membership names an existing group.
        let group = self
            .groups
            .groups
            .get_mut(name)
            .expect("group of a membership");
        if let Some(member) = group.member_mut((conn, id)) {
            member.credit = member.credit.saturating_add(u64::from(count));
        }
        true
    }

    pub(super) fn on_group_ack(&mut self, conn: ConnId, ack: GroupAck, nack: bool) {
        let id = ack.subscription_id;
        let scope = ErrorScope::Subscription(id);
        let Some(name) = self.groups.memberships.get(&(conn, id)).cloned() else {
            let message = if nack {
                "GroupNack for an id that is not a group membership"
            } else {
                "GroupAck for an id that is not a group membership"
            };
            return self.send_error(conn, scope, ErrorCode::UnknownGroup, message);
        };
        let now_ms = self.now_ms;
        let parked_max = self.config.groups.parked_max;
        // Every membership names an existing group.
        let group = self
            .groups
            .groups
            .get_mut(&name)
            .expect("group of a membership");
        let max_deliveries = group.max_deliveries_of((conn, id));
        let mut not_pending = Vec::new();
        let mut records = Vec::new();
        for event_id in ack.ids {
            let Some(&offset) = group.pending_by_id.get(&event_id) else {
                not_pending.push(event_id);
                continue;
            };
            if nack {
                let delay_ms = u64::from(ack.delay_ms);
                records.extend(group.release(
                    &name,
                    offset,
                    delay_ms,
                    max_deliveries,
                    now_ms,
                    parked_max,
                ));
                continue;
            }
            // An ack from any member is taken: a late ack after a time-out still saves work.
            group.ack_offset(offset);
        }
        for record in &records {
            self.groups.store.append(record);
        }
        if let Some(first) = not_pending.first() {
            let message = format!(
                "{} of the ids are not pending in group {name:?} (acknowledged, parked or never \
                 delivered), the first {first}",
                not_pending.len()
            );
            self.send_error(conn, scope, ErrorCode::NotPending, &message);
        }
    }

    /// GroupProgress: the member still works on these events; the ack time-out of each one
    /// in flight to it starts again from now (its own time-out, as at a delivery). An id not
    /// in flight to this membership gets `NotPending` (once per frame, naming the first, as a
    /// GroupAck); the others are extended. No cap on how often: the member's connection is
    /// alive and sending (docs/consumers.md, "Still working on it").
    pub(super) fn on_group_progress(&mut self, conn: ConnId, progress: GroupAck) {
        let id = progress.subscription_id;
        let scope = ErrorScope::Subscription(id);
        let Some(name) = self.groups.memberships.get(&(conn, id)).cloned() else {
            let message = "GroupProgress for an id that is not a group membership";
            return self.send_error(conn, scope, ErrorCode::UnknownGroup, message);
        };
        let now_ms = self.now_ms;
        // Every membership names an existing group.
        let group = self
            .groups
            .groups
            .get_mut(&name)
            .expect("group of a membership");
        let mut not_pending = Vec::new();
        for event_id in progress.ids {
            if !group.extend((conn, id), event_id, now_ms) {
                not_pending.push(event_id);
            }
        }
        if let Some(first) = not_pending.first() {
            let message = format!(
                "{} of the ids are not in flight to this membership of group {name:?} \
                 (acknowledged, timed out, parked or never delivered to it), the first {first}",
                not_pending.len()
            );
            self.send_error(conn, scope, ErrorCode::NotPending, &message);
        }
    }

    pub(super) fn on_leave_group(&mut self, conn: ConnId, id: u32) {
        if !self.groups.is_member((conn, id)) {
            let message = "LeaveGroup for an id that is not a group membership";
            let scope = ErrorScope::Subscription(id);
            return self.send_error(conn, scope, ErrorCode::UnknownGroup, message);
        }
        self.leave_group((conn, id));
        let frame = ServerFrame::End {
            subscription_id: id,
            reason: EndReason::Unsubscribed,
        };
        self.send(conn, &frame);
    }

    /// A connection closed: its memberships end and their events are redelivered at once.
    pub(super) fn groups_connection_gone(&mut self, conn: ConnId) {
        let keys: Vec<MemberKey> = self
            .groups
            .memberships
            .keys()
            .filter(|(c, _)| *c == conn)
            .copied()
            .collect();
        for key in keys {
            self.leave_group(key);
        }
    }

    fn leave_group(&mut self, key: MemberKey) {
        let Some(name) = self.groups.memberships.remove(&key) else {
            return;
        };
        // A range ack not done yet: no answer followed it (the connection's later frames
        // wait for it), so its events are simply delivered again.
        if self
            .groups
            .ack_ranges
            .get(&key.0)
            .is_some_and(|range| range.0 == key.1)
        {
            self.groups.ack_ranges.remove(&key.0);
        }
        let now_ms = self.now_ms;
        let parked_max = self.config.groups.parked_max;
        // Every membership names an existing group.
        let group = self
            .groups
            .groups
            .get_mut(&name)
            .expect("group of a membership");
        let max_deliveries = group.max_deliveries_of(key);
        let held: Vec<Offset> = (group.members.iter())
            .find(|m| m.key == key)
            .map(|m| m.in_flight.values().copied().collect())
            .unwrap_or_default();
        let mut records = Vec::new();
        for offset in held {
            records.extend(group.release(&name, offset, 0, max_deliveries, now_ms, parked_max));
        }
        group.members.retain(|m| m.key != key);
        for record in &records {
            self.groups.store.append(record);
        }
    }

    /// The earliest group timer (ack deadline or nack delay), or the time at which the
    /// journal's put-off fdatasync is to be asked for (`GroupStore::sync_due_ms`), for
    /// `next_deadline_ms`.
    pub(super) fn next_group_deadline_ms(&self) -> Option<u64> {
        let timers =
            (self.groups.groups.values()).filter_map(|g| g.timers.first().map(|(when, _)| *when));
        timers.chain(self.groups.store.sync_due_ms()).min()
    }

    /// True when a group could deliver now without new input.
    pub(super) fn groups_have_work(&self) -> bool {
        let memory_full = self.groups.memory_bytes() >= self.config.groups.memory_max;
        self.groups.groups.values().any(|g| {
            !g.members.is_empty()
                && (!g.redeliver.is_empty() || (g.next < self.log.durable_end() && !memory_full))
                && g.members.iter().any(|m| m.may_take_more(&g.settings))
        }) || self.groups.compaction_has_work()
            // Timers already due that the last turn had no room for.
            || self.groups.expiry_ran_out.is_some()
    }

    /// The end of a turn for groups, after the log's fdatasync: expire timers, deliver, and
    /// journal the turn's changes (acks, floors), written before the turn's output goes out
    /// (so kill -9 cannot lose them); under `always` the store waits for their fdatasync only
    /// if a record an answer depends on is among them (`GroupRecord::answer_waits`), and asks
    /// for the others' at most once in `groups.ack_sync_interval`. Their fdatasync is asked
    /// for here, after the log's, never before it: started together, the two device flushes
    /// queued behind each other and the log's took longer (docs/consumers.md, "Storage").
    pub(super) fn groups_turn_end(&mut self, now: Now, budget: &mut GroupBudget) {
        let names: Vec<String> = self.groups.groups.keys().cloned().collect();
        // Due timers first, at most `groups.expiries_per_turn_max` over all groups, starting
        // after the group that ran out of them last turn.
        let start = match self.groups.expiry_ran_out.take() {
            Some(last) => names.partition_point(|name| *name <= last),
            None => 0,
        };
        let mut expiries = self.config.groups.expiries_per_turn_max;
        for name in names[start..].iter().chain(&names[..start]) {
            if !self.expire_group_timers(name, now.monotonic.0, &mut expiries) {
                self.groups.expiry_ran_out = Some(name.clone());
                break;
            }
        }
        let mut memory = self.groups.memory_bytes();
        for name in &names {
            if self
                .deliver_group(name, now.monotonic.0, budget, &mut memory)
                .is_err()
            {
                break;
            }
            self.journal_group_turn(name);
        }
        // The turn's share of a compaction is written with the turn's records.
        self.compact_group_journal();
        if let Err(error) = self.groups.store.sync(now.monotonic) {
            // Lost journal records only mean redelivery after a restart (at least once).
            self.storage_failures
                .failed(self.now_ms, "could not write the group journal", &error);
        }
    }

    /// Handles the group's timers due at `now_ms`, one of `expiries` each; false when
    /// `expiries` ran out with timers still due (they are handled in the next turns: the
    /// earliest is in the past, so `next_deadline_ms` has the reactor turn again at once).
    fn expire_group_timers(&mut self, name: &str, now_ms: u64, expiries: &mut usize) -> bool {
        let parked_max = self.config.groups.parked_max;
        // Called for existing groups only.
        let group = self.groups.groups.get_mut(name).expect("group");
        let mut records = Vec::new();
        let mut done = true;
        while let Some(&(when, offset)) = group.timers.first() {
            if when > now_ms {
                break;
            }
            if *expiries == 0 {
                done = false;
                break;
            }
            *expiries -= 1;
            group.timers.pop_first();
            let Some(pending) = group.pending.get(&offset) else {
                continue;
            };
            let id = pending.id;
            match pending.state {
                PendingState::InFlight { member, .. } => {
                    let max_deliveries = group.max_deliveries_of(member);
                    log::debug!("group {name}: ack time-out of {id}");
                    records.extend(group.release(
                        name,
                        offset,
                        0,
                        max_deliveries,
                        now_ms,
                        parked_max,
                    ));
                }
                PendingState::Waiting { .. } => {
                    group.redeliver.insert(offset);
                }
            }
        }
        for record in &records {
            self.groups.store.append(record);
        }
        done
    }

    /// Delivers what a group's members may take now: redeliveries first (oldest first), then
    /// new records from `next`. Err when the log could not be read (logged; tried again next
    /// turn).
    /// `memory` is the groups' memory (`Groups::memory_bytes`), counted up here per new
    /// pending entry: at `groups.memory_max` no new event is delivered.
    fn deliver_group(
        &mut self,
        name: &str,
        now_ms: u64,
        budget: &mut GroupBudget,
        memory: &mut u64,
    ) -> Result<(), ()> {
        let high_water = self.config.send_buffer_high_water;
        let ack_window_max = self.config.groups.ack_window_max;
        let memory_max = self.config.groups.memory_max;
        let durable_end = self.log.durable_end();
        let hide = self.log.hide_rules();
        let Engine {
            log,
            conns,
            groups,
            stats,
            output_queue,
            connections_memory,
            ..
        } = self;
        let Groups {
            groups,
            store,
            deliveries: member_deliveries,
            ..
        } = groups;
        // Called for existing groups only.
        let group = groups.get_mut(name).expect("group");
        if group.members.is_empty() {
            return Ok(());
        }
        let has_room = |conns: &[Option<Connection>], conn: ConnId| {
            conns
                .get(conn.slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.id == conn && c.output_owed() < high_water)
        };
        let mut deliver = |conns: &mut [Option<Connection>],
                           group: &mut Group,
                           index: usize,
                           offset: Offset,
                           event: crate::event::EventRef<'_>| {
            let deliveries = group.delivered(index, offset, event.id, now_ms);
            let (conn, id) = group.members[index].key;
            if deliveries > 1 {
                store.append(&GroupRecord::Deliveries {
                    group: name.to_string(),
                    offset,
                    count: deliveries,
                });
            }
            // `has_room` found the connection open.
            let connection = conns[conn.slot as usize]
                .as_mut()
                .expect("member connection");
            encode_event(id, event, connection.output_buffer());
            if !connection.has_output_queued {
                connection.has_output_queued = true;
                output_queue.push_back(conn);
            }
            // The running total of connection memory (`Engine::recount_memory`, inline here
            // because the engine is borrowed in parts).
            let memory = connection.memory_bytes();
            let counted = std::mem::replace(&mut connection.memory_counted, memory);
            *connections_memory = *connections_memory - counted + memory;
            stats.events_delivered += 1;
            *member_deliveries = member_deliveries.wrapping_add(1);
        };
        let GroupBudget {
            records: budget,
            match_steps,
        } = budget;
        let mut charged = 0;
        while *budget > 0 && *match_steps > 0 {
            let Some(&offset) = group.redeliver.first() else {
                break;
            };
            let Some(index) = group.pick_member(&|conn| has_room(conns, conn)) else {
                return Ok(());
            };
            group.redeliver.pop_first();
            let mut found = None;
            let result = log.read(offset, &mut |at, event| {
                // A purged event is not delivered again: as if retention deleted it.
                if at == offset && !hidden_charged(&hide, event, match_steps, &mut charged) {
                    found = Some(event.to_event());
                }
                false
            });
            *budget -= 1;
            match (result, found) {
                (Ok(_), Some(event)) => deliver(conns, group, index, offset, event.view()),
                (Ok(_), None) => {
                    // Retention deleted the record: nothing left to deliver.
                    log::warn!(
                        "group {name}: record {offset} was deleted or purged before it was \
                         acknowledged"
                    );
                    if let Some(pending) = group.pending.remove(&offset) {
                        group.pending_by_id.remove(&pending.id);
                    }
                }
                (Err(error), _) => {
                    log::error!("group {name}: could not read the log: {error}");
                    group.redeliver.insert(offset);
                    return Err(());
                }
            }
        }
        let mut result = Ok(group.next);
        let memory_room = |memory: u64| memory + GROUP_PENDING_ENTRY_BYTES <= memory_max;
        if group.next < durable_end && group.acked.len() < ack_window_max && memory_room(*memory) {
            let from = group.next;
            result = log.read(from, &mut |offset, event| {
                if *budget == 0 || *match_steps == 0 {
                    return false;
                }
                let steps = &mut *match_steps;
                let wanted = wanted(
                    &group.glob,
                    &group.filter,
                    &hide,
                    event,
                    steps,
                    &mut charged,
                ) && !group.acked.contains(&offset)
                    && !group.parked.contains_key(&offset)
                    && !group.pending.contains_key(&offset);
                if wanted {
                    if group.acked.len() >= ack_window_max || !memory_room(*memory) {
                        return false;
                    }
                    let Some(index) = group.pick_member(&|conn| has_room(conns, conn)) else {
                        return false;
                    };
                    deliver(conns, group, index, offset, event);
                    *memory += GROUP_PENDING_ENTRY_BYTES;
                }
                *budget -= 1;
                true
            });
        }
        stats.match_steps_charged = stats.match_steps_charged.saturating_add(charged);
        match result {
            Ok(next) => group.next = group.next.max(next),
            Err(error) => {
                log::error!("group {name}: could not read the log: {error}");
                return Err(());
            }
        }
        let caught_up = group.next >= durable_end && group.redeliver.is_empty();
        let mut caught_up_to = Vec::new();
        if caught_up {
            for member in group.members.iter_mut().filter(|m| !m.caught_up_sent) {
                member.caught_up_sent = true;
                caught_up_to.push(member.key);
            }
        }
        for (conn, subscription_id) in caught_up_to {
            self.send(conn, &ServerFrame::CaughtUp { subscription_id });
        }
        Ok(())
    }

    /// Appends the group's acks of this turn and, if it moved, its floor.
    fn journal_group_turn(&mut self, name: &str) {
        // Called for existing groups only.
        let group = self.groups.groups.get_mut(name).expect("group");
        let acked = std::mem::take(&mut group.acked_this_turn);
        for chunk in acked.chunks(ACK_OFFSETS_PER_RECORD_MAX) {
            self.groups.store.append(&GroupRecord::Ack {
                group: name.to_string(),
                offsets: chunk.to_vec(),
            });
        }
        let floor = group.floor();
        if floor > group.floor_written {
            group.floor_written = floor;
            group.acked = group.acked.split_off(&floor);
            group
                .recovered_deliveries
                .retain(|offset, _| *offset >= floor);
            self.groups.store.append(&GroupRecord::Floor {
                group: name.to_string(),
                floor,
            });
        }
    }
}

/// A group name is 1 to `length_max` bytes of printable text (no control characters).
pub(super) fn validate_group_name(name: &str, length_max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group name must not be empty".to_string());
    }
    if name.len() > length_max {
        return Err(format!(
            "a group name may have at most {length_max} bytes; this one has {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("group name {name:?} has a control character"));
    }
    Ok(())
}

impl<L: Log> Engine<L> {
    /// The groups' part of [`Engine::check_invariants`]: memberships, members' in-flight
    /// counts, the id index and the timers agree with the pending table.
    pub(super) fn check_group_invariants(&self) {
        for (key, name) in &self.groups.memberships {
            let group = self.groups.groups.get(name);
            assert!(
                group.is_some_and(|g| g.members.iter().any(|m| m.key == *key)),
                "membership {key:?} names group {name:?}, which has no such member"
            );
            assert!(
                self.conn(key.0).is_some(),
                "membership {key:?} of group {name:?} outlived its connection"
            );
        }
        for (name, group) in &self.groups.groups {
            assert_eq!(
                group.pending.len(),
                group.pending_by_id.len(),
                "group {name}: the id index disagrees with the pending table"
            );
            for (id, offset) in &group.pending_by_id {
                assert!(
                    group.pending.get(offset).is_some_and(|p| p.id == *id),
                    "group {name}: id {id} indexes offset {offset}, which is not pending with it"
                );
            }
            for member in &group.members {
                assert_eq!(
                    self.groups.memberships.get(&member.key),
                    Some(name),
                    "group {name}: member {:?} has no membership",
                    member.key
                );
                let held = group
                    .pending
                    .values()
                    .filter(|p| {
                        matches!(p.state, PendingState::InFlight { member: m, .. } if m == member.key)
                    })
                    .count();
                assert_eq!(
                    member.in_flight.len(),
                    held,
                    "group {name}: member {:?} in_flight disagrees with its pending events",
                    member.key
                );
                for (sequence, offset) in &member.in_flight {
                    assert!(
                        matches!(
                            group.pending.get(offset).map(|p| &p.state),
                            Some(PendingState::InFlight { member: m, sequence: s, .. })
                                if *m == member.key && s == sequence
                        ),
                        "group {name}: member {:?} delivery {sequence} names offset {offset}, \
                         not in flight to it with that number",
                        member.key
                    );
                }
                // A member may hold more than its max_in_flight after an operator lowered the
                // group's (it gets no more until it is below); never more than the server's.
                assert!(
                    member.in_flight_count() <= self.config.groups.in_flight_max,
                    "group {name}: member {:?} holds more than groups.in_flight_max",
                    member.key
                );
            }
            for (offset, pending) in &group.pending {
                assert!(
                    *offset < group.next,
                    "group {name}: offset {offset} is pending but not yet dispatched"
                );
                assert!(
                    !group.acked.contains(offset) && !group.parked.contains_key(offset),
                    "group {name}: offset {offset} is pending and also acknowledged or parked"
                );
                match pending.state {
                    PendingState::InFlight {
                        member,
                        deadline_ms,
                        ..
                    } => {
                        assert!(
                            group.members.iter().any(|m| m.key == member),
                            "group {name}: offset {offset} is in flight to a member that left"
                        );
                        assert!(
                            group.timers.contains(&(deadline_ms, *offset)),
                            "group {name}: offset {offset} is in flight without an ack deadline"
                        );
                        assert!(
                            !group.redeliver.contains(offset),
                            "group {name}: offset {offset} is in flight and queued for redelivery"
                        );
                    }
                    PendingState::Waiting { ready_ms } => assert!(
                        group.redeliver.contains(offset)
                            || group.timers.contains(&(ready_ms, *offset)),
                        "group {name}: offset {offset} waits without a timer or a redelivery slot"
                    ),
                }
            }
            for (when, offset) in &group.timers {
                let matches = match group.pending.get(offset).map(|p| &p.state) {
                    Some(PendingState::InFlight { deadline_ms, .. }) => deadline_ms == when,
                    Some(PendingState::Waiting { ready_ms }) => ready_ms == when,
                    None => false,
                };
                assert!(
                    matches,
                    "group {name}: a stale timer at {when} for offset {offset}"
                );
            }
            for offset in &group.redeliver {
                assert!(
                    matches!(
                        group.pending.get(offset).map(|p| &p.state),
                        Some(PendingState::Waiting { .. })
                    ),
                    "group {name}: offset {offset} is queued for redelivery but not waiting"
                );
            }
        }
    }
}
