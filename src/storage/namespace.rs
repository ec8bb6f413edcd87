//! The namespace index: for each namespace, the offsets of its records in one segment, so a
//! subscription to one namespace (or to a literal prefix such as `/accounts/42/`) reads only
//! the records that can match instead of the whole log.
//!
//! The open segment keeps only the namespace of each durable record, in order, in one byte
//! arena ([`SegmentNames`]): an append copies the name and pushes its end, nothing else. When
//! the segment is sealed, a storage helper thread sorts those names and writes
//! `{first:020}.nsx`: a header, a directory of hash buckets, a table of fixed-size entries
//! sorted by hash, and per namespace its name and offsets, each part with its own checksum.
//! A query for one namespace reads a few small pieces of that file with positioned reads and
//! checks each piece's checksum as it reads it; start-up checks only the 64-byte header. The
//! byte format and the rules are in docs/storage.md.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Magic of a namespace index file, format version 2.
pub const NAMESPACE_INDEX_MAGIC: &[u8; 8] = b"FLONSX\x00\x02";

/// Bytes of the file header.
pub const NAMESPACE_HEADER_SIZE: usize = 64;
/// Bytes of one table entry.
const ENTRY_SIZE: usize = 32;
/// Bytes of one directory slot (first entry of the bucket, checksum of the bucket).
const SLOT_SIZE: usize = 8;
/// The directory has `2^bucket_bits` slots, at most `2^BUCKET_BITS_MAX`.
const BUCKET_BITS_MAX: u32 = 24;
/// The writer picks the fewest buckets that hold at most this many entries each on average.
const ENTRIES_PER_BUCKET: usize = 8;

/// Which namespaces an index query selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceKey {
    /// Exactly this namespace.
    Exact(String),
    /// Every namespace that starts with this text (a superset of what a glob with this
    /// literal prefix matches; the caller still matches each record against its glob).
    Prefix(String),
}

impl NamespaceKey {
    /// Whether this key selects `namespace`.
    pub fn matches(&self, namespace: &str) -> bool {
        self.matches_bytes(namespace.as_bytes())
    }

    fn matches_bytes(&self, namespace: &[u8]) -> bool {
        match self {
            NamespaceKey::Exact(name) => namespace == name.as_bytes(),
            NamespaceKey::Prefix(prefix) => namespace.starts_with(prefix.as_bytes()),
        }
    }
}

/// The 64-bit hash the table is sorted by (documented in docs/storage.md, part of the file
/// format): FNV-1a over the name's bytes, then a final mix (the murmur3 finalizer) so the top
/// bits, which pick the bucket, depend on every byte. Not keyed: names that collide on purpose
/// only make their bucket longer (every name is compared), bounded by the segment's records.
pub fn namespace_hash(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A 32-bit fingerprint of a name for the open segment's linear lookup: its length and its
/// first and last 8 bytes, mixed. Costs a few nanoseconds per append (no loop over the name);
/// equal names have equal fingerprints, and every fingerprint match is confirmed by comparing
/// the names, so a collision costs only a comparison.
fn fingerprint(name: &[u8]) -> u32 {
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let head = word(&name[..name.len().min(8)]);
    let tail = word(&name[name.len().saturating_sub(8)..]);
    let mixed =
        (head ^ tail.rotate_left(29) ^ name.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 32) as u32
}

/// The namespaces of one segment's records, in record order: what the open segment keeps, and
/// what a `.nsx` file is built from. Memory: the names' bytes plus 12 bytes per record, so at
/// most about the segment's own size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNames {
    pub first_offset: u64,
    bytes: Vec<u8>,
    /// `ends[i]`: where record i's name ends in `bytes` (it starts where i - 1's ends).
    ends: Vec<usize>,
    /// `fingerprints[i]`: record i's name's `fingerprint`.
    fingerprints: Vec<u32>,
}

