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
//! a journal with kind 9 records as damaged (docs/storage.md, "The group journal").
//! Version 3 names groups by number (attack5 finding F2: a 255-byte name was repeated in every
//! record, about 290 bytes per parked event): a Name record (kind 10) gives a group name a
//! number the first time a record of this file refers to the group, and later records carry
//! the kind with its high bit set (0x81-0x89, 0x8B) and the `u32` number where the name was. A
//! version 1 or 2 journal is still read as it is, and records appended to it are version 3.
//!
//! Start-up streams the journal through a window of about 2 MiB (one largest record and a
//! read-ahead) and hands each record to the engine as it is decoded: what it holds does not
//! grow with the journal's size.
//!
//! Version 3 also adds kind 11, a group's settings (ack time-out, max deliveries, max in
//! flight), written right after each Create and whenever an operator changes them; the groups
//! of an older journal have the server's default settings.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::group_compaction::{Rebuild, Stage};
use super::group_sync::{GroupSyncer, Swap};
use super::range_crc::RangeCrc;
use super::{io_error, Offset, RecoveryMode, StorageError};
use crate::config::{FsyncPolicy, GroupLimits};
use crate::event::{ActorId, Cursor, EventId, VersionVector};
use crate::time::MonotonicMs;

/// The journal's file name in the data directory.
pub const GROUP_JOURNAL_FILE: &str = "groups.journal";
/// The new journal a compaction (or a start-up rewrite) writes before it replaces the journal.
pub const COMPACTION_FILE: &str = "groups.journal.tmp";
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
/// A group name's number in this file (format version 3): `u32` number, then the name.
const KIND_NAME: u8 = 10;
/// Set in the kind of a record that names its group by number (format version 3).
const INTERNED: u8 = 0x80;
/// A group's settings (format version 3).
const KIND_SETTINGS: u8 = 11;
/// The bytes a streamed load reads ahead beyond one largest record.
const READ_AHEAD: usize = 1 << 20;

impl GroupRecord {
    /// The name of the group the record is about.
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Create { group, .. }
            | GroupRecord::Floor { group, .. }
            | GroupRecord::Ack { group, .. }
            | GroupRecord::Deliveries { group, .. }
            | GroupRecord::Park { group, .. }
            | GroupRecord::Replay { group, .. }
            | GroupRecord::Reset { group, .. }
            | GroupRecord::Delete { group }
            | GroupRecord::Settings { group, .. } => group,
        }
    }

    fn group_mut(&mut self) -> &mut String {
        match self {
            GroupRecord::Create { group, .. }
            | GroupRecord::Floor { group, .. }
            | GroupRecord::Ack { group, .. }
            | GroupRecord::Deliveries { group, .. }
            | GroupRecord::Park { group, .. }
            | GroupRecord::Replay { group, .. }
            | GroupRecord::Reset { group, .. }
            | GroupRecord::Delete { group }
            | GroupRecord::Settings { group, .. } => group,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            GroupRecord::Create { owner: None, .. } => KIND_CREATE,
            GroupRecord::Create { owner: Some(_), .. } => KIND_CREATE_OWNED,
            GroupRecord::Floor { .. } => KIND_FLOOR,
            GroupRecord::Ack { .. } => KIND_ACK,
            GroupRecord::Deliveries { .. } => KIND_DELIVERIES,
            GroupRecord::Park { .. } => KIND_PARK,
            GroupRecord::Replay { .. } => KIND_REPLAY,
            GroupRecord::Reset { .. } => KIND_RESET,
            GroupRecord::Delete { .. } => KIND_DELETE,
            GroupRecord::Settings { .. } => KIND_SETTINGS,
        }
    }
}

/// The group numbers of one journal file (format version 3), both ways. Bounded by the
/// groups that exist (a Delete forgets its group's number) plus the Name records of one
/// file, which compaction starts afresh.
#[derive(Debug, Default, Clone)]
pub struct Names {
    by_name: HashMap<String, u32>,
    by_number: HashMap<u32, String>,
    next: u32,
}

impl Names {
    fn define(&mut self, number: u32, name: String) {
        if let Some(old) = self.by_number.insert(number, name.clone()) {
            self.by_name.remove(&old);
        }
        self.by_name.insert(name, number);
        self.next = self.next.max(number.wrapping_add(1));
    }

    fn forget(&mut self, name: &str) {
        if let Some(number) = self.by_name.remove(name) {
            self.by_number.remove(&number);
        }
    }

    /// Appends the bytes of `record` to `out`, naming its group by number (and first a Name
    /// record if the group has none in this file yet).
    pub fn encode(&mut self, record: &GroupRecord, out: &mut Vec<u8>) {
        let name = record.group();
        let number = match self.by_name.get(name) {
            Some(&number) => number,
            None => {
                let number = self.next;
                framed(out, |out| {
                    out.push(KIND_NAME);
                    out.extend_from_slice(&number.to_le_bytes());
                    put_text(out, name);
                });
                self.define(number, name.to_string());
                number
            }
        };
        framed(out, |out| {
            out.push(record.kind() | INTERNED);
            out.extend_from_slice(&number.to_le_bytes());
            put_fields(record, out);
        });
        if let GroupRecord::Delete { group } = record {
            self.forget(group);
        }
    }
}

/// Appends one record whose body `body` writes: its size and checksum first.
fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let body_at = out.len();
    body(out);
    let body_size = (out.len() - body_at) as u32;
    out[start..start + 4].copy_from_slice(&body_size.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&body_size.to_le_bytes()), &out[body_at..]);
    out[start + 4..body_at].copy_from_slice(&crc.to_le_bytes());
}

