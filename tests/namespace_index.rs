//! Proves that the file log's namespace index answers `find_namespace` exactly as reading every
//! record does (`storage::scan_namespace`, the reference), on seeded random logs: appends to
//! nested namespaces, syncs (some failing), retention deleting whole segments, restarts, and
//! namespace index files deleted, cut short or with a flipped byte (each must be rebuilt from
//! its segment, at start-up or when a query loads it). Every query runs to completion (the
//! index may stop at a segment bound and be called again) and is compared with the scan on the
//! same log. A failure names the seed and the step.

mod common;

use std::path::{Path, PathBuf};

use common::SeededRng;
use flo::config::{FsyncPolicy, StorageConfig};
use flo::event::{Event, EventId};
use flo::storage::{
    last_by_scan, read_first, scan_listing, scan_namespace, scan_traced_within, FileLog,
    InjectedFault, LastScan, Log, NameFilter, NamespaceKey, NamespaceListing, Offset, TraceKey,
};
use flo::time::{MonotonicMs, WallClockMs};

const NAMESPACES: &[&str] = &[
    "/a", "/a/1", "/a/1/x", "/a/2", "/ab", "/b", "/b/1", "/b/1/y", "/c/é", "/c/ü/z",
];
const PREFIXES: &[&str] = &["/a", "/a/", "/a/1", "/b/1", "/c", "/", "/zz", "/c/é"];

struct Model {
    random: SeededRng,
    file: FileLog,
    config: StorageConfig,
    counter: u64,
    now_ms: u64,
    namespace_rebuilds: u64,
    /// Rebuilds by queries of logs already closed (restarts), and damage of each part.
    query_rebuilds: u64,
    damaged_parts: [u64; 3],
}

fn open(config: &StorageConfig) -> (FileLog, u64) {
    let (log, report) = FileLog::open(config).unwrap();
    (log, report.namespace_indexes_rebuilt)
}

/// Runs `find_namespace` until it has `count_max` positions or reaches the durable end.
fn complete(
    log: &mut FileLog,
    key: &NamespaceKey,
    from: Offset,
    count_max: usize,
) -> (Vec<Offset>, Offset) {
    let mut found = Vec::new();
    let mut at = from;
    let mut calls = 0;
    loop {
        let left = count_max - found.len();
        at = log.find_namespace(key, at, left, &mut found).unwrap();
        calls += 1;
        assert!(calls < 10_000, "find_namespace makes no progress");
        if found.len() == count_max || at >= log.durable_end() {
            return (found, at);
        }
    }
}

impl Model {
    fn new(dir: &Path, seed: u64) -> Model {
        let mut random = SeededRng::new(seed);
        let mut config = StorageConfig::new(dir.to_path_buf());
        config.segment_size_max = 4096;
        config.cache_bytes_max = 1500;
        config.fsync = FsyncPolicy::Never;
        if random.below(2) == 0 {
            config.retention.events_max = Some(200 + random.below(400));
        }
        Model {
            random,
            file: open(&config).0,
            config,
            counter: 0,
            now_ms: 1_000_000,
            namespace_rebuilds: 0,
            query_rebuilds: 0,
            damaged_parts: [0; 3],
        }
    }

    fn restart(&mut self) {
        let scratch = tempfile::tempdir().unwrap();
        let placeholder = open(&StorageConfig::new(scratch.path().to_path_buf())).0;
        self.query_rebuilds += self.file.namespace_rebuild_count();
        drop(std::mem::replace(&mut self.file, placeholder));
        let (log, rebuilt) = open(&self.config);
        self.file = log;
        self.namespace_rebuilds += rebuilt;
    }

    fn namespace_files(&self) -> Vec<PathBuf> {
        self.index_files(&["nsx"])
    }

