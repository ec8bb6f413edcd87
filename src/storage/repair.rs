//! What start-up does with damage in the newest segment that it may not simply cut: finding
//! the records with valid checksums after a damaged spot, and `flo --repair`, which moves the
//! damaged part into a quarantine file beside the segment and keeps every record that
//! verifies. The rules are in docs/storage.md ("Recovery at start-up").

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use super::range_crc::RangeCrc;
use super::record::{decode, RECORD_BODY_SIZE_MAX, RECORD_HEADER_SIZE};
use super::segment::{fsync_dir, quarantine_path, segment_path};
use crate::event::EventId;

/// The body's fixed fields before `namespace_size` (ids and timestamp), see record.rs.
const NAMESPACE_SIZE_AT: usize = 8 + 2 + 8 + 2 + 8;

/// Whether start-up refuses damage it may not cut, or repairs it (`flo --repair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open (`StorageError::NeedsRepair`), changing nothing.
    Refuse,
    /// Move the damaged part to quarantine and keep every record that verifies.
    Repair,
}

/// The byte ranges of `bytes` that hold whole records with valid checksums, found by trying
/// every byte position (a damaged length field hides where the next record starts). Each
/// position costs a few field reads unless the record's lengths are consistent
/// (`body_size == 36 + namespace_size + data_size`); such a candidate's checksum comes from the
/// prefix checksums of `bytes` (`RangeCrc`) in constant time, not from its body, because an
/// event's data can make every eighth position a consistent candidate as long as half the
/// tail (attack round 11: a full checksum of each made a 6 MB torn event take 121 s of
/// start-up). Only a record whose checksum matches is decoded, and the search goes on after
/// it: linear in `bytes.len()` for any content.
///
/// `bytes` starts where a record starts (the damaged one), and so does the end of every record
/// found. A record at such a boundary whose length fields agree with each other is taken at
/// its word: the search goes on after the span its header claims (or stops, when the span runs
/// past the end of `bytes`), never inside it. That span holds the record's own event data,
/// which a client chooses: an event torn while being written whose data is a whole record
/// with a valid checksum made a torn tail look like damage followed by a good record, and
/// `flo --repair` kept the client's record as an event (attack round 13). A length field that
/// is itself damaged no longer agrees with the other two, and the search goes byte by byte.
pub fn find_valid_records(bytes: &[u8]) -> Vec<Range<usize>> {
    find_valid_records_counted(bytes, &mut 0)
}

/// `find_valid_records`, adding its work to `work`: one unit per position tried, per byte of
/// the prefix checksums (`RangeCrc::new`), per candidate's checksum (constant time) and per
/// byte of the records decoded. Linear: at most about four units per byte of `bytes`, where a
/// checksum over each candidate's body costs that body (quadratic, attack round 11).
fn find_valid_records_counted(bytes: &[u8], work: &mut u64) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut crcs: Option<RangeCrc> = None;
    let mut position = 0;
    let mut at_boundary = true;
    while position + RECORD_HEADER_SIZE <= bytes.len() {
        let rest = &bytes[position..];
        *work += 1;
        if lengths_consistent(rest) {
            let crcs = crcs.get_or_insert_with(|| {
                *work += bytes.len() as u64;
                RangeCrc::new(bytes)
            });
            *work += 1;
            if checksum_matches(bytes, crcs, position) {
                *work += claimed_size(rest).unwrap_or(0) as u64;
                if let Ok((_, size)) = decode(rest) {
                    found.push(position..position + size);
                    position += size;
                    at_boundary = true;
                    continue;
                }
            }
        }
        match claimed_size(rest) {
            Some(size) if at_boundary => position = position.saturating_add(size),
            _ => {
                position += 1;
                at_boundary = false;
            }
        }
    }
    found
}

/// The size (header and body) that the record at the start of `bytes` claims, when its length
/// fields agree with each other as far as they lie in `bytes`: a body no larger than
/// `RECORD_BODY_SIZE_MAX`, a namespace that fits in it and a data size that makes up the rest.
/// A record torn before its data size field claims a body that runs past the end of `bytes`
/// (the field lies inside the body), so only the first two are checked then.
fn claimed_size(bytes: &[u8]) -> Option<usize> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let body_size = u32_at(0)?;
    let fixed = NAMESPACE_SIZE_AT + 4 + 4;
    if body_size > RECORD_BODY_SIZE_MAX || body_size < fixed {
        return None;
    }
    let body = RECORD_HEADER_SIZE;
    let size = RECORD_HEADER_SIZE + body_size;
    let Some(namespace_size) = u32_at(body + NAMESPACE_SIZE_AT) else {
        return Some(size);
    };
    if namespace_size > body_size - fixed {
        return None;
    }
    match u32_at(body + NAMESPACE_SIZE_AT + 4 + namespace_size) {
        Some(data_size) => (fixed + namespace_size + data_size == body_size).then_some(size),
        None => Some(size),
    }
}

/// Whether the record at `bytes[at..]`, whose lengths are consistent (so its body lies within
/// `bytes`), has the checksum its header stores: over its four `body_size` bytes, then its body.
fn checksum_matches(bytes: &[u8], crcs: &RangeCrc, at: usize) -> bool {
    let header = &bytes[at..at + RECORD_HEADER_SIZE];
    let body_size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body_at = at + RECORD_HEADER_SIZE;
    let crc = crcs.append(
        bytes,
        crc32c::crc32c(&header[..4]),
        body_at..body_at + body_size,
    );
    crc == stored
}

