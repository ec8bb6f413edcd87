//! Opening a file log: list the data directory, load the index files of the sealed segments,
//! and check the newest segment record by record, cutting a torn or corrupt tail.
//!
//! Start-up reads the small index files of sealed segments and scans only the newest segment,
//! so its time does not grow with the number of records in sealed segments. Sealed segments
//! are not checksummed at start-up: a read that meets a damaged record returns
//! `StorageError::Corrupt` naming the file and byte position (see docs/storage.md).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::config::{FsyncPolicy, StorageConfig};
use crate::event::VersionVector;

use super::cache::EventCache;
use super::file::{FileLog, OpenSegment};
use super::index::SegmentIndex;
use super::record::{decode, decode_header, RECORD_HEADER_SIZE};
use super::segment::{
    classify, create_segment, load_index, read_header, scan_segment, segment_path, write_index,
    FileKind,
};
use super::StorageError;

/// What opening the log found and did; the server logs it at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Records in the log after recovery.
    pub event_count: u64,
    pub segments: u64,
    /// Records (or pieces of records) cut from a torn or corrupt tail of the newest segment.
    pub truncated_records: u64,
    pub truncated_bytes: u64,
    /// Of the records cut, how many were whole and passed their checksum (they followed a
    /// damaged one: corruption of the medium rather than a torn write; logged as an error).
    pub truncated_valid_records: u64,
    /// Index files of sealed segments read, and rebuilt by scanning their segment.
    pub index_files_read: u64,
    pub indexes_rebuilt: u64,
    /// Records decoded at start-up (the newest segment, plus any segment whose index was
    /// rebuilt).
    pub records_scanned: u64,
    /// Files in the data directory that are not part of the log (left alone).
    pub stray_files: u64,
}

/// The start-up line: "recovered N events in S segments", then anything unusual.
impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered {} events in {} segments",
            self.event_count, self.segments
        )?;
        if self.truncated_bytes > 0 {
            write!(
                f,
                "; cut a torn tail of {} bytes ({} records or pieces)",
                self.truncated_bytes, self.truncated_records
            )?;
        }
        if self.indexes_rebuilt > 0 {
            write!(f, "; rebuilt {} index files", self.indexes_rebuilt)?;
        }
        if self.stray_files > 0 {
            write!(f, "; ignored {} stray files", self.stray_files)?;
        }
        Ok(())
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { context, source }
}

impl FileLog {
    /// Opens (or creates) the log in `config.data_dir`, recovering from a crash if needed.
    pub fn open(config: &StorageConfig) -> Result<(FileLog, RecoveryReport), StorageError> {
        let dir = config.data_dir.as_path();
        fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
        if config.fsync != FsyncPolicy::Always {
            log::warn!(
                "fsync policy {}: acknowledged events survive a crash of flo but a power loss \
                 can lose the ones not yet fdatasync'd",
                config.fsync
            );
        }
        let mut report = RecoveryReport::default();
        let firsts = list_segments(dir, &mut report)?;
        let (sealed, open) = match firsts.split_last() {
            None => (
                VecDeque::new(),
                new_open_segment(dir, 0, &VersionVector::new())?,
            ),
            Some((&newest, sealed_firsts)) => {
                let sealed = load_sealed(dir, sealed_firsts, newest, &mut report)?;
                let open = recover_open(dir, newest, &sealed, &mut report)?;
                (sealed, open)
            }
        };
        let log = assemble(config.clone(), sealed, open.0, open.1);
        report.segments = log.sealed.len() as u64 + 1;
        report.event_count = log.open.index.end_offset()
            - log
                .sealed
                .front()
                .map_or(log.open.index.first_offset, |s| s.first_offset);
        Ok((log, report))
    }
}

fn assemble(
    config: StorageConfig,
    sealed: VecDeque<SegmentIndex>,
    open: OpenSegment,
    vector_before: VersionVector,
) -> FileLog {
    let mut vector = vector_before;
    vector.merge(&open.index.vector);
    let cache = EventCache::new(config.cache_bytes_max, open.index.end_offset());
    FileLog {
        config,
        sealed,
        open,
        pending_bytes: Vec::new(),
        pending_events: Vec::new(),
        durable_vector: vector.clone(),
        vector,
        cache,
        reader: None,
        last_fsync_ms: None,
        written_since_fsync: false,
        fault: None,
        fsync_count: 0,
        preallocated_size: 0,
    }
}

