//! Proves crash recovery and corruption detection on real files: a log cut at every byte
//! inside its last records reopens with exactly the whole records before the cut (a torn tail
//! is cut automatically); a bit flip in the newest segment with valid records after it, or a
//! damaged header of a segment with records, refuses the start without changing a byte, and
//! `open_repairing` (`flo --repair`) quarantines the damaged bytes and keeps every record with
//! a valid checksum; bit flips in sealed segments are reported as `Unreadable` with file,
//! position and unreadable offsets by a read, which resumes at the next record the segment's
//! sparse index locates; damaged index files and segment headers torn
//! while being created are repaired. Random choices use a seeded xorshift generator.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::SeededRng;
use flo::config::StorageConfig;
use flo::event::{Event, EventId};
use flo::storage::record::encoded_size;
use flo::storage::segment::read_header;
use flo::storage::{FileLog, Log, Offset, StorageError};
use flo::time::MonotonicMs;

fn config(dir: &Path, segment_size_max: u64) -> StorageConfig {
    let mut config = StorageConfig::new(dir.to_path_buf());
    config.segment_size_max = segment_size_max;
    config.cache_bytes_max = 4096;
    config
}

fn event(counter: u64) -> Event {
    Event {
        id: EventId::new(counter, (counter % 3) as u16 + 1),
        parent_id: (counter > 1).then(|| EventId::new(counter - 1, 1)),
        namespace: "/recovery".into(),
        timestamp_ms: 10 * counter,
        data: vec![counter as u8; (counter as usize * 13) % 90],
    }
}

fn write_log(config: &StorageConfig, count: u64) -> Vec<Event> {
    let (mut log, _) = FileLog::open(config).unwrap();
    let events: Vec<Event> = (1..=count).map(event).collect();
    for (i, e) in events.iter().enumerate() {
        log.append(e.clone()).unwrap();
        if i % 4 == 3 {
            log.sync(MonotonicMs(0)).unwrap();
        }
    }
    log.sync(MonotonicMs(0)).unwrap();
    events
}

fn read_all(log: &mut FileLog) -> Result<Vec<Event>, StorageError> {
    let mut out = Vec::new();
    log.read(Offset(0), &mut |_, e| {
        out.push(e.to_event());
        true
    })?;
    Ok(out)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_cut_at_every_byte_of_the_last_records_recovers_exactly_the_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let events = write_log(&config, 40);
    let path = segment_files(dir.path()).pop().unwrap();
    let original = fs::read(&path).unwrap();
    // The byte where each of the last four records ends, and where the first of them starts.
    let mut ends = vec![original.len()];
    for e in events.iter().rev().take(4) {
        ends.push(ends.last().unwrap() - encoded_size(e));
    }
    ends.reverse();
    for cut in ends[0]..=original.len() {
        fs::write(&path, &original[..cut]).unwrap();
        let (mut log, report) = FileLog::open(&config).unwrap();
        let whole = ends.iter().filter(|&&end| end <= cut).count() - 1;
        let kept = 36 + whole;
        let boundary = ends[whole];
        assert_eq!(report.event_count, kept as u64, "cut at {cut}");
        assert_eq!(
            report.truncated_bytes,
            (cut - boundary) as u64,
            "cut at {cut}"
        );
        assert_eq!(
            report.truncated_records,
            u64::from(cut > boundary),
            "cut at {cut}"
        );
        assert_eq!(read_all(&mut log).unwrap(), events[..kept], "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), boundary as u64);
        // The log continues after the cut.
        log.append(event(41)).unwrap();
        assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(kept as u64 + 1));
    }
}

fn header_size(path: &Path) -> u64 {
    let mut file = fs::File::open(path).unwrap();
    read_header(&mut file).unwrap().unwrap().1
}

fn flip_bit(path: &Path, random: &mut SeededRng) -> u64 {
    let mut bytes = fs::read(path).unwrap();
    let header = header_size(path);
    let position = header + random.below(bytes.len() as u64 - header);
    bytes[position as usize] ^= 1 << random.below(8);
    fs::write(path, bytes).unwrap();
    position
}