    /// The namespace and trace index files (one format).
    fn index_files(&self, extensions: &[&str]) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.config.data_dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|e| extensions.iter().any(|x| e == *x))
            })
            .collect();
        files.sort();
        files
    }

    /// Deletes, cuts or flips a bit of one namespace index file (anywhere, or in its header,
    /// its directory and table, or its lists), then restarts (or, for a flip past the
    /// header, sometimes not: the log answers from its file and must find the damage when a
    /// query reads the damaged part).
    fn damage(&mut self) -> String {
        self.file.wait_for_namespace_index();
        let files = self.index_files(&["nsx", "eix", "pix"]);
        if files.is_empty() {
            return "no namespace index to damage".into();
        }
        let path = files[self.random.index(files.len())].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() <= 66 {
            // Cut by an earlier step (trace index files are checked by lookups, not at
            // start-up, so a cut one stays until a lookup needs it): delete it.
            std::fs::remove_file(&path).unwrap();
            self.restart();
            return format!("damage 0 {}", path.display());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        // Where the header says the lists start (docs/storage.md), within the file.
        let data = u64_at(40).clamp(65, bytes.len() - 1);
        let how = self.random.below(5);
        let region = match how {
            0 => {
                std::fs::remove_file(&path).unwrap();
                None
            }
            1 => {
                bytes.truncate(self.random.index(bytes.len()));
                None
            }
            2 => Some((0, bytes.len())),
            3 => Some((64, data)),
            _ => Some((data.min(bytes.len() - 1), bytes.len())),
        };
        if let Some((start, end)) = region {
            let at = start + self.random.index(end - start);
            bytes[at] ^= 1 << self.random.below(8);
            let part = if at < 64 {
                0
            } else if at < data {
                1
            } else {
                2
            };
            self.damaged_parts[part] += 1;
        }
        if how != 0 {
            std::fs::write(&path, &bytes).unwrap();
        }
        if how >= 3 && self.random.below(2) == 0 {
            return format!("damage {how} {} without restart", path.display());
        }
        self.restart();
        format!("damage {how} {}", path.display())
    }

    fn query(&mut self) -> String {
        let key = if self.random.below(2) == 0 {
            NamespaceKey::Exact(NAMESPACES[self.random.index(NAMESPACES.len())].into())
        } else {
            NamespaceKey::Prefix(PREFIXES[self.random.index(PREFIXES.len())].into())
        };
        let from = Offset(self.random.below(self.file.durable_end().0 + 3));
        let count_max = self.random.below(40) as usize;
        let indexed = complete(&mut self.file, &key, from, count_max);
        let mut scanned = Vec::new();
        let scan_end = scan_namespace(&mut self.file, &key, from, count_max, &mut scanned).unwrap();
        assert_eq!(
            indexed,
            (scanned, scan_end),
            "{key:?} from {from} count {count_max}"
        );
        // Each position one query found reads, by its place in a `.nsx` (a positioned read of
        // exactly its bytes) or through a segment reader, the record `read` gives there.
        let mut found = Vec::new();
        self.file
            .find_namespace(&key, from, count_max, &mut found)
            .unwrap();
        for &position in &found {
            let mut by_place = Vec::new();
            (self.file)
                .read_one(position, &mut |event| by_place.push(event.to_event()))
                .unwrap();
            let mut by_read = Vec::new();
            read_first(&mut self.file, position, &mut |event| {
                by_read.push(event.to_event())
            })
            .unwrap();
            assert_eq!(by_place, by_read, "{key:?}: the record at {position}");
        }
        // The newest event of one namespace (conditional produce) agrees with a scan too (on
        // every fourth query: the scan reads the whole log).
        if from.0.is_multiple_of(4) {
            let namespace = NAMESPACES[count_max % NAMESPACES.len()];
            let last = self
                .file
                .last_in_namespace(namespace, &mut u64::MAX.clone())
                .unwrap();
            let scanned_last =
                last_by_scan(&mut self.file, namespace, &mut u64::MAX.clone()).unwrap();
            assert_eq!(last, scanned_last, "newest event of {namespace}");
        }
        if from.0 % 3 == 1 {
            return self.listing();
        }
        if from.0 % 3 == 2 {
            return self.traced();
        }
        format!("query {key:?} from {from}")
    }

    /// Events by id or by parent id through the trace indexes equal a scan.
    fn traced(&mut self) -> String {
        let key = if self.random.below(2) == 0 {
            TraceKey::Id
        } else {
            TraceKey::Parent
        };
        let id = EventId::new(1 + self.random.below(self.counter + 2), 1);
        let from = Offset(self.random.below(self.file.durable_end().0 + 3));
        let count_max = 1 + self.random.below(5) as usize;
        let (mut found, mut at, mut calls) = (Vec::new(), from, 0);
        loop {
            let mut work = 1 + self.random.below(20);
            let left = count_max - found.len();
            at = self
                .file
                .find_traced_within(key, id, at, left, &mut work, &mut found)
                .unwrap();
            calls += 1;
            assert!(calls < 100_000, "find_traced_within makes no progress");
            if found.len() == count_max || at >= self.file.durable_end() {
                break;
            }
        }
        let mut scanned = Vec::new();
        let scan_end = scan_traced_within(
            &mut self.file,
            key,
            id,
            from,
            count_max,
            &mut u64::MAX.clone(),
            &mut scanned,
        )
        .unwrap();
        assert_eq!((found, at), (scanned, scan_end), "{key:?} {id} from {from}");
        format!("traced {key:?} {id} from {from}")
    }

    /// A namespace listing through the index, with a small random work budget per call (so it
    /// resumes inside segments and tables), equals one by reading every record.
    fn listing(&mut self) -> String {
        let prefix = PREFIXES[self.random.index(PREFIXES.len())];
        let after = match self.random.below(3) {
            0 => "",
            _ => NAMESPACES[self.random.index(NAMESPACES.len())],
        };
        let page_max = 1 + self.random.below(4) as usize;
        let refused = NAMESPACES[self.random.index(NAMESPACES.len())];
        let mut accept = |name: &str| name != refused;
        let mut indexed = NamespaceListing::new(prefix, after, page_max);
        let mut calls = 0;
        loop {
            let mut work = 1 + self.random.below(12);
            // The caller's own budget (glob matching in the server) may stop the walk too.
            let mut filter = Budgeted {
                refused,
                decisions_left: 1 + self.random.below(6),
            };
            if self
                .file
                .list_namespaces_within(&mut indexed, &mut filter, &mut work)
                .unwrap()
            {
                break;
            }
            calls += 1;
            assert!(calls < 100_000, "a listing makes no progress");
        }
        let mut scanned = NamespaceListing::new(prefix, after, page_max);
        assert!(scan_listing(
            &mut self.file,
            &mut scanned,
            &mut accept,
            &mut u64::MAX.clone()
        )
        .unwrap());
        assert_eq!(
            indexed.into_page(),
            scanned.into_page(),
            "listing {prefix:?} after {after:?} page {page_max} without {refused:?}"
        );
        format!("listing {prefix:?} after {after:?}")
    }

    fn step(&mut self) -> String {
        self.now_ms += self.random.below(30);
        match self.random.below(40) {
            0..=17 => {
                self.counter += 1;
                let parent = match self.random.below(3) {
                    0 => None,
                    _ => Some(EventId::new(1 + self.random.below(self.counter), 1)),
                };
                let event = Event {
                    id: EventId::new(self.counter, 1),
                    parent_id: parent,
                    namespace: NAMESPACES[self.random.index(NAMESPACES.len())].into(),
                    timestamp_ms: self.now_ms,
                    data: vec![7; self.random.below(150) as usize],
                };
                self.file.append(event).unwrap();
                "append".into()
            }
            18..=23 => {
                if self.random.below(10) == 0 && self.file.end() > self.file.durable_end() {
                    let bytes_written = self.random.below(300) as usize;
                    self.file
                        .inject_fault(InjectedFault::WriteFails { bytes_written });
                    assert!(self.file.sync(MonotonicMs(self.now_ms)).is_err());
                    return "failing sync".into();
                }
                self.file.sync(MonotonicMs(self.now_ms)).unwrap();
                "sync".into()
            }
            24..=25 => {
                let deleted = self.file.apply_retention(WallClockMs(self.now_ms)).unwrap();
                format!("retention deleted {deleted}")
            }
            26..=36 => self.query(),
            37 => {
                self.restart();
                "restart".into()
            }
            _ => self.damage(),
        }
    }
}

