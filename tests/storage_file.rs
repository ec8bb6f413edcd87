//! Proves the file log's durability rules on a real file system (a temporary directory per
//! test): group commit, reopening, start-up from index files, failed syncs, retention, the
//! cache and the five start positions. Crash cuts and bit flips are in storage_recovery.rs,
//! the comparison with the memory log in storage_model.rs.

use std::path::Path;

use flo::config::{FsyncPolicy, Retention, StorageConfig};
use flo::event::{ActorId, Cursor, Event, EventId, StartPosition, VersionVector};
use flo::storage::{
    FileLog, InjectedFault, Log, MemoryLog, Offset, ProducedRecord, PurgeLimits, StorageError,
};
use flo::time::{MonotonicMs, WallClockMs};

fn config(dir: &Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir.to_path_buf());
    config.segment_size_max = 4096;
    config.cache_bytes_max = 2048;
    config
}

fn event(counter: u64, actor: u16, timestamp_ms: u64, data_size: usize) -> Event {
    Event {
        id: EventId::new(counter, actor),
        parent_id: None,
        namespace: format!("/t/{actor}"),
        timestamp_ms,
        data: vec![counter as u8; data_size],
    }
}

fn read_all(log: &mut dyn Log, from: u64) -> Result<Vec<(u64, Event)>, StorageError> {
    let mut out = Vec::new();
    log.read(Offset(from), &mut |offset, event| {
        out.push((offset.0, event.to_event()));
        true
    })?;
    Ok(out)
}

/// Every record's event, from the start of the log.
fn read_events(log: &mut dyn Log) -> Vec<Event> {
    read_all(log, 0)
        .unwrap()
        .into_iter()
        .map(|(_, event)| event)
        .collect()
}

/// Appends `count` events (counters 1.., actor 1, timestamps 1000 + counter), synced in
/// groups of `group`.
fn fill(log: &mut FileLog, count: u64, group: u64, data_size: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for counter in 1..=count {
        let e = event(counter, 1, 1000 + counter, data_size);
        log.append(e.clone()).unwrap();
        events.push(e);
        if counter % group == 0 {
            log.sync(MonotonicMs(counter)).unwrap();
        }
    }
    log.sync(MonotonicMs(count)).unwrap();
    events
}

#[test]
fn group_commit_makes_records_durable_with_one_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(report.event_count, 0);
    for counter in 1..=5 {
        assert_eq!(
            log.append(event(counter, 1, 0, 10)).unwrap(),
            Offset(counter - 1)
        );
    }
    assert_eq!((log.end(), log.durable_end()), (Offset(5), Offset(0)));
    assert!(
        read_all(&mut log, 0).unwrap().is_empty(),
        "unsynced records are invisible"
    );
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(5));
    assert_eq!(log.fsync_count(), 1);
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 5);
    assert_eq!(log.version_vector().get(ActorId(1)), 5);
}

#[test]
fn reopen_returns_the_same_records_and_vector() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    let events = fill(&mut log, 300, 7, 30);
    let vector = log.version_vector().clone();
    assert!(log.segment_paths().len() > 3, "test needs several segments");
    drop(log);
    let (mut log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(report.event_count, 300);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.version_vector(), &vector);
    let read: Vec<Event> = read_events(&mut log);
    assert_eq!(read, events);
    log.append(event(301, 1, 0, 1)).unwrap();
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(301));
}

#[test]
fn start_up_reads_index_files_and_scans_only_the_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    fill(&mut log, 400, 10, 40);
    let segments = log.segment_paths().len() as u64;
    drop(log);
    let (log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(report.segments, segments);
    assert_eq!(report.index_files_read, segments - 1);
    assert_eq!(report.indexes_rebuilt, 0);
    let newest_count = log.durable_end().0 - first_offset_of(log.segment_paths().last().unwrap());
    assert_eq!(report.records_scanned, newest_count);
    assert!(newest_count < 100, "only the newest segment was scanned");
    // A missing index is rebuilt by scanning that one segment, and written again.
    let index = log.segment_paths()[1].with_extension("idx");
    drop(log);
    std::fs::remove_file(&index).unwrap();
    let (mut log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(report.indexes_rebuilt, 1);
    assert!(index.exists());
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 400);
}

fn first_offset_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn failed_write_or_fsync_leaves_the_log_as_it_was() {
    for fault in [
        InjectedFault::WriteFails { bytes_written: 0 },
        InjectedFault::WriteFails { bytes_written: 37 },
        InjectedFault::FsyncFails,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
        let events = fill(&mut log, 10, 10, 20);
        let vector = log.version_vector().clone();
        let path = log.segment_paths().pop().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        log.append(event(11, 2, 0, 20)).unwrap();
        log.append(event(12, 2, 0, 20)).unwrap();
        log.inject_fault(fault);
        assert!(matches!(
            log.sync(MonotonicMs(0)),
            Err(StorageError::Io { .. })
        ));
        assert_eq!((log.end(), log.durable_end()), (Offset(10), Offset(10)));
        assert_eq!(log.version_vector(), &vector, "{fault:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "{fault:?}");
        let read: Vec<Event> = read_events(&mut log);
        assert_eq!(read, events, "reads go on after a failed sync");
        // The log keeps working, and a reopen sees exactly the durable records.
        log.append(event(13, 1, 0, 20)).unwrap();
        assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(11));
        drop(log);
        let (mut log, report) = FileLog::open(&config(dir.path())).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        let read: Vec<Event> = read_events(&mut log);
        assert_eq!(read[..10], events[..]);
        assert_eq!(read[10].id, EventId::new(13, 1));
    }
}

