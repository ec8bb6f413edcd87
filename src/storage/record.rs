//! The byte format of one record, and little-endian helpers shared by the segment and index
//! files. The format is described byte by byte in docs/storage.md.
//!
//! A record is an 8-byte header (`body_size: u32`, `crc: u32`) and a body. The CRC32C covers
//! the four `body_size` bytes and then the body, so a flipped length is caught too.

use crate::event::{ActorId, Event, EventId, EventRef};

/// The header before every record body.
pub const RECORD_HEADER_SIZE: usize = 8;

/// Where a body's namespace starts: after the id (8 + 2), the parent id (8 + 2), the
/// timestamp (8) and the namespace's length field.
const NAMESPACE_AT: usize = 8 + 2 + 8 + 2 + 8 + 4;

/// The fixed part of a body: the fields before the namespace and the data's length field.
const BODY_FIXED_SIZE: usize = NAMESPACE_AT + 4;

/// No record body is larger than this. A length field above it is corruption, so a torn or
/// flipped header never makes the reader allocate gigabytes.
pub const RECORD_BODY_SIZE_MAX: usize = 256 * 1024 * 1024;

/// Why bytes did not decode to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the record (a torn write).
    Truncated,
    /// The length field is impossible.
    BadSize,
    /// The checksum does not match.
    BadChecksum,
    /// The checksum matched but the fields are inconsistent (cannot happen without a bug or a
    /// checksum collision; still reported, never a panic).
    BadBody,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            DecodeError::Truncated => "record truncated",
            DecodeError::BadSize => "impossible record size",
            DecodeError::BadChecksum => "record checksum mismatch",
            DecodeError::BadBody => "record fields inconsistent",
        };
        f.write_str(text)
    }
}

/// The bytes `event` takes on disk, header included.
#[cfg(any(test, feature = "testing"))]
pub fn encoded_size(event: &Event) -> usize {
    encoded_size_of(event.view())
}

/// The bytes `event` takes on disk, header included.
pub fn encoded_size_of(event: EventRef<'_>) -> usize {
    RECORD_HEADER_SIZE + BODY_FIXED_SIZE + event.namespace.len() + event.data.len()
}

/// Refuses an event whose record would exceed [`RECORD_BODY_SIZE_MAX`] (it could be written
/// but never read back). The engine's own limits are far below; this guards the format.
pub fn check_size(event: EventRef<'_>) -> Result<(), super::StorageError> {
    let body_size = encoded_size_of(event) - RECORD_HEADER_SIZE;
    if body_size <= RECORD_BODY_SIZE_MAX {
        return Ok(());
    }
    Err(super::StorageError::Io {
        context: format!("append event {}", event.id),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("record of {body_size} bytes is over the limit of {RECORD_BODY_SIZE_MAX}"),
        ),
    })
}

/// The record `flo --repair` writes in place of each record of a sealed segment it could not
/// read, so that every later record keeps its offset (offsets name segment files and are kept
/// by consumer groups). Its id is 0, which no event has, and its namespace is empty, which no
/// glob matches; reads pass over it and indexes leave it out (docs/storage.md, "Holes").
pub fn hole() -> Event {
    Event {
        id: EventId::NONE,
        parent_id: None,
        namespace: String::new(),
        timestamp_ms: 0,
        data: Vec::new(),
    }
}

/// Whether a record's view is a [`hole`]: no event has counter 0.
pub fn is_hole_view(event: EventRef<'_>) -> bool {
    event.id.counter == 0
}

/// Appends the encoded record to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    encode_view(event.view(), out);
}

/// Appends the encoded record of a borrowed event to `out`: the produce path encodes the
/// bytes of a received frame straight into the log's write buffer.
pub fn encode_view(event: EventRef<'_>, out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + encoded_size_of(event), 0);
    encode_view_into(event, &mut out[at..]);
}

