//! The codecs of membership: ChangeMember (client), Members (server) and PeerMembership
//! (peer), protocol.md sections 8 and 15.

use super::*;

impl WireFormat for ChangeMember {
    fn write(&self, w: &mut Writer) {
        w.put_u8(self.op as u8);
        w.put_u16(self.actor_id);
    }

    fn read(r: &mut Reader) -> Result<ChangeMember, DecodeError> {
        let op = match r.get_u8("member operation")? {
            1 => MemberOp::Remove,
            2 => MemberOp::Add,
            other => return Err(r.error(format!("member operation {other} is not 1 or 2"))),
        };
        let actor_id = r.get_u16("actor id")?;
        if actor_id == 0 {
            return Err(r.error("actor 0 is no member".into()));
        }
        Ok(ChangeMember { op, actor_id })
    }
}

pub(super) fn write_member_entries(w: &mut Writer, entries: &[MemberEntry]) {
    // The engine lists at most `members_max` members plus `actors_max` removed ones; writing
    // is total all the same.
    let count = w.put_count16(entries.len());
    for entry in entries.iter().take(count) {
        w.put_u16(entry.actor_id);
        w.put_u8(entry.state as u8);
        w.put_u64(entry.version);
        w.put_text16(&entry.addr);
    }
}

pub(super) fn read_member_entries(r: &mut Reader) -> Result<Vec<MemberEntry>, DecodeError> {
    let count = r.get_u16("member count")?;
    // Pushed as read: a lying count cannot allocate more than the frame holds.
    let mut entries = Vec::new();
    for _ in 0..count {
        let actor_id = r.get_u16("member actor")?;
        let state = match r.get_u8("member state")? {
            0 => MembershipState::Itself,
            1 => MembershipState::Connected,
            2 => MembershipState::Connecting,
            3 => MembershipState::BackingOff,
            4 => MembershipState::Removed,
            other => return Err(r.error(format!("member state {other} is not 0-4"))),
        };
        entries.push(MemberEntry {
            actor_id,
            state,
            version: r.get_u64("member version")?,
            addr: r.get_str16("member address")?,
        });
    }
    Ok(entries)
}

pub(super) fn write_membership(w: &mut Writer, records: &[MembershipRecord]) {
    let count = w.put_count16(records.len());
    for record in records.iter().take(count) {
        w.put_u16(record.actor_id);
        w.put_bool(record.removed);
        w.put_u64(record.version);
        w.put_text16(&record.addr);
    }
}

pub(super) fn read_membership(r: &mut Reader) -> Result<Vec<MembershipRecord>, DecodeError> {
    let count = r.get_u16("record count")?;
    let mut records = Vec::new();
    for _ in 0..count {
        let actor_id = r.get_u16("member actor")?;
        if actor_id == 0 {
            return Err(r.error("a membership record names actor 0, which is no actor".into()));
        }
        records.push(MembershipRecord {
            actor_id,
            removed: r.get_bool("removed")?,
            version: r.get_u64("version")?,
            addr: r.get_str16("member address")?,
        });
    }
    Ok(records)
}