#[test]
fn bit_flips_in_sealed_segments_are_reported_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let events = write_log(&config, 300);
    let files = segment_files(dir.path());
    assert!(files.len() > 3);
    let mut random = SeededRng::new(0x05ee_df10);
    for trial in 0..40 {
        let victim = &files[random.below(files.len() as u64 - 1) as usize];
        let original = fs::read(victim).unwrap();
        let position = flip_bit(victim, &mut random);
        let (mut log, report) = FileLog::open(&config).unwrap();
        assert_eq!(report.event_count, 300, "sealed segments are not cut");
        match read_all(&mut log) {
            Err(StorageError::Unreadable { context, offsets }) => {
                let name = victim.file_name().unwrap().to_str().unwrap();
                assert!(context.contains(name), "trial {trial}: {context}");
                assert!(context.contains("at byte"), "trial {trial}: {context}");
                assert!(context.contains("unreadable"), "trial {trial}: {context}");
                // A read from the end of the range goes on: one flip, so the rest is whole.
                let mut rest = Vec::new();
                log.read(offsets.end, &mut |_, e| {
                    rest.push(e.to_event());
                    true
                })
                .unwrap();
                assert_eq!(rest, events[offsets.end.0 as usize..], "trial {trial}");
            }
            other => panic!("trial {trial}: flip at {position} not detected: {other:?}"),
        }
        fs::write(victim, original).unwrap();
    }
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(read_all(&mut log).unwrap(), events);
}

/// A damaged record early in a large sealed segment makes unreadable only the records up to
/// the next entry of the segment's sparse index (every 1024 records or 64 KiB), not the rest
/// of the segment: `--skip-damaged` consumers lose as little as the index allows.
#[test]
fn a_damaged_record_in_a_sealed_segment_is_unreadable_up_to_the_next_sparse_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 400 * 1024);
    let events = write_log(&config, 12_000);
    let files = segment_files(dir.path());
    assert!(files.len() >= 2, "the first segment is sealed");
    let header = header_size(&files[0]);
    let mut bytes = fs::read(&files[0]).unwrap();
    let tenth: u64 = events[..10].iter().map(|e| encoded_size(e) as u64).sum();
    bytes[(header + tenth + 9) as usize] ^= 0x04;
    fs::write(&files[0], bytes).unwrap();
    let (mut log, _) = FileLog::open(&config).unwrap();
    let offsets = match read_all(&mut log) {
        Err(StorageError::Unreadable { offsets, .. }) => offsets,
        other => panic!("the flipped bit is not detected: {other:?}"),
    };
    assert_eq!(offsets.start, Offset(10));
    assert!(
        (11..=1024).contains(&offsets.end.0),
        "resumes at the next sparse entry: {offsets:?}"
    );
    let mut rest = Vec::new();
    log.read(offsets.end, &mut |_, e| {
        rest.push(e.to_event());
        true
    })
    .unwrap();
    assert_eq!(rest, events[offsets.end.0 as usize..]);
}

/// `flo --repair` and a damaged sealed segment (issue 10 item 6): the whole file is copied to
/// quarantine, the segment is rewritten with every record that passes its checksum at its own
/// offset and a hole at each lost one, the report counts what was lost, and every later record
/// keeps its offset. Two damaged records far apart: the records between them are placed by the
/// old sparse index, the ones after the second by the end of the segment.
#[test]
fn repair_of_a_damaged_sealed_segment_keeps_every_readable_record_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 400 * 1024);
    let events = write_log(&config, 12_000);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "two sealed segments");
    let header = header_size(&files[0]);
    let start_of = |index: usize| -> u64 {
        header
            + events[..index]
                .iter()
                .map(|e| encoded_size(e) as u64)
                .sum::<u64>()
    };
    let original = fs::read(&files[0]).unwrap();
    let mut bytes = original.clone();
    for victim in [10, 2000] {
        bytes[(start_of(victim) + 9) as usize] ^= 0x04;
    }
    fs::write(&files[0], &bytes).unwrap();
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert!(
        matches!(read_all(&mut log), Err(StorageError::Unreadable { .. })),
        "a plain start leaves the damage in place"
    );
    drop(log);

    let (mut log, report_repaired) = FileLog::open_repairing(&config).unwrap();
    assert_eq!(report_repaired.lost_records, 2, "{report_repaired}");
    assert_eq!(report_repaired.event_count, report.event_count);
    let quarantine = dir
        .path()
        .join(format!("{:020}.log.quarantine-{}", 0, start_of(10)));
    assert_eq!(
        fs::read(&quarantine).unwrap(),
        bytes,
        "the whole damaged file"
    );
    let mut read = Vec::new();
    log.read(Offset(0), &mut |offset, e| {
        read.push((offset.0, e.to_event()));
        true
    })
    .unwrap();
    let expected: Vec<(u64, Event)> = events
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 10 && i != 2000)
        .map(|(i, e)| (i as u64, e.clone()))
        .collect();
    assert!(read == expected, "every readable record at its own offset");
    drop(log);
    // The repaired directory opens plainly, and a second repair finds nothing to do.
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(read_all(&mut log).unwrap().len(), 11_998);
    drop(log);
    let (_, again) = FileLog::open_repairing(&config).unwrap();
    assert_eq!((again.lost_records, again.quarantined_bytes), (0, 0));
}

