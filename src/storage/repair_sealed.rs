//! `flo --repair` for sealed segments. A sealed segment is never changed by a plain start, and
//! its records' offsets are fixed (the next segment's file name, consumer groups' stored
//! offsets), so a repair cannot drop records the way it does in the newest segment. Instead,
//! after copying the whole damaged file to quarantine, it rewrites the segment with every
//! record that passes its checksum at its original offset and a *hole* (`record::hole`) at
//! each offset it could not read back. The rules are in docs/storage.md ("Recovery at
//! start-up").

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

use super::record::{decode, encode, hole};
use super::recovery::RecoveryReport;
use super::repair::{
    describe_around, find_valid_records, record_id, write_quarantine, NONE_IN_SEGMENT,
};
use super::segment::{
    fsync_dir, index_path, load_index, namespace_index_path, quarantine_path, read_header,
    segment_path, segment_temp_path,
};
use super::StorageError;

/// Checks every record of every sealed segment (`firsts` lists all segments, the newest last)
/// and repairs each one that does not read back whole.
pub(super) fn repair_sealed_segments(
    dir: &Path,
    firsts: &[u64],
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    for pair in firsts.windows(2) {
        repair_sealed(dir, pair[0], pair[1], report)?;
    }
    Ok(())
}

/// One record kept by a repair: its offset and its bytes in the damaged file.
struct Kept {
    offset: u64,
    bytes: Range<usize>,
}

fn repair_sealed(
    dir: &Path,
    first: u64,
    next_first: u64,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let path = segment_path(dir, first);
    let io_error = |what: &str| {
        let context = format!("{what} {}", path.display());
        move |source| StorageError::Io { context, source }
    };
    let corrupt = |what: String| StorageError::Corrupt {
        context: format!(
            "sealed segment {}: {what}; --repair cannot rebuild it: restore the file from a \
             replica or backup",
            path.display()
        ),
    };
    let bytes = fs::read(&path).map_err(io_error("read"))?;
    let mut file = File::open(&path).map_err(io_error("open"))?;
    let header = read_header(&mut file).map_err(io_error("read"))?;
    let Some((_, header_size)) = header else {
        return Err(corrupt("damaged segment header at byte 0".into()));
    };
    let header_size = header_size as usize;
    let Some(total) = next_first.checked_sub(first) else {
        return Err(corrupt(format!("the next segment starts at {next_first}")));
    };
    // The records that read back in order from the first one.
    let mut kept = Vec::new();
    let mut position = header_size;
    while let Ok((_, size)) = decode(&bytes[position..]) {
        kept.push(Kept {
            offset: first + kept.len() as u64,
            bytes: position..position + size,
        });
        position += size;
    }
    if position == bytes.len() && kept.len() as u64 == total {
        return Ok(());
    }
    if kept.len() as u64 > total {
        return Err(corrupt(format!(
            "holds more records than the offsets {first}..{next_first} its neighbours leave"
        )));
    }
    let damaged_at = position;
    let found: Vec<Range<usize>> = find_valid_records(&bytes[damaged_at..])
        .into_iter()
        .map(|r| r.start + damaged_at..r.end + damaged_at)
        .collect();
    let index = load_index(dir, first)
        .filter(|index| index.file_size == bytes.len() as u64 && index.end_offset() == next_first);
    let anchors: BTreeMap<u64, u64> = index
        .iter()
        .flat_map(|index| index.sparse.iter().map(|&(offset, at)| (at, offset)))
        .collect();
    let found_kept = place(
        &found,
        &anchors,
        bytes.len(),
        first + kept.len() as u64,
        next_first,
    );
    let repaired = found_kept.len() as u64;
    kept.extend(found_kept);
    let lost = total - kept.len() as u64;
    let (lost_from, lost_to) = lost_span(&kept, first, next_first);
    // The kept records just before and just after the lost span (kept is in offset order).
    let before = kept.iter().rev().find(|k| k.offset < lost_from);
    let after = kept.iter().find(|k| k.offset >= lost_to);
    let around = describe_around(
        record_id(&bytes, before.map(|k| &k.bytes)).ok_or(NONE_IN_SEGMENT),
        record_id(&bytes, after.map(|k| &k.bytes)).ok_or(NONE_IN_SEGMENT),
    );
    let kept_bytes: usize = kept.iter().map(|k| k.bytes.len()).sum();
    let lost_bytes = bytes.len() - header_size - kept_bytes;

    // The whole file to quarantine, durably, before the segment changes.
    write_quarantine(dir, first, damaged_at as u64, &bytes).map_err(io_error("quarantine"))?;
    let content = rewrite(&bytes[..header_size], &bytes, &kept, first, next_first);
    replace_segment(dir, first, &content).map_err(io_error("rewrite"))?;
    log::warn!(
        "repair: sealed segment {} was damaged at byte {damaged_at}: copied whole to {}; \
         kept {} of its {total} records at their offsets, lost {lost} records ({lost_bytes} \
         bytes) between offsets {lost_from}..{lost_to} of this node's log, each replaced by a \
         hole so that later offsets stay; {around}",
        path.display(),
        quarantine_path(dir, first, damaged_at as u64).display(),
        kept.len(),
    );
    report.quarantined_bytes += bytes.len() as u64;
    report.repaired_records += repaired;
    report.lost_records += lost;
    Ok(())
}