fn run(seed: u64, steps: usize) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new(dir.path(), seed);
    for step in 0..steps {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.step()));
        if let Err(panic) = result {
            eprintln!("namespace index model test failed: seed {seed}, step {step}");
            std::panic::resume_unwind(panic);
        }
    }
    // Retention must not leave index files of deleted segments behind.
    let segments = model.file.segment_paths().len();
    let sealed = segments - 1;
    assert!(
        sealed > 2,
        "seed {seed}: too few segments to exercise the index files"
    );
    assert!(
        model.namespace_files().len() <= sealed,
        "seed {seed}: more namespace index files than sealed segments"
    );
    model
}

#[test]
fn index_reads_equal_scans_on_seeded_random_logs() {
    let (mut rebuilds, mut query_rebuilds, mut parts) = (0, 0, [0; 3]);
    for seed in 1..=8u64 {
        let mut model = run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 2500);
        rebuilds += model.namespace_rebuilds;
        model.restart();
        query_rebuilds += model.query_rebuilds;
        for (total, count) in parts.iter_mut().zip(model.damaged_parts) {
            *total += count;
        }
    }
    // Damaged index files were found and rebuilt at start-up (a bad header, a cut file) and by
    // queries (a flipped bit in a bucket or a list, which start-up does not read).
    assert!(rebuilds > 0, "no namespace index was rebuilt at start-up");
    assert!(
        query_rebuilds > 0,
        "no query found a damaged namespace index"
    );
    assert!(
        parts.iter().all(|&count| count > 0),
        "not every part of a file was damaged: {parts:?}"
    );
}

#[test]
fn a_sealed_segment_has_a_namespace_index_file_and_retention_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 4096;
    config.retention.events_max = Some(100);
    let mut log = FileLog::open(&config).unwrap().0;
    for counter in 1..=400u64 {
        let namespace = format!("/n/{}", counter % 3);
        log.append(Event {
            id: EventId::new(counter, 1),
            parent_id: None,
            namespace,
            timestamp_ms: 1,
            data: vec![0; 40],
        })
        .unwrap();
        log.sync(MonotonicMs(counter)).unwrap();
    }
    let nsx = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "nsx")
            })
            .count()
    };
    log.wait_for_namespace_index();
    let sealed = log.segment_paths().len() - 1;
    assert_eq!(nsx(dir.path()), sealed);
    log.apply_retention(WallClockMs(0)).unwrap();
    assert_eq!(nsx(dir.path()), log.segment_paths().len() - 1);
    let mut found = Vec::new();
    let key = NamespaceKey::Exact("/n/1".into());
    let to = log.find_namespace(&key, Offset(0), 5, &mut found).unwrap();
    let start = log.start().0;
    // Offsets are counter - 1, and /n/1 holds counters 1, 4, 7, ...
    let expected: Vec<Offset> = (start..)
        .filter(|o| (o + 1) % 3 == 1)
        .take(5)
        .map(Offset)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(to, Offset(expected[4].0 + 1));
}

/// A log of `records` records in `namespace(counter)`, with small segments, every sealed
/// segment's `.nsx` written; dropped (closed) on return.
fn write_log(
    dir: &Path,
    records: u64,
    actor: u16,
    timestamp_ms: u64,
    namespace: &dyn Fn(u64) -> String,
) -> StorageConfig {
    let mut config = StorageConfig::new(dir.to_path_buf());
    config.segment_size_max = 64 * 1024;
    let mut log = FileLog::open(&config).unwrap().0;
    for counter in 1..=records {
        log.append(Event {
            id: EventId::new(counter, actor),
            parent_id: None,
            namespace: namespace(counter),
            timestamp_ms,
            data: vec![0; 8],
        })
        .unwrap();
        if counter % 100 == 0 {
            log.sync(MonotonicMs(counter)).unwrap();
        }
    }
    log.sync(MonotonicMs(records + 1)).unwrap();
    log.wait_for_namespace_index();
    config
}

/// Appends `records` events of actor 1 (counters from 1, `data_bytes` of data each) in
/// `namespace(counter)`, synced every `sync_every` and at the end, every sealed segment's
/// `.nsx` written.
fn fill(
    log: &mut FileLog,
    records: u64,
    data_bytes: usize,
    sync_every: u64,
    namespace: impl Fn(u64) -> String,
) {
    for counter in 1..=records {
        log.append(Event {
            id: EventId::new(counter, 1),
            parent_id: None,
            namespace: namespace(counter),
            timestamp_ms: 7,
            data: vec![0; data_bytes],
        })
        .unwrap();
        if counter % sync_every == 0 {
            log.sync(MonotonicMs(counter)).unwrap();
        }
    }
    log.sync(MonotonicMs(records + 1)).unwrap();
    log.wait_for_namespace_index();
}

