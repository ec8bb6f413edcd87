//! The file log: segment files with a checksum per record, group commit, a persisted index per
//! sealed segment, retention and a cache of the newest records. Opening and crash recovery
//! are in `recovery.rs`; the byte format and the rules are in docs/storage.md.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::config::{FsyncPolicy, StorageConfig};
use crate::event::{EventId, EventRef, StartPosition, VersionVector};
use crate::time::{MonotonicMs, WallClockMs};

use super::cache::EventCache;
use super::fence_preload::{FencePreload, Taken};
use super::handles::{will_need, HandleKind, Handles};
use super::index::{SegmentIndex, SPARSE_EVERY_RECORDS};
use super::lease;
use super::namespace::{
    namespace_hash, BuildBuffers, Fences, NameFilter, NamespaceFileError, NamespaceHeader,
    NamespaceKey, NamespaceLookup, RecordPlace, SegmentNames,
};
use super::produced::{ProducedJournal, ProducedRecord};
use super::purge::{self, HideRules, PurgeOutcomes, PurgedNewest};
use super::record::{
    check_size, decode_header, encode_view, encode_view_into, encoded_size_of, is_hole_view,
    view_body, view_checked_body_after, AppendedRecord, RECORD_HEADER_SIZE,
};
use super::repair::{describe_around, NONE_IN_SEGMENT};
use super::segment::{
    create_segment, encode_header, fsync_dir, index_path, namespace_index_path, next_segment_path,
    scan_segment, segment_path, write_namespace_index, ReadError, SegmentReader,
};
use super::syncer::{Done, Job, SealInFlight, Syncer};
use super::{
    io_error, last_by_scan, read_first, scan_last_within, scan_namespace_within, LastScan, Log,
    LogActivity, LogStats, Offset, StorageError,
};
use crate::event::PurgeRule;

/// A failure the next `sync` simulates, for tests of the error path (a full disk, a failing
/// device) that cannot be produced on demand with a real file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
pub enum InjectedFault {
    /// The write stores only this many of the buffered bytes, then fails with "no space".
    WriteFails {
        /// The bytes that reach the file before the failure.
        bytes_written: usize,
    },
    /// The write succeeds and the fdatasync fails.
    FsyncFails,
    /// Under `always`, the write of zeros ahead of the records (`FileLog::zero_ahead`) fails
    /// with "no space"; the records' write and fdatasync go on as usual. A sync that fills
    /// no zeros (a write of a block or more, another policy, zeros already ahead) leaves it
    /// unused.
    ZeroFillDiskFull,
}

/// The segment that receives appends.
#[derive(Debug)]
pub(super) struct OpenSegment {
    pub file: File,
    /// Covers the durable records only (the buffered ones are not in the file yet).
    pub index: SegmentIndex,
    /// The namespaces of the durable records (empty when the index is disabled).
    pub namespaces: SegmentNames,
}

/// The durable log on disk. See the [`Log`] trait for the contract.
#[derive(Debug)]
pub struct FileLog {
    pub(super) config: StorageConfig,
    /// Sealed segments, oldest first; each has an index file.
    pub(super) sealed: VecDeque<SegmentIndex>,
    pub(super) open: OpenSegment,
    /// The records appended since the last sync when they do not fit in the cache's ring
    /// (empty otherwise). Appends encode records straight into the ring
    /// (`EventCache::stage`), the segment is written from there and the cache keeps them in
    /// place once durable; only a turn whose records do not fit in the ring moves them here
    /// (and the cache copies the bodies after the write).
    pub(super) pending_bytes: Vec<u8>,
    /// One entry per record appended since the last sync, in order (their count is the
    /// records pending): what the index and the vectors take of each once it is written,
    /// kept so the write need not decode the records back. Kept from turn to turn for its
    /// allocation.
    pub(super) pending_records: Vec<AppendedRecord>,
    /// The vector of every appended record, and of every durable one.
    pub(super) vector: VersionVector,
    pub(super) durable_vector: VersionVector,
    pub(super) cache: EventCache,
    /// The reader of the last disk read, reused when the next read continues where it stopped.
    pub(super) reader: Option<SegmentReader>,
    /// When the last fdatasync ran (`None`: not since open), and whether bytes were written
    /// after it.
    pub(super) last_fsync_ms: Option<u64>,
    pub(super) written_since_fsync: bool,
    pub(super) fault: Option<InjectedFault>,
    /// fdatasyncs of segment data started since open (for tests of group commit and the
    /// benchmark); under `interval` and `never` most run on the helper thread.
    pub(super) fsync_count: u64,
    /// Reads and retention since open, for the metrics (`fsync_count` is kept above).
    pub(super) activity: LogActivity,
    /// fdatasyncs of segment data run on the caller's thread (the reactor's) since open:
    /// `always`'s, which the acknowledgements wait for, and the seal of a full segment.
    pub(super) caller_fsync_count: u64,
    /// The open segment's bytes known to be on disk: its header, or what the last fdatasync
    /// that completed covered. A full segment is sealed on the caller's thread only once the
    /// rest is small (see `seal_may_run`).
    pub(super) synced_size: u64,
    /// The open segment file's length as last set: records end at `open.index.file_size`,
    /// zeros follow up to here (a hole, under `always` partly written: `zeroed_size`). 0 when
    /// not known (a fresh open or roll).
    pub(super) preallocated_size: u64,
    /// Under `always`: the open segment's bytes up to here are records or zeros written ahead
    /// of need (`zero_ahead`), blocks the file system has allocated; past it, up to
    /// `preallocated_size`, a hole. 0 when not known.
    pub(super) zeroed_size: u64,
    /// The durable counter lease (`lease.rs`): at least every counter reserved so far.
    pub(super) counter_lease: u64,
    /// The member list found at open, then as last written (`members.rs`).
    pub(super) stored_members: Vec<super::members::MemberRecord>,
    /// The namespace index of each sealed segment, by first offset. A segment missing here
    /// has no usable `.nsx` file: a query rebuilds it.
    pub(super) sealed_namespaces: BTreeMap<u64, SealedNamespaces>,
    /// The membership filter of the namespaces of sealed segments whose `.nsx` file a
    /// newest-id lookup asked (`last_in_namespace`), by first offset, and their bytes, at most
    /// `namespace_filter_bytes_max`: a segment past it has none, and is asked through its file.
    pub(super) name_filters: BTreeMap<u64, NameFilter>,
    pub(super) name_filter_bytes: usize,
    /// The fences of sealed segments' version 5 `.nsx` files (`Fences`), by first offset,
    /// read by a segment's first lookup, and their bytes, at most `namespace_fences_bytes_max`:
    /// a segment past it has none, and its lookups binary-search its file.
    pub(super) name_fences: BTreeMap<u64, Fences>,
    pub(super) name_fence_bytes: usize,
    /// The fences read at start-up by a helper thread (`fence_preload.rs`), taken into
    /// `name_fences` by the lookups; `None` once all are taken.
    pub(super) fence_preload: Option<FencePreload>,
    /// The `.nsx` file being written by a storage helper thread (at most one at a time).
    pub(super) namespace_build: Option<NamespaceBuild>,
    /// The working memory of the `.nsx` builds, handed to each build's thread and back: about
    /// 92 bytes a record of the largest segment built (`BuildBuffers`). Empty while a build
    /// runs.
    pub(super) namespace_build_buffers: BuildBuffers,
    /// The names of the last segment whose `.nsx` build is over, emptied for the next open
    /// segment at the next roll (`keep_spare_names`); `None` until a build ends, and from a
    /// roll to the end of the build after it.
    pub(super) spare_names: Option<SegmentNames>,
    /// Namespace index files rebuilt by queries (damage that start-up's header check missed).
    pub(super) namespace_rebuilds: u64,
    /// The sealed segments' `.nsx` and `.log` files kept open for index-driven reads, at
    /// most `open_files_max` (`handles.rs`).
    pub(super) handles: Handles,
    /// The places of the records the last namespace index query found in sealed segments
    /// whose `.nsx` has them (at most the positions that query was asked for, 1,024 from the
    /// engine): `read_one` reads such a record with one positioned read.
    pub(super) places: HashMap<u64, RecordPlace>,
    /// The trace indexes (`keyed.rs`).
    pub(super) trace: super::keyed::TraceIndex,
    /// The helper thread for `interval`'s fdatasync, the fdatasync before a seal and index
    /// files (`syncer.rs`). Declared before the lock, so it finishes before the lock goes.
    pub(super) syncer: Syncer,
    /// The empty `next.log` the helper thread created for the next roll (under `interval`
    /// and `never`), and whether it is being created.
    pub(super) prepared: Option<File>,
    pub(super) prepare_in_flight: bool,
    /// The seal the helper thread is completing (`roll_to_prepared`): while it is here, the
    /// open segment's file is still `next.log`. `seal_failed`: it failed there, and the next
    /// `sync` runs it again on the caller's thread before anything else.
    pub(super) sealing: Option<SealInFlight>,
    pub(super) seal_failed: bool,
    /// A counter lease being written ahead of need by the helper thread.
    pub(super) lease_in_flight: bool,
    /// The extension of the open segment the helper thread is making ahead of need (under
    /// `interval` and `never`): the segment's first offset and the length it sets
    /// (`extend_ahead`), and the floor a caller that cannot wait for it raises (`Job::Extend`).
    pub(super) extend_in_flight: Option<(u64, u64, Arc<Mutex<u64>>)>,
    /// Extensions of the open segment's length (`set_len`) run on the caller's thread since
    /// open: every one under `always`; under `interval` and `never` only when the helper
    /// thread has fallen behind (or could not do it).
    pub(super) caller_extend_count: u64,
    /// Held for the life of the log: no other process opens the same directory.
    /// The produced journal of idempotent produces (`produced.rs`).
    pub(super) produced: ProducedJournal,
    /// Its records whose events survived, from open until the engine takes them.
    pub(super) produced_loaded: Vec<ProducedRecord>,
    /// Purges and per-namespace retention cutoffs (`purge.rs`).
    pub(super) hide: Arc<HideRules>,
    /// Where the reclaimer goes on looking at the oldest sealed segment: every record of it
    /// before this offset is hidden, and hiding is monotone, so they stay hidden.
    pub(super) reclaim_next: u64,
    /// The newest id of each namespace whose purged events were deleted (`purge.rs`).
    pub(super) purged_newest: PurgedNewest,
    /// The same for the records of the oldest segment the reclaimer has looked at so far:
    /// made durable into `purged_newest` before that segment is deleted.
    pub(super) reclaim_newest: PurgedNewest,
    /// Whether the reclaimer said it stopped at `purged_namespaces_max` (said once).
    pub(super) reclaim_full_logged: bool,
    pub(super) _lock: super::lock::DirLock,
}