#[test]
fn retention_deletes_the_oldest_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill(&mut log, 500, 10, 40);
    let paths = log.segment_paths();
    drop(log);
    config.retention = Retention {
        events_max: Some(200),
        ..Retention::default()
    };
    let (mut log, _) = FileLog::open(&config).unwrap();
    let deleted = log.apply_retention(WallClockMs(0)).unwrap();
    assert!(deleted >= 300, "deleted {deleted}");
    assert!(log.durable_end().0 - log.start().0 <= 200);
    assert_eq!(log.start().0, deleted);
    let kept = log.segment_paths();
    for path in &paths {
        let gone = !kept.contains(path);
        assert_eq!(!path.exists(), gone, "{}", path.display());
        assert_eq!(
            !path.with_extension("idx").exists(),
            gone || path == kept.last().unwrap()
        );
    }
    // A read or a start position from before the start continues at the start.
    assert_eq!(read_all(&mut log, 0).unwrap()[0].0, deleted);
    assert_eq!(
        log.find_start(&StartPosition::AfterId(EventId::new(1, 1)))
            .unwrap(),
        log.start()
    );
    drop(log);
    let (log, report) = FileLog::open(&config).unwrap();
    assert_eq!(
        (log.start().0, report.event_count),
        (deleted, 500 - deleted)
    );
    assert_eq!(
        log.version_vector().get(ActorId(1)),
        500,
        "vector survives retention"
    );
}

#[test]
fn retention_by_bytes_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.retention.bytes_max = Some(10_000);
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill(&mut log, 500, 10, 40);
    log.apply_retention(WallClockMs(0)).unwrap();
    assert!(log.stats().byte_count <= 10_000);
    assert!(log.stats().segment_count >= 2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = self::config(dir.path());
    config.retention.age_max_ms = Some(100);
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill(&mut log, 500, 10, 40);
    // Timestamps are 1000 + counter: at now = 1400, events up to 1300 are too old.
    log.apply_retention(WallClockMs(1400)).unwrap();
    let first = read_all(&mut log, 0).unwrap()[0].1.timestamp_ms;
    assert!(
        first > 1200 && first <= 1300,
        "first kept timestamp {first}"
    );
}

#[test]
fn tail_reads_come_from_the_cache_and_huge_events_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    fill(&mut log, 100, 10, 20);
    let cached = log.cached_range();
    assert_eq!(cached.end, Offset(100));
    assert!(cached.start > Offset(50), "cache is bounded: {cached:?}");
    let huge = event(101, 1, 0, 10_000);
    log.append(huge.clone()).unwrap();
    log.sync(MonotonicMs(0)).unwrap();
    assert_eq!(log.cached_range(), Offset(101)..Offset(101));
    assert_eq!(read_all(&mut log, 100).unwrap(), vec![(100, huge)]);
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 101);
}

#[test]
fn a_read_stopped_by_the_visitor_continues_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    fill(&mut log, 200, 10, 20);
    let mut offset = Offset(0);
    let mut seen = Vec::new();
    while offset < log.durable_end() {
        let mut budget = 7;
        offset = log
            .read(offset, &mut |o, e| {
                budget -= 1;
                if budget == 0 {
                    return false;
                }
                seen.push((o.0, e.id.counter));
                true
            })
            .unwrap();
    }
    assert_eq!(seen, (0..200).map(|o| (o, o + 1)).collect::<Vec<_>>());
}

#[test]
fn a_catch_up_read_from_disk_decodes_each_record_once_and_copies_few() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_size_max = 1 << 20;
    let (mut log, _) = FileLog::open(&config).unwrap();
    let events = fill(&mut log, 5_000, 100, 100);
    let before = log.activity();
    // Read in stretches, as a consumer's turns do: each stop gives one record back.
    let mut read = Vec::new();
    let mut offset = Offset(0);
    while offset < log.durable_end() {
        let mut budget = 1_000;
        offset = log
            .read(offset, &mut |_, event| {
                budget -= 1;
                if budget == 0 {
                    return false;
                }
                read.push(event.to_event());
                true
            })
            .unwrap();
    }
    assert!(
        read == events,
        "the read returned other events than those appended"
    );
    let activity = log.activity();
    let disk_reads = activity.disk_reads - before.disk_reads;
    let decodes = activity.disk_record_decodes - before.disk_record_decodes;
    let copies = activity.disk_body_copies - before.disk_body_copies;
    assert!(
        disk_reads > 4_000,
        "only {disk_reads} records read from disk"
    );
    // One decode per record, and one more per stop (the record given back, read again).
    assert!(
        decodes <= disk_reads + 10,
        "{decodes} record decodes for {disk_reads} records read from disk"
    );
    // Bodies straddling a refill of the read buffer (16 KiB, then up to 256 KiB) and those
    // given back are copied; the others are viewed in the buffer.
    assert!(
        copies * 20 <= disk_reads,
        "{copies} record bodies copied for {disk_reads} records read from disk"
    );
}

