//! Inspecting and administering consumer groups (docs/consumers.md, protocol.md section 16):
//! GroupsRequest (state and lag), ParkedRequest (parked events, a page at a time) and
//! GroupAdmin (replay parked events, reset, delete). All three need the admin permission.
//!
//! Every answer costs bounded work: a Groups reply holds what fits one frame (`more` says that
//! the list goes on), a Parked reply at most `parked_list_max` events, the lag is a bound read
//! off two offsets (no log scan), and a replay touches at most `parked_max` events.

use std::collections::HashSet;
use std::ops::Bound;

use super::groups::{
    creation_settings, validate_group_name, Group, Pending, PendingState, GROUP_PARKED_ENTRY_BYTES,
    GROUP_PENDING_ENTRY_BYTES,
};
use super::log_limit::held_back_suffix;
use super::{ConnId, Engine};
use crate::event::{Cursor, EventId, StartPosition};
use crate::protocol::{
    ErrorCode, ErrorScope, GroupAdmin, GroupAdminAction, GroupDetail, GroupInfo, GroupMemberInfo,
    GroupSettings, GroupsDetailReply, GroupsReply, GroupsRequest, ParkedEvent, ParkedReply,
    ParkedRequest, ServerFrame, GROUPS_FRAME_EMPTY_SIZE,
};
use crate::storage::groups::GroupRecord;
use crate::storage::{Log, Offset};

impl Group {
    /// The group as a Groups frame describes it.
    pub(super) fn info(&self, name: &str, durable_end: Offset, now_ms: u64) -> GroupInfo {
        let in_flight: u64 = (self.members.iter())
            .map(|m| u64::from(m.in_flight_count()))
            .sum();
        let oldest_pending_age_ms = self
            .pending
            .values()
            .next()
            .and_then(|p| p.first_delivered_ms)
            .map_or(0, |first_ms| now_ms.saturating_sub(first_ms));
        GroupInfo {
            name: name.to_string(),
            glob: self.glob_text.clone(),
            members: u16::try_from(self.members.len()).unwrap_or(u16::MAX),
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
            pending: self.pending.len() as u64,
            parked: self.parked.len() as u64,
            floor: self.floor().0,
            next: self.next.0,
            acked_above_floor: self.acked.len() as u64,
            lag: durable_end.0.saturating_sub(self.next.0),
            oldest_pending_age_ms,
        }
    }

    /// Moves the group to `start`: what it acknowledged, delivered and counted is forgotten;
    /// parked events stay parked. Only for a group without members.
    pub(super) fn reset(&mut self, start: Offset, filter: Cursor) {
        assert!(
            self.members.is_empty(),
            "a group is reset only without members"
        );
        self.filter = filter;
        self.floor_written = start;
        self.next = start;
        self.acked.clear();
        self.acked_this_turn.clear();
        self.pending.clear();
        self.pending_by_id.clear();
        self.redeliver.clear();
        self.timers.clear();
        self.recovered_deliveries.clear();
    }

    /// What replaying the parked event at `offset` adds to `memory_bytes` (it may be negative:
    /// at or past `next` the event only stops being parked).
    fn replay_cost(&self, offset: Offset) -> i64 {
        let pending = offset < self.next && !self.pending.contains_key(&offset);
        let parked = self.parked.contains_key(&offset);
        i64::from(pending) * GROUP_PENDING_ENTRY_BYTES as i64
            - i64::from(parked) * GROUP_PARKED_ENTRY_BYTES as i64
    }

    /// Makes the parked (or recovered replayed) event at `offset` deliverable again, with its
    /// delivery count restarted. At or past `next` it is simply no longer parked: the group
    /// reaches it in log order.
    pub(super) fn replay(&mut self, offset: Offset, id: EventId) {
        self.parked.remove(&offset);
        self.recovered_deliveries.remove(&offset);
        if offset >= self.next || self.pending.contains_key(&offset) {
            return;
        }
        self.pending.insert(
            offset,
            Pending {
                id,
                deliveries: 0,
                first_delivered_ms: None,
                state: PendingState::Waiting { ready_ms: 0 },
            },
        );
        self.pending_by_id.insert(id, offset);
        self.redeliver.insert(offset);
    }
}

impl<L: Log> Engine<L> {
    /// Sends the error of a group inspection or admin request: connection scope, and the
    /// connection stays open (the code decides, protocol.md section 11).
    fn send_group_admin_error(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.send_error(conn, ErrorScope::Connection, code, message);
    }