/// Encodes `event` as one record into `out`, which must be exactly
/// [`encoded_size_of`]`(event)` bytes: the log encodes a produce straight into its cache's
/// ring, where the segment write and the cache read it from (issue 13).
pub fn encode_view_into(event: EventRef<'_>, out: &mut [u8]) {
    let size = encoded_size_of(event);
    assert_eq!(out.len(), size, "a record's bytes are encoded_size_of");
    let body_size = (size - RECORD_HEADER_SIZE) as u32;
    let parent = event.parent_id.unwrap_or(EventId::NONE);
    let namespace = event.namespace.as_bytes();
    // The fixed fields up to the namespace: the header (its checksum filled in last), id,
    // parent id, timestamp and the namespace's size.
    let fixed_end = RECORD_HEADER_SIZE + BODY_FIXED_SIZE - 4;
    let (fixed, rest) = out.split_at_mut(fixed_end);
    fixed[0..4].copy_from_slice(&body_size.to_le_bytes());
    fixed[4..8].fill(0);
    fixed[8..16].copy_from_slice(&event.id.counter.to_le_bytes());
    fixed[16..18].copy_from_slice(&event.id.actor.0.to_le_bytes());
    fixed[18..26].copy_from_slice(&parent.counter.to_le_bytes());
    fixed[26..28].copy_from_slice(&parent.actor.0.to_le_bytes());
    fixed[28..36].copy_from_slice(&event.timestamp_ms.to_le_bytes());
    fixed[36..40].copy_from_slice(&(namespace.len() as u32).to_le_bytes());
    let (name, rest) = rest.split_at_mut(namespace.len());
    name.copy_from_slice(namespace);
    let (data_size, data) = rest.split_at_mut(4);
    data_size.copy_from_slice(&(event.data.len() as u32).to_le_bytes());
    data.copy_from_slice(event.data);
    let crc = record_crc(&out[..4], &out[RECORD_HEADER_SIZE..]);
    out[4..RECORD_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
}

fn record_crc(size_bytes: &[u8], body: &[u8]) -> u32 {
    super::crc::crc32c_append(super::crc::crc32c_append(0, size_bytes), body)
}

/// Reads the header: the body size, checked against the limit.
pub fn decode_header(header: &[u8; RECORD_HEADER_SIZE]) -> Result<(usize, u32), DecodeError> {
    let mut decoder = Decoder::new(header);
    // Both reads are within the 8-byte array.
    let body_size = decoder.u32().ok_or(DecodeError::Truncated)? as usize;
    let crc = decoder.u32().ok_or(DecodeError::Truncated)?;
    if !(BODY_FIXED_SIZE..=RECORD_BODY_SIZE_MAX).contains(&body_size) {
        return Err(DecodeError::BadSize);
    }
    Ok((body_size, crc))
}

/// Checks the body against the header's checksum and decodes it.
pub fn decode_body(
    header: &[u8; RECORD_HEADER_SIZE],
    crc: u32,
    body: &[u8],
) -> Result<Event, DecodeError> {
    view_body(header, crc, body).map(|event| event.to_event())
}

/// The fields of a body. `known` is a namespace already validated (the record before's): when
/// the body's namespace has the same bytes, it is that one, and UTF-8 is not checked again.
#[inline]
fn decode_fields<'a>(decoder: &mut Decoder<'a>, known: Option<&'a str>) -> Option<EventRef<'a>> {
    let id = EventId::new(decoder.u64()?, decoder.u16()?);
    let parent = EventId::new(decoder.u64()?, decoder.u16()?);
    let timestamp_ms = decoder.u64()?;
    let namespace_size = decoder.u32()? as usize;
    let namespace_bytes = decoder.bytes(namespace_size)?;
    let namespace = match known {
        Some(known) if known.as_bytes() == namespace_bytes => known,
        _ => std::str::from_utf8(namespace_bytes).ok()?,
    };
    let data_size = decoder.u32()? as usize;
    let data = decoder.bytes(data_size)?;
    Some(EventRef {
        id,
        parent_id: (!parent.is_none()).then_some(parent),
        namespace,
        timestamp_ms,
        data,
    })
}

/// Checks the body against the header's checksum and gives a view of it (no copy).
pub fn view_body<'a>(
    header: &[u8; RECORD_HEADER_SIZE],
    crc: u32,
    body: &'a [u8],
) -> Result<EventRef<'a>, DecodeError> {
    if record_crc(&header[..4], body) != crc {
        return Err(DecodeError::BadChecksum);
    }
    view_checked_body(body).ok_or(DecodeError::BadBody)
}

/// What the log keeps of a record it appended, until the record is written: the fields of its
/// view that are not bytes, and the sizes that place its namespace and data in the encoding.
/// Kept at append time so that the write hands the segment index, the vectors and the trace
/// keys each record's view without decoding the record back (about 100 instructions an event,
/// BENCHMARKS.md issue 13 session 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRecord {
    id: EventId,
    parent_id: Option<EventId>,
    timestamp_ms: u64,
    namespace_size: u32,
    /// The whole record, header included: at most `RECORD_HEADER_SIZE +
    /// RECORD_BODY_SIZE_MAX` (`check_size`), so it fits in a u32.
    size: u32,
}

