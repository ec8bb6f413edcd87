//! Opening a file log: list the data directory, load the index files of the sealed segments,
//! and check the newest segment record by record, cutting a torn or corrupt tail.
//!
//! Start-up reads the small index files of sealed segments and scans only the newest segment,
//! so its time does not grow with the number of records in sealed segments. Sealed segments
//! are not checksummed at start-up: a read that meets a damaged record returns
//! `StorageError::Corrupt` naming the file and byte position (see docs/storage.md).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use crate::config::{FsyncPolicy, StorageConfig};
use crate::event::VersionVector;

use super::cache::EventCache;
use super::fence_preload::FencePreload;
use super::file::{FileLog, OpenSegment, SealedNamespaces};
use super::index::SegmentIndex;
use super::lease;
use super::lock::DirLock;
use super::members::{self, MemberRecord};
use super::namespace::{BuildBuffers, NamespaceHeader, SegmentNames};
use super::produced::ProducedJournal;
use super::purge::{self, HideRules, PurgedNewest};
use super::record::{decode_header, RECORD_HEADER_SIZE};
use super::repair::{
    describe_around, find_valid_records, keep_records, log_repair, read_from, record_id,
    write_quarantine, RecoveryMode, NONE_IN_SEGMENT,
};
use super::repair_sealed::repair_sealed_segments;
use super::segment::{
    classify, create_segment, encode_header, fsync_dir, load_index, load_namespace_header,
    next_segment_path, quarantine_path, read_header, scan_segment, segment_path, write_index,
    write_namespace_index, FileKind,
};
use super::{io_error, StorageError};

/// What opening the log found and did; the server logs it at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Records in the log after recovery.
    pub event_count: u64,
    /// Segment files in the log after recovery.
    pub segments: u64,
    /// Records (or pieces of records) cut from a torn tail of the newest segment. A torn tail
    /// holds no record with a valid checksum; anything else is refused or repaired.
    pub truncated_records: u64,
    /// Bytes cut from that torn tail.
    pub truncated_bytes: u64,
    /// Bytes `--repair` moved into quarantine files, and the records with valid checksums it
    /// found among them and kept in the log.
    pub quarantined_bytes: u64,
    /// Records with valid checksums found in the quarantined bytes and kept.
    pub repaired_records: u64,
    /// Records of sealed segments that `--repair` could not read back and replaced by holes
    /// (their bytes are in the quarantine copy of the segment).
    pub lost_records: u64,
    /// Index files of sealed segments read, and rebuilt by scanning their segment.
    pub index_files_read: u64,
    /// Index files that were missing or damaged and were rebuilt.
    pub indexes_rebuilt: u64,
    /// Namespace index files of sealed segments rebuilt by scanning their segment (missing,
    /// or not matching their segment; see docs/storage.md).
    pub namespace_indexes_rebuilt: u64,
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
        if self.quarantined_bytes > 0 {
            write!(
                f,
                "; repair quarantined {} damaged bytes and kept {} records found in them",
                self.quarantined_bytes, self.repaired_records
            )?;
        }
        if self.lost_records > 0 {
            write!(
                f,
                "; repair replaced {} unreadable records of sealed segments by holes",
                self.lost_records
            )?;
        }
        if self.indexes_rebuilt > 0 {
            write!(f, "; rebuilt {} index files", self.indexes_rebuilt)?;
        }
        if self.namespace_indexes_rebuilt > 0 {
            write!(
                f,
                "; rebuilt {} namespace index files",
                self.namespace_indexes_rebuilt
            )?;
        }
        if self.stray_files > 0 {
            write!(f, "; ignored {} stray files", self.stray_files)?;
        }
        Ok(())
    }
}

impl FileLog {
    /// Opens (or creates) the log in `config.data_dir`, recovering from a crash if needed: a
    /// torn tail is cut; damage that is not a torn tail fails with `NeedsRepair` and changes
    /// nothing. The data directory stays locked while the log exists (`Locked` if another
    /// process holds it).
    pub fn open(config: &StorageConfig) -> Result<(FileLog, RecoveryReport), StorageError> {
        FileLog::open_with(config, RecoveryMode::Refuse)
    }