impl SegmentNames {
    pub fn empty(first_offset: u64) -> SegmentNames {
        SegmentNames {
            first_offset,
            bytes: Vec::new(),
            ends: Vec::new(),
            fingerprints: Vec::new(),
        }
    }

    /// Accounts for the segment's next record.
    pub fn observe(&mut self, namespace: &str) {
        self.bytes.extend_from_slice(namespace.as_bytes());
        self.ends.push(self.bytes.len());
        self.fingerprints.push(fingerprint(namespace.as_bytes()));
    }

    pub fn record_count(&self) -> u64 {
        self.ends.len() as u64
    }

    fn name(&self, record: usize) -> &[u8] {
        let start = record.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[record]]
    }

    /// Appends to `found`, ascending, the offsets in `from..end` of records whose namespace
    /// `key` selects, at most `count_max` of them. An exact key compares the fingerprint of
    /// every record in the range, a prefix key every name.
    pub fn lookup(
        &self,
        key: &NamespaceKey,
        from: u64,
        end: u64,
        count_max: usize,
        found: &mut Vec<u64>,
    ) {
        let first = self.first_offset;
        let begin = from.saturating_sub(first).min(self.record_count()) as usize;
        let stop = end.saturating_sub(first).min(self.record_count()) as usize;
        let mut count = 0;
        if let NamespaceKey::Exact(name) = key {
            let wanted = fingerprint(name.as_bytes());
            let candidates = (begin..stop).filter(|&record| self.fingerprints[record] == wanted);
            let matching = candidates.filter(|&record| self.name(record) == name.as_bytes());
            found.extend(matching.take(count_max).map(|record| first + record as u64));
            return;
        }
        for record in begin..stop {
            if count == count_max {
                return;
            }
            if key.matches_bytes(self.name(record)) {
                found.push(first + record as u64);
                count += 1;
            }
        }
    }

    /// The offset of the newest record in `..end` whose namespace is `name`, looking from the
    /// newest record back (fingerprints first, names to confirm).
    pub fn last_exact(&self, name: &str, end: u64) -> Option<u64> {
        let stop = end
            .saturating_sub(self.first_offset)
            .min(self.record_count()) as usize;
        let wanted = fingerprint(name.as_bytes());
        (0..stop)
            .rev()
            .find(|&record| {
                self.fingerprints[record] == wanted && self.name(record) == name.as_bytes()
            })
            .map(|record| self.first_offset + record as u64)
    }

    /// The `.nsx` file of these records (docs/storage.md). Sorting is the costly part: the
    /// file log builds it on a storage helper thread.
    pub fn encode(&self) -> Vec<u8> {
        let mut order: Vec<(u64, u32)> = (0..self.ends.len())
            .map(|record| (namespace_hash(self.name(record)), record as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.name(a.1 as usize).cmp(self.name(b.1 as usize)))
                .then(a.1.cmp(&b.1))
        });
        // One group per namespace: equal hash and equal name, records ascending.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for (i, &(hash, record)) in order.iter().enumerate() {
            let same = groups.last().is_some_and(|&(start, _)| {
                let (first_hash, first_record) = order[start];
                first_hash == hash && self.name(first_record as usize) == self.name(record as usize)
            });
            match (same, groups.last_mut()) {
                (true, Some(group)) => group.1 = i + 1,
                _ => groups.push((i, i + 1)),
            }
        }
        let mut bucket_bits = 0;
        while (ENTRIES_PER_BUCKET << bucket_bits) < groups.len() && bucket_bits < BUCKET_BITS_MAX {
            bucket_bits += 1;
        }
        let buckets = 1usize << bucket_bits;
        let table_position = NAMESPACE_HEADER_SIZE + SLOT_SIZE * buckets + 4;
        let data_position = table_position + ENTRY_SIZE * groups.len();
        let mut table = Vec::with_capacity(ENTRY_SIZE * groups.len());
        let mut data = Vec::with_capacity(self.bytes.len() + 4 * order.len());
        for &(start, end) in &groups {
            let (hash, first_record) = order[start];
            let name = self.name(first_record as usize);
            let entry_data = data.len();
            data.extend_from_slice(name);
            for &(_, record) in &order[start..end] {
                data.extend_from_slice(&record.to_le_bytes());
            }
            table.extend_from_slice(&hash.to_le_bytes());
            table.extend_from_slice(&((data_position + entry_data) as u64).to_le_bytes());
            table.extend_from_slice(&(name.len() as u32).to_le_bytes());
            table.extend_from_slice(&((end - start) as u32).to_le_bytes());
            table.extend_from_slice(&crc32c::crc32c(&data[entry_data..]).to_le_bytes());
            table.extend_from_slice(&0u32.to_le_bytes());
        }
        let entry_count = groups.len() as u32;
        let header = NamespaceHeader {
            first_offset: self.first_offset,
            record_count: self.record_count(),
            entry_count,
            bucket_bits,
            file_size: (data_position + data.len()) as u64,
        };
        let mut out = Vec::with_capacity(data_position + data.len());
        out.extend_from_slice(&header.encode());
        let mut bucket_start = 0u32;
        for bucket in 0..buckets {
            let bucket_end = if bucket + 1 == buckets {
                entry_count
            } else {
                let next = bucket as u64 + 1;
                groups.partition_point(|&(start, _)| bucket_of(order[start].0, bucket_bits) < next)
                    as u32
            };
            let entries = &table[ENTRY_SIZE * bucket_start as usize..]
                [..ENTRY_SIZE * (bucket_end - bucket_start) as usize];
            out.extend_from_slice(&bucket_start.to_le_bytes());
            out.extend_from_slice(&bucket_crc(bucket_start, bucket_end, entries).to_le_bytes());
            bucket_start = bucket_end;
        }
        out.extend_from_slice(&entry_count.to_le_bytes());
        out.extend_from_slice(&table);
        out.extend_from_slice(&data);
        out
    }
}