    fn no_such_group(&mut self, conn: ConnId, name: &str) {
        let message = format!("there is no group {name:?}");
        self.send_group_admin_error(conn, ErrorCode::NoSuchGroup, &message);
    }

    /// The group `name` as a GroupsDetail frame describes it, with at most `members_max`
    /// members.
    fn group_detail(&self, name: &str, group: &Group, members_max: usize) -> GroupDetail {
        let durable_end = self.log.durable_end();
        let members = (group.members.iter().take(members_max))
            .map(|member| {
                let (conn, subscription_id) = member.key;
                let connection = self
                    .conn(conn)
                    .and_then(|c| c.peer_addr)
                    .map_or_else(|| conn.to_string(), |addr| addr.to_string());
                GroupMemberInfo {
                    subscription_id,
                    connection,
                    in_flight: member.in_flight_count(),
                    max_in_flight: member.settings(&group.settings).max_in_flight,
                    credit: member.credit,
                }
            })
            .collect();
        GroupDetail {
            info: group.info(name, durable_end, self.now_ms),
            settings: group.settings,
            members,
        }
    }

    /// Sends GroupsDetail with the group `name` (which exists), its members listed.
    fn send_group_detail(&mut self, conn: ConnId, name: &str) {
        let members_max = self.config.groups.members_listed_max;
        // Checked by the callers.
        let group = self.groups.groups.get(name).expect("group exists");
        let members = group.members.len();
        let reply = GroupsDetailReply {
            durable_end: self.log.durable_end().0,
            more: false,
            groups: vec![self.group_detail(name, group, members_max)],
        };
        self.charge_scan(members);
        self.send(conn, &ServerFrame::GroupsDetail(reply));
    }

    /// GroupsDetailRequest: as GroupsRequest, with each group's settings and, for a named
    /// group, its members (at most `groups.members_listed_max`).
    pub(super) fn on_groups_detail_request(&mut self, conn: ConnId, request: GroupsRequest) {
        if let Err(message) = self.check_admin(conn, "ask for group state") {
            return self.send_group_admin_error(conn, ErrorCode::PermissionDenied, &message);
        }
        if !request.group.is_empty() {
            if !self.groups.groups.contains_key(&request.group) {
                return self.no_such_group(conn, &request.group);
            }
            return self.send_group_detail(conn, &request.group);
        }
        // As many as fit one frame (validation makes sure one group always fits).
        let room = self.config.wire.frame_size_max as usize - GROUPS_FRAME_EMPTY_SIZE;
        let mut used = 0;
        let mut reply = GroupsDetailReply {
            durable_end: self.log.durable_end().0,
            more: false,
            groups: Vec::new(),
        };
        let after = (Bound::Excluded(request.after.as_str()), Bound::Unbounded);
        let mut members = 0;
        for (name, group) in self.groups.groups.range::<str, _>(after) {
            let detail = self.group_detail(name, group, 0);
            members += group.members.len();
            used += detail.encoded_size();
            if used > room || reply.groups.len() == usize::from(u16::MAX) {
                reply.more = true;
                break;
            }
            reply.groups.push(detail);
        }
        self.charge_scan(members);
        self.send(conn, &ServerFrame::GroupsDetail(reply));
    }

    /// GroupAdmin create: a new group with this glob, start and settings, owned by the
    /// principal (with an auth file; as a creating JoinGroup: the consume permission on the
    /// glob and the principal's quota). An existing group with the same glob and settings is
    /// the answer as it is; another glob is `GroupGlobMismatch`, other settings
    /// `GroupSettingsMismatch` (change them with the update action).
    fn on_create_group(
        &mut self,
        conn: ConnId,
        name: &str,
        glob: &str,
        start: &StartPosition,
        asked: GroupSettings,
    ) {
        let limits = self.config.groups.clone();
        if let Err(message) = validate_group_name(name, limits.name_length_max as usize) {
            return self.send_group_admin_error(conn, ErrorCode::InvalidGroupName, &message);
        }
        if let Err(message) = self.check_consume(conn, glob) {
            return self.send_group_admin_error(conn, ErrorCode::PermissionDenied, &message);
        }
        let settings = match creation_settings(asked, &limits) {
            Ok(settings) => settings,
            Err(message) => {
                return self.send_group_admin_error(conn, ErrorCode::InvalidGroupSettings, &message)
            }
        };
        if let Some(group) = self.groups.groups.get(name) {
            let refused = if let Err(message) = self.check_group_owner(conn, name, group, "create")
            {
                Some((ErrorCode::PermissionDenied, message))
            } else if group.glob_text != glob {
                let message = format!(
                    "group {name:?} exists with the glob {:?}, not {glob:?}",
                    group.glob_text
                );
                Some((ErrorCode::GroupGlobMismatch, message))
            } else if group.settings != settings {
                let message = format!(
                    "group {name:?} exists with other settings ({}); change them with \
                     `flo-client groups update`",
                    describe_settings(&group.settings)
                );
                Some((ErrorCode::GroupSettingsMismatch, message))
            } else {
                None
            };
            if let Some((code, message)) = refused {
                return self.send_group_admin_error(conn, code, &message);
            }
            return self.send_group_detail(conn, name);
        }
        if let Err((code, message)) = self.create_group(conn, name, glob, start, settings) {
            return self.send_group_admin_error(conn, code, &message);
        }
        self.send_group_detail(conn, name);
    }