    /// Like `open`, but damage in the newest segment that `open` refuses is repaired (`flo
    /// --repair`): the damaged part is moved to a quarantine file beside the segment and every
    /// record in it that passes its checksum is kept.
    pub fn open_repairing(
        config: &StorageConfig,
    ) -> Result<(FileLog, RecoveryReport), StorageError> {
        FileLog::open_with(config, RecoveryMode::Repair)
    }

    fn open_with(
        config: &StorageConfig,
        mode: RecoveryMode,
    ) -> Result<(FileLog, RecoveryReport), StorageError> {
        let dir = config.data_dir.as_path();
        fs::create_dir_all(dir).map_err(|source| {
            // "create /dev/null: File exists" did not say what was wrong (walkthrough,
            // session 9): the path names a file.
            let what = match dir.exists() && !dir.is_dir() {
                true => " (it exists and is not a directory)",
                false => "",
            };
            io_error(format!("create {}{what}", dir.display()))(source)
        })?;
        let lock = DirLock::acquire(dir)?;
        if config.fsync != FsyncPolicy::Always {
            log::warn!(
                "fsync policy {}: acknowledged events survive a crash of flo but a power loss \
                 can lose the ones not yet synced",
                config.fsync
            );
        }
        let mut report = RecoveryReport::default();
        let mut firsts = list_segments(dir, &mut report)?;
        finish_interrupted_seal(dir, &mut firsts, &mut report)?;
        let mut preload = None;
        let (sealed, open) = match firsts.split_last() {
            None => (
                (VecDeque::new(), BTreeMap::new()),
                new_open_segment(dir, 0, &VersionVector::new())?,
            ),
            Some((&newest, sealed_firsts)) => {
                if mode == RecoveryMode::Repair {
                    repair_sealed_segments(dir, &firsts, &mut report)?;
                }
                let indexed = config.namespace_index;
                let sealed = load_sealed(dir, sealed_firsts, newest, indexed, &mut report)?;
                // Read while the open segment is recovered below (`fence_preload.rs`).
                let headers: Vec<_> = sealed.1.iter().map(|(&f, &h)| (f, h)).collect();
                let fences_max = config.namespace_fences_bytes_max;
                preload = FencePreload::start(dir, &headers, fences_max);
                let open = recover_open(dir, newest, &sealed.0, mode, &mut report)?;
                (sealed, open)
            }
        };
        let counter_lease = read_lease(dir, mode)?;
        let stored_members = read_members(dir, mode)?;
        let (journal, produced) = ProducedJournal::open(dir)?;
        let mut log = assemble(config.clone(), lock, sealed, open.0, open.1, journal)?;
        log.counter_lease = counter_lease;
        log.stored_members = stored_members;
        log.fence_preload = preload;
        log.hide = Arc::new(load_hide_rules(dir, config)?);
        // A file written under a larger --max-purged-namespaces is loaded whole (up to the
        // largest namespaces): a restart never forgets a purged namespace's newest id.
        let names_max = config.purged_namespaces_max.max(1 << 20);
        let size_max = PurgedNewest::file_size_max(names_max, usize::from(u16::MAX));
        log.purged_newest = PurgedNewest::read(dir, size_max)?;
        // A record whose events did not survive (written, then the events were lost) is
        // dropped: a retry of its produce must be stored again.
        let vector = log.durable_vector.clone();
        log.produced_loaded = produced
            .into_iter()
            .filter(|record| record.stored_in(&vector))
            .collect();
        report.segments = log.sealed.len() as u64 + 1;
        report.event_count = log.open.index.end_offset()
            - log
                .sealed
                .front()
                .map_or(log.open.index.first_offset, |s| s.first_offset);
        Ok((log, report))
    }
}