fn bucket_of(hash: u64, bucket_bits: u32) -> u64 {
    if bucket_bits == 0 {
        0
    } else {
        hash >> (64 - bucket_bits)
    }
}

fn bucket_crc(start: u32, end: u32, entries: &[u8]) -> u32 {
    let mut bounds = [0u8; 8];
    bounds[..4].copy_from_slice(&start.to_le_bytes());
    bounds[4..].copy_from_slice(&end.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&bounds), entries)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The header of a `.nsx` file: checked at start-up and kept in memory (64 bytes per sealed
/// segment), so a query starts with the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceHeader {
    pub first_offset: u64,
    pub record_count: u64,
    entry_count: u32,
    bucket_bits: u32,
    pub file_size: u64,
}

/// Why a namespace index file could not answer.
#[derive(Debug)]
pub enum NamespaceFileError {
    Io(std::io::Error),
    /// A checksum or a rule of the format failed: the file must be rebuilt.
    Damaged(&'static str),
}

impl From<std::io::Error> for NamespaceFileError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return NamespaceFileError::Damaged("shorter than its header says");
        }
        NamespaceFileError::Io(error)
    }
}

impl std::fmt::Display for NamespaceFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamespaceFileError::Io(error) => write!(f, "{error}"),
            NamespaceFileError::Damaged(what) => write!(f, "damaged: {what}"),
        }
    }
}

use NamespaceFileError::Damaged;

impl NamespaceHeader {
    fn table_position(&self) -> u64 {
        (NAMESPACE_HEADER_SIZE + SLOT_SIZE * (1usize << self.bucket_bits) + 4) as u64
    }

    fn data_position(&self) -> u64 {
        self.table_position() + (ENTRY_SIZE as u64) * self.entry_count as u64
    }

