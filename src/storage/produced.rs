//! The produced journal: for idempotent produces (protocol.md, SetProducer), which producer
//! sequence number was stored as which events, so that a retry after a restart gets its
//! original ack. One small append-only file beside the segments, `produced.journal`, of
//! fixed-size records (docs/storage.md). The file log writes the records buffered since the
//! last sync *before* that sync's events and makes them durable with them, so an event is
//! never durable without its record; a record whose events did not survive (a crash between
//! the two writes, a torn tail) is dropped at open by comparing its last id with the log's
//! version vector.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StorageError;
use crate::event::{ActorId, EventId, VersionVector};

/// The journal's file name in the data directory.
pub const PRODUCED_JOURNAL_FILE: &str = "produced.journal";

/// Bytes of one record: producer id, sequence, first id (counter, actor), count, timestamp,
/// then the CRC32C of those 38 bytes.
pub const PRODUCED_RECORD_SIZE: usize = 8 + 8 + 8 + 2 + 4 + 8 + 4;

/// One idempotent produce that was appended: its producer, its sequence number and its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducedRecord {
    /// The producer id the client chose (never 0).
    pub producer_id: u64,
    /// The produce's sequence number.
    pub sequence: u64,
    /// The id of its first event.
    pub first_id: EventId,
    /// How many events it appended (at least 1).
    pub count: u32,
    /// Their timestamp.
    pub timestamp_ms: u64,
}

impl ProducedRecord {
    /// The id of its last event.
    pub fn last_id(&self) -> EventId {
        EventId {
            counter: self.first_id.counter + u64::from(self.count.max(1)) - 1,
            actor: self.first_id.actor,
        }
    }

