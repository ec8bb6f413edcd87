//! Namespace index benchmark (not a test): load one namespace of 20 events from a log of N
//! events (default 10 million) through the namespace index and by a scan of the whole log,
//! cold (right after opening the log: nothing of it in flo's memory; the kernel's page cache
//! is dropped first when the process may write /proc/sys/vm/drop_caches) and warm (the same
//! query again), and append throughput with the index on and off in the same run.
//!
//! Run: `cargo run --release --example namespace_bench -- [--dir D] [--events N]`
//! (default: a temporary directory in the current directory). Every namespace
//! `/accounts/{i}` holds 20 events spread evenly over the whole log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flo::config::{FsyncPolicy, StorageConfig};
use flo::event::{Event, EventId};
use flo::storage::{FileLog, Log, NamespaceKey, Offset};
use flo::time::MonotonicMs;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const EVENTS_PER_NAMESPACE: u64 = 20;
const GROUP: u64 = 1000;
const DATA_SIZE: usize = 64;

fn event(counter: u64, namespaces: u64) -> Event {
    Event {
        id: EventId::new(counter, 1),
        parent_id: None,
        namespace: format!("/accounts/{}", counter % namespaces),
        timestamp_ms: counter,
        data: vec![(counter % 251) as u8; DATA_SIZE],
    }
}

fn config(dir: &Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir.to_path_buf());
    // The log is built without fdatasync, where the index's own cost shows most.
    config.fsync = FsyncPolicy::Never;
    config
}

/// Appends `count` events to a fresh log with the index on and one with it off, in
/// alternating chunks so both see the same machine; returns the two rates (events/s).
fn compare_appends(
    dir: &Path,
    fsync: FsyncPolicy,
    count: u64,
    namespaces: u64,
) -> BenchResult<(f64, f64)> {
    let mut on_config = config(&dir.join(format!("on-{fsync}")));
    on_config.fsync = fsync;
    let mut off_config = config(&dir.join(format!("off-{fsync}")));
    off_config.fsync = fsync;
    off_config.namespace_index = false;
    let mut on = FileLog::open(&on_config)?.0;
    let mut off = FileLog::open(&off_config)?.0;
    let (mut on_time, mut off_time) = (Duration::ZERO, Duration::ZERO);
    let chunk = (count / 10).max(GROUP);
    let mut done = 0;
    while done < count {
        let to = (done + chunk).min(count);
        off_time += append(&mut off, done, to, namespaces)?;
        on_time += append(&mut on, done, to, namespaces)?;
        done = to;
    }
    drop((on, off));
    std::fs::remove_dir_all(&on_config.data_dir)?;
    std::fs::remove_dir_all(&off_config.data_dir)?;
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    Ok((rate(on_time), rate(off_time)))
}

/// Appends events `from..to` in groups of `GROUP`; returns the time it took.
fn append(log: &mut FileLog, from: u64, to: u64, namespaces: u64) -> BenchResult<Duration> {
    let started = Instant::now();
    let mut counter = from;
    while counter < to {
        let group_end = (counter + GROUP).min(to);
        for c in counter..group_end {
            log.append(event(c + 1, namespaces))?;
        }
        log.sync(MonotonicMs(counter))?;
        counter = group_end;
    }
    Ok(started.elapsed())
}

fn drop_page_cache() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Loads the events of `namespace` as the consume path does: positions from the index, then
/// one read per position.
fn load_indexed(log: &mut FileLog, namespace: &str) -> BenchResult<Vec<Event>> {
    let positions = find_positions(log, namespace)?;
    let mut events = Vec::new();
    for position in positions {
        let mut first = true;
        log.read(position, &mut |_, event| {
            let take = first;
            first = false;
            if take {
                events.push(event.to_event());
            }
            take
        })?;
    }
    Ok(events)
}

/// The positions of `namespace`'s records from the index (the first half of `load_indexed`).
fn find_positions(log: &mut FileLog, namespace: &str) -> BenchResult<Vec<Offset>> {
    let key = NamespaceKey::Exact(namespace.into());
    let mut positions = Vec::new();
    let mut at = Offset(0);
    while at < log.durable_end() {
        at = log.find_namespace(&key, at, 1024, &mut positions)?;
    }
    Ok(positions)
}

fn load_scanned(log: &mut FileLog, namespace: &str) -> BenchResult<Vec<Event>> {
    let key = NamespaceKey::Exact(namespace.into());
    let mut events = Vec::new();
    log.read(Offset(0), &mut |_, event| {
        if key.matches(event.namespace) {
            events.push(event.to_event());
        }
        true
    })?;
    Ok(events)
}