/// Where group state is kept. `append` only buffers; `sync` writes and makes durable under the
/// fsync policy everything appended since the last sync.
pub trait GroupStore: Send {
    /// Hands every record of the journal to `apply`, in the order they were written
    /// (start-up recovery), reading it through a bounded window; stops at `apply`'s error.
    fn load(
        &mut self,
        apply: &mut dyn FnMut(GroupRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;
    /// Every record of the journal (tests).
    #[cfg(any(test, feature = "testing"))]
    fn load_all(&mut self) -> Result<Vec<GroupRecord>, StorageError>
    where
        Self: Sized,
    {
        let mut records = Vec::new();
        self.load(&mut |record| {
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    }
    /// Buffers one record.
    fn append(&mut self, record: &GroupRecord);
    /// Writes the buffered records and starts the fdatasync the policy asks for without
    /// waiting for it (on a storage helper thread); `sync` waits for it where it must. A
    /// store that cannot start one does nothing here.
    fn start_sync(&mut self, _now: MonotonicMs) -> Result<(), StorageError> {
        Ok(())
    }
    /// Writes the buffered records and makes them durable. On failure they are discarded.
    fn sync(&mut self, now: MonotonicMs) -> Result<(), StorageError>;
    /// When written records wait for an fdatasync the policy put off (`always`: acks within
    /// `groups.ack_sync_interval`; `interval`: the interval): the monotonic ms at which a turn
    /// should call `sync` again to ask for it, even if nothing else happens. None when
    /// nothing waits.
    fn sync_due_ms(&self) -> Option<u64> {
        None
    }
    /// The bytes of the journal (durable and buffered).
    fn size_bytes(&self) -> u64;
    /// Replaces the whole journal with `records` (a snapshot), atomically, at once (start-up
    /// only: it writes and syncs the whole snapshot before it returns). Abandons a compaction.
    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError>;
    /// Starts a compaction (docs/consumers.md, "Compaction"; `group_compaction.rs`): a new
    /// journal, `groups.journal.tmp`, is built from the snapshot pieces `compaction_append`
    /// gives, while every record appended for a group it covers (`compaction_covers`) is
    /// written to both files. The old journal stays the truth until the new one replaces it.
    fn compaction_begin(&mut self) -> Result<(), StorageError>;
    /// True when the new journal holds the Create of `group` (its snapshot began, or it was
    /// created during the compaction); false without a compaction.
    fn compaction_covers(&self, group: &str) -> bool;
    /// Buffers one piece of the snapshot, for the new journal only.
    fn compaction_append(&mut self, record: &GroupRecord);
    /// The snapshot is complete: at the next write the new journal is handed to the sync
    /// thread, which syncs it, renames it over the journal and syncs the directory, without
    /// anybody waiting for it. Until then, and until it is done, every record goes to both.
    fn compaction_finish(&mut self);
    /// The outcome of the last compaction, once, when it is over: the new journal's size, or
    /// why it was abandoned (the old journal is still the journal then).
    fn compaction_poll(&mut self) -> Option<Result<u64, StorageError>>;
}

/// The error of a compaction that was abandoned.
fn compaction_error(message: String) -> StorageError {
    StorageError::Io {
        context: "group journal compaction".into(),
        source: std::io::Error::other(message),
    }
}

/// Appends the bytes of one record to `out` in the format of versions 1 and 2 (the group
/// by name; a journal written by an older flo).
#[cfg(any(test, feature = "testing"))]
pub fn encode_record(record: &GroupRecord, out: &mut Vec<u8>) {
    framed(out, |out| {
        out.push(record.kind());
        put_text(out, record.group());
        put_fields(record, out);
    });
}

/// The fields of a record after its kind and group.
fn put_fields(record: &GroupRecord, out: &mut Vec<u8>) {
    match record {
        GroupRecord::Create {
            glob,
            start,
            filter,
            owner,
            ..
        } => {
            put_text(out, glob);
            out.extend_from_slice(&start.0.to_le_bytes());
            put_filter(out, filter);
            if let Some(owner) = owner {
                put_text(out, owner);
            }
        }
        GroupRecord::Floor { floor, .. } => out.extend_from_slice(&floor.0.to_le_bytes()),
        GroupRecord::Ack { offsets, .. } => {
            assert!(
                offsets.len() <= ACK_OFFSETS_PER_RECORD_MAX,
                "an Ack record holds at most {ACK_OFFSETS_PER_RECORD_MAX} offsets"
            );
            out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
            for offset in offsets {
                out.extend_from_slice(&offset.0.to_le_bytes());
            }
        }
        GroupRecord::Deliveries { offset, count, .. } => {
            out.extend_from_slice(&offset.0.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        GroupRecord::Park { offset, id, .. } | GroupRecord::Replay { offset, id, .. } => {
            out.extend_from_slice(&offset.0.to_le_bytes());
            put_id(out, *id);
        }
        GroupRecord::Reset { start, filter, .. } => {
            out.extend_from_slice(&start.0.to_le_bytes());
            put_filter(out, filter);
        }
        GroupRecord::Delete { .. } => {}
        GroupRecord::Settings {
            ack_timeout_ms,
            max_deliveries,
            max_in_flight,
            ..
        } => {
            out.extend_from_slice(&ack_timeout_ms.to_le_bytes());
            out.extend_from_slice(&max_deliveries.to_le_bytes());
            out.extend_from_slice(&max_in_flight.to_le_bytes());
        }
    }
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
    let mut names = Names::default();
    let mut position = 0;
    while let Some((entry, size)) = decode_record_at(&bytes[position..]) {
        position += size;
        records.extend(names.resolve(entry));
    }
    (records, position)
}

/// A verified record as read: a Name record, or a record with its group by name or by number
/// (then its `group` is empty until `Names::resolve` fills it in).
enum Entry {
    Name(u32, String),
    Record(GroupRecord, Option<u32>),
}

impl Names {
    /// The record an entry stands for, its group named; `None` for a Name record and for a
    /// record whose number no Name record before it defined (a damaged Name record; such a
    /// record is skipped, as a damaged one would be).
    fn resolve(&mut self, entry: Entry) -> Option<GroupRecord> {
        let record = match entry {
            Entry::Name(number, name) => {
                self.define(number, name);
                return None;
            }
            Entry::Record(record, None) => record,
            Entry::Record(mut record, Some(number)) => {
                *record.group_mut() = self.by_number.get(&number)?.clone();
                record
            }
        };
        if let GroupRecord::Delete { group } = &record {
            self.forget(group);
        }
        Some(record)
    }
}

/// The record at the start of `bytes` and its size, if it is whole, its checksum matches and
/// its body decodes.
fn decode_record_at(bytes: &[u8]) -> Option<(Entry, usize)> {
    let (header, body) = plausible_record_at(bytes)?;
    if crc32c::crc32c_append(crc32c::crc32c(&header[..4]), body) != stored_crc(header) {
        return None;
    }
    let entry = decode_body(&mut Body { bytes: body })?;
    Some((entry, header.len() + body.len()))
}

/// As `decode_record_at` for the record at `buf[at..]`, with the checksum taken from the
/// buffer's prefix checksums (a resync after damage: constant time per candidate, not its
/// length).
fn decode_record_in(buf: &[u8], crcs: &RangeCrc, at: usize) -> Option<(Entry, usize)> {
    let (header, body) = plausible_record_at(&buf[at..])?;
    let body_start = at + header.len();
    let crc = crcs.append(
        buf,
        crc32c::crc32c(&header[..4]),
        body_start..body_start + body.len(),
    );
    if crc != stored_crc(header) {
        return None;
    }
    let entry = decode_body(&mut Body { bytes: body })?;
    Some((entry, header.len() + body.len()))
}

fn stored_crc(header: &[u8]) -> u32 {
    u32::from_le_bytes([header[4], header[5], header[6], header[7]])
}

/// The header and body of the record at the start of `bytes`, if it is whole and its kind and
/// sizes are plausible: a cheap test before the checksum.
fn plausible_record_at(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let header = bytes.get(..8)?;
    let body_size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    if body_size == 0 || body_size > RECORD_BODY_SIZE_MAX {
        return None;
    }
    let body = bytes.get(8..8 + body_size as usize)?;
    // A known kind and a group name (or number) that fits the body.
    let kind = body[0];
    let plausible = if kind & INTERNED != 0 {
        ((KIND_CREATE..=KIND_CREATE_OWNED).contains(&(kind & !INTERNED))
            || kind & !INTERNED == KIND_SETTINGS)
            && body.len() >= 5
    } else {
        let name_at = if kind == KIND_NAME { 5 } else { 1 };
        let name_size = u16::from_le_bytes([*body.get(name_at)?, *body.get(name_at + 1)?]);
        (KIND_CREATE..=KIND_SETTINGS).contains(&kind)
            && name_at + 2 + name_size as usize <= body.len()
    };
    plausible.then_some((header, body))
}

/// What start-up finds in a journal (the records themselves went to the caller one by one):
/// where the torn tail begins, and the damaged byte ranges that valid records follow (which
/// are not a torn tail: synced records lie after them).
#[derive(Debug, Default)]
pub struct ScanSummary {
    /// Records handed over.
    pub records: u64,
    /// Valid records that named a group by a number no Name record defined (skipped).
    pub unresolved: u64,
    /// The end of the last valid record: the bytes after it are a torn tail.
    pub valid_end: u64,
    /// Damaged ranges followed by a valid record, in order.
    pub damaged: Vec<std::ops::Range<u64>>,
    /// Per damaged range, the group its first bytes name, when they can be read at all (a
    /// guess: the damage may be in the name).
    pub damaged_groups: Vec<Option<String>>,
    /// The most bytes the scan held at once (its window).
    pub buffer_peak: usize,
    /// The bytes run through CRC32C: the scan's work, which stays linear in the file's size
    /// however the damage is crafted (attack9 F5).
    pub checksummed_bytes: u64,
    /// The group numbers of the file, for the records appended after it.
    names: Names,
}

/// What a scan of a journal held in memory finds (tests): its records and its damage.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct JournalScan {
    pub records: Vec<GroupRecord>,
    pub summary: ScanSummary,
}

/// Scans a whole journal held in memory (tests).
#[cfg(test)]
pub fn scan_journal(bytes: &[u8]) -> JournalScan {
    let mut records = Vec::new();
    let mut reader = bytes;
    let summary = scan_stream(
        &mut reader,
        &mut |record| {
            records.push(record);
            Ok(())
        },
        None,
    )
    .expect("reading memory does not fail");
    JournalScan { records, summary }
}

/// A window on a journal being read: at least one largest record from `at` is in `buf`
/// unless the file ends first.
struct Window<'r> {
    reader: &'r mut dyn Read,
    buf: Vec<u8>,
    at: usize,
    /// The file position of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Window<'_> {
    const NEED: usize = 8 + RECORD_BODY_SIZE_MAX as usize;

    /// Reads ahead when fewer than `NEED` bytes are left; says whether `buf` changed.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof || self.buf.len() - self.at >= Self::NEED {
            return Ok(false);
        }
        self.buf.drain(..self.at);
        self.base += self.at as u64;
        self.at = 0;
        let target = Self::NEED + READ_AHEAD;
        while self.buf.len() < target {
            let len = self.buf.len();
            self.buf.resize(target, 0);
            let read = loop {
                match self.reader.read(&mut self.buf[len..]) {
                    Ok(read) => break read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        self.buf.truncate(len);
                        return Err(error);
                    }
                }
            };
            self.buf.truncate(len + read);
            if read == 0 {
                self.eof = true;
                break;
            }
        }
        Ok(true)
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    fn position(&self) -> u64 {
        self.base + self.at as u64
    }
}

/// Reads a journal from `reader` through a window of about 2 MiB and hands each record to
/// `apply` (and the bytes of each valid record to `copy`, for a repair). After a record that
/// does not verify, every later byte position is tried as the start of a record (a damaged
/// size field hides where the next one starts): a record found there makes the skipped bytes
/// damage, none makes them a torn tail. Each position costs a few field reads unless its kind
/// and sizes are plausible, so only real candidates are checksummed.
fn scan_stream(
    reader: &mut dyn Read,
    apply: &mut dyn FnMut(GroupRecord) -> Result<(), StorageError>,
    mut copy: Option<&mut dyn Write>,
) -> Result<ScanSummary, ScanError> {
    let mut window = Window {
        reader,
        buf: Vec::with_capacity(Window::NEED + READ_AHEAD),
        at: 0,
        base: 0,
        eof: false,
    };
    let mut summary = ScanSummary::default();
    loop {
        window.fill().map_err(ScanError::Read)?;
        if window.rest().is_empty() {
            break;
        }
        summary.checksummed_bytes +=
            plausible_record_at(window.rest()).map_or(0, |(_, body)| 4 + body.len() as u64);
        if let Some((entry, size)) = decode_record_at(window.rest()) {
            if let Some(copy) = copy.as_mut() {
                copy.write_all(&window.rest()[..size])
                    .map_err(ScanError::Write)?;
            }
            window.at += size;
            summary.valid_end = window.position();
            let is_name = matches!(entry, Entry::Name(..));
            match summary.names.resolve(entry) {
                Some(record) => {
                    summary.records += 1;
                    apply(record).map_err(ScanError::Apply)?;
                }
                None if !is_name => summary.unresolved += 1,
                None => {}
            }
            continue;
        }
        let start = window.position();
        let guess = guess_group(window.rest(), &summary.names);
        // The window's prefix checksums, made when a candidate is first checksummed after a
        // fill (a fill moves the window by about READ_AHEAD bytes, so making them stays linear).
        let mut crcs: Option<RangeCrc> = None;
        let found = loop {
            window.at += 1;
            if window.fill().map_err(ScanError::Read)? {
                crcs = None;
            }
            if window.rest().is_empty() {
                break false;
            }
            if plausible_record_at(window.rest()).is_none() {
                continue;
            }
            let crcs = crcs.get_or_insert_with(|| {
                summary.checksummed_bytes += window.buf.len() as u64;
                RangeCrc::new(&window.buf)
            });
            summary.checksummed_bytes += 4 + 2 * RangeCrc::STRIDE as u64;
            if decode_record_in(&window.buf, crcs, window.at).is_some() {
                break true;
            }
        };
        if !found {
            break;
        }
        summary.damaged.push(start..window.position());
        summary.damaged_groups.push(guess);
    }
    summary.buffer_peak = window.buf.capacity();
    Ok(summary)
}

/// Why a streamed scan stopped.
#[derive(Debug)]
enum ScanError {
    Read(std::io::Error),
    Write(std::io::Error),
    Apply(StorageError),
}

impl ScanError {
    fn into_storage(self, path: &Path) -> StorageError {
        match self {
            ScanError::Read(error) => io_error(format!("{}: read", path.display()))(error),
            ScanError::Write(error) => io_error(format!("{}: write", path.display()))(error),
            ScanError::Apply(error) => error,
        }
    }
}

/// The group name a damaged record's body starts with, if it is readable text.
fn guess_group(damaged: &[u8], names: &Names) -> Option<String> {
    let body = damaged.get(8..)?;
    if body.first()? & INTERNED != 0 {
        let number = u32::from_le_bytes(body.get(1..5)?.try_into().ok()?);
        return names.by_number.get(&number).cloned();
    }
    let at = if body[0] == KIND_NAME { 5 } else { 1 };
    let size = u16::from_le_bytes([*body.get(at)?, *body.get(at + 1)?]) as usize;
    let name = std::str::from_utf8(body.get(at + 2..at + 2 + size)?).ok()?;
    (!name.is_empty() && !name.chars().any(char::is_control)).then(|| name.to_string())
}

impl ScanSummary {
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
pub fn journal_quarantine_path(dir: &Path, position: u64) -> PathBuf {
    dir.join(format!("{GROUP_JOURNAL_FILE}.quarantine-{position}"))
}

/// The refusal when the journal is damaged in the middle and start-up may not repair it.
fn damage_error(path: &Path, quarantine: &Path, scan: &ScanSummary) -> StorageError {
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

fn decode_body(body: &mut Body) -> Option<Entry> {
    let kind = *body.take(1)?.first()?;
    if kind == KIND_NAME {
        let number = body.u32()?;
        let name = body.text()?;
        return body.bytes.is_empty().then_some(Entry::Name(number, name));
    }
    let (kind, group, number) = if kind & INTERNED != 0 {
        (kind & !INTERNED, String::new(), Some(body.u32()?))
    } else {
        (kind, body.text()?, None)
    };
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
    body.bytes
        .is_empty()
        .then_some(Entry::Record(record, number))
}

/// The journal in memory, for tests and the simulator. Clones share the synced bytes, so a test
/// "restarts" by building an engine on `reopen()`, which sees only what was synced.
///
/// A compaction builds its new journal in `rebuilt` (lost to a crash, as the file's `.tmp` is
/// removed at start-up); the `sync` after `compaction_finish` only starts the swap, and the
/// next one does it, as the file store's sync thread would some time later.
/// A clone is a store on the same synced bytes and buffered records (its group numbers and
/// compaction too).
#[derive(Debug, Default, Clone)]
pub struct MemoryGroupStore {
    durable: Arc<Mutex<Vec<u8>>>,
    buffered: Vec<u8>,
    names: Names,
    /// A compaction's new journal: what was written of it, and the rest.
    rebuilt: Vec<u8>,
    rebuild: Option<Rebuild>,
    /// The size of the journal a finished compaction wrote, until it is polled.
    compacted: Option<u64>,
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
            ..MemoryGroupStore::default()
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
    fn load(
        &mut self,
        apply: &mut dyn FnMut(GroupRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let durable = Arc::clone(&self.durable);
        let mut durable = durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = Path::new(GROUP_JOURNAL_FILE);
        let mut reader = &durable[..];
        let scan = scan_stream(&mut reader, apply, None).map_err(|e| e.into_storage(path))?;
        if !scan.damaged.is_empty() {
            return Err(damage_error(
                path,
                &journal_quarantine_path(Path::new(""), 0),
                &scan,
            ));
        }
        durable.truncate(scan.valid_end as usize);
        self.names = scan.names;
        Ok(())
    }

    fn append(&mut self, record: &GroupRecord) {
        self.names.encode(record, &mut self.buffered);
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.live(record);
        }
    }

    /// Completes at once: a started sync may finish any time before `sync` returns.
    fn start_sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.sync(now)
    }

    fn sync(&mut self, _now: MonotonicMs) -> Result<(), StorageError> {
        let buffered = std::mem::take(&mut self.buffered);
        self.durable().extend_from_slice(&buffered);
        let Some(rebuild) = &mut self.rebuild else {
            return Ok(());
        };
        self.rebuilt.append(&mut rebuild.buffered);
        match rebuild.stage {
            Stage::Writing => {}
            Stage::Complete => rebuild.stage = Stage::Swapping,
            Stage::Swapping => {
                // Taken above.
                let rebuild = self.rebuild.take().expect("a compaction");
                let rebuilt = std::mem::take(&mut self.rebuilt);
                self.compacted = Some(rebuilt.len() as u64);
                *self.durable() = rebuilt;
                self.names = rebuild.names;
            }
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        (self.durable().len() + self.buffered.len()) as u64
    }

    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        self.names = Names::default();
        for record in records {
            self.names.encode(record, &mut bytes);
        }
        *self.durable() = bytes;
        self.buffered.clear();
        self.rebuild = None;
        self.rebuilt.clear();
        Ok(())
    }

    fn compaction_begin(&mut self) -> Result<(), StorageError> {
        self.rebuild = Some(Rebuild::default());
        self.rebuilt.clear();
        Ok(())
    }

    fn compaction_covers(&self, group: &str) -> bool {
        self.rebuild.as_ref().is_some_and(|r| r.covers(group))
    }

    fn compaction_append(&mut self, record: &GroupRecord) {
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.piece(record);
        }
    }

    fn compaction_finish(&mut self) {
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.stage = Stage::Complete;
        }
    }

    fn compaction_poll(&mut self) -> Option<Result<u64, StorageError>> {
        self.compacted.take().map(Ok)
    }
}

/// The journal as a file in the data directory.
///
/// Written records survive kill -9 (they are in the kernel's page cache); an fdatasync makes
/// them survive a power loss. Under `always` the fdatasync of a write holding a record an
/// answer depends on (see `GroupRecord::answer_waits`) is asked of the journal's sync thread
/// (`group_sync.rs`) at once and waited for by `sync`; that of the other records (acks, floors,
/// deliveries) at most once in `ack_sync_interval_ms` and never waited for; under `interval`
/// at most once an interval and never waited for; under `never` not at all. What is put off
/// is asked for by the first `sync` after it falls due (`sync_due_ms`) or by the drop.
#[derive(Debug)]
pub struct FileGroupStore {
    dir: PathBuf,
    /// Shared with the sync thread.
    file: Arc<File>,
    size: u64,
    buffered: Vec<u8>,
    /// The group numbers of the file (format version 3).
    names: Names,
    /// Whether `buffered` holds a record an answer depends on.
    buffered_answer: bool,
    fsync: FsyncPolicy,
    /// Under `always`: the least time between two fdatasyncs of records no answer waits for
    /// (`GroupLimits::ack_sync_interval`).
    ack_sync_interval_ms: u64,
    /// When the sync thread was last asked for an fdatasync.
    last_request_ms: Option<u64>,
    /// Generations: one per write of buffered records; the last one the sync thread was asked
    /// to cover; the last one that held a record an answer depends on; the last one waited for.
    written: u64,
    requested: u64,
    answer_written: u64,
    waited: u64,
    /// `sync` calls that waited for an fdatasync (tests).
    sync_waits: u64,
    syncer: GroupSyncer,
    /// What `load` does with damage that valid records follow: refuse, or (`flo --repair`)
    /// quarantine a copy and skip the damaged records.
    recovery: RecoveryMode,
    /// A compaction's new journal, `groups.journal.tmp`, while it is built and put in place.
    compaction: Option<FileRebuild>,
    /// The outcome of the last compaction, until it is polled.
    compacted: Option<Result<u64, StorageError>>,
}

/// The new journal of a compaction: its file, the bytes written to it, and the rest.
#[derive(Debug)]
struct FileRebuild {
    file: Arc<File>,
    size: u64,
    rebuild: Rebuild,
}

impl GroupRecord {
    /// True for a record an answer of the turn depends on, whose fdatasync a turn under
    /// `always` waits for before its answers go out: a group created, reset, deleted, a parked
    /// event replayed (an operator's request), an event parked. Ack, Floor and Deliveries
    /// records are not waited for: lost to a power loss they only mean that events are
    /// delivered again (at least once), and kill -9 cannot lose them (they are written before
    /// the turn's output). A record kind added later is waited for unless it is listed here.
    pub fn answer_waits(&self) -> bool {
        !matches!(
            self,
            GroupRecord::Ack { .. } | GroupRecord::Floor { .. } | GroupRecord::Deliveries { .. }
        )
    }
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
        let file = Arc::new(file);
        // A compaction that did not finish: the journal beside it is the truth.
        let unfinished = dir.join(COMPACTION_FILE);
        match std::fs::remove_file(&unfinished) {
            Ok(()) => log::warn!(
                "removed {}, the new journal of a compaction that did not finish",
                unfinished.display()
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                let context = format!("{}: remove", unfinished.display());
                return Err(io_error(context)(error));
            }
        }
        Ok(FileGroupStore {
            dir: dir.to_path_buf(),
            syncer: GroupSyncer::new(Arc::clone(&file), path.clone()),
            file,
            size,
            buffered: Vec::new(),
            names: Names::default(),
            buffered_answer: false,
            fsync,
            ack_sync_interval_ms: millis(GroupLimits::default().ack_sync_interval),
            last_request_ms: None,
            written: 0,
            requested: 0,
            answer_written: 0,
            waited: 0,
            sync_waits: 0,
            recovery,
            compaction: None,
            compacted: None,
        })
    }

