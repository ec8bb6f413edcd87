//! Event sourcing against Redis (issue 14): loading one aggregate's stream and appending to it
//! with an expectation, flo against Redis Streams, in the same run, interleaved.
//!
//! `cargo run --release --example aggregate_bench -- --events 10000000 --repeats 5`
//!
//! Starts its own `flo` (`--flo-bin`, `--fsync always`) and `redis-server` (`appendonly yes`,
//! `appendfsync always`, no RDB snapshots) on free ports with fresh directories under `--dir`,
//! and loads both with the same events: `--events` events of 64 bytes spread round-robin over
//! `events / 20` aggregates `/accounts/{i}` (flo: one namespace each; Redis: one stream each),
//! so each aggregate's 20 events lie spread over the whole log (the index's worst case).
//! Then, `--repeats` times, interleaved (flo first on even repeats, Redis first on odd ones):
//! - *load, warm*: `--queries` random aggregates read whole: flo by a Subscribe to the
//!   namespace from the beginning (no tail) until End, through the namespace index; Redis by
//!   `XRANGE key - +`. Median per repeat.
//! - *load by scan*: one aggregate through flo with a glob that has no literal prefix
//!   (`/*ccounts/{i}`), so the server reads the whole log: the ratio of the index.
//! - *conditional append*: `--appends` sequential appends to one aggregate, each only if the
//!   aggregate's newest event is the one the writer saw: flo `ProduceIf` (LastIs); Redis a Lua
//!   script (`XREVRANGE .. COUNT 1`, compare, `XADD`, one round trip) and `WATCH` /
//!   `XREVRANGE` / `MULTI` `XADD` `EXEC` (three round trips). Median per append.
//! - *cold*: each server restarted; the time from the start of the process to the first
//!   aggregate loaded (flo reads its index headers, Redis replays its append-only file).
//!
//! Prints each repeat and the medians of the repeats, with the ratios and the load average.
//!
//! `--segment-size SIZE` is passed to `flo` (a smaller log whose aggregates still span many
//! segments). `--flo-old-bin PATH` also starts that binary on a copy of flo's loaded directory
//! and reads the same aggregates through it in the warm loads (the call order rotating over
//! flo, old flo and Redis by repeat); the median and p99 of all warm loads are printed too,
//! with each server's CPU time (`/proc/PID/stat`, 10 ms ticks) per load.
//!
//! `--drop-cache` drops the kernel's page cache of each server's data files before its cold
//! restart (`dd iflag=nocache count=0` per file, which evicts only those files), so the cold
//! figures read from the disk, and reads the files again afterwards, so the next repeat's warm
//! loads are warm; each cold line also gives the first load alone (after the connect).
//!
//! `--cold N` adds, after the repeats, N rounds of restarts of flo (and the old flo) alone,
//! each restarted twice a round, once with the page cache of its files warm and once dropped
//! (as `--drop-cache`; the order alternating by round), timing the process start to the first
//! aggregate loaded and that first load alone: medians, minimum and maximum.
//!
//! Each repeat first reads every file of flo's (and the old flo's) data directory once, so
//! its warm loads find them in the page cache. Every warm load also records how long the
//! client's thread and the server's threads waited
//! for a CPU meanwhile (run-queue delay, the second field of `/proc/.../schedstat`), so the
//! slowest loads can be told apart: the share of their time spent waiting to run.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flo::client::{Client, ClientOptions, Delivery, Expectation, NewEvent};
use flo::event::{EventId, StartPosition};
use flo_bench::redis::{encode_command, read_reply, Reply};

const PER_AGGREGATE: u64 = 20;
const DATA: [u8; 64] = [b'e'; 64];
const BATCH: u64 = 1000;

const LUA_APPEND_IF: &str = "local l = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
    local last = '' if #l > 0 then last = l[1][1] end \
    if last ~= ARGV[1] then return redis.error_reply('EXPECT ' .. last) end \
    return redis.call('XADD', KEYS[1], '*', 'd', ARGV[2])";