fn new_open_segment(
    dir: &Path,
    first_offset: u64,
    vector_before: &VersionVector,
) -> Result<(OpenSegment, VersionVector), StorageError> {
    let path = segment_path(dir, first_offset);
    let (file, header_size) = create_segment(dir, first_offset, vector_before)
        .map_err(io_error(format!("create segment {}", path.display())))?;
    let index = SegmentIndex::empty(first_offset, header_size);
    Ok((OpenSegment { file, index }, vector_before.clone()))
}

/// The first offsets of the segment files, ascending. Leftover temporary index files are
/// removed; anything else unknown is reported and left alone.
fn list_segments(dir: &Path, report: &mut RecoveryReport) -> Result<Vec<u64>, StorageError> {
    let entries = fs::read_dir(dir).map_err(io_error(format!("list {}", dir.display())))?;
    let mut firsts = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!("list {}", dir.display())))?;
        let name = entry.file_name();
        match name.to_str().and_then(classify) {
            Some(FileKind::Segment(first)) => {
                firsts.insert(first);
            }
            Some(FileKind::Index(_)) => {}
            Some(FileKind::IndexTemp(_)) => {
                log::warn!("removing unfinished index file {}", entry.path().display());
                if let Err(error) = fs::remove_file(entry.path()) {
                    log::warn!("cannot remove {}: {error}", entry.path().display());
                }
            }
            None => {
                log::warn!(
                    "ignoring stray file {} in the data directory",
                    entry.path().display()
                );
                report.stray_files += 1;
            }
        }
    }
    Ok(firsts.into_iter().collect())
}

/// Loads the index of every sealed segment, rebuilding any that is missing, damaged or does
/// not match its segment file.
fn load_sealed(
    dir: &Path,
    firsts: &[u64],
    newest: u64,
    report: &mut RecoveryReport,
) -> Result<VecDeque<SegmentIndex>, StorageError> {
    let mut sealed = VecDeque::with_capacity(firsts.len());
    for (i, &first) in firsts.iter().enumerate() {
        let next_first = firsts.get(i + 1).copied().unwrap_or(newest);
        let path = segment_path(dir, first);
        let file_size = fs::metadata(&path)
            .map_err(io_error(format!("stat {}", path.display())))?
            .len();
        let loaded = load_index(dir, first)
            .filter(|index| index.file_size == file_size && index.end_offset() == next_first);
        let index = match loaded {
            Some(index) => {
                report.index_files_read += 1;
                index
            }
            None => {
                log::warn!(
                    "index of segment {} is missing or does not match; rebuilding it",
                    path.display()
                );
                let index = rebuild_index(dir, first, next_first, file_size)?;
                report.indexes_rebuilt += 1;
                report.records_scanned += index.record_count;
                index
            }
        };
        sealed.push_back(index);
    }
    Ok(sealed)
}

/// Rebuilds a sealed segment's index by reading it. A sealed segment must be whole: if it does
/// not decode to the end, or does not end where the next segment starts, opening fails with
/// `Corrupt` (an operator must decide; flo never drops acknowledged records by itself).
fn rebuild_index(
    dir: &Path,
    first: u64,
    next_first: u64,
    file_size: u64,
) -> Result<SegmentIndex, StorageError> {
    let path = segment_path(dir, first);
    let mut file = File::open(&path).map_err(io_error(format!("open {}", path.display())))?;
    let corrupt = |what: String| StorageError::Corrupt {
        context: format!("sealed segment {}: {what}", path.display()),
    };
    let header = read_header(&mut file).map_err(io_error(format!("read {}", path.display())))?;
    let Some((_, header_size)) = header else {
        return Err(corrupt("damaged segment header at byte 0".into()));
    };
    let scan = scan_segment(&path, first, header_size)
        .map_err(io_error(format!("read {}", path.display())))?;
    let index = scan.index;
    if let Some(error) = scan.error {
        return Err(corrupt(format!("{error} at byte {}", index.file_size)));
    }
    if index.end_offset() != next_first || index.file_size != file_size {
        return Err(corrupt(format!(
            "holds offsets {first}..{} but the next segment starts at {next_first}",
            index.end_offset()
        )));
    }
    if let Err(error) = write_index(dir, &index) {
        log::warn!(
            "cannot write the rebuilt index of {}: {error}",
            path.display()
        );
    }
    Ok(index)
}

