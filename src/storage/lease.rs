//! The counter lease: a small file in the data directory (`flo.counter`) holding a Lamport
//! counter that is at least every counter this node has ever handed out to an event.
//!
//! Records can be lost after they were acknowledged: a power loss under `--fsync interval` or
//! `never`, or damage that start-up cuts as a torn tail. The version vector of what is left
//! then no longer covers every id a client or peer has seen, and a counter taken from it would
//! give an acknowledged id to a new event. So the engine asks the log to reserve counters
//! (`Log::reserve_counters`) before it hands them out: the lease is raised in steps of
//! [`COUNTER_LEASE_STEP`] and made durable (written to a temporary file, fdatasync'd, renamed
//! over the old one, directory fsync'd) before the call returns, so before any append or ack of
//! an id above the old lease. (The file log writes the next step ahead of need on its helper
//! thread once half of the current one is used, and counts it only once it is durable.) At open the engine starts its counter at the lease
//! (`Log::counter_floor`), leaving a gap, which Lamport counters allow. The format is in
//! docs/storage.md ("Counter lease file").

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::event::EventId;

use super::segment::fsync_dir;
use super::StorageError;

/// How far past the requested counter a lease is raised: one lease write (two fdatasyncs and a
/// directory fsync) per about a million events, and a gap of at most one and a half times this
/// many counters per restart (once half a step is used, the file log's helper thread writes
/// the next step ahead of need: `FileLog::reserve_counters`).
pub const COUNTER_LEASE_STEP: u64 = 1 << 20;

pub const LEASE_FILE_NAME: &str = "flo.counter";
pub const LEASE_TEMP_FILE_NAME: &str = "flo.counter.tmp";

/// `"FLOCNT"`, 0, format version 1.
const LEASE_MAGIC: &[u8; 8] = b"FLOCNT\x00\x01";

/// Magic, the lease (`u64`), and a CRC32C of the 16 bytes before it.
pub const LEASE_FILE_SIZE: usize = 20;

/// The lease to write when counters up to `up_to` are needed: a step past it, never past the
/// last counter.
pub fn next_lease(up_to: u64) -> u64 {
    up_to
        .saturating_add(COUNTER_LEASE_STEP)
        .min(EventId::COUNTER_MAX)
}

pub fn encode(lease: u64) -> [u8; LEASE_FILE_SIZE] {
    let mut bytes = [0u8; LEASE_FILE_SIZE];
    bytes[..8].copy_from_slice(LEASE_MAGIC);
    bytes[8..16].copy_from_slice(&lease.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The lease in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() != LEASE_FILE_SIZE {
        return Err(format!(
            "it is {} bytes long, not {LEASE_FILE_SIZE}",
            bytes.len()
        ));
    }
    if &bytes[..8] != LEASE_MAGIC {
        return Err("its magic is not FLOCNT version 1".into());
    }
    let stored_crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32c::crc32c(&bytes[..16]) != stored_crc {
        return Err("its checksum does not match".into());
    }
    let mut lease = [0u8; 8];
    lease.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(lease))
}

pub fn lease_path(dir: &Path) -> PathBuf {
    dir.join(LEASE_FILE_NAME)
}

/// Reads the lease file of `dir`: `Ok(None)` when there is none (a new directory, or one
/// written by a flo without leases). A damaged file is `Corrupt`: flo does not guess a lease,
/// since a guess too low would reuse ids.
pub fn read(dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = lease_path(dir);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let context = format!("open {}", path.display());
            return Err(StorageError::Io { context, source });
        }
    };
    let mut bytes = Vec::with_capacity(LEASE_FILE_SIZE);
    // One byte more than a lease file, so that a longer file is told apart from a good one.
    Read::by_ref(&mut file)
        .take(LEASE_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| StorageError::Io {
            context: format!("read {}", path.display()),
            source,
        })?;
    decode(&bytes)
        .map(Some)
        .map_err(|problem| StorageError::Corrupt {
            context: format!(
            "counter lease file {} is damaged: {problem}; flo does not guess the highest event \
             counter it has handed out (a guess too low reuses ids): start once with --repair \
             to replace it with the highest counter in the log, which may reuse the ids of \
             acknowledged events that were lost",
            path.display()
        ),
        })
}

/// Replaces the lease file of `dir` with one holding `lease`, durably: written to a temporary
/// file, fdatasync'd, renamed over the old one, and the directory fsync'd. A crash at any point
/// leaves either the old lease or the new one.
pub fn write(dir: &Path, lease: u64) -> Result<(), StorageError> {
    let temp = dir.join(LEASE_TEMP_FILE_NAME);
    let path = lease_path(dir);
    let result = write_file(&temp, lease)
        .and_then(|()| fs::rename(&temp, &path))
        .and_then(|()| fsync_dir(dir));
    result.map_err(|source| StorageError::Io {
        context: format!("write counter lease {}", path.display()),
        source,
    })
}

fn write_file(path: &Path, lease: u64) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(&encode(lease))?;
    file.sync_data()
}

/// Removes the lease file (`--repair` of a damaged one).
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    let path = lease_path(dir);
    fs::remove_file(&path).map_err(|source| StorageError::Io {
        context: format!("remove {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_round_trips_and_damage_is_named() {
        let bytes = encode(0x0102_0304_0506_0708);
        assert_eq!(
            bytes[..16],
            *b"FLOCNT\x00\x01\x08\x07\x06\x05\x04\x03\x02\x01"
        );
        assert_eq!(decode(&bytes), Ok(0x0102_0304_0506_0708));
        let mut flipped = bytes;
        flipped[9] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        assert!(decode(&bytes[..19]).unwrap_err().contains("19 bytes"));
        assert_eq!(next_lease(5), 5 + COUNTER_LEASE_STEP);
        // The example in docs/storage.md.
        let documented = [
            0x46, 0x4C, 0x4F, 0x43, 0x4E, 0x54, 0x00, 0x01, 0x05, 0x00, 0x10, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xBB, 0x89, 0xD7, 0x78,
        ];
        assert_eq!(encode(next_lease(5)), documented);
        assert_eq!(next_lease(EventId::COUNTER_MAX - 3), EventId::COUNTER_MAX);
    }
}