/// The byte range of each event's record in a segment whose records start at `header`.
fn record_ranges(events: &[Event], header: u64) -> Vec<std::ops::Range<u64>> {
    let mut end = header;
    events
        .iter()
        .map(|e| {
            let start = end;
            end += encoded_size(e) as u64;
            start..end
        })
        .collect()
}

fn open_error(config: &StorageConfig) -> String {
    match FileLog::open(config) {
        Ok((_, report)) => panic!("the start was not refused; it reported: {report}"),
        Err(error) => error.to_string(),
    }
}

fn quarantine_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().contains(".quarantine-"))
        .collect();
    files.sort();
    files
}

#[test]
fn bit_flips_in_the_newest_segment_refuse_the_start_and_repair_keeps_every_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let events = write_log(&config, 60);
    let path = segment_files(dir.path()).pop().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let original = fs::read(&path).unwrap();
    let ranges = record_ranges(&events, header_size(&path));
    let mut random = SeededRng::new(0x0b17_f11b);
    for trial in 0..60 {
        let position = flip_bit(&path, &mut random);
        let flipped = fs::read(&path).unwrap();
        let damaged = ranges.iter().position(|r| r.contains(&position)).unwrap();
        if damaged == events.len() - 1 {
            // Nothing valid follows: a torn tail, cut automatically.
            let (mut log, report) = FileLog::open(&config).unwrap();
            assert_eq!(report.event_count, damaged as u64, "trial {trial}");
            assert_eq!(read_all(&mut log).unwrap(), events[..damaged]);
        } else {
            let message = open_error(&config);
            let at = format!("at byte {}", ranges[damaged].start);
            assert!(message.contains(&name), "trial {trial}: {message}");
            assert!(message.contains(&at), "trial {trial}: {message}");
            assert!(message.contains("--repair"), "trial {trial}: {message}");
            // The damage is named by the events around it too (issue 10): the last readable
            // one before the damaged record and the first readable one after it.
            let before = match damaged {
                0 => "none in this segment".to_string(),
                _ => format!("event {}", events[damaged - 1].id),
            };
            let around = format!(
                "the last readable event before the damage is {before}, the first readable \
                 after it is event {}",
                events[damaged + 1].id
            );
            assert!(message.contains(&around), "trial {trial}: {message}");
            assert_eq!(
                fs::read(&path).unwrap(),
                flipped,
                "a refused start changes nothing"
            );
            let (mut log, report) = FileLog::open_repairing(&config).unwrap();
            let mut kept = events.clone();
            kept.remove(damaged);
            assert_eq!(report.repaired_records, kept.len() as u64 - damaged as u64);
            assert_eq!(read_all(&mut log).unwrap(), kept, "trial {trial}");
            drop(log);
            let quarantine = quarantine_files(dir.path());
            assert_eq!(quarantine.len(), 1);
            let expected_name = format!("{name}.quarantine-{}", ranges[damaged].start);
            assert!(quarantine[0].ends_with(&expected_name), "{quarantine:?}");
            let moved = fs::read(&quarantine[0]).unwrap();
            assert_eq!(moved, flipped[ranges[damaged].start as usize..]);
            fs::remove_file(&quarantine[0]).unwrap();
        }
        fs::write(&path, &original).unwrap();
    }
}