/// How far past the records the open segment file is extended at a time (as a hole, with
/// `set_len`). A write inside the file's length does not change it, so its fdatasync has no
/// file size to commit: on ext4 here an append + fdatasync of 176 bytes took about 130-160 us
/// and the same write inside the file's length about 90 us. The zeros are cut when the segment
/// is sealed, when the log is dropped, and at start-up after a crash (see `recovery.rs`).
pub(super) const PREALLOCATE_BYTES: u64 = 1 << 20;

/// Under `always`, how far past the records the open segment's hole is filled with written
/// zeros (`FileLog::zero_ahead`), once the records pass what was filled. The fdatasync of a
/// write into a hole also allocates the block and commits that to the file system's journal:
/// with 176-byte records one write in 23 starts a block, and on ext4 here that fdatasync took
/// about 0.5 ms against 0.35 (BENCHMARKS.md, "Run S"): 4% of the events, the acknowledgement
/// latency's p99 region. Filled 64 KiB at a time, one write in 372 allocates (64 KiB of zeros
/// more in that fdatasync, about 0.7 ms), out of the p99.
pub(super) const ZERO_AHEAD_BYTES: u64 = 64 << 10;

/// Only a turn that writes less than this (a file system block) fills zeros ahead: a larger
/// write allocates its own blocks, the cost shared by its many events.
const ZERO_AHEAD_WRITE_MAX: u64 = 4096;

/// The zeros `zero_ahead` writes.
static ZEROS: [u8; ZERO_AHEAD_BYTES as usize] = [0; ZERO_AHEAD_BYTES as usize];

/// How far past the records the storage helper thread extends the open segment under
/// `interval` and `never` (`FileLog::extend_ahead`), once less than half of it is left: far
/// enough that the helper, whose queue may hold a 1 s `interval` fdatasync taking 100 ms or
/// more on a loaded machine, gets to it before the reactor's writes reach the end (with 2 MiB,
/// session 14, it often did not). A hole: it takes no disk blocks.
const EXTEND_AHEAD_BYTES: u64 = 8 << 20;

/// A full segment is sealed (its last fdatasync, on the caller's thread) once at most this
/// many of its bytes are not yet known to be on disk, or an eighth of `segment_size_max` if
/// that is less; until then, under `interval` and `never`, it goes on taking appends while the
/// helper thread fdatasyncs it. So the seal's fdatasync, which stops the reactor, is short.
const SEAL_UNSYNCED_BYTES_MAX: u64 = 1 << 20;

/// Empties the spill buffer (`FileLog::pending_bytes`) for the next turn, giving its memory
/// back when a large turn grew it past `kept_max` (`storage.spill_bytes_kept_max`).
fn empty_spill(spill: &mut Vec<u8>, kept_max: usize) {
    if spill.capacity() > kept_max {
        *spill = Vec::new();
    } else {
        spill.clear();
    }
}

