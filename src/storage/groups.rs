//! The group journal: the durable state of consumer groups (docs/consumers.md), in one small
//! append-only file beside the log. The engine decides what to record; this file only writes
//! and reads the records.
//!
//! A record is `u32 body size | u32 CRC32C(size bytes, body)` (little endian) and a body: a kind
//! byte and the record's fields. Recovery cuts a torn tail (bytes after the last valid record
//! that no valid record follows: only a tail that was never synced can be torn). Damage that
//! valid records follow is refused, or with `flo --repair` copied to a quarantine file and
//! skipped record by record (docs/consumers.md, "Damage").
//!
//! Format versions (the file has no header; a version is the set of record kinds it may
//! hold): version 1 has kinds 1-8; version 2 adds kind 9, a Create with the name of the
//! principal that created the group (its owner). A version 1 journal is a valid version 2
//! journal, so upgrading needs nothing: its groups have no owner. A flo of version 1 refuses
//! a journal with kind 9 records as damaged (docs/storage.md, "The group journal"). Version 3
//! adds kind 10, a group's settings (ack time-out, max deliveries, max in flight); a version 2
//! journal is a valid version 3 journal (its groups have the server's default settings), and
//! a flo of version 2 refuses kind 10 records as damage.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::repair::write_durably;
use super::syncer::{Job, Syncer};
use super::{io_error, Offset, RecoveryMode, StorageError};
use crate::config::FsyncPolicy;
use crate::event::{ActorId, Cursor, EventId, VersionVector};
use crate::time::MonotonicMs;

/// The journal's file name in the data directory.
pub const GROUP_JOURNAL_FILE: &str = "groups.journal";
/// A body larger than this is damage, not a record (names and globs are at most 64 KiB, a
/// cursor at most 65,535 entries of 10 bytes, an Ack record is written in pieces below it).
const RECORD_BODY_SIZE_MAX: u32 = 1 << 20;
/// Offsets per Ack record, so that a record stays far below `RECORD_BODY_SIZE_MAX`.
pub const ACK_OFFSETS_PER_RECORD_MAX: usize = 16 * 1024;

/// One change to a group's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// The group exists, with this glob, starting at `start` and skipping what `filter` covers;
    /// `owner` is the principal that created it (with an auth file; kind 9), `None` without
    /// one (kind 1, and every group of a version 1 journal).
    Create {
        group: String,
        glob: String,
        start: Offset,
        filter: Cursor,
        owner: Option<String>,
    },
    /// Every matching record below `floor` is acknowledged or parked.
    Floor { group: String, floor: Offset },
    /// These records are acknowledged.
    Ack { group: String, offsets: Vec<Offset> },
    /// The record at `offset` was delivered `count` times (written for redeliveries only).
    Deliveries {
        group: String,
        offset: Offset,
        count: u32,
    },
    /// The record at `offset` (event `id`) was parked.
    Park {
        group: String,
        offset: Offset,
        id: EventId,
    },
    /// The parked record at `offset` (event `id`) was replayed: it is pending again, waiting
    /// for delivery, with its delivery count restarted. Below the floor it stays pending until
    /// an Ack record (below the floor) or a new Park record names it.
    Replay {
        group: String,
        offset: Offset,
        id: EventId,
    },
    /// The group was moved to `start` (an operator's reset): acknowledgements, pending and
    /// replayed records and delivery counts are forgotten; parked records stay parked.
    Reset {
        group: String,
        start: Offset,
        filter: Cursor,
    },
    /// The group was deleted.
    Delete { group: String },
    /// The group's settings (format version 3, kind 10): written after its Create and
    /// whenever they change. A group without one has the server's defaults.
    Settings {
        group: String,
        ack_timeout_ms: u32,
        max_deliveries: u16,
        max_in_flight: u32,
    },
}

const KIND_CREATE: u8 = 1;
const KIND_FLOOR: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_DELIVERIES: u8 = 4;
const KIND_PARK: u8 = 5;
const KIND_REPLAY: u8 = 6;
const KIND_RESET: u8 = 7;
const KIND_DELETE: u8 = 8;
/// A Create with its owner (format version 2).
const KIND_CREATE_OWNED: u8 = 9;
/// A group's settings (format version 3).
const KIND_SETTINGS: u8 = 10;

