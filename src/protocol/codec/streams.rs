//! The codec of the namespace listing and trace frames: NamespacesRequest, Namespaces and
//! Trace (protocol.md section 6; TraceRequest is only an id).

use super::*;

impl WireFormat for NamespacesRequest {
    fn write(&self, w: &mut Writer) {
        // Not free text: a glob or name cut to 65535 bytes would ask for something else.
        w.put_bytes16(self.glob.as_bytes(), "glob");
        w.put_bytes16(self.after.as_bytes(), "namespace");
    }

    fn read(r: &mut Reader) -> Result<NamespacesRequest, DecodeError> {
        Ok(NamespacesRequest {
            glob: r.get_str16("glob")?,
            after: r.get_str16("after")?,
        })
    }
}

impl WireFormat for NamespaceInfo {
    fn write(&self, w: &mut Writer) {
        w.put_text16(&self.name);
        w.put_u64(self.event_count);
        w.put_id(self.first_id);
        w.put_u64(self.first_timestamp_ms);
        w.put_id(self.last_id);
        w.put_u64(self.last_timestamp_ms);
    }

    fn read(r: &mut Reader) -> Result<NamespaceInfo, DecodeError> {
        Ok(NamespaceInfo {
            name: r.get_str16("namespace")?,
            event_count: r.get_u64("event count")?,
            first_id: r.get_id_or_none("first id")?,
            first_timestamp_ms: r.get_u64("first timestamp")?,
            last_id: r.get_id_or_none("last id")?,
            last_timestamp_ms: r.get_u64("last timestamp")?,
        })
    }
}

impl NamespaceInfo {
    /// The bytes this entry takes in a Namespaces frame.
    pub fn encoded_size(&self) -> usize {
        NAMESPACE_INFO_FIXED_SIZE + self.name.len()
    }
}

/// The bytes of a Namespaces entry besides its name: the name's length, three `u64` and two
/// 10-byte ids.
pub const NAMESPACE_INFO_FIXED_SIZE: usize = 2 + 3 * 8 + 2 * 10;
/// A Namespaces frame without entries: header, `u8` more, `u16` count.
pub const NAMESPACES_FRAME_EMPTY_SIZE: usize = HEADER_SIZE + 1 + 2;

impl WireFormat for NamespacesReply {
    fn write(&self, w: &mut Writer) {
        w.put_bool(self.more);
        // At most `streams.namespaces_per_reply_max` entries (validated far below 65535).
        let count = w.put_count16(self.namespaces.len());
        for namespace in self.namespaces.iter().take(count) {
            namespace.write(w);
        }
    }

    fn read(r: &mut Reader) -> Result<NamespacesReply, DecodeError> {
        let more = r.get_bool("more")?;
        let count = r.get_u16("namespace count")?;
        let mut namespaces = Vec::new();
        for _ in 0..count {
            namespaces.push(NamespaceInfo::read(r)?);
        }
        Ok(NamespacesReply { more, namespaces })
    }
}

/// Trace flag bits.
const TRACE_MORE: u8 = 0x01;
const TRACE_TRUNCATED: u8 = 0x02;

/// The bytes of a Trace entry besides its namespace: `i16` depth, two ids, `u64` timestamp,
/// the namespace's length.
pub const TRACE_ENTRY_FIXED_SIZE: usize = 2 + 2 * 10 + 8 + 2;
/// A Trace frame without entries: header, `u8` flags, `u16` count.
pub const TRACE_FRAME_EMPTY_SIZE: usize = HEADER_SIZE + 1 + 2;

impl WireFormat for TraceReply {
    fn write(&self, w: &mut Writer) {
        let mut flags = 0;
        if self.more {
            flags |= TRACE_MORE;
        }
        if self.truncated {
            flags |= TRACE_TRUNCATED;
        }
        w.put_u8(flags);
        // At most `streams.trace_events_per_reply_max` entries (validated far below 65535).
        let count = w.put_count16(self.entries.len());
        for entry in self.entries.iter().take(count) {
            w.put_u16(entry.depth as u16);
            w.put_id(entry.id);
            w.put_optional_id(entry.parent_id);
            w.put_u64(entry.timestamp_ms);
            w.put_text16(&entry.namespace);
        }
    }

    fn read(r: &mut Reader) -> Result<TraceReply, DecodeError> {
        let flags = r.get_u8("trace flags")?;
        if flags & !(TRACE_MORE | TRACE_TRUNCATED) != 0 {
            return Err(r.error(format!("unknown trace flags {flags:#04x}")));
        }
        let count = r.get_u16("trace entry count")?;
        let mut entries = Vec::new();
        for _ in 0..count {
            entries.push(TraceEntry {
                depth: r.get_u16("depth")? as i16,
                id: r.get_event_id("id")?,
                parent_id: r.get_optional_id("parent id")?,
                timestamp_ms: r.get_u64("timestamp")?,
                namespace: r.get_str16("namespace")?,
            });
        }
        Ok(TraceReply {
            more: flags & TRACE_MORE != 0,
            truncated: flags & TRACE_TRUNCATED != 0,
            entries,
        })
    }
}

impl TraceEntry {
    /// The bytes this entry takes in a Trace frame.
    pub fn encoded_size(&self) -> usize {
        TRACE_ENTRY_FIXED_SIZE + self.namespace.len()
    }
}
