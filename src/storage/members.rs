//! The member list: a small file in the data directory (`members`) holding this node's
//! membership records: every member that completed a handshake with it, and every member
//! removed from the cluster (with the version of the change), so that a restart knows whom
//! to wait for (id order, the catch-up hold) and whom to refuse.
//!
//! Written whole on every change (changes are rare: a new member, a removal, an addition),
//! like the counter lease: to a temporary file, fdatasync'd, renamed over the old one, the
//! directory fsync'd, so a crash leaves the old list or the new one. The file ends with a
//! CRC32C of everything before it; a damaged file stops the start (`Corrupt`) unless
//! `--repair` removes it. The format is in docs/storage.md ("Member list file").

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::repair::write_durably;
use super::{io_error, StorageError};
use crate::event::ActorId;

pub const MEMBERS_FILE_NAME: &str = "members";
pub const MEMBERS_TEMP_FILE_NAME: &str = "members.tmp";

/// `"FLOMEM"`, 0, format version 1.
const MEMBERS_MAGIC: &[u8; 8] = b"FLOMEM\x00\x01";

/// The longest address a record holds: an IPv6 socket address with a scope id and a port is
/// at most 58 characters.
pub const MEMBER_ADDR_LENGTH_MAX: usize = 64;

/// Bytes of a record without its address: actor, removed flag, version, address length.
const RECORD_FIXED_SIZE: usize = 2 + 1 + 8 + 2;

/// The largest file a valid list can be: magic, count, 65,535 records with the longest
/// address, CRC. Anything longer is refused before it is read whole (about 5 MB).
pub const MEMBERS_FILE_SIZE_MAX: usize =
    8 + 2 + (u16::MAX as usize) * (RECORD_FIXED_SIZE + MEMBER_ADDR_LENGTH_MAX) + 4;

/// One member as the data directory remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's actor id.
    pub actor: ActorId,
    /// The address it was last known at (`host:port`).
    pub addr: String,
    /// Removed from the cluster (its handshakes are refused until it is added back).
    pub removed: bool,
    /// Raised by one at every removal or addition; 0 for a member never changed.
    pub version: u64,
}