    /// GroupAdmin update: the group's settings change (0 fields stay); journaled. In-flight
    /// events keep the deadline they were delivered with; a member holding more than a
    /// lowered `max_in_flight` gets nothing more until it is below it.
    fn update_group_settings(
        &mut self,
        name: &str,
        asked: GroupSettings,
    ) -> Result<(), (ErrorCode, String)> {
        let limits = self.config.groups.clone();
        // Checked by the caller.
        let group = self.groups.groups.get_mut(name).expect("group exists");
        let or = |value: u32, current: u32| if value == 0 { current } else { value };
        let merged = GroupSettings {
            ack_timeout_ms: or(asked.ack_timeout_ms, group.settings.ack_timeout_ms),
            max_deliveries: if asked.max_deliveries == 0 {
                group.settings.max_deliveries
            } else {
                asked.max_deliveries
            },
            max_in_flight: or(asked.max_in_flight, group.settings.max_in_flight),
        };
        let settings = creation_settings(merged, &limits)
            .map_err(|message| (ErrorCode::InvalidGroupSettings, message))?;
        if settings != group.settings {
            group.settings = settings;
            let record = group.settings_record(name);
            self.groups.store.append(&record);
            if let Some(held_back) = group.settings_log.allow(self.now_ms) {
                log::info!(
                    "group {name:?}: settings now {}{}",
                    describe_settings(&settings),
                    held_back_suffix(held_back)
                );
            }
        }
        Ok(())
    }

    pub(super) fn on_groups_request(&mut self, conn: ConnId, request: GroupsRequest) {
        if let Err(message) = self.check_admin(conn, "ask for group state") {
            return self.send_group_admin_error(conn, ErrorCode::PermissionDenied, &message);
        }
        let durable_end = self.log.durable_end();
        let now_ms = self.now_ms;
        if !request.group.is_empty() {
            let Some(group) = self.groups.groups.get(&request.group) else {
                return self.no_such_group(conn, &request.group);
            };
            let reply = GroupsReply {
                durable_end: durable_end.0,
                more: false,
                groups: vec![group.info(&request.group, durable_end, now_ms)],
            };
            self.charge_scan(group.members.len());
            return self.send(conn, &ServerFrame::Groups(reply));
        }
        // As many as fit one frame; `more` sends the client back for the rest. Config
        // validation makes sure one group always fits.
        let room = self.config.wire.frame_size_max as usize - GROUPS_FRAME_EMPTY_SIZE;
        let mut used = 0;
        let mut reply = GroupsReply {
            durable_end: durable_end.0,
            more: false,
            groups: Vec::new(),
        };
        let after = (Bound::Excluded(request.after.as_str()), Bound::Unbounded);
        let mut members = 0;
        for (name, group) in self.groups.groups.range::<str, _>(after) {
            let info = group.info(name, durable_end, now_ms);
            members += group.members.len();
            used += info.encoded_size();
            if used > room || reply.groups.len() == usize::from(u16::MAX) {
                reply.more = true;
                break;
            }
            reply.groups.push(info);
        }
        self.charge_scan(members);
        self.send(conn, &ServerFrame::Groups(reply));
    }

