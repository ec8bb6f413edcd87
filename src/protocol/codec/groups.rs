//! The codec of the consumer-group inspection and admin frames: GroupsRequest, ParkedRequest,
//! GroupAdmin, Groups and Parked (protocol.md section 16).

use super::*;

/// GroupAdmin action bytes.
mod action_tag {
    pub const REPLAY_PARKED: u8 = 1;
    pub const RESET: u8 = 2;
    pub const DELETE: u8 = 3;
    pub const REPLAY_IDS: u8 = 4;
    pub const REPLAY_RANGE: u8 = 5;
    pub const CREATE: u8 = 6;
    pub const UPDATE_SETTINGS: u8 = 7;
}

impl WireFormat for GroupsRequest {
    fn write(&self, w: &mut Writer) {
        w.put_bytes16(self.group.as_bytes(), "group name");
        w.put_bytes16(self.after.as_bytes(), "group name");
    }

    fn read(r: &mut Reader) -> Result<GroupsRequest, DecodeError> {
        Ok(GroupsRequest {
            group: r.get_str16("group name")?,
            after: r.get_str16("after")?,
        })
    }
}

impl WireFormat for ParkedRequest {
    fn write(&self, w: &mut Writer) {
        w.put_bytes16(self.group.as_bytes(), "group name");
        w.put_u64(self.from_offset);
    }

    fn read(r: &mut Reader) -> Result<ParkedRequest, DecodeError> {
        Ok(ParkedRequest {
            group: r.get_str16("group name")?,
            from_offset: r.get_u64("from offset")?,
        })
    }
}

impl WireFormat for GroupAdmin {
    fn write(&self, w: &mut Writer) {
        w.put_bytes16(self.group.as_bytes(), "group name");
        match &self.action {
            GroupAdminAction::ReplayParked => w.put_u8(action_tag::REPLAY_PARKED),
            GroupAdminAction::Reset(start) => {
                w.put_u8(action_tag::RESET);
                start.write(w);
            }
            GroupAdminAction::Delete => w.put_u8(action_tag::DELETE),
            GroupAdminAction::ReplayIds(ids) => {
                w.put_u8(action_tag::REPLAY_IDS);
                write_ids(w, ids);
            }
            GroupAdminAction::ReplayRange { from, to } => {
                w.put_u8(action_tag::REPLAY_RANGE);
                w.put_id(*from);
                w.put_id(*to);
            }
            GroupAdminAction::Create {
                glob,
                start,
                settings,
            } => {
                w.put_u8(action_tag::CREATE);
                w.put_bytes16(glob.as_bytes(), "glob");
                start.write(w);
                settings.write(w);
            }
            GroupAdminAction::UpdateSettings(settings) => {
                w.put_u8(action_tag::UPDATE_SETTINGS);
                settings.write(w);
            }
        }
    }

    fn read(r: &mut Reader) -> Result<GroupAdmin, DecodeError> {
        let group = r.get_str16("group name")?;
        let action = match r.get_u8("action")? {
            action_tag::REPLAY_PARKED => GroupAdminAction::ReplayParked,
            action_tag::RESET => GroupAdminAction::Reset(StartPosition::read(r)?),
            action_tag::DELETE => GroupAdminAction::Delete,
            action_tag::REPLAY_IDS => GroupAdminAction::ReplayIds(read_ids(r)?),
            action_tag::REPLAY_RANGE => GroupAdminAction::ReplayRange {
                from: r.get_event_id("from id")?,
                to: r.get_event_id("to id")?,
            },
            action_tag::CREATE => GroupAdminAction::Create {
                glob: r.get_str16("glob")?,
                start: StartPosition::read(r)?,
                settings: GroupSettings::read(r)?,
            },
            action_tag::UPDATE_SETTINGS => {
                GroupAdminAction::UpdateSettings(GroupSettings::read(r)?)
            }
            other => return Err(r.error(format!("unknown group admin action {other}"))),
        };
        Ok(GroupAdmin { group, action })
    }
}