fn first_nsx(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.nsx", 0))
}

/// Finding 5 of the second attack review: the `.nsx` of a segment of the same shape (first
/// offset, record count, file size) from another data directory was accepted, and a query
/// answered from it silently hid the segment's events. Its header now names the segment's
/// identity, so start-up rebuilds it.
#[test]
fn an_index_from_another_data_directory_is_refused_and_rebuilt() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_log(ours.path(), 3000, 1, 7, &|c| format!("/a/{}", c % 3));
    write_log(theirs.path(), 3000, 2, 9, &|c| format!("/b/{}", c % 3));
    std::fs::copy(first_nsx(theirs.path()), first_nsx(ours.path())).unwrap();
    let (mut log, report) = FileLog::open(&config).unwrap();
    let key = NamespaceKey::Exact("/a/1".into());
    let (mut indexed, mut scanned) = (Vec::new(), Vec::new());
    log.find_namespace(&key, Offset(0), 50, &mut indexed)
        .unwrap();
    scan_namespace(&mut log, &key, Offset(0), 50, &mut scanned).unwrap();
    assert_eq!(indexed, scanned, "the foreign index hid or invented events");
    assert_eq!(report.namespace_indexes_rebuilt, 1);
}

/// Finding 5, second part: when a segment's `.nsx` cannot be written (here a directory is in
/// its place), every query rebuilt it from the segment (a full read of the segment and a log
/// line per query). Now the first failure is logged once and later queries read the records.
#[test]
fn an_index_that_cannot_be_written_is_not_rebuilt_by_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_log(dir.path(), 3000, 1, 7, &|c| format!("/a/{}", c % 3));
    std::fs::remove_file(first_nsx(dir.path())).unwrap();
    std::fs::create_dir(first_nsx(dir.path())).unwrap();
    let mut log = FileLog::open(&config).unwrap().0;
    let key = NamespaceKey::Exact("/a/1".into());
    for _ in 0..20 {
        let (mut indexed, mut scanned) = (Vec::new(), Vec::new());
        log.find_namespace(&key, Offset(0), 50, &mut indexed)
            .unwrap();
        scan_namespace(&mut log, &key, Offset(0), 50, &mut scanned).unwrap();
        assert_eq!(indexed, scanned);
    }
    assert!(
        log.namespace_rebuild_count() <= 1,
        "20 queries rebuilt the index {} times",
        log.namespace_rebuild_count()
    );
}

/// Finding 1 of the second attack review: a prefix query read every entry of every `.nsx` it
/// visited in one call, whatever it was asked for, so a prefix matching nothing (or a
/// `Credit(1)` drip on one matching everything) froze the reactor. Now each call's work is
/// bounded (by the work it is given, plus at most one segment's lookup), a prefix matching
/// nothing costs a binary search per segment, and a drip costs little per call.
#[test]
fn a_prefix_query_costs_bounded_work_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_log(dir.path(), 6000, 1, 7, &|c| format!("/u/{c:08}"));
    let mut log = FileLog::open(&config).unwrap().0;
    assert!(
        log.segment_paths().len() >= 3,
        "the test wants sealed segments"
    );
    // A prefix that matches nothing: a binary search per segment.
    let mut work = u64::MAX;
    let key = NamespaceKey::Prefix("/zzz".into());
    let mut found = Vec::new();
    let end = log
        .find_namespace_within(&key, Offset(0), 10, &mut work, &mut found)
        .unwrap();
    assert_eq!((end, found.len()), (log.durable_end(), 0));
    // The open segment compares its names one by one (one unit each); each sealed segment
    // binary-searches its file (a few dozen units).
    let paths = log.segment_paths();
    let open_first: u64 = paths
        .last()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let open_records = log.durable_end().0 - open_first;
    let spent = u64::MAX - work;
    let bound = 40 * (paths.len() as u64 - 1) + open_records;
    assert!(
        spent <= bound,
        "a prefix matching nothing cost {spent} units, not {bound}"
    );
    // A drip of two at a time on a prefix matching every namespace: each call costs at most
    // what it is given plus one segment's lookup, and the calls together find every record.
    let key = NamespaceKey::Prefix("/u".into());
    let (mut at, mut all, mut calls) = (Offset(0), Vec::new(), 0);
    while at < log.durable_end() {
        let mut work = 64;
        let mut found = Vec::new();
        at = log
            .find_namespace_within(&key, at, 2, &mut work, &mut found)
            .unwrap();
        all.extend(found);
        calls += 1;
        assert!(calls <= 6000, "no progress at {at:?}");
    }
    let expected: Vec<Offset> = (0..6000).map(Offset).collect();
    assert_eq!(all, expected);
    let mut work = u64::MAX;
    let mut found = Vec::new();
    log.find_namespace_within(&key, Offset(3000), 2, &mut work, &mut found)
        .unwrap();
    let spent = u64::MAX - work;
    assert!(
        spent <= 700,
        "two events of a prefix matching all cost {spent} units"
    );
}

/// Read system calls this thread has made (`/proc/thread-self/io`), to count what a lookup
/// reads without timing it.
fn read_syscalls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let line = io.lines().find(|l| l.starts_with("syscr:")).unwrap();
    line["syscr:".len()..].trim().parse().unwrap()
}