fn timed<T>(f: impl FnOnce() -> BenchResult<T>) -> BenchResult<(T, Duration)> {
    let started = Instant::now();
    let value = f()?;
    Ok((value, started.elapsed()))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() -> BenchResult<()> {
    let mut dir_arg: Option<PathBuf> = None;
    let mut events: u64 = 10_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir_arg = args.next().map(PathBuf::from),
            "--events" => events = args.next().ok_or("--events needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let parent = dir_arg.unwrap_or_else(|| PathBuf::from("."));
    let scratch = tempfile::tempdir_in(&parent)?;
    let namespaces = (events / EVENTS_PER_NAMESPACE).max(1);

    // Append throughput, index on and off, with and without fdatasync.
    let compare = (events / 5).clamp(GROUP, 2_000_000);
    for (fsync, count) in [
        (FsyncPolicy::Never, compare),
        (FsyncPolicy::Always, compare / 4),
    ] {
        let (on, off) = compare_appends(scratch.path(), fsync, count, namespaces)?;
        println!(
            "append {count} events (groups of {GROUP}, {DATA_SIZE}-byte data, fsync {fsync}): \
             index on {on:.0} events/s, off {off:.0} events/s ({:+.1}%)",
            (on / off - 1.0) * 100.0
        );
    }

    let on_dir = scratch.path().join("on");
    let mut on = FileLog::open(&config(&on_dir))?.0;
    // The rest of the log, index on.
    let build = append(&mut on, 0, events, namespaces)?;
    println!(
        "built a log of {events} events in {:.1} s ({} segments)",
        build.as_secs_f64(),
        on.segment_paths().len()
    );
    drop(on);

    let namespace = format!("/accounts/{}", namespaces / 2);
    let dropped = drop_page_cache();
    let cold_open = Instant::now();
    let mut log = FileLog::open(&config(&on_dir))?.0;
    let open_time = cold_open.elapsed();
    let (indexed, cold) = timed(|| load_indexed(&mut log, &namespace))?;
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(timed(|| load_indexed(&mut log, &namespace))?.1);
    }
    warm.sort();
    // The same, positions only (the index's part; the rest is reading 20 records).
    drop(log);
    drop_page_cache();
    let mut log = FileLog::open(&config(&on_dir))?.0;
    let (_, find_cold) = timed(|| find_positions(&mut log, &namespace))?;
    let mut find_warm = Vec::new();
    for _ in 0..20 {
        find_warm.push(timed(|| find_positions(&mut log, &namespace))?.1);
    }
    find_warm.sort();
    println!(
        "positions only (find_namespace): cold {:.2} ms, warm median {:.3} ms",
        ms(find_cold),
        ms(find_warm[find_warm.len() / 2])
    );
    drop(log);
    drop_page_cache();
    let mut log = FileLog::open(&config(&on_dir))?.0;
    let (scanned, scan_cold) = timed(|| load_scanned(&mut log, &namespace))?;
    let (_, scan_warm) = timed(|| load_scanned(&mut log, &namespace))?;
    assert_eq!(indexed, scanned, "index and scan disagree");
    assert_eq!(indexed.len() as u64, EVENTS_PER_NAMESPACE);
    println!(
        "page cache dropped before each cold read: {}",
        if dropped { "yes" } else { "no (not root)" }
    );
    println!("open the log: {:.1} ms", ms(open_time));
    println!(
        "load {namespace} ({} events): index cold {:.2} ms, warm median {:.3} ms; \
         scan cold {:.0} ms, warm {:.0} ms; scan/index {:.0}x cold, {:.0}x warm",
        indexed.len(),
        ms(cold),
        ms(warm[warm.len() / 2]),
        ms(scan_cold),
        ms(scan_warm),
        scan_cold.as_secs_f64() / cold.as_secs_f64(),
        scan_warm.as_secs_f64() / warm[warm.len() / 2].as_secs_f64()
    );
    // The check of a conditional produce (ProduceIf) when the engine does not remember the
    // namespace: its newest event (in the open segment, or a few segments back), and a
    // namespace with no events (the worst case: every segment's index is asked).
    let absent = "/accounts/none";
    for (what, name) in [("present", namespace.as_str()), ("absent", absent)] {
        let (last, first_time) = timed(|| Ok(log.last_in_namespace(name, &mut u64::MAX.clone())?))?;
        let mut times = Vec::new();
        for _ in 0..20 {
            times.push(timed(|| Ok(log.last_in_namespace(name, &mut u64::MAX.clone())?))?.1);
        }
        times.sort();
        assert_eq!(last.is_some(), what == "present");
        println!(
            "newest event of a {what} namespace (last_in_namespace): first {:.3} ms, then median {:.3} ms",
            ms(first_time),
            ms(times[times.len() / 2])
        );
    }
    Ok(())
}