/// Issue 10 item 6: one flipped bit at byte 200 of a segment with thousands of records used
/// to cut every record after it at start-up.
#[test]
fn a_flipped_bit_at_byte_200_of_thousands_of_records_refuses_the_start_then_repair_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 64 << 20);
    let events = write_log(&config, 3000);
    let path = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[200] ^= 0x08;
    fs::write(&path, &bytes).unwrap();
    let message = open_error(&config);
    assert!(
        message.contains(path.file_name().unwrap().to_str().unwrap()),
        "{message}"
    );
    assert!(message.contains("checksum"), "{message}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a refused start changes nothing"
    );
    let damaged = record_ranges(&events, header_size(&path))
        .iter()
        .position(|r| r.contains(&200))
        .unwrap();
    let (mut log, report) = FileLog::open_repairing(&config).unwrap();
    let mut kept = events.clone();
    kept.remove(damaged);
    assert_eq!(report.event_count, 2999);
    assert_eq!(read_all(&mut log).unwrap(), kept);
    log.append(event(3001)).unwrap();
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(3000));
    drop(log);
    let (_, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 3000, "the repaired log starts normally");
}

/// Issue 10 item 6: damaging the newest segment's header used to recreate the segment,
/// cutting every record in it.
#[test]
fn a_damaged_header_of_a_segment_with_records_refuses_the_start_then_repair_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let events = write_log(&config, 1500);
    let files = segment_files(dir.path());
    let path = files.last().unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[3] ^= 0x01;
    fs::write(path, &bytes).unwrap();
    let message = open_error(&config);
    assert!(
        message.contains(path.file_name().unwrap().to_str().unwrap()),
        "{message}"
    );
    assert!(message.contains("at byte 0"), "{message}");
    assert!(message.contains("header"), "{message}");
    assert_eq!(
        &fs::read(path).unwrap(),
        &bytes,
        "a refused start changes nothing"
    );
    let (mut log, report) = FileLog::open_repairing(&config).unwrap();
    assert_eq!(report.event_count, 1500);
    assert_eq!(read_all(&mut log).unwrap(), events);
    drop(log);
    let quarantine = quarantine_files(dir.path());
    assert_eq!(quarantine.len(), 1);
    assert!(quarantine[0]
        .to_str()
        .unwrap()
        .ends_with(".log.quarantine-0"));
    assert_eq!(fs::read(&quarantine[0]).unwrap(), bytes);
}

#[test]
fn damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let events = write_log(&config, 200);
    let files = segment_files(dir.path());
    let index = files[0].with_extension("idx");
    let mut bytes = fs::read(&index).unwrap();
    bytes[20] ^= 0x10;
    fs::write(&index, bytes).unwrap();
    fs::write(files[1].with_extension("idx"), b"").unwrap();
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.indexes_rebuilt, 2);
    assert_eq!(report.index_files_read as usize, files.len() - 3);
    assert_eq!(read_all(&mut log).unwrap(), events);
    drop(log);
    let (_, report) = FileLog::open(&config).unwrap();
    assert_eq!(
        report.indexes_rebuilt, 0,
        "rebuilt indexes were written back"
    );
}

#[test]
fn a_damaged_sealed_segment_without_index_fails_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    write_log(&config, 200);
    let files = segment_files(dir.path());
    fs::remove_file(files[1].with_extension("idx")).unwrap();
    flip_bit(&files[1], &mut SeededRng::new(77));
    match FileLog::open(&config) {
        Err(StorageError::Corrupt { context }) => {
            assert!(context.contains(files[1].file_name().unwrap().to_str().unwrap()));
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn a_segment_torn_while_being_created_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let events = write_log(&config, 200);
    let (log, _) = FileLog::open(&config).unwrap();
    let vector = log.version_vector().clone();
    let next = log.durable_end().0;
    drop(log);
    // A crash while the next segment was being created: its header is incomplete.
    let torn = dir.path().join(format!("{next:020}.log"));
    fs::write(&torn, b"FLOSE").unwrap();
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!((report.event_count, report.truncated_bytes), (200, 5));
    assert_eq!(log.version_vector(), &vector);
    assert_eq!(read_all(&mut log).unwrap(), events);
    log.append(event(201)).unwrap();
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(201));
}