/// Opens the newest segment, checks it record by record and cuts a torn or corrupt tail.
/// Returns it with the version vector of every record before it.
fn recover_open(
    dir: &Path,
    first: u64,
    sealed: &VecDeque<SegmentIndex>,
    report: &mut RecoveryReport,
) -> Result<(OpenSegment, VersionVector), StorageError> {
    let path = segment_path(dir, first);
    let context = |what: &str| format!("{what} {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error(context("open")))?;
    let file_size = file.metadata().map_err(io_error(context("stat")))?.len();
    let Some((vector_before, header_size)) =
        read_header(&mut file).map_err(io_error(context("read")))?
    else {
        // Records are written only after the header is fdatasync'd, so a damaged header means
        // the file was being created when flo stopped: it holds no acknowledged record.
        log::warn!(
            "segment {} has a torn header; recreating it",
            path.display()
        );
        report.truncated_bytes += file_size;
        let vector_before = vector_of_sealed(dir, sealed)?;
        return new_open_segment(dir, first, &vector_before);
    };
    let scan = scan_segment(&path, first, header_size).map_err(io_error(context("read")))?;
    let index = scan.index;
    report.records_scanned += index.record_count;
    if index.file_size < file_size {
        cut_tail(&mut file, &path, index.file_size, file_size, report)?;
    }
    Ok((OpenSegment { file, index }, vector_before))
}

/// The vector of every record in the sealed segments: the newest one's header vector merged
/// with its own records' vector.
fn vector_of_sealed(
    dir: &Path,
    sealed: &VecDeque<SegmentIndex>,
) -> Result<VersionVector, StorageError> {
    let Some(last) = sealed.back() else {
        return Ok(VersionVector::new());
    };
    let path = segment_path(dir, last.first_offset);
    let mut file = File::open(&path).map_err(io_error(format!("open {}", path.display())))?;
    let header = read_header(&mut file).map_err(io_error(format!("read {}", path.display())))?;
    let Some((mut vector, _)) = header else {
        return Err(StorageError::Corrupt {
            context: format!(
                "sealed segment {}: damaged segment header at byte 0",
                path.display()
            ),
        });
    };
    vector.merge(&last.vector);
    Ok(vector)
}

/// Cuts the newest segment at `valid_size`, the end of its last whole record, and logs what
/// was cut.
fn cut_tail(
    file: &mut File,
    path: &Path,
    valid_size: u64,
    file_size: u64,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let context = |what: &str| format!("{what} {}", path.display());
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(valid_size))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(io_error(context("read")))?;
    if tail.iter().all(|&byte| byte == 0) {
        // The hole the log extends the open segment with (`file::PREALLOCATE_BYTES`): no
        // record was ever there, so nothing is reported as cut.
        log::debug!(
            "segment {}: cutting {} bytes of preallocated zeros at byte {valid_size}",
            path.display(),
            tail.len()
        );
        file.set_len(valid_size)
            .map_err(io_error(context("truncate")))?;
        return file.sync_data().map_err(io_error(context("fdatasync")));
    }
    let (records, valid) = count_pieces(&tail);
    let bytes = file_size - valid_size;
    if valid > 0 {
        log::error!(
            "segment {}: {valid} whole records with valid checksums follow the damaged one at              byte {valid_size}; this looks like corruption of the medium, not a torn write, and              they are cut with it",
            path.display()
        );
    }
    log::warn!(
        "segment {}: cutting a torn or corrupt tail of {bytes} bytes ({records} records or \
         pieces of records) at byte {valid_size}",
        path.display()
    );
    file.set_len(valid_size)
        .map_err(io_error(context("truncate")))?;
    file.sync_data().map_err(io_error(context("fdatasync")))?;
    report.truncated_records += records;
    report.truncated_valid_records += valid;
    report.truncated_bytes += bytes;
    Ok(())
}

/// How many records the damaged tail seems to hold, following the length fields while they
/// are plausible (at least 1 for a non-empty tail), and how many of those pass their checksum.
/// Whole, valid records after a damaged one point to corruption of the medium rather than a
/// torn write.
fn count_pieces(tail: &[u8]) -> (u64, u64) {
    let (mut count, mut valid) = (0, 0);
    let mut position = 0usize;
    while position < tail.len() {
        count += 1;
        let rest = &tail[position..];
        if decode(rest).is_ok() {
            valid += 1;
        }
        let header = rest
            .get(..RECORD_HEADER_SIZE)
            .and_then(|h| <&[u8; RECORD_HEADER_SIZE]>::try_from(h).ok());
        match header.map(decode_header) {
            Some(Ok((body_size, _))) => position += RECORD_HEADER_SIZE + body_size,
            _ => break,
        }
    }
    (count, valid)
}
