//! Drives flo's peers (Redis Streams, NATS JetStream) with the load generator of `flo_bench`,
//! so that `ci/bench.sh` can put their figures beside flo's, measured by the same code.
//!
//! ```text
//! cargo run --release -p flo-bench --bin peer_bench -- redis --addr 127.0.0.1:6399 \
//!     --connections 4 --window 64 --size 100 --count 200000 [--json]
//! cargo run --release -p flo-bench --bin peer_bench -- nats --addr 127.0.0.1:4299 ...
//! cargo run --release -p flo-bench --bin peer_bench -- redis-read --addr 127.0.0.1:6399 --size 100 \
//!     --count 200000
//! ```
//! `redis-group` stores `--count` events the same way, then reads them back through a consumer
//! group (XREADGROUP COUNT 1000, then XACK of the batch) on one connection.
//! `redis-members` and `nats-members` run a consumer group shared by `--members` members
//! (flo_bench::group): Redis Streams XREADGROUP + XACK, a JetStream durable push consumer with
//! explicit acks and a queue group; live (producers at `--rate`, delivered and acked latency)
//! or, with `--drain`, a stored backlog of `--count` events worked off (acked deliveries/s).
//! `redis-read` first stores `--count` events, then measures reading them back from the
//! beginning on one connection. `redis-e2e` adds a consumer following the stream with
//! `XREAD BLOCK` and reports end-to-end latency (produce to consumer), best at a fixed `--rate`. Each run uses a fresh stream and deletes it afterwards.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use flo_bench::nats::{JetStream, JetStreamGroup};
use flo_bench::redis::{RedisGroup, RedisGroupRead, RedisStreams};
use flo_bench::{
    run_end_to_end, run_group, run_group_drain, run_produce, run_read, BenchResult, BenchSpec,
    GroupTarget, Stop, Target,
};

#[derive(Parser)]
#[command(about = "Benchmark flo's peers with flo's load generator")]
struct Cli {
    #[command(subcommand)]
    peer: Peer,
}

#[derive(Subcommand)]
enum Peer {
    /// Produce to a Redis stream with XADD.
    Redis(Load),
    /// Store --count events in a Redis stream, then read them back with XREAD from the start.
    RedisRead(Load),
    /// Store --count events in a Redis stream, then read them back through a consumer group:
    /// XREADGROUP COUNT 1000 and one XACK of each batch, until the end.
    RedisGroup(Load),
    /// Publish to a JetStream stream with file storage and count the PubAcks.
    Nats(Load),
    /// Produce with XADD while a consumer follows the stream with XREAD BLOCK; reports
    /// end-to-end latency too (use --rate).
    RedisE2e(Load),
    /// A consumer group shared by --members consumers: XREADGROUP COUNT --in-flight BLOCK
    /// 100, then a pipelined XACK of each batch. Live (use --rate) or --drain.
    RedisMembers(Load),
    /// A durable JetStream push consumer with explicit acks shared by --members subscribers
    /// of one queue group, max_ack_pending --in-flight x --members. Live (use --rate) or
    /// --drain.
    NatsMembers(Load),
}

#[derive(Args)]
struct Load {
    /// Server address, on loopback.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Produces in flight per connection.
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Events in total (default 100000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Seconds to produce for.
    #[arg(long)]
    duration: Option<f64>,
    /// Events per second over all connections (default: as fast as acknowledged).
    #[arg(long)]
    rate: Option<u64>,
    /// Name in the report (default: the subcommand).
    #[arg(long)]
    label: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// `nats` only: the stream's replicas (a JetStream cluster for more than 1).
    #[arg(long, default_value_t = 1)]
    replicas: u8,
    /// Group runs: members sharing the group, one connection and thread each.
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Group runs: events a member may hold unacknowledged.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Group runs: store --count events first, then measure the members working them off.
    #[arg(long)]
    drain: bool,
}

impl Load {
    fn spec(&self) -> Result<BenchSpec, String> {
        let stop = match (self.count, self.duration) {
            (_, Some(seconds)) => match Duration::try_from_secs_f64(seconds) {
                Ok(duration) if !duration.is_zero() => Stop::Duration(duration),
                _ => return Err(format!("invalid --duration {seconds}")),
            },
            (Some(count), None) => Stop::Count(count),
            (None, None) => Stop::Count(100_000),
        };
        let spec = BenchSpec {
            connections: self.connections,
            window: self.window,
            event_size: self.size,
            stop,
            rate: self.rate,
        };
        spec.validate()?;
        Ok(spec)
    }

