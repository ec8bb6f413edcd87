//! Segment and index files: names, the segment header, sequential record reading, and the
//! crash-safe ways of creating and replacing files (fsync the file, then the directory).

use super::groups::GROUP_JOURNAL_FILE;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::event::{Event, EventId, EventRef, VersionVector};

use super::index::{SegmentIndex, SPARSE_EVERY_BYTES};
use super::lease::{LEASE_FILE_NAME, LEASE_TEMP_FILE_NAME};
use super::namespace::{read_namespace_header, BuildBuffers, NamespaceHeader, SegmentNames};
use super::record::{
    decode_block, decode_header, decode_vector, encode_block, encode_vector, view_body,
    view_checked_body, DecodeError, Decoder, RECORD_HEADER_SIZE,
};

/// Magic of a segment file, format version 1.
pub const SEGMENT_MAGIC: &[u8; 8] = b"FLOSEG\x00\x01";

/// Disk reads go through a buffer that grows to this size, so an old-data read is a few large
/// sequential reads rather than one per record.
pub const READ_BUFFER_SIZE: usize = 256 * 1024;

/// A reader's first refills read this much, until it has read `SPARSE_EVERY_BYTES` (the most a
/// reader positioned at a sparse index point passes over to reach any record): a point read of
/// one record (an index-driven read of a namespace) reads a few KiB, not `READ_BUFFER_SIZE`.
pub const READ_BUFFER_FIRST: usize = 16 * 1024;

pub fn segment_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.log"))
}

pub fn index_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.idx"))
}

pub fn namespace_index_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.nsx"))
}

fn namespace_index_temp_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.nsx.tmp"))
}

fn index_temp_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.idx.tmp"))
}

/// What a file name in the data directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment(u64),
    /// `groups.journal` and its compaction's temporary file (`storage/groups.rs` owns both).
    GroupJournal,
    /// A sealed segment being rewritten by `flo --repair` (`{first:020}.log.tmp`).
    SegmentTemp(u64),
    Index(u64),
    IndexTemp(u64),
    /// The namespace index of a sealed segment (`{first:020}.nsx`), and one being written.
    NamespaceIndex(u64),
    NamespaceIndexTemp(u64),
    /// A trace index of a sealed segment (`{first:020}.eix`, `.pix`), and one being written.
    TraceIndex(u64),
    TraceIndexTemp(u64),
    /// The lock file that keeps a second server out of the directory.
    Lock,
    /// Damaged bytes `flo --repair` moved out of a segment (`{first:020}.log.quarantine-{byte}`).
    Quarantine,
    /// The counter lease (`lease.rs`), and a new one being written.
    CounterLease,
    CounterLeaseTemp,
    /// The produced journal of idempotent produces (`produced.rs`), and a rewrite of it.
    ProducedJournal,
    ProducedJournalTemp,
    /// The member list (`members.rs`), and a new one being written.
    Members,
    MembersTemp,
    /// The purge set (`purge.rs`), and a new one being written.
    Purges,
    PurgesTemp,
    /// `flo.purged-newest`: the newest ids of namespaces whose purged events were deleted.
    PurgedNewest,
    /// Its replacement being written (`flo.purged-newest.tmp`).
    PurgedNewestTemp,
    /// `next.log`: the file the next segment is written to while the seal of the one before
    /// it is in flight on the storage helper thread (or, empty, created ahead of the seal).
    NextSegment,
}

/// The name of the next segment's file before its seal gives it its name (`NextSegment`).
pub const NEXT_SEGMENT_FILE_NAME: &str = "next.log";

/// The path of `NEXT_SEGMENT_FILE_NAME` in `dir`.
pub fn next_segment_path(dir: &Path) -> PathBuf {
    dir.join(NEXT_SEGMENT_FILE_NAME)
}

/// The file in the data directory that a running server holds an exclusive lock on.
pub const LOCK_FILE_NAME: &str = "flo.lock";

/// Where `flo --repair` writes the new content of a damaged sealed segment before it renames
/// it over the segment.
pub fn segment_temp_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.log.tmp"))
}

/// Where `flo --repair` puts the bytes of segment `first_offset` from byte `position` on.
pub fn quarantine_path(dir: &Path, first_offset: u64, position: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.log.quarantine-{position}"))
}

