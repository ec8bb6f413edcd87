//! The namespace index: for each namespace, the offsets of its records in one segment, so a
//! subscription to one namespace (or to a literal prefix such as `/accounts/42/`) reads only
//! the records that can match instead of the whole log.
//!
//! The open segment's index lives in memory and is rebuilt from the segment at start-up (the
//! newest segment is read record by record then anyway). A sealed segment's index is written
//! once, when it is sealed, as `{first:020}.nsx`; start-up checks only its first bytes, a read
//! checks its checksum when it loads it, and a missing or damaged one is rebuilt from its
//! segment. Loaded indexes of sealed segments stay in a cache bounded by bytes. The byte
//! format and the rules are in docs/storage.md.

use std::collections::{HashMap, VecDeque};

use super::record::{decode_block, encode_block, Decoder};

/// Magic of a namespace index file, format version 1.
pub const NAMESPACE_INDEX_MAGIC: &[u8; 8] = b"FLONSX\x00\x01";

/// The loaded namespace indexes of sealed segments are kept in memory up to this many bytes
/// (`NamespaceIndex::size_in_memory`); the least recently used one goes first. One index larger
/// than this is still loaded for the query that needs it, then dropped.
pub const NAMESPACE_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A query reads the namespace indexes of at most this many segments, so one call costs
/// bounded time however long the log is; the caller calls again from where it stopped.
pub const NAMESPACE_SEGMENTS_PER_QUERY_MAX: usize = 16;

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
        match self {
            NamespaceKey::Exact(name) => namespace == name,
            NamespaceKey::Prefix(prefix) => namespace.starts_with(prefix.as_str()),
        }
    }
}

/// The namespace index of one segment: each namespace with the ascending offsets of its
/// records, relative to the segment's first offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceIndex {
    pub first_offset: u64,
    pub record_count: u64,
    /// A hash map: appending a record costs one hash lookup. The file lists the names sorted.
    names: HashMap<Box<str>, Vec<u32>>,
    size_in_memory: usize,
}

/// Memory counted per namespace besides its name and offsets (map node, vector header).
const ENTRY_OVERHEAD_BYTES: usize = 64;

impl NamespaceIndex {
    pub fn empty(first_offset: u64) -> NamespaceIndex {
        NamespaceIndex {
            first_offset,
            record_count: 0,
            names: HashMap::new(),
            size_in_memory: 0,
        }
    }

    /// Accounts for the segment's next record. A segment holds far fewer than 2^32 records
    /// (each takes at least 44 bytes), so a relative offset fits in a u32.
    pub fn observe(&mut self, namespace: &str) {
        let relative = self.record_count as u32;
        match self.names.get_mut(namespace) {
            Some(offsets) => offsets.push(relative),
            None => {
                self.size_in_memory += namespace.len() + ENTRY_OVERHEAD_BYTES;
                self.names.insert(namespace.into(), vec![relative]);
            }
        }
        self.size_in_memory += 4;
        self.record_count += 1;
    }

    /// The memory this index holds, roughly (for the cache bound).
    pub fn size_in_memory(&self) -> usize {
        self.size_in_memory
    }

    pub fn namespace_count(&self) -> usize {
        self.names.len()
    }

