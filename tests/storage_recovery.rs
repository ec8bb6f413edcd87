//! Proves crash recovery and corruption detection on real files: a log cut at every byte
//! inside its last records reopens with exactly the whole records before the cut; bit flips
//! anywhere in the records are detected (cut from the newest segment at start-up, reported
//! as `Corrupt` with file and position by a read of a sealed segment); damaged index files and
//! torn segment headers are repaired. Random choices use a seeded xorshift generator.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::SeededRng;
use flo::config::StorageConfig;
use flo::event::{Event, EventId};
use flo::storage::record::encoded_size;
use flo::storage::segment::read_header;
use flo::storage::{FileLog, Log, Offset, StorageError};

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
            log.sync(0).unwrap();
        }
    }
    log.sync(0).unwrap();
    events
}

fn read_all(log: &mut FileLog) -> Result<Vec<Event>, StorageError> {
    let mut out = Vec::new();
    log.read(Offset(0), &mut |_, e| {
        out.push(e.clone());
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
        assert_eq!(log.sync(0).unwrap(), Offset(kept as u64 + 1));
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
            Err(StorageError::Corrupt { context }) => {
                let name = victim.file_name().unwrap().to_str().unwrap();
                assert!(context.contains(name), "trial {trial}: {context}");
                assert!(context.contains("at byte"), "trial {trial}: {context}");
            }
            other => panic!("trial {trial}: flip at {position} not detected: {other:?}"),
        }
        fs::write(victim, original).unwrap();
    }
    let (mut log, _) = FileLog::open(&config).unwrap();
    assert_eq!(read_all(&mut log).unwrap(), events);
}

#[test]
fn bit_flips_in_the_newest_segment_cut_the_tail_from_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20);
    let events = write_log(&config, 60);
    let path = segment_files(dir.path()).pop().unwrap();
    let original = fs::read(&path).unwrap();
    let header = header_size(&path);
    let mut random = SeededRng::new(0x0b17_f11b);
    for trial in 0..60 {
        let position = flip_bit(&path, &mut random);
        let (mut log, report) = FileLog::open(&config).unwrap();
        // The record holding the flipped byte is the first one cut.
        let mut end = header;
        let damaged = events
            .iter()
            .position(|e| {
                end += encoded_size(e) as u64;
                end > position
            })
            .unwrap();
        assert_eq!(
            report.event_count, damaged as u64,
            "trial {trial} byte {position}"
        );
        assert!(report.truncated_bytes > 0 && report.truncated_records >= 1);
        // The records after the damaged one were whole and are reported as such (a sign of
        // media corruption), unless the flip hit the length field and they cannot be found.
        let after = (events.len() - damaged - 1) as u64;
        let damaged_start = end - encoded_size(&events[damaged]) as u64;
        if position >= damaged_start + 4 {
            assert_eq!(report.truncated_records, after + 1, "trial {trial}");
            assert_eq!(report.truncated_valid_records, after, "trial {trial}");
        }
        assert_eq!(read_all(&mut log).unwrap(), events[..damaged]);
        fs::write(&path, &original).unwrap();
    }
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
    assert_eq!(log.sync(0).unwrap(), Offset(201));
}