/// Whether `bytes` starts with a record header and body whose three length fields agree and
/// fit in `bytes` (a cheap test before the checksum).
fn lengths_consistent(bytes: &[u8]) -> bool {
    claimed_size(bytes).is_some_and(|size| size <= bytes.len())
}

/// Reads `file` from `position` to its end.
pub fn read_from(file: &mut File, position: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(position))?;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `damaged` (the bytes of segment `first` from byte `position` on) into its
/// quarantine file, durably (file and directory fsync'd). This comes before the segment is
/// changed: a crash in between leaves both, and the next start (refused again, or repaired
/// again) loses nothing.
pub fn write_quarantine(dir: &Path, first: u64, position: u64, damaged: &[u8]) -> io::Result<()> {
    write_durably(dir, &quarantine_path(dir, first, position), damaged)
}

/// Writes `bytes` as the whole of the file at `path` (in `dir`), durably: the file and the
/// directory are fsync'd before this returns. Every quarantine copy is written this way.
pub fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fsync_dir(dir)
}

/// Cuts `segment` at `position` and writes the `kept` records (ranges of `damaged`) there, in
/// order, then fdatasyncs it.
pub fn keep_records(
    segment: &mut File,
    position: u64,
    damaged: &[u8],
    kept: &[Range<usize>],
) -> io::Result<()> {
    let mut records = Vec::new();
    for range in kept {
        records.extend_from_slice(&damaged[range.clone()]);
    }
    segment.set_len(position)?;
    segment.seek(SeekFrom::Start(position))?;
    segment.write_all(&records)?;
    segment.sync_all()
}

pub fn log_repair(dir: &Path, first: u64, position: u64, size: usize, kept: usize, around: &str) {
    log::warn!(
        "repair: moved {size} bytes of segment {} from byte {position} to {} and kept the \
         {kept} records with valid checksums found in them; {around}",
        segment_path(dir, first).display(),
        quarantine_path(dir, first, position).display(),
    );
}

/// The id of the record in `bytes[range]`, when it decodes.
pub fn record_id(bytes: &[u8], range: Option<&Range<usize>>) -> Option<EventId> {
    let (event, _) = decode(bytes.get(range?.clone())?).ok()?;
    Some(event.id)
}

/// Names a damaged range by the events around it, so an operator can find the place with the
/// client (`flo-client consume --from ID`): the last readable event before the damage and
/// the first readable one after it, or why one is not known.
pub fn describe_around(before: Result<EventId, &str>, after: Result<EventId, &str>) -> String {
    let name = |id: Result<EventId, &str>| match id {
        Ok(id) => format!("event {id}"),
        Err(why) => why.to_string(),
    };
    format!(
        "the last readable event before the damage is {}, the first readable after it is {}",
        name(before),
        name(after)
    )
}

/// What `describe_around` says of a side with no readable event in the segment.
pub const NONE_IN_SEGMENT: &str = "none in this segment";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::encode;
    use crate::storage::record::tests::event;

    #[test]
    fn valid_records_are_found_after_garbage_and_inside_nothing_else() {
        let mut bytes = vec![0xA5; 37];
        let mut starts = Vec::new();
        for counter in 1..=5 {
            starts.push(bytes.len());
            encode(
                &event(counter, 1, counter, counter as usize * 7),
                &mut bytes,
            );
        }
        // Damage the second record's body: it is skipped, its neighbours are found.
        bytes[starts[1] + 12] ^= 0x04;
        bytes.extend_from_slice(&[0; 100]);
        let found = find_valid_records(&bytes);
        let found_starts: Vec<usize> = found.iter().map(|r| r.start).collect();
        assert_eq!(
            found_starts,
            vec![starts[0], starts[2], starts[3], starts[4]]
        );
        assert!(find_valid_records(&[0; 4096]).is_empty());
        assert!(find_valid_records(&[0xFF; 4096]).is_empty());
    }

    /// The checksums from prefix checksums find the same records as checksums over the bodies:
    /// a record of over 4 MiB between crafted bytes (every eighth position a candidate whose
    /// lengths agree, as in tests/hostile/storage.rs) is found, and no candidate is; the
    /// search costs at most four units of work a byte (a checksum over each candidate's body
    /// cost about 4,800 a byte here: quadratic, attack round 11).
    #[test]
    fn a_large_record_is_found_among_crafted_candidates() {
        let (a, b) = (36 + 2 * 100_004u32, 100_004u32);
        let crafted: Vec<u8> = [a.to_le_bytes(), b.to_le_bytes()]
            .concat()
            .into_iter()
            .cycle()
            .take(1 << 20)
            .collect();
        let mut bytes = crafted.clone();
        let start = bytes.len() + 3;
        bytes.extend_from_slice(&[7; 3]);
        encode(&event(9, 1, 9, 5 << 20), &mut bytes);
        let end = bytes.len();
        bytes.extend_from_slice(&crafted);
        let mut work = 0;
        assert_eq!(
            find_valid_records_counted(&bytes, &mut work),
            vec![start..end]
        );
        let size = bytes.len() as u64;
        assert!(
            work <= 4 * size,
            "{work} units of work for {size} bytes: not linear"
        );
    }
}