/// The bytes of a member list file holding `records` (at most 65,535 of them, addresses of
/// at most [`MEMBER_ADDR_LENGTH_MAX`] bytes: the engine keeps fewer, checked here).
pub fn encode(records: &[MemberRecord]) -> Vec<u8> {
    assert!(
        records.len() <= usize::from(u16::MAX),
        "a member list holds at most 65535 records"
    );
    let mut bytes = Vec::with_capacity(14 + records.len() * 40);
    bytes.extend_from_slice(MEMBERS_MAGIC);
    bytes.extend_from_slice(&(records.len() as u16).to_le_bytes());
    for record in records {
        let addr = record.addr.as_bytes();
        assert!(
            addr.len() <= MEMBER_ADDR_LENGTH_MAX,
            "member address {:?} is over {MEMBER_ADDR_LENGTH_MAX} bytes",
            record.addr
        );
        bytes.extend_from_slice(&record.actor.0.to_le_bytes());
        bytes.push(u8::from(record.removed));
        bytes.extend_from_slice(&record.version.to_le_bytes());
        bytes.extend_from_slice(&(addr.len() as u16).to_le_bytes());
        bytes.extend_from_slice(addr);
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The records in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Vec<MemberRecord>, String> {
    if bytes.len() < 14 {
        return Err(format!("it is {} bytes long, less than 14", bytes.len()));
    }
    if bytes.len() > MEMBERS_FILE_SIZE_MAX {
        return Err(format!("it is over {MEMBERS_FILE_SIZE_MAX} bytes long"));
    }
    if &bytes[..8] != MEMBERS_MAGIC {
        return Err("its magic is not FLOMEM version 1".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored_crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored_crc {
        return Err("its checksum does not match".into());
    }
    let count = usize::from(u16::from_le_bytes([body[8], body[9]]));
    let mut at = 10;
    let mut records = Vec::new();
    for index in 0..count {
        let problem = || format!("record {index} is cut short");
        let fixed = body.get(at..at + RECORD_FIXED_SIZE).ok_or_else(problem)?;
        let actor = ActorId(u16::from_le_bytes([fixed[0], fixed[1]]));
        let removed = match fixed[2] {
            0 => false,
            1 => true,
            other => return Err(format!("record {index} has removed flag {other}")),
        };
        let mut version = [0u8; 8];
        version.copy_from_slice(&fixed[3..11]);
        let length = usize::from(u16::from_le_bytes([fixed[11], fixed[12]]));
        at += RECORD_FIXED_SIZE;
        let addr = body.get(at..at + length).ok_or_else(problem)?;
        at += length;
        let addr = std::str::from_utf8(addr)
            .map_err(|_| format!("record {index}'s address is not UTF-8"))?;
        if actor.0 == 0 || length > MEMBER_ADDR_LENGTH_MAX {
            return Err(format!(
                "record {index} is not valid (actor 0 or address too long)"
            ));
        }
        if records.iter().any(|r: &MemberRecord| r.actor == actor) {
            return Err(format!("actor {actor} has two records"));
        }
        records.push(MemberRecord {
            actor,
            addr: addr.to_string(),
            removed,
            version: u64::from_le_bytes(version),
        });
    }
    if at != body.len() {
        return Err(format!("{} bytes follow the last record", body.len() - at));
    }
    Ok(records)
}

pub fn members_path(dir: &Path) -> PathBuf {
    dir.join(MEMBERS_FILE_NAME)
}

/// Reads the member list of `dir`: empty when there is none (a new directory, or one
/// written by a flo without it). A damaged file is `Corrupt`: flo does not drop a removal
/// silently (a removed member would be let back in).
pub fn read(dir: &Path) -> Result<Vec<MemberRecord>, StorageError> {
    let path = members_path(dir);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            let context = format!("open {}", path.display());
            return Err(StorageError::Io { context, source });
        }
    };
    let mut bytes = Vec::new();
    // One byte more than the largest valid file, so that a longer one is told apart.
    Read::by_ref(&mut file)
        .take(MEMBERS_FILE_SIZE_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(format!("read {}", path.display())))?;
    decode(&bytes).map_err(|problem| StorageError::Corrupt {
        context: format!(
            "member list {} is damaged: {problem}; flo does not guess its members (a removed \
             member would be let back in): start once with --repair to remove the file (the \
             members are learned again from --peer-addr and the peers, removals from the \
             peers that hold them), or restore it from a backup",
            path.display()
        ),
    })
}

/// Replaces the member list of `dir` with `records`, durably: written to a temporary file,
/// fsync'd, renamed over the old one, and the directory fsync'd.
pub fn write(dir: &Path, records: &[MemberRecord]) -> Result<(), StorageError> {
    let temp = dir.join(MEMBERS_TEMP_FILE_NAME);
    let path = members_path(dir);
    let result = write_durably(dir, &temp, &encode(records))
        .and_then(|()| fs::rename(&temp, &path))
        .and_then(|()| super::segment::fsync_dir(dir));
    result.map_err(io_error(format!("write member list {}", path.display())))
}

/// Removes the member list (`--repair` of a damaged one).
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    let path = members_path(dir);
    fs::remove_file(&path).map_err(io_error(format!("remove {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(actor: u16, addr: &str, removed: bool, version: u64) -> MemberRecord {
        MemberRecord {
            actor: ActorId(actor),
            addr: addr.into(),
            removed,
            version,
        }
    }

    #[test]
    fn a_member_list_round_trips_and_damage_is_named() {
        let records = vec![
            record(2, "127.0.0.1:3001", false, 0),
            record(3, "127.0.0.1:3002", true, 1),
        ];
        let bytes = encode(&records);
        assert_eq!(decode(&bytes), Ok(records.clone()));
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(decode(&flipped).is_err(), "a flip at byte {at} passed");
        }
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err(), "{length} bytes passed");
        }
        // A file whose checksum matches but whose records do not add up.
        let mut body = bytes[..bytes.len() - 4].to_vec();
        body.push(0);
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&body)
            .unwrap_err()
            .contains("follow the last record"));
        // The example in docs/storage.md: member 3 at 10.0.0.3:3000, removed, version 1.
        let documented = [
            0x46, 0x4C, 0x4F, 0x4D, 0x45, 0x4D, 0x00, 0x01, 0x01, 0x00, 0x03, 0x00, 0x01, 0x01,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0D, 0x00, 0x31, 0x30, 0x2E, 0x30, 0x2E,
            0x30, 0x2E, 0x33, 0x3A, 0x33, 0x30, 0x30, 0x30,
        ];
        let example = encode(&[record(3, "10.0.0.3:3000", true, 1)]);
        assert_eq!(example[..example.len() - 4], documented);
    }
}