    /// Under `always`, asks for the fdatasync of records no answer waits for at most once in
    /// `interval` (`GroupLimits::ack_sync_interval`; zero: at every write).
    pub fn with_ack_sync_interval(mut self, interval: Duration) -> FileGroupStore {
        self.ack_sync_interval_ms = millis(interval);
        self
    }

    fn path(&self) -> PathBuf {
        self.dir.join(GROUP_JOURNAL_FILE)
    }

    /// How many fdatasyncs of the journal ran since open.
    #[cfg(any(test, feature = "testing"))]
    pub fn fsync_count(&self) -> u64 {
        self.syncer.fsyncs()
    }

    /// How many of them ran on the caller's thread (the reactor's).
    #[cfg(any(test, feature = "testing"))]
    pub fn caller_fsync_count(&self) -> u64 {
        self.syncer.caller_fsyncs()
    }

    /// How many `sync` calls waited for an fdatasync before returning.
    #[cfg(test)]
    pub fn sync_waits(&self) -> u64 {
        self.sync_waits
    }

    /// Waits until everything the sync thread was asked for is on disk (tests).
    #[cfg(test)]
    pub fn wait_for_syncs(&mut self) -> Result<(), StorageError> {
        self.syncer.wait_for(self.requested)
    }

    /// Writes the buffered records at the end of the journal (and a compaction's at the end of
    /// its new journal, then hands a complete one to the sync thread); on failure they are
    /// discarded (and the compaction abandoned).
    fn write_buffered(&mut self) -> Result<(), StorageError> {
        let written = self.write_journal();
        if written.is_err() {
            self.abandon_compaction("the journal could not be written".into());
        }
        self.write_rebuilt();
        written
    }