/// The purges recorded in `dir` and the configured per-namespace retention rules.
fn load_hide_rules(dir: &Path, config: &StorageConfig) -> Result<HideRules, StorageError> {
    let size_max = purge::file_size_max(config.purge_rules_max, usize::from(u16::MAX));
    let mut hide = HideRules::default();
    hide.set_retention_rules(&config.namespace_retention);
    // A set written under a larger --max-purge-rules is loaded whole: purges are never
    // dropped by a restart.
    let (loaded, _, _) = purge::merge_all(
        &hide,
        &purge::read(dir, size_max)?,
        purge::PurgeLimits::NONE,
    );
    Ok(loaded)
}

/// The counter lease of `dir` (0 when it has none). A damaged lease file stops the start,
/// except under `--repair`, which removes it and goes on with the counters in the log.
fn read_lease(dir: &Path, mode: RecoveryMode) -> Result<u64, StorageError> {
    match (lease::read(dir), mode) {
        (Ok(lease), _) => Ok(lease.unwrap_or(0)),
        (Err(StorageError::Corrupt { context }), RecoveryMode::Repair) => {
            log::warn!(
                "{context}; --repair removes it: counters continue after the highest in the \
                 log, and ids of acknowledged events lost from the log may be given again"
            );
            lease::remove(dir)?;
            Ok(0)
        }
        (Err(error), _) => Err(error),
    }
}

/// The member list of `dir` (empty when it has none). A damaged file stops the start,
/// except under `--repair`, which removes it: members are learned again from `--peer-addr`
/// and the peers' member lists, removals from the peers that hold them.
fn read_members(dir: &Path, mode: RecoveryMode) -> Result<Vec<MemberRecord>, StorageError> {
    match (members::read(dir), mode) {
        (Ok(records), _) => Ok(records),
        (Err(StorageError::Corrupt { context }), RecoveryMode::Repair) => {
            log::warn!(
                "{context}; --repair removes it: members are learned again from --peer-addr \
                 and the peers, removals from the peers that hold them"
            );
            members::remove(dir)?;
            Ok(Vec::new())
        }
        (Err(error), _) => Err(error),
    }
}