/// Attack round 3, F3: a conditional produce on a namespace the log has never seen asked the
/// `.nsx` file of every sealed segment (an open and a binary search each: about ten reads a
/// segment), so a flood of them over 600 small segments froze the reactor for seconds. Each
/// sealed segment now keeps a membership filter of its namespaces in memory (built once from
/// its file's table): a never-seen namespace costs no read of a segment whose filter says no.
#[test]
fn the_newest_id_of_a_never_seen_namespace_reads_almost_no_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 4096;
    config.fsync = FsyncPolicy::Never;
    let mut log = FileLog::open(&config).unwrap().0;
    fill(&mut log, 30_000, 8, 100, |counter| {
        format!("/s/{}", counter % 100)
    });
    let segments = log.segment_paths().len() as u64;
    assert!(
        segments >= 300,
        "the test wants many segments, got {segments}"
    );
    // The first lookup may load what the log keeps in memory (one read of each table).
    assert_eq!(
        log.last_in_namespace("/new/warm", &mut u64::MAX.clone())
            .unwrap(),
        None
    );
    let before = read_syscalls();
    for i in 0..100 {
        let namespace = format!("/new/{i}");
        assert_eq!(
            log.last_in_namespace(&namespace, &mut u64::MAX.clone())
                .unwrap(),
            None
        );
    }
    let reads = read_syscalls() - before;
    assert!(
        reads <= 100 * 20,
        "100 lookups of never-seen namespaces over {segments} segments made {reads} reads"
    );
    for namespace in ["/s/0", "/s/7", "/s/99"] {
        let last = log
            .last_in_namespace(namespace, &mut u64::MAX.clone())
            .unwrap();
        let scanned = last_by_scan(&mut log, namespace, &mut u64::MAX.clone()).unwrap();
        assert_eq!(last, scanned);
        assert!(last.is_some());
    }
}

/// Bytes this thread has passed through `read` system calls (`/proc/thread-self/io`, page
/// cache hits included), to count what a read costs without timing it.
fn read_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
    line["rchar:".len()..].trim().parse().unwrap()
}

/// Issue 14: loading one aggregate of 20 events whose events lie one in each of 20 segments
/// took 6.58 ms warm, because each index-driven read of one record opened a segment reader
/// that filled a 256 KiB buffer. A reader now starts with small refills, so a point read
/// reads about what lies between the sparse index point before its record and the record.
#[test]
fn an_index_driven_read_of_one_namespace_reads_little_of_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 1024 * 1024;
    config.fsync = FsyncPolicy::Never;
    // Reads come from the segment files, not the cache of the newest events.
    config.cache_bytes_max = 64 * 1024;
    let mut log = FileLog::open(&config).unwrap().0;
    // One record of `/aggregate/7` in every 9,000 (about one per segment), at varying places.
    fill(&mut log, 180_000, 64, 1_000, |counter| {
        if counter % 9_000 == 4_500 + (counter / 9_000) * 37 % 4_000 {
            "/aggregate/7".to_string()
        } else {
            format!("/other/{}", counter % 5_000)
        }
    });
    let segments = log.segment_paths().len() as u64;
    assert!(
        segments >= 15,
        "the test wants many segments, got {segments}"
    );
    let key = NamespaceKey::Exact("/aggregate/7".into());
    let load = |log: &mut FileLog| {
        let (positions, _) = complete(log, &key, Offset(0), 1_000);
        let mut events = Vec::new();
        for position in positions {
            // As the engine reads: one record a call, stopping before the next.
            let mut taken = false;
            log.read(position, &mut |_, event| {
                if taken {
                    return false;
                }
                taken = true;
                events.push(event.to_event());
                true
            })
            .unwrap();
        }
        events
    };
    // The first load may build what the log keeps in memory (the namespace filters).
    let first = load(&mut log);
    let before = read_bytes();
    let events = load(&mut log);
    let bytes = read_bytes() - before;
    assert_eq!(events, first);
    assert!(events.len() >= 15, "found {} events", events.len());
    assert!(events.iter().all(|e| e.namespace == "/aggregate/7"));
    let mut scanned = Vec::new();
    scan_namespace(&mut log, &key, Offset(0), 1_000, &mut scanned).unwrap();
    assert_eq!(scanned.len(), events.len());
    let per_event = bytes / events.len() as u64;
    assert!(
        per_event <= 96 * 1024,
        "loading {} events from {segments} segments read {bytes} bytes ({per_event} an event)",
        events.len()
    );
}