/// Appends `count` events with the next counters of actor 1 after reserving them, as the
/// engine does, and syncs; returns the highest counter handed out.
fn append_leased(log: &mut FileLog, count: u64) -> u64 {
    let first = log.version_vector().counter_max().max(log.counter_floor()) + 1;
    let last = first + count - 1;
    log.reserve_counters(last).unwrap();
    for counter in first..=last {
        let mut e = event(counter);
        e.id = EventId::new(counter, 1);
        log.append(e).unwrap();
    }
    log.sync(MonotonicMs(0)).unwrap();
    last
}

/// Damage that cuts acknowledged records from the newest segment (its file cut to 0 bytes, so
/// start-up recreates its torn header; or its last byte flipped, so the last record is cut as
/// a torn tail) loses their ids from the version vector, but not from the counter lease: the
/// reopened log's `counter_floor` is at or above every counter ever reserved.
#[test]
fn the_counter_floor_stays_above_every_id_handed_out_whatever_the_newest_segment_loses() {
    type Damage = fn(&Path);
    let truncate: Damage = |path| {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap()
    };
    let flip_last: Damage = |path| {
        let mut bytes = fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(path, bytes).unwrap();
    };
    for damage in [truncate, flip_last] {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 64 * 1024);
        let (mut log, _) = FileLog::open(&config).unwrap();
        assert_eq!(log.counter_floor(), 0);
        let mut handed_out = 0;
        for _ in 0..10 {
            handed_out = append_leased(&mut log, 50);
        }
        drop(log);
        let newest = segment_files(dir.path()).pop().unwrap();
        damage(&newest);
        let (log, report) = FileLog::open(&config).unwrap();
        assert!(log.version_vector().counter_max() < handed_out, "{report}");
        assert_eq!(report.stray_files, 0, "the lease file is part of the log");
        assert!(
            log.counter_floor() >= handed_out,
            "counter floor {} after the damage, but counter {handed_out} was handed out",
            log.counter_floor()
        );
    }
}

/// The lease is raised by a large step, so reservations within it cost no write; once half of
/// the step is used the next step is written ahead of need by the storage helper thread (the
/// reactor does not wait for its fdatasyncs) and counted once it is durable; and a damaged
/// lease file refuses the start (a guessed floor could reuse ids) until `--repair` removes it.
#[test]
fn the_lease_is_raised_in_steps_ahead_of_need_and_a_damaged_lease_file_refuses_the_start() {
    use flo::storage::lease::{decode, COUNTER_LEASE_STEP};
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 64 * 1024);
    let (mut log, _) = FileLog::open(&config).unwrap();
    append_leased(&mut log, 3);
    let lease = log.counter_floor();
    assert_eq!(lease, 3 + COUNTER_LEASE_STEP);
    let path = dir.path().join(flo::storage::lease::LEASE_FILE_NAME);
    let written = fs::read(&path).unwrap();
    log.reserve_counters(lease - COUNTER_LEASE_STEP / 2)
        .unwrap();
    log.wait_for_syncs().unwrap();
    assert_eq!(
        log.counter_floor(),
        lease,
        "no new lease within the first half"
    );
    assert_eq!(fs::read(&path).unwrap(), written);
    log.reserve_counters(lease - COUNTER_LEASE_STEP / 2 + 1)
        .unwrap();
    log.wait_for_syncs().unwrap();
    assert_eq!(
        log.counter_floor(),
        lease + COUNTER_LEASE_STEP,
        "the next step is written ahead once half of this one is used"
    );
    assert_eq!(
        decode(&fs::read(&path).unwrap()),
        Ok(lease + COUNTER_LEASE_STEP)
    );
    // Past a lease with no write ahead in flight: written on the caller's thread at once.
    log.reserve_counters(lease + 2 * COUNTER_LEASE_STEP)
        .unwrap();
    assert!(log.counter_floor() >= lease + 2 * COUNTER_LEASE_STEP);
    drop(log);
    let mut damaged = written;
    damaged[10] ^= 1;
    fs::write(&path, &damaged).unwrap();
    let error = open_error(&config);
    assert!(
        error.contains("flo.counter") && error.contains("--repair"),
        "{error}"
    );
    let (log, _) = FileLog::open_repairing(&config).unwrap();
    assert_eq!(log.counter_floor(), 0);
    assert!(!path.exists());
}