impl AppendedRecord {
    /// The record of `event`, which passed [`check_size`] and was encoded as it is.
    pub fn of(event: EventRef<'_>) -> AppendedRecord {
        AppendedRecord {
            id: event.id,
            parent_id: event.parent_id,
            timestamp_ms: event.timestamp_ms,
            // Both within the checked body size (`check_size`), far below 4 GiB.
            namespace_size: event.namespace.len() as u32,
            size: encoded_size_of(event) as u32,
        }
    }

    /// The record's size on disk, header included.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// The view of this record, given its encoding (`record`, which starts with it) and the
    /// namespace of the record before it in the same buffer (`previous`): a namespace with the
    /// same bytes takes that `&str` instead of checking the UTF-8 again. `None` when `record`
    /// is not the encoding this was made from (too short, or a namespace that is not UTF-8),
    /// which only a bug can cause.
    #[inline]
    pub fn view<'a>(&self, record: &'a [u8], previous: Option<&'a str>) -> Option<EventRef<'a>> {
        let namespace_at = RECORD_HEADER_SIZE + NAMESPACE_AT;
        let namespace_end = namespace_at + self.namespace_size as usize;
        let namespace_bytes = record.get(namespace_at..namespace_end)?;
        let namespace = match previous {
            Some(previous) if previous.as_bytes() == namespace_bytes => previous,
            _ => std::str::from_utf8(namespace_bytes).ok()?,
        };
        let data = record.get(namespace_end + 4..self.size as usize)?;
        Some(EventRef {
            id: self.id,
            parent_id: self.parent_id,
            namespace,
            timestamp_ms: self.timestamp_ms,
            data,
        })
    }
}

/// A view of a body whose checksum was checked (or that this process encoded itself, such as
/// the records in the log's write buffer and cache): `None` if its fields are inconsistent.
pub fn view_checked_body(body: &[u8]) -> Option<EventRef<'_>> {
    view_checked_body_after(body, None)
}

/// `view_checked_body` for the next of a run of bodies, given the namespace of the one before
/// (`previous`, from the same buffer): a body of the same namespace takes that `&str` instead
/// of checking its bytes' UTF-8 again (a byte comparison). The log's write buffer holds runs
/// of one namespace (a connection's produces of a turn), whose UTF-8 the produce decoder has
/// already checked once.
// Inlined: `FileLog::write_pending` calls it for every record it writes (BENCHMARKS.md,
// issue 13 session 11, section 4).
#[inline]
pub fn view_checked_body_after<'a>(
    body: &'a [u8],
    previous: Option<&'a str>,
) -> Option<EventRef<'a>> {
    let mut decoder = Decoder::new(body);
    let event = decode_fields(&mut decoder, previous)?;
    decoder.is_at_end().then_some(event)
}

/// Decodes one record at the start of `bytes`; returns it and its encoded size.
pub fn decode(bytes: &[u8]) -> Result<(Event, usize), DecodeError> {
    let header: &[u8; RECORD_HEADER_SIZE] = bytes
        .get(..RECORD_HEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    let (body_size, crc) = decode_header(header)?;
    let body = bytes
        .get(RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + body_size)
        .ok_or(DecodeError::Truncated)?;
    let event = decode_body(header, crc, body)?;
    Ok((event, RECORD_HEADER_SIZE + body_size))
}

/// Reads little-endian fields from a byte slice; every read returns `None` past the end.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, position: 0 }
    }

    pub fn bytes(&mut self, size: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(size)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub fn is_at_end(&self) -> bool {
        self.position == self.bytes.len()
    }
}

/// Encodes a version vector: `count: u32`, then `(actor: u16, counter: u64)` per entry.
pub fn encode_vector(vector: &crate::event::VersionVector, out: &mut Vec<u8>) {
    out.extend_from_slice(&(vector.len() as u32).to_le_bytes());
    for (actor, counter) in vector.iter() {
        out.extend_from_slice(&actor.0.to_le_bytes());
        out.extend_from_slice(&counter.to_le_bytes());
    }
}

pub fn decode_vector(decoder: &mut Decoder<'_>) -> Option<crate::event::VersionVector> {
    let count = decoder.u32()? as usize;
    let mut vector = crate::event::VersionVector::new();
    for _ in 0..count {
        let actor = ActorId(decoder.u16()?);
        vector.observe(EventId {
            counter: decoder.u64()?,
            actor,
        });
    }
    Some(vector)
}