/// Where group state is kept. `append` only buffers; `sync` writes and makes durable under the
/// fsync policy everything appended since the last sync.
pub trait GroupStore: Send {
    /// Every record of the journal, in the order they were written (start-up recovery).
    fn load(&mut self) -> Result<Vec<GroupRecord>, StorageError>;
    /// Buffers one record.
    fn append(&mut self, record: &GroupRecord);
    /// Writes the buffered records and starts the fdatasync the policy asks for without
    /// waiting for it (on a storage helper thread), so that it overlaps the log's; `sync`
    /// waits for it. A store that cannot start one does nothing here.
    fn start_sync(&mut self, _now: MonotonicMs) -> Result<(), StorageError> {
        Ok(())
    }
    /// Writes the buffered records and makes them durable. On failure they are discarded.
    fn sync(&mut self, now: MonotonicMs) -> Result<(), StorageError>;
    /// The bytes of the journal (durable and buffered).
    fn size_bytes(&self) -> u64;
    /// Replaces the whole journal with `records` (a snapshot), atomically.
    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError>;
}

/// Appends the bytes of one record to `out`.
pub fn encode_record(record: &GroupRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let body_at = out.len();
    match record {
        GroupRecord::Create {
            group,
            glob,
            start,
            filter,
            owner,
        } => {
            out.push(match owner {
                Some(_) => KIND_CREATE_OWNED,
                None => KIND_CREATE,
            });
            put_text(out, group);
            put_text(out, glob);
            out.extend_from_slice(&start.0.to_le_bytes());
            put_filter(out, filter);
            if let Some(owner) = owner {
                put_text(out, owner);
            }
        }
        GroupRecord::Floor { group, floor } => {
            out.push(KIND_FLOOR);
            put_text(out, group);
            out.extend_from_slice(&floor.0.to_le_bytes());
        }
        GroupRecord::Ack { group, offsets } => {
            assert!(
                offsets.len() <= ACK_OFFSETS_PER_RECORD_MAX,
                "an Ack record holds at most {ACK_OFFSETS_PER_RECORD_MAX} offsets"
            );
            out.push(KIND_ACK);
            put_text(out, group);
            out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
            for offset in offsets {
                out.extend_from_slice(&offset.0.to_le_bytes());
            }
        }
        GroupRecord::Deliveries {
            group,
            offset,
            count,
        } => {
            out.push(KIND_DELIVERIES);
            put_text(out, group);
            out.extend_from_slice(&offset.0.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        GroupRecord::Park { group, offset, id } => {
            out.push(KIND_PARK);
            put_text(out, group);
            out.extend_from_slice(&offset.0.to_le_bytes());
            put_id(out, *id);
        }
        GroupRecord::Replay { group, offset, id } => {
            out.push(KIND_REPLAY);
            put_text(out, group);
            out.extend_from_slice(&offset.0.to_le_bytes());
            put_id(out, *id);
        }
        GroupRecord::Reset {
            group,
            start,
            filter,
        } => {
            out.push(KIND_RESET);
            put_text(out, group);
            out.extend_from_slice(&start.0.to_le_bytes());
            put_filter(out, filter);
        }
        GroupRecord::Delete { group } => {
            out.push(KIND_DELETE);
            put_text(out, group);
        }
        GroupRecord::Settings {
            group,
            ack_timeout_ms,
            max_deliveries,
            max_in_flight,
        } => {
            out.push(KIND_SETTINGS);
            put_text(out, group);
            out.extend_from_slice(&ack_timeout_ms.to_le_bytes());
            out.extend_from_slice(&max_deliveries.to_le_bytes());
            out.extend_from_slice(&max_in_flight.to_le_bytes());
        }
    }
    let body_size = (out.len() - body_at) as u32;
    out[start..start + 4].copy_from_slice(&body_size.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&body_size.to_le_bytes()), &out[body_at..]);
    out[start + 4..body_at].copy_from_slice(&crc.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Names and globs are validated against u16 limits before they reach the journal.
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor: its floor id, a `u32` entry count, then per entry a `u16` actor and `u64` counter.
fn put_filter(out: &mut Vec<u8>, filter: &Cursor) {
    put_id(out, filter.floor);
    out.extend_from_slice(&(filter.vector.len() as u32).to_le_bytes());
    for (actor, counter) in filter.vector.iter() {
        out.extend_from_slice(&actor.0.to_le_bytes());
        out.extend_from_slice(&counter.to_le_bytes());
    }
}

fn put_id(out: &mut Vec<u8>, id: EventId) {
    out.extend_from_slice(&id.counter.to_le_bytes());
    out.extend_from_slice(&id.actor.0.to_le_bytes());
}

/// Decodes the records at the start of `bytes`, up to the first torn or damaged one. Returns
/// them and how many bytes they take (where a torn tail begins).
#[cfg(test)]
pub fn decode_records(bytes: &[u8]) -> (Vec<GroupRecord>, usize) {
    let mut records = Vec::new();
    let mut position = 0;
    while let Some((record, size)) = decode_record_at(&bytes[position..]) {
        records.push(record);
        position += size;
    }
    (records, position)
}

/// The record at the start of `bytes` and its size, if it is whole, its checksum matches and
/// its body decodes.
fn decode_record_at(bytes: &[u8]) -> Option<(GroupRecord, usize)> {
    let header = bytes.get(..8)?;
    let body_size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if body_size == 0 || body_size > RECORD_BODY_SIZE_MAX {
        return None;
    }
    let body = bytes.get(8..8 + body_size as usize)?;
    // A cheap test before the checksum: a known kind and a group name that fits the body.
    let name_size = u16::from_le_bytes([*body.get(1)?, *body.get(2)?]) as usize;
    if !(KIND_CREATE..=KIND_SETTINGS).contains(&body[0]) || 3 + name_size > body.len() {
        return None;
    }
    if crc32c::crc32c_append(crc32c::crc32c(&header[..4]), body) != crc {
        return None;
    }
    let record = decode_body(&mut Body { bytes: body })?;
    Some((record, 8 + body_size as usize))
}

/// What start-up finds in a journal: the records that verify, where the torn tail begins,
/// and the damaged byte ranges that valid records follow (which are not a torn tail: synced
/// records lie after them).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JournalScan {
    pub records: Vec<GroupRecord>,
    /// The end of the last valid record: the bytes after it are a torn tail.
    pub valid_end: usize,
    /// Damaged ranges followed by a valid record, in order.
    pub damaged: Vec<std::ops::Range<usize>>,
    /// Per damaged range, the group its first bytes name, when they can be read at all (a
    /// guess: the damage may be in the name).
    pub damaged_groups: Vec<Option<String>>,
}

/// Scans the whole journal. After a record that does not verify, every later byte position
/// is tried as the start of a record (a damaged size field hides where the next one starts):
/// a record found there makes the skipped bytes damage, none makes them a torn tail. Each
/// position costs a few field reads unless its kind and sizes are plausible, so only real
/// candidates are checksummed.
pub fn scan_journal(bytes: &[u8]) -> JournalScan {
    let mut scan = JournalScan::default();
    let mut position = 0;
    while position < bytes.len() {
        if let Some((record, size)) = decode_record_at(&bytes[position..]) {
            scan.records.push(record);
            position += size;
            scan.valid_end = position;
            continue;
        }
        let next = (position + 1..bytes.len()).find(|&at| decode_record_at(&bytes[at..]).is_some());
        let Some(next) = next else {
            break;
        };
        scan.damaged.push(position..next);
        scan.damaged_groups
            .push(guess_group(&bytes[position..next]));
        position = next;
    }
    scan
}

/// The group name a damaged record's body starts with, if it is readable text.
fn guess_group(damaged: &[u8]) -> Option<String> {
    let body = damaged.get(8..)?;
    let size = u16::from_le_bytes([*body.get(1)?, *body.get(2)?]) as usize;
    let name = std::str::from_utf8(body.get(3..3 + size)?).ok()?;
    (!name.is_empty() && !name.chars().any(char::is_control)).then(|| name.to_string())
}

impl JournalScan {
    /// The damage, for an error or a log line: the byte ranges and the groups they probably
    /// belonged to.
    pub fn describe_damage(&self) -> String {
        let mut parts = Vec::new();
        for (range, group) in self.damaged.iter().zip(&self.damaged_groups) {
            let group = match group {
                Some(name) => format!("probably of group {name:?}"),
                None => "group unreadable".to_string(),
            };
            parts.push(format!("bytes {}..{} ({group})", range.start, range.end));
        }
        parts.join(", ")
    }
}

/// The file `--repair` copies a damaged journal to before it drops the damaged records.
pub fn journal_quarantine_path(dir: &Path, position: usize) -> PathBuf {
    dir.join(format!("{GROUP_JOURNAL_FILE}.quarantine-{position}"))
}

/// The refusal when the journal is damaged in the middle and start-up may not repair it.
fn damage_error(path: &Path, quarantine: &Path, scan: &JournalScan) -> StorageError {
    StorageError::Corrupt {
        context: format!(
            "group journal {} is damaged where valid records follow ({}): this is not a torn \
             tail, and cutting it would lose synced acknowledgements; flo does not drop them \
             by itself: start once with --repair to copy the journal to {} and skip only the \
             damaged records (the groups they named may redeliver events), or restore the \
             file from a backup",
            path.display(),
            scan.describe_damage(),
            quarantine.display()
        ),
    }
}

struct Body<'a> {
    bytes: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, size: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(..size)?;
        self.bytes = &self.bytes[size..];
        Some(taken)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let size = self.u16()? as usize;
        String::from_utf8(self.take(size)?.to_vec()).ok()
    }
    fn id(&mut self) -> Option<EventId> {
        let counter = self.u64()?;
        Some(EventId {
            counter,
            actor: ActorId(self.u16()?),
        })
    }
    fn filter(&mut self) -> Option<Cursor> {
        let floor = self.id()?;
        let entries = self.u32()?;
        let mut vector = VersionVector::new();
        for _ in 0..entries {
            let actor = ActorId(self.u16()?);
            vector.set(actor, self.u64()?);
        }
        Some(Cursor { floor, vector })
    }
}