pub fn classify(name: &str) -> Option<FileKind> {
    match name {
        LOCK_FILE_NAME => return Some(FileKind::Lock),
        NEXT_SEGMENT_FILE_NAME => return Some(FileKind::NextSegment),
        LEASE_FILE_NAME => return Some(FileKind::CounterLease),
        LEASE_TEMP_FILE_NAME => return Some(FileKind::CounterLeaseTemp),
        GROUP_JOURNAL_FILE => return Some(FileKind::GroupJournal),
        super::produced::PRODUCED_JOURNAL_FILE => return Some(FileKind::ProducedJournal),
        "produced.journal.tmp" => return Some(FileKind::ProducedJournalTemp),
        super::members::MEMBERS_FILE_NAME => return Some(FileKind::Members),
        super::members::MEMBERS_TEMP_FILE_NAME => return Some(FileKind::MembersTemp),
        super::purge::PURGE_FILE_NAME => return Some(FileKind::Purges),
        super::purge::PURGE_TEMP_FILE_NAME => return Some(FileKind::PurgesTemp),
        super::purge::PURGED_NEWEST_FILE_NAME => return Some(FileKind::PurgedNewest),
        super::purge::PURGED_NEWEST_TEMP_FILE_NAME => return Some(FileKind::PurgedNewestTemp),
        _ => {}
    }
    if name
        .strip_prefix(GROUP_JOURNAL_FILE)
        .is_some_and(|rest| rest == ".tmp")
    {
        return Some(FileKind::GroupJournal);
    }
    if let Some((segment, position)) = name.split_once(".log.quarantine-") {
        let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if segment.len() == 20 && is_number(segment) && is_number(position) {
            return Some(FileKind::Quarantine);
        }
        return None;
    }
    let (stem, kind): (&str, fn(u64) -> FileKind) = if let Some(s) = name.strip_suffix(".log") {
        (s, FileKind::Segment)
    } else if let Some(s) = name.strip_suffix(".log.tmp") {
        (s, FileKind::SegmentTemp)
    } else if let Some(s) = name.strip_suffix(".idx.tmp") {
        (s, FileKind::IndexTemp)
    } else if let Some(s) = name.strip_suffix(".idx") {
        (s, FileKind::Index)
    } else if let Some(s) = name.strip_suffix(".nsx.tmp") {
        (s, FileKind::NamespaceIndexTemp)
    } else if let Some(s) = name.strip_suffix(".nsx") {
        (s, FileKind::NamespaceIndex)
    } else if let Some(s) = name
        .strip_suffix(".eix.tmp")
        .or_else(|| name.strip_suffix(".pix.tmp"))
    {
        (s, FileKind::TraceIndexTemp)
    } else if let Some(s) = name
        .strip_suffix(".eix")
        .or_else(|| name.strip_suffix(".pix"))
    {
        (s, FileKind::TraceIndex)
    } else {
        return None;
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(kind)
}

/// Makes created, renamed and deleted names in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment header: every segment starts with the version vector of all records before it,
/// so the log's vector survives retention and start-up needs only the newest segment.
pub fn encode_header(vector_before: &VersionVector) -> Vec<u8> {
    let mut body = Vec::new();
    encode_vector(vector_before, &mut body);
    encode_block(SEGMENT_MAGIC, &body)
}

/// Reads the header of an open segment file: the vector before it and the header's size.
pub fn read_header(file: &mut File) -> io::Result<Option<(VersionVector, u64)>> {
    let mut prefix = [0u8; 16];
    file.seek(SeekFrom::Start(0))?;
    if read_full(file, &mut prefix)? < prefix.len() {
        return Ok(None);
    }
    let body_size = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize;
    if body_size > 16 * 1024 * 1024 {
        return Ok(None);
    }
    let mut block = prefix.to_vec();
    block.resize(16 + body_size, 0);
    if read_full(file, &mut block[16..])? < body_size {
        return Ok(None);
    }
    let header = decode_block(SEGMENT_MAGIC, &block)
        .and_then(|body| decode_vector(&mut Decoder::new(body)))
        .map(|vector| (vector, block.len() as u64));
    Ok(header)
}

/// Creates (or replaces) a segment file holding only its header, durably: the header is
/// fsync'd, then the directory. Returns the file, positioned after the header.
pub fn create_segment(
    dir: &Path,
    first_offset: u64,
    vector_before: &VersionVector,
) -> io::Result<(File, u64)> {
    let path = segment_path(dir, first_offset);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let header = encode_header(vector_before);
    file.write_all(&header)?;
    file.sync_data()?;
    fsync_dir(dir)?;
    Ok((file, header.len() as u64))
}

/// Writes a sealed segment's index: temp file, fsync, rename, directory fsync.
pub fn write_index(dir: &Path, index: &SegmentIndex) -> io::Result<()> {
    let temp = index_temp_path(dir, index.first_offset);
    let mut file = File::create(&temp)?;
    file.write_all(&index.encode())?;
    file.sync_data()?;
    drop(file);
    fs::rename(&temp, index_path(dir, index.first_offset))?;
    fsync_dir(dir)
}

/// Writes a sealed segment's namespace index: temp file, rename. No fdatasync and no
/// directory fsync: the file is derived from its segment, and every byte of it is checked
/// before it is used (the header at start-up, each piece a lookup reads by its checksum), so a
/// file a power loss left missing, short or torn is rebuilt from the segment like a damaged
/// one; syncing it cost a disk write of the whole file at every seal. `segment_identity` is
/// the segment's `SegmentIndex::identity`; `buffers` the build's working memory
/// (`SegmentNames::write_to`). Returns the header of what it wrote.
pub fn write_namespace_index(
    dir: &Path,
    names: &SegmentNames,
    segment_identity: u64,
    buffers: &mut BuildBuffers,
) -> io::Result<NamespaceHeader> {
    let temp = namespace_index_temp_path(dir, names.first_offset);
    let file = File::create(&temp)?;
    let header = names.write_to(segment_identity, &file, buffers)?;
    drop(file);
    fs::rename(&temp, namespace_index_path(dir, names.first_offset))?;
    Ok(header)
}

/// The header of the namespace index file of a sealed segment, checked (magic, checksum,
/// positions, length) and matched against the segment (first offset, record count, identity):
/// the start-up check, which reads only the first 64 bytes. `None` when the file is missing or
/// fails.
pub fn load_namespace_header(dir: &Path, segment: &SegmentIndex) -> Option<NamespaceHeader> {
    let file = File::open(namespace_index_path(dir, segment.first_offset)).ok()?;
    read_namespace_header(
        &file,
        segment.first_offset,
        segment.record_count,
        segment.identity(),
    )
}

/// Reads an index file; `None` when it is missing or damaged.
pub fn load_index(dir: &Path, first_offset: u64) -> Option<SegmentIndex> {
    let bytes = fs::read(index_path(dir, first_offset)).ok()?;
    SegmentIndex::decode(&bytes).filter(|index| index.first_offset == first_offset)
}

/// Reads until `buffer` is full or the end of the input; returns how many bytes were read.
pub fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Why the next record could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Decode(DecodeError),
}