    pub(super) fn on_parked_request(&mut self, conn: ConnId, request: ParkedRequest) {
        if let Err(message) = self.check_admin(conn, "list parked events") {
            return self.send_group_admin_error(conn, ErrorCode::PermissionDenied, &message);
        }
        let list_max = self.config.groups.parked_list_max;
        let Some(group) = self.groups.groups.get(&request.group) else {
            return self.no_such_group(conn, &request.group);
        };
        let mut reply = ParkedReply {
            group: request.group.clone(),
            more: false,
            events: Vec::new(),
        };
        for (offset, id) in group.parked.range(Offset(request.from_offset)..) {
            if reply.events.len() == list_max {
                reply.more = true;
                break;
            }
            reply.events.push(ParkedEvent {
                offset: offset.0,
                id: *id,
            });
        }
        self.send(conn, &ServerFrame::Parked(reply));
    }

    pub(super) fn on_group_admin(&mut self, conn: ConnId, admin: GroupAdmin) {
        if let GroupAdminAction::Create {
            glob,
            start,
            settings,
        } = &admin.action
        {
            return self.on_create_group(conn, &admin.group, glob, start, *settings);
        }
        // An admin may change any group; a principal may change the groups it created (so it
        // can free its quota, groups.per_principal_max).
        let owner = self.principal_name(conn);
        let is_owner = owner.is_some()
            && self
                .groups
                .groups
                .get(&admin.group)
                .is_some_and(|group| group.owner == owner);
        if !is_owner {
            if let Err(message) = self.check_admin(conn, "change a group it did not create") {
                return self.send_group_admin_error(conn, ErrorCode::PermissionDenied, &message);
            }
        }
        let Some(group) = self.groups.groups.get(&admin.group) else {
            return self.no_such_group(conn, &admin.group);
        };
        let in_use = !group.members.is_empty();
        let name = admin.group;
        let result = match admin.action {
            GroupAdminAction::ReplayParked => {
                self.replay_parked_where(&name, |_| true);
                Ok(())
            }
            GroupAdminAction::ReplayIds(ids) => self.replay_parked_ids(&name, &ids),
            GroupAdminAction::ReplayRange { from, to } => {
                self.replay_parked_where(&name, |id| from <= id && id <= to);
                Ok(())
            }
            GroupAdminAction::Reset(_) | GroupAdminAction::Delete if in_use => {
                let message =
                    format!("group {name:?} has members; they must leave before a reset or delete");
                Err((ErrorCode::GroupInUse, message))
            }
            GroupAdminAction::Reset(start) => self.reset_group(&name, &start),
            GroupAdminAction::UpdateSettings(settings) => {
                match self.update_group_settings(&name, settings) {
                    Ok(()) => return self.send_group_detail(conn, &name),
                    Err(error) => Err(error),
                }
            }
            // Answered above.
            GroupAdminAction::Create { .. } => unreachable!("GroupAdmin create handled first"),
            GroupAdminAction::Delete => {
                self.groups.groups.remove(&name);
                self.groups.store.append(&GroupRecord::Delete {
                    group: name.clone(),
                });
                if let Some(held_back) = self.groups.deleted_log.allow(self.now_ms) {
                    log::info!("group {name:?} deleted{}", held_back_suffix(held_back));
                }
                Ok(())
            }
        };
        if let Err((code, message)) = result {
            return self.send_group_admin_error(conn, code, &message);
        }
        // The journal records of the change are synced at the end of this turn, before the
        // reactor writes this reply.
        let durable_end = self.log.durable_end();
        let members = (self.groups.groups.get(&name)).map_or(0, |group| group.members.len());
        self.charge_scan(members);
        let groups = self
            .groups
            .groups
            .get(&name)
            .map(|group| group.info(&name, durable_end, self.now_ms))
            .into_iter()
            .collect();
        let reply = GroupsReply {
            durable_end: durable_end.0,
            more: false,
            groups,
        };
        self.send(conn, &ServerFrame::Groups(reply));
    }

