//! The durable event log. This is the only layer that touches files.
//!
//! The engine owns one [`Log`]. The file implementation keeps segments on disk with a checksum
//! per record, a persisted per-segment index, crash recovery, retention and a byte-bounded cache
//! of the newest events; the in-memory implementation serves tests and the cluster simulator.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::{Event, EventId, EventRef, PurgeRule, StartPosition, VersionVector};
use crate::time::{MonotonicMs, WallClockMs};

mod cache;
mod crc;
mod fence_preload;
mod file;
mod group_compaction;
mod group_sync;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod groups;
#[cfg(not(feature = "testing"))]
pub(crate) mod groups;
mod handles;
mod index;
mod keyed;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod lease;
#[cfg(not(feature = "testing"))]
mod lease;
mod listing;
mod lock;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod members;
#[cfg(not(feature = "testing"))]
mod members;
mod memory;
mod namespace;
mod process;
// The record and segment formats: internal, except to the recovery tests (the `testing` feature),
// which write damaged files byte by byte.
mod produced;
mod purge;
mod range_crc;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod record;
#[cfg(not(feature = "testing"))]
pub(crate) mod record;
mod recovery;
mod repair;
mod repair_sealed;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod segment;
#[cfg(not(feature = "testing"))]
mod segment;
mod syncer;

pub use file::FileLog;
#[cfg(any(test, feature = "testing"))]
pub use file::InjectedFault;
pub use keyed::TraceKey;
pub(crate) use listing::read_one;
pub use listing::{scan_listing, NameFilter, NamespaceCounts, NamespaceListing};
pub use members::{MemberRecord, MEMBER_ADDR_LENGTH_MAX};
pub use memory::MemoryLog;
pub use namespace::NamespaceKey;
/// The `.nsx` build on its own, for `examples/nsx_build.rs` (a benchmark of the build alone).
pub use namespace::{
    BuildBuffers, NameView, SegmentNames, ViewName, ViewWalk, NAME_VIEW_PART_RECORDS,
};
pub(crate) use process::{process_stats, ProcessStats};
pub use produced::ProducedRecord;
pub use purge::{HideRules, PurgeError, PurgeLimits, PurgeOutcomes};
pub use recovery::RecoveryReport;
pub use repair::RecoveryMode;

/// The position of a record in one node's log: 0 for the first record ever appended, counting
/// up by one per record. Offsets are local to a node; ids are global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Turns an `io::Error` into `StorageError::Io` naming what was being done (`context`): the
/// one adapter every storage file uses with `map_err`.
pub(crate) fn io_error(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { context, source }
}