    /// Whether the log (by its version vector) holds its events.
    pub fn stored_in(&self, vector: &VersionVector) -> bool {
        self.last_id().counter <= vector.get(self.first_id.actor)
    }

    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.producer_id.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.first_id.counter.to_le_bytes());
        out.extend_from_slice(&self.first_id.actor.0.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// The record in `bytes` (exactly `PRODUCED_RECORD_SIZE`), if its checksum matches.
    pub fn decode(bytes: &[u8]) -> Option<ProducedRecord> {
        if bytes.len() != PRODUCED_RECORD_SIZE {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let body = PRODUCED_RECORD_SIZE - 4;
        if crc32c::crc32c(&bytes[..body]) != u32_at(body) {
            return None;
        }
        let record = ProducedRecord {
            producer_id: u64_at(0),
            sequence: u64_at(8),
            first_id: EventId {
                counter: u64_at(16),
                actor: ActorId(u16::from_le_bytes([bytes[24], bytes[25]])),
            },
            count: u32_at(26),
            timestamp_ms: u64_at(30),
        };
        let valid = record.producer_id != 0 && record.first_id.counter != 0 && record.count != 0;
        valid.then_some(record)
    }
}

/// The open journal file of a file log.
#[derive(Debug)]
pub struct ProducedJournal {
    path: PathBuf,
    file: File,
    /// Bytes of whole records written (and, with the segment's fdatasync, durable).
    size: u64,
    /// Records buffered since the last sync.
    pending: Vec<u8>,
    /// Bytes were written since the last fdatasync.
    written_since_fsync: bool,
}

impl ProducedJournal {
    /// Opens (or creates) the journal in `dir` and returns it with its records, in the order
    /// they were written. A torn or damaged tail (only a write that was never acknowledged can
    /// be one) is cut at the last whole record.
    pub fn open(dir: &Path) -> Result<(ProducedJournal, Vec<ProducedRecord>), StorageError> {
        let path = dir.join(PRODUCED_JOURNAL_FILE);
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| StorageError::Io { context, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let mut records = Vec::new();
        for chunk in bytes.chunks(PRODUCED_RECORD_SIZE) {
            match ProducedRecord::decode(chunk) {
                Some(record) => records.push(record),
                None => break,
            }
        }
        let size = (records.len() * PRODUCED_RECORD_SIZE) as u64;
        if size != bytes.len() as u64 {
            log::warn!(
                "{}: cutting a damaged or torn tail of {} bytes",
                path.display(),
                bytes.len() as u64 - size
            );
            file.set_len(size).map_err(io("truncate"))?;
            file.sync_data().map_err(io("fdatasync"))?;
        }
        let journal = ProducedJournal {
            path,
            file,
            size,
            pending: Vec::new(),
            written_since_fsync: false,
        };
        Ok((journal, records))
    }

    /// Buffers one record for the next `write_pending`.
    pub fn append(&mut self, record: &ProducedRecord) {
        record.encode(&mut self.pending);
    }

    /// Records in the file.
    pub fn record_count(&self) -> u64 {
        self.size / PRODUCED_RECORD_SIZE as u64
    }

    /// Writes the buffered records (the file log fdatasyncs them with `fsync`, before the
    /// segment). On failure the file is cut back and the buffered records are dropped.
    pub fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        match self.file.write_all_at(&pending, self.size) {
            Ok(()) => {
                self.size += pending.len() as u64;
                self.written_since_fsync = true;
                Ok(())
            }
            Err(source) => {
                self.roll_back(self.size);
                Err(StorageError::Io {
                    context: format!("write {}", self.path.display()),
                    source,
                })
            }
        }
    }

    /// Makes the written records durable (before the segment's fdatasync, so no event is
    /// durable on the medium without its record).
    pub fn fsync(&mut self) -> std::io::Result<()> {
        if self.written_since_fsync {
            self.file.sync_data()?;
            self.written_since_fsync = false;
        }
        Ok(())
    }

    /// Drops the buffered records (their events were discarded before being written).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Cuts the file back to `size` bytes (a sync whose events failed: their records must not
    /// stay, or a later restart could answer a retry with ids that were never stored).
    pub fn roll_back(&mut self, size: u64) {
        self.pending.clear();
        if let Err(error) = self.file.set_len(size) {
            log::error!(
                "cannot cut {} back to {size} bytes: {error}",
                self.path.display()
            );
        }
        self.size = size;
    }

    /// The file's size in bytes (whole records written).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Replaces the journal with `records`: written to a temporary file, fdatasync'd, renamed
    /// over the journal and the directory fsync'd, so a crash leaves the old or the new one.
    pub fn rewrite(&mut self, records: &[ProducedRecord]) -> Result<(), StorageError> {
        let tmp = self.path.with_extension("journal.tmp");
        let io = |context: String| move |source| StorageError::Io { context, source };
        let mut bytes = Vec::with_capacity(records.len() * PRODUCED_RECORD_SIZE);
        for record in records {
            record.encode(&mut bytes);
        }
        let mut file = File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.path).map_err(io(format!("rename {}", tmp.display())))?;
        if let Some(dir) = self.path.parent() {
            super::segment::fsync_dir(dir).map_err(io(format!("fsync {}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io(format!("open {}", self.path.display())))?;
        self.file = file;
        self.size = bytes.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64) -> ProducedRecord {
        ProducedRecord {
            producer_id: 7,
            sequence,
            first_id: EventId {
                counter: 10 + sequence,
                actor: ActorId(1),
            },
            count: 1,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, records) = ProducedJournal::open(dir.path()).unwrap();
        assert!(records.is_empty());
        journal.append(&record(1));
        journal.append(&record(2));
        journal.write_pending().unwrap();
        journal.fsync().unwrap();
        drop(journal);
        let path = dir.path().join(PRODUCED_JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (journal, records) = ProducedJournal::open(dir.path()).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        assert_eq!(journal.size(), 2 * PRODUCED_RECORD_SIZE as u64);
    }

    #[test]
    fn a_flipped_bit_ends_the_journal_there() {
        let mut bytes = Vec::new();
        record(1).encode(&mut bytes);
        assert_eq!(ProducedRecord::decode(&bytes), Some(record(1)));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(ProducedRecord::decode(&flipped), None, "bit {bit}");
        }
    }
}