fn decode_body(body: &mut Body) -> Option<GroupRecord> {
    let kind = *body.take(1)?.first()?;
    let group = body.text()?;
    let record = match kind {
        KIND_CREATE | KIND_CREATE_OWNED => {
            let glob = body.text()?;
            let start = Offset(body.u64()?);
            let filter = body.filter()?;
            let owner = match kind {
                KIND_CREATE_OWNED => Some(body.text()?),
                _ => None,
            };
            GroupRecord::Create {
                group,
                glob,
                start,
                filter,
                owner,
            }
        }
        KIND_FLOOR => GroupRecord::Floor {
            group,
            floor: Offset(body.u64()?),
        },
        KIND_ACK => {
            let count = body.u32()? as usize;
            if count > ACK_OFFSETS_PER_RECORD_MAX {
                return None;
            }
            let mut offsets = Vec::with_capacity(count);
            for _ in 0..count {
                offsets.push(Offset(body.u64()?));
            }
            GroupRecord::Ack { group, offsets }
        }
        KIND_DELIVERIES => GroupRecord::Deliveries {
            group,
            offset: Offset(body.u64()?),
            count: body.u32()?,
        },
        KIND_PARK => GroupRecord::Park {
            group,
            offset: Offset(body.u64()?),
            id: body.id()?,
        },
        KIND_REPLAY => GroupRecord::Replay {
            group,
            offset: Offset(body.u64()?),
            id: body.id()?,
        },
        KIND_RESET => GroupRecord::Reset {
            group,
            start: Offset(body.u64()?),
            filter: body.filter()?,
        },
        KIND_DELETE => GroupRecord::Delete { group },
        KIND_SETTINGS => GroupRecord::Settings {
            group,
            ack_timeout_ms: body.u32()?,
            max_deliveries: body.u16()?,
            max_in_flight: body.u32()?,
        },
        _ => return None,
    };
    body.bytes.is_empty().then_some(record)
}