impl FileLog {
    /// The directory of the segment files.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Makes the next `sync` fail as described (tests and fault simulation only).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_fault(&mut self, fault: InjectedFault) {
        self.fault = Some(fault);
    }

    /// Waits for the `.nsx` file being written on the helper thread, if any (tests use it to
    /// reach a state where every sealed segment has its file).
    pub fn wait_for_namespace_index(&mut self) {
        self.finish_namespace_build(true);
    }

    /// Waits until the fences the start-up's helper thread reads are all taken into memory
    /// (tests use it to reach the state a lookup finds once the thread is done).
    pub fn wait_for_fence_preload(&mut self) {
        self.take_preloaded_fences(true);
    }

    /// Takes the fences the start-up's helper thread has read so far (with `wait`: all of
    /// them), keeping each while the segment's file is still the one it was read from and
    /// the fences' bytes stay within `namespace_fences_bytes_max`.
    pub(super) fn take_preloaded_fences(&mut self, wait: bool) {
        while let Some(preload) = &self.fence_preload {
            let (first, header, fences) = match preload.take(wait) {
                Taken::One(preloaded) => preloaded,
                Taken::NotYet => return,
                Taken::Done => {
                    self.fence_preload = None;
                    return;
                }
            };
            let current = matches!(
                self.sealed_namespaces.get(&first),
                Some(SealedNamespaces::Written(written)) if *written == header
            );
            let room = self.name_fence_bytes.saturating_add(fences.size());
            let fits = room <= self.config.namespace_fences_bytes_max;
            if current && fits && !self.name_fences.contains_key(&first) {
                self.name_fence_bytes = room;
                self.name_fences.insert(first, fences);
            }
        }
    }

    /// Files the index-driven reads opened since open (`.nsx` and sealed `.log` files, kept
    /// open up to `open_files_max`).
    pub fn files_opened(&self) -> u64 {
        self.handles.opened
    }

    /// The bytes of `.nsx` fences kept in memory (at most `namespace_fences_bytes_max`).
    pub fn namespace_fence_bytes(&self) -> usize {
        self.name_fence_bytes
    }

    /// How many namespace index files queries found unusable and rebuilt since open.
    pub fn namespace_rebuild_count(&self) -> u64 {
        self.namespace_rebuilds
    }

    /// Takes the result of the helper thread's `.nsx` build when it is done (or, with `wait`,
    /// waits for it): the segment is then answered from its file, or, if writing it failed,
    /// the next query rebuilds it.
    pub(super) fn finish_namespace_build(&mut self, wait: bool) {
        let Some(build) = self.namespace_build.take() else {
            return;
        };
        if !wait && !build.job.is_finished() {
            self.namespace_build = Some(build);
            return;
        }
        let first = build.first_offset;
        let path = namespace_index_path(&self.config.data_dir, first);
        let result = build.job.join().map(|(result, buffers)| {
            self.namespace_build_buffers = buffers;
            result
        });
        match result {
            Ok(Ok(header)) => {
                // Retention may have deleted the segment meanwhile: then nothing is recorded.
                if let Some(state) = self.sealed_namespaces.get_mut(&first) {
                    let built = std::mem::replace(state, SealedNamespaces::Written(header));
                    self.keep_spare_names(built);
                }
            }
            Ok(Err(error)) => {
                log::warn!(
                    "cannot write namespace index file {} ({error}); a query will rebuild it",
                    path.display()
                );
                if let Some(built) = self.sealed_namespaces.remove(&first) {
                    self.keep_spare_names(built);
                }
            }
            Err(_) => {
                log::error!("the helper thread writing {} panicked", path.display());
                self.sealed_namespaces.remove(&first);
            }
        }
    }

    /// Keeps the names of a segment whose `.nsx` build is over, for the next open segment to
    /// fill (`SegmentNames::recycled`): their vectors are then grown and faulted in once,
    /// not again for every segment (at 4 MiB segments the growth's `realloc` was 43
    /// instructions an event, and its page faults a sixth of the server's; issue 13,
    /// session 15).
    /// Memory stays at two segments' names at most: the spare is taken at the next roll,
    /// after which the build it came from is over.
    fn keep_spare_names(&mut self, state: SealedNamespaces) {
        if let SealedNamespaces::Building(names) = state {
            // The build's thread is joined, so the only other holder was a listing's
            // momentary clone: unwrapping fails only if one is still alive (then it is
            // dropped, as before).
            if let Ok(names) = Arc::try_unwrap(names) {
                self.spare_names = Some(names);
            }
        }
    }

    /// Hands the names of the segment just sealed to a helper thread that writes its `.nsx`
    /// file; until it is done, queries answer from the names in memory. One build at a time:
    /// a previous one still running is waited for first, so memory holds at most two
    /// segments' names.
    fn start_namespace_build(&mut self, mut names: SegmentNames, identity: u64) {
        self.finish_namespace_build(true);
        // Listings of a sealed segment walk its `.nsx` file, not the open segment's view.
        names.forget_name_view();
        let first_offset = names.first_offset;
        let names = Arc::new(names);
        let dir = self.config.data_dir.clone();
        let shared = Arc::clone(&names);
        let mut buffers = std::mem::take(&mut self.namespace_build_buffers);
        let spawned = std::thread::Builder::new()
            .name("flo-nsx".into())
            .spawn(move || {
                let result = write_namespace_index(&dir, &shared, identity, &mut buffers);
                (result, buffers)
            });
        match spawned {
            Ok(job) => {
                let state = SealedNamespaces::Building(names);
                self.sealed_namespaces.insert(first_offset, state);
                self.namespace_build = Some(NamespaceBuild { first_offset, job });
            }
            Err(error) => {
                log::warn!("cannot start a thread to write a namespace index ({error})");
                let buffers = &mut self.namespace_build_buffers;
                match write_namespace_index(&self.config.data_dir, &names, identity, buffers) {
                    Ok(header) => {
                        let state = SealedNamespaces::Written(header);
                        self.sealed_namespaces.insert(first_offset, state);
                    }
                    Err(error) => log::warn!("cannot write a namespace index ({error})"),
                }
            }
        }
    }

    /// How many fdatasyncs of segment data ran since open.
    pub fn fsync_count(&self) -> u64 {
        self.fsync_count
    }

    /// The offsets the cache holds: a suffix of the durable log.
    pub fn cached_range(&self) -> std::ops::Range<Offset> {
        Offset(self.cache.first_offset())..Offset(self.cache.end_offset())
    }

    /// The file names of the segments, oldest first (for tests and operators).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments()
            .map(|index| self.segment_file_path(index.first_offset))
            .collect()
    }

    /// The path of the file of the segment starting at `first`: `next.log` for the open one
    /// while the seal before it is in flight, else its name.
    fn segment_file_path(&self, first: u64) -> PathBuf {
        match &self.sealing {
            Some(seal) if seal.next_first == first => next_segment_path(&self.config.data_dir),
            _ => segment_path(&self.config.data_dir, first),
        }
    }

    /// The indexes of every segment, oldest first, the open one last.
    fn segments(&self) -> impl Iterator<Item = &SegmentIndex> {
        self.sealed.iter().chain(std::iter::once(&self.open.index))
    }

    /// Writes the buffered records (and fdatasyncs them under the policy); on failure the file
    /// is cut back to its durable size and the buffered records are dropped.
    fn write_pending(&mut self, now_ms: u64) -> Result<(), StorageError> {
        let durable_size = self.open.index.file_size;
        // The produced records go first: an event is never durable without its record (a
        // record without its events is dropped at open).
        let journal_size = self.produced.size();
        if let Err(error) = self.produced.write_pending() {
            self.roll_back(durable_size);
            return Err(error);
        }
        if let Err(error) = self.write_and_fsync(durable_size, now_ms) {
            self.roll_back(durable_size);
            self.produced.roll_back(journal_size);
            return Err(error);
        }
        let first_offset = self.open.index.end_offset();
        // The buffer is taken for the loop (and its allocation kept for the next group).
        let mut spilled = std::mem::take(&mut self.pending_bytes);
        let in_cache = spilled.is_empty();
        let pending = if in_cache {
            self.cache.staged()
        } else {
            &spilled[..]
        };
        let mut position = 0;
        let mut previous_namespace = None;
        // Taken for the loop (and put back, cleared, for its allocation).
        let records = std::mem::take(&mut self.pending_records);
        let pending_count = records.len() as u64;
        for appended in &records {
            let record = &pending[position..];
            let size = appended.size();
            // This buffer holds the records `append_view` encoded from these events, in order.
            let event = appended
                .view(record, previous_namespace)
                .expect("the record this log encoded from the event");
            debug_assert_eq!(
                Some(event),
                view_checked_body_after(&record[RECORD_HEADER_SIZE..size], previous_namespace),
                "a record's view kept at append time differs from its bytes"
            );
            if self.config.namespace_index {
                // The view took the namespace of the record before when the bytes are the
                // same (`AppendedRecord::view`): a repeated name, known without comparing.
                let repeated = previous_namespace.is_some_and(|p| std::ptr::eq(p, event.namespace));
                let at = self.open.index.file_size;
                (self.open.namespaces).observe_next_at(event.namespace, at, size as u64, repeated);
            }
            previous_namespace = Some(event.namespace);
            self.open.index.observe(event, size as u64);
            self.durable_vector.observe(event.id);
            self.trace.observe(event);
            position += size;
        }
        if in_cache {
            self.cache.commit_staged(first_offset);
        } else {
            let mut position = 0;
            for offset in first_offset..first_offset + pending_count {
                let body_size = u32::from_le_bytes(
                    (spilled[position..position + 4])
                        .try_into()
                        .expect("four bytes"),
                );
                let body_at = position + RECORD_HEADER_SIZE;
                position = body_at + body_size as usize;
                self.cache.push(offset, &spilled[body_at..position]);
            }
            empty_spill(&mut spilled, self.config.spill_bytes_kept_max);
        }
        // A reader of the open segment may have buffered the zeros that were past the records
        // (the preallocated hole) where these records now are: it must not be reused.
        if self
            .reader
            .as_ref()
            .is_some_and(|reader| reader.first_offset == self.open.index.first_offset)
        {
            self.reader = None;
        }
        self.pending_records = records;
        self.pending_records.clear();
        self.pending_bytes = spilled;
        Ok(())
    }

    fn write_and_fsync(&mut self, position: u64, now_ms: u64) -> Result<(), StorageError> {
        let mut fsync_fails = false;
        let mut zero_fill_fails = false;
        match self.fault.take() {
            Some(InjectedFault::WriteFails { bytes_written }) => {
                let pending = self.pending();
                let part = &pending[..bytes_written.min(pending.len())];
                self.open
                    .file
                    .write_all_at(part, position)
                    .map_err(self.segment_error("write"))?;
                let source = io::Error::new(io::ErrorKind::StorageFull, "injected: disk full");
                return Err(StorageError::Io {
                    context: self.segment_context("write"),
                    source,
                });
            }
            Some(InjectedFault::FsyncFails) => fsync_fails = true,
            Some(InjectedFault::ZeroFillDiskFull) => zero_fill_fails = true,
            None => {}
        }
        let end = position + self.pending().len() as u64;
        if self.config.fsync != FsyncPolicy::Always {
            self.extend_ahead(end)?;
        }
        if end > self.preallocated_size && !self.extending_past(end) {
            let size = end + PREALLOCATE_BYTES;
            self.caller_extend_count += 1;
            // If the helper thread fell behind, its extension (to less than `end`) must not
            // follow this one and cut what this write adds: the floor, raised under its lock.
            let floor = (self.extend_in_flight.as_ref())
                .filter(|(first_offset, _, _)| *first_offset == self.open.index.first_offset)
                .map(|(_, _, floor)| Arc::clone(floor));
            let mut held = floor
                .as_ref()
                .map(|floor| floor.lock().unwrap_or_else(PoisonError::into_inner));
            if let Some(held) = held.as_mut() {
                **held = (**held).max(size);
            }
            self.open
                .file
                .set_len(size)
                .map_err(self.segment_error("extend"))?;
            drop(held);
            self.preallocated_size = size;
        }
        // A write of a block or more shares its allocation among many events: no zeros (at
        // `always`'s full rate they would double the bytes written).
        if self.config.fsync == FsyncPolicy::Always && end - position < ZERO_AHEAD_WRITE_MAX {
            self.zero_ahead(end, zero_fill_fails);
        }
        self.open
            .file
            .write_all_at(self.pending(), position)
            .map_err(self.segment_error("write"))?;
        self.written_since_fsync = true;
        if self.fsync_due(now_ms) {
            if fsync_fails {
                let source = io::Error::other("injected: fdatasync failed");
                return Err(self.segment_error("fdatasync")(source));
            }
            if self.config.fsync == FsyncPolicy::Always {
                self.fsync(now_ms, end)
                    .map_err(self.segment_error("fdatasync"))?;
            } else {
                self.start_background_fsync(now_ms, end)?;
            }
        }
        Ok(())
    }

    /// Under `always`, once the records' end after this write (`end`) passes the zeros written
    /// ahead, writes zeros over the next `ZERO_AHEAD_BYTES` of the hole past it (within the
    /// file's length, which stays as it is): the turn's fdatasync allocates those blocks at
    /// once, and the next writes' fdatasyncs have only data to flush. The zeros are cut like
    /// the hole's (at seal, drop and start-up: they read the same).
    ///
    /// The zeros are an optimisation, so a failed write of them (`fail`: injected) is logged
    /// and otherwise ignored: it returns nothing the caller could act on, and the records'
    /// own write, which comes next, is what says whether the disk is full; whatever part of
    /// the zeros reached the file is zeros in the hole, which reads the same. It is not tried
    /// again for this stretch: the next fill is when the records pass it, so a disk that keeps
    /// failing logs one warning per `ZERO_AHEAD_BYTES` of records.
    fn zero_ahead(&mut self, end: u64, fail: bool) {
        if end <= self.zeroed_size {
            return;
        }
        let to = end
            .saturating_add(ZERO_AHEAD_BYTES)
            .min(self.preallocated_size);
        // `to - end` is at most ZERO_AHEAD_BYTES, the length of ZEROS.
        let size = usize::try_from(to.saturating_sub(end)).unwrap_or(0);
        let written = if fail {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: disk full",
            ))
        } else {
            self.open.file.write_all_at(&ZEROS[..size], end)
        };
        if let Err(error) = written {
            log::warn!(
                "could not {}: {error}",
                self.segment_context("write zeros ahead of the records in")
            );
        }
        self.zeroed_size = to.max(end);
    }

    /// The length the helper thread is extending the open segment to, if it is.
    fn extending(&self) -> Option<u64> {
        match self.extend_in_flight {
            Some((first_offset, size, _)) if first_offset == self.open.index.first_offset => {
                Some(size)
            }
            _ => None,
        }
    }

    /// True while the helper thread extends the open segment to `end` bytes or more: a write
    /// up to `end` may then go past the file's current length (the write extends it, and the
    /// helper's `set_len` only grows it further).
    fn extending_past(&self, end: u64) -> bool {
        self.extending().is_some_and(|size| end <= size)
    }

    /// Under `interval` and `never`, has the helper thread extend the open segment to
    /// `EXTEND_AHEAD_BYTES` past `end` (the records' end after this write) once less than half
    /// of that is left, so the caller's `set_len` (an inode change that waited up to 4 ms
    /// behind the helper's fdatasync of the same file, session 13) runs only when the helper
    /// has fallen behind. The zeros are cut as before (at seal, drop and start-up).
    fn extend_ahead(&mut self, end: u64) -> Result<(), StorageError> {
        if self.extending().is_some()
            || end.saturating_add(EXTEND_AHEAD_BYTES / 2) <= self.preallocated_size
        {
            return Ok(());
        }
        let size = end.max(self.preallocated_size) + EXTEND_AHEAD_BYTES;
        let file =
            (self.open.file.try_clone()).map_err(self.segment_error("clone the handle of"))?;
        let first_offset = self.open.index.first_offset;
        let floor = Arc::new(Mutex::new(0));
        self.extend_in_flight = Some((first_offset, size, Arc::clone(&floor)));
        let job = Job::Extend {
            file,
            first_offset,
            size,
            floor,
        };
        if let Some(result) = self.syncer.submit(job) {
            // No helper thread: it ran here.
            self.caller_extend_count += 1;
            self.take_done(result)?;
        }
        Ok(())
    }

    /// The encoded records appended since the last sync: in the cache's ring, or in
    /// `pending_bytes` when a turn's records did not fit there.
    fn pending(&self) -> &[u8] {
        if self.pending_bytes.is_empty() {
            self.cache.staged()
        } else {
            &self.pending_bytes
        }
    }

    /// "`what` <the open segment's path>", for an error: the path is made only when an
    /// error needs it, not per sync (no allocation on the produce path).
    fn segment_context(&self, what: &str) -> String {
        let path = segment_path(&self.config.data_dir, self.open.index.first_offset);
        format!("{what} {}", path.display())
    }

    /// `io_error` for the open segment, naming it only when called with an error.
    fn segment_error<'a>(&'a self, what: &'a str) -> impl FnOnce(io::Error) -> StorageError + 'a {
        move |source| StorageError::Io {
            context: self.segment_context(what),
            source,
        }
    }

    fn fsync_due(&self, now_ms: u64) -> bool {
        match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(interval_ms) => match self.last_fsync_ms {
                None => true,
                Some(last) => now_ms >= last.saturating_add(interval_ms),
            },
            FsyncPolicy::Never => false,
        }
    }

    /// fdatasync of the open segment on the caller's thread, covering `size` bytes.
    fn fsync(&mut self, now_ms: u64, size: u64) -> io::Result<()> {
        self.caller_fsync_count += 1;
        self.produced.fsync()?;
        self.open.file.sync_data()?;
        self.fsync_count += 1;
        self.last_fsync_ms = Some(now_ms);
        self.written_since_fsync = false;
        self.synced_size = size;
        Ok(())
    }

    /// The fdatasync `interval` asks for now: on the helper thread (acknowledgements never
    /// waited for it). If one is still running there, the next sync tries again.
    fn start_background_fsync(&mut self, now_ms: u64, size: u64) -> Result<(), StorageError> {
        if self.syncer.sync_in_flight() {
            return Ok(());
        }
        // The produced journal before the segment, here: it is small, and written only by
        // idempotent produces.
        self.produced
            .fsync()
            .map_err(io_error("fdatasync the produced journal".to_string()))?;
        let path = segment_path(&self.config.data_dir, self.open.index.first_offset);
        let file = (self.open.file.try_clone())
            .map_err(io_error(format!("clone the handle of {}", path.display())))?;
        let job = Job::Sync {
            file,
            path,
            first_offset: self.open.index.first_offset,
            size,
        };
        self.fsync_count += 1;
        self.last_fsync_ms = Some(now_ms);
        self.written_since_fsync = false;
        if let Some(result) = self.syncer.submit(job) {
            // No helper thread: it ran here.
            self.caller_fsync_count += 1;
            self.take_done(result)?;
        }
        Ok(())
    }

    /// Takes the result of a helper thread's job.
    fn take_done(&mut self, result: Result<Done, StorageError>) -> Result<(), StorageError> {
        match result? {
            Done::Synced { first_offset, size } => {
                if first_offset == self.open.index.first_offset {
                    self.synced_size = self.synced_size.max(size);
                }
            }
            Done::Indexed => {}
            Done::Prepared(file) => {
                self.prepare_in_flight = false;
                self.prepared = file;
            }
            Done::Sealed { next_first, error } => {
                let ours = self.sealing.as_ref().map(|seal| seal.next_first);
                assert_eq!(
                    ours,
                    Some(next_first),
                    "a seal finished that was not started"
                );
                if let Some(error) = error {
                    self.seal_failed = true;
                    return Err(error);
                }
                self.sealing = None;
            }
            Done::Extended {
                first_offset,
                size,
                error,
            } => {
                let this = |(first, extended, _): &(u64, u64, _)| (*first, *extended);
                if self.extend_in_flight.as_ref().map(this) == Some((first_offset, size)) {
                    self.extend_in_flight = None;
                }
                match error {
                    None if first_offset == self.open.index.first_offset => {
                        self.preallocated_size = self.preallocated_size.max(size);
                    }
                    None => {}
                    // Only ahead of need: the write that needs it extends the file itself.
                    Some(error) => log::warn!(
                        "cannot extend segment {} ahead of need ({error})",
                        segment_path(&self.config.data_dir, first_offset).display()
                    ),
                }
            }
            Done::Leased { lease, error } => {
                self.lease_in_flight = false;
                match error {
                    None => self.counter_lease = self.counter_lease.max(lease),
                    // Only written ahead: the reservation that needs it writes it here.
                    Some(error) => log::warn!("{error}; it is written again when needed"),
                }
            }
        }
        Ok(())
    }

    /// Collects the helper thread's finished jobs (all of them with `wait`). A failed
    /// fdatasync there is returned once: the caller fails the turn with it.
    fn collect_background(&mut self, wait: bool) -> Result<(), StorageError> {
        let mut first_error = None;
        for result in self.syncer.collect(wait) {
            if let Err(error) = self.take_done(result) {
                log::error!("a background fdatasync failed: {error}");
                // The bytes it should have covered are written again by no one: make the
                // next fdatasync (or the seal's) cover them.
                self.written_since_fsync = true;
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for the helper thread's jobs (fdatasyncs, index files) to finish.
    pub fn wait_for_syncs(&mut self) -> Result<(), StorageError> {
        self.collect_background(true)
    }

    /// How many times the open segment's length was extended on the caller's thread since
    /// open, rather than on the helper thread (`extend_ahead`).
    pub fn caller_extend_count(&self) -> u64 {
        self.caller_extend_count
    }

    /// The capacity of the buffer that holds a turn's records when they do not fit in the
    /// cache's ring: at most `storage.spill_bytes_kept_max` between turns.
    pub fn spill_capacity(&self) -> usize {
        self.pending_bytes.capacity()
    }

    /// The bytes the open segment's names take in memory (their vectors' capacity): after a
    /// roll, those of an earlier segment when its names were recycled (`keep_spare_names`).
    pub fn open_segment_names_bytes(&self) -> usize {
        self.open.namespaces.memory_bytes()
    }

    /// How many fdatasyncs of segment data ran on the caller's thread since open, rather than
    /// on the helper thread.
    pub fn caller_fsync_count(&self) -> u64 {
        self.caller_fsync_count
    }

    /// True when the full open segment may be sealed now: under `always` (every record is
    /// already on disk), when the bytes not yet known to be on disk are few, or when the
    /// segment has grown a quarter past `segment_size_max` (the bound on a segment's size,
    /// reached only when the disk is slower than the writes).
    fn seal_may_run(&self) -> bool {
        let size_max = self.config.segment_size_max;
        let unsynced = self.open.index.file_size.saturating_sub(self.synced_size);
        self.config.fsync == FsyncPolicy::Always
            || unsynced <= SEAL_UNSYNCED_BYTES_MAX.min(size_max / 8)
            || self.open.index.file_size >= size_max.saturating_add(size_max / 4)
    }

    /// Restores the state of the last successful sync after a failed write or fdatasync.
    fn roll_back(&mut self, durable_size: u64) {
        empty_spill(&mut self.pending_bytes, self.config.spill_bytes_kept_max);
        self.cache.discard_staged();
        self.pending_records.clear();
        self.produced.discard_pending();
        self.vector = self.durable_vector.clone();
        // A reader may have buffered bytes of the failed write.
        self.reader = None;
        // What was past the records is a hole again (below).
        self.zeroed_size = self.zeroed_size.min(durable_size);
        if let Err(error) = self.open.file.set_len(durable_size) {
            // The next write overwrites from `durable_size` anyway; whatever stays beyond the
            // records is cut by recovery as a torn tail.
            log::error!(
                "cannot cut segment {} back to {durable_size} bytes after a failed write: {error}",
                segment_path(&self.config.data_dir, self.open.index.first_offset).display()
            );
        }
        // The cut bytes become zeros again, up to the length the file had.
        if self.preallocated_size > durable_size
            && self.open.file.set_len(self.preallocated_size).is_err()
        {
            self.preallocated_size = durable_size;
        }
    }

    /// Seals the open segment and starts a new one. Under `interval` and `never`, once the
    /// helper thread has created `next.log`, only the switch runs here (`roll_to_prepared`).
    /// Otherwise (`always`, whose seal has nothing left to fdatasync but the cut length, or
    /// no `next.log` yet) the seal runs here, on the caller's thread, and completes before the
    /// next segment exists: the file is cut to its last record and fdatasynced (so a sealed
    /// segment is whole on disk under every policy, and start-up never finds one that is
    /// not); only its index file, derived data that start-up rebuilds when it is missing, is
    /// written by the helper thread.
    fn roll(&mut self) -> Result<(), StorageError> {
        // Seals complete in order: the one in flight first (a segment sealed before its own
        // seal finished, which only a tiny `segment_size_max` or a slow disk gives).
        if self.sealing.is_some() {
            self.collect_background(true)?;
            self.finish_failed_seal()?;
        }
        if self.config.fsync != FsyncPolicy::Always {
            if let Some(next) = self.prepared.take() {
                return self.roll_to_prepared(next);
            }
        }
        // An extension of this segment on the helper thread must not follow the cut.
        if self.extending().is_some() {
            self.collect_background(true)?;
        }
        let dir = self.config.data_dir.clone();
        let first_offset = self.open.index.first_offset;
        // A sealed segment ends at its last record: its index and start-up check its length.
        self.open
            .file
            .set_len(self.open.index.file_size)
            .map_err(io_error(format!(
                "truncate {}",
                segment_path(&dir, first_offset).display()
            )))?;
        // Sealed segments are fully durable under every policy, so their index stays true.
        // Under `interval` and `never` the helper thread fdatasynced all but the last bytes.
        // The produced records of its events first.
        self.produced
            .fsync()
            .map_err(io_error("fdatasync the produced journal".to_string()))?;
        self.caller_fsync_count += 1;
        self.open.file.sync_data().map_err(io_error(format!(
            "fdatasync {}",
            segment_path(&dir, first_offset).display()
        )))?;
        self.fsync_count += 1;
        let next_first = self.open.index.end_offset();
        let (file, header_size) =
            create_segment(&dir, next_first, &self.durable_vector).map_err(io_error(format!(
                "create segment {}",
                segment_path(&dir, next_first).display()
            )))?;
        self.synced_size = header_size;
        self.switch_to(file, header_size, None)
    }

    /// Seals the open segment by switching to the `next.log` the helper thread created: the
    /// next segment's header is written here (to the page cache) and the rest of the seal
    /// (`SealInFlight`: cut, fdatasync, then the next segment's name) is handed to the helper
    /// thread, while this turn's records go on into `next.log`. Under `interval` and `never`
    /// they count as durable once written, as before; a crash before the seal is done leaves
    /// `next.log`, which start-up names after finishing the seal (`recovery.rs`). The helper
    /// runs its jobs in order, so no fdatasync of the next segment starts before the seal is
    /// done, and a power loss in between leaves the sealed segment as the newest named one.
    fn roll_to_prepared(&mut self, next: File) -> Result<(), StorageError> {
        let dir = self.config.data_dir.clone();
        let next_path = next_segment_path(&dir);
        let next_first = self.open.index.end_offset();
        let header = encode_header(&self.durable_vector);
        (next.write_all_at(&header, 0))
            .map_err(io_error(format!("write {}", next_path.display())))?;
        self.produced
            .fsync()
            .map_err(io_error("fdatasync the produced journal".to_string()))?;
        let clone_error = |path: &Path| io_error(format!("clone the handle of {}", path.display()));
        let seal = SealInFlight {
            dir: dir.clone(),
            sealed: (self.open.file.try_clone()).map_err(clone_error(&segment_path(
                &dir,
                self.open.index.first_offset,
            )))?,
            sealed_first: self.open.index.first_offset,
            sealed_size: self.open.index.file_size,
            next: next.try_clone().map_err(clone_error(&next_path))?,
            next_first,
        };
        let job = seal.try_clone().map_err(clone_error(&next_path))?;
        self.fsync_count += 1;
        // Not known until the helper's fdatasyncs of it report.
        self.synced_size = 0;
        self.switch_to(next, header.len() as u64, Some((seal, job)))
    }

    /// Runs here a seal that failed on the helper thread (`seal_failed`), before anything else
    /// is written; until it succeeds, every `sync` fails.
    fn finish_failed_seal(&mut self) -> Result<(), StorageError> {
        if !self.seal_failed {
            return Ok(());
        }
        let seal = self
            .sealing
            .as_ref()
            .expect("a failed seal is kept until it succeeds");
        self.caller_fsync_count += 1;
        seal.run()?;
        log::info!(
            "the seal of segment {} succeeded on a second try",
            segment_path(&self.config.data_dir, seal.sealed_first).display()
        );
        self.sealing = None;
        self.seal_failed = false;
        Ok(())
    }

    /// Makes `file` (whose header of `header_size` bytes is written) the open segment and the
    /// open one sealed: its names go to the helper thread that writes its namespace index,
    /// its keys to the trace index's, and its index file to the storage helper thread, after
    /// `seal` (the job completing the seal) when the seal is not done yet.
    fn switch_to(
        &mut self,
        file: File,
        header_size: u64,
        seal: Option<(SealInFlight, SealInFlight)>,
    ) -> Result<(), StorageError> {
        let dir = self.config.data_dir.clone();
        let next_first = self.open.index.end_offset();
        // The build before is over after this (`start_namespace_build` waited for it here
        // anyway): its names, kept as the spare, become the new open segment's.
        self.finish_namespace_build(true);
        let namespaces = match self.spare_names.take() {
            Some(spare) => spare.recycled(next_first),
            None => SegmentNames::empty(next_first),
        };
        let open = OpenSegment {
            file,
            index: SegmentIndex::empty(next_first, header_size),
            namespaces,
        };
        let sealed = std::mem::replace(&mut self.open, open);
        let identity = sealed.index.identity();
        self.sealed.push_back(sealed.index.clone());
        if self.config.namespace_index {
            self.start_namespace_build(sealed.namespaces, identity);
        }
        self.trace.seal(&dir, identity, next_first);
        self.preallocated_size = 0;
        self.zeroed_size = 0;
        self.last_fsync_ms = None;
        self.written_since_fsync = false;
        // At most one index file waits behind the helper's current job: a helper slower
        // than the rolls holds the caller back here rather than queueing without bound.
        // (Extensions ahead of need are short, and one per segment at most: not counted, so
        // a roll does not wait for an fdatasync behind one.)
        if self.syncer.in_flight_besides_extends() >= 2 {
            self.collect_background(true)?;
        }
        if let Some((seal, job)) = seal {
            self.sealing = Some(seal);
            if let Some(result) = self.syncer.submit(Job::Seal(job)) {
                // No helper thread: it ran here.
                self.caller_fsync_count += 1;
                self.take_done(result)?;
            }
        }
        let job = Job::Index {
            dir,
            index: sealed.index,
        };
        if let Some(result) = self.syncer.submit(job) {
            self.take_done(result)?;
        }
        Ok(())
    }

    /// Has the helper thread create `next.log` for the next roll, under `interval` and `never`
    /// when there is none and no seal is in flight (whose `next.log` it still is).
    fn prepare_next_segment(&mut self) -> Result<(), StorageError> {
        if self.config.fsync == FsyncPolicy::Always
            || self.prepared.is_some()
            || self.prepare_in_flight
            || self.sealing.is_some()
        {
            return Ok(());
        }
        self.prepare_in_flight = true;
        let job = Job::Prepare {
            dir: self.config.data_dir.clone(),
        };
        match self.syncer.submit(job) {
            Some(result) => self.take_done(result),
            None => Ok(()),
        }
    }

    /// The index of the segment holding `offset` (which must be in `start()..durable_end()`).
    pub(super) fn segment_of(&self, offset: u64) -> &SegmentIndex {
        if offset >= self.open.index.first_offset {
            return &self.open.index;
        }
        let after = self.sealed.partition_point(|s| s.first_offset <= offset);
        // `offset >= start()`, the first sealed segment's first offset, so `after >= 1`.
        &self.sealed[after.saturating_sub(1)]
    }

    /// A reader positioned at `offset`: the last one if it stopped right there, else a new one
    /// seeked through the sparse table.
    fn reader_at(&mut self, offset: u64) -> Result<SegmentReader, StorageError> {
        let segment_first = self.segment_of(offset).first_offset;
        if let Some(mut reader) = self.reader.take() {
            // A reader a little before `offset` in the same segment reads forward to it: an
            // index read of a namespace whose records are close together then costs what a
            // scan would, not a seek per record.
            let ahead = offset.checked_sub(reader.next_offset);
            if reader.first_offset == segment_first
                && ahead.is_some_and(|ahead| ahead < SPARSE_EVERY_RECORDS)
            {
                let segment = self.segment_of(offset);
                while reader.next_offset < offset {
                    next_on_disk(&mut reader, segment, &self.config.data_dir)?;
                }
                return Ok(reader);
            }
        }
        let index = self.segment_of(offset);
        let (seek_offset, position) = index
            .seek_point(offset)
            .unwrap_or((index.first_offset, index.file_size));
        let first_offset = index.first_offset;
        let mut path = self.segment_file_path(first_offset);
        let mut opened = SegmentReader::open(path.clone(), first_offset, seek_offset, position);
        if opened
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            // The helper thread named `next.log` (its seal finished) after the path was
            // chosen: the segment has its name now.
            path = segment_path(&self.config.data_dir, first_offset);
            opened = SegmentReader::open(path.clone(), first_offset, seek_offset, position);
        }
        let mut reader = opened.map_err(io_error(format!("open {}", path.display())))?;
        let segment = self.segment_of(offset);
        while reader.next_offset < offset {
            next_on_disk(&mut reader, segment, &self.config.data_dir)?;
        }
        Ok(reader)
    }

    /// Visits records from disk in `offset..limit`, within one segment. Returns the next offset
    /// and whether `visit` stopped.
    fn read_disk(
        &mut self,
        offset: u64,
        limit: u64,
        visit: &mut dyn FnMut(Offset, EventRef<'_>) -> bool,
    ) -> Result<(u64, bool), StorageError> {
        let mut reader = self.reader_at(offset)?;
        // Every record read here is in this one segment (looked up once, not per record).
        let segment = self.segment_of(offset);
        let segment_end = segment.end_offset().min(limit);
        let mut stopped = false;
        while reader.next_offset < segment_end {
            let at = reader.next_offset;
            let (event, size) = next_on_disk(&mut reader, segment, &self.config.data_dir)?;
            if is_hole_view(event) {
                // A record `--repair` could not keep: nothing to deliver, its offset passes.
                continue;
            }
            if !visit(Offset(at), event) {
                reader.unread(size);
                stopped = true;
                break;
            }
        }
        let next = reader.next_offset;
        let (decodes, copies) = reader.take_counts();
        self.activity.disk_record_decodes += decodes;
        self.activity.disk_body_copies += copies;
        self.reader = Some(reader);
        Ok((next, stopped))
    }

    fn first_segment_where(&self, test: impl Fn(&SegmentIndex) -> bool) -> Option<u64> {
        self.segments()
            .find(|index| index.record_count > 0 && test(index))
            .map(|index| index.first_offset)
    }

    fn retention_exceeded(&self, now_ms: u64) -> bool {
        let retention = self.config.retention;
        let Some(oldest) = self.sealed.front() else {
            return false;
        };
        let events = self.durable_end().0 - self.start().0;
        let bytes: u64 = self.segments().map(|index| index.file_size).sum();
        retention.events_max.is_some_and(|max| events > max)
            || retention.bytes_max.is_some_and(|max| bytes > max)
            || retention
                .age_max_ms
                .is_some_and(|max| oldest.timestamp_max < now_ms.saturating_sub(max))
    }

    /// Deletes the oldest sealed segment's files (the directory fsync is left to the caller).
    fn delete_oldest(&mut self) -> Result<u64, StorageError> {
        let Some(oldest) = self.sealed.front() else {
            return Ok(0);
        };
        let (first_offset, count) = (oldest.first_offset, oldest.record_count);
        if self
            .namespace_build
            .as_ref()
            .is_some_and(|build| build.first_offset == first_offset)
        {
            // Its file must be in place before it is deleted.
            self.finish_namespace_build(true);
        }
        let dir = &self.config.data_dir;
        self.trace
            .delete(dir, first_offset)
            .map_err(io_error(format!(
                "delete the trace index of segment {first_offset}"
            )))?;
        for path in [
            segment_path(dir, first_offset),
            index_path(dir, first_offset),
            namespace_index_path(dir, first_offset),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(format!("delete {}", path.display()))(error)),
            }
        }
        self.sealed.pop_front();
        self.handles.forget_segment(first_offset);
        self.places.clear();
        self.sealed_namespaces.remove(&first_offset);
        if let Some(filter) = self.name_filters.remove(&first_offset) {
            self.name_filter_bytes -= filter.size();
        }
        self.forget_fences(first_offset);
        self.activity.retention_deleted_events += count;
        self.activity.retention_deleted_segments += 1;
        Ok(count)
    }

    /// Deletes the oldest sealed segment while purges and per-namespace retention hide every
    /// record in it. Looks at most `reclaim_records_per_call_max` records per call, and checks
    /// them against the rules for at most `reclaim_match_steps_per_call_max` steps, resuming
    /// where the last call stopped (`reclaim_next`); a visible record stops it until a later
    /// call finds it hidden. Only the oldest segment goes, so the log stays one run of offsets:
    /// a purged record behind a visible one keeps its bytes until that one is hidden or
    /// deleted by retention (docs/storage.md, "Purges").
    fn reclaim(&mut self) -> Result<u64, StorageError> {
        if self.hide.is_empty() {
            return Ok(0);
        }
        let hide = Arc::clone(&self.hide);
        let mut budget = self.config.reclaim_records_per_call_max;
        let mut steps = self.config.reclaim_match_steps_per_call_max;
        let mut deleted = 0;
        while budget > 0 && steps > 0 {
            let Some(oldest) = self.sealed.front() else {
                break;
            };
            let end = oldest.first_offset + oldest.record_count;
            let from = self.reclaim_next.max(oldest.first_offset);
            if from == oldest.first_offset {
                // A new oldest segment (or retention deleted the one being looked at).
                self.reclaim_newest.clear();
            }
            let (mut visible, mut full) = (false, false);
            let names_max = self.config.purged_namespaces_max;
            // Taken out for the read, which borrows the log, and put back after it.
            let known = std::mem::take(&mut self.purged_newest);
            let mut pending = std::mem::take(&mut self.reclaim_newest);
            let read = self.read(Offset(from), &mut |offset, event| {
                if offset.0 >= end || budget == 0 || steps == 0 {
                    return false;
                }
                let (by, cost) = hide.hidden_by_with_cost(event);
                steps = steps.saturating_sub(cost);
                visible = by.is_none();
                if by == Some(purge::HiddenBy::Purge) {
                    let namespace = event.namespace;
                    let new = !known.contains(namespace) && !pending.contains(namespace);
                    if new && known.len() + pending.len() >= names_max {
                        full = true;
                        return false;
                    }
                    pending.set(namespace, event.id);
                }
                budget -= 1;
                !visible
            });
            self.purged_newest = known;
            self.reclaim_newest = pending;
            let next = read?;
            self.reclaim_next = next.0;
            if full {
                self.log_reclaim_full();
            }
            if visible || full || next.0 < end {
                break;
            }
            self.collect_background(true)?;
            if !self.reclaim_newest.is_empty() {
                let merged = self.purged_newest.merged(&self.reclaim_newest);
                merged.write(&self.config.data_dir)?;
                self.purged_newest = merged;
                self.reclaim_newest.clear();
            }
            deleted += self.delete_oldest()?;
            self.activity.reclaimed_segments += 1;
        }
        Ok(deleted)
    }

    fn log_reclaim_full(&mut self) {
        if !self.reclaim_full_logged {
            self.reclaim_full_logged = true;
            log::warn!(
                "the oldest segment is purged but not deleted: the newest ids of {} purged \
                 namespaces are remembered, --max-purged-namespaces; raise it to get the disk \
                 space back (global retention still deletes the segment)",
                self.purged_newest.len()
            );
        }
    }

    /// Looks `key` up in the namespace index of the sealed segment `segment` within `range`
    /// and returns how far it got (as `SegmentNames::lookup`): from the names in memory
    /// while its file is being written, else from its file; a file that is missing or found
    /// damaged is rebuilt from the segment (and written back) first. A prefix that selects
    /// too many of the segment's namespaces, and a segment whose file cannot be written, are
    /// answered by reading the records (one unit of `work` each, resumable anywhere).
    pub(super) fn lookup_sealed(
        &mut self,
        segment: SealedShape,
        key: &NamespaceKey,
        range: (u64, u64),
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<u64>,
    ) -> Result<u64, StorageError> {
        let first = segment.first_offset;
        let dir = self.config.data_dir.clone();
        let path = namespace_index_path(&dir, first);
        self.take_preloaded_fences(false);
        let problem = match self.sealed_namespaces.get(&first) {
            Some(SealedNamespaces::Building(names)) => {
                return Ok(names.lookup(key, range, count_max, work, found));
            }
            Some(SealedNamespaces::Unwritable) => {
                return self.scan_range(key, range, count_max, work, found);
            }
            Some(SealedNamespaces::Written(header)) => {
                let header = *header;
                let (mut answer, mut places) = (Vec::new(), Vec::new());
                let file = (self.handles)
                    .get(first, HandleKind::NamespaceIndex, &path)
                    .map_err(NamespaceFileError::Io);
                let fences_max = self.config.namespace_fences_bytes_max;
                let result = file.and_then(|file| {
                    let room = self.name_fence_bytes.saturating_add(header.fences_size());
                    if !self.name_fences.contains_key(&first) && room <= fences_max {
                        if let Some(fences) = header.read_fences(&file, work)? {
                            self.name_fence_bytes += fences.size();
                            self.name_fences.insert(first, fences);
                        }
                    }
                    let fences = self.name_fences.get(&first);
                    let answer = &mut answer;
                    header.lookup_fenced(
                        &file,
                        fences,
                        key,
                        range,
                        count_max,
                        work,
                        answer,
                        &mut places,
                    )
                });
                match result {
                    Ok(NamespaceLookup::Answered) => {
                        found.extend(answer);
                        self.places
                            .extend(places.into_iter().map(|p| (p.offset, p)));
                        return Ok(range.1);
                    }
                    Ok(NamespaceLookup::TooManyNames) => {
                        return self.scan_range(key, range, count_max, work, found);
                    }
                    Err(error) => error.to_string(),
                }
            }
            None => "missing".to_string(),
        };
        log::warn!(
            "namespace index {} cannot be used ({problem}); rebuilding it",
            path.display()
        );
        self.namespace_rebuilds += 1;
        self.handles.forget(first, HandleKind::NamespaceIndex);
        self.forget_fences(first);
        let names = rebuild_namespace_index(&dir, segment)?;
        *work = work.saturating_sub(segment.record_count);
        let reached = names.lookup(key, range, count_max, &mut u64::MAX.clone(), found);
        let buffers = &mut BuildBuffers::default();
        let state = match write_namespace_index(&dir, &names, segment.identity, buffers) {
            Ok(header) => SealedNamespaces::Written(header),
            Err(error) => {
                // Logged once per segment: until the next start-up its queries read its
                // records instead of rebuilding the file again on every query.
                log::warn!(
                    "cannot write {} ({error}); queries of that segment read its records \
                     until the next start-up",
                    path.display()
                );
                SealedNamespaces::Unwritable
            }
        };
        self.sealed_namespaces.insert(first, state);
        Ok(reached)
    }

    /// False when the sealed segment `segment` surely holds no record of the namespace whose
    /// `namespace_hash` is `hash`, by its `NameFilter`: built from its `.nsx` file the first
    /// time it is asked (charged to `work`), while the filters' bytes stay within
    /// `namespace_filter_bytes_max`. True (ask the file) for a segment without a filter: its
    /// file is being written, cannot be read, or the filters' memory is spent.
    fn sealed_may_hold(&mut self, segment: SealedShape, hash: u64, work: &mut u64) -> bool {
        let first = segment.first_offset;
        if let Some(filter) = self.name_filters.get(&first) {
            return filter.may_contain(hash);
        }
        let Some(SealedNamespaces::Written(header)) = self.sealed_namespaces.get(&first) else {
            return true;
        };
        let header = *header;
        let bytes_max = self.config.namespace_filter_bytes_max;
        if self.name_filter_bytes.saturating_add(header.filter_size()) > bytes_max {
            return true;
        }
        let path = namespace_index_path(&self.config.data_dir, first);
        let built = (self.handles)
            .get(first, HandleKind::NamespaceIndex, &path)
            .map_err(NamespaceFileError::Io)
            .and_then(|file| header.read_filter(&file, work));
        match built {
            Ok(filter) => {
                let holds = filter.may_contain(hash);
                self.name_filter_bytes += filter.size();
                self.name_filters.insert(first, filter);
                holds
            }
            // The lookup that follows reads the file too, finds the damage and rebuilds it.
            Err(_) => true,
        }
    }

    /// Before an exact lookup from `from` to `end`: for each sealed segment it will ask
    /// (at most `namespace_segments_per_query_max`) whose `.nsx` is not open yet (so most
    /// likely not in the page cache: the first query since a start), opens it and asks the
    /// kernel for the two pieces the lookup reads first (by the fences in memory), all
    /// segments at once, so a cold lookup waits for the disk about once instead of once per
    /// segment and piece.
    fn hint_cold_lookups(&mut self, name: &[u8], from: u64, end: u64) {
        self.take_preloaded_fences(false);
        if self.config.open_files_max == 0 {
            // No file is kept open, so none tells a first query apart: no hints.
            return;
        }
        let segments_max = self.config.namespace_segments_per_query_max;
        let start = self
            .sealed
            .partition_point(|segment| segment.end_offset() <= from);
        let firsts: Vec<u64> = (self.sealed.range(start..))
            .take_while(|segment| segment.first_offset < end)
            .map(|segment| segment.first_offset)
            .take(segments_max)
            .collect();
        for first in firsts {
            if self.handles.is_open(first, HandleKind::NamespaceIndex) {
                continue;
            }
            let header = match self.sealed_namespaces.get(&first) {
                Some(SealedNamespaces::Written(header)) => *header,
                _ => continue,
            };
            let Some(fences) = self.name_fences.get(&first) else {
                continue;
            };
            let ranges = header.exact_lookup_ranges(fences, name);
            let path = namespace_index_path(&self.config.data_dir, first);
            if let Ok(file) = self.handles.get(first, HandleKind::NamespaceIndex, &path) {
                for (position, length) in ranges {
                    will_need(&file, position, length);
                }
            }
        }
    }

    /// After a lookup: asks the kernel for the records found whose segment file is not open
    /// yet (see `hint_cold_lookups`), all at once, before `read_one` reads them one by one.
    fn hint_cold_records(&mut self, positions: &[u64]) {
        if self.config.open_files_max == 0 {
            return;
        }
        let cached_from = self.cache.first_offset();
        for &offset in positions {
            let Some(place) = self.places.get(&offset).copied() else {
                continue;
            };
            let first = self.segment_of(offset).first_offset;
            if offset >= cached_from || self.handles.is_open(first, HandleKind::Segment) {
                continue;
            }
            let path = segment_path(&self.config.data_dir, first);
            if let Ok(file) = self.handles.get(first, HandleKind::Segment, &path) {
                will_need(&file, place.position, place.size as u64);
            }
        }
    }

    /// Drops the fences kept for the segment starting at `first` (its file is rebuilt or
    /// deleted).
    fn forget_fences(&mut self, first: u64) {
        if let Some(fences) = self.name_fences.remove(&first) {
            self.name_fence_bytes -= fences.size();
        }
    }

    /// Finds the records of `range` that `key` selects by reading them, one unit of `work`
    /// each (at least one record), and returns how far it got.
    fn scan_range(
        &mut self,
        key: &NamespaceKey,
        (from, end): (u64, u64),
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<u64>,
    ) -> Result<u64, StorageError> {
        let (mut count, mut read) = (0, 0u64);
        let reached = self.read(Offset(from), &mut |offset, event| {
            if offset.0 >= end || count >= count_max || (*work == 0 && read > 0) {
                return false;
            }
            *work = work.saturating_sub(1);
            read += 1;
            if key.matches(event.namespace) {
                found.push(offset.0);
                count += 1;
            }
            true
        })?;
        Ok(reached.0.min(end))
    }
}