    /// Appends to `found`, ascending, the offsets in `from..end` of records whose namespace
    /// `key` selects, at most `count_max` of them.
    pub fn lookup(
        &self,
        key: &NamespaceKey,
        from: u64,
        end: u64,
        count_max: usize,
        found: &mut Vec<u64>,
    ) {
        let first = self.first_offset;
        let from_relative = from.saturating_sub(first).min(u32::MAX as u64) as u32;
        fn in_range(
            offsets: &[u32],
            first: u64,
            from_relative: u32,
            end: u64,
        ) -> impl Iterator<Item = u64> + '_ {
            let begin = offsets.partition_point(|&o| o < from_relative);
            offsets[begin..]
                .iter()
                .map(move |&o| first + o as u64)
                .take_while(move |&o| o < end)
        }
        let in_range = |offsets| in_range(offsets, first, from_relative, end);
        match key {
            NamespaceKey::Exact(name) => {
                if let Some(offsets) = self.names.get(name.as_str()) {
                    found.extend(in_range(offsets).take(count_max));
                }
            }
            NamespaceKey::Prefix(prefix) => {
                let mut merged: Vec<u64> = Vec::new();
                // Every name of the segment is looked at: bounded by the segment's records.
                let names = self.names.iter();
                for (_, offsets) in names.filter(|(name, _)| name.starts_with(prefix.as_str())) {
                    merged.extend(in_range(offsets).take(count_max));
                }
                merged.sort_unstable();
                found.extend(merged.into_iter().take(count_max));
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(20 + self.size_in_memory);
        body.extend_from_slice(&self.first_offset.to_le_bytes());
        body.extend_from_slice(&self.record_count.to_le_bytes());
        body.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        let mut names: Vec<_> = self.names.iter().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, offsets) in names {
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
            for offset in offsets {
                body.extend_from_slice(&offset.to_le_bytes());
            }
        }
        encode_block(NAMESPACE_INDEX_MAGIC, &body)
    }

    /// Decodes an index file; `None` when it is damaged or inconsistent in any way (checksum,
    /// names not strictly ascending or not UTF-8, offsets not strictly ascending or not below
    /// `record_count`, or not exactly `record_count` offsets in all).
    pub fn decode(bytes: &[u8]) -> Option<NamespaceIndex> {
        let body = decode_block(NAMESPACE_INDEX_MAGIC, bytes)?;
        let mut decoder = Decoder::new(body);
        let mut index = NamespaceIndex::empty(decoder.u64()?);
        let record_count = decoder.u64()?;
        let name_count = decoder.u32()?;
        let mut total = 0u64;
        let mut previous: Option<Box<str>> = None;
        for _ in 0..name_count {
            let name_size = decoder.u32()? as usize;
            let name: Box<str> = std::str::from_utf8(decoder.bytes(name_size)?).ok()?.into();
            if previous.as_ref().is_some_and(|p| *p >= name) {
                return None;
            }
            let count = decoder.u32()? as usize;
            // Each offset takes 4 bytes of the body: a damaged count cannot allocate more.
            let mut offsets = Vec::with_capacity(count.min(body.len() / 4));
            for _ in 0..count {
                let offset = decoder.u32()?;
                let ascending = offsets.last().is_none_or(|&last| last < offset);
                if !ascending || offset as u64 >= record_count {
                    return None;
                }
                offsets.push(offset);
            }
            total += count as u64;
            index.size_in_memory += name.len() + ENTRY_OVERHEAD_BYTES + 4 * count;
            previous = Some(name.clone());
            index.names.insert(name, offsets);
        }
        index.record_count = record_count;
        (decoder.is_at_end() && total == record_count).then_some(index)
    }