    /// The parked events of the group whose ids `chosen` accepts become deliverable again
    /// (one pass over at most `parked_max` parked events), lowest offset first, as many as
    /// `groups.memory_max` has room for (a replayed event below `next` becomes a pending
    /// entry: attack5 finding F3). Returns how many were left parked for want of memory.
    fn replay_parked_where(&mut self, name: &str, chosen: impl Fn(EventId) -> bool) -> usize {
        let memory_max = self.config.groups.memory_max;
        let mut memory = self.groups.memory_bytes();
        // Checked by the caller.
        let group = self.groups.groups.get_mut(name).expect("group exists");
        // The pass visits every parked event, whatever it replays (attack round 8).
        let visited = group.parked.len();
        let wanted: Vec<(Offset, EventId)> = group
            .parked
            .iter()
            .filter(|(_, id)| chosen(**id))
            .map(|(offset, id)| (*offset, *id))
            .collect();
        let mut replayed = Vec::with_capacity(wanted.len());
        for &(offset, id) in &wanted {
            let after = memory.saturating_add_signed(group.replay_cost(offset));
            if after > memory_max {
                break;
            }
            memory = after;
            group.replay(offset, id);
            replayed.push((offset, id));
        }
        let log_line = group.replay_log.allow(self.now_ms);
        let left = wanted.len() - replayed.len();
        let count = replayed.len();
        self.charge_scan(visited);
        for (offset, id) in replayed {
            self.groups.store.append(&GroupRecord::Replay {
                group: name.to_string(),
                offset,
                id,
            });
        }
        let Some(held_back) = log_line else {
            return left;
        };
        let suffix = held_back_suffix(held_back);
        if left > 0 {
            log::warn!(
                "group {name:?}: {count} parked events replayed; {left} stay parked: replaying \
                 them would pass groups.memory_max ({memory_max} bytes){suffix}"
            );
        } else {
            log::info!("group {name:?}: {count} parked events replayed{suffix}");
        }
        left
    }

    /// Replays the parked events with these ids: all of them or, when one is not parked or
    /// the list is longer than `parked_list_max`, none (`NotParked`).
    fn replay_parked_ids(
        &mut self,
        name: &str,
        ids: &[EventId],
    ) -> Result<(), (ErrorCode, String)> {
        let list_max = self.config.groups.parked_list_max;
        if ids.len() > list_max {
            let message = format!(
                "a replay names at most {list_max} ids (parked_list_max), not {}",
                ids.len()
            );
            return Err((ErrorCode::NotParked, message));
        }
        let wanted: HashSet<EventId> = ids.iter().copied().collect();
        // Checked by the caller.
        let visited = self
            .groups
            .groups
            .get(name)
            .map_or(0, |group| group.parked.len());
        self.charge_scan(visited);
        let group = self.groups.groups.get(name).expect("group exists");
        let parked: HashSet<EventId> = group
            .parked
            .values()
            .copied()
            .filter(|id| wanted.contains(id))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !parked.contains(id)) {
            let message =
                format!("event {missing} is not parked in group {name:?}: nothing was replayed");
            return Err((ErrorCode::NotParked, message));
        }
        self.replay_parked_where(name, |id| wanted.contains(&id));
        Ok(())
    }

    /// Moves a group without members to a new start position.
    fn reset_group(
        &mut self,
        name: &str,
        start: &StartPosition,
    ) -> Result<(), (ErrorCode, String)> {
        let (offset, filter) = self.resolve_group_start(start)?;
        // Checked by the caller.
        let group = self.groups.groups.get_mut(name).expect("group exists");
        group.reset(offset, filter.clone());
        self.groups.store.append(&GroupRecord::Reset {
            group: name.to_string(),
            start: offset,
            filter,
        });
        if let Some(held_back) = group.reset_log.allow(self.now_ms) {
            let suffix = held_back_suffix(held_back);
            log::info!("group {name:?} reset to offset {offset}{suffix}");
        }
        Ok(())
    }

    /// The log offset and filter of a group start position (JoinGroup and reset).
    pub(super) fn resolve_group_start(
        &mut self,
        start: &StartPosition,
    ) -> Result<(Offset, Cursor), (ErrorCode, String)> {
        if let StartPosition::Cursor(cursor) = start {
            if cursor.vector.len() > self.config.cursor_entries_max as usize {
                let message = format!(
                    "a cursor may have at most {} vector entries",
                    self.config.cursor_entries_max
                );
                return Err((ErrorCode::CursorTooLarge, message));
            }
        }
        let offset = match start {
            StartPosition::End => Ok(self.log.end()),
            _ => self.log.find_start(start),
        }
        .map_err(|error| {
            let message = format!("could not find the start position: {error}");
            (ErrorCode::StorageFailure, message)
        })?;
        Ok((offset, start.cursor().unwrap_or_default()))
    }
}

/// Settings as a log line or message shows them.
fn describe_settings(settings: &GroupSettings) -> String {
    format!(
        "ack time-out {} ms, max deliveries {}, max in flight {}",
        settings.ack_timeout_ms, settings.max_deliveries, settings.max_in_flight
    )
}