impl WireFormat for GroupInfo {
    fn write(&self, w: &mut Writer) {
        w.put_text16(&self.name);
        w.put_text16(&self.glob);
        w.put_u16(self.members);
        w.put_u32(self.in_flight);
        w.put_u64(self.pending);
        w.put_u64(self.parked);
        w.put_u64(self.floor);
        w.put_u64(self.next);
        w.put_u64(self.acked_above_floor);
        w.put_u64(self.lag);
        w.put_u64(self.oldest_pending_age_ms);
    }

    fn read(r: &mut Reader) -> Result<GroupInfo, DecodeError> {
        Ok(GroupInfo {
            name: r.get_str16("group name")?,
            glob: r.get_str16("glob")?,
            members: r.get_u16("members")?,
            in_flight: r.get_u32("in flight")?,
            pending: r.get_u64("pending")?,
            parked: r.get_u64("parked")?,
            floor: r.get_u64("floor")?,
            next: r.get_u64("next")?,
            acked_above_floor: r.get_u64("acked above floor")?,
            lag: r.get_u64("lag")?,
            oldest_pending_age_ms: r.get_u64("oldest pending age")?,
        })
    }
}

impl GroupInfo {
    /// The bytes this entry takes in a Groups frame.
    pub fn encoded_size(&self) -> usize {
        GROUP_INFO_FIXED_SIZE + self.name.len() + self.glob.len()
    }
}

/// The bytes of a Groups entry besides its name and glob: two length fields, `u16`, `u32` and
/// seven `u64`.
pub const GROUP_INFO_FIXED_SIZE: usize = 2 + 2 + 2 + 4 + 7 * 8;
/// A Groups frame without entries: header, `u64` durable end, `u8` more, `u16` count.
pub const GROUPS_FRAME_EMPTY_SIZE: usize = HEADER_SIZE + 8 + 1 + 2;
/// A Parked frame without entries and name: header, name length, `u8` more, `u16` count.
pub const PARKED_FRAME_EMPTY_SIZE: usize = HEADER_SIZE + 2 + 1 + 2;
/// One Parked entry: `u64` offset and a 10-byte id.
pub const PARKED_ENTRY_SIZE: usize = 8 + 10;

impl WireFormat for GroupsReply {
    fn write(&self, w: &mut Writer) {
        write_group_page(w, self.durable_end, self.more, &self.groups);
    }

    fn read(r: &mut Reader) -> Result<GroupsReply, DecodeError> {
        let (durable_end, more, groups) = read_group_page(r)?;
        Ok(GroupsReply {
            durable_end,
            more,
            groups,
        })
    }
}

impl WireFormat for ParkedReply {
    fn write(&self, w: &mut Writer) {
        w.put_text16(&self.group);
        w.put_bool(self.more);
        // At most `parked_list_max` entries (validated far below 65535).
        let count = w.put_count16(self.events.len());
        for event in self.events.iter().take(count) {
            w.put_u64(event.offset);
            w.put_id(event.id);
        }
    }

    fn read(r: &mut Reader) -> Result<ParkedReply, DecodeError> {
        let group = r.get_str16("group name")?;
        let more = r.get_bool("more")?;
        let count = r.get_u16("parked count")?;
        let mut events = Vec::new();
        for _ in 0..count {
            events.push(ParkedEvent {
                offset: r.get_u64("offset")?,
                id: r.get_event_id("parked id")?,
            });
        }
        Ok(ParkedReply {
            group,
            more,
            events,
        })
    }
}

impl WireFormat for GroupSettings {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.ack_timeout_ms);
        w.put_u16(self.max_deliveries);
        w.put_u32(self.max_in_flight);
    }

    fn read(r: &mut Reader) -> Result<GroupSettings, DecodeError> {
        Ok(GroupSettings {
            ack_timeout_ms: r.get_u32("ack timeout")?,
            max_deliveries: r.get_u16("max deliveries")?,
            max_in_flight: r.get_u32("max in flight")?,
        })
    }
}

impl WireFormat for GroupAckRange {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.subscription_id);
        w.put_id(self.first);
        w.put_id(self.last);
    }

    fn read(r: &mut Reader) -> Result<GroupAckRange, DecodeError> {
        Ok(GroupAckRange {
            subscription_id: r.get_u32("subscription id")?,
            first: r.get_event_id("first id")?,
            last: r.get_event_id("last id")?,
        })
    }
}