    /// Writes the buffered records at the end of the journal; on failure they are discarded.
    fn write_journal(&mut self) -> Result<(), StorageError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let size = self.size;
        // One positioned write (no seek first): the ack's turn makes one system call for its
        // records, and the reactor is back in epoll_wait sooner.
        let written = self.file.write_all_at(&self.buffered, size);
        let buffered_size = self.buffered.len() as u64;
        let answer = std::mem::take(&mut self.buffered_answer);
        self.buffered.clear();
        if let Err(error) = written {
            // Cut whatever part was written, so the next record starts where it belongs.
            let _ = self.file.set_len(size);
            let context = format!("{}: write", self.path().display());
            return Err(io_error(context)(error));
        }
        self.size += buffered_size;
        self.written += 1;
        if answer {
            self.answer_written = self.written;
        }
        Ok(())
    }

    /// Writes what a compaction buffered for its new journal; hands a complete one to the sync
    /// thread to be synced and put in place.
    fn write_rebuilt(&mut self) {
        let Some(compaction) = &mut self.compaction else {
            return;
        };
        if !compaction.rebuild.buffered.is_empty() {
            let written = compaction
                .file
                .write_all_at(&compaction.rebuild.buffered, compaction.size);
            if let Err(error) = written {
                let path = self.dir.join(COMPACTION_FILE);
                return self.abandon_compaction(format!("{}: write: {error}", path.display()));
            }
            compaction.size += compaction.rebuild.buffered.len() as u64;
            compaction.rebuild.buffered.clear();
        }
        if compaction.rebuild.stage == Stage::Complete {
            compaction.rebuild.stage = Stage::Swapping;
            let swap = Swap {
                file: Arc::clone(&compaction.file),
                from: self.dir.join(COMPACTION_FILE),
                to: self.path(),
                dir: self.dir.clone(),
            };
            // The swap syncs everything written so far (to both files).
            self.requested = self.written;
            self.syncer.swap(swap, self.written);
        }
    }

    /// Takes the outcome of a swap the sync thread finished: the new file becomes the journal
    /// (with the records buffered since, numbered as the new file numbers them).
    fn take_swapped(&mut self) {
        let swapping =
            (self.compaction.as_ref()).is_some_and(|c| c.rebuild.stage == Stage::Swapping);
        if !swapping {
            return;
        }
        let Some(outcome) = self.syncer.take_swapped() else {
            return;
        };
        if let Err(error) = outcome {
            // The sync thread removed the new file; the old one is still the journal.
            return self.abandon_compaction(error);
        }
        // Checked above.
        let compaction = self.compaction.take().expect("a compaction");
        self.file = compaction.file;
        self.size = compaction.size;
        self.names = compaction.rebuild.names;
        self.buffered = compaction.rebuild.buffered;
        self.compacted = Some(Ok(self.size));
    }

    /// Gives up a compaction (the old journal stays the journal); its new file is removed at
    /// the next start, or truncated by the next compaction.
    fn abandon_compaction(&mut self, message: String) {
        if self.compaction.take().is_some() {
            self.compacted = Some(Err(compaction_error(message)));
        }
    }

    /// Replaces the journal with what `write` writes to `groups.journal.tmp`: synced, renamed
    /// over the journal, the directory synced, the journal reopened.
    fn replace_with(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), StorageError> {
        self.compaction = None;
        let temporary = self.dir.join(COMPACTION_FILE);
        let context = |what: &str| format!("{}: {what}", temporary.display());
        let file = File::create(&temporary).map_err(io_error(context("create")))?;
        let mut out = BufWriter::new(file);
        write(&mut out)
            .and_then(|_| out.flush())
            .and_then(|_| out.get_ref().sync_all())
            .map_err(io_error(context("write")))?;
        std::fs::rename(&temporary, self.path()).map_err(io_error(context("rename")))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(context("fsync the directory")))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path())
            .map_err(io_error(context("reopen")))?;
        self.size = file.metadata().map_err(io_error(context("stat")))?.len();
        self.file = Arc::new(file);
        // Everything written so far is in the new file, synced: the sync thread's fdatasync
        // of the old file (if one runs) is moot.
        self.written += 1;
        self.requested = self.written;
        self.waited = self.written;
        self.answer_written = self.written;
        self.syncer
            .replace_file(Arc::clone(&self.file), self.written);
        self.buffered.clear();
        self.buffered_answer = false;
        Ok(())
    }

    /// `--repair`: rewrites the journal with the records that verify, streamed (a second pass
    /// of the bounded window), skipping the damaged bytes.
    fn copy_valid_records(&mut self) -> Result<(), StorageError> {
        let path = self.path();
        let source = Arc::clone(&self.file);
        let mut failed = None;
        self.replace_with(|out| {
            let mut reader = &*source;
            reader.seek(SeekFrom::Start(0))?;
            match scan_stream(&mut reader, &mut |_| Ok(()), Some(out)) {
                Ok(_) => Ok(()),
                Err(error) => {
                    failed = Some(error.into_storage(&path));
                    Err(std::io::Error::other("the repair copy stopped"))
                }
            }
        })
        .map_err(|error| failed.take().unwrap_or(error))
    }

    /// Whether the written records' fdatasync is to be asked for now: under `always` at once
    /// for a record an answer waits for, else (acks, floors, deliveries) at most once in
    /// `ack_sync_interval_ms`; under `interval` at most once an interval.
    fn fsync_due(&self, now_ms: u64) -> bool {
        let elapsed = |interval: u64| {
            self.last_request_ms
                .is_none_or(|last| now_ms >= last.saturating_add(interval))
        };
        match self.fsync {
            FsyncPolicy::Always => {
                self.answer_written > self.requested || elapsed(self.ack_sync_interval_ms)
            }
            FsyncPolicy::IntervalMs(interval) => elapsed(interval),
            FsyncPolicy::Never => false,
        }
    }
}