/// Issue 14: the p99 of loading one aggregate (6.4-10 ms) came from what each segment costs:
/// an open of its `.nsx`, an open of the segment, and a segment reader that seeks from a sparse
/// index point and reads 16 KiB pieces up to the record. Now the `.nsx` lists each record's
/// place and both files stay open: a warm load opens nothing, and reads each record with one
/// read system call (the rest are the `.nsx` lookups).
#[test]
fn a_warm_index_driven_read_opens_no_file_and_reads_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 256 * 1024;
    config.fsync = FsyncPolicy::Never;
    config.cache_bytes_max = 64 * 1024;
    let mut log = FileLog::open(&config).unwrap().0;
    // One record of `/aggregate/7` in every 2,000, the others in 8 namespaces (so the `.nsx`
    // lookups are cheap and the record reads are what the count sees).
    fill(&mut log, 40_000, 64, 1_000, |counter| {
        if counter % 2_000 == 1_000 + (counter / 2_000) * 37 % 900 {
            "/aggregate/7".to_string()
        } else {
            format!("/other/{}", counter % 8)
        }
    });
    let segments = log.segment_paths().len() as u64;
    assert!(
        segments >= 10,
        "the test wants many segments, got {segments}"
    );
    let key = NamespaceKey::Exact("/aggregate/7".into());
    // Loads the aggregate; returns its events and the read calls and bytes of the record
    // reads (the `.nsx` lookups not counted).
    let load = |log: &mut FileLog| {
        let (mut events, mut calls, mut bytes) = (Vec::new(), 0, 0);
        let mut at = Offset(0);
        while at < log.durable_end() {
            let mut positions = Vec::new();
            at = log.find_namespace(&key, at, 1_000, &mut positions).unwrap();
            // What taking the two counts costs (reading `/proc`), taken off below.
            let (calls_empty, bytes_empty) = (read_syscalls(), read_bytes());
            let (calls_empty, bytes_empty) =
                (read_syscalls() - calls_empty, read_bytes() - bytes_empty);
            let (calls_before, bytes_before) = (read_syscalls(), read_bytes());
            for position in positions {
                log.read_one(position, &mut |event| events.push(event.to_event()))
                    .unwrap();
            }
            calls += read_syscalls() - calls_before - calls_empty;
            bytes += read_bytes() - bytes_before - bytes_empty;
        }
        (events, calls, bytes)
    };
    let (first, ..) = load(&mut log);
    let opened = log.files_opened();
    let (events, calls, bytes) = load(&mut log);
    assert_eq!(events, first);
    assert!(events.len() >= 10, "found {} events", events.len());
    assert!(events.iter().all(|e| e.namespace == "/aggregate/7"));
    let mut scanned = Vec::new();
    scan_namespace(&mut log, &key, Offset(0), 1_000, &mut scanned).unwrap();
    assert_eq!(scanned.len(), events.len());
    assert_eq!(log.files_opened(), opened, "a warm load opened files");
    // One read of about 130 bytes (header, ids, namespace, 64 bytes of data) per record.
    let count = events.len() as u64;
    assert!(
        calls <= count && bytes <= 160 * count,
        "reading {count} records of one namespace from {segments} segments made {calls} read \
         calls of {bytes} bytes"
    );
}

/// Issue 14, session 8: a warm lookup of one namespace binary-searched each sealed segment's
/// `.nsx` (about 16 probes of 3 reads each on a segment of 500,000 namespaces, some 950 reads
/// to load one aggregate from 19 segments), which is where the time of a load went. Now a
/// version 5 file ends with its fences (one name per 64 namespaces), read once and kept in
/// memory within `namespace_fences_bytes_max`: a warm lookup reads three pieces a segment.
/// With the fences' memory at 0, the same answers by the binary search.
#[test]
fn a_warm_lookup_reads_three_pieces_of_each_segments_index() {
    let dir = tempfile::tempdir().unwrap();
    let (config, sealed) = aggregate_among_many_namespaces(dir.path());
    let key = NamespaceKey::Exact("/aggregate/7".into());
    for fences_max in [config.namespace_fences_bytes_max, 0] {
        let config = StorageConfig {
            namespace_fences_bytes_max: fences_max,
            ..config.clone()
        };
        let mut log = FileLog::open(&config).unwrap().0;
        let (first, _) = complete(&mut log, &key, Offset(0), 1_000);
        // What taking the count costs (reading `/proc`), taken off below.
        let calls_empty = read_syscalls();
        let calls_empty = read_syscalls() - calls_empty;
        let calls_before = read_syscalls();
        let (positions, _) = complete(&mut log, &key, Offset(0), 1_000);
        let calls = read_syscalls() - calls_before - calls_empty;
        eprintln!("fences {fences_max}: {calls} read calls for {sealed} sealed segments");
        assert_eq!(positions, first);
        assert_eq!(positions.len(), 20);
        let mut scanned = Vec::new();
        scan_namespace(&mut log, &key, Offset(0), 1_000, &mut scanned).unwrap();
        assert_eq!(scanned, positions);
        if fences_max > 0 {
            assert!(
                calls <= 3 * sealed,
                "a warm lookup of one namespace in {sealed} sealed segments made {calls} \
                 read calls"
            );
        } else {
            assert!(calls > 10 * sealed, "without fences: {calls} read calls");
        }
    }
}

/// The first lookup after a start (the server just restarted) finds every segment's fences
/// in memory: a helper thread read them while the open segment was recovered, so the lookup
/// reads three small pieces of each segment's `.nsx`, as a warm one does, instead of each
/// segment's whole fence section first. Answers are the scan's.
#[test]
fn the_first_lookup_after_a_start_finds_the_fences_read_already() {
    let dir = tempfile::tempdir().unwrap();
    let (config, sealed) = aggregate_among_many_namespaces(dir.path());
    let key = NamespaceKey::Exact("/aggregate/7".into());
    let mut log = FileLog::open(&config).unwrap().0;
    log.wait_for_fence_preload();
    let fence_bytes = log.namespace_fence_bytes();
    assert!(fence_bytes > 0, "no fences were read at start-up");
    let calls_empty = read_syscalls();
    let calls_empty = read_syscalls() - calls_empty;
    let calls_before = read_syscalls();
    let (positions, _) = complete(&mut log, &key, Offset(0), 1_000);
    let calls = read_syscalls() - calls_before - calls_empty;
    assert_eq!(positions.len(), 20);
    assert!(
        calls <= 3 * sealed,
        "the first lookup after a start of one namespace in {sealed} sealed segments made \
         {calls} read calls"
    );
    assert_eq!(
        log.namespace_fence_bytes(),
        fence_bytes,
        "a lookup read fences again"
    );
    let mut scanned = Vec::new();
    scan_namespace(&mut log, &key, Offset(0), 1_000, &mut scanned).unwrap();
    assert_eq!(scanned, positions);
}

