//! The codec of the Status frame.

use super::*;

impl WireFormat for Status {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.actor_id);
        w.put_u64(self.counter);
        w.put_u64(self.event_count);
        w.put_u64(self.durable_end);
        write_vector(w, &self.vector);
        // At most `members_max` members plus the configured addresses; never clamps.
        let count = w.put_count16(self.members.len());
        for member in self.members.iter().take(count) {
            w.put_u16(member.actor_id);
            w.put_text16(&member.addr);
            w.put_u8(member.state as u8);
            write_vector(w, &member.vector);
            w.put_u64(member.lag);
            w.put_u64(member.disconnected_ms);
        }
    }

    fn read(r: &mut Reader) -> Result<Status, DecodeError> {
        let actor_id = r.get_u16("actor id")?;
        let counter = r.get_u64("counter")?;
        let event_count = r.get_u64("event count")?;
        let durable_end = r.get_u64("durable end")?;
        let vector = read_vector(r, "vector")?;
        let count = r.get_u16("member count")?;
        let mut members = Vec::new();
        for _ in 0..count {
            let actor_id = r.get_u16("member actor")?;
            let addr = r.get_str16("member address")?;
            let state = match r.get_u8("member state")? {
                1 => MemberState::Connected,
                2 => MemberState::Connecting,
                3 => MemberState::BackingOff,
                other => return Err(r.error(format!("unknown member state {other}"))),
            };
            members.push(MemberStatus {
                actor_id,
                addr,
                state,
                vector: read_vector(r, "member vector")?,
                lag: r.get_u64("member lag")?,
                disconnected_ms: r.get_u64("member disconnected time")?,
            });
        }
        Ok(Status {
            actor_id,
            counter,
            event_count,
            durable_end,
            vector,
            members,
        })
    }
}
