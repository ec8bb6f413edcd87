//! The codecs of the Status and Info frames.

use super::*;

/// StatusRequest's option byte (protocol.md section 14): bit 0, send the produce hold fields.
pub(super) const STATUS_OPTION_HOLD: u8 = 0x01;

/// The options of a StatusRequest: none when its body is empty (the request of the first
/// version), otherwise one byte with bit 0 set. A byte of 0 (a second encoding of "no
/// option") or with any other bit set is malformed, so an option a server does not know is
/// refused rather than ignored.
pub(super) fn read_status_options(r: &mut Reader) -> Result<bool, DecodeError> {
    if r.position == r.body.len() {
        return Ok(false);
    }
    let options = r.get_u8("options")?;
    if options != STATUS_OPTION_HOLD {
        return Err(r.error(format!(
            "StatusRequest options are {options:#04x}; only bit 0 (the hold fields) is defined, \
             and a request without options has no option byte"
        )));
    }
    Ok(true)
}

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
        let order = &self.order;
        w.put_u64(order.stable_clock);
        match &order.held_by {
            None => w.put_bool(false),
            Some(holder) => {
                w.put_bool(true);
                w.put_u16(holder.actor_id);
                w.put_text16(&holder.addr);
                w.put_u64(holder.clock);
                w.put_u64(holder.held_ms);
            }
        }
        w.put_u32(order.waiting_subscriptions);
        w.put_u64(order.waiting_events);
        w.put_u64(order.waiting_ms);
        // Only while produces are held, and only to a client that asked for them (the engine
        // leaves `hold` out otherwise): a Status without them has the layout of the first
        // version, which a client that predates the hold reads.
        if let Some(hold) = &self.hold {
            w.put_u16(hold.actor_id);
            w.put_text16(&hold.addr);
            w.put_u64(hold.held_ms);
            w.put_u64(hold.timeout_left_ms);
            w.put_text16(&hold.waits_for);
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
        let stable_clock = r.get_u64("stable clock")?;
        let held_by = match r.get_bool("held")? {
            false => None,
            true => Some(OrderHolder {
                actor_id: r.get_u16("holder actor")?,
                addr: r.get_str16("holder address")?,
                clock: r.get_u64("holder clock")?,
                held_ms: r.get_u64("held time")?,
            }),
        };
        let order = OrderStatus {
            stable_clock,
            held_by,
            waiting_subscriptions: r.get_u32("waiting subscriptions")?,
            waiting_events: r.get_u64("waiting events")?,
            waiting_ms: r.get_u64("waiting time")?,
        };
        let hold = match r.position < r.body.len() {
            false => None,
            true => Some(ProduceHold {
                actor_id: r.get_u16("hold actor")?,
                addr: r.get_str16("hold address")?,
                held_ms: r.get_u64("hold time")?,
                timeout_left_ms: r.get_u64("hold time-out")?,
                waits_for: r.get_str16("hold text")?,
            }),
        };
        Ok(Status {
            actor_id,
            counter,
            event_count,
            durable_end,
            vector,
            members,
            order,
            hold,
        })
    }
}

impl WireFormat for Info {
    fn write(&self, w: &mut Writer) {
        w.put_text16(&self.version);
        w.put_u64(self.uptime_ms);
        w.put_text16(&self.fsync_policy);
        w.put_u16(self.actor_id);
        w.put_u64(self.log_bytes);
        w.put_u64(self.event_count);
        w.put_u64(self.segment_count);
        w.put_u32(self.client_connections);
        w.put_u32(self.peer_connections);
        w.put_u32(self.subscriptions);
        w.put_u32(self.group_count);
    }

    fn read(r: &mut Reader) -> Result<Info, DecodeError> {
        Ok(Info {
            version: r.get_str16("version")?,
            uptime_ms: r.get_u64("uptime")?,
            fsync_policy: r.get_str16("fsync policy")?,
            actor_id: r.get_u16("actor id")?,
            log_bytes: r.get_u64("log bytes")?,
            event_count: r.get_u64("event count")?,
            segment_count: r.get_u64("segment count")?,
            client_connections: r.get_u32("client connections")?,
            peer_connections: r.get_u32("peer connections")?,
            subscriptions: r.get_u32("subscriptions")?,
            group_count: r.get_u32("group count")?,
        })
    }
}