/// A journal in a fresh directory under the system's temporary directory, for tests outside
/// storage (which touch no files themselves); `remove_scratch_dir` removes it.
#[cfg(test)]
pub fn scratch_store(name: &str, fsync: FsyncPolicy) -> (FileGroupStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = FileGroupStore::open(&dir, fsync).expect("open the journal");
    (store, dir)
}

/// Removes a `scratch_store`'s directory.
#[cfg(test)]
pub fn remove_scratch_dir(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("clean up");
}

/// Whole milliseconds of `duration`, saturating (a validated setting is at most 1 s).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for FileGroupStore {
    /// A clean stop leaves every written record synced (under `always` and `interval`): what
    /// the policy put off is asked for now, and the sync thread finishes it before its
    /// handle's drop (which follows this) returns.
    fn drop(&mut self) {
        if self.fsync != FsyncPolicy::Never && self.written > self.requested {
            self.requested = self.written;
            if let Err(error) = self.syncer.request(self.written) {
                log::error!("the group journal's last fdatasync failed: {error}");
            }
        }
    }
}

impl GroupStore for FileGroupStore {
    fn load(
        &mut self,
        apply: &mut dyn FnMut(GroupRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let path = self.path();
        let context = format!("{}: read", path.display());
        let mut file = &*self.file;
        file.seek(SeekFrom::Start(0)).map_err(io_error(context))?;
        let scan = scan_stream(&mut file, apply, None).map_err(|e| e.into_storage(&path))?;
        if scan.unresolved > 0 {
            log::warn!(
                "{}: skipped {} records naming a group by a number no Name record gave",
                path.display(),
                scan.unresolved
            );
        }
        if let Some(first) = scan.damaged.first() {
            let quarantine = journal_quarantine_path(&self.dir, first.start);
            if self.recovery == RecoveryMode::Refuse {
                return Err(damage_error(&path, &quarantine, &scan));
            }
            // The copy is durable before the journal changes: a crash in between loses
            // nothing (the next start refuses or repairs again).
            let context = format!("{}: write", quarantine.display());
            std::fs::copy(&path, &quarantine)
                .and_then(|_| File::open(&quarantine)?.sync_all())
                .and_then(|_| File::open(&self.dir)?.sync_all())
                .map_err(io_error(context))?;
            log::error!(
                "repair: group journal {} was damaged at {}; copied it to {} and kept the {} \
                 records that verify: the groups named there may deliver again events they \
                 had acknowledged (a lost Ack or Park record), or miss a lost Create, Reset \
                 or Delete (check them with `flo-client groups`)",
                path.display(),
                scan.describe_damage(),
                quarantine.display(),
                scan.records
            );
            self.copy_valid_records()?;
            self.names = scan.names;
            return Ok(());
        }
        let valid = scan.valid_end;
        let size = self
            .file
            .metadata()
            .map_err(io_error(format!("{}: stat", path.display())))?
            .len();
        if valid < size {
            log::warn!(
                "{}: cut a torn tail of {} bytes at byte {valid}",
                path.display(),
                size - valid
            );
            let context = format!("{}: truncate", path.display());
            self.file
                .set_len(valid)
                .and_then(|_| self.file.sync_data())
                .map_err(io_error(context))?;
        }
        self.size = valid;
        self.names = scan.names;
        Ok(())
    }

    fn append(&mut self, record: &GroupRecord) {
        self.buffered_answer |= record.answer_waits();
        self.names.encode(record, &mut self.buffered);
        if let Some(compaction) = &mut self.compaction {
            compaction.rebuild.live(record);
        }
    }

    /// Writes the buffered records and asks the sync thread for the fdatasync the policy
    /// asks for; waits for nothing.
    fn start_sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.take_swapped();
        if let Some(error) = self.syncer.take_error() {
            // Its bytes are covered by the next fdatasync, asked for here.
            log::error!("a background fdatasync of the group journal failed: {error}");
            self.written += 1;
        }
        self.write_buffered()?;
        if self.written > self.requested && self.fsync_due(now.0) {
            self.requested = self.written;
            self.last_request_ms = Some(now.0);
            self.syncer.request(self.written)?;
        }
        Ok(())
    }