/// Hostile: many segments of many namespaces against a small `namespace_fences_bytes_max`.
/// The fences kept stay within it (segments past it are binary-searched), and every lookup
/// answers as the scan does, whichever way it went.
#[test]
fn the_fences_kept_stay_within_their_limit_and_answers_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 64 * 1024;
    config.fsync = FsyncPolicy::Never;
    let mut log = FileLog::open(&config).unwrap().0;
    fill(&mut log, 20_000, 16, 500, |counter| {
        format!("/n/{:05}", counter * 7 % 3_001)
    });
    let sealed = log.segment_paths().len() - 1;
    assert!(sealed >= 12, "the test wants many segments, got {sealed}");
    drop(log);
    // The fences of a few segments fit (about 250 bytes each).
    let limit = 1024;
    let config = StorageConfig {
        namespace_fences_bytes_max: limit,
        ..config
    };
    let mut log = FileLog::open(&config).unwrap().0;
    for name in [0u64, 7, 1_500, 3_000, 3_001, 99_999] {
        for key in [
            NamespaceKey::Exact(format!("/n/{name:05}")),
            NamespaceKey::Prefix(format!("/n/{:04}", name / 10)),
        ] {
            let (found, _) = complete(&mut log, &key, Offset(0), 100_000);
            let mut scanned = Vec::new();
            scan_namespace(&mut log, &key, Offset(0), 100_000, &mut scanned).unwrap();
            assert_eq!(found, scanned, "{key:?}");
            let kept = log.namespace_fence_bytes();
            assert!(kept > 0 && kept <= limit, "{kept} bytes of fences kept");
        }
    }
}

/// A listing filter whose own budget runs out after a few decisions, as the server's glob
/// matching budget does: the walk must stop there and resume without missing or counting a
/// name twice.
struct Budgeted<'a> {
    refused: &'a str,
    decisions_left: u64,
}

impl NameFilter for Budgeted<'_> {
    fn accept(&mut self, name: &str) -> bool {
        self.decisions_left = self.decisions_left.saturating_sub(1);
        name != self.refused
    }

    fn spent(&self) -> bool {
        self.decisions_left == 0
    }
}

/// A log of 40,000 records in 256 KiB segments where every record has its own namespace but
/// `/aggregate/7`, one in 2,000 (about 2,000 namespaces a segment, 20 events of the
/// aggregate); returns its configuration and the number of sealed segments (at least 10).
fn aggregate_among_many_namespaces(dir: &std::path::Path) -> (StorageConfig, u64) {
    let mut config = StorageConfig::new(dir.to_path_buf());
    config.segment_size_max = 256 * 1024;
    config.fsync = FsyncPolicy::Never;
    let mut log = FileLog::open(&config).unwrap().0;
    fill(&mut log, 40_000, 64, 1_000, |counter| {
        if counter % 2_000 == 1_000 {
            "/aggregate/7".to_string()
        } else {
            format!("/n/{counter:06}")
        }
    });
    let sealed = log.segment_paths().len() as u64 - 1;
    assert!(sealed >= 10, "the test wants many segments, got {sealed}");
    drop(log);
    (config, sealed)
}

/// Session 11: `flo-client namespaces` at a million namespaces in the open segment took about
/// 230 ms a page, because every page read the open segment's names record by record (a
/// listing of all its names was quadratic in them). Listing every page of 20,000 distinct
/// namespaces of the open segment, 100 a page, now costs a bounded number of units of work a
/// page after the first (which sorts the segment's names once): on main it cost 20,000 units
/// a page, 4,000,000 in all.
#[test]
fn listing_every_page_of_the_open_segments_namespaces_is_not_quadratic() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::new(dir.path().to_path_buf());
    config.segment_size_max = 64 * 1024 * 1024;
    let (mut log, _) = open(&config);
    let names = 20_000u64;
    fill(&mut log, names, 1, 1000, |counter| format!("/n/{counter}"));
    assert_eq!(
        log.segment_paths().len(),
        1,
        "every record in the open segment"
    );
    let page_max = 100;
    let (mut after, mut listed, mut pages, mut work_spent) = (String::new(), 0u64, 0u64, 0u64);
    loop {
        let mut listing = NamespaceListing::new("/n/", &after, page_max);
        let mut accept = |_: &str| true;
        loop {
            let mut work = 1_000_000u64;
            let done = log
                .list_namespaces_within(&mut listing, &mut accept, &mut work)
                .unwrap();
            work_spent += 1_000_000 - work;
            if done {
                break;
            }
        }
        let (page, more) = listing.into_page();
        pages += 1;
        listed += page.len() as u64;
        assert!(page
            .iter()
            .all(|(name, counts)| counts.count == 1 && name > &after));
        after = page
            .last()
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        if !more {
            break;
        }
    }
    assert_eq!((listed, pages), (names, names / page_max as u64));
    // One sort of the names (charged as reading them), then each page its names and a search.
    assert!(
        work_spent < 4 * names,
        "{pages} pages cost {work_spent} units of work ({} a page)",
        work_spent / pages
    );
}