/// Finding 9 of the second attack review: every start with consumer groups logged "ignoring
/// stray file .../groups.journal". The start-up file scan knows the journal (and its
/// compaction's temporary file) and the namespace index files.
#[test]
fn the_group_journal_and_namespace_indexes_are_not_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    write_log(&config, 200);
    std::fs::write(dir.path().join("groups.journal"), b"").unwrap();
    std::fs::write(dir.path().join("groups.journal.tmp"), b"").unwrap();
    let (_log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.stray_files, 0, "{report}");
}

/// The state a kill -9 leaves while a seal is in flight on the storage helper thread
/// (`FileLog::roll_to_prepared`): the sealed segment still has its preallocated zeros and no
/// index file, and the next segment's records are in `next.log`, not yet named. Built from a
/// log of two segments whose newest is renamed back to `next.log`. Returns the events, the
/// sealed segment's path and the newest segment's path.
fn seal_in_flight(config: &StorageConfig, count: u64) -> (Vec<Event>, PathBuf, PathBuf) {
    let dir = config.data_dir.clone();
    let events = write_log(config, count);
    let files = segment_files(&dir);
    assert!(
        files.len() >= 2,
        "the log spans several segments: {files:?}"
    );
    let newest = files[files.len() - 1].clone();
    let sealed = files[files.len() - 2].clone();
    fs::rename(&newest, dir.join("next.log")).unwrap();
    fs::remove_file(sealed.with_extension("idx")).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&sealed).unwrap();
    file.set_len(file.metadata().unwrap().len() + 4096).unwrap();
    (events, sealed, newest)
}

#[test]
fn a_seal_in_flight_at_a_crash_is_finished_at_start_up_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let (events, sealed, newest) = seal_in_flight(&config, 200);
    let sealed_size = fs::metadata(&sealed).unwrap().len() - 4096;
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!(report.event_count, 200);
    assert_eq!(read_all(&mut log).unwrap(), events);
    // The seal is finished: the sealed segment is cut to its records, the next one named.
    assert!(!dir.path().join("next.log").exists());
    assert!(newest.exists());
    assert_eq!(fs::metadata(&sealed).unwrap().len(), sealed_size);
    log.append(event(201)).unwrap();
    assert_eq!(log.sync(MonotonicMs(0)).unwrap(), Offset(201));
}

#[test]
fn an_empty_next_segment_created_ahead_of_a_seal_is_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let events = write_log(&config, 200);
    let files = segment_files(dir.path());
    fs::write(dir.path().join("next.log"), b"").unwrap();
    let (mut log, report) = FileLog::open(&config).unwrap();
    assert_eq!((report.event_count, report.stray_files), (200, 0));
    assert_eq!(read_all(&mut log).unwrap(), events);
    assert!(!dir.path().join("next.log").exists());
    assert_eq!(segment_files(dir.path()), files);
}

#[test]
fn a_seal_cut_short_by_a_power_loss_drops_the_next_segment_and_keeps_the_sealed_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 4096);
    let (events, sealed, newest) = seal_in_flight(&config, 200);
    // The power went before the seal's fdatasync: the sealed segment's last record did not
    // reach the disk (zeros where it was), so `next.log`'s header names a record the sealed
    // segment lacks and the seal cannot be finished; none of `next.log` was fdatasynced (the
    // helper's jobs run in order), so it is dropped.
    let next_first: usize = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let last_size = encoded_size(&events[next_first - 1]);
    let file = fs::OpenOptions::new().write(true).open(&sealed).unwrap();
    let records_end = file.metadata().unwrap().len() - 4096;
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; last_size];
    file.write_all_at(&zeros, records_end - last_size as u64)
        .unwrap();
    drop(file);
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert!(!dir.path().join("next.log").exists());
    assert!(!newest.exists());
    let kept = read_all(&mut log).unwrap();
    assert_eq!(kept[..], events[..next_first - 1]);
    assert_eq!(log.durable_end(), Offset(next_first as u64 - 1));
}