/// The namespace index of a sealed segment.
#[derive(Debug)]
pub(super) enum SealedNamespaces {
    /// Its `.nsx` file is being written by the helper thread: queries read these names.
    Building(Arc<SegmentNames>),
    /// Its `.nsx` file, with this header (checked).
    Written(NamespaceHeader),
    /// Its `.nsx` file could not be written (a directory in the way, a read-only or full
    /// disk): queries read the segment's records, and the next start-up tries again.
    Unwritable,
}

/// A `.nsx` file being written on a storage helper thread.
#[derive(Debug)]
pub(super) struct NamespaceBuild {
    first_offset: u64,
    /// The build's result, and its working memory back.
    job: JoinHandle<(io::Result<NamespaceHeader>, BuildBuffers)>,
}

/// What a namespace index lookup needs to know about a sealed segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct SealedShape {
    pub(super) first_offset: u64,
    pub(super) record_count: u64,
    /// `SegmentIndex::identity`.
    pub(super) identity: u64,
    /// Where its first record starts.
    header_size: u64,
    /// Where its last record ends (`SegmentIndex::file_size`).
    records_end: u64,
}

impl SealedShape {
    pub(super) fn of(segment: &SegmentIndex) -> SealedShape {
        SealedShape {
            first_offset: segment.first_offset,
            record_count: segment.record_count,
            identity: segment.identity(),
            // The sparse table always lists the first record; an empty segment ends at its
            // header.
            header_size: segment
                .sparse
                .first()
                .map_or(segment.file_size, |&(_, p)| p),
            records_end: segment.file_size,
        }
    }
}