/// Three actors over several segments: actor 3 only early, with low counters.
fn multi_actor_log(dir: &Path) -> (FileLog, MemoryLog) {
    let (mut file, _) = FileLog::open(&config(dir)).unwrap();
    let mut memory = MemoryLog::new();
    for i in 1..=300u64 {
        let actor = if i <= 30 { 3 } else { 1 + (i % 2) as u16 };
        let e = event(i * 10, actor, 5000 + (i * 7) % 100 + i, 30);
        file.append(e.clone()).unwrap();
        memory.append(e).unwrap();
        if i % 5 == 0 {
            file.sync(MonotonicMs(0)).unwrap();
            memory.sync(MonotonicMs(0)).unwrap();
        }
    }
    (file, memory)
}

#[test]
fn start_positions_match_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, mut memory) = multi_actor_log(dir.path());
    assert!(file.segment_paths().len() > 3);
    let all = read_all(&mut file, 0).unwrap();
    let mut positions = vec![
        StartPosition::Beginning,
        StartPosition::End,
        StartPosition::Timestamp(0),
        StartPosition::Timestamp(5500),
        StartPosition::Timestamp(99_999),
    ];
    for counter in [0, 5, 10, 295, 300, 1500, 2990, 3000, 5000] {
        for actor in [0, 1, 2, 3, 4] {
            positions.push(StartPosition::AfterId(EventId::new(counter, actor)));
        }
    }
    for (a1, a2, a3) in [
        (3000, 3000, 0),
        (1000, 2000, 300),
        (0, 0, 0),
        (3000, 0, 300),
    ] {
        let vector: VersionVector = [(ActorId(1), a1), (ActorId(2), a2), (ActorId(3), a3)]
            .into_iter()
            .collect();
        positions.push(StartPosition::Cursor(Cursor::from_vector(vector)));
    }
    for position in positions {
        let expected = match &position {
            StartPosition::Beginning => 0,
            StartPosition::End => 300,
            StartPosition::Timestamp(ms) => scan(&all, |e| e.timestamp_ms >= *ms),
            other => {
                let cursor = other.cursor().unwrap();
                scan(&all, |e| !cursor.covers(e.id))
            }
        };
        assert_eq!(
            file.find_start(&position).unwrap(),
            Offset(expected),
            "{position:?}"
        );
        assert_eq!(
            memory.find_start(&position).unwrap(),
            Offset(expected),
            "{position:?}"
        );
    }
}

fn scan(all: &[(u64, Event)], found: impl Fn(&Event) -> bool) -> u64 {
    all.iter()
        .find(|(_, e)| found(e))
        .map_or(all.len() as u64, |(o, _)| *o)
}

#[test]
fn a_cursor_missing_an_actor_starts_at_that_actors_first_event() {
    // The 2017 prototype started after the smallest entry present in the vector and skipped
    // every event of actor 3, which the vector does not mention.
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = multi_actor_log(dir.path());
    let vector: VersionVector = [(ActorId(1), 3000), (ActorId(2), 3000)]
        .into_iter()
        .collect();
    let position = StartPosition::Cursor(Cursor::from_vector(vector));
    assert_eq!(file.find_start(&position).unwrap(), Offset(0));
    let mut vector: VersionVector = [(ActorId(1), 3000), (ActorId(2), 3000)]
        .into_iter()
        .collect();
    vector.observe(EventId::new(150, 3));
    let position = StartPosition::Cursor(Cursor::from_vector(vector));
    assert_eq!(file.find_start(&position).unwrap(), Offset(15));
}

#[test]
fn stray_files_are_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut log, _) = FileLog::open(&config(&data)).unwrap();
    fill(&mut log, 20, 5, 10);
    drop(log);
    std::fs::write(data.join("notes.txt"), b"hello").unwrap();
    std::fs::write(data.join("00000000000000000007.idx.tmp"), b"partial").unwrap();
    let (_, report) = FileLog::open(&config(&data)).unwrap();
    assert_eq!((report.stray_files, report.event_count), (1, 20));
    assert_eq!(
        report.to_string(),
        "recovered 20 events in 1 segments; ignored 1 stray files"
    );
    assert!(data.join("notes.txt").exists());
    assert!(!data.join("00000000000000000007.idx.tmp").exists());
}