/// Why the log could not do what was asked.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O error, with what was being done (file and operation).
    Io {
        /// The file and the operation.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A record failed its checksum or could not be decoded where the log must be intact.
    Corrupt {
        /// Where (file, position or offset).
        context: String,
    },
    /// A read met a damaged record (a checksum that fails, a record that does not decode) and
    /// cannot serve `offsets`; a read from `offsets.end` goes on after the damage. Reads only:
    /// start-up reports damage as `Corrupt` or `NeedsRepair`.
    Unreadable {
        /// Where (file, byte position) and what is wrong.
        context: String,
        /// The offsets that cannot be read: from the damaged record up to where reading can
        /// resume (the next entry of the segment's sparse index, or the segment's end).
        offsets: std::ops::Range<Offset>,
    },
    /// Another process holds the data directory's lock (see `lock.rs`).
    Locked {
        /// The locked directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it into the lock file.
        holder_pid: Option<u32>,
    },
    /// Start-up found damage it may not cut by itself (records with valid checksums would go
    /// with it, or a sealed segment or a non-empty segment's header is damaged). Nothing was
    /// changed; `flo --repair` (`FileLog::open_repairing`) moves the damaged part to
    /// `quarantine` and keeps every record that verifies.
    NeedsRepair {
        /// The damaged segment file.
        segment: PathBuf,
        /// The byte position of the damage in it.
        position: u64,
        /// What is wrong.
        problem: String,
        /// Where `--repair` would move the damaged bytes.
        quarantine: PathBuf,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { context, source } => write!(f, "{context}: {source}"),
            StorageError::Corrupt { context } | StorageError::Unreadable { context, .. } => {
                write!(f, "corrupt log: {context}")
            }
            StorageError::Locked { dir, holder_pid } => {
                write!(
                    f,
                    "data directory {} is in use by another flo",
                    dir.display()
                )?;
                match holder_pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => write!(f, " (pid unknown)"),
                }
            }
            StorageError::NeedsRepair {
                segment,
                position,
                problem,
                quarantine,
            } => write!(
                f,
                "segment {} is damaged at byte {position}: {problem}; flo does not delete it by \
                 itself: start once with --repair to move the damaged part to {} and keep every \
                 record that passes its checksum, or restore the file from a replica or backup",
                segment.display(),
                quarantine.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {}

/// The counts a log reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Records between `start()` and `end()`.
    pub event_count: u64,
    /// Bytes of those records on disk (or in memory for the memory log).
    pub byte_count: u64,
    /// Segment files (1 for the memory log).
    pub segment_count: u64,
    /// Bytes of events the cache holds (0 for the memory log, which has none).
    pub cache_bytes: u64,
}

/// What a log has done since it was opened, for the metrics: cheap to read (no scan), so the
/// reactor may ask every turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogActivity {
    /// fdatasyncs of segment data started (under `interval` and `never` most run on a
    /// storage helper thread).
    pub fsync_count: u64,
    /// Those of them that ran on the caller's thread (the reactor's), which the turn waited
    /// for: `always`'s, and the seal of a full segment.
    pub fsync_caller_count: u64,
    /// Records `read` visited from the cache.
    pub cache_reads: u64,
    /// Records `read` visited from disk (the cache did not hold them).
    pub disk_reads: u64,
    /// Record bodies those reads decoded (checksum, fields): one per record read, plus the
    /// records passed over to reach a start and those given back when a read stopped.
    pub disk_record_decodes: u64,
    /// Record bodies those reads copied out of the read buffer (the others were viewed in
    /// place): a body that straddled two refills of the buffer, or one given back.
    pub disk_body_copies: u64,
    /// Events deleted by retention.
    pub retention_deleted_events: u64,
    /// Segments deleted by retention.
    pub retention_deleted_segments: u64,
    /// Segments deleted because purges and per-namespace retention hid every record in them
    /// (their records are counted in `retention_deleted_events`).
    pub reclaimed_segments: u64,
    /// Records of the open segment sorted by name for namespace listings (its `NameView`).
    pub listing_records_sorted: u64,
}

