//! The per-segment index: what start-up and `find_start` need to know about a segment without
//! reading its records. Kept in memory for every segment, persisted as `{first:020}.idx` when
//! a segment is sealed. The byte format is in docs/storage.md.

use crate::event::{ActorId, Cursor, EventId, EventRef, VersionVector};

use super::record::{decode_block, decode_vector, encode_block, encode_vector, Decoder};

/// Magic of an index file, format version 1.
pub const INDEX_MAGIC: &[u8; 8] = b"FLOIDX\x00\x01";

/// A sparse-table entry is added every this many records...
pub const SPARSE_EVERY_RECORDS: u64 = 1024;
/// ...or once this many bytes passed since the last entry, whichever comes first. A seek
/// then decodes at most about 64 KiB before the record it wants (one buffered read), and the
/// table of a full 64 MiB segment is about 1024 entries (16 KiB), so start-up, which reads
/// every index file, stays fast for long logs.
pub const SPARSE_EVERY_BYTES: u64 = 64 * 1024;

/// The summary of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    /// Offset of the first record (also in the file name).
    pub first_offset: u64,
    pub record_count: u64,
    /// The file's size in bytes, header included: where the next record goes.
    pub file_size: u64,
    /// Smallest and largest record timestamp (0 and 0 when empty).
    pub timestamp_min: u64,
    pub timestamp_max: u64,
    /// The highest id in the segment.
    pub id_max: EventId,
    /// Per actor, the highest counter of a record in this segment.
    pub vector: VersionVector,
    /// `(offset, byte position in the file)` of some records, ascending; the first record is
    /// always present.
    pub sparse: Vec<(u64, u64)>,
}

impl SegmentIndex {
    /// What a sealed segment's `.nsx` header must carry to be taken as its index: a checksum
    /// of the segment's size, record count, timestamps and highest id, all of which the
    /// segment's own records determine. An index copied from another segment of the same
    /// first offset and record count (another data directory, a restored backup) differs in
    /// them and is rebuilt instead of silently hiding or inventing records.
    pub fn identity(&self) -> u64 {
        let mut bytes = Vec::with_capacity(50);
        for value in [
            self.first_offset,
            self.record_count,
            self.file_size,
            self.timestamp_min,
            self.timestamp_max,
            self.id_max.counter,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&self.id_max.actor.0.to_le_bytes());
        let low = crc32c::crc32c(&bytes) as u64;
        let high = crc32c::crc32c_append(0x464c_4f4e, &bytes) as u64;
        (high << 32) | low
    }

    /// The index of a segment with no record yet, whose records start at `file_size`.
    pub fn empty(first_offset: u64, file_size: u64) -> SegmentIndex {
        SegmentIndex {
            first_offset,
            record_count: 0,
            file_size,
            timestamp_min: 0,
            timestamp_max: 0,
            id_max: EventId::NONE,
            vector: VersionVector::new(),
            sparse: Vec::new(),
        }
    }