#[test]
fn interval_and_never_policies_write_every_sync_and_fsync_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::IntervalMs(100);
    let (mut log, _) = FileLog::open(&config).unwrap();
    let sync_one = |log: &mut FileLog, counter: u64, now_ms: u64| {
        log.append(event(counter, 1, 0, 10)).unwrap();
        log.sync(MonotonicMs(now_ms)).unwrap()
    };
    assert_eq!(sync_one(&mut log, 1, 1000), Offset(1));
    assert_eq!(log.fsync_count(), 1);
    // Written and durable against a process crash, but no fdatasync before the interval.
    assert_eq!(sync_one(&mut log, 2, 1050), Offset(2));
    assert_eq!(log.fsync_count(), 1);
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 2);
    // A quiet turn after the interval still fdatasyncs what was written (once the helper
    // thread finished the first: one runs at a time, a due one waits for the next sync).
    log.wait_for_syncs().unwrap();
    assert_eq!(log.sync(MonotonicMs(1100)).unwrap(), Offset(2));
    assert_eq!(log.fsync_count(), 2);
    assert_eq!(log.sync(MonotonicMs(1300)).unwrap(), Offset(2));
    assert_eq!(log.fsync_count(), 2, "nothing new to fdatasync");
    drop(log);
    config.fsync = FsyncPolicy::Never;
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 2);
    assert_eq!(sync_one(&mut log, 3, 0), Offset(3));
    assert_eq!(log.fsync_count(), 0);
}

/// The open segment is extended ahead of its records with a hole (so an fdatasync has no file
/// size to commit); a crash leaves those zeros behind, and start-up cuts them without calling
/// them a torn tail. A clean drop and sealing leave no zeros at all.
#[test]
fn preallocated_zeros_are_cut_without_being_reported_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    let events = fill(&mut log, 30, 7, 40);
    let path = log.segment_paths().pop().unwrap();
    let records_end = {
        let bytes = std::fs::read(&path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        assert!(
            bytes.len() > end,
            "the open segment is extended past its records"
        );
        end as u64
    };
    // A crash: no Drop runs. The leaked log still holds the directory's lock, so the files
    // are reopened from a copy, as a restarted process would find them.
    std::mem::forget(log);
    let dir = copy_log_files(dir.path());
    let path = dir.path().join(path.file_name().unwrap());
    let (mut log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(
        (report.truncated_bytes, report.truncated_records),
        (0, 0),
        "zeros are not a torn tail"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), records_end);
    let read: Vec<Event> = read_events(&mut log);
    assert_eq!(read, events);
    // The log goes on, and a clean drop leaves the file ending at its last record.
    log.append(event(31, 1, 0, 40)).unwrap();
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(31));
    drop(log);
    let bytes = std::fs::read(&path).unwrap();
    assert_ne!(bytes.last(), Some(&0), "no zeros after a clean drop");
    let (_, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!((report.event_count, report.truncated_bytes), (31, 0));
}

/// A new directory holding copies of the log files of `from` (not its lock file).
fn copy_log_files(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "flo.lock" {
            std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    to
}

/// Issue 10 item 5: a second log (or embedded server) on a directory in use is refused with
/// an error naming the directory and the holder's pid, and the first keeps working; the lock
/// goes with the first log.
#[test]
fn a_second_log_on_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = FileLog::open(&config(dir.path())).unwrap();
    let message = match FileLog::open(&config(dir.path())) {
        Ok(_) => panic!("a second log opened the same directory"),
        Err(error) => error.to_string(),
    };
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    first.append(event(1, 1, 0, 10)).unwrap();
    assert_eq!(first.sync(MonotonicMs(0)).unwrap(), Offset(1));
    let mut server_config =
        flo::config::Config::new("127.0.0.1:0".parse().unwrap(), dir.path().into());
    server_config.storage = config(dir.path());
    match flo::Server::start(server_config.clone()) {
        Ok(_) => panic!("an embedded server started on a directory in use"),
        Err(flo::ServerError::Storage(StorageError::Locked { dir: locked, .. })) => {
            assert_eq!(locked, dir.path());
        }
        Err(other) => panic!("expected a Locked storage error, got {other}"),
    }
    drop(first);
    let (log, report) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(report.event_count, 1);
    drop(log);
    let server = flo::Server::start(server_config).unwrap();
    server.shutdown().unwrap();
}

fn produced(sequence: u64, counter: u64) -> ProducedRecord {
    ProducedRecord {
        producer_id: 9,
        sequence,
        first_id: EventId::new(counter, 1),
        count: 1,
        timestamp_ms: 1000 + counter,
    }
}

/// The produced journal of idempotent produces: a record is kept across a reopen when its
/// event is, dropped with its event by a failed sync, and dropped at open when its event is
/// not in the log (written to the journal, then the events were lost).
#[test]
fn produced_records_follow_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    log.append(event(1, 1, 1001, 8)).unwrap();
    log.append_produced(&produced(1, 1));
    log.sync(MonotonicMs(1)).unwrap();
    log.append(event(2, 1, 1002, 8)).unwrap();
    log.append_produced(&produced(2, 2));
    log.inject_fault(InjectedFault::WriteFails { bytes_written: 3 });
    assert!(log.sync(MonotonicMs(2)).is_err());
    assert_eq!(log.produced_count(), 1);
    drop(log);

    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(log.take_produced(), vec![produced(1, 1)]);
    drop(log);
    // A record whose event never reached the log.
    let path = dir.path().join("produced.journal");
    let mut bytes = std::fs::read(&path).unwrap();
    produced(3, 40).encode(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(log.take_produced(), vec![produced(1, 1)]);
    log.rewrite_produced(&[]).unwrap();
    drop(log);
    let (mut log, _) = FileLog::open(&config(dir.path())).unwrap();
    assert_eq!(log.take_produced(), vec![]);
}