/// The journal in memory, for tests and the simulator. Clones share the synced bytes, so a test
/// "restarts" by building an engine on `reopen()`, which sees only what was synced.
#[derive(Debug, Default, Clone)]
pub struct MemoryGroupStore {
    durable: Arc<Mutex<Vec<u8>>>,
    buffered: Vec<u8>,
}

impl MemoryGroupStore {
    pub fn new() -> MemoryGroupStore {
        MemoryGroupStore::default()
    }

    /// A store on the same synced bytes, without what this one buffered (a crash and restart).
    #[cfg(any(test, feature = "testing"))]
    pub fn reopen(&self) -> MemoryGroupStore {
        MemoryGroupStore {
            durable: Arc::clone(&self.durable),
            buffered: Vec::new(),
        }
    }

    fn durable(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock is a test failure already; the bytes are still fine.
        self.durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl GroupStore for MemoryGroupStore {
    fn load(&mut self) -> Result<Vec<GroupRecord>, StorageError> {
        let mut durable = self.durable();
        let scan = scan_journal(&durable);
        if !scan.damaged.is_empty() {
            let path = Path::new(GROUP_JOURNAL_FILE);
            return Err(damage_error(
                path,
                &journal_quarantine_path(Path::new(""), 0),
                &scan,
            ));
        }
        durable.truncate(scan.valid_end);
        Ok(scan.records)
    }

    fn append(&mut self, record: &GroupRecord) {
        encode_record(record, &mut self.buffered);
    }

    /// Completes at once: a started sync may finish any time before `sync` returns.
    fn start_sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.sync(now)
    }

    fn sync(&mut self, _now: MonotonicMs) -> Result<(), StorageError> {
        let buffered = std::mem::take(&mut self.buffered);
        self.durable().extend_from_slice(&buffered);
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        (self.durable().len() + self.buffered.len()) as u64
    }

    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for record in records {
            encode_record(record, &mut bytes);
        }
        *self.durable() = bytes;
        self.buffered.clear();
        Ok(())
    }
}