/// A log of 20 events whose 21st, the last, was torn while being written: its data is a whole
/// record with a valid checksum (any client can produce such data), and the tear falls after
/// that embedded record, inside the event. Returns the events, the segment's path, its bytes
/// up to the tear and the byte range the torn event's record claims.
fn torn_event_holding_a_record(
    config: &StorageConfig,
) -> (Vec<Event>, PathBuf, Vec<u8>, std::ops::Range<usize>) {
    let (mut log, _) = FileLog::open(config).unwrap();
    let mut events: Vec<Event> = (1..=20).map(event).collect();
    let mut data = vec![0xEE; 100];
    flo::storage::record::encode(&event(999_999), &mut data);
    data.extend_from_slice(&[0xEE; 300]);
    events.push(Event { data, ..event(21) });
    for e in &events {
        log.append(e.clone()).unwrap();
    }
    log.sync(MonotonicMs(0)).unwrap();
    drop(log);
    let path = segment_files(config.data_dir.as_path()).pop().unwrap();
    let bytes = fs::read(&path).unwrap();
    let torn = record_ranges(&events, header_size(&path)).pop().unwrap();
    let torn = torn.start as usize..torn.end as usize;
    assert_eq!(torn.end, bytes.len());
    // Cut 200 bytes before the event's end: the embedded record lies wholly before the cut.
    let cut = torn.end - 200;
    (events, path, bytes[..cut].to_vec(), torn)
}

/// Attack round 13, redone in session 14: an event torn while being written whose data holds
/// a whole record with a valid checksum. The search for valid records after the damage used to
/// find that embedded record, so start-up refused a torn tail as damage, and `--repair` kept
/// the client's embedded record as an event of the log. A torn tail is cut as one, whether
/// the torn record's claimed span runs past the end of the file or into preallocated zeros,
/// and nothing inside that span is taken as a record, also after real damage before it.
#[test]
fn a_torn_event_whose_data_is_a_valid_record_is_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let (events, path, torn_bytes, torn) = torn_event_holding_a_record(&config);
    let before_torn = &events[..20];
    // The file ends inside the torn record, or zeros follow (the preallocated part of the
    // segment), past the span its header claims.
    let mut preallocated = torn_bytes.clone();
    preallocated.resize(torn.end + 4096, 0);
    for (name, bytes) in [
        ("cut at the tear", &torn_bytes),
        ("zeros after the tear", &preallocated),
    ] {
        fs::write(&path, bytes).unwrap();
        let (mut log, report) = FileLog::open(&config).expect(name);
        assert_eq!(report.event_count, 20, "{name}");
        assert_eq!(
            report.truncated_bytes,
            (bytes.len() - torn.start) as u64,
            "{name}"
        );
        assert_eq!(read_all(&mut log).unwrap(), before_torn, "{name}");
        drop(log);
        assert!(quarantine_files(dir.path()).is_empty(), "{name}");
    }
    // Real damage before the torn event (a flipped bit in the data of event 10) is refused
    // and repaired as before, and the repair keeps the records after it but not the one
    // embedded in the torn event.
    let ranges = record_ranges(&events, header_size(&path));
    let mut damaged = torn_bytes.clone();
    damaged[ranges[9].end as usize - 1] ^= 0x10;
    fs::write(&path, &damaged).unwrap();
    let message = open_error(&config);
    assert!(
        message.contains(&format!("at byte {}", ranges[9].start)),
        "{message}"
    );
    assert!(
        message.contains("10 records with valid checksums follow it"),
        "{message}"
    );
    let (mut log, report) = FileLog::open_repairing(&config).unwrap();
    assert_eq!(report.repaired_records, 10);
    let mut kept = before_torn.to_vec();
    kept.remove(9);
    assert_eq!(read_all(&mut log).unwrap(), kept);
}
