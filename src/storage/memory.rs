//! An in-memory [`Log`] for tests and the cluster simulator, with fault injection.
//!
//! It behaves like [`super::FileLog`] for the same operations (a test runs both on one seeded
//! sequence), except that retention is a no-op and `stats().byte_count` counts memory. Faults:
//! - `fail_next_sync`: the next `sync` fails like a full disk (buffered records are dropped);
//! - [`MemoryLog::crash`]: a power loss, losing what the fsync policy had not made durable on
//!   the medium (optionally keeping part of it: a torn write);
//! - [`MemoryLog::flip_bit`]: a record goes bad on the medium and reads of it fail with
//!   `Unreadable`, as a checksum failure in a file would.
//!
//! The counter lease is kept like the file log's (`lease.rs`): raised in the same steps, and
//! durable at once, so it survives `crash`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::purge::{merge_all, HideRules, PurgeOutcomes};
use super::{Log, LogActivity, LogStats, MemberRecord, Offset, ProducedRecord, StorageError};
use crate::config::FsyncPolicy;
use crate::event::PurgeRule;
use crate::event::{Event, EventRef, StartPosition, VersionVector};
use crate::time::{MonotonicMs, WallClockMs};

/// Keeps every record in memory. `fail_next_sync` makes the next `sync` fail like a full disk.
#[derive(Debug)]
pub struct MemoryLog {
    /// Records from `start` on.
    records: VecDeque<Event>,
    start: u64,
    durable_end: u64,
    vector: VersionVector,
    /// Test hook: the next `sync` fails like a full disk (with the `testing` feature only).
    #[cfg(any(test, feature = "testing"))]
    pub fail_next_sync: bool,
    #[cfg(not(any(test, feature = "testing")))]
    fail_next_sync: bool,
    fsync: FsyncPolicy,
    /// One past the last record covered by a simulated fdatasync: what survives `crash`.
    fsynced_end: u64,
    last_fsync_ms: Option<u64>,
    /// Offsets whose record fails its checksum when read.
    corrupt: BTreeSet<u64>,
    /// The counter lease, as the file log keeps it: durable at once, so it survives `crash`.
    counter_lease: u64,
    /// How many times the lease was raised (each a file write and fdatasync in the file log).
    pub lease_writes: u64,
    /// Simulated fdatasyncs, reported by `activity`.
    fsync_count: u64,
    /// Namespace index queries (`find_namespace_within` calls): what a catch-up read cost,
    /// for tests.
    pub namespace_queries: u64,
    /// Records `read` visited, for tests.
    pub records_visited: u64,
    /// The produced journal: durable records, and those buffered since the last sync.
    produced: Vec<ProducedRecord>,
    produced_pending: Vec<ProducedRecord>,
    /// The member list, durable at once like the lease.
    members: Vec<MemberRecord>,
    /// Purges (durable at once, so they survive `crash`) and per-namespace retention cutoffs.
    hide: Arc<HideRules>,
}

impl Default for MemoryLog {
    fn default() -> MemoryLog {
        MemoryLog::with_fsync(FsyncPolicy::Always)
    }
}

impl MemoryLog {
    /// An empty log whose every sync counts as an fdatasync (`--fsync always`).
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// A log whose simulated fdatasyncs follow `fsync`, as the file log's do.
    pub fn with_fsync(fsync: FsyncPolicy) -> MemoryLog {
        MemoryLog {
            records: VecDeque::new(),
            start: 0,
            durable_end: 0,
            vector: VersionVector::new(),
            fail_next_sync: false,
            fsync,
            fsynced_end: 0,
            last_fsync_ms: None,
            corrupt: BTreeSet::new(),
            counter_lease: 0,
            lease_writes: 0,
            fsync_count: 0,
            namespace_queries: 0,
            records_visited: 0,
            produced: Vec::new(),
            produced_pending: Vec::new(),
            members: Vec::new(),
            hide: Arc::default(),
        }
    }

    /// Deletes the oldest `count` durable records, as retention deletes old segments (the
    /// memory log's own retention is a no-op).
    #[cfg(any(test, feature = "testing"))]
    pub fn delete_oldest(&mut self, count: u64) {
        let count = count.min(self.durable_end - self.start);
        self.records.drain(..count as usize);
        self.start += count;
    }

    /// One past the last record that survives a power loss now.
    #[cfg(any(test, feature = "testing"))]
    pub fn fsynced_end(&self) -> Offset {
        Offset(self.fsynced_end)
    }

    /// Per-namespace retention rules, as `StorageConfig::namespace_retention` gives them to
    /// the file log.
    pub fn set_namespace_retention(&mut self, rules: &[crate::config::NamespaceRetention]) {
        Arc::make_mut(&mut self.hide).set_retention_rules(rules);
    }