    /// As `start_sync`; under `always`, if a record an answer depends on was written, waits
    /// until it is on disk. Everything else written is on disk soon (the sync thread runs
    /// without being asked again), but nothing waits for it.
    fn sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.start_sync(now)?;
        if self.fsync != FsyncPolicy::Always || self.answer_written <= self.waited {
            return Ok(());
        }
        self.sync_waits += 1;
        self.syncer.wait_for(self.answer_written)?;
        self.waited = self.answer_written;
        Ok(())
    }

    fn sync_due_ms(&self) -> Option<u64> {
        if self.written <= self.requested {
            return None;
        }
        let interval = match self.fsync {
            FsyncPolicy::Always => self.ack_sync_interval_ms,
            FsyncPolicy::IntervalMs(interval) => interval,
            FsyncPolicy::Never => return None,
        };
        Some(
            self.last_request_ms
                .map_or(0, |last| last.saturating_add(interval)),
        )
    }

    fn size_bytes(&self) -> u64 {
        self.size + self.buffered.len() as u64
    }

    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        let mut names = Names::default();
        for record in records {
            names.encode(record, &mut bytes);
        }
        self.replace_with(|file| file.write_all(&bytes))?;
        self.names = names;
        Ok(())
    }

    fn compaction_begin(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(COMPACTION_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error(format!("{}: create", path.display())))?;
        self.compaction = Some(FileRebuild {
            file: Arc::new(file),
            size: 0,
            rebuild: Rebuild::default(),
        });
        Ok(())
    }

    fn compaction_covers(&self, group: &str) -> bool {
        (self.compaction.as_ref()).is_some_and(|c| c.rebuild.covers(group))
    }

    fn compaction_append(&mut self, record: &GroupRecord) {
        if let Some(compaction) = &mut self.compaction {
            compaction.rebuild.piece(record);
        }
    }

    fn compaction_finish(&mut self) {
        if let Some(compaction) = &mut self.compaction {
            compaction.rebuild.stage = Stage::Complete;
        }
    }

    fn compaction_poll(&mut self) -> Option<Result<u64, StorageError>> {
        self.take_swapped();
        self.compacted.take()
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
        let loaded = store.load_all();
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
        assert_eq!(repairing.load_all().expect("repair"), expected);
        let quarantine = journal_quarantine_path(&dir, starts[1] as u64);
        assert_eq!(std::fs::read(&quarantine).expect("quarantine"), bytes);
        let mut again = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(
            again.load_all().expect("a repaired journal loads"),
            expected
        );
        // A torn tail (no valid record after it) is still cut.
        let mut torn = Vec::new();
        for record in sample() {
            encode_record(&record, &mut torn);
        }
        let scan = scan_journal(&torn[..torn.len() - 3]);
        assert!(scan.summary.damaged.is_empty());
        assert_eq!(scan.records.len(), sample().len() - 1);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Issue 12 (acked-delivery p99): the journal's fdatasyncs run on its sync thread, never
    /// on the caller's (the reactor's): under `interval` at most one an interval and nothing
    /// waits for them; under `always` every write is asked to be covered (requests that come
    /// while one runs share the next). What `sync` returned for is on disk in both cases.
    #[test]
    fn journal_fdatasyncs_run_on_the_sync_thread() {
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
            (
                store.caller_fsync_count(),
                store.fsync_count(),
                store.sync_waits()
            ),
            (0, 5, 0),
            "interval: (fdatasyncs on the caller's thread, all of them, syncs that waited)"
        );
        drop(store);
        let mut always = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open always");
        assert_eq!(always.load_all().expect("load"), records);
        for (turn, record) in records.iter().enumerate() {
            always.append(record);
            always.start_sync(MonotonicMs(turn as u64)).expect("start");
            always.sync(MonotonicMs(turn as u64)).expect("sync");
        }
        let fsyncs = always.fsync_count();
        assert!(
            always.caller_fsync_count() == 0 && (1..=records.len() as u64).contains(&fsyncs),
            "always: {} fdatasyncs on the caller's thread, {fsyncs} in all",
            always.caller_fsync_count()
        );
        // Records appended after the start are written and synced by `sync` itself.
        always.append(&records[0]);
        always.start_sync(MonotonicMs(20)).expect("start");
        always.append(&records[1]);
        always.sync(MonotonicMs(20)).expect("sync");
        let mut reopened = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(
            reopened.load_all().expect("load").len(),
            2 * records.len() + 2
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Issue 12 (acked-delivery p99): under `always` a turn's Ack, Floor and Deliveries
    /// records are written (so they survive kill -9) and their fdatasync is started, but
    /// `sync` does not wait for it: losing them to a power loss only means redelivery. A
    /// record an answer depends on (Create, Reset, Delete, Replay, Park) is waited for. The
    /// helper thread syncs what was written without another call, and a reopen after the
    /// store is dropped finds every record.
    #[test]
    fn acks_are_not_waited_for_but_records_with_answers_are() {
        let dir = std::env::temp_dir().join(format!("flo-groups-lazy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let records = sample();
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        store.append(&records[0]);
        store.sync(MonotonicMs(1)).expect("sync the Create");
        assert_eq!(store.sync_waits(), 1, "a Create is waited for");
        for (turn, record) in [&records[2], &records[3], &records[5]]
            .into_iter()
            .enumerate()
        {
            store.append(record);
            store
                .start_sync(MonotonicMs(2 + turn as u64))
                .expect("start");
            store.append(record);
            store.sync(MonotonicMs(2 + turn as u64)).expect("sync");
        }
        assert_eq!(
            store.sync_waits(),
            1,
            "turns of Ack, Deliveries and Floor records did not wait for an fdatasync"
        );
        store
            .wait_for_syncs()
            .expect("the helper syncs what was asked for by itself");
        assert_eq!(
            store.fsync_count(),
            1,
            "within 100 ms of the Create: the acks' fdatasync is put off"
        );
        store.append(&records[4]);
        store.sync(MonotonicMs(9)).expect("sync the Park");
        assert_eq!(store.sync_waits(), 2, "a Park is waited for");
        drop(store);
        let mut reopened = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        let expected = vec![
            records[0].clone(),
            records[2].clone(),
            records[2].clone(),
            records[3].clone(),
            records[3].clone(),
            records[5].clone(),
            records[5].clone(),
            records[4].clone(),
        ];
        assert_eq!(reopened.load_all().expect("load"), expected);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Issue 12, run P (acked-delivery p99 under `always`): a turn's Ack, Floor and
    /// Deliveries records are written at once but their fdatasync is asked for at most once
    /// in `groups.ack_sync_interval` (100 ms): one ack a turn no longer adds a journal
    /// fdatasync to every event, queued on the disk beside the log's. A record an answer
    /// waits for is synced at once; what was put off is asked for when it falls due (the
    /// engine turns then: `sync_due_ms`) and by a clean stop.
    #[test]
    fn acks_are_synced_at_most_once_an_interval_under_always() {
        let dir = std::env::temp_dir().join(format!("flo-groups-ackint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let records = sample();
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        store.append(&records[0]);
        store.sync(MonotonicMs(1)).expect("sync the Create");
        assert_eq!(
            (store.fsync_count(), store.sync_waits()),
            (1, 1),
            "a Create at once"
        );
        // An ack a turn, a turn a millisecond (1,000 events/s to one member).
        for turn in 2..100 {
            store.append(&records[2]);
            store.sync(MonotonicMs(turn)).expect("sync an ack");
        }
        store.wait_for_syncs().expect("what was asked for");
        assert_eq!(
            store.fsync_count(),
            1,
            "98 turns of acks within 100 ms of the last fdatasync: none asked for"
        );
        assert_eq!(
            store.sync_due_ms(),
            Some(101),
            "due 100 ms after the last request"
        );
        store.sync(MonotonicMs(101)).expect("the due turn");
        store.wait_for_syncs().expect("the acks' fdatasync");
        assert_eq!(
            (store.fsync_count(), store.sync_due_ms()),
            (2, None),
            "one for all 98"
        );
        store.append(&records[2]);
        store.sync(MonotonicMs(102)).expect("an ack");
        store.append(&records[4]);
        store.sync(MonotonicMs(103)).expect("sync the Park");
        assert_eq!(
            (store.fsync_count(), store.sync_waits(), store.sync_due_ms()),
            (3, 2, None),
            "a Park is synced (with the ack before it) and waited for at once"
        );
        drop(store);
        let mut every = FileGroupStore::open(&dir, FsyncPolicy::Always)
            .expect("reopen")
            .with_ack_sync_interval(Duration::ZERO);
        assert_eq!(every.load_all().expect("load").len(), 1 + 98 + 1 + 1);
        for turn in 0..5 {
            every.append(&records[2]);
            every.sync(MonotonicMs(200 + turn)).expect("sync an ack");
            every.wait_for_syncs().expect("its fdatasync");
        }
        assert_eq!(
            every.fsync_count(),
            5,
            "interval zero: every turn's acks at once"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn memory_store_reopens_on_what_was_synced() {
        let mut store = MemoryGroupStore::new();
        let records = sample();
        store.append(&records[0]);
        store.sync(MonotonicMs(0)).expect("memory sync");
        store.append(&records[1]);
        assert_eq!(store.reopen().load_all().expect("load"), records[..1]);
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
        assert_eq!(reopened.load_all().expect("load"), sample());
        reopened.rewrite(&sample()[..2]).expect("rewrite");
        reopened.append(&sample()[4]);
        reopened.sync(MonotonicMs(2)).expect("sync");
        let mut again = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        let expected = vec![
            sample()[0].clone(),
            sample()[1].clone(),
            sample()[4].clone(),
        ];
        assert_eq!(again.load_all().expect("load"), expected);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// attack5 F2: a journal written by an older flo (group names in every record) loads as
    /// it is; records appended to it name their group by number, so a parked event costs 31
    /// bytes instead of 29 plus the name, and the mixed journal loads again.
    #[test]
    fn an_old_format_journal_loads_and_appends_name_groups_by_number() {
        let dir = std::env::temp_dir().join(format!("flo-groups-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let long = "g".repeat(255);
        let park = |n: u64| GroupRecord::Park {
            group: long.clone(),
            offset: Offset(n),
            id: EventId {
                counter: n,
                actor: ActorId(1),
            },
        };
        let mut old = Vec::new();
        let mut records = vec![GroupRecord::Create {
            group: long.clone(),
            glob: "/a/**".into(),
            start: Offset(0),
            filter: Cursor::default(),
            owner: None,
        }];
        records.extend(sample());
        records.push(park(1));
        for record in &records {
            encode_record(record, &mut old);
        }
        std::fs::write(dir.join(GROUP_JOURNAL_FILE), &old).expect("write v2 journal");
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        assert_eq!(
            store.load_all().expect("a version 2 journal loads"),
            records
        );
        let before = store.size_bytes();
        for n in 2..102 {
            store.append(&park(n));
            records.push(park(n));
        }
        store.sync(MonotonicMs(1)).expect("sync");
        let per_park = (store.size_bytes() - before - (8 + 7 + 255)) / 100;
        assert_eq!(
            per_park, 31,
            "bytes per Park record after the first (its Name record)"
        );
        let mut again = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(again.load_all().expect("a mixed journal loads"), records);
        // Appends after a reload reuse the numbers the file gave.
        let size = again.size_bytes();
        again.append(&park(200));
        again.sync(MonotonicMs(2)).expect("sync");
        assert_eq!(again.size_bytes() - size, 31);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// attack5 F2: start-up streams the journal through a bounded window (it had read the
    /// whole file and decoded every record into one list: 2.1 GB for a 909 MB journal).
    #[test]
    fn a_large_journal_is_loaded_through_a_bounded_window() {
        let mut names = Names::default();
        let mut bytes = Vec::new();
        let groups = ["a".repeat(200), "b".repeat(200)];
        for group in &groups {
            names.encode(
                &GroupRecord::Create {
                    group: group.clone(),
                    glob: "/**".into(),
                    start: Offset(0),
                    filter: Cursor::default(),
                    owner: None,
                },
                &mut bytes,
            );
        }
        let count = 400_000u64;
        for n in 0..count {
            let record = GroupRecord::Park {
                group: groups[(n % 2) as usize].clone(),
                offset: Offset(n),
                id: EventId {
                    counter: n,
                    actor: ActorId(3),
                },
            };
            names.encode(&record, &mut bytes);
        }
        assert!(bytes.len() > 10 << 20, "a journal of {} bytes", bytes.len());
        let mut parks = 0u64;
        let mut reader = &bytes[..];
        let summary = scan_stream(
            &mut reader,
            &mut |record| {
                parks += u64::from(matches!(record, GroupRecord::Park { .. }));
                Ok(())
            },
            None,
        )
        .map_err(|e| e.into_storage(Path::new("journal")))
        .expect("scan");
        assert_eq!((parks, summary.valid_end), (count, bytes.len() as u64));
        assert!(
            summary.buffer_peak <= Window::NEED + READ_AHEAD,
            "the window held {} bytes of a {}-byte journal",
            summary.buffer_peak,
            bytes.len()
        );
        // Damage in the middle of a numbered journal is found and names its group.
        let middle = bytes.len() / 2;
        let mut damaged = bytes.clone();
        let (_, at) = decode_records(&damaged[..middle]);
        damaged[at + 16] ^= 0x40;
        let scan = scan_journal(&damaged);
        assert_eq!(scan.records.len() as u64, count + 1);
        assert_eq!(scan.summary.damaged.len(), 1);
        assert!(scan.summary.damaged_groups[0].is_some());
    }

    /// attack9 F5: a damaged tail crafted so that one byte position in four is a plausible
    /// record of about 1 MiB (ci/attacks/journal_scan.py) made the resync checksum about 1 MiB
    /// per position: quadratic. The scan's CRC32C work must stay linear in the file's size,
    /// and a valid record after the crafted bytes must still be found (damage, not a torn tail).
    #[test]
    fn a_crafted_damaged_tail_is_scanned_in_linear_work() {
        let mut names = Names::default();
        let create = GroupRecord::Create {
            group: "g".into(),
            glob: "/g/**".into(),
            start: Offset(0),
            filter: Cursor::default(),
            owner: None,
        };
        let mut bytes = Vec::new();
        names.encode(&create, &mut bytes);
        let crafted = 3 << 20;
        bytes.extend([0x81u8, 0x00, 0x0F, 0x00].repeat(crafted / 4));
        let after = bytes.len() as u64;
        let floor = GroupRecord::Floor {
            group: "g".into(),
            floor: Offset(7),
        };
        names.encode(&floor, &mut bytes);
        let scan = scan_journal(&bytes);
        assert_eq!(scan.records, vec![create, floor]);
        assert_eq!(scan.summary.damaged.len(), 1);
        assert_eq!(scan.summary.damaged[0].end, after);
        // A candidate costs at most 4 + 2 * STRIDE bytes (its size field and two partial
        // prefixes), and each window is checksummed once: a bound per byte of the file.
        let per_byte = 4 + 2 * RangeCrc::STRIDE as u64 + 8;
        assert!(
            scan.summary.checksummed_bytes < per_byte * bytes.len() as u64,
            "the scan of a {}-byte journal checksummed {} bytes",
            bytes.len(),
            scan.summary.checksummed_bytes
        );
    }
}