/// The journal as a file in the data directory.
#[derive(Debug)]
pub struct FileGroupStore {
    dir: PathBuf,
    /// Shared with the helper thread's fdatasync jobs.
    file: Arc<File>,
    size: u64,
    buffered: Vec<u8>,
    fsync: FsyncPolicy,
    last_fsync_ms: Option<u64>,
    written_since_fsync: bool,
    /// fdatasyncs of the journal started since open, and those run on the caller's thread
    /// (the reactor's) rather than on the helper thread (tests and the benchmark).
    fsync_count: u64,
    caller_fsync_count: u64,
    /// The helper thread for the journal's fdatasyncs (`syncer.rs`): under `always` the
    /// journal's runs there while the reactor runs the log's; under `interval` nothing waits
    /// for it.
    syncer: Syncer,
    /// What `load` does with damage that valid records follow: refuse, or (`flo --repair`)
    /// quarantine a copy and skip the damaged records.
    recovery: RecoveryMode,
}

impl FileGroupStore {
    /// Opens (or creates) `groups.journal` in `dir`; `load` refuses a journal damaged where
    /// valid records follow.
    #[cfg(test)]
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<FileGroupStore, StorageError> {
        FileGroupStore::open_with(dir, fsync, RecoveryMode::Refuse)
    }