    /// Simulates a power loss and restart: every record after the last simulated fdatasync
    /// is lost, except the first `keep_unsynced` of them (the part of a torn write that did
    /// reach the medium). Records appended but never synced are always lost.
    #[cfg(any(test, feature = "testing"))]
    pub fn crash(&mut self, keep_unsynced: u64) {
        let end = self
            .durable_end
            .min(self.fsynced_end.saturating_add(keep_unsynced));
        self.records.truncate((end - self.start) as usize);
        self.durable_end = end;
        self.fsynced_end = end;
        self.last_fsync_ms = None;
        self.corrupt.retain(|&offset| offset < end);
        self.recompute_vector();
        // As the file log's open: records whose events did not survive are dropped.
        self.produced_pending.clear();
        let vector = self.vector.clone();
        self.produced.retain(|record| record.stored_in(&vector));
    }

    /// Makes the record at `offset` fail its checksum on every later read (a bit flip on the
    /// medium). Returns false when there is no durable record there.
    #[cfg(any(test, feature = "testing"))]
    pub fn flip_bit(&mut self, offset: Offset) -> bool {
        let present = (self.start..self.durable_end).contains(&offset.0);
        if present {
            self.corrupt.insert(offset.0);
        }
        present
    }

    fn fsync_due(&self, now_ms: u64) -> bool {
        match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(interval_ms) => self
                .last_fsync_ms
                .is_none_or(|last| now_ms >= last.saturating_add(interval_ms)),
            FsyncPolicy::Never => false,
        }
    }

    fn corrupt_error(offset: u64) -> StorageError {
        StorageError::Unreadable {
            context: format!(
                "memory log record at offset {offset}: injected bit flip; offsets \
                 {offset}..{} of this node's log are unreadable",
                offset + 1
            ),
            offsets: Offset(offset)..Offset(offset + 1),
        }
    }

    fn end_u64(&self) -> u64 {
        self.start + self.records.len() as u64
    }

    fn recompute_vector(&mut self) {
        let mut vector = VersionVector::new();
        for event in &self.records {
            vector.observe(event.id);
        }
        self.vector = vector;
    }
}

impl Log for MemoryLog {
    fn append_view(&mut self, event: EventRef<'_>) -> Result<Offset, StorageError> {
        super::record::check_size(event)?;
        let offset = Offset(self.end_u64());
        self.vector.observe(event.id);
        self.records.push_back(event.to_event());
        Ok(offset)
    }