/// Under `interval` the periodic fdatasync runs on the storage helper thread, never on the
/// caller's (the reactor's), and so does the seal of a full segment once the helper has created
/// `next.log` for it (it does at the first sync; the test waits for its jobs after each sync,
/// so every seal finds it): the caller only switches files, and the helper cuts and
/// fdatasyncs the sealed segment before it names the next one, so a sealed segment is whole on
/// disk under every policy. Under `interval` most of a full segment is fdatasynced on the
/// helper first, so the segment may take appends past `segment_size_max`, by at most a
/// quarter of it plus one group. What counts as durable is what was written, as before.
#[test]
fn interval_fdatasyncs_and_seals_run_off_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::IntervalMs(10);
    let (mut log, _) = FileLog::open(&config).unwrap();
    let mut segments = 1;
    for counter in 1..=300u64 {
        log.append(event(counter, 1, 0, 100)).unwrap();
        // Every sync writes and is durable for readers at once, whatever runs in the background.
        assert_eq!(
            log.sync(MonotonicMs(counter * 20)).unwrap(),
            Offset(counter)
        );
        log.wait_for_syncs().unwrap();
        segments = log.segment_paths().len();
        assert_eq!(
            log.caller_fsync_count(),
            0,
            "sync {counter}: an fdatasync ran on the caller's thread ({segments} segments)"
        );
    }
    let caller_fsyncs = log.caller_fsync_count();
    assert!(segments > 3, "only {segments} segments");
    assert!(
        log.fsync_count() > caller_fsyncs,
        "no periodic fdatasync ran: {} in all",
        log.fsync_count()
    );
    log.wait_for_syncs().unwrap();
    for path in log.segment_paths().iter().rev().skip(1) {
        let size = std::fs::metadata(path).unwrap().len();
        assert!(
            size <= 4096 + 1024 + 144,
            "{} has {size} bytes",
            path.display()
        );
    }
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 300);
    drop(log);
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 300);
    assert_eq!(report.indexes_rebuilt, 0, "{report:?}");
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 300);
}

/// Under `interval` and `never` the open segment grows ahead of need on the helper thread
/// (`FileLog::extend_ahead`): appending tens of MiB in turns, with the helper keeping up (the
/// test waits for its jobs after each sync), the caller's thread never extends the file, the
/// segments end at their records once sealed or the log is dropped, and every record is read
/// back after a reopen. Under `always` the caller's thread still extends it (the turn's own
/// fdatasync covers the new length).
#[test]
fn interval_and_never_grow_the_open_segment_on_the_helper_thread() {
    for fsync in [
        FsyncPolicy::IntervalMs(10),
        FsyncPolicy::Never,
        FsyncPolicy::Always,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.fsync = fsync;
        config.segment_size_max = 10 << 20;
        config.cache_bytes_max = 1 << 20;
        let (mut log, _) = FileLog::open(&config).unwrap();
        let mut counter = 0u64;
        // About 33 MiB in turns of 128 KiB: several extensions in each of about three segments.
        for turn in 1..=256u64 {
            for _ in 0..128 {
                counter += 1;
                log.append(event(counter, 1, 0, 1000)).unwrap();
            }
            assert_eq!(log.sync(MonotonicMs(turn * 20)).unwrap(), Offset(counter));
            log.wait_for_syncs().unwrap();
        }
        let segments = log.segment_paths().len();
        assert!(segments >= 3, "{fsync:?}: only {segments} segments");
        if fsync == FsyncPolicy::Always {
            assert!(log.caller_extend_count() >= 30, "{fsync:?}");
        } else {
            assert_eq!(
                log.caller_extend_count(),
                0,
                "{fsync:?}: the caller's thread extended the open segment"
            );
        }
        drop(log);
        // Every record back after a clean stop, each segment within its bound.
        let (mut log, report) = FileLog::open(&config).unwrap();
        assert_eq!(report.event_count, counter, "{fsync:?}");
        assert_eq!(report.indexes_rebuilt, 0, "{fsync:?}: {report:?}");
        assert_eq!(read_all(&mut log, 0).unwrap().len() as u64, counter);
        for path in log.segment_paths() {
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size <= 13 << 20, "{} has {size} bytes", path.display());
        }
    }
}