/// Reads a sealed segment's namespaces again (its index file was missing or damaged). The
/// segment must read back whole, as its `.idx` says: its records, ending where the `.idx`
/// says. What follows them is not part of the segment: the zeros ahead of its records that
/// the seal cuts, when a query rebuilds its index before the storage helper's seal did
/// (under `interval` and `never`).
fn rebuild_namespace_index(dir: &Path, segment: SealedShape) -> Result<SegmentNames, StorageError> {
    let first = segment.first_offset;
    let path = segment_path(dir, first);
    let scan = scan_segment(&path, first, segment.header_size)
        .map_err(io_error(format!("read {}", path.display())))?;
    let whole = scan.namespaces.record_count() == segment.record_count
        && scan.index.file_size == segment.records_end;
    if !whole {
        return Err(StorageError::Corrupt {
            context: format!(
                "sealed segment {}: does not read back whole while rebuilding its namespace \
                 index (byte {})",
                path.display(),
                scan.index.file_size
            ),
        });
    }
    Ok(scan.namespaces)
}

/// The next record of a reader that must have one (the index says so): anything else is
/// damage, reported (`Unreadable`) with the file, the byte position and the offsets that
/// cannot be served: from the damaged record to the next point `segment`'s sparse index can
/// resume from (a record there starts at a known byte), or the segment's end.
///
/// `reader` reads `segment`'s file in `dir`. The report is made from what the reader said
/// before the read and from `dir`, not from the reader: the borrow checker cannot yet
/// return a borrow from one arm of a match and use the reader after it, and reading each
/// record twice to get round that (as this did) cost a second decode per record.
fn next_on_disk<'a>(
    reader: &'a mut SegmentReader,
    segment: &SegmentIndex,
    dir: &Path,
) -> Result<(EventRef<'a>, u64), StorageError> {
    let position = reader.position;
    // A failed read moves neither of these.
    let damaged = reader.next_offset;
    let last_id = reader.last_id;
    let problem = match reader.next_view() {
        Ok(Some(record)) => return Ok(record),
        Ok(None) => "file ends before the records its index lists".to_string(),
        Err(ReadError::Decode(error)) => error.to_string(),
        Err(ReadError::Io(source)) => {
            let path = segment_path(dir, segment.first_offset);
            let context = format!("read {} at byte {position}", path.display());
            return Err(StorageError::Io { context, source });
        }
    };
    let path = segment_path(dir, segment.first_offset);
    let segment_end = segment.end_offset();
    let resume = segment
        .sparse
        .iter()
        .map(|&(offset, _)| offset)
        .find(|&offset| offset > damaged)
        .unwrap_or(segment_end)
        .min(segment_end);
    let extent = if resume == segment_end {
        "the rest of the segment"
    } else {
        "up to the next record its index locates"
    };
    // The events around the damage, so an operator can find the place with the client: the
    // last one this reader read (if it read one before the damage) and the one at `resume`.
    let after = segment
        .sparse
        .iter()
        .find(|&&(offset, _)| offset == resume)
        .and_then(|&(offset, at)| {
            let path = path.clone();
            let mut next = SegmentReader::open(path, segment.first_offset, offset, at).ok()?;
            Some(next.next_record().ok()??.0.id)
        });
    let before = match last_id {
        Some(id) => Ok(id),
        None if damaged == segment.first_offset => Err(NONE_IN_SEGMENT),
        None => Err("not known (this read started at the damaged record)"),
    };
    let around = describe_around(before, after.ok_or("the first event of the next segment"));
    Err(StorageError::Unreadable {
        context: format!(
            "{} at byte {position}: {problem}; offsets {damaged}..{resume} of this node's log \
             ({extent}) are unreadable; {around}",
            path.display(),
        ),
        offsets: Offset(damaged)..Offset(resume),
    })
}

