//! The codecs of the peer handshake (PeerHello, PeerWelcome, PeerProof, PeerAccept) and
//! member lists.

use super::*;

pub(super) fn write_members(w: &mut Writer, members: &[Member]) {
    // The engine lists at most `members_max` members; writing is total all the same.
    let count = w.put_count16(members.len());
    for member in members.iter().take(count) {
        w.put_u16(member.actor_id);
        w.put_text16(&member.addr);
    }
}

pub(super) fn read_members(r: &mut Reader) -> Result<Vec<Member>, DecodeError> {
    let count = r.get_u16("member count")?;
    // Pushed as read: a lying count cannot allocate more than the frame holds.
    let mut members = Vec::new();
    for _ in 0..count {
        let actor_id = r.get_u16("member actor")?;
        if actor_id == 0 {
            return Err(r.error("a member list names actor 0, which is no actor".into()));
        }
        members.push(Member {
            actor_id,
            addr: r.get_str16("member address")?,
        });
    }
    Ok(members)
}

impl WireFormat for PeerHandshake {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.protocol_version);
        w.put_u16(self.actor_id);
        w.put_text16(&self.advertised_addr);
        w.put_raw(&self.nonce);
    }

    fn read(r: &mut Reader) -> Result<PeerHandshake, DecodeError> {
        Ok(PeerHandshake {
            protocol_version: r.get_u16("protocol version")?,
            actor_id: r.get_u16("actor id")?,
            advertised_addr: r.get_str16("advertised address")?,
            nonce: r.take_array("nonce")?,
        })
    }
}

impl WireFormat for PeerProof {
    fn write(&self, w: &mut Writer) {
        w.put_raw(&self.proof);
        write_vector(w, &self.vector);
        write_members(w, &self.members);
    }

    fn read(r: &mut Reader) -> Result<PeerProof, DecodeError> {
        Ok(PeerProof {
            proof: r.take_array("proof")?,
            vector: read_vector(r, "vector")?,
            members: read_members(r)?,
        })
    }
}