/// A turn whose records do not fit in the cache's ring spills them to a buffer, which grows to
/// the whole turn; after the write, a buffer past `storage.spill_bytes_kept_max` (4 MiB by
/// default) is given back instead of being held for good (attack round 15: 60 produces of
/// 8 MiB in one turn left 512 MiB), while one within it is kept, so turns that spill every time
/// (a small cache) do not allocate it again. Fails before session 16: the buffer kept the large
/// turn's capacity. With the limit set to 32 MiB the 12 MiB turn's buffer (which doubled
/// past 16 MiB) is kept, with 0
/// none is (before session 17 the limit was a constant).
#[test]
fn a_large_turns_spill_buffer_is_given_back_and_a_small_ones_kept() {
    let default_max = StorageConfig::new("unused".into()).spill_bytes_kept_max;
    assert_eq!(default_max, 4 << 20);
    for (fsync, kept_max) in [
        (FsyncPolicy::IntervalMs(100), default_max),
        (FsyncPolicy::Always, default_max),
        (FsyncPolicy::Always, 32 << 20),
        (FsyncPolicy::Always, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.fsync = fsync;
        config.segment_size_max = 64 << 20;
        config.cache_bytes_max = 1 << 20;
        config.spill_bytes_kept_max = kept_max;
        let (mut log, _) = FileLog::open(&config).unwrap();
        let data_size = 1 << 20;
        let mut counter = 0u64;
        let mut turn = |log: &mut FileLog, events: u64| {
            for _ in 0..events {
                counter += 1;
                log.append(event(counter, 1, 0, data_size)).unwrap();
            }
            assert_eq!(log.sync(MonotonicMs(counter)).unwrap(), Offset(counter));
            log.spill_capacity()
        };
        let case = format!("{fsync:?}, {kept_max} bytes kept at most");
        // A turn of 2 MiB spills (the ring holds 1 MiB) and keeps its buffer within the
        // limit, the same capacity turn after turn.
        let small = turn(&mut log, 2);
        assert!(small <= kept_max, "{case}: {small} bytes");
        if kept_max > 0 {
            assert!(small >= 2 * data_size, "{case}: {small} bytes");
        }
        assert_eq!(turn(&mut log, 2), small, "{case}: the buffer was not kept");
        // A turn of 12 MiB grows it; the write gives it back unless the limit keeps it.
        let large = turn(&mut log, 12);
        assert!(
            large <= kept_max,
            "{case}: {large} bytes held after a turn of 12 MiB"
        );
        if kept_max >= 32 << 20 {
            assert!(large >= 12 * data_size, "{case}: {large} bytes");
        }
        // Every record was written, the large turn's too.
        log.wait_for_syncs().unwrap();
        let sizes: Vec<usize> = read_events(&mut log).iter().map(|e| e.data.len()).collect();
        assert_eq!(sizes, vec![data_size; 16], "{case}");
    }
}

/// Under `always` the hole past the open segment's records is filled with written zeros
/// `ZERO_AHEAD_BYTES` (64 KiB) at a time (`FileLog::zero_ahead`, issue 12 run S), so the
/// fdatasync of most writes has no block to allocate: syncing 1,000 records of about 180 bytes
/// one at a time, the file's allocated size grows at most 5 times (once per 64 KiB of records),
/// where writes into the hole grow it once per 4 KiB block (36 times on ext4 before the
/// change), as they still do under `interval`. Every record reads back after a reopen.
#[test]
fn always_writes_zeros_ahead_of_the_open_segments_records() {
    use std::os::unix::fs::MetadataExt;
    for fsync in [FsyncPolicy::Always, FsyncPolicy::IntervalMs(10)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.fsync = fsync;
        config.segment_size_max = 10 << 20;
        let (mut log, _) = FileLog::open(&config).unwrap();
        let path = log.segment_paths().pop().unwrap();
        let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
        let mut last = allocated();
        let mut growths = 0;
        for counter in 1..=1000u64 {
            log.append(event(counter, 1, 1000 + counter, 100)).unwrap();
            log.sync(MonotonicMs(counter)).unwrap();
            let now = allocated();
            if now > last {
                growths += 1;
                last = now;
            }
        }
        assert_eq!(
            log.segment_paths().len(),
            1,
            "{fsync:?}: the segment rolled"
        );
        if fsync == FsyncPolicy::Always {
            assert!(
                growths <= 5,
                "{fsync:?}: the allocated size grew {growths} times"
            );
        } else {
            assert!(
                growths > 5,
                "{fsync:?}: the allocated size grew {growths} times"
            );
        }
        log.wait_for_syncs().unwrap();
        drop(log);
        let (mut log, report) = FileLog::open(&config).unwrap();
        assert_eq!(report.event_count, 1000, "{fsync:?}");
        assert_eq!(read_all(&mut log, 0).unwrap().len(), 1000);
    }
}

/// The open segment's names reuse the memory of a segment whose `.nsx` build is over: from
/// the third segment on, the open segment starts with the capacity a whole segment's names
/// needed, so filling it neither reallocates nor faults pages in (issue 13, session 15). One
/// record a sync, so the open segment holds at most one record right after a roll.
#[test]
fn the_open_segment_reuses_the_names_memory_of_a_built_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_size_max = 16 << 10;
    let (mut log, _) = FileLog::open(&config).unwrap();
    let mut rolls = 0;
    let mut segments = log.segment_paths().len();
    for counter in 1..=400u64 {
        log.append(event(counter, 1, 1000 + counter, 200)).unwrap();
        log.sync(MonotonicMs(counter)).unwrap();
        let now = log.segment_paths().len();
        if now == segments {
            continue;
        }
        segments = now;
        rolls += 1;
        if rolls >= 2 {
            // About 60 records of 3-byte names a segment: 60 * (3 + 4) bytes at least.
            let names_bytes = log.open_segment_names_bytes();
            assert!(
                names_bytes >= 60 * 7,
                "roll {rolls}: the open segment's names take {names_bytes} bytes"
            );
        }
    }
    assert!(rolls >= 4, "only {rolls} rolls");
    drop(log);
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 400);
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 400);
}