    fn encode(&self) -> [u8; NAMESPACE_HEADER_SIZE] {
        let mut out = [0u8; NAMESPACE_HEADER_SIZE];
        out[..8].copy_from_slice(NAMESPACE_INDEX_MAGIC);
        out[8..16].copy_from_slice(&self.first_offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        out[24..28].copy_from_slice(&self.entry_count.to_le_bytes());
        out[28..32].copy_from_slice(&self.bucket_bits.to_le_bytes());
        out[32..40].copy_from_slice(&self.table_position().to_le_bytes());
        out[40..48].copy_from_slice(&self.data_position().to_le_bytes());
        out[48..56].copy_from_slice(&self.file_size.to_le_bytes());
        let crc = crc32c::crc32c(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header: magic, checksum, and the positions it implies.
    pub fn decode(bytes: &[u8]) -> Option<NamespaceHeader> {
        if bytes.len() < NAMESPACE_HEADER_SIZE || &bytes[..8] != NAMESPACE_INDEX_MAGIC {
            return None;
        }
        if crc32c::crc32c(&bytes[..60]) != u32_at(bytes, 60) || u32_at(bytes, 56) != 0 {
            return None;
        }
        let header = NamespaceHeader {
            first_offset: u64_at(bytes, 8),
            record_count: u64_at(bytes, 16),
            entry_count: u32_at(bytes, 24),
            bucket_bits: u32_at(bytes, 28),
            file_size: u64_at(bytes, 48),
        };
        let consistent = header.bucket_bits <= BUCKET_BITS_MAX
            && u64_at(bytes, 32) == header.table_position()
            && u64_at(bytes, 40) == header.data_position()
            && header.data_position() <= header.file_size
            && header.entry_count as u64 <= header.record_count;
        consistent.then_some(header)
    }

    /// The entries of the bucket `bucket`, checked against the bucket's checksum.
    fn read_bucket(&self, file: &File, bucket: u64) -> Result<Vec<u8>, NamespaceFileError> {
        let mut slots = [0u8; SLOT_SIZE + 4];
        let slot_position = NAMESPACE_HEADER_SIZE as u64 + SLOT_SIZE as u64 * bucket;
        file.read_exact_at(&mut slots, slot_position)?;
        let (start, crc, end) = (u32_at(&slots, 0), u32_at(&slots, 4), u32_at(&slots, 8));
        if start > end || end > self.entry_count {
            return Err(Damaged("a directory slot is out of range"));
        }
        let mut entries = vec![0u8; ENTRY_SIZE * (end - start) as usize];
        let position = self.table_position() + (ENTRY_SIZE as u64) * start as u64;
        file.read_exact_at(&mut entries, position)?;
        if bucket_crc(start, end, &entries) != crc {
            return Err(Damaged("a bucket's checksum does not match"));
        }
        Ok(entries)
    }

    /// One entry's name and offsets, checked against its checksum and the format's rules.
    fn read_entry(
        &self,
        file: &File,
        entry: &[u8],
    ) -> Result<(Vec<u8>, Vec<u32>), NamespaceFileError> {
        let position = u64_at(entry, 8);
        let name_size = u32_at(entry, 16) as u64;
        let count = u32_at(entry, 20) as u64;
        let size = name_size + 4 * count;
        let in_file = position >= self.data_position()
            && position
                .checked_add(size)
                .is_some_and(|end| end <= self.file_size);
        if !in_file || count == 0 || count > self.record_count || u32_at(entry, 28) != 0 {
            return Err(Damaged("an entry points outside the data"));
        }
        let mut data = vec![0u8; size as usize];
        file.read_exact_at(&mut data, position)?;
        if crc32c::crc32c(&data) != u32_at(entry, 24) {
            return Err(Damaged("a namespace list's checksum does not match"));
        }
        let offsets: Vec<u32> = data[name_size as usize..]
            .chunks_exact(4)
            .map(|word| u32_at(word, 0))
            .collect();
        let ascending = offsets.windows(2).all(|pair| pair[0] < pair[1]);
        let below = offsets
            .last()
            .is_some_and(|&o| (o as u64) < self.record_count);
        if !ascending || !below || namespace_hash(&data[..name_size as usize]) != u64_at(entry, 0) {
            return Err(Damaged("a namespace list breaks the format's rules"));
        }
        data.truncate(name_size as usize);
        Ok((data, offsets))
    }

    /// Appends to `found`, ascending, the offsets in `from..end` of records whose namespace
    /// `key` selects, at most `count_max` of them, reading `file` (this header's `.nsx`).
    /// An exact key reads one directory slot, one bucket and the lists of the bucket's entries
    /// with the same hash; a prefix key reads every entry of the file.
    pub fn lookup(
        &self,
        file: &File,
        key: &NamespaceKey,
        range: (u64, u64),
        count_max: usize,
        found: &mut Vec<u64>,
    ) -> Result<(), NamespaceFileError> {
        let buckets: Box<dyn Iterator<Item = u64>> = match key {
            NamespaceKey::Exact(name) => Box::new(std::iter::once(bucket_of(
                namespace_hash(name.as_bytes()),
                self.bucket_bits,
            ))),
            NamespaceKey::Prefix(_) => Box::new(0..1u64 << self.bucket_bits),
        };
        let wanted_hash = match key {
            NamespaceKey::Exact(name) => Some(namespace_hash(name.as_bytes())),
            NamespaceKey::Prefix(_) => None,
        };
        let from = range.0.saturating_sub(self.first_offset);
        let end = range.1.saturating_sub(self.first_offset);
        let mut merged = Vec::new();
        for bucket in buckets {
            let entries = self.read_bucket(file, bucket)?;
            for entry in entries.chunks_exact(ENTRY_SIZE) {
                let hash = u64_at(entry, 0);
                if bucket_of(hash, self.bucket_bits) != bucket {
                    return Err(Damaged("an entry is in the wrong bucket"));
                }
                if wanted_hash.is_some_and(|wanted| wanted != hash) {
                    continue;
                }
                let (name, offsets) = self.read_entry(file, entry)?;
                if !key.matches_bytes(&name) {
                    continue;
                }
                let selected = offsets
                    .into_iter()
                    .map(u64::from)
                    .filter(|&o| o >= from && o < end)
                    .take(count_max);
                merged.extend(selected.map(|o| self.first_offset + o));
            }
        }
        merged.sort_unstable();
        found.extend(merged.into_iter().take(count_max));
        Ok(())
    }
}

/// Reads and checks the header of an open `.nsx` file against the segment it indexes.
pub fn read_namespace_header(
    file: &File,
    first_offset: u64,
    record_count: u64,
) -> Option<NamespaceHeader> {
    let mut bytes = [0u8; NAMESPACE_HEADER_SIZE];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let header = NamespaceHeader::decode(&bytes)?;
    let size = file.metadata().ok()?.len();
    let matches = header.first_offset == first_offset
        && header.record_count == record_count
        && header.file_size == size;
    matches.then_some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> SegmentNames {
        let mut names = SegmentNames::empty(100);
        for namespace in ["/b", "/a/1", "/b", "/a/2", "/a", "/a/1", "/c"] {
            names.observe(namespace);
        }
        names
    }

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        let file = File::open(temp.path()).unwrap();
        (temp, file)
    }

    fn keys() -> Vec<NamespaceKey> {
        let exact = ["/b", "/a/1", "/a/2", "/a", "/c", "/zz", ""];
        let prefixes = ["/a/", "/a", "/", "/b", "/zz", ""];
        let exact = exact.iter().map(|k| NamespaceKey::Exact(k.to_string()));
        exact
            .chain(prefixes.iter().map(|k| NamespaceKey::Prefix(k.to_string())))
            .collect()
    }

    #[test]
    fn lookups_select_exact_names_and_prefixes_in_offset_order() {
        let names = sample();
        let mut found = Vec::new();
        names.lookup(&NamespaceKey::Exact("/b".into()), 0, 200, 10, &mut found);
        assert_eq!(found, [100, 102]);
        found.clear();
        let prefix = NamespaceKey::Prefix("/a/".into());
        names.lookup(&prefix, 102, 200, 10, &mut found);
        assert_eq!(found, [103, 105]);
        found.clear();
        names.lookup(&NamespaceKey::Prefix("/a".into()), 0, 105, 2, &mut found);
        assert_eq!(found, [101, 103]);
    }

    /// The file answers every key, range and count exactly as the names in memory do, with
    /// any number of buckets.
    #[test]
    fn the_file_answers_as_the_names_in_memory() {
        for count in [0usize, 1, 7, 40, 300] {
            let mut names = SegmentNames::empty(1000);
            for record in 0..count {
                names.observe(&format!("/n/{}", (record * 7919) % (count / 3 + 1)));
            }
            names.observe("/b");
            let bytes = names.encode();
            let (_temp, file) = file_of(&bytes);
            let header = read_namespace_header(&file, 1000, count as u64 + 1).unwrap();
            let mut keys = keys();
            keys.push(NamespaceKey::Exact("/n/1".into()));
            keys.push(NamespaceKey::Prefix("/n/1".into()));
            for key in &keys {
                for (from, end, count_max) in [(0, 5000, 1000), (1003, 1010, 2), (990, 1001, 1)] {
                    let (mut expected, mut found) = (Vec::new(), Vec::new());
                    names.lookup(key, from, end, count_max, &mut expected);
                    header
                        .lookup(&file, key, (from, end), count_max, &mut found)
                        .unwrap();
                    assert_eq!(found, expected, "{key:?} {from}..{end} {count_max}");
                }
            }
        }
    }

    #[test]
    fn the_documented_example_encodes_as_docs_storage_md_says() {
        let mut names = SegmentNames::empty(100);
        for namespace in ["/b", "/a", "/b"] {
            names.observe(namespace);
        }
        let bytes = names.encode();
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        // The same bytes, line by line, as docs/storage.md shows them.
        let expected = [
            "46 4C 4F 4E 53 58 00 02 64 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00",
            "02 00 00 00 00 00 00 00 4C 00 00 00 00 00 00 00 8C 00 00 00 00 00 00 00",
            "9C 00 00 00 00 00 00 00 00 00 00 00 F8 3A BB D1",
            "00 00 00 00 A9 76 24 B0",
            "02 00 00 00",
            "E2 A0 3A 00 95 E4 CE 34 8C 00 00 00 00 00 00 00 02 00 00 00 02 00 00 00",
            "E6 A9 D8 A9 00 00 00 00",
            "04 56 54 31 74 12 50 3B 96 00 00 00 00 00 00 00 02 00 00 00 01 00 00 00",
            "58 94 3C FD 00 00 00 00",
            "2F 62 00 00 00 00 02 00 00 00",
            "2F 61 01 00 00 00",
        ];
        assert_eq!(hex.join(" "), expected.join(" "));
        assert_eq!(namespace_hash(b"/a"), 0x3B50_1274_3154_5604);
        assert_eq!(namespace_hash(b"/b"), 0x34CE_E495_003A_A0E2);
    }

    /// Every byte of a file is covered by a check a lookup or the start-up check makes: a
    /// flipped bit anywhere makes a full walk (every prefix) fail or the header refuse.
    #[test]
    fn a_flipped_bit_anywhere_is_found() {
        let bytes = sample().encode();
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x04;
            let (_temp, file) = file_of(&damaged);
            let Some(header) = read_namespace_header(&file, 100, 7) else {
                continue;
            };
            let mut found = Vec::new();
            let key = NamespaceKey::Prefix(String::new());
            let result = header.lookup(&file, &key, (0, u64::MAX), usize::MAX, &mut found);
            assert!(
                matches!(result, Err(Damaged(_))),
                "byte {position} flipped: {result:?} {found:?}"
            );
        }
    }

    #[test]
    fn a_short_file_is_refused_at_the_header() {
        let bytes = sample().encode();
        let (_temp, file) = file_of(&bytes[..bytes.len() - 1]);
        assert!(read_namespace_header(&file, 100, 7).is_none());
    }
}