    /// One past the last record's offset.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.record_count
    }

    /// Accounts for the next record, written at `self.file_size` and `size` bytes long.
    pub fn observe(&mut self, event: EventRef<'_>, size: u64) {
        let offset = self.end_offset();
        let position = self.file_size;
        let due = match self.sparse.last() {
            None => true,
            Some(&(last_offset, last_position)) => {
                offset - last_offset >= SPARSE_EVERY_RECORDS
                    || position - last_position >= SPARSE_EVERY_BYTES
            }
        };
        if due {
            self.sparse.push((offset, position));
        }
        self.record_count += 1;
        self.file_size += size;
        if super::record::is_hole_view(event) {
            // Only its place: a hole has no id, time or namespace of its own.
            return;
        }
        // No id observed yet (ids are never 0): the first event sets the time range.
        if self.id_max.counter == 0 {
            self.timestamp_min = event.timestamp_ms;
            self.timestamp_max = event.timestamp_ms;
        }
        self.timestamp_min = self.timestamp_min.min(event.timestamp_ms);
        self.timestamp_max = self.timestamp_max.max(event.timestamp_ms);
        self.id_max = self.id_max.max(event.id);
        self.vector.observe(event.id);
    }

    /// The nearest indexed `(offset, position)` at or before `offset`.
    pub fn seek_point(&self, offset: u64) -> Option<(u64, u64)> {
        let after = self.sparse.partition_point(|&(o, _)| o <= offset);
        after.checked_sub(1).map(|i| self.sparse[i])
    }

    /// True when some record of this segment is not covered by `cursor`. Exact, not just a
    /// hint: the ids a cursor covers for one actor are all counters up to some bound (the
    /// vector entry, absent = 0, or what the floor covers), so an actor has an uncovered
    /// record here exactly when its highest counter here is uncovered.
    pub fn has_uncovered(&self, cursor: &Cursor) -> bool {
        self.vector
            .iter()
            .any(|(actor, counter)| !cursor.covers(EventId { counter, actor }))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + 10 * self.vector.len() + 16 * self.sparse.len());
        for value in [
            self.first_offset,
            self.record_count,
            self.file_size,
            self.timestamp_min,
            self.timestamp_max,
            self.id_max.counter,
        ] {
            body.extend_from_slice(&value.to_le_bytes());
        }
        body.extend_from_slice(&self.id_max.actor.0.to_le_bytes());
        encode_vector(&self.vector, &mut body);
        body.extend_from_slice(&(self.sparse.len() as u32).to_le_bytes());
        for &(offset, position) in &self.sparse {
            body.extend_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(&position.to_le_bytes());
        }
        encode_block(INDEX_MAGIC, &body)
    }

    /// Decodes an index file; `None` when it is damaged in any way.
    pub fn decode(bytes: &[u8]) -> Option<SegmentIndex> {
        let body = decode_block(INDEX_MAGIC, bytes)?;
        let mut decoder = Decoder::new(body);
        let mut index = SegmentIndex::empty(decoder.u64()?, 0);
        index.record_count = decoder.u64()?;
        index.file_size = decoder.u64()?;
        index.timestamp_min = decoder.u64()?;
        index.timestamp_max = decoder.u64()?;
        index.id_max = EventId {
            counter: decoder.u64()?,
            actor: ActorId(decoder.u16()?),
        };
        index.vector = decode_vector(&mut decoder)?;
        let sparse_count = decoder.u32()? as usize;
        for _ in 0..sparse_count {
            index.sparse.push((decoder.u64()?, decoder.u64()?));
        }
        decoder.is_at_end().then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::tests::event;

    #[test]
    fn index_round_trips_and_keeps_a_sparse_table() {
        let mut index = SegmentIndex::empty(100, 16);
        for i in 1..=3000u64 {
            let size = if i <= 2000 { 20 } else { 1000 };
            index.observe(event(i * 2, (i % 3) as u16 + 1, 5000 - i, 10).view(), size);
        }
        assert_eq!(index.record_count, 3000);
        assert_eq!(index.end_offset(), 3100);
        assert_eq!(index.timestamp_min, 2000);
        assert_eq!(index.timestamp_max, 4999);
        // Every 1024 small records; then, among the large ones, at the first record 64 KiB or
        // more past the previous entry (offset 2147, byte 87016), and every 66 records after.
        let after_small = 16 + 20 * 2000;
        assert_eq!(
            index.sparse[..4],
            [
                (100, 16),
                (1124, 16 + 20 * 1024),
                (2147, after_small + 47 * 1000),
                (2213, after_small + 113 * 1000)
            ]
        );
        assert_eq!(index.seek_point(1200), Some((1124, 16 + 20 * 1024)));
        assert_eq!(index.seek_point(99), None);
        let bytes = index.encode();
        assert_eq!(SegmentIndex::decode(&bytes), Some(index));
        assert_eq!(SegmentIndex::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn uncovered_check_counts_absent_actors_as_zero() {
        let mut index = SegmentIndex::empty(0, 16);
        index.observe(event(5, 1, 0, 0).view(), 40);
        index.observe(event(6, 2, 0, 0).view(), 40);
        let vector: VersionVector = [(ActorId(1), 9)].into_iter().collect();
        // Actor 2 is absent from the vector: its event 6 is not covered.
        assert!(index.has_uncovered(&Cursor::from_vector(vector.clone())));
        let mut both = vector;
        both.observe(EventId::new(6, 2));
        assert!(!index.has_uncovered(&Cursor::from_vector(both)));
        assert!(!index.has_uncovered(&Cursor::after(EventId::new(6, 2))));
        assert!(index.has_uncovered(&Cursor::after(EventId::new(6, 1))));
    }
}
