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
        w.put_u64(self.durable_end);
        w.put_bool(self.more);
        // The server fills a reply within frame_size_max, far below 65535 entries.
        let count = w.put_count16(self.groups.len());
        for group in self.groups.iter().take(count) {
            group.write(w);
        }
    }

    fn read(r: &mut Reader) -> Result<GroupsReply, DecodeError> {
        let durable_end = r.get_u64("durable end")?;
        let more = r.get_bool("more")?;
        let count = r.get_u16("group count")?;
        let mut groups = Vec::new();
        for _ in 0..count {
            groups.push(GroupInfo::read(r)?);
        }
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
