//! The trace indexes: for each sealed segment, the offsets of its records by their own id
//! (`{first:020}.eix`) and by their parent's id (`{first:020}.pix`), so a trace (protocol.md,
//! TraceRequest) finds an event, its parent and its children without reading the log.
//!
//! Both reuse the namespace index's file format (docs/storage.md, "Namespace index"): the key
//! of a record takes the place of its namespace (an id as 20 lowercase hex digits, counter then
//! actor, so name order is id order; a record without a parent has no key in the `.pix`), and
//! the header names the segment it indexes, so a file of another segment is refused. The open
//! segment keeps its records' keys in memory (two small arenas: about 64 bytes per record);
//! sealing it writes both files on a helper thread, one segment at a time. A file that is
//! missing or damaged (a crash before it was written, a log older than the trace index) is
//! rebuilt from its segment's records by the first lookup that needs it. Retention deletes the
//! files with their segment. After a restart the open segment's keys are rebuilt from its
//! records by the first lookup, not at start-up.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::event::{EventId, EventRef};

use super::namespace::{read_namespace_header, NamespaceHeader, NamespaceKey, SegmentNames};
use super::segment::fsync_dir;

/// Which key of a record a trace index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceKey {
    /// The record's own id (`.eix`).
    Id,
    /// The record's parent id (`.pix`); records without a parent are not in it.
    Parent,
}

impl TraceKey {
    fn extension(self) -> &'static str {
        match self {
            TraceKey::Id => "eix",
            TraceKey::Parent => "pix",
        }
    }

    /// Whether `event` has `id` as this key.
    pub fn matches(self, event: EventRef<'_>, id: EventId) -> bool {
        match self {
            TraceKey::Id => event.id == id,
            TraceKey::Parent => event.parent_id == Some(id),
        }
    }
}

/// An id as a key: 20 lowercase hex digits, the counter then the actor, so keys sort as ids.
pub fn id_key(id: EventId) -> String {
    let mut bytes = [0u8; 20];
    write_id_key(id, &mut bytes);
    // Hex digits are ASCII.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn write_id_key(id: EventId, out: &mut [u8; 20]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let value = (u128::from(id.counter) << 16) | u128::from(id.actor.0);
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((value >> (4 * (19 - i))) & 0xf) as usize];
    }
}

pub fn trace_index_path(dir: &Path, first_offset: u64, key: TraceKey) -> PathBuf {
    dir.join(format!("{first_offset:020}.{}", key.extension()))
}

/// The keys of one segment's records for both trace indexes.
#[derive(Debug, Clone)]
pub struct SegmentKeys {
    pub ids: SegmentNames,
    pub parents: SegmentNames,
}

impl SegmentKeys {
    pub fn empty(first_offset: u64) -> SegmentKeys {
        SegmentKeys {
            ids: SegmentNames::empty(first_offset),
            parents: SegmentNames::empty(first_offset),
        }
    }

    /// Accounts for the segment's next record.
    pub fn observe(&mut self, event: EventRef<'_>) {
        let mut key = [0u8; 20];
        write_id_key(event.id, &mut key);
        // Hex digits are ASCII, so UTF-8.
        self.ids
            .observe(std::str::from_utf8(&key).unwrap_or_default());
        match event.parent_id {
            Some(parent) => {
                write_id_key(parent, &mut key);
                self.parents
                    .observe(std::str::from_utf8(&key).unwrap_or_default());
            }
            None => self.parents.observe(""),
        }
    }

    pub fn record_count(&self) -> u64 {
        self.ids.record_count()
    }

    pub fn of(&self, key: TraceKey) -> &SegmentNames {
        match key {
            TraceKey::Id => &self.ids,
            TraceKey::Parent => &self.parents,
        }
    }
}

/// The trace index of one sealed segment.
#[derive(Debug)]
pub enum SealedKeys {
    /// Its files are being written by the helper thread: lookups read these keys.
    Building(Arc<SegmentKeys>),
    /// Its files, with these headers (checked): `.eix`, then `.pix`.
    Written(NamespaceHeader, NamespaceHeader),
    /// Its files could not be written: lookups read the segment's records.
    Unwritable,
}