fn assemble(
    config: StorageConfig,
    lock: DirLock,
    (sealed, namespace_headers): (VecDeque<SegmentIndex>, BTreeMap<u64, NamespaceHeader>),
    mut open: OpenSegment,
    vector_before: VersionVector,
    produced: ProducedJournal,
) -> Result<FileLog, StorageError> {
    if !config.namespace_index {
        open.namespaces = SegmentNames::empty(open.index.first_offset);
    }
    let sealed_namespaces = namespace_headers
        .into_iter()
        .map(|(first, header)| (first, SealedNamespaces::Written(header)))
        .collect();
    let mut vector = vector_before;
    vector.merge(&open.index.vector);
    let cache =
        EventCache::new(config.cache_bytes_max, open.index.end_offset()).map_err(|error| {
            StorageError::Io {
                context: format!(
                    "reserving {} bytes of memory for the event cache (--max-cache-memory)",
                    config.cache_bytes_max
                ),
                source: std::io::Error::new(std::io::ErrorKind::OutOfMemory, error),
            }
        })?;
    let handles = super::handles::Handles::new(config.open_files_max);
    Ok(FileLog {
        config,
        sealed,
        open,
        pending_bytes: Vec::new(),
        pending_records: Vec::new(),
        durable_vector: vector.clone(),
        vector,
        cache,
        reader: None,
        last_fsync_ms: None,
        written_since_fsync: false,
        fault: None,
        fsync_count: 0,
        activity: Default::default(),
        caller_fsync_count: 0,
        // Not known: the first seal has the helper fdatasync the segment first.
        synced_size: 0,
        preallocated_size: 0,
        zeroed_size: 0,
        counter_lease: 0,
        stored_members: Vec::new(),
        sealed_namespaces,
        name_filters: BTreeMap::new(),
        name_filter_bytes: 0,
        name_fences: BTreeMap::new(),
        name_fence_bytes: 0,
        fence_preload: None,
        namespace_build: None,
        namespace_build_buffers: BuildBuffers::default(),
        spare_names: None,
        namespace_rebuilds: 0,
        handles,
        places: std::collections::HashMap::new(),
        trace: Default::default(),
        produced,
        produced_loaded: Vec::new(),
        hide: Arc::default(),
        reclaim_next: 0,
        purged_newest: PurgedNewest::default(),
        reclaim_newest: PurgedNewest::default(),
        reclaim_full_logged: false,
        syncer: Default::default(),
        prepared: None,
        prepare_in_flight: false,
        sealing: None,
        seal_failed: false,
        lease_in_flight: false,
        extend_in_flight: None,
        caller_extend_count: 0,
        _lock: lock,
    })
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
    let namespaces = SegmentNames::empty(first_offset);
    let open = OpenSegment {
        file,
        index,
        namespaces,
    };
    Ok((open, vector_before.clone()))
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
            Some(
                FileKind::Index(_)
                | FileKind::NamespaceIndex(_)
                | FileKind::TraceIndex(_)
                | FileKind::Lock
                // Named or removed by `finish_interrupted_seal`, after this listing.
                | FileKind::NextSegment
                | FileKind::CounterLease
                | FileKind::GroupJournal
                | FileKind::ProducedJournal
                | FileKind::Members
                | FileKind::Purges
                | FileKind::PurgedNewest,
            ) => {}
            Some(FileKind::Quarantine) => {
                log::info!(
                    "quarantine file {} (damaged bytes moved out by --repair) is left alone",
                    entry.path().display()
                );
            }
            Some(
                FileKind::IndexTemp(_)
                | FileKind::SegmentTemp(_)
                | FileKind::NamespaceIndexTemp(_)
                | FileKind::TraceIndexTemp(_)
                | FileKind::CounterLeaseTemp
                | FileKind::ProducedJournalTemp
                | FileKind::MembersTemp
                | FileKind::PurgesTemp
                | FileKind::PurgedNewestTemp,
            ) => {
                log::warn!("removing unfinished file {}", entry.path().display());
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

/// Finishes a seal that was in flight on the storage helper thread when flo stopped, or
/// removes a `next.log` that holds nothing durable. While a seal is in flight the next
/// segment's records are written to `next.log` (`FileLog::roll_to_prepared`), and the seal
/// names it only after the sealed segment, the newest named one here, is whole on disk. After
/// a crash of flo (kill -9) the sealed segment holds every record (perhaps followed by the
/// zeros of its preallocated hole) and `next.log`'s header is the vector of every record
/// before it: the seal is finished here (cut, fdatasync both, name, directory fsync) and
/// `next.log` becomes the newest segment, so no acknowledged record is lost. Anything else
/// (an empty `next.log` created ahead of a seal; after a power loss, a sealed segment missing
/// records or a `next.log` whose header does not match) means the seal did not complete, so
/// no fdatasync of `next.log` ran (the helper's jobs run in order): it is removed, and the
/// sealed segment is recovered as the newest, as before the seal began.
fn finish_interrupted_seal(
    dir: &Path,
    firsts: &mut Vec<u64>,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let next_path = next_segment_path(dir);
    let context = |what: &str, path: &Path| format!("{what} {}", path.display());
    let mut next = match OpenOptions::new().read(true).write(true).open(&next_path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(context("open", &next_path))(error)),
    };
    let next_size = (next.metadata())
        .map_err(io_error(context("stat", &next_path)))?
        .len();
    let next_header = read_header(&mut next).map_err(io_error(context("read", &next_path)))?;
    let finished = match (next_header, firsts.last()) {
        (Some((next_vector, _)), Some(&newest)) => seal_if_whole(dir, newest, &next, &next_vector)?,
        _ => None,
    };
    if let Some(next_first) = finished {
        let named = segment_path(dir, next_first);
        fs::rename(&next_path, &named).map_err(io_error(context("rename", &next_path)))?;
        fsync_dir(dir).map_err(io_error(context("fsync", dir)))?;
        log::warn!(
            "finished the seal that was in flight when flo stopped: {} is now {}",
            next_path.display(),
            named.display()
        );
        firsts.push(next_first);
        return Ok(());
    }
    if next_size > 0 {
        log::warn!(
            "removing {} ({next_size} bytes): the seal before it did not complete, so none \
             of it was fdatasynced",
            next_path.display()
        );
        report.truncated_bytes += next_size;
    }
    fs::remove_file(&next_path).map_err(io_error(context("remove", &next_path)))
}

/// Finishes the seal of segment `first` if it holds every record `next.log`'s header
/// (`next_vector`) says came before it, followed by nothing but zeros: cuts it there,
/// fdatasyncs it and `next`. Returns the next segment's first offset, or `None` when the seal
/// cannot be finished.
fn seal_if_whole(
    dir: &Path,
    first: u64,
    next: &File,
    next_vector: &VersionVector,
) -> Result<Option<u64>, StorageError> {
    let path = segment_path(dir, first);
    let context = |what: &str| format!("{what} {}", path.display());
    let mut file = (OpenOptions::new().read(true).write(true).open(&path))
        .map_err(io_error(context("open")))?;
    let Some((mut vector, header_size)) =
        read_header(&mut file).map_err(io_error(context("read")))?
    else {
        return Ok(None);
    };
    let scan = scan_segment(&path, first, header_size).map_err(io_error(context("read")))?;
    let tail = read_from(&mut file, scan.index.file_size).map_err(io_error(context("read")))?;
    vector.merge(&scan.index.vector);
    if tail.iter().any(|&byte| byte != 0) || vector != *next_vector {
        return Ok(None);
    }
    file.set_len(scan.index.file_size)
        .map_err(io_error(context("truncate")))?;
    file.sync_data().map_err(io_error(context("fdatasync")))?;
    let next_path = next_segment_path(dir);
    (next.sync_data()).map_err(io_error(format!("fdatasync {}", next_path.display())))?;
    Ok(Some(scan.index.end_offset()))
}

/// Loads the index of every sealed segment, rebuilding any that is missing, damaged or does
/// not match its segment file; with `indexed`, also checks the header of each namespace index
/// file (rebuilding the file when it fails) and returns those headers.
fn load_sealed(
    dir: &Path,
    firsts: &[u64],
    newest: u64,
    indexed: bool,
    report: &mut RecoveryReport,
) -> Result<(VecDeque<SegmentIndex>, BTreeMap<u64, NamespaceHeader>), StorageError> {
    let mut sealed = VecDeque::with_capacity(firsts.len());
    let mut headers = BTreeMap::new();
    for (i, &first) in firsts.iter().enumerate() {
        let next_first = firsts.get(i + 1).copied().unwrap_or(newest);
        let path = segment_path(dir, first);
        let file_size = fs::metadata(&path)
            .map_err(io_error(format!("stat {}", path.display())))?
            .len();
        let loaded = load_index(dir, first)
            .filter(|index| index.file_size == file_size && index.end_offset() == next_first);
        let Some(index) = loaded else {
            log::warn!(
                "index of segment {} is missing or does not match; rebuilding it",
                path.display()
            );
            // Rebuilds the namespace index too, from the same read.
            let (index, header) = rebuild_index(dir, first, next_first, file_size)?;
            report.indexes_rebuilt += 1;
            report.records_scanned += index.record_count;
            headers.extend(header.map(|header| (first, header)));
            sealed.push_back(index);
            continue;
        };
        report.index_files_read += 1;
        if !indexed {
            sealed.push_back(index);
            continue;
        }
        // Only the first 64 bytes and the length: each part's checksum is checked when a
        // query reads it.
        let header = match load_namespace_header(dir, &index) {
            Some(header) => Some(header),
            None => {
                log::warn!(
                    "namespace index of segment {} is missing or does not match; rebuilding it",
                    path.display()
                );
                report.namespace_indexes_rebuilt += 1;
                report.records_scanned += index.record_count;
                rebuild_index(dir, first, next_first, file_size)?.1
            }
        };
        headers.extend(header.map(|header| (first, header)));
        sealed.push_back(index);
    }
    Ok((sealed, headers))
}

/// Rebuilds a sealed segment's index by reading it. A sealed segment must be whole: if it does
/// not decode to the end, or does not end where the next segment starts, opening fails with
/// `Corrupt` (an operator must decide; flo never drops acknowledged records by itself).
fn rebuild_index(
    dir: &Path,
    first: u64,
    next_first: u64,
    file_size: u64,
) -> Result<(SegmentIndex, Option<NamespaceHeader>), StorageError> {
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
    let buffers = &mut BuildBuffers::default();
    let header = match write_namespace_index(dir, &scan.namespaces, index.identity(), buffers) {
        Ok(header) => Some(header),
        Err(error) => {
            log::warn!(
                "cannot write the rebuilt namespace index of {}: {error}",
                path.display()
            );
            None
        }
    };
    Ok((index, header))
}

/// Opens the newest segment and checks it record by record. A torn tail (no record with a
/// valid checksum after the first bad byte) or a header torn while the segment was being
/// created is cut; other damage is refused (`NeedsRepair`) or, in `Repair` mode, moved to a
/// quarantine file. Returns the segment with the version vector of every record before it.
fn recover_open(
    dir: &Path,
    first: u64,
    sealed: &VecDeque<SegmentIndex>,
    mode: RecoveryMode,
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
    let header = read_header(&mut file).map_err(io_error(context("read")))?;
    let (vector_before, header_size) = match header {
        Some(header) => header,
        None => return recover_damaged_header(dir, first, file, sealed, mode, report),
    };
    let mut scan = scan_segment(&path, first, header_size).map_err(io_error(context("read")))?;
    if scan.index.file_size < file_size {
        let position = scan.index.file_size;
        let tail = read_from(&mut file, position).map_err(io_error(context("read")))?;
        let kept = find_valid_records(&tail);
        if kept.is_empty() {
            cut_tail(&mut file, &path, position, &tail, report)?;
        } else {
            let error = scan
                .error
                .map_or("unreadable record".to_string(), |e| e.to_string());
            let around = describe_around(
                scan.last_id.ok_or(NONE_IN_SEGMENT),
                record_id(&tail, kept.first()).ok_or(NONE_IN_SEGMENT),
            );
            if mode == RecoveryMode::Refuse {
                let problem = format!(
                    "{error}, and {} records with valid checksums follow it (the first at byte \
                     {}), so this is not a torn write; {around}",
                    kept.len(),
                    position + kept[0].start as u64
                );
                return Err(needs_repair(dir, first, position, problem));
            }
            write_quarantine(dir, first, position, &tail)
                .map_err(io_error(context("quarantine")))?;
            keep_records(&mut file, position, &tail, &kept).map_err(io_error(context("repair")))?;
            log_repair(dir, first, position, tail.len(), kept.len(), &around);
            report.quarantined_bytes += tail.len() as u64;
            report.repaired_records += kept.len() as u64;
            scan = scan_segment(&path, first, header_size).map_err(io_error(context("read")))?;
        }
    }
    report.records_scanned += scan.index.record_count;
    Ok((
        OpenSegment {
            file,
            index: scan.index,
            namespaces: scan.namespaces,
        },
        vector_before,
    ))
}

/// The newest segment's header does not decode. Its content is known (the vector of every
/// earlier record), so a header torn while the file was created is told apart from a damaged
/// header of a segment that holds records.
fn recover_damaged_header(
    dir: &Path,
    first: u64,
    mut file: File,
    sealed: &VecDeque<SegmentIndex>,
    mode: RecoveryMode,
    report: &mut RecoveryReport,
) -> Result<(OpenSegment, VersionVector), StorageError> {
    let path = segment_path(dir, first);
    let context = |what: &str| format!("{what} {}", path.display());
    let file_size = file.metadata().map_err(io_error(context("stat")))?.len();
    // The header is damaged. Its content is known: the vector of every earlier record.
    let vector_before = vector_of_sealed(dir, sealed)?;
    let expected = encode_header(&vector_before);
    let bytes = read_from(&mut file, 0).map_err(io_error(context("read")))?;
    if is_torn_header(&bytes, &expected) {
        // Records are written only after the header is fdatasync'd, so a prefix of
        // the header (with zeros where the write did not land) means flo stopped while
        // creating the file: it never held a record.
        log::warn!(
            "segment {} has a torn header; recreating it",
            path.display()
        );
        report.truncated_bytes += file_size;
        return new_open_segment(dir, first, &vector_before);
    }
    let records_at = expected.len().min(bytes.len());
    let kept: Vec<_> = find_valid_records(&bytes[records_at..])
        .into_iter()
        .map(|r| r.start + records_at..r.end + records_at)
        .collect();
    // Before the damage lies only the previous segment, whose last event the client finds
    // by reading up to this segment's first offset.
    let around = describe_around(
        Err("the last event of the previous segment"),
        record_id(&bytes, kept.first()).ok_or(NONE_IN_SEGMENT),
    );
    let problem = format!(
        "the segment header is damaged and the file holds {file_size} bytes, more than \
         a header being created; {around}"
    );
    if mode == RecoveryMode::Refuse {
        return Err(needs_repair(dir, first, 0, problem));
    }
    // Repair: the whole file goes to quarantine; the records found after where the
    // header ends are kept under a fresh header.
    write_quarantine(dir, first, 0, &bytes).map_err(io_error(context("quarantine")))?;
    let (mut file, header_size) =
        create_segment(dir, first, &vector_before).map_err(io_error(context("recreate")))?;
    keep_records(&mut file, header_size, &bytes, &kept).map_err(io_error(context("repair")))?;
    log_repair(dir, first, 0, bytes.len(), kept.len(), &around);
    report.quarantined_bytes += bytes.len() as u64;
    report.repaired_records += kept.len() as u64;
    let scan = scan_segment(&path, first, header_size).map_err(io_error(context("read")))?;
    report.records_scanned += scan.index.record_count;
    let open = OpenSegment {
        file,
        index: scan.index,
        namespaces: scan.namespaces,
    };
    Ok((open, vector_before))
}

fn needs_repair(dir: &Path, first: u64, position: u64, problem: String) -> StorageError {
    StorageError::NeedsRepair {
        segment: segment_path(dir, first),
        position,
        problem,
        quarantine: quarantine_path(dir, first, position),
    }
}

/// Whether `bytes` can be what a crash while writing `expected` left: no longer than it, and
/// every byte either written (equal) or not (zero).
fn is_torn_header(bytes: &[u8], expected: &[u8]) -> bool {
    bytes.len() <= expected.len()
        && bytes
            .iter()
            .zip(expected)
            .all(|(&byte, &wanted)| byte == wanted || byte == 0)
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
/// was cut. `tail` (the bytes from there on) holds no record with a valid checksum.
fn cut_tail(
    file: &mut File,
    path: &Path,
    valid_size: u64,
    tail: &[u8],
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let context = |what: &str| format!("{what} {}", path.display());
    file.set_len(valid_size)
        .map_err(io_error(context("truncate")))?;
    file.sync_data().map_err(io_error(context("fdatasync")))?;
    if tail.iter().all(|&byte| byte == 0) {
        // The hole the log extends the open segment with (`file::PREALLOCATE_BYTES`): no
        // record was ever there, so nothing is reported as cut.
        log::debug!(
            "segment {}: cut {} bytes of preallocated zeros at byte {valid_size}",
            path.display(),
            tail.len()
        );
        return Ok(());
    }
    let records = count_pieces(tail);
    let bytes = tail.len() as u64;
    log::warn!(
        "segment {}: cut a torn tail of {bytes} bytes ({records} pieces of records, none with a \
         valid checksum) at byte {valid_size}",
        path.display()
    );
    report.truncated_records += records;
    report.truncated_bytes += bytes;
    Ok(())
}

/// How many pieces of records a torn tail seems to hold, following the length fields while
/// they are plausible (at least 1 for a non-empty tail).
fn count_pieces(tail: &[u8]) -> u64 {
    let mut count = 0;
    let mut position = 0usize;
    while position < tail.len() {
        count += 1;
        let rest = &tail[position..];
        let header = rest
            .get(..RECORD_HEADER_SIZE)
            .and_then(|h| <&[u8; RECORD_HEADER_SIZE]>::try_from(h).ok());
        match header.map(decode_header) {
            Some(Ok((body_size, _))) => position += RECORD_HEADER_SIZE + body_size,
            _ => break,
        }
    }
    count
}
