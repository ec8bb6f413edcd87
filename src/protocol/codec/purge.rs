//! The codecs of Purge, PurgesRequest (empty), Purged, Purges and PeerPurge (protocol.md,
//! "Purges and per-namespace retention").

use super::*;
use crate::event::PurgeBefore;

/// The bound's kind byte of a purge rule.
mod before_tag {
    pub const ID: u8 = 1;
    pub const TIME: u8 = 2;
}

impl WireFormat for PurgeRule {
    /// `str16` glob, `u8` kind, then a 10-byte id (kind 1) or a `u64` of milliseconds since the
    /// epoch (kind 2).
    fn write(&self, w: &mut Writer) {
        w.put_text16(&self.glob);
        match self.before {
            PurgeBefore::Id(id) => {
                w.put_u8(before_tag::ID);
                w.put_id(id);
            }
            PurgeBefore::Time(ms) => {
                w.put_u8(before_tag::TIME);
                w.put_u64(ms);
            }
        }
    }

    fn read(r: &mut Reader) -> Result<PurgeRule, DecodeError> {
        let glob = r.get_str16("glob")?;
        let before = match r.get_u8("purge kind")? {
            before_tag::ID => PurgeBefore::Id(r.get_event_id("purge bound")?),
            before_tag::TIME => PurgeBefore::Time(r.get_u64_positive("purge time")?),
            other => return Err(r.error(format!("unknown purge kind {other}"))),
        };
        Ok(PurgeRule { glob, before })
    }
}

impl WireFormat for Purged {
    fn write(&self, w: &mut Writer) {
        self.rule.write(w);
        w.put_bool(self.changed);
    }

    fn read(r: &mut Reader) -> Result<Purged, DecodeError> {
        Ok(Purged {
            rule: PurgeRule::read(r)?,
            changed: r.get_bool("changed")?,
        })
    }
}

/// The bytes of one PurgeRule besides its glob: length, kind and the larger bound (an id).
pub const PURGE_RULE_FIXED_SIZE: usize = 2 + 1 + 10;
/// A Purges frame without entries: header and two `u16` counts.
pub const PURGES_FRAME_EMPTY_SIZE: usize = HEADER_SIZE + 2 + 2;
/// One retention entry besides its glob: length, `u64` keep and `u64` cutoff.
pub const RETENTION_INFO_FIXED_SIZE: usize = 2 + 8 + 8;

impl WireFormat for PurgesReply {
    fn write(&self, w: &mut Writer) {
        // `purge_rules_max` and the retention rule limit are far below 65535, and
        // `Config::validate` checks that a full reply fits `frame_size_max`.
        let count = w.put_count16(self.purges.len());
        for rule in self.purges.iter().take(count) {
            rule.write(w);
        }
        let count = w.put_count16(self.retention.len());
        for rule in self.retention.iter().take(count) {
            w.put_text16(&rule.glob);
            w.put_u64(rule.keep_ms);
            w.put_u64(rule.cutoff_ms);
        }
    }

    fn read(r: &mut Reader) -> Result<PurgesReply, DecodeError> {
        let mut purges = Vec::new();
        for _ in 0..r.get_u16("purge count")? {
            purges.push(PurgeRule::read(r)?);
        }
        let mut retention = Vec::new();
        for _ in 0..r.get_u16("retention count")? {
            retention.push(RetentionInfo {
                glob: r.get_str16("glob")?,
                keep_ms: r.get_u64("keep")?,
                cutoff_ms: r.get_u64("cutoff")?,
            });
        }
        Ok(PurgesReply { purges, retention })
    }
}