/// A buffered reader of a file whose refills start at `READ_BUFFER_FIRST` bytes and, once it
/// has read `SPARSE_EVERY_BYTES`, double up to `READ_BUFFER_SIZE`: a sequential read soon reads
/// in large blocks, a point read reads little. A read at least as large as the next refill
/// (a long record's body) goes to the file directly.
#[derive(Debug)]
struct GrowingReader {
    file: File,
    buffer: Vec<u8>,
    /// The unread bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    /// Bytes read from the file so far.
    bytes_read: u64,
}

impl GrowingReader {
    fn new(file: File) -> Self {
        GrowingReader {
            file,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            bytes_read: 0,
        }
    }

    fn refill_size(&self) -> usize {
        if self.bytes_read < SPARSE_EVERY_BYTES {
            return READ_BUFFER_FIRST;
        }
        (self.buffer.len() * 2).clamp(READ_BUFFER_FIRST, READ_BUFFER_SIZE)
    }
}

impl GrowingReader {
    /// Takes the next `size` bytes from the buffer without a copy, if it holds them all:
    /// their position in `buffer`. `None` (nothing taken) when it does not; the caller then
    /// reads them with `read`.
    fn take_buffered(&mut self, size: usize) -> Option<usize> {
        if self.end - self.start < size {
            return None;
        }
        let start = self.start;
        self.start += size;
        Some(start)
    }
}

impl Read for GrowingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            let size = self.refill_size();
            if out.len() >= size {
                let read = self.file.read(out)?;
                self.bytes_read += read as u64;
                return Ok(read);
            }
            if self.buffer.len() < size {
                self.buffer.resize(size, 0);
            }
            let read = self.file.read(&mut self.buffer[..size])?;
            self.bytes_read += read as u64;
            self.start = 0;
            self.end = read;
        }
        let count = (self.end - self.start).min(out.len());
        out[..count].copy_from_slice(&self.buffer[self.start..self.start + count]);
        self.start += count;
        Ok(count)
    }
}