    /// Reads the first offset and record count from the start of an index file without
    /// checking the rest (start-up checks only these and the file's length).
    pub fn peek_header(prefix: &[u8]) -> Option<(u64, u64, u64)> {
        if prefix.len() < 32 || &prefix[..8] != NAMESPACE_INDEX_MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(prefix[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(prefix[i..i + 8].try_into().unwrap_or([0; 8]));
        let file_size = 16 + u32_at(8) as u64;
        Some((u64_at(16), u64_at(24), file_size))
    }
}

/// The loaded namespace indexes of sealed segments, least recently used first, bounded by
/// [`NAMESPACE_CACHE_BYTES_MAX`] (`bytes_max`).
#[derive(Debug)]
pub struct NamespaceCache {
    entries: VecDeque<NamespaceIndex>,
    bytes: usize,
    bytes_max: usize,
}

impl NamespaceCache {
    pub fn new(bytes_max: usize) -> NamespaceCache {
        NamespaceCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// The index of the segment starting at `first_offset`, marked as just used.
    pub fn get(&mut self, first_offset: u64) -> Option<&NamespaceIndex> {
        let position = self
            .entries
            .iter()
            .position(|index| index.first_offset == first_offset)?;
        let index = self.entries.remove(position)?;
        self.entries.push_back(index);
        self.entries.back()
    }

    /// Adds an index, evicting the least recently used ones to stay under the bound (the new
    /// one stays even if it alone is larger).
    pub fn insert(&mut self, index: NamespaceIndex) -> &NamespaceIndex {
        self.remove(index.first_offset);
        self.bytes += index.size_in_memory();
        self.entries.push_back(index);
        while self.bytes > self.bytes_max && self.entries.len() > 1 {
            if let Some(oldest) = self.entries.pop_front() {
                self.bytes -= oldest.size_in_memory();
            }
        }
        // Just pushed, so the deque is not empty.
        self.entries.back().expect("an entry was just inserted")
    }

    pub fn remove(&mut self, first_offset: u64) {
        if let Some(position) = self
            .entries
            .iter()
            .position(|index| index.first_offset == first_offset)
        {
            if let Some(index) = self.entries.remove(position) {
                self.bytes -= index.size_in_memory();
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NamespaceIndex {
        let mut index = NamespaceIndex::empty(100);
        for namespace in ["/b", "/a/1", "/b", "/a/2", "/a", "/a/1", "/c"] {
            index.observe(namespace);
        }
        index
    }

    #[test]
    fn lookups_select_exact_names_and_prefixes_in_offset_order() {
        let index = sample();
        let mut found = Vec::new();
        index.lookup(&NamespaceKey::Exact("/b".into()), 0, 200, 10, &mut found);
        assert_eq!(found, [100, 102]);
        found.clear();
        index.lookup(
            &NamespaceKey::Prefix("/a/".into()),
            102,
            200,
            10,
            &mut found,
        );
        assert_eq!(found, [103, 105]);
        found.clear();
        index.lookup(&NamespaceKey::Prefix("/a".into()), 0, 105, 2, &mut found);
        assert_eq!(found, [101, 103]);
        found.clear();
        index.lookup(&NamespaceKey::Exact("/zz".into()), 0, 200, 10, &mut found);
        assert!(found.is_empty());
    }

    #[test]
    fn the_documented_example_encodes_as_docs_storage_md_says() {
        let mut index = NamespaceIndex::empty(100);
        for namespace in ["/b", "/a", "/b"] {
            index.observe(namespace);
        }
        let bytes = index.encode();
        let mut body = Vec::new();
        body.extend_from_slice(&100u64.to_le_bytes());
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&[2, 0, 0, 0]);
        body.extend_from_slice(&[2, 0, 0, 0, 0x2F, 0x61, 1, 0, 0, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&[2, 0, 0, 0, 0x2F, 0x62, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[..8], b"FLONSX\x00\x01");
        assert_eq!(&bytes[16..], &body[..]);
    }

    #[test]
    fn index_files_round_trip_and_damage_is_refused() {
        let index = sample();
        let bytes = index.encode();
        assert_eq!(NamespaceIndex::decode(&bytes), Some(index.clone()));
        assert_eq!(
            NamespaceIndex::peek_header(&bytes),
            Some((100, 7, bytes.len() as u64))
        );
        assert_eq!(NamespaceIndex::decode(&bytes[..bytes.len() - 1]), None);
        for position in 16..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert_eq!(NamespaceIndex::decode(&damaged), None, "byte {position}");
        }
    }

    #[test]
    fn the_cache_stays_under_its_bound_and_keeps_the_newest() {
        let one = sample().size_in_memory();
        let mut cache = NamespaceCache::new(one * 2);
        for first in 0..4u64 {
            let mut index = sample();
            index.first_offset = first * 1000;
            cache.insert(index);
        }
        assert!(cache.bytes() <= one * 2);
        assert!(cache.get(0).is_none());
        assert!(cache.get(3000).is_some());
        cache.remove(3000);
        assert!(cache.get(3000).is_none());
    }
}