/// Under `always` every sync's fdatasync runs on the caller's thread (the acknowledgements
/// wait for it) and each seal adds one, its index file is written by the helper thread, and
/// the index files are all there after a restart.
#[test]
fn always_fdatasyncs_on_the_callers_thread_once_per_sync_and_once_per_seal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::Always;
    let (mut log, _) = FileLog::open(&config).unwrap();
    for counter in 1..=100u64 {
        log.append(event(counter, 1, 0, 100)).unwrap();
        assert_eq!(log.sync(MonotonicMs(counter)).unwrap(), Offset(counter));
    }
    let seals = log.segment_paths().len() as u64 - 1;
    assert!(seals > 1);
    assert_eq!(log.caller_fsync_count(), 100 + seals);
    drop(log);
    let (_, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 100);
    assert_eq!(report.indexes_rebuilt, 0, "{report:?}");
}

/// Purges (docs/storage.md, "Purge file"): `add_purges` is durable when it returns (a reopened
/// log holds the set), and retention deletes the oldest segments once a purge hides every record
/// in them, looking at a bounded number of records per call and resuming where it stopped.
#[test]
fn purges_survive_a_reopen_and_free_whole_segments_a_bounded_step_at_a_time() {
    use flo::event::{PurgeBefore, PurgeRule};
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.reclaim_records_per_call_max = 50;
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill(&mut log, 500, 10, 40);
    let rule = PurgeRule {
        glob: "/t/**".into(),
        before: PurgeBefore::Id(EventId::new(300, 1)),
    };
    let outcomes = log
        .add_purges(std::slice::from_ref(&rule), PurgeLimits::NONE)
        .unwrap();
    assert_eq!(outcomes, vec![Ok(true)]);
    drop(log);
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(log.hide_rules().purges(), vec![rule.clone()]);
    let mut calls = 0;
    loop {
        calls += 1;
        let start_before = log.start().0;
        let deleted = log.apply_retention(WallClockMs(0)).unwrap();
        assert_eq!(log.start().0, start_before + deleted);
        if calls > 1 && deleted == 0 && start_before > 0 {
            break;
        }
        assert!(calls < 100, "reclaiming never settled");
    }
    let start = log.start().0;
    // Offset o holds counter o + 1: everything deleted was purged, and the segment holding
    // the first visible record (counter 300, offset 299) is kept.
    assert!(start > 0 && start <= 299, "start {start}");
    assert!(
        calls >= 299 / 50,
        "at most 50 records looked at per call ({calls} calls)"
    );
    assert_eq!(
        log.activity().reclaimed_segments,
        log.activity().retention_deleted_segments
    );
    let first = read_all(&mut log, 0).unwrap()[0].1.id;
    assert_eq!(first, EventId::new(start + 1, 1));
    drop(log);
    // Reopened, with a per-namespace retention rule: events older than 100 ms before "now"
    // (timestamps are 1000 + counter) are hidden too and free segments the same way.
    config.namespace_retention = vec!["/t/** keep 100ms".parse().unwrap()];
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(log.start().0, start);
    for _ in 0..20 {
        log.apply_retention(WallClockMs(1_500)).unwrap();
    }
    let start = log.start().0;
    assert!((299..=1_399 - 1_000).contains(&start), "start {start}");
    let hide = log.hide_rules();
    let retention = hide.retention();
    assert_eq!(retention[0].1, 1_400, "cutoff now - keep");
}

/// Appends `count` events of 40 bytes, event `i` (counter `i`, 1-based) to `/acct/{i % names}`,
/// then `/keep` (so the segments before it can all be purged), syncing every 10.
fn fill_accounts(log: &mut FileLog, count: u64, names: u64) {
    for counter in 1..=count {
        let mut e = event(counter, 1, 1000 + counter, 40);
        e.namespace = format!("/acct/{}", counter % names);
        log.append(e).unwrap();
        if counter % 10 == 0 {
            log.sync(MonotonicMs(counter)).unwrap();
        }
    }
    let mut keep = event(count + 1, 1, 1000 + count + 1, 40);
    keep.namespace = "/keep".into();
    log.append(keep).unwrap();
    log.sync(MonotonicMs(count)).unwrap();
}