struct Args {
    events: u64,
    repeats: usize,
    queries: usize,
    appends: usize,
    dir: PathBuf,
    flo_bin: PathBuf,
    /// A run directory of an earlier run with the same `--events`, loaded already (if it has no
    /// `flo` directory yet, this run loads it and keeps it).
    reuse: Option<PathBuf>,
    segment_size: Option<String>,
    flo_old_bin: Option<PathBuf>,
    /// Before each cold restart, drop the kernel's page cache of the server's data files.
    drop_cache: bool,
    /// Rounds of flo-only cold restarts after the repeats (page cache warm and dropped).
    cold: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 1_000_000,
        repeats: 5,
        queries: 50,
        appends: 200,
        dir: std::env::temp_dir(),
        flo_bin: PathBuf::from("target/release/flo"),
        reuse: None,
        segment_size: None,
        flo_old_bin: None,
        drop_cache: false,
        cold: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--drop-cache" {
            args.drop_cache = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value.parse().expect("--events N"),
            "--repeats" => args.repeats = value.parse().expect("--repeats N"),
            "--queries" => args.queries = value.parse().expect("--queries N"),
            "--appends" => args.appends = value.parse().expect("--appends N"),
            "--dir" => args.dir = PathBuf::from(value),
            "--flo-bin" => args.flo_bin = PathBuf::from(value),
            "--reuse" => args.reuse = Some(PathBuf::from(value)),
            "--segment-size" => args.segment_size = Some(value),
            "--flo-old-bin" => args.flo_old_bin = Some(PathBuf::from(value)),
            "--cold" => args.cold = value.parse().expect("--cold N"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A server process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_flo(bin: &Path, port: u16, dir: &Path, segment_size: Option<&str>) -> Process {
    let mut command = Command::new(bin);
    if let Some(size) = segment_size {
        command.args(["--segment-size", size]);
    }
    let child = command
        .args(["-p", &port.to_string(), "-d"])
        .arg(dir)
        .args(["--fsync", "always"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.with_extension("stderr")).map_or(Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("start flo");
    Process(child)
}

fn start_redis(port: u16, dir: &Path) -> Process {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    Process(child)
}

fn flo_connect(port: u16) -> Client {
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match Client::connect(&addr, ClientOptions::default()) {
            Ok(client) => return client,
            Err(error) if Instant::now() > deadline => panic!("flo did not start: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// A pipelining RESP connection.
struct Redis {
    writer: BufWriter<TcpStream>,
    reader: BufReader<TcpStream>,
}

impl Redis {
    /// Connects, waiting (up to 10 minutes) until Redis answers PING (it refuses commands
    /// while it loads its append-only file).
    fn connect(port: u16) -> Redis {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(stream) = TcpStream::connect(addr) {
                stream.set_nodelay(true).unwrap();
                let mut redis = Redis {
                    writer: BufWriter::new(stream.try_clone().unwrap()),
                    reader: BufReader::with_capacity(1 << 20, stream),
                };
                if matches!(redis.command(&[b"PING"]), Reply::Simple(_)) {
                    return redis;
                }
            }
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        self.writer.write_all(&out).unwrap();
    }

    fn receive(&mut self) -> Reply {
        self.writer.flush().unwrap();
        read_reply(&mut self.reader).expect("a RESP reply")
    }

    fn command(&mut self, args: &[&[u8]]) -> Reply {
        self.send(args);
        self.receive()
    }
}

fn aggregate(i: u64) -> String {
    format!("/accounts/{i}")
}

fn load(flo: &mut Client, redis: &mut Redis, events: u64) {
    let aggregates = (events / PER_AGGREGATE).max(1);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH as usize);
    for n in 0..events {
        batch.push(NewEvent {
            namespace: aggregate(n % aggregates),
            parent_id: None,
            data: DATA.to_vec(),
        });
        if batch.len() as u64 == BATCH || n + 1 == events {
            flo.produce_batch(&batch).expect("flo batch");
            batch.clear();
        }
    }
    let flo_s = started.elapsed().as_secs_f64();
    // Loading is not measured against flo's: Redis writes its file without fsync meanwhile
    // (with `always` it took 630 s for 10M events here), and measures with `always`.
    redis.command(&[b"CONFIG", b"SET", b"appendfsync", b"no"]);
    let started = Instant::now();
    let mut in_flight = 0;
    for n in 0..events {
        let key = aggregate(n % aggregates);
        redis.send(&[b"XADD", key.as_bytes(), b"*", b"d", &DATA]);
        in_flight += 1;
        if in_flight == BATCH || n + 1 == events {
            for _ in 0..in_flight {
                assert!(
                    matches!(redis.receive(), Reply::Bulk(Some(_))),
                    "XADD failed"
                );
            }
            in_flight = 0;
        }
    }
    let redis_s = started.elapsed().as_secs_f64();
    redis.command(&[b"CONFIG", b"SET", b"appendfsync", b"always"]);
    println!(
        "loaded {events} events in {aggregates} aggregates: flo {flo_s:.1} s, redis {redis_s:.1} s"
    );
}

/// Reads one aggregate through flo; returns its event count and the newest id.
fn flo_load(flo: &mut Client, glob: &str) -> (u64, Option<EventId>) {
    let mut subscription = flo
        .consume()
        .glob(glob)
        .start(StartPosition::Beginning)
        .tail(false)
        .credit(1000)
        .subscribe()
        .expect("subscribe");
    let (mut count, mut last) = (0, None);
    while let Some(delivery) = subscription.next_delivery().expect("delivery") {
        match delivery {
            Delivery::Event(event) => {
                count += 1;
                last = Some(event.id);
            }
            Delivery::End(_) => break,
            Delivery::CaughtUp | Delivery::Skipped(_) => {}
        }
    }
    (count, last)
}

fn redis_load(redis: &mut Redis, key: &str) -> u64 {
    match redis.command(&[b"XRANGE", key.as_bytes(), b"-", b"+"]) {
        Reply::Array(Some(entries)) => entries.len() as u64,
        other => panic!("XRANGE: {other:?}"),
    }
}

/// Drops the page cache of every file in `dir` (GNU dd's `iflag=nocache count=0`:
/// `posix_fadvise(DONTNEED)` over the whole file; the files must have no dirty pages, true of
/// a stopped server's). Only these files: the other processes' cache stays.
fn drop_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let path = entry.expect("a directory entry").path();
        if !path.is_file() {
            continue;
        }
        let status = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .expect("dd");
        assert!(status.success(), "drop the cache of {}", path.display());
    }
}

/// Reads every file in `dir` once, so the next repeat's warm loads find them in the page
/// cache again after `drop_cache`.
fn warm_cache(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_file() {
            let mut file = std::fs::File::open(&path).expect("open a data file");
            std::io::copy(&mut file, &mut std::io::sink()).expect("read a data file");
        }
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed().as_secs_f64() * 1000.0, value)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A small seeded generator, so runs pick the same aggregates.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn bulk_text(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("expected a bulk string: {other:?}"),
    }
}

/// The newest entry id of a Redis stream ("" when empty).
fn redis_last(redis: &mut Redis, key: &str) -> String {
    match redis.command(&[b"XREVRANGE", key.as_bytes(), b"+", b"-", b"COUNT", b"1"]) {
        Reply::Array(Some(entries)) => match entries.first() {
            Some(Reply::Array(Some(entry))) => bulk_text(&entry[0]),
            _ => String::new(),
        },
        other => panic!("XREVRANGE: {other:?}"),
    }
}

/// Milliseconds per conditional append: flo ProduceIf, Redis Lua, Redis WATCH/MULTI.
fn conditional_appends(
    flo: &mut Client,
    redis: &mut Redis,
    key: &str,
    count: usize,
    flo_first: bool,
) -> (f64, f64, f64) {
    let (mut flo_ms, mut lua_ms, mut watch_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (_, mut flo_last) = flo_load(flo, key);
    let mut redis_seen = redis_last(redis, key);
    let event = NewEvent {
        namespace: key.to_string(),
        parent_id: None,
        data: DATA.to_vec(),
    };
    for round in 0..count {
        let mut run_flo = |flo_ms: &mut Vec<f64>| {
            let expect = flo_last.map_or(Expectation::NoEvents, Expectation::LastIs);
            let (ms, ack) = timed(|| flo.produce_if(expect, std::slice::from_ref(&event)));
            flo_last = Some(ack.expect("ProduceIf").first_id);
            flo_ms.push(ms);
        };
        if flo_first {
            run_flo(&mut flo_ms);
        }
        let (ms, reply) = timed(|| {
            redis.command(&[
                b"EVAL",
                LUA_APPEND_IF.as_bytes(),
                b"1",
                key.as_bytes(),
                redis_seen.as_bytes(),
                &DATA,
            ])
        });
        redis_seen = bulk_text(&reply);
        lua_ms.push(ms);
        let (ms, reply) = timed(|| {
            redis.command(&[b"WATCH", key.as_bytes()]);
            let last = redis_last(redis, key);
            assert_eq!(last, redis_seen, "round {round}: another writer");
            redis.send(&[b"MULTI"]);
            redis.send(&[b"XADD", key.as_bytes(), b"*", b"d", &DATA]);
            redis.send(&[b"EXEC"]);
            let _ = (redis.receive(), redis.receive());
            redis.receive()
        });
        match reply {
            Reply::Array(Some(results)) => redis_seen = bulk_text(&results[0]),
            other => panic!("EXEC: {other:?}"),
        }
        watch_ms.push(ms);
        if !flo_first {
            run_flo(&mut flo_ms);
        }
    }
    (
        median(&mut flo_ms),
        median(&mut lua_ms),
        median(&mut watch_ms),
    )
}

/// CPU time (user + system) the process `pid` has used, in milliseconds (0 if unknown).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at its closing `)`:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        // Clock ticks of 10 ms (USER_HZ 100 on Linux).
        (Some(user), Some(system)) => (user + system) * 10.0,
        _ => 0.0,
    }
}

fn load_average() -> String {
    let mut text = String::new();
    std::fs::File::open("/proc/loadavg")
        .and_then(|mut file| file.read_to_string(&mut text))
        .map(|_| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

/// The run-queue delay of a set of threads: how long they were runnable but waited for a
/// CPU (the second field of `/proc/.../schedstat`, nanoseconds, summed); and the bytes their
/// process had the disk read (`read_bytes` of `/proc/PID/io`: page cache misses).
struct Waits(Vec<PathBuf>, Option<PathBuf>);

impl Waits {
    /// Every thread of process `pid` now (the servers start no thread during the loads);
    /// none for pid 0.
    fn of_process(pid: u32) -> Waits {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let paths = tasks.into_iter().flatten().flatten();
        Waits(
            paths
                .filter(|_| pid != 0)
                .map(|task| task.path().join("schedstat"))
                .collect(),
            Some(PathBuf::from(format!("/proc/{pid}/io"))),
        )
    }

    fn of_this_thread() -> Waits {
        Waits(vec![PathBuf::from("/proc/thread-self/schedstat")], None)
    }

    /// The process's `read_bytes` (0 if unknown).
    fn disk_bytes(&self) -> u64 {
        let text = (self.1.as_ref()).and_then(|path| std::fs::read_to_string(path).ok());
        let line = text.as_deref().unwrap_or("").lines().find_map(|line| {
            line.strip_prefix("read_bytes: ")
                .and_then(|n| n.trim().parse().ok())
        });
        line.unwrap_or(0)
    }

    fn ns(&self) -> u64 {
        let wait = |path: &PathBuf| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.split_whitespace().nth(1)?.parse::<u64>().ok()
        };
        self.0.iter().filter_map(wait).sum()
    }
}

/// One warm load: its time and how long the client's and the server's threads waited for a
/// CPU meanwhile (milliseconds).
#[derive(Clone, Copy, Default)]
struct Load {
    ms: f64,
    client_wait_ms: f64,
    server_wait_ms: f64,
    /// Bytes the server read from the disk meanwhile.
    disk_bytes: u64,
}

fn waited<T>(me: &Waits, server: &Waits, f: impl FnOnce() -> T) -> (Load, T) {
    let (client_before, server_before) = (me.ns(), server.ns());
    let disk_before = server.disk_bytes();
    let (ms, value) = timed(f);
    let (client_after, server_after) = (me.ns(), server.ns());
    let wait_ms = |after: u64, before: u64| after.saturating_sub(before) as f64 / 1e6;
    let load = Load {
        ms,
        client_wait_ms: wait_ms(client_after, client_before),
        server_wait_ms: wait_ms(server_after, server_before),
        disk_bytes: server.disk_bytes().saturating_sub(disk_before),
    };
    (load, value)
}

/// The slowest 5% of `loads` (at least one): their mean time and how much of it the client
/// and the server waited for a CPU; and the p99 of all loads with those waits taken off.
fn describe_waits(loads: &mut [Load]) -> String {
    loads.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let n = loads.len();
    let slow = &loads[n - n.div_ceil(20)..];
    let mean = |f: fn(&Load) -> f64| slow.iter().map(f).sum::<f64>() / slow.len() as f64;
    let (ms, client, server) = (
        mean(|l| l.ms),
        mean(|l| l.client_wait_ms),
        mean(|l| l.server_wait_ms),
    );
    let mut without: Vec<f64> = loads
        .iter()
        .map(|l| (l.ms - l.client_wait_ms - l.server_wait_ms).max(0.0))
        .collect();
    without.sort_by(|a, b| a.total_cmp(b));
    let p99 = |values: &[f64]| values[(values.len() * 99).div_ceil(100) - 1];
    let all: Vec<f64> = loads.iter().map(|l| l.ms).collect();
    let from_disk = |loads: &[Load]| loads.iter().filter(|l| l.disk_bytes > 0).count();
    format!(
        "slowest {} of {n}: mean {ms:.3} ms, of it client waiting {client:.3} ms, server \
         waiting {server:.3} ms ({:.0}%), {} of them read the disk ({} of all loads did); p99 \
         {:.3} ms, p99 without the waits {:.3} ms",
        slow.len(),
        100.0 * (client + server) / ms,
        from_disk(slow),
        from_disk(loads),
        p99(&all),
        p99(&without),
    )
}

/// `--cold`: rounds of restarts of each flo server alone, page cache warm and dropped,
/// timing the process start to the first aggregate loaded and the first load alone.
fn cold_rounds(
    args: &Args,
    servers: &mut [(&str, PathBuf, PathBuf, Process)],
    aggregates: u64,
    rng: &mut Rng,
) {
    // (server index, dropped) -> (start to first load, first load) in ms.
    let mut results: std::collections::BTreeMap<(usize, bool), Vec<(f64, f64)>> =
        Default::default();
    let segment_size = args.segment_size.as_deref();
    for round in 0..args.cold {
        for turn in 0..servers.len() * 2 {
            let which = (turn / 2 + round) % servers.len();
            let dropped = (turn % 2 == 1) != (round % 2 == 1);
            let (_, bin, dir, server) = &mut servers[which];
            let key = aggregate(rng.below(aggregates));
            let stopped = std::mem::replace(server, start_flo_stopped());
            drop(stopped);
            if dropped {
                drop_cache(dir);
            }
            let port = free_port();
            let started = Instant::now();
            *server = start_flo(bin, port, dir, segment_size);
            let mut client = flo_connect(port);
            let (first_ms, (count, _)) = timed(|| flo_load(&mut client, &key));
            assert_eq!(count, PER_AGGREGATE);
            let total_ms = started.elapsed().as_secs_f64() * 1000.0;
            if dropped {
                warm_cache(dir);
            }
            results
                .entry((which, dropped))
                .or_default()
                .push((total_ms, first_ms));
        }
        println!("cold round {round} done, load {}", load_average());
    }
    println!(
        "\ncold restarts, {} rounds (ms: median [min-max]):",
        args.cold
    );
    for ((which, dropped), values) in &results {
        let spread = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = values.iter().map(f).collect();
            let med = median(&mut v);
            format!("{med:.2} [{:.2}-{:.2}]", v[0], v[v.len() - 1])
        };
        println!(
            "{} page cache {}: process start to first aggregate {}; first load alone {}",
            servers[*which].0,
            if *dropped { "dropped" } else { "warm" },
            spread(|v| v.0),
            spread(|v| v.1),
        );
    }
}

/// A placeholder for a server being restarted: a process that has already exited.
fn start_flo_stopped() -> Process {
    Process(
        Command::new("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("run true"),
    )
}

#[derive(Default)]
struct Repeat {
    flo_load_ms: f64,
    old_load_ms: f64,
    redis_load_ms: f64,
    scan_ms: f64,
    flo_append_ms: f64,
    lua_append_ms: f64,
    watch_append_ms: f64,
    flo_cold_ms: f64,
    redis_cold_ms: f64,
    /// Of the cold time: the first aggregate's load alone, on the connected server.
    flo_cold_first_ms: f64,
    redis_cold_first_ms: f64,
}

fn main() {
    let args = parse_args();
    let run = args.reuse.clone().unwrap_or_else(|| {
        args.dir
            .join(format!("aggregate_bench_{}", std::process::id()))
    });
    let (flo_dir, redis_dir) = (run.join("flo"), run.join("redis"));
    // `--reuse DIR` of a directory not loaded yet loads it and keeps it for the next runs.
    let loaded = args.reuse.is_some() && flo_dir.exists();
    std::fs::create_dir_all(&flo_dir).unwrap();
    std::fs::create_dir_all(&redis_dir).unwrap();
    let (flo_port, redis_port) = (free_port(), free_port());
    let segment_size = args.segment_size.as_deref();
    let mut flo_server = start_flo(&args.flo_bin, flo_port, &flo_dir, segment_size);
    let mut redis_server = start_redis(redis_port, &redis_dir);
    // Redis first: replaying a large append-only file can take longer than flo's idle time-out.
    let mut redis = Redis::connect(redis_port);
    let mut flo = flo_connect(flo_port);
    if !loaded {
        println!("load average before loading: {}", load_average());
        load(&mut flo, &mut redis, args.events);
        // The load of the other server may have taken longer than flo's idle time-out.
        flo = flo_connect(flo_port);
    }
    // The old binary reads a copy of the loaded directory (one server per directory), taken
    // while flo is stopped.
    let old_dir = run.join("flo_old");
    if args.flo_old_bin.is_some() && !old_dir.exists() {
        drop(flo);
        drop(flo_server);
        let status = Command::new("cp")
            .arg("-r")
            .arg(&flo_dir)
            .arg(&old_dir)
            .status()
            .expect("cp");
        assert!(status.success(), "copy {}", flo_dir.display());
        flo_server = start_flo(&args.flo_bin, flo_port, &flo_dir, segment_size);
        flo = flo_connect(flo_port);
    }
    let old_port = free_port();
    let mut old = args.flo_old_bin.as_ref().map(|bin| {
        let server = start_flo(bin, old_port, &old_dir, segment_size);
        (server, flo_connect(old_port))
    });
    let (mut all_flo_ms, mut all_old_ms, mut all_redis_ms) = (Vec::new(), Vec::new(), Vec::new());
    // Every warm load with the run-queue waits meanwhile: flo, old flo, Redis.
    let mut all_loads: [Vec<Load>; 3] = Default::default();
    // Server CPU time over the warm loads: flo, old flo, Redis.
    let mut cpu_total = [0.0f64; 3];
    let aggregates = (args.events / PER_AGGREGATE).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut repeats = Vec::new();
    for repeat in 0..args.repeats {
        let flo_first = repeat % 2 == 0;
        // A fresh connection each repeat: Redis's restart below may outlast flo's idle time-out.
        flo = flo_connect(flo_port);
        if let Some((_, client)) = old.as_mut() {
            *client = flo_connect(old_port);
        }
        let mut result = Repeat::default();
        // Warm loads read warm files: the other processes of a shared machine (builds) push
        // the data files out of the page cache between repeats (a run where they did not:
        // 100 of flo's 500 loads and 499 of the old flo's read the disk).
        warm_cache(&flo_dir);
        if old.is_some() {
            warm_cache(&old_dir);
        }
        let (mut flo_ms, mut old_ms, mut redis_ms) = (Vec::new(), Vec::new(), Vec::new());
        let pids = [
            flo_server.0.id(),
            old.as_ref().map_or(0, |(server, _)| server.0.id()),
            redis_server.0.id(),
        ];
        let cpu_before = pids.map(cpu_ms);
        let server_waits = pids.map(Waits::of_process);
        let me = Waits::of_this_thread();
        for _ in 0..args.queries {
            let key = aggregate(rng.below(aggregates));
            // Call order: with an old binary it rotates over flo, old, Redis by repeat; else
            // flo first in even repeats.
            let turns = if old.is_some() { 3 } else { 2 };
            for turn in 0..turns {
                match (turn + repeat) % turns {
                    0 => {
                        let (load, (count, _)) =
                            waited(&me, &server_waits[0], || flo_load(&mut flo, &key));
                        assert_eq!(count, PER_AGGREGATE, "{key} through flo");
                        flo_ms.push(load.ms);
                        all_loads[0].push(load);
                    }
                    1 => {
                        let (load, count) =
                            waited(&me, &server_waits[2], || redis_load(&mut redis, &key));
                        assert_eq!(count, PER_AGGREGATE, "{key} through redis");
                        redis_ms.push(load.ms);
                        all_loads[2].push(load);
                    }
                    _ => {
                        let (_, client) = old.as_mut().expect("an old binary");
                        let (load, (count, _)) =
                            waited(&me, &server_waits[1], || flo_load(client, &key));
                        assert_eq!(count, PER_AGGREGATE, "{key} through the old flo");
                        old_ms.push(load.ms);
                        all_loads[1].push(load);
                    }
                }
            }
        }
        let cpu_after = pids.map(cpu_ms);
        for (total, (after, before)) in cpu_total.iter_mut().zip(cpu_after.iter().zip(cpu_before)) {
            *total += after - before;
        }
        all_flo_ms.extend_from_slice(&flo_ms);
        all_old_ms.extend_from_slice(&old_ms);
        all_redis_ms.extend_from_slice(&redis_ms);
        result.old_load_ms = median(&mut old_ms);
        result.flo_load_ms = median(&mut flo_ms);
        result.redis_load_ms = median(&mut redis_ms);
        // The vectors are sorted now.
        let p99s = [&flo_ms, &old_ms, &redis_ms].map(|values| match values.len() {
            0 => f64::NAN,
            n => values[(n * 99).div_ceil(100) - 1],
        });
        let i = rng.below(aggregates);
        let (ms, (count, _)) = timed(|| flo_load(&mut flo, &format!("/*ccounts/{i}")));
        assert_eq!(count, PER_AGGREGATE, "scan of /accounts/{i}");
        result.scan_ms = ms;
        // Appends go to an aggregate of their own, so the loads keep reading 20 events.
        let key = format!("/orders/{repeat}");
        (
            result.flo_append_ms,
            result.lua_append_ms,
            result.watch_append_ms,
        ) = conditional_appends(&mut flo, &mut redis, &key, args.appends, flo_first);
        // Cold: restart both, time from the start of the process to the first aggregate read.
        drop(flo);
        drop(flo_server);
        let key = aggregate(rng.below(aggregates));
        if args.drop_cache {
            drop_cache(&flo_dir);
        }
        let started = Instant::now();
        flo_server = start_flo(&args.flo_bin, flo_port, &flo_dir, segment_size);
        flo = flo_connect(flo_port);
        let (first_ms, (count, _)) = timed(|| flo_load(&mut flo, &key));
        assert_eq!(count, PER_AGGREGATE);
        result.flo_cold_ms = started.elapsed().as_secs_f64() * 1000.0;
        result.flo_cold_first_ms = first_ms;
        drop(redis);
        drop(redis_server);
        if args.drop_cache {
            drop_cache(&redis_dir);
        }
        let started = Instant::now();
        redis_server = start_redis(redis_port, &redis_dir);
        redis = Redis::connect(redis_port);
        let (first_ms, count) = timed(|| redis_load(&mut redis, &key));
        assert_eq!(count, PER_AGGREGATE);
        result.redis_cold_ms = started.elapsed().as_secs_f64() * 1000.0;
        result.redis_cold_first_ms = first_ms;
        if args.drop_cache {
            // The next repeat's warm loads must not read what the cold restart dropped.
            warm_cache(&flo_dir);
            warm_cache(&redis_dir);
        }
        println!(
            "repeat {repeat} ({} first), load {}: load warm flo {:.3} ms old flo {:.3} ms redis {:.3} ms \
             (p99 {:.3} / {:.3} / {:.3} ms); scan {:.0} ms; \
             conditional append flo {:.3} ms, redis lua {:.3} ms, redis watch {:.3} ms; \
             cold flo {:.0} ms (first load {:.2} ms), redis {:.0} ms (first load {:.2} ms)",
            if flo_first { "flo" } else { "redis" },
            load_average(),
            result.flo_load_ms,
            result.old_load_ms,
            result.redis_load_ms,
            p99s[0],
            p99s[1],
            p99s[2],
            result.scan_ms,
            result.flo_append_ms,
            result.lua_append_ms,
            result.watch_append_ms,
            result.flo_cold_ms,
            result.flo_cold_first_ms,
            result.redis_cold_ms,
            result.redis_cold_first_ms,
        );
        repeats.push(result);
    }
    let column = |f: fn(&Repeat) -> f64| median(&mut repeats.iter().map(f).collect::<Vec<_>>());
    let flo_load_ms = column(|r| r.flo_load_ms);
    let redis_load_ms = column(|r| r.redis_load_ms);
    let scan_ms = column(|r| r.scan_ms);
    let flo_append_ms = column(|r| r.flo_append_ms);
    let lua_append_ms = column(|r| r.lua_append_ms);
    let watch_append_ms = column(|r| r.watch_append_ms);
    let flo_cold_ms = column(|r| r.flo_cold_ms);
    let redis_cold_ms = column(|r| r.redis_cold_ms);
    println!(
        "\nmedians of {} repeats ({} events, load average now {}):",
        repeats.len(),
        args.events,
        load_average()
    );
    println!("| measurement | flo | redis | flo / redis |");
    println!("|---|---|---|---|");
    println!(
        "| load one aggregate of 20 events, warm | {flo_load_ms:.3} ms | {redis_load_ms:.3} ms (XRANGE) | {:.2} |",
        flo_load_ms / redis_load_ms
    );
    println!(
        "| the same through a scan of the log | {scan_ms:.0} ms | | index {:.0}x faster than the scan |",
        scan_ms / flo_load_ms
    );
    println!(
        "| conditional append (ProduceIf / Lua) | {flo_append_ms:.3} ms | {lua_append_ms:.3} ms | {:.2} |",
        flo_append_ms / lua_append_ms
    );
    println!(
        "| conditional append (ProduceIf / WATCH MULTI) | {flo_append_ms:.3} ms | {watch_append_ms:.3} ms | {:.2} |",
        flo_append_ms / watch_append_ms
    );
    println!(
        "| restart to first aggregate loaded | {flo_cold_ms:.0} ms | {redis_cold_ms:.0} ms | {:.2} |",
        flo_cold_ms / redis_cold_ms
    );
    let flo_first_ms = column(|r| r.flo_cold_first_ms);
    let redis_first_ms = column(|r| r.redis_cold_first_ms);
    println!(
        "| of it, the first load alone | {flo_first_ms:.2} ms | {redis_first_ms:.2} ms | {:.2} |",
        flo_first_ms / redis_first_ms
    );
    println!(
        "\nall warm loads (ms): median / p99 / max of {} each",
        all_flo_ms.len()
    );
    for ((name, values), cpu) in [
        ("flo", &mut all_flo_ms),
        ("old flo", &mut all_old_ms),
        ("redis", &mut all_redis_ms),
    ]
    .into_iter()
    .zip(cpu_total)
    {
        if values.is_empty() {
            continue;
        }
        let med = median(values);
        let p99 = values[(values.len() * 99).div_ceil(100) - 1];
        let max = values[values.len() - 1];
        let cpu_each = cpu / values.len() as f64;
        println!(
            "{name}: {med:.3} / {p99:.3} / {max:.3}; server CPU {cpu_each:.3} ms a load \
             ({cpu:.0} ms in all)"
        );
    }
    println!(
        "\nwhere the slowest warm loads' time went (run-queue waits: time a thread was \
         runnable but not running, /proc/.../schedstat):"
    );
    for (name, loads) in ["flo", "old flo", "redis"].into_iter().zip(&mut all_loads) {
        if !loads.is_empty() {
            println!("{name}: {}", describe_waits(loads));
        }
    }
    if args.cold > 0 {
        drop(flo);
        let mut servers = vec![("flo", args.flo_bin.clone(), flo_dir.clone(), flo_server)];
        if let (Some(bin), Some((server, client))) = (&args.flo_old_bin, old.take()) {
            drop(client);
            servers.push(("old flo", bin.clone(), old_dir.clone(), server));
        }
        cold_rounds(&args, &mut servers, aggregates, &mut rng);
        drop(redis);
        drop(redis_server);
        if args.reuse.is_none() {
            let _ = std::fs::remove_dir_all(&run);
        }
        return;
    }
    drop(old);
    drop(flo);
    drop(flo_server);
    drop(redis);
    drop(redis_server);
    if args.reuse.is_none() {
        let _ = std::fs::remove_dir_all(&run);
    }
}
