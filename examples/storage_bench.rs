//! Storage benchmark (not a test): durable append throughput against the disk's own limit,
//! sequential read throughput (from disk after a fresh open, and from the cache), and start-up
//! time with many events in the log.
//!
//! Run: `cargo run --release --example storage_bench -- [--dir D] [--events N] [--seconds S]`
//! (defaults: a temporary directory in the current directory, 10 million events, 1.5 s per
//! append measurement). The "disk limit" is plain `std` writes of the same bytes per group,
//! each followed by `sync_data`, to a file in the same directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

use flo::config::{FsyncPolicy, StorageConfig};
use flo::event::{Event, EventId};
use flo::storage::record::encoded_size;
use flo::storage::{FileLog, Log, Offset};
use flo::time::MonotonicMs;

struct Options {
    dir: Option<PathBuf>,
    events: u64,
    seconds: f64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        dir: None,
        events: 10_000_000,
        seconds: 1.5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--events" => {
                options.events = value()?.parse().map_err(|e| format!("--events: {e}"))?
            }
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn event(counter: u64, data_size: usize) -> Event {
    Event {
        id: EventId::new(counter, 1),
        parent_id: None,
        namespace: "/bench".into(),
        timestamp_ms: counter,
        data: vec![(counter % 251) as u8; data_size],
    }
}

fn storage_config(dir: &Path, fsync: FsyncPolicy) -> StorageConfig {
    let mut config = StorageConfig::new(dir.to_path_buf());
    config.fsync = fsync;
    config
}

/// Alternates one flo group (appends + one sync) with one raw group (plain `std` write of the
/// same bytes + `sync_data`) for about `seconds`, so both see the same disk conditions (fsync
/// latency on a shared virtual disk varies from second to second). Returns flo's events/s,
/// flo's MB/s and the raw MB/s.
fn measure_append(
    dir: &Path,
    data_size: usize,
    group: u64,
    seconds: f64,
) -> BenchResult<(f64, f64, f64)> {
    let (mut log, _) = FileLog::open(&storage_config(dir, FsyncPolicy::Always))?;
    let mut raw = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join("raw.bin"))?;
    let group_bytes = encoded_size(&event(1, data_size)) * group as usize;
    let raw_bytes = vec![7u8; group_bytes];
    let (mut flo_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    let (mut groups, mut counter) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let flo_started = Instant::now();
        for _ in 0..group {
            counter += 1;
            log.append(event(counter, data_size))?;
        }
        log.sync(MonotonicMs(counter))?;
        flo_time += flo_started.elapsed();
        let raw_started = Instant::now();
        raw.write_all(&raw_bytes)?;
        raw.sync_data()?;
        raw_time += raw_started.elapsed();
        groups += 1;
    }
    let megabytes = (group_bytes as u64 * groups) as f64 / 1e6;
    Ok((
        counter as f64 / flo_time.as_secs_f64(),
        megabytes / flo_time.as_secs_f64(),
        megabytes / raw_time.as_secs_f64(),
    ))
}

fn bench_appends(root: &Path, seconds: f64) -> BenchResult<()> {
    println!("durable append (fsync always), one sync per group, alternating with raw groups:");
    println!(
        "  {:>6} {:>6} {:>12} {:>10} {:>10} {:>10}",
        "data", "group", "events/s", "flo MB/s", "raw MB/s", "flo/raw"
    );
    for data_size in [100usize, 1024] {
        for group in [1u64, 16, 256] {
            let dir = root.join(format!("append-{data_size}-{group}"));
            let (events, flo_rate, raw_rate) = measure_append(&dir, data_size, group, seconds)?;
            println!(
                "  {:>5}B {:>6} {:>12.0} {:>10.2} {:>10.2} {:>9.0}%",
                data_size,
                group,
                events,
                flo_rate,
                raw_rate,
                100.0 * flo_rate / raw_rate
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

/// Fills a log up to `events` records of 100 bytes of data (fsync never, large groups).
fn fill(dir: &Path, from: u64, events: u64) -> BenchResult<()> {
    let (mut log, _) = FileLog::open(&storage_config(dir, FsyncPolicy::Never))?;
    assert_eq!(log.end(), Offset(from), "fill continues the log");
    for counter in from + 1..=events {
        log.append(event(counter, 100))?;
        if counter % 8192 == 0 {
            log.sync(MonotonicMs(counter))?;
        }
    }
    log.sync(MonotonicMs(events))?;
    Ok(())
}

fn time_open(dir: &Path) -> BenchResult<String> {
    let started = Instant::now();
    let (_log, report) = FileLog::open(&storage_config(dir, FsyncPolicy::Always))?;
    Ok(format!(
        "{} events in {:.1} ms ({} index files read, {} records of the newest segment scanned)",
        report.event_count,
        started.elapsed().as_secs_f64() * 1e3,
        report.index_files_read,
        report.records_scanned
    ))
}

fn read_rate(log: &mut FileLog, from: Offset) -> BenchResult<(u64, f64)> {
    let mut count = 0u64;
    let mut bytes = 0u64;
    let started = Instant::now();
    log.read(from, &mut |_, e| {
        count += 1;
        bytes += e.data.len() as u64;
        true
    })?;
    Ok((count, bytes as f64 / 1e6 / started.elapsed().as_secs_f64()))
}

fn bench_reads_and_start_up(root: &Path, events: u64) -> BenchResult<()> {
    let dir = root.join("large");
    let tenth = (events / 10).max(1);
    let started = Instant::now();
    fill(&dir, 0, tenth)?;
    let small = time_open(&dir)?;
    fill(&dir, tenth, events)?;
    println!(
        "\nfilled {events} events of 100 B in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("start-up: {small}");
    println!("start-up: {}", time_open(&dir)?);
    let (mut log, _) = FileLog::open(&storage_config(&dir, FsyncPolicy::Always))?;
    let started = Instant::now();
    let (count, rate) = read_rate(&mut log, Offset(0))?;
    println!(
        "sequential read from disk after a fresh open: {count} events, {:.0} events/s, {rate:.0} MB/s of data \
         (the page cache is probably warm: dropping it needs root)",
        count as f64 / started.elapsed().as_secs_f64()
    );
    let cached_from = log.end();
    for counter in 0..200_000 {
        log.append(event(events + 1 + counter, 100))?;
        if counter % 4096 == 4095 {
            log.sync(MonotonicMs(0))?;
        }
    }
    log.sync(MonotonicMs(0))?;
    let cached = log.cached_range();
    let started = Instant::now();
    let (count, rate) = read_rate(&mut log, cached.start.max(cached_from))?;
    println!(
        "sequential read from the cache: {count} events, {:.0} events/s, {rate:.0} MB/s of data",
        count as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("storage_bench: {error}");
            std::process::exit(2);
        }
    };
    let temp = match &options.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    };
    let temp = temp.unwrap_or_else(|error| {
        eprintln!("storage_bench: cannot create a directory: {error}");
        std::process::exit(1);
    });
    println!("storage bench in {}", temp.path().display());
    let result = bench_appends(temp.path(), options.seconds)
        .and_then(|()| bench_reads_and_start_up(temp.path(), options.events));
    if let Err(error) = result {
        eprintln!("storage_bench: {error}");
        std::process::exit(1);
    }
}