/// The open segment's name-ordered view (built once it holds `NAME_VIEW_RECORDS_MIN`
/// records, refreshed when it is stale) lists as reading every record does: seeded random
/// listings with small work and decision budgets (so they resume inside the view), records
/// appended between listings and in the middle of one (read one by one after the view, or
/// not counted for names the walk passed), and a segment sealed in the middle of one.
#[test]
fn the_open_segments_name_view_lists_as_reading_every_record() {
    for seed in 1..=4u64 {
        let mut random = SeededRng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig::new(dir.path().to_path_buf());
        // Seeds 1 and 2 seal segments in the middle of listings; 3 and 4 keep some 50,000
        // small records in the open segment, whose view is made of several parts.
        let (segment_size_max, data_size) = match seed {
            1 | 2 => (1024 * 1024, 100),
            _ => (8 * 1024 * 1024, 4),
        };
        config.segment_size_max = segment_size_max;
        config.fsync = FsyncPolicy::Never;
        let (mut log, _) = open(&config);
        let mut counter = 0;
        let mut append = |log: &mut FileLog, random: &mut SeededRng, records: u64| {
            for _ in 0..records {
                counter += 1;
                let namespace = match random.below(3) {
                    0 => NAMESPACES[random.index(NAMESPACES.len())].to_string(),
                    _ => format!("/a/{}", random.below(3_000)),
                };
                log.append(Event {
                    id: EventId::new(counter, 1),
                    parent_id: None,
                    namespace,
                    timestamp_ms: 7,
                    data: vec![0; data_size],
                })
                .unwrap();
            }
            log.sync(MonotonicMs(counter)).unwrap();
        };
        append(&mut log, &mut random, 2_000);
        for round in 0..60 {
            let prefix = PREFIXES[random.index(PREFIXES.len())];
            let after = match random.below(3) {
                0 => String::new(),
                _ => format!("/a/{}", random.below(3_000)),
            };
            let page_max = 1 + random.below(40) as usize;
            let refused = NAMESPACES[random.index(NAMESPACES.len())];
            let mut indexed = NamespaceListing::new(prefix, &after, page_max);
            // Records appended in the middle of a listing may be missing from its counts: the
            // listings that check counts have none.
            let appends_during = round % 3 == 0;
            let mut calls = 0;
            loop {
                let mut work = 1 + random.below(50);
                let mut filter = Budgeted {
                    refused,
                    decisions_left: 1 + random.below(20),
                };
                if log
                    .list_namespaces_within(&mut indexed, &mut filter, &mut work)
                    .unwrap()
                {
                    break;
                }
                if appends_during && random.below(20) == 0 {
                    let records = 1 + random.below(300);
                    append(&mut log, &mut random, records);
                }
                calls += 1;
                assert!(calls < 1_000_000, "a listing makes no progress");
            }
            let mut scanned = NamespaceListing::new(prefix, &after, page_max);
            let mut accept = |name: &str| name != refused;
            assert!(
                scan_listing(&mut log, &mut scanned, &mut accept, &mut u64::MAX.clone()).unwrap()
            );
            let (indexed, scanned) = (indexed.into_page(), scanned.into_page());
            let context = format!("seed {seed} round {round} {prefix:?} after {after:?}");
            if appends_during {
                // No name counted twice: no count above the scan's.
                let scanned: std::collections::BTreeMap<_, _> = scanned.0.into_iter().collect();
                for (name, counts) in &indexed.0 {
                    let most = scanned.get(name).map_or(u64::MAX, |s| s.count);
                    assert!(counts.count <= most, "{context}: {name} {counts:?}");
                }
            } else {
                assert_eq!(indexed, scanned, "{context}");
            }
            let records = random.below(1_500);
            append(&mut log, &mut random, records);
        }
    }
}

/// Attack round 13 (redone in session 14): without the namespace index a conditional
/// produce's lookup of a namespace's newest event reads the records, now a bounded number a
/// call (`Log::last_in_namespace_within`, called again where it stopped, in later turns). Its
/// answers are the index's: for namespaces of the log, one it never held, and one appended to
/// between two calls of the lookup (the lookup goes on to the durable end it finds).
#[test]
fn the_newest_id_read_a_hundred_records_a_call_without_the_index_is_the_indexs() {
    let open_filled = |dir: &Path, namespace_index: bool| {
        let mut config = StorageConfig::new(dir.to_path_buf());
        config.segment_size_max = 4096;
        config.fsync = FsyncPolicy::Never;
        config.namespace_index = namespace_index;
        let mut log = FileLog::open(&config).unwrap().0;
        fill(&mut log, 3000, 8, 100, |counter| match counter % 7 {
            0 => "/t".to_string(),
            _ => format!("/s/{}", counter % 10),
        });
        log
    };
    let (indexed_dir, plain_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut indexed = open_filled(indexed_dir.path(), true);
    let mut plain = open_filled(plain_dir.path(), false);
    let mut counter = 3000;
    for namespace in ["/s/0", "/s/3", "/s/9", "/t", "/never"] {
        let mut scan = LastScan::new(namespace);
        let mut calls = 0;
        let answer = loop {
            let mut work = 100;
            calls += 1;
            if let Some(answer) = plain
                .last_in_namespace_within(&mut scan, &mut work)
                .unwrap()
            {
                break answer;
            }
            assert_eq!(work, 0, "{namespace}: stopped before its work ran out");
            if calls == 5 && namespace != "/never" {
                counter += 1;
                for log in [&mut indexed, &mut plain] {
                    log.append(Event {
                        id: EventId::new(counter, 2),
                        parent_id: None,
                        namespace: namespace.to_string(),
                        timestamp_ms: 7,
                        data: Vec::new(),
                    })
                    .unwrap();
                    log.sync(MonotonicMs(counter)).unwrap();
                }
            }
        };
        assert!(calls >= 30, "{namespace}: {calls} calls of 100 records");
        let mut work = 1;
        let by_index = indexed
            .last_in_namespace_within(&mut LastScan::new(namespace), &mut work)
            .unwrap();
        assert_eq!(Some(answer), by_index, "{namespace}");
        let appended = (namespace != "/never").then(|| EventId::new(counter, 2));
        assert_eq!(answer, appended, "{namespace}");
    }
}