/// The log the engine owns.
///
/// Contract:
/// - `append` buffers a record and returns its offset; it is not yet durable and `read` does
///   not return it.
/// - `sync` writes every buffered record and makes it durable under the fsync policy (with
///   `always`: one fdatasync covering all of them), then moves `durable_end` past them. If it
///   fails, every record appended since the last successful sync is discarded (so
///   `end() == durable_end()` again) and the error is returned; nothing made durable earlier is
///   affected.
/// - If `append` fails, the log is left as after a failed `sync`: every record appended since
///   the last successful sync is discarded.
/// - `read` visits durable records only, in log order.
/// - Counters are leased: the engine hands out a counter only after `reserve_counters` covered
///   it, and a log opened again reports a `counter_floor` at or above every counter reserved
///   before, whatever records were lost since (a power loss, a torn tail), so no id is given
///   to two events.
pub trait Log {
    /// Buffers one record; returns its offset. The log copies what it keeps: the produce path
    /// hands it views of the received frame's bytes (no allocation per event).
    fn append_view(&mut self, event: EventRef<'_>) -> Result<Offset, StorageError>;

    /// `append_view` of an owned event.
    fn append(&mut self, event: Event) -> Result<Offset, StorageError> {
        self.append_view(event.view())
    }

    /// Makes every appended record durable; returns the new durable end. `now` drives the
    /// `interval` fsync policy (storage never reads the clock); it is monotonic, so a wall clock
    /// stepping back cannot hold the fdatasync off.
    fn sync(&mut self, now: MonotonicMs) -> Result<Offset, StorageError>;

    /// The offset of the oldest retained record (equal to `end()` when the log is empty).
    fn start(&self) -> Offset;

    /// One past the newest appended record.
    fn end(&self) -> Offset;

    /// One past the newest durable record; consumers and peers read only below it.
    fn durable_end(&self) -> Offset;

    /// Visits durable records from `from` (raised to `start()` if it is older) in log order,
    /// until `visit` returns false or the durable end is reached. Returns the offset after the
    /// last record visited and accepted (so a record for which `visit` returned false is not
    /// consumed). Each record is a view of the stored bytes (the cache's or the segment
    /// reader's), valid during the call: a visitor that keeps one copies it (`to_event`).
    fn read(
        &mut self,
        from: Offset,
        visit: &mut dyn FnMut(Offset, EventRef<'_>) -> bool,
    ) -> Result<Offset, StorageError>;

    /// Visits the first record `read` from `at` would visit, and only it: an index-driven
    /// read of one position. The file log reads a record whose place its last namespace query
    /// found with one positioned read.
    fn read_one(
        &mut self,
        at: Offset,
        visit: &mut dyn FnMut(EventRef<'_>),
    ) -> Result<(), StorageError> {
        read_first(self, at, visit)
    }

    /// The offset where a consumer starting at `position` begins reading. For a cursor: the
    /// earliest record not covered by it, found from the per-segment index without scanning
    /// the log. For a timestamp: the first record whose timestamp is at or after it.
    fn find_start(&mut self, position: &StartPosition) -> Result<Offset, StorageError>;

    /// For each actor, the highest counter of any appended record.
    fn version_vector(&self) -> &VersionVector;

    /// Deletes the oldest whole segments while a retention limit is exceeded. Returns how many
    /// records were deleted. `now` is wall-clock time: the age limit compares it with event
    /// timestamps.
    fn apply_retention(&mut self, now: WallClockMs) -> Result<u64, StorageError>;

    /// Counts of what the log holds.
    fn stats(&self) -> LogStats;

    /// What the log has done since it was opened (a log that keeps no counts reports zeros).
    fn activity(&self) -> LogActivity {
        LogActivity::default()
    }

    /// At least every counter ever reserved with `reserve_counters` in this data directory (0
    /// for a new one). The engine starts its Lamport counter at this or at the highest counter
    /// in `version_vector()`, whichever is higher, so a gap follows a restart.
    fn counter_floor(&self) -> u64;

    /// Makes sure that every counter up to `up_to` is reserved durably: when this returns `Ok`,
    /// a later open's `counter_floor()` is at least `up_to`, whatever happens to the records.
    /// The engine calls it before it assigns such a counter, so the reservation is durable
    /// before any ack of the id. Cheap (no I/O) while `up_to` is within the current lease; past
    /// it, the lease is raised by a large step (`lease::COUNTER_LEASE_STEP`) and made durable.
    fn reserve_counters(&mut self, up_to: u64) -> Result<(), StorageError>;

    /// The member list of the data directory (`members.rs`): as found at open, then as last
    /// stored. Empty for a new directory, and for a log that keeps none.
    fn stored_members(&self) -> Vec<MemberRecord> {
        Vec::new()
    }

    /// Replaces the member list durably: when this returns `Ok`, a later open's
    /// `stored_members()` is `records`, whatever happens to the process. A log that keeps no
    /// member list ignores it.
    fn store_members(&mut self, _records: &[MemberRecord]) -> Result<(), StorageError> {
        Ok(())
    }

    /// Appends to `found`, ascending, the offsets of durable records from `from` (raised to
    /// `start()`) whose namespace `key` selects, at most `count_max` of them, and returns how
    /// far the search got: every selected record before the returned offset is in `found`.
    /// The returned offset is one past the last found offset when `count_max` were found, the
    /// durable end when the search reached it, or a point in between when the search stopped
    /// early: after reading its bound of segment indexes
    /// (`StorageConfig::namespace_segments_per_query_max`), or when `work` ran out; the caller
    /// calls again from there.
    ///
    /// `work` is what the search may still do, in units of one record looked at or one piece
    /// of an index file read; it is decreased by what was done (saturating at 0), and the
    /// search stops once it is spent, after at least one unit of progress. The engine hands
    /// it the turn's record budget, so index work is bounded per reactor turn like reads.
    ///
    /// The default reads the records (a scan); the file log answers from its namespace index.
    fn find_namespace_within(
        &mut self,
        key: &NamespaceKey,
        from: Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        scan_namespace_within(self, key, from, count_max, work, found)
    }

    /// `find_namespace_within` with unbounded work.
    fn find_namespace(
        &mut self,
        key: &NamespaceKey,
        from: Offset,
        count_max: usize,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        let mut work = u64::MAX;
        self.find_namespace_within(key, from, count_max, &mut work, found)
    }

    /// The id of the newest durable record of `namespace`, or `None` when no retained record
    /// has it (a conditional produce's check, protocol.md section 6). The answer is always
    /// whole; the work it took is subtracted from `work` (saturating; the units of
    /// `find_namespace_within`), so the caller can charge it. The default reads every record
    /// (one unit each); the file log asks its namespace index, newest segment first, and
    /// stops at the first segment that holds the namespace: a test of each newer segment's
    /// `NameFilter` in memory, and an index lookup of those whose filter may hold it.
    fn last_in_namespace(
        &mut self,
        namespace: &str,
        work: &mut u64,
    ) -> Result<Option<EventId>, StorageError> {
        last_by_scan(self, namespace, work)
    }

    /// Goes on with `scan`, the search for the newest durable record of its namespace, for
    /// at most `work` units (one per record read; decreased by what it used): `Some` with the
    /// answer of `last_in_namespace` once the search reached the durable end, `None` when
    /// `work` ran out first (call again with the same `scan`: it goes on where it stopped, and
    /// records made durable meanwhile are read too). A conditional produce's check goes
    /// through this, so that a log that must read its records to answer does so over several
    /// turns. The default reads the records; the file log with its namespace index answers
    /// at once, as `last_in_namespace` does (its work bounded per segment, not by `work`,
    /// and subtracted from it), and reads the records only without the index.
    fn last_in_namespace_within(
        &mut self,
        scan: &mut LastScan,
        work: &mut u64,
    ) -> Result<Option<Option<EventId>>, StorageError> {
        scan_last_within(self, scan, work)
    }

    /// Goes on with a namespace listing (`listing.rs`): counts the namespaces of the records
    /// from where it stopped, asking `accept` about each name that could be on its page, until
    /// `work` (the same units as `find_namespace_within`) or `accept`'s own budget is spent
    /// (`NameFilter::spent`), or the durable end is
    /// reached (then returns true: the page is complete). The default reads the records; the
    /// file log walks its sealed segments' namespace indexes in name order.
    fn list_namespaces_within(
        &mut self,
        listing: &mut NamespaceListing,
        accept: &mut dyn NameFilter,
        work: &mut u64,
    ) -> Result<bool, StorageError> {
        listing::scan_listing(self, listing, accept, work)
    }

    /// Appends to `found`, ascending, the offsets of durable records from `from` whose own id
    /// (`TraceKey::Id`) or parent id (`TraceKey::Parent`) is `id`, at most `count_max`, and
    /// returns how far the search got, as `find_namespace_within` does (the same units of
    /// `work`, the same bound of segments per call). The default reads the records; the file
    /// log asks its trace indexes (`keyed.rs`).
    fn find_traced_within(
        &mut self,
        key: TraceKey,
        id: EventId,
        from: Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        scan_traced_within(self, key, id, from, count_max, work, found)
    }

    /// Buffers the record of an idempotent produce whose events were appended since the last
    /// sync. The next `sync` makes it durable no later than the events; if that sync fails it
    /// is discarded with them.
    fn append_produced(&mut self, record: &ProducedRecord);

    /// The produced records found at open whose events the log holds, oldest first (the
    /// engine takes them once, when it starts on the log).
    fn take_produced(&mut self) -> Vec<ProducedRecord>;

    /// Records in the produced journal (durable ones), for compaction.
    fn produced_count(&self) -> u64;

    /// Replaces the produced journal with `records` (compaction), atomically.
    fn rewrite_produced(&mut self, records: &[ProducedRecord]) -> Result<(), StorageError>;

    /// The purges and per-namespace retention cutoffs in force: every reader of the log that
    /// hands events out skips those [`HideRules::hides`] (a shared copy, cheap to clone).
    fn hide_rules(&self) -> Arc<HideRules>;

    /// Merges `rules` into the purge set (each adds a (glob, kind) or raises its bound; at
    /// most `rules_max` of them) and, when that changed anything, makes the new set durable
    /// before it returns. On an error nothing changed. The outcome of each rule is returned in
    /// order.
    fn add_purges(
        &mut self,
        rules: &[PurgeRule],
        limits: PurgeLimits,
    ) -> Result<PurgeOutcomes, StorageError>;
}

/// `Log::read_one` by `read`: visits the first record `read` from `at` visits, and stops
/// before the next.
pub fn read_first<L: Log + ?Sized>(
    log: &mut L,
    at: Offset,
    visit: &mut dyn FnMut(EventRef<'_>),
) -> Result<(), StorageError> {
    let mut visited = false;
    log.read(at, &mut |_, event| {
        if visited {
            return false;
        }
        visited = true;
        visit(event);
        true
    })?;
    Ok(())
}

/// `Log::last_in_namespace` by reading every record (one unit of `work` each): the reference
/// the index must agree with.
pub fn last_by_scan<L: Log + ?Sized>(
    log: &mut L,
    namespace: &str,
    work: &mut u64,
) -> Result<Option<EventId>, StorageError> {
    let mut last = None;
    let start = log.start();
    log.read(start, &mut |_, event| {
        *work = work.saturating_sub(1);
        if event.namespace == namespace {
            last = Some(event.id);
        }
        true
    })?;
    Ok(last)
}

/// A search for the newest durable record of one namespace that reads the log's records,
/// kept between calls of [`Log::last_in_namespace_within`] so that it can go on in a later
/// turn where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastScan {
    namespace: String,
    /// The next record to read.
    next: Offset,
    /// The id of the newest record of the namespace read so far.
    last: Option<EventId>,
}

impl LastScan {
    /// A search for the newest record of `namespace` that starts at the log's start.
    pub fn new(namespace: &str) -> LastScan {
        LastScan {
            namespace: namespace.to_string(),
            next: Offset(0),
            last: None,
        }
    }

    /// The namespace searched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The memory the search holds, for its connection's memory budget.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<LastScan>() + self.namespace.capacity()
    }
}

/// `Log::last_in_namespace_within` by reading the records, one unit of `work` each, from where
/// `scan` stopped (raised to the log's start) up to the durable end. At least one record is
/// read per call with `work` above zero, so repeated calls reach the end.
pub fn scan_last_within<L: Log + ?Sized>(
    log: &mut L,
    scan: &mut LastScan,
    work: &mut u64,
) -> Result<Option<Option<EventId>>, StorageError> {
    let from = scan.next.max(log.start());
    let namespace = scan.namespace.as_str();
    let mut last = scan.last;
    let mut budget = *work;
    let next = log.read(from, &mut |_, event| {
        if budget == 0 {
            return false;
        }
        budget -= 1;
        if event.namespace == namespace {
            last = Some(event.id);
        }
        true
    })?;
    *work = budget;
    scan.next = next;
    scan.last = last;
    Ok((next >= log.durable_end()).then_some(last))
}

/// `Log::find_namespace` by reading every record: the reference the index must agree with.
pub fn scan_namespace<L: Log + ?Sized>(
    log: &mut L,
    key: &NamespaceKey,
    from: Offset,
    count_max: usize,
    found: &mut Vec<Offset>,
) -> Result<Offset, StorageError> {
    scan_namespace_within(log, key, from, count_max, &mut u64::MAX.clone(), found)
}

/// `Log::find_namespace_within` by reading the records, one unit of `work` each, from
/// `from` up to the durable end.
pub fn scan_namespace_within<L: Log + ?Sized>(
    log: &mut L,
    key: &NamespaceKey,
    from: Offset,
    count_max: usize,
    work: &mut u64,
    found: &mut Vec<Offset>,
) -> Result<Offset, StorageError> {
    scan_within(log, from, count_max, work, found, |event| {
        key.matches(event.namespace)
    })
}

/// `Log::find_traced_within` by reading the records, one unit of `work` each: the reference
/// the trace index must agree with.
pub fn scan_traced_within<L: Log + ?Sized>(
    log: &mut L,
    key: TraceKey,
    id: EventId,
    from: Offset,
    count_max: usize,
    work: &mut u64,
    found: &mut Vec<Offset>,
) -> Result<Offset, StorageError> {
    scan_within(log, from, count_max, work, found, |event| {
        key.matches(event, id)
    })
}

/// The offsets from `from` of up to `count_max` records that `wanted` picks, reading one
/// record per unit of `work` (at least one record); returns where the next call starts.
fn scan_within<L: Log + ?Sized>(
    log: &mut L,
    from: Offset,
    count_max: usize,
    work: &mut u64,
    found: &mut Vec<Offset>,
    mut wanted: impl FnMut(EventRef<'_>) -> bool,
) -> Result<Offset, StorageError> {
    let mut count = 0;
    let mut read = 0u64;
    log.read(from, &mut |offset, event| {
        if count >= count_max || (*work == 0 && read > 0) {
            return false;
        }
        *work = work.saturating_sub(1);
        read += 1;
        if wanted(event) {
            found.push(offset);
            count += 1;
        }
        true
    })
}