impl Log for FileLog {
    fn append_view(&mut self, event: EventRef<'_>) -> Result<Offset, StorageError> {
        check_size(event)?;
        let offset = self.end();
        if self.pending_bytes.is_empty() {
            if let Some(room) = self.cache.stage(encoded_size_of(event)) {
                encode_view_into(event, room);
                self.vector.observe(event.id);
                self.pending_records.push(AppendedRecord::of(event));
                return Ok(offset);
            }
            // This turn's records do not fit in the ring: they continue in the buffer.
            self.pending_bytes.extend_from_slice(self.cache.staged());
            self.cache.discard_staged();
        }
        encode_view(event, &mut self.pending_bytes);
        self.vector.observe(event.id);
        self.pending_records.push(AppendedRecord::of(event));
        Ok(offset)
    }

    fn sync(&mut self, now: MonotonicMs) -> Result<Offset, StorageError> {
        let now_ms = now.0;
        // A failed fdatasync on the helper thread fails this turn: its records are dropped
        // and its produces get an error, as when this turn's own fdatasync fails. So does a
        // failed seal, run again here first.
        let finished = self.collect_background(false);
        if let Err(error) = finished.and_then(|()| self.finish_failed_seal()) {
            self.roll_back(self.open.index.file_size);
            return Err(error);
        }
        if let Err(error) = self.prepare_next_segment() {
            self.roll_back(self.open.index.file_size);
            return Err(error);
        }
        if !self.pending_records.is_empty() {
            let full = self.open.index.file_size >= self.config.segment_size_max;
            if full && self.open.index.record_count > 0 {
                let result = if self.seal_may_run() {
                    self.roll()
                } else {
                    // Most of the segment goes to disk on the helper thread while it takes
                    // this turn's records; a later sync seals it.
                    let size = self.open.index.file_size;
                    self.start_background_fsync(now_ms, size)
                };
                if let Err(error) = result {
                    self.roll_back(self.open.index.file_size);
                    return Err(error);
                }
            }
            self.write_pending(now_ms)?;
        } else if self.written_since_fsync && self.fsync_due(now_ms) {
            // Under `interval`, bytes written earlier get their fdatasync even in a quiet turn.
            let size = self.open.index.file_size;
            self.start_background_fsync(now_ms, size)?;
        }
        Ok(self.durable_end())
    }