/// Gives the records found after the damage their offsets, from `next_free` on and below
/// `end`. An offset is known for a record at a byte position the segment's old sparse index
/// lists (`anchors`), for a record ending at the end of the file (the last offset), and for a
/// record adjacent to one whose offset is known. A record with no known offset takes the
/// lowest free one that leaves room for the records after it; a record whose offset does not
/// fit (a false find inside another record's data) is left out (it stays in quarantine).
fn place(
    found: &[Range<usize>],
    anchors: &BTreeMap<u64, u64>,
    file_size: usize,
    next_free: u64,
    end: u64,
) -> Vec<Kept> {
    let count = found.len();
    let mut known: Vec<Option<u64>> = found
        .iter()
        .map(|r| anchors.get(&(r.start as u64)).copied())
        .collect();
    if let Some(last) = found.last() {
        if last.end == file_size && known[count - 1].is_none() {
            known[count - 1] = end.checked_sub(1);
        }
    }
    for i in (0..count.saturating_sub(1)).rev() {
        if known[i].is_none() && found[i].end == found[i + 1].start {
            known[i] = known[i + 1].and_then(|o| o.checked_sub(1));
        }
    }
    for i in 1..count {
        if known[i].is_none() && found[i - 1].end == found[i].start {
            known[i] = known[i - 1].map(|o| o + 1);
        }
    }
    // The highest offset each record may take: below the next known one.
    let mut upper = vec![end; count];
    let mut bound = end;
    for i in (0..count).rev() {
        upper[i] = bound;
        if let Some(offset) = known[i] {
            bound = bound.min(offset);
        } else {
            bound = bound.saturating_sub(1);
        }
    }
    let mut next_free = next_free;
    let mut kept = Vec::new();
    for (i, range) in found.iter().enumerate() {
        let offset = known[i].unwrap_or(next_free);
        if offset >= next_free && offset < upper[i] {
            kept.push(Kept {
                offset,
                bytes: range.clone(),
            });
            next_free = offset + 1;
        }
    }
    kept
}

/// The lowest and one past the highest offset of `first..end` that no kept record holds.
fn lost_span(kept: &[Kept], first: u64, end: u64) -> (u64, u64) {
    let mut held = kept.iter().map(|k| k.offset).peekable();
    let mut lowest = None;
    let mut highest = first;
    for offset in first..end {
        if held.peek() == Some(&offset) {
            held.next();
            continue;
        }
        lowest.get_or_insert(offset);
        highest = offset + 1;
    }
    (lowest.unwrap_or(end), highest.max(lowest.unwrap_or(end)))
}

/// The segment's new content: its header, then for each offset its kept record or a hole.
fn rewrite(header: &[u8], bytes: &[u8], kept: &[Kept], first: u64, end: u64) -> Vec<u8> {
    let mut content = header.to_vec();
    let mut kept = kept.iter().peekable();
    let hole = hole();
    for offset in first..end {
        match kept.next_if(|k| k.offset == offset) {
            Some(record) => content.extend_from_slice(&bytes[record.bytes.clone()]),
            None => encode(&hole, &mut content),
        }
    }
    content
}

/// Writes `content` to a temporary file, fdatasyncs it and renames it over the segment, then
/// removes the segment's index files (start-up rebuilds them from the new content) and
/// fsyncs the directory. A crash leaves the old segment or the new one whole (and the
/// quarantine copy); a leftover temporary file is removed at the next start.
fn replace_segment(dir: &Path, first: u64, content: &[u8]) -> io::Result<()> {
    let temp = segment_temp_path(dir, first);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&temp, segment_path(dir, first))?;
    for stale in [index_path(dir, first), namespace_index_path(dir, first)] {
        match fs::remove_file(stale) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    fsync_dir(dir)
}