/// Reclaims until a call deletes nothing.
fn reclaim_all(log: &mut FileLog) {
    for _ in 0..1000 {
        if log.apply_retention(WallClockMs(0)).unwrap() == 0 {
            return;
        }
    }
    panic!("reclaiming never settled");
}

/// Attack round 3, F5: a purged namespace's newest id (what a conditional produce checks)
/// stays once the reclaimer deleted its events with their segment, and after a reopen
/// (`flo.purged-newest`); a retention rule's deletions are not remembered (retention may take
/// a namespace back to no events); past `purged_namespaces_max` the segment stays instead.
#[test]
fn a_purged_namespaces_newest_id_survives_the_reclaim_of_its_segment_and_a_reopen() {
    use flo::event::{PurgeBefore, PurgeRule};
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill_accounts(&mut log, 300, 7);
    let newest = |counter_max: u64, name: u64| {
        let counter = (1..=counter_max).rev().find(|c| c % 7 == name).unwrap();
        Some(EventId::new(counter, 1))
    };
    let rule = PurgeRule {
        glob: "/acct/**".into(),
        before: PurgeBefore::Id(EventId::new(301, 1)),
    };
    log.add_purges(std::slice::from_ref(&rule), PurgeLimits::NONE)
        .unwrap();
    reclaim_all(&mut log);
    assert!(log.start().0 > 250, "start {}", log.start().0);
    for name in 0..7 {
        let namespace = format!("/acct/{name}");
        assert_eq!(
            log.last_in_namespace(&namespace, &mut u64::MAX.clone())
                .unwrap(),
            newest(300, name),
            "{namespace} after its events were deleted"
        );
    }
    assert_eq!(
        log.last_in_namespace("/acct/new", &mut u64::MAX.clone())
            .unwrap(),
        None
    );
    drop(log);
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(
        log.last_in_namespace("/acct/3", &mut u64::MAX.clone())
            .unwrap(),
        newest(300, 3)
    );
    assert_eq!(
        log.last_in_namespace("/acct/new", &mut u64::MAX.clone())
            .unwrap(),
        None
    );
    drop(log);

    // With room for 3 namespaces, a segment holding a fourth stays, and answers for it.
    let dir = tempfile::tempdir().unwrap();
    let mut config = self::config(dir.path());
    config.purged_namespaces_max = 3;
    let (mut log, _) = FileLog::open(&config).unwrap();
    fill_accounts(&mut log, 300, 7);
    log.add_purges(std::slice::from_ref(&rule), PurgeLimits::NONE)
        .unwrap();
    reclaim_all(&mut log);
    assert_eq!(log.start().0, 0, "the first segment holds 7 namespaces");
    assert_eq!(
        log.last_in_namespace("/acct/5", &mut u64::MAX.clone())
            .unwrap(),
        newest(300, 5)
    );
}

/// The zeros written ahead of the records under `always` (`FileLog::zero_ahead`) are an
/// optimisation: when their write fails, the sync still writes and fdatasyncs the records and
/// succeeds, the failed stretch stays a hole (the file's allocated size does not grow by the
/// 64 KiB of zeros), and once the records pass that stretch the next fill writes zeros again.
/// Every record reads back after a reopen, with nothing cut. (Session 17: the failure was only
/// logged and untested; the test fails if the failed fill makes the sync fail or if the fault
/// does not stop the zeros.)
#[test]
fn a_failed_zero_fill_leaves_the_records_write_alone() {
    use std::os::unix::fs::MetadataExt;
    const ZEROS_AHEAD: u64 = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.fsync = FsyncPolicy::Always;
    config.segment_size_max = 10 << 20;
    let (mut log, _) = FileLog::open(&config).unwrap();
    let path = log.segment_paths().pop().unwrap();
    let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
    let before = allocated();
    log.append(event(1, 1, 1001, 100)).unwrap();
    log.inject_fault(InjectedFault::ZeroFillDiskFull);
    assert_eq!(log.sync(MonotonicMs(1)).unwrap(), Offset(1));
    let after_failed = allocated();
    assert!(
        after_failed < before + ZEROS_AHEAD,
        "the zeros were written: {before} -> {after_failed} bytes allocated"
    );
    // About 180 bytes a record: the first 64 KiB of records (about 365) go into the hole, and
    // from record 400 the fills have resumed: the allocated size grows a few times (once per
    // 64 KiB of records), not once per 4 KiB block as writes into a hole make it (about 27
    // times for records 400 to 1,000).
    let mut last = after_failed;
    let mut growths = 0;
    for counter in 2..=1000u64 {
        log.append(event(counter, 1, 1000 + counter, 100)).unwrap();
        assert_eq!(log.sync(MonotonicMs(counter)).unwrap(), Offset(counter));
        let now = allocated();
        if counter >= 400 && now > last {
            growths += 1;
        }
        last = now;
    }
    assert_eq!(
        log.segment_paths(),
        vec![path.clone()],
        "the segment rolled"
    );
    assert!(growths <= 4, "the allocated size grew {growths} times");
    drop(log);
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 1000);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(read_all(&mut log, 0).unwrap().len(), 1000);
}