    fn start(&self) -> Offset {
        Offset(self.segments().next().map_or(0, |index| index.first_offset))
    }

    fn end(&self) -> Offset {
        Offset(self.open.index.end_offset() + self.pending_records.len() as u64)
    }

    fn durable_end(&self) -> Offset {
        Offset(self.open.index.end_offset())
    }

    fn read(
        &mut self,
        from: Offset,
        visit: &mut dyn FnMut(Offset, EventRef<'_>) -> bool,
    ) -> Result<Offset, StorageError> {
        let durable_end = self.durable_end().0;
        let mut offset = from.0.max(self.start().0);
        while offset < durable_end {
            let cache_first = self.cache.first_offset();
            if offset >= cache_first {
                let cache_from = offset;
                let mut previous_namespace = None;
                while let Some(body) = self.cache.get(offset) {
                    // The cache holds bodies this log encoded.
                    let event = view_checked_body_after(body, previous_namespace)
                        .expect("a record this log encoded");
                    previous_namespace = Some(event.namespace);
                    if !visit(Offset(offset), event) {
                        break;
                    }
                    offset += 1;
                }
                self.activity.cache_reads += offset - cache_from;
                break;
            }
            let (next, stopped) = self.read_disk(offset, cache_first, visit)?;
            self.activity.disk_reads += next.saturating_sub(offset);
            offset = next;
            if stopped {
                break;
            }
        }
        Ok(Offset(offset))
    }

    /// A record whose place the last namespace index query found (a sealed segment's `.nsx`
    /// of version 4) is read with one positioned read of exactly its bytes, through the
    /// segment file kept open; anything else, or a read that does not give back the record
    /// the place promised, goes the way of `read` (which reports damage as it finds it).
    fn read_one(
        &mut self,
        at: Offset,
        visit: &mut dyn FnMut(EventRef<'_>),
    ) -> Result<(), StorageError> {
        let place = self.places.get(&at.0).copied();
        // A record the cache holds is read from memory (`read`).
        let sealed = at.0 >= self.start().0
            && at.0 < self.open.index.first_offset
            && at.0 < self.cache.first_offset();
        let Some(place) = place.filter(|p| sealed && p.size as usize > RECORD_HEADER_SIZE) else {
            return read_first(self, at, visit);
        };
        let segment_first = self.segment_of(at.0).first_offset;
        let path = segment_path(&self.config.data_dir, segment_first);
        let Ok(file) = self.handles.get(segment_first, HandleKind::Segment, &path) else {
            return read_first(self, at, visit);
        };
        let mut bytes = vec![0u8; place.size as usize];
        if file.read_exact_at(&mut bytes, place.position).is_err() {
            return read_first(self, at, visit);
        }
        let mut header = [0u8; RECORD_HEADER_SIZE];
        header.copy_from_slice(&bytes[..RECORD_HEADER_SIZE]);
        let body = &bytes[RECORD_HEADER_SIZE..];
        let event = match decode_header(&header) {
            Ok((body_size, crc)) if body_size == body.len() => view_body(&header, crc, body).ok(),
            _ => None,
        };
        match event {
            Some(event) if !is_hole_view(event) => {
                self.activity.disk_reads += 1;
                visit(event);
                Ok(())
            }
            _ => read_first(self, at, visit),
        }
    }

    fn find_start(&mut self, position: &StartPosition) -> Result<Offset, StorageError> {
        match position {
            StartPosition::Beginning => return Ok(self.start()),
            StartPosition::End => return Ok(self.durable_end()),
            StartPosition::Timestamp(ms) => {
                let ms = *ms;
                let found = self.first_segment_where(|index| index.timestamp_max >= ms);
                let Some(first) = found else {
                    return Ok(self.durable_end());
                };
                return self.read(Offset(first), &mut |_, event| event.timestamp_ms < ms);
            }
            StartPosition::AfterId(_) | StartPosition::Cursor(_) => {}
        }
        // Both remaining kinds are cursors, so `cursor()` is `Some`; `None` would mean "no
        // position", which starts at the end like `End`.
        let Some(cursor) = position.cursor() else {
            return Ok(self.durable_end());
        };
        match self.first_segment_where(|index| index.has_uncovered(&cursor)) {
            None => Ok(self.durable_end()),
            Some(segment_first) => self.read(Offset(segment_first), &mut |_, event| {
                cursor.covers(event.id)
            }),
        }
    }

    fn version_vector(&self) -> &VersionVector {
        &self.vector
    }

    fn apply_retention(&mut self, now: WallClockMs) -> Result<u64, StorageError> {
        let now_ms = now.0;
        let mut deleted = 0;
        let mut result = Ok(());
        if self.hide.has_retention() {
            Arc::make_mut(&mut self.hide).advance_retention(now_ms);
        }
        if self.retention_exceeded(now_ms) {
            // A sealed segment's index file is written before its files may be deleted.
            self.collect_background(true)?;
        }
        while self.retention_exceeded(now_ms) {
            match self.delete_oldest() {
                Ok(count) => deleted += count,
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        if result.is_ok() {
            match self.reclaim() {
                Ok(count) => deleted += count,
                Err(error) => result = Err(error),
            }
        }
        if deleted > 0 || result.is_err() {
            let start = self.start().0;
            self.cache.drop_before(start);
            if self.reader.as_ref().is_some_and(|r| r.first_offset < start) {
                self.reader = None;
            }
            let dir = &self.config.data_dir;
            fsync_dir(dir).map_err(io_error(format!("fsync directory {}", dir.display())))?;
        }
        result.map(|()| deleted)
    }

    fn find_namespace_within(
        &mut self,
        key: &NamespaceKey,
        from: Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        if !self.config.namespace_index {
            return scan_namespace_within(self, key, from, count_max, work, found);
        }
        self.finish_namespace_build(false);
        self.places.clear();
        let durable_end = self.durable_end().0;
        let mut offset = from.0.max(self.start().0);
        if let NamespaceKey::Exact(name) = key {
            self.hint_cold_lookups(name.as_bytes(), offset, durable_end);
        }
        let mut positions = Vec::new();
        let mut segments_read = 0;
        let segments_max = self.config.namespace_segments_per_query_max;
        while offset < durable_end && segments_read < segments_max {
            let wanted = count_max - positions.len();
            if wanted == 0 || (*work == 0 && segments_read > 0) {
                break;
            }
            let segment = self.segment_of(offset);
            let segment_end = segment.end_offset().min(durable_end);
            let range = (offset, segment_end);
            offset = if segment.first_offset == self.open.index.first_offset {
                let names = &self.open.namespaces;
                names.lookup(key, range, wanted, work, &mut positions)
            } else {
                let shape = SealedShape::of(segment);
                self.lookup_sealed(shape, key, range, wanted, work, &mut positions)?
            };
            segments_read += 1;
            if offset < segment_end {
                // The work ran out or `wanted` were found inside the segment.
                break;
            }
        }
        if positions.len() == count_max {
            if let Some(&last) = positions.last() {
                offset = last + 1;
            }
        }
        self.hint_cold_records(&positions);
        found.extend(positions.into_iter().map(Offset));
        Ok(Offset(offset))
    }

    fn find_traced_within(
        &mut self,
        key: super::TraceKey,
        id: EventId,
        from: Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        self.find_traced_indexed(key, id, from, count_max, work, found)
    }

    fn list_namespaces_within(
        &mut self,
        listing: &mut super::NamespaceListing,
        accept: &mut dyn super::NameFilter,
        work: &mut u64,
    ) -> Result<bool, StorageError> {
        self.list_namespaces_indexed(listing, accept, work)
    }

    /// The log's newest event of the namespace is newer than any the reclaimer deleted (those
    /// were older, in log order); without one, the id remembered for its purged events.
    fn last_in_namespace(
        &mut self,
        namespace: &str,
        work: &mut u64,
    ) -> Result<Option<EventId>, StorageError> {
        if !self.config.namespace_index {
            let last = last_by_scan(self, namespace, work)?;
            return Ok(last.or_else(|| self.purged_newest.get(namespace)));
        }
        self.finish_namespace_build(false);
        let durable_end = self.durable_end().0;
        let start = self.start().0;
        let open_first = self.open.index.first_offset;
        let mut found = self
            .open
            .namespaces
            .last_exact(namespace, durable_end, work);
        if found.is_none() {
            let key = NamespaceKey::Exact(namespace.to_string());
            let hash = namespace_hash(namespace.as_bytes());
            let sealed: Vec<SealedShape> = self.sealed.iter().rev().map(SealedShape::of).collect();
            let mut filtered_out = 0u64;
            for shape in sealed {
                if !self.sealed_may_hold(shape, hash, work) {
                    filtered_out += 1;
                    continue;
                }
                let end = (shape.first_offset + shape.record_count).min(open_first);
                let range = (shape.first_offset.max(start), end);
                let mut offsets = Vec::new();
                // An exact key: a binary search of the segment's file (or, when the file
                // cannot be written, a read of the segment), bounded by the segment; never
                // cut short (the answer must be whole), only counted.
                let mut segment_work = u64::MAX;
                let lookup = self.lookup_sealed(
                    shape,
                    &key,
                    range,
                    usize::MAX,
                    &mut segment_work,
                    &mut offsets,
                );
                *work = work.saturating_sub(u64::MAX - segment_work);
                lookup?;
                if let Some(&last) = offsets.last() {
                    found = Some(last);
                    break;
                }
            }
            // A filter test reads one word of memory: one unit per 64 of them.
            *work = work.saturating_sub(filtered_out / 64);
        }
        let Some(offset) = found else {
            return Ok(self.purged_newest.get(namespace));
        };
        *work = work.saturating_sub(1);
        let mut id = None;
        self.read(Offset(offset), &mut |_, event| {
            id = Some(event.id);
            false
        })?;
        match id {
            Some(id) => Ok(Some(id)),
            None => Err(StorageError::Corrupt {
                context: format!("the namespace index names offset {offset}, which does not read"),
            }),
        }
    }

    /// Without the namespace index, the records are read (at most `work` of them a call),
    /// then the id remembered for purged events if none was found, as `last_in_namespace`.
    fn last_in_namespace_within(
        &mut self,
        scan: &mut LastScan,
        work: &mut u64,
    ) -> Result<Option<Option<EventId>>, StorageError> {
        if !self.config.namespace_index {
            let done = scan_last_within(self, scan, work)?;
            let purged = |this: &Self| this.purged_newest.get(scan.namespace());
            return Ok(done.map(|last| last.or_else(|| purged(self))));
        }
        let mut left = u64::MAX;
        let last = self.last_in_namespace(scan.namespace(), &mut left);
        *work = work.saturating_sub(u64::MAX - left);
        last.map(Some)
    }

    fn append_produced(&mut self, record: &ProducedRecord) {
        self.produced.append(record);
    }

    fn take_produced(&mut self) -> Vec<ProducedRecord> {
        std::mem::take(&mut self.produced_loaded)
    }

    fn produced_count(&self) -> u64 {
        self.produced.record_count()
    }

    fn rewrite_produced(&mut self, records: &[ProducedRecord]) -> Result<(), StorageError> {
        self.produced.rewrite(records)
    }

    fn hide_rules(&self) -> Arc<HideRules> {
        Arc::clone(&self.hide)
    }

    fn add_purges(
        &mut self,
        rules: &[PurgeRule],
        limits: purge::PurgeLimits,
    ) -> Result<PurgeOutcomes, StorageError> {
        let (next, outcomes, changed) = purge::merge_all(&self.hide, rules, limits);
        if changed {
            purge::write(&self.config.data_dir, &next.purges())?;
            self.hide = Arc::new(next);
        }
        Ok(outcomes)
    }

    fn stats(&self) -> LogStats {
        LogStats {
            event_count: self.end().0 - self.start().0,
            byte_count: self.segments().map(|index| index.file_size).sum(),
            segment_count: self.sealed.len() as u64 + 1,
            cache_bytes: self.cache.bytes() as u64,
        }
    }

    fn activity(&self) -> LogActivity {
        LogActivity {
            fsync_count: self.fsync_count,
            fsync_caller_count: self.caller_fsync_count,
            ..self.activity
        }
    }

    fn counter_floor(&self) -> u64 {
        self.counter_lease
    }

    fn stored_members(&self) -> Vec<super::members::MemberRecord> {
        self.stored_members.clone()
    }

    fn store_members(
        &mut self,
        records: &[super::members::MemberRecord],
    ) -> Result<(), StorageError> {
        super::members::write(&self.config.data_dir, records)?;
        self.stored_members = records.to_vec();
        Ok(())
    }

    fn reserve_counters(&mut self, up_to: u64) -> Result<(), StorageError> {
        if up_to > self.counter_lease && self.lease_in_flight {
            // The lease written ahead may cover it, and one writer of the file at a time.
            self.collect_background(true)?;
        }
        if up_to > self.counter_lease {
            // The first reservation after a start (the counter starts at the lease), or the
            // helper thread fell behind: written here, before any id above the lease is used.
            let lease = lease::next_lease(up_to);
            lease::write(&self.config.data_dir, lease)?;
            self.counter_lease = lease;
        }
        // Once half of the step is used, the helper thread writes the next lease, so the
        // reactor does not wait for its fdatasyncs and directory fsync (20-90 ms at a time
        // here, session 13). The reactor uses it only once the helper reports it durable.
        let half_used = self
            .counter_lease
            .saturating_sub(lease::COUNTER_LEASE_STEP / 2);
        let next = lease::next_lease(self.counter_lease);
        if !self.lease_in_flight && up_to > half_used && next > self.counter_lease {
            self.lease_in_flight = true;
            let dir = self.config.data_dir.clone();
            if let Some(result) = self.syncer.submit(Job::Lease { dir, lease: next }) {
                self.take_done(result)?;
            }
        }
        Ok(())
    }
}

impl Drop for FileLog {
    /// Cuts the zeros after the last record, so a clean stop leaves no hole for start-up to
    /// cut. Best effort: if it fails (or never runs, after a crash) start-up cuts them.
    fn drop(&mut self) {
        if let Err(error) = self.collect_background(true) {
            log::error!("{error}");
        }
        // The helper thread's file must be complete before another log opens the directory.
        self.finish_namespace_build(true);
        self.trace.finish_build(true);
        if self.seal_failed {
            if let Err(error) = self.finish_failed_seal() {
                log::error!("{error}; start-up finishes the seal");
            }
        }
        // An unused `next.log` holds nothing (start-up would remove it too).
        if self.prepared.take().is_some() {
            let _ = std::fs::remove_file(next_segment_path(&self.config.data_dir));
        }
        if self.preallocated_size > self.open.index.file_size {
            let _ = self.open.file.set_len(self.open.index.file_size);
        }
    }
}