/// Reads the records of one segment file in order, through a buffer that grows as it reads.
#[derive(Debug)]
pub struct SegmentReader {
    pub first_offset: u64,
    /// The offset of the next record to read.
    pub next_offset: u64,
    /// The byte position of that record.
    pub position: u64,
    reader: GrowingReader,
    /// The body of the last record read when it was not whole in the read buffer (its
    /// allocation is kept for the next one, so reading allocates only when a record is
    /// larger than any before), or of a record given back by `unread`.
    body: Vec<u8>,
    /// Where the body of the last record read is in the read buffer, when it was viewed
    /// there without a copy (`GrowingReader::take_buffered`): its start and size.
    body_in_buffer: Option<(usize, usize)>,
    /// Set by `unread`: the last record (in `body`) was given back, with its size, and is
    /// returned again by the next read.
    unread: Option<u64>,
    /// Bodies decoded and bodies copied into `body` since `take_counts` (`LogActivity`).
    decodes: u64,
    body_copies: u64,
    /// The file's size when last checked; a length field reaching past it is checked against
    /// the current size before a buffer is allocated for the body.
    known_size: u64,
    /// The id of the last record `next_record` returned: the last readable event before a
    /// damaged record, for the report of the damage.
    pub last_id: Option<EventId>,
}

impl SegmentReader {
    /// Opens `path` positioned at the record `offset` that starts at byte `position`.
    pub fn open(path: PathBuf, first_offset: u64, offset: u64, position: u64) -> io::Result<Self> {
        let mut file = File::open(&path)?;
        let known_size = file.metadata()?.len();
        file.seek(SeekFrom::Start(position))?;
        Ok(SegmentReader {
            first_offset,
            next_offset: offset,
            position,
            reader: GrowingReader::new(file),
            body: Vec::new(),
            body_in_buffer: None,
            unread: None,
            decodes: 0,
            body_copies: 0,
            known_size,
            last_id: None,
        })
    }

    /// Gives back the record just read (`size` bytes), so a reader can stop before a record
    /// its caller did not accept and still continue from there.
    pub fn unread(&mut self, size: u64) {
        self.next_offset -= 1;
        self.position -= size;
        self.unread = Some(size);
        // A body viewed in the read buffer is copied out (once per stop, not per record):
        // the buffer may be refilled before the record is read again.
        if let Some((start, body_size)) = self.body_in_buffer.take() {
            self.body_copies += 1;
            self.body.clear();
            self.body
                .extend_from_slice(&self.reader.buffer[start..start + body_size]);
        }
    }

    /// The record bodies decoded and copied since the last call (`LogActivity`).
    pub fn take_counts(&mut self) -> (u64, u64) {
        let counts = (self.decodes, self.body_copies);
        (self.decodes, self.body_copies) = (0, 0);
        counts
    }

    /// The next record and its size; `Ok(None)` at a clean end of the file.
    pub fn next_record(&mut self) -> Result<Option<(Event, u64)>, ReadError> {
        Ok(self
            .next_view()?
            .map(|(event, size)| (event.to_event(), size)))
    }