    fn label(&self, default: &str) -> String {
        self.label.clone().unwrap_or_else(|| default.to_string())
    }
}

/// A stream name no earlier run used, so repeats never see each other's events.
fn fresh_stream_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    format!("BENCH_{}_{nanos}", std::process::id())
}

/// Turns an I/O error into a message naming the step that failed.
fn error(context: &'static str) -> impl Fn(io::Error) -> String {
    move |error| format!("{context}: {error}")
}

/// The run's own error comes first: a failed clean-up after a failed run is only its echo.
fn finish(
    result: Result<BenchResult, String>,
    cleanup: Result<(), String>,
) -> Result<BenchResult, String> {
    let result = result?;
    cleanup?;
    Ok(result)
}

/// A live or drain group run, as `load` says.
fn group_run(
    load: &Load,
    spec: &BenchSpec,
    producer: &dyn Target,
    group: &dyn GroupTarget,
) -> std::io::Result<BenchResult> {
    if load.drain {
        run_group_drain(producer, group, spec, load.members)
    } else {
        run_group(producer, group, spec, load.members)
    }
}

fn run(peer: &Peer) -> Result<BenchResult, String> {
    match peer {
        Peer::Redis(load) => {
            let spec = load.spec()?;
            let target = RedisStreams {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("redis"),
            };
            let result = run_produce(&target, &spec).map_err(error("redis produce"));
            finish(result, target.delete_stream().map_err(error("redis DEL")))
        }
        Peer::RedisRead(load) => {
            let spec = load.spec()?;
            let target = RedisStreams {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("redis"),
            };
            let stored = run_produce(&target, &spec).map_err(error("redis preload"));
            let result =
                stored.and_then(|_| run_read(&target, load.size).map_err(error("redis XREAD")));
            finish(result, target.delete_stream().map_err(error("redis DEL")))
        }
        Peer::RedisGroup(load) => {
            let spec = load.spec()?;
            let target = RedisStreams {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("redis"),
            };
            let stored = run_produce(&target, &spec).map_err(error("redis preload"));
            let result = stored.and_then(|_| {
                run_read(&RedisGroupRead(&target), load.size).map_err(error("redis XREADGROUP"))
            });
            finish(result, target.delete_stream().map_err(error("redis DEL")))
        }
        Peer::RedisE2e(load) => {
            let spec = load.spec()?;
            let target = RedisStreams {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("redis"),
            };
            let result = run_end_to_end(&target, &target, &spec).map_err(error("redis end-to-end"));
            finish(result, target.delete_stream().map_err(error("redis DEL")))
        }
        Peer::RedisMembers(load) => {
            let spec = load.spec()?;
            let target = RedisStreams {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("redis"),
            };
            let result = RedisGroup::create(&target, load.in_flight)
                .and_then(|group| group_run(load, &spec, &target, &group))
                .map_err(error("redis group"));
            finish(result, target.delete_stream().map_err(error("redis DEL")))
        }
        Peer::NatsMembers(load) => {
            let spec = load.spec()?;
            let target = JetStream {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("nats"),
                replicas: load.replicas,
            };
            target
                .create_stream()
                .map_err(error("JetStream stream create"))?;
            let max_ack_pending = load.in_flight.saturating_mul(load.members);
            let result = JetStreamGroup::create(&target, max_ack_pending)
                .and_then(|group| group_run(load, &spec, &target, &group))
                .map_err(error("nats group"));
            let cleanup = target.delete_stream();
            finish(result, cleanup.map_err(error("JetStream stream delete")))
        }
        Peer::Nats(load) => {
            let spec = load.spec()?;
            let target = JetStream {
                addr: load.addr,
                stream: fresh_stream_name(),
                label: load.label("nats"),
                replicas: load.replicas,
            };
            target
                .create_stream()
                .map_err(error("JetStream stream create"))?;
            let result = run_produce(&target, &spec).map_err(error("nats produce"));
            let cleanup = target.delete_stream();
            finish(result, cleanup.map_err(error("JetStream stream delete")))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.peer {
        Peer::Redis(load)
        | Peer::RedisRead(load)
        | Peer::RedisGroup(load)
        | Peer::RedisE2e(load)
        | Peer::RedisMembers(load)
        | Peer::NatsMembers(load)
        | Peer::Nats(load) => load.json,
    };
    match run(&cli.peer) {
        Ok(result) if json => {
            println!("{}", result.to_json());
            ExitCode::SUCCESS
        }
        Ok(result) => {
            print!("{}", result.to_text());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("peer_bench: {message}");
            ExitCode::FAILURE
        }
    }
}