/// The helper thread writing a sealed segment's two files.
type IndexJob = JoinHandle<io::Result<(NamespaceHeader, NamespaceHeader)>>;

/// The trace indexes of the file log.
#[derive(Debug)]
pub struct TraceIndex {
    /// The keys of the open segment's durable records; `None` after a start-up until a lookup
    /// rebuilds them from the segment (appends are then not observed: the rebuild reads them).
    pub open: Option<SegmentKeys>,
    /// Sealed segments by first offset; one missing here has no usable files yet.
    pub sealed: BTreeMap<u64, SealedKeys>,
    build: Option<(u64, IndexJob)>,
    /// Files rebuilt from their segments since open.
    pub rebuilds: u64,
}

impl TraceIndex {
    pub fn new() -> TraceIndex {
        TraceIndex {
            open: None,
            sealed: BTreeMap::new(),
            build: None,
            rebuilds: 0,
        }
    }

    /// Accounts for a durable record of the open segment.
    pub fn observe(&mut self, event: EventRef<'_>) {
        if let Some(keys) = self.open.as_mut() {
            keys.observe(event);
        }
    }

    /// The open segment was sealed (its identity given) and `next_first` starts the next
    /// one: its keys go to a helper thread that writes both files.
    pub fn seal(&mut self, dir: &Path, identity: u64, next_first: u64) {
        // Keys are kept only once a trace asked for them (`open` is `Some`).
        let Some(keys) = self
            .open
            .as_mut()
            .map(|open| std::mem::replace(open, SegmentKeys::empty(next_first)))
        else {
            return;
        };
        self.finish_build(true);
        let first = keys.ids.first_offset;
        let keys = Arc::new(keys);
        let shared = Arc::clone(&keys);
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("flo-trace-index".into())
            .spawn(move || write_trace_index(&dir, &shared, identity));
        match spawned {
            Ok(job) => {
                self.sealed.insert(first, SealedKeys::Building(keys));
                self.build = Some((first, job));
            }
            Err(error) => log::warn!("cannot start a thread to write a trace index ({error})"),
        }
    }

    /// Takes the helper thread's result when it is done (with `wait`, waits for it).
    pub fn finish_build(&mut self, wait: bool) {
        let Some((first, job)) = self.build.take() else {
            return;
        };
        if !wait && !job.is_finished() {
            self.build = Some((first, job));
            return;
        }
        match job.join() {
            Ok(Ok((ids, parents))) => {
                if let Some(state) = self.sealed.get_mut(&first) {
                    *state = SealedKeys::Written(ids, parents);
                }
            }
            Ok(Err(error)) => {
                log::warn!("cannot write the trace index of segment {first} ({error}); a lookup will rebuild it");
                self.sealed.remove(&first);
            }
            Err(_) => {
                log::error!("the helper thread writing a trace index panicked");
                self.sealed.remove(&first);
            }
        }
    }