    /// The next record, as a view of the reader's buffer, and its size; `Ok(None)` at a clean
    /// end of the file.
    pub fn next_view(&mut self) -> Result<Option<(EventRef<'_>, u64)>, ReadError> {
        self.body_in_buffer = None;
        if let Some(size) = self.unread.take() {
            self.next_offset += 1;
            self.position += size;
            // Its checksum and fields were checked when it was first read.
            self.decodes += 1;
            let event =
                view_checked_body(&self.body).ok_or(ReadError::Decode(DecodeError::BadBody))?;
            self.last_id = Some(event.id);
            return Ok(Some((event, size)));
        }
        let mut header = [0u8; RECORD_HEADER_SIZE];
        match read_full(&mut self.reader, &mut header).map_err(ReadError::Io)? {
            0 => return Ok(None),
            RECORD_HEADER_SIZE => {}
            _ => return Err(ReadError::Decode(DecodeError::Truncated)),
        }
        let (body_size, crc) = decode_header(&header).map_err(ReadError::Decode)?;
        let record_end = self.position + (RECORD_HEADER_SIZE + body_size) as u64;
        if record_end > self.known_size {
            // The open segment grows; look again before calling the record truncated.
            self.known_size = self.reader.file.metadata().map_err(ReadError::Io)?.len();
            if record_end > self.known_size {
                return Err(ReadError::Decode(DecodeError::Truncated));
            }
        }
        // A sequential read finds most bodies whole in the read buffer and views them there;
        // the others are copied into `body`.
        let body = match self.reader.take_buffered(body_size) {
            Some(start) => {
                self.body_in_buffer = Some((start, body_size));
                &self.reader.buffer[start..start + body_size]
            }
            None => {
                self.body_copies += 1;
                self.body.clear();
                self.body.resize(body_size, 0);
                if read_full(&mut self.reader, &mut self.body).map_err(ReadError::Io)? < body_size {
                    return Err(ReadError::Decode(DecodeError::Truncated));
                }
                &self.body
            }
        };
        // Checked before the position moves: a damaged record is reported at its own offset.
        self.decodes += 1;
        let event = view_body(&header, crc, body).map_err(ReadError::Decode)?;
        let size = (RECORD_HEADER_SIZE + body_size) as u64;
        self.next_offset += 1;
        self.position += size;
        self.last_id = Some(event.id);
        Ok(Some((event, size)))
    }
}

/// How a scan of a whole segment ended.
pub struct ScanResult {
    /// The index of the records that decoded.
    pub index: SegmentIndex,
    /// Their namespace index.
    pub namespaces: SegmentNames,
    /// Why the scan stopped before the end of the file, if it did.
    pub error: Option<DecodeError>,
    /// The id of the last record that decoded (the last readable event before `error`).
    pub last_id: Option<EventId>,
}

/// Reads every record of a segment from the byte after its header, building its index, until
/// the end of the file or the first record that does not decode.
pub fn scan_segment(path: &Path, first_offset: u64, header_size: u64) -> io::Result<ScanResult> {
    let mut reader =
        SegmentReader::open(path.to_path_buf(), first_offset, first_offset, header_size)?;
    let mut index = SegmentIndex::empty(first_offset, header_size);
    let mut namespaces = SegmentNames::empty(first_offset);
    let mut last_id = None;
    loop {
        match reader.next_view() {
            Ok(Some((event, size))) => {
                namespaces.observe_at(event.namespace, index.file_size, size);
                index.observe(event, size);
                last_id = Some(event.id);
            }
            Ok(None) => {
                return Ok(ScanResult {
                    index,
                    namespaces,
                    error: None,
                    last_id,
                })
            }
            Err(ReadError::Decode(error)) => {
                return Ok(ScanResult {
                    index,
                    namespaces,
                    error: Some(error),
                    last_id,
                })
            }
            Err(ReadError::Io(error)) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_classified() {
        let first = 42u64;
        let dir = Path::new("/d");
        let name = |p: PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            classify(&name(segment_path(dir, first))),
            Some(FileKind::Segment(42))
        );
        assert_eq!(
            classify(&name(index_path(dir, first))),
            Some(FileKind::Index(42))
        );
        assert_eq!(
            classify("00000000000000000042.idx.tmp"),
            Some(FileKind::IndexTemp(42))
        );
        assert_eq!(
            classify(&name(namespace_index_path(dir, first))),
            Some(FileKind::NamespaceIndex(42))
        );
        assert_eq!(
            classify("00000000000000000042.nsx.tmp"),
            Some(FileKind::NamespaceIndexTemp(42))
        );
        assert_eq!(classify(LOCK_FILE_NAME), Some(FileKind::Lock));
        assert_eq!(classify("next.log"), Some(FileKind::NextSegment));
        assert_eq!(classify("groups.journal"), Some(FileKind::GroupJournal));
        assert_eq!(classify("groups.journal.tmp"), Some(FileKind::GroupJournal));
        // Attack round 4: every start with this file logged it as a stray file.
        assert_eq!(classify("flo.purged-newest"), Some(FileKind::PurgedNewest));
        assert_eq!(
            classify("flo.purged-newest.tmp"),
            Some(FileKind::PurgedNewestTemp)
        );
        assert_eq!(
            classify(&name(quarantine_path(dir, first, 200))),
            Some(FileKind::Quarantine)
        );
        for stray in [
            "x.log",
            "42.log",
            "0000000000000000004a.log",
            "notes.txt",
            "00000000000000000042.log.quarantine-",
        ] {
            assert_eq!(classify(stray), None);
        }
    }
}