    /// Opens (or creates) `groups.journal` in `dir`, with `recovery` deciding what `load`
    /// does with damage that valid records follow (`flo --repair`: `RecoveryMode::Repair`).
    pub fn open_with(
        dir: &Path,
        fsync: FsyncPolicy,
        recovery: RecoveryMode,
    ) -> Result<FileGroupStore, StorageError> {
        let path = dir.join(GROUP_JOURNAL_FILE);
        let context = |what: &str| format!("{}: {what}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(context("open")))?;
        let size = file.metadata().map_err(io_error(context("stat")))?.len();
        Ok(FileGroupStore {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size,
            buffered: Vec::new(),
            fsync,
            last_fsync_ms: None,
            written_since_fsync: false,
            fsync_count: 0,
            caller_fsync_count: 0,
            syncer: Syncer::default(),
            recovery,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(GROUP_JOURNAL_FILE)
    }

    /// How many fdatasyncs of the journal were started since open.
    #[cfg(any(test, feature = "testing"))]
    pub fn fsync_count(&self) -> u64 {
        self.fsync_count
    }

    /// How many of them ran on the caller's thread (the reactor's).
    #[cfg(any(test, feature = "testing"))]
    pub fn caller_fsync_count(&self) -> u64 {
        self.caller_fsync_count
    }

    /// Waits for the fdatasyncs handed to the helper thread (tests).
    #[cfg(test)]
    pub fn wait_for_syncs(&mut self) -> Result<(), StorageError> {
        self.collect_syncs(true)
    }

    /// Collects the helper's finished fdatasyncs (all of them with `wait`). A failed one is
    /// returned, and the bytes it should have covered are left for the next fdatasync.
    fn collect_syncs(&mut self, wait: bool) -> Result<(), StorageError> {
        let mut first_error = None;
        for result in self.syncer.collect(wait) {
            if let Err(error) = result {
                self.written_since_fsync = true;
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the buffered records at the end of the journal; on failure they are discarded.
    fn write_buffered(&mut self) -> Result<(), StorageError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let size = self.size;
        let mut file = &*self.file;
        let written = file
            .seek(SeekFrom::Start(size))
            .and_then(|_| file.write_all(&self.buffered));
        let buffered_size = self.buffered.len() as u64;
        self.buffered.clear();
        if let Err(error) = written {
            // Cut whatever part was written, so the next record starts where it belongs.
            let _ = self.file.set_len(size);
            let context = format!("{}: write", self.path().display());
            return Err(io_error(context)(error));
        }
        self.size += buffered_size;
        self.written_since_fsync = true;
        Ok(())
    }

    /// Hands the fdatasync of everything written to the helper thread (it runs here if the
    /// thread cannot be started).
    fn start_fsync(&mut self, now_ms: u64) -> Result<(), StorageError> {
        let job = Job::SyncFile {
            file: Arc::clone(&self.file),
            path: self.path(),
        };
        self.fsync_count += 1;
        self.last_fsync_ms = Some(now_ms);
        self.written_since_fsync = false;
        if let Some(result) = self.syncer.submit(job) {
            self.caller_fsync_count += 1;
            if let Err(error) = result {
                self.written_since_fsync = true;
                return Err(error);
            }
        }
        Ok(())
    }

    fn fsync_due(&self, now_ms: u64) -> bool {
        match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(interval) => self
                .last_fsync_ms
                .is_none_or(|last| now_ms >= last.saturating_add(interval)),
            FsyncPolicy::Never => false,
        }
    }
}

impl GroupStore for FileGroupStore {
    fn load(&mut self) -> Result<Vec<GroupRecord>, StorageError> {
        let context = format!("{}: read", self.path().display());
        let mut bytes = Vec::new();
        let mut file = &*self.file;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(io_error(context))?;
        let scan = scan_journal(&bytes);
        if let Some(first) = scan.damaged.first() {
            let quarantine = journal_quarantine_path(&self.dir, first.start);
            if self.recovery == RecoveryMode::Refuse {
                return Err(damage_error(&self.path(), &quarantine, &scan));
            }
            // The copy is durable before the journal changes: a crash in between loses
            // nothing (the next start refuses or repairs again).
            let context = format!("{}: write", quarantine.display());
            write_durably(&self.dir, &quarantine, &bytes).map_err(io_error(context))?;
            log::error!(
                "repair: group journal {} was damaged at {}; copied it to {} and kept the {} \
                 records that verify: the groups named there may deliver again events they \
                 had acknowledged (a lost Ack or Park record), or miss a lost Create, Reset \
                 or Delete (check them with `flo-client groups`)",
                self.path().display(),
                scan.describe_damage(),
                quarantine.display(),
                scan.records.len()
            );
            self.rewrite(&scan.records)?;
            return Ok(scan.records);
        }
        let valid = scan.valid_end;
        if valid < bytes.len() {
            log::warn!(
                "{}: cut a torn tail of {} bytes at byte {valid}",
                self.path().display(),
                bytes.len() - valid
            );
            let context = format!("{}: truncate", self.path().display());
            self.file
                .set_len(valid as u64)
                .and_then(|_| self.file.sync_data())
                .map_err(io_error(context))?;
        }
        self.size = valid as u64;
        Ok(scan.records)
    }

    fn append(&mut self, record: &GroupRecord) {
        encode_record(record, &mut self.buffered);
    }

    /// Writes the buffered records and hands the fdatasync the policy asks for to the helper
    /// thread, unless one is still running there (then a later call starts the next).
    fn start_sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        if let Err(error) = self.collect_syncs(false) {
            // Its bytes are covered by the next fdatasync (under `always`, by `sync`'s).
            log::error!("a background fdatasync of the group journal failed: {error}");
        }
        self.write_buffered()?;
        if self.written_since_fsync && self.fsync_due(now.0) && !self.syncer.sync_in_flight() {
            self.start_fsync(now.0)?;
        }
        Ok(())
    }

    /// As `start_sync`; under `always` it then waits for the helper's fdatasync, and
    /// fdatasyncs here what was written after that one started (records appended after
    /// `start_sync`). So everything appended is durable when it returns `Ok`.
    fn sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.start_sync(now)?;
        if self.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        self.collect_syncs(true)?;
        if self.written_since_fsync {
            self.fsync_count += 1;
            self.caller_fsync_count += 1;
            let context = format!("{}: fdatasync", self.path().display());
            self.file.sync_data().map_err(io_error(context))?;
            self.written_since_fsync = false;
            self.last_fsync_ms = Some(now.0);
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.size + self.buffered.len() as u64
    }

    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError> {
        // The helper's fdatasync holds the old file; the rewrite makes it moot.
        if let Err(error) = self.collect_syncs(true) {
            log::error!("a background fdatasync of the group journal failed: {error}");
        }
        let mut bytes = Vec::new();
        for record in records {
            encode_record(record, &mut bytes);
        }
        let temporary = self.dir.join(format!("{GROUP_JOURNAL_FILE}.tmp"));
        let context = |what: &str| format!("{}: {what}", temporary.display());
        let mut file = File::create(&temporary).map_err(io_error(context("create")))?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(io_error(context("write")))?;
        std::fs::rename(&temporary, self.path()).map_err(io_error(context("rename")))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(context("fsync the directory")))?;
        self.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.path())
                .map_err(io_error(context("reopen")))?,
        );
        self.size = bytes.len() as u64;
        self.buffered.clear();
        self.written_since_fsync = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<GroupRecord> {
        let mut vector = VersionVector::new();
        vector.set(ActorId(2), 7);
        vec![
            GroupRecord::Create {
                group: "workers".into(),
                glob: "/orders/**".into(),
                start: Offset(3),
                filter: Cursor {
                    floor: EventId {
                        counter: 5,
                        actor: ActorId(1),
                    },
                    vector,
                },
                owner: None,
            },
            GroupRecord::Settings {
                group: "workers".into(),
                ack_timeout_ms: 5000,
                max_deliveries: 3,
                max_in_flight: 70_000,
            },
            GroupRecord::Ack {
                group: "workers".into(),
                offsets: vec![Offset(4), Offset(9)],
            },
            GroupRecord::Deliveries {
                group: "workers".into(),
                offset: Offset(5),
                count: 3,
            },
            GroupRecord::Park {
                group: "workers".into(),
                offset: Offset(5),
                id: EventId {
                    counter: 6,
                    actor: ActorId(1),
                },
            },
            GroupRecord::Floor {
                group: "workers".into(),
                floor: Offset(10),
            },
            GroupRecord::Replay {
                group: "workers".into(),
                offset: Offset(5),
                id: EventId {
                    counter: 6,
                    actor: ActorId(1),
                },
            },
            GroupRecord::Reset {
                group: "workers".into(),
                start: Offset(2),
                filter: Cursor::default(),
            },
            GroupRecord::Delete {
                group: "workers".into(),
            },
            // Format version 2: a Create with its owner.
            GroupRecord::Create {
                group: "billing".into(),
                glob: "/bills/*".into(),
                start: Offset(0),
                filter: Cursor::default(),
                owner: Some("writer".into()),
            },
        ]
    }

    #[test]
    fn records_round_trip_and_a_torn_or_flipped_tail_is_cut() {
        let mut bytes = Vec::new();
        for record in sample() {
            encode_record(&record, &mut bytes);
        }
        let (records, valid) = decode_records(&bytes);
        assert_eq!(records, sample());
        assert_eq!(valid, bytes.len());
        for cut in 0..bytes.len() {
            let (records, valid) = decode_records(&bytes[..cut]);
            assert!(valid <= cut);
            assert_eq!(records[..], sample()[..records.len()]);
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode_records(&flipped).0.len(), sample().len() - 1);
    }

    /// attack2 finding 4: one flipped bit in a record that valid records follow is damage, not
    /// a torn tail: a plain start refuses (naming the bytes and --repair) and changes nothing;
    /// `--repair` copies the journal to quarantine and drops only the damaged record.
    #[test]
    fn damage_in_the_middle_is_refused_or_repaired_never_cut() {
        let dir = std::env::temp_dir().join(format!("flo-groups-flip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for record in sample() {
            starts.push(bytes.len());
            encode_record(&record, &mut bytes);
        }
        // A bit of the second record's (the Ack's) offsets, and one of the fourth's size field.
        bytes[starts[2] - 3] ^= 0x10;
        bytes[starts[3]] ^= 0x01;
        let path = dir.join(GROUP_JOURNAL_FILE);
        std::fs::write(&path, &bytes).expect("write journal");
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        let loaded = store.load();
        let error = match loaded {
            Err(error) => error.to_string(),
            Ok(records) => panic!(
                "a journal damaged in the middle was loaded with {} of {} records",
                records.len(),
                sample().len()
            ),
        };
        assert!(
            error.contains("--repair") && error.contains(&format!("bytes {}..", starts[1])),
            "the refusal names the damage and the repair: {error}"
        );
        assert!(error.contains("\"workers\""), "names the group: {error}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "nothing changed"
        );
        let mut repairing =
            FileGroupStore::open_with(&dir, FsyncPolicy::Always, RecoveryMode::Repair)
                .expect("open repairing");
        let mut expected = sample();
        expected.remove(3);
        expected.remove(1);
        assert_eq!(repairing.load().expect("repair"), expected);
        let quarantine = journal_quarantine_path(&dir, starts[1]);
        assert_eq!(std::fs::read(&quarantine).expect("quarantine"), bytes);
        let mut again = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(again.load().expect("a repaired journal loads"), expected);
        // A torn tail (no valid record after it) is still cut.
        let mut torn = Vec::new();
        for record in sample() {
            encode_record(&record, &mut torn);
        }
        let scan = scan_journal(&torn[..torn.len() - 3]);
        assert!(scan.damaged.is_empty());
        assert_eq!(scan.records.len(), sample().len() - 1);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Issue 12 (acked-delivery p99): the journal's fdatasyncs run on the helper thread,
    /// never on the caller's (the reactor's): under `interval` nothing waits for them; under
    /// `always` `start_sync` starts the turn's one fdatasync (it overlaps the log's) and `sync`
    /// only waits for it. What `sync` returned for is on disk in both cases.
    #[test]
    fn journal_fdatasyncs_run_on_the_helper_thread() {
        let dir = std::env::temp_dir().join(format!("flo-groups-helper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let records = sample();
        let mut store =
            FileGroupStore::open(&dir, FsyncPolicy::IntervalMs(1000)).expect("open interval");
        for (turn, record) in records.iter().enumerate() {
            store.append(record);
            store.sync(MonotonicMs(turn as u64 * 600)).expect("sync");
            store.wait_for_syncs().expect("background fdatasync");
        }
        assert_eq!(
            (store.caller_fsync_count(), store.fsync_count()),
            (0, 5),
            "interval: (fdatasyncs on the caller's thread, all of them)"
        );
        drop(store);
        let mut always = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open always");
        assert_eq!(always.load().expect("load"), records);
        for (turn, record) in records.iter().enumerate() {
            always.append(record);
            always.start_sync(MonotonicMs(turn as u64)).expect("start");
            always.sync(MonotonicMs(turn as u64)).expect("sync");
        }
        assert_eq!(
            (always.caller_fsync_count(), always.fsync_count()),
            (0, records.len() as u64),
            "always: (fdatasyncs on the caller's thread, all of them)"
        );
        // Records appended after the start are written and synced by `sync` itself.
        always.append(&records[0]);
        always.start_sync(MonotonicMs(20)).expect("start");
        always.append(&records[1]);
        always.sync(MonotonicMs(20)).expect("sync");
        let mut reopened = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(reopened.load().expect("load").len(), 2 * records.len() + 2);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn memory_store_reopens_on_what_was_synced() {
        let mut store = MemoryGroupStore::new();
        let records = sample();
        store.append(&records[0]);
        store.sync(MonotonicMs(0)).expect("memory sync");
        store.append(&records[1]);
        assert_eq!(store.reopen().load().expect("load"), records[..1]);
    }

    #[test]
    fn file_store_survives_reopen_and_rewrite() {
        let dir = std::env::temp_dir().join(format!("flo-groups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        for record in sample() {
            store.append(&record);
        }
        store.sync(MonotonicMs(1)).expect("sync");
        let mut reopened = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(reopened.load().expect("load"), sample());
        reopened.rewrite(&sample()[..2]).expect("rewrite");
        reopened.append(&sample()[4]);
        reopened.sync(MonotonicMs(2)).expect("sync");
        let mut again = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        let expected = vec![
            sample()[0].clone(),
            sample()[1].clone(),
            sample()[4].clone(),
        ];
        assert_eq!(again.load().expect("load"), expected);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