    fn sync(&mut self, now: MonotonicMs) -> Result<Offset, StorageError> {
        let now_ms = now.0;
        if self.fail_next_sync {
            self.fail_next_sync = false;
            let keep = (self.durable_end - self.start) as usize;
            self.records.truncate(keep);
            self.recompute_vector();
            self.produced_pending.clear();
            return Err(StorageError::Io {
                context: "memory log sync".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "injected failure (disk full)",
                ),
            });
        }
        self.produced.append(&mut self.produced_pending);
        let written = self.end_u64() > self.durable_end || self.fsynced_end < self.durable_end;
        self.durable_end = self.end_u64();
        if written && self.fsync_due(now_ms) {
            self.fsynced_end = self.durable_end;
            self.last_fsync_ms = Some(now_ms);
            self.fsync_count += 1;
        }
        Ok(Offset(self.durable_end))
    }

    fn start(&self) -> Offset {
        Offset(self.start)
    }

    fn end(&self) -> Offset {
        Offset(self.end_u64())
    }

    fn durable_end(&self) -> Offset {
        Offset(self.durable_end)
    }

    fn read(
        &mut self,
        from: Offset,
        visit: &mut dyn FnMut(Offset, EventRef<'_>) -> bool,
    ) -> Result<Offset, StorageError> {
        let mut offset = from.0.max(self.start);
        while offset < self.durable_end {
            if self.corrupt.contains(&offset) {
                return Err(MemoryLog::corrupt_error(offset));
            }
            let event = &self.records[(offset - self.start) as usize];
            self.records_visited += 1;
            if !visit(Offset(offset), event.view()) {
                break;
            }
            offset += 1;
        }
        Ok(Offset(offset))
    }

    /// The default scan, counted.
    fn find_namespace_within(
        &mut self,
        key: &super::NamespaceKey,
        from: Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<Offset>,
    ) -> Result<Offset, StorageError> {
        self.namespace_queries += 1;
        super::scan_namespace_within(self, key, from, count_max, work, found)
    }

    fn find_start(&mut self, position: &StartPosition) -> Result<Offset, StorageError> {
        // Scans from the start, like the file log scans its first candidate segment: a
        // corrupt record on the way is reported, not skipped.
        let start = Offset(self.start);
        match position {
            StartPosition::Beginning => Ok(start),
            StartPosition::End => Ok(Offset(self.durable_end)),
            StartPosition::Timestamp(ms) => self.read(start, &mut |_, e| e.timestamp_ms < *ms),
            StartPosition::AfterId(_) | StartPosition::Cursor(_) => match position.cursor() {
                Some(cursor) => self.read(start, &mut |_, e| cursor.covers(e.id)),
                // Unreachable: both kinds have a cursor; "no position" starts at the end.
                None => Ok(Offset(self.durable_end)),
            },
        }
    }

    fn version_vector(&self) -> &VersionVector {
        &self.vector
    }

    /// Deletes nothing, but moves the per-namespace retention cutoffs (set with
    /// `set_namespace_retention`) as the file log does.
    fn apply_retention(&mut self, now: WallClockMs) -> Result<u64, StorageError> {
        if self.hide.has_retention() {
            Arc::make_mut(&mut self.hide).advance_retention(now.0);
        }
        Ok(0)
    }

    fn hide_rules(&self) -> Arc<HideRules> {
        Arc::clone(&self.hide)
    }

    fn add_purges(
        &mut self,
        rules: &[PurgeRule],
        limits: super::PurgeLimits,
    ) -> Result<PurgeOutcomes, StorageError> {
        let (next, outcomes, changed) = merge_all(&self.hide, rules, limits);
        if changed {
            self.hide = Arc::new(next);
        }
        Ok(outcomes)
    }

    fn activity(&self) -> LogActivity {
        LogActivity {
            fsync_count: self.fsync_count,
            fsync_caller_count: self.fsync_count,
            ..LogActivity::default()
        }
    }

    fn append_produced(&mut self, record: &ProducedRecord) {
        self.produced_pending.push(*record);
    }

    /// A copy each time: an engine restarted on this log (the simulator) takes them again.
    fn take_produced(&mut self) -> Vec<ProducedRecord> {
        self.produced.clone()
    }

    fn produced_count(&self) -> u64 {
        self.produced.len() as u64
    }

    fn rewrite_produced(&mut self, records: &[ProducedRecord]) -> Result<(), StorageError> {
        self.produced = records.to_vec();
        Ok(())
    }

    fn stats(&self) -> LogStats {
        LogStats {
            event_count: self.records.len() as u64,
            byte_count: self.records.iter().map(|e| e.size_in_memory() as u64).sum(),
            segment_count: 1,
            cache_bytes: 0,
        }
    }

    fn counter_floor(&self) -> u64 {
        self.counter_lease
    }

    fn stored_members(&self) -> Vec<MemberRecord> {
        self.members.clone()
    }

    fn store_members(&mut self, records: &[MemberRecord]) -> Result<(), StorageError> {
        self.members = records.to_vec();
        Ok(())
    }

    fn reserve_counters(&mut self, up_to: u64) -> Result<(), StorageError> {
        if up_to > self.counter_lease {
            self.counter_lease = super::lease::next_lease(up_to);
            self.lease_writes += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::tests::event;

    fn synced(log: &mut MemoryLog, counters: std::ops::Range<u64>, now_ms: u64) {
        for counter in counters {
            log.append(event(counter, 1, 0, 4)).unwrap();
        }
        log.sync(MonotonicMs(now_ms)).unwrap();
    }

    #[test]
    fn crash_loses_what_the_policy_had_not_fsynced() {
        let mut log = MemoryLog::with_fsync(FsyncPolicy::IntervalMs(100));
        synced(&mut log, 1..4, 1000); // first sync: fdatasync
        synced(&mut log, 4..6, 1050); // written, not fdatasync'd
        log.append(event(6, 1, 0, 4)).unwrap(); // never synced
        assert_eq!(
            (log.durable_end(), log.fsynced_end()),
            (Offset(5), Offset(3))
        );
        log.crash(1); // a torn write: one of the unsynced records reached the medium
        assert_eq!((log.end(), log.durable_end()), (Offset(4), Offset(4)));
        assert_eq!(log.version_vector().get(crate::event::ActorId(1)), 4);
        synced(&mut log, 7..8, 1100);
        synced(&mut log, 8..9, 1150);
        assert_eq!(log.fsynced_end(), Offset(5));
        let mut never = MemoryLog::with_fsync(FsyncPolicy::Never);
        synced(&mut never, 1..4, 0);
        never.crash(0);
        assert_eq!(never.durable_end(), Offset(0));
        let mut always = MemoryLog::new();
        synced(&mut always, 1..4, 0);
        always.crash(0);
        assert_eq!(always.durable_end(), Offset(3));
    }

    #[test]
    fn flipped_records_fail_reads_and_scans() {
        let mut log = MemoryLog::new();
        synced(&mut log, 1..6, 0);
        assert!(log.flip_bit(Offset(2)));
        assert!(!log.flip_bit(Offset(9)));
        let mut seen = Vec::new();
        let result = log.read(Offset(0), &mut |o, _| {
            seen.push(o.0);
            true
        });
        assert!(matches!(result, Err(StorageError::Unreadable { .. })));
        assert_eq!(seen, [0, 1]);
        assert!(log.read(Offset(3), &mut |_, _| true).is_ok());
        let position = StartPosition::AfterId(crate::event::EventId::new(4, 1));
        assert!(log.find_start(&position).is_err());
    }
}