/// The longest member connection text a GroupsDetail frame carries (an address; longer text
/// is cut at a character boundary).
pub const GROUP_MEMBER_CONNECTION_TEXT_MAX: usize = 64;
/// The bytes of a GroupsDetail member entry besides its connection text: `u32` subscription
/// id, the text's length, `u32` in flight, `u32` max in flight, `u64` credit.
pub const GROUP_MEMBER_FIXED_SIZE: usize = 4 + 2 + 4 + 4 + 8;
/// The bytes a GroupsDetail entry adds to a Groups entry besides its members: the settings
/// (`u32`, `u16`, `u32`) and the `u16` member count.
pub const GROUP_DETAIL_EXTRA_SIZE: usize = 4 + 2 + 4 + 2;

impl WireFormat for GroupMemberInfo {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.subscription_id);
        let mut end = self.connection.len().min(GROUP_MEMBER_CONNECTION_TEXT_MAX);
        while !self.connection.is_char_boundary(end) {
            end -= 1;
        }
        w.put_text16(&self.connection[..end]);
        w.put_u32(self.in_flight);
        w.put_u32(self.max_in_flight);
        w.put_u64(self.credit);
    }

    fn read(r: &mut Reader) -> Result<GroupMemberInfo, DecodeError> {
        Ok(GroupMemberInfo {
            subscription_id: r.get_u32("subscription id")?,
            connection: r.get_str16("connection")?,
            in_flight: r.get_u32("in flight")?,
            max_in_flight: r.get_u32("max in flight")?,
            credit: r.get_u64("credit")?,
        })
    }
}

impl GroupDetail {
    /// The bytes this entry takes in a GroupsDetail frame.
    pub fn encoded_size(&self) -> usize {
        let members: usize = (self.members.iter())
            .map(|m| {
                GROUP_MEMBER_FIXED_SIZE + m.connection.len().min(GROUP_MEMBER_CONNECTION_TEXT_MAX)
            })
            .sum();
        self.info.encoded_size() + GROUP_DETAIL_EXTRA_SIZE + members
    }
}

impl WireFormat for GroupDetail {
    fn write(&self, w: &mut Writer) {
        self.info.write(w);
        self.settings.write(w);
        // At most `groups.members_listed_max` members (validated below 65535).
        let count = w.put_count16(self.members.len());
        for member in self.members.iter().take(count) {
            member.write(w);
        }
    }

    fn read(r: &mut Reader) -> Result<GroupDetail, DecodeError> {
        let info = GroupInfo::read(r)?;
        let settings = GroupSettings::read(r)?;
        let count = r.get_u16("member count")?;
        let mut members = Vec::new();
        for _ in 0..count {
            members.push(GroupMemberInfo::read(r)?);
        }
        Ok(GroupDetail {
            info,
            settings,
            members,
        })
    }
}

impl WireFormat for GroupsDetailReply {
    fn write(&self, w: &mut Writer) {
        write_group_page(w, self.durable_end, self.more, &self.groups);
    }

    fn read(r: &mut Reader) -> Result<GroupsDetailReply, DecodeError> {
        let (durable_end, more, groups) = read_group_page(r)?;
        Ok(GroupsDetailReply {
            durable_end,
            more,
            groups,
        })
    }
}

/// A page of groups (Groups and GroupsDetail): `u64` durable end, `bool` more, `u16` count,
/// then the entries.
fn write_group_page<T: WireFormat>(w: &mut Writer, durable_end: u64, more: bool, groups: &[T]) {
    w.put_u64(durable_end);
    w.put_bool(more);
    // The server fills a reply within frame_size_max, far below 65535 entries.
    let count = w.put_count16(groups.len());
    for group in groups.iter().take(count) {
        group.write(w);
    }
}

fn read_group_page<T: WireFormat>(r: &mut Reader) -> Result<(u64, bool, Vec<T>), DecodeError> {
    let durable_end = r.get_u64("durable end")?;
    let more = r.get_bool("more")?;
    let count = r.get_u16("group count")?;
    let mut groups = Vec::new();
    for _ in 0..count {
        groups.push(T::read(r)?);
    }
    Ok((durable_end, more, groups))
}