    /// Retention deletes the segment at `first_offset`: its files go with it.
    pub fn delete(&mut self, dir: &Path, first_offset: u64) -> io::Result<()> {
        if self
            .build
            .as_ref()
            .is_some_and(|(first, _)| *first == first_offset)
        {
            self.finish_build(true);
        }
        self.sealed.remove(&first_offset);
        for key in [TraceKey::Id, TraceKey::Parent] {
            match fs::remove_file(trace_index_path(dir, first_offset, key)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Default for TraceIndex {
    fn default() -> TraceIndex {
        TraceIndex::new()
    }
}

/// Writes both trace index files of a sealed segment (each synced, renamed into place, the
/// directory synced).
pub fn write_trace_index(
    dir: &Path,
    keys: &SegmentKeys,
    identity: u64,
) -> io::Result<(NamespaceHeader, NamespaceHeader)> {
    let mut headers = Vec::with_capacity(2);
    for key in [TraceKey::Id, TraceKey::Parent] {
        let names = keys.of(key);
        let path = trace_index_path(dir, names.first_offset, key);
        let temp = path.with_extension(format!("{}.tmp", key.extension()));
        let bytes = names.encode(identity);
        let mut file = File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        drop(file);
        fs::rename(&temp, &path)?;
        let header = NamespaceHeader::decode(&bytes)
            .ok_or_else(|| io::Error::other("a trace index just encoded does not decode"))?;
        headers.push(header);
    }
    fsync_dir(dir)?;
    Ok((headers[0], headers[1]))
}

/// Reads a sealed segment's trace index file header, checked against the segment.
pub fn load_trace_header(
    dir: &Path,
    key: TraceKey,
    first_offset: u64,
    record_count: u64,
    identity: u64,
) -> Option<NamespaceHeader> {
    let file = File::open(trace_index_path(dir, first_offset, key)).ok()?;
    read_namespace_header(&file, first_offset, record_count, identity)
}

/// The lookup key of an id.
pub fn lookup_key(id: EventId) -> NamespaceKey {
    NamespaceKey::Exact(id_key(id))
}

impl super::FileLog {
    /// `Log::find_traced_within` for the file log: each segment from `from` by its trace
    /// index (see the module documentation), `namespace_segments_per_query_max` segments at
    /// most per call.
    pub(super) fn find_traced_indexed(
        &mut self,
        key: TraceKey,
        id: EventId,
        from: super::Offset,
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<super::Offset>,
    ) -> Result<super::Offset, super::StorageError> {
        use super::Log as _;
        if !self.config.trace_index {
            return super::scan_traced_within(self, key, id, from, count_max, work, found);
        }
        self.trace.finish_build(false);
        let durable_end = self.durable_end().0;
        let mut offset = from.0.max(self.start().0);
        let lookup = lookup_key(id);
        let mut positions = Vec::new();
        let mut segments_read = 0;
        while offset < durable_end && segments_read < self.config.namespace_segments_per_query_max {
            let wanted = count_max - positions.len();
            if wanted == 0 || (*work == 0 && segments_read > 0) {
                break;
            }
            let segment = self.segment_of(offset);
            let (first, segment_end) =
                (segment.first_offset, segment.end_offset().min(durable_end));
            let (record_count, identity) = (segment.record_count, segment.identity());
            let range = (offset, segment_end);
            offset = if first == self.open.index.first_offset {
                self.ensure_open_keys(work)?;
                let keys = self.trace.open.as_ref().map(|keys| keys.of(key));
                // Just made present by `ensure_open_keys`.
                let names = keys.expect("open keys");
                names.lookup(&lookup, range, wanted, work, &mut positions)
            } else {
                self.lookup_sealed_keys(
                    key,
                    id,
                    (first, record_count, identity),
                    range,
                    wanted,
                    work,
                    &mut positions,
                )?
            };
            segments_read += 1;
            if offset < segment_end {
                break;
            }
        }
        if positions.len() == count_max {
            if let Some(&last) = positions.last() {
                offset = last + 1;
            }
        }
        found.extend(positions.into_iter().map(super::Offset));
        Ok(super::Offset(offset))
    }

    /// Rebuilds the open segment's keys from its durable records after a start-up (charged to
    /// `work`, one unit per record).
    fn ensure_open_keys(&mut self, work: &mut u64) -> Result<(), super::StorageError> {
        use super::Log as _;
        if self.trace.open.is_some() {
            return Ok(());
        }
        let first = self.open.index.first_offset;
        let mut keys = SegmentKeys::empty(first);
        self.read(super::Offset(first), &mut |_, event| {
            keys.observe(event);
            true
        })?;
        *work = work.saturating_sub(keys.record_count());
        self.trace.open = Some(keys);
        Ok(())
    }

    /// One sealed segment's lookup, `(first offset, record count, identity)`.
    #[allow(clippy::too_many_arguments)]
    fn lookup_sealed_keys(
        &mut self,
        key: TraceKey,
        id: EventId,
        (first, record_count, identity): (u64, u64, u64),
        range: (u64, u64),
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<u64>,
    ) -> Result<u64, super::StorageError> {
        let dir = self.config.data_dir.clone();
        let lookup = lookup_key(id);
        if let std::collections::btree_map::Entry::Vacant(vacant) = self.trace.sealed.entry(first) {
            let headers = [TraceKey::Id, TraceKey::Parent]
                .map(|k| load_trace_header(&dir, k, first, record_count, identity));
            if let [Some(ids), Some(parents)] = headers {
                vacant.insert(SealedKeys::Written(ids, parents));
            }
        }
        let problem = match self.trace.sealed.get(&first) {
            Some(SealedKeys::Building(keys)) => {
                return Ok(keys.of(key).lookup(&lookup, range, count_max, work, found));
            }
            Some(SealedKeys::Unwritable) => {
                return self.scan_traced_range(key, id, range, count_max, work, found);
            }
            Some(SealedKeys::Written(ids, parents)) => {
                let header = if key == TraceKey::Id { ids } else { parents };
                let mut answer = Vec::new();
                let result = File::open(trace_index_path(&dir, first, key))
                    .map_err(super::namespace::NamespaceFileError::Io)
                    .and_then(|file| {
                        header.lookup(&file, &lookup, range, count_max, work, &mut answer)
                    });
                match result {
                    Ok(_) => {
                        found.extend(answer);
                        return Ok(range.1);
                    }
                    Err(error) => error.to_string(),
                }
            }
            None => "missing".to_string(),
        };
        log::info!("trace index of segment {first} cannot be used ({problem}); rebuilding it");
        self.trace.rebuilds += 1;
        let mut keys = SegmentKeys::empty(first);
        let end = first + record_count;
        use super::Log as _;
        self.read(super::Offset(first), &mut |offset, event| {
            if offset.0 >= end {
                return false;
            }
            keys.observe(event);
            true
        })?;
        *work = work.saturating_sub(record_count);
        if keys.record_count() != record_count {
            return Err(super::StorageError::Corrupt {
                context: format!("segment {first} does not read back whole for its trace index"),
            });
        }
        let reached = keys
            .of(key)
            .lookup(&lookup, range, count_max, &mut u64::MAX.clone(), found);
        let state = match write_trace_index(&dir, &keys, identity) {
            Ok((ids, parents)) => SealedKeys::Written(ids, parents),
            Err(error) => {
                log::warn!("cannot write the trace index of segment {first} ({error}); its lookups read its records");
                SealedKeys::Unwritable
            }
        };
        self.trace.sealed.insert(first, state);
        Ok(reached)
    }

    fn scan_traced_range(
        &mut self,
        key: TraceKey,
        id: EventId,
        (from, end): (u64, u64),
        count_max: usize,
        work: &mut u64,
        found: &mut Vec<u64>,
    ) -> Result<u64, super::StorageError> {
        use super::Log as _;
        let (mut count, mut read) = (0, 0u64);
        let reached = self.read(super::Offset(from), &mut |offset, event| {
            if offset.0 >= end || count >= count_max || (*work == 0 && read > 0) {
                return false;
            }
            *work = work.saturating_sub(1);
            read += 1;
            if key.matches(event, id) {
                found.push(offset.0);
                count += 1;
            }
            true
        })?;
        Ok(reached.0.min(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ActorId;

    #[test]
    fn id_keys_sort_as_ids() {
        let ids = [
            EventId::new(1, 2),
            EventId::new(1, 3),
            EventId::new(2, 1),
            EventId::new(u64::MAX, u16::MAX),
        ];
        let keys: Vec<String> = ids.iter().map(|&id| id_key(id)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        assert_eq!(id_key(EventId::new(0x2a, 1)), "000000000000002a0001");
        assert_eq!(ActorId(1), EventId::new(0x2a, 1).actor);
    }
}