/// A checksummed block: `magic: [u8; 8]`, `body_size: u32`, `crc32c(body): u32`, body. Used by
/// the segment header and the index file.
pub fn encode_block(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a block, or `None` when the magic, size or checksum is wrong.
pub fn decode_block<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Option<&'a [u8]> {
    let mut decoder = Decoder::new(bytes);
    if decoder.bytes(8)? != magic {
        return None;
    }
    let size = decoder.u32()? as usize;
    let crc = decoder.u32()?;
    let body = decoder.bytes(size)?;
    (crc32c::crc32c(body) == crc).then_some(body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn event(counter: u64, actor: u16, timestamp_ms: u64, data_size: usize) -> Event {
        Event {
            id: EventId::new(counter, actor),
            parent_id: counter
                .is_multiple_of(3)
                .then(|| EventId::new(counter - 1, actor)),
            namespace: format!("/test/{}", counter % 7),
            timestamp_ms,
            data: (0..data_size)
                .map(|i| (i as u64 * 31 + counter) as u8)
                .collect(),
        }
    }

    #[test]
    fn records_round_trip_and_report_their_size() {
        for data_size in [0, 1, 100, 70_000] {
            let original = event(12, 3, 99, data_size);
            let mut bytes = Vec::new();
            encode(&original, &mut bytes);
            assert_eq!(bytes.len(), encoded_size(&original));
            assert_eq!(decode(&bytes), Ok((original, bytes.len())));
        }
    }

    /// The view `FileLog::write_pending` builds from what it kept at append time is the view
    /// decoding the record's bytes gives, for a run of records in one buffer (holes, parents,
    /// empty and repeated namespaces, a namespace that is a prefix of the one before).
    #[test]
    fn the_view_kept_at_append_time_is_the_decoded_view() {
        let mut events = vec![event(1, 1, 5, 0), event(3, 2, 6, 100), event(3, 2, 7, 1)];
        events.push(hole());
        events.push(Event {
            namespace: String::new(),
            ..event(9, 1, 8, 3)
        });
        events.push(Event {
            namespace: "/test/é".into(),
            ..event(10, 1, 9, 70_000)
        });
        events.push(Event {
            namespace: "/test/".into(),
            ..event(11, 1, 9, 2)
        });
        let mut buffer = Vec::new();
        let mut kept = Vec::new();
        for event in &events {
            kept.push(AppendedRecord::of(event.view()));
            encode(event, &mut buffer);
        }
        let mut position = 0;
        let mut previous = None;
        for (appended, original) in kept.iter().zip(&events) {
            let record = &buffer[position..];
            let size = appended.size();
            let decoded = view_checked_body_after(&record[RECORD_HEADER_SIZE..size], previous);
            let view = appended.view(record, previous);
            assert_eq!(view, decoded);
            assert_eq!(view, Some(original.view()));
            previous = view.map(|v| v.namespace);
            position += size;
        }
        assert_eq!(position, buffer.len());
        // Bytes that are not the record it was made from give no view, not a panic.
        assert_eq!(kept[1].view(&buffer[..20], None), None);
    }

    /// The layout of docs/storage.md, field by field, with the checksum from the crate: a
    /// change of `encode_view` that its own decoder would mirror still fails here.
    #[test]
    fn a_record_is_the_documented_bytes() {
        let mut original = event(0x0102_0304_0506_0708, 0x0a0b, 0x1122_3344_5566_7788, 3);
        original.parent_id = Some(EventId::new(0x99, 0x77));
        let mut body = Vec::new();
        body.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        body.extend_from_slice(&0x0a0bu16.to_le_bytes());
        body.extend_from_slice(&0x99u64.to_le_bytes());
        body.extend_from_slice(&0x77u16.to_le_bytes());
        body.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        body.extend_from_slice(&(original.namespace.len() as u32).to_le_bytes());
        body.extend_from_slice(original.namespace.as_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&original.data);
        let size = (body.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&size), &body);
        let expected = [&size[..], &crc.to_le_bytes(), &body].concat();
        let mut bytes = vec![0xEE];
        encode(&original, &mut bytes);
        assert_eq!(bytes[1..], expected[..]);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_detected() {
        let mut bytes = Vec::new();
        encode(&event(5, 1, 7, 40), &mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).err(), Some(DecodeError::Truncated));
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err(), "bit {bit} flip not detected");
        }
    }

    #[test]
    fn blocks_reject_wrong_magic_and_checksum() {
        let block = encode_block(b"FLOTEST1", b"hello");
        assert_eq!(decode_block(b"FLOTEST1", &block), Some(&b"hello"[..]));
        assert_eq!(decode_block(b"FLOTEST2", &block), None);
        let mut flipped = block.clone();
        flipped[17] ^= 4;
        assert_eq!(decode_block(b"FLOTEST1", &flipped), None);
        assert_eq!(decode_block(b"FLOTEST1", &block[..block.len() - 1]), None);
    }
}
