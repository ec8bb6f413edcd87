//! How long one loop turn stalls while the group journal is compacted (attack round 5 F2;
//! BENCHMARKS.md, "Group journal compaction").
//!
//! The engine (sans-IO, an in-memory log) runs on a real group journal file with fdatasync
//! `always` in a temporary directory. Four groups park 100,000 events each (the journal holds
//! 400,000 Park records, about 12 MB); then a bystander sends a Ping every turn while filler
//! group creations and deletions grow the journal past `groups.journal_compact_bytes`, so that
//! a compaction starts and finishes. Every turn (`handle_input` + `handle_turn_end`, which is
//! what the reactor runs between two reads of a socket) is timed: the longest is the stall a
//! bystander sees. The journal's size before and after shows that the compaction ran.
//!
//! `cargo run --release --example group_compaction_stall [-- TURNS [always|interval]]`
//!
//! Under `always` (the default policy) every filler turn waits for the journal's fdatasync
//! (a Create is answered only once it is on disk), which hides the compaction in the noise
//! of a loaded disk; `interval` (100 ms) leaves the compaction's own cost.

use std::path::Path;
use std::time::{Duration, Instant};

use flo::config::WireLimits;
use flo::config::{Config, FsyncPolicy};
use flo::engine::{Action, ConnId, Engine, EngineConfig, Now};
use flo::event::{ActorId, EventId, StartPosition};
use flo::protocol::{
    decode, encode, ClientFrame, GroupAck, GroupAdmin, GroupAdminAction, GroupSettings, Hello,
    JoinGroup, NewEvent, ProduceBatch, ServerFrame, PROTOCOL_VERSION,
};
use flo::storage::groups::FileGroupStore;
use flo::storage::{MemoryLog, RecoveryMode};
use flo::time::{MonotonicMs, WallClockMs};

const GROUPS: u32 = 4;
const PARKED_PER_GROUP: u32 = 100_000;

struct Bench {
    engine: Engine<MemoryLog>,
    now_ms: u64,
    next_slot: u32,
}

impl Bench {
    fn now(&self) -> Now {
        Now {
            wall: WallClockMs(1_700_000_000_000 + self.now_ms),
            monotonic: MonotonicMs(self.now_ms),
        }
    }

    fn connect(&mut self) -> ConnId {
        let conn = ConnId {
            slot: self.next_slot,
            generation: 1,
        };
        self.next_slot += 1;
        self.engine.handle_connect(self.now(), conn);
        self.send(
            conn,
            &ClientFrame::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client_name: "bench".into(),
                auth_token: Vec::new(),
            }),
        );
        conn
    }

    fn send(&mut self, conn: ConnId, frame: &ClientFrame) {
        let mut bytes = Vec::new();
        encode(frame, &mut bytes);
        self.engine.handle_input(self.now(), conn, &bytes);
    }

    /// One turn; returns how long it took.
    fn turn(&mut self) -> Duration {
        self.now_ms += 1;
        let started = Instant::now();
        self.engine.handle_turn_end(self.now());
        let took = started.elapsed();
        while let Some(action) = self.engine.poll_action() {
            if let Action::Close { conn, .. } = action {
                panic!("connection {conn:?} closed");
            }
        }
        took
    }

    fn received(&mut self, conn: ConnId) -> Vec<ServerFrame> {
        let bytes = self.engine.output(conn).to_vec();
        self.engine.handle_sent(conn, bytes.len());
        let mut frames = Vec::new();
        let mut at = &bytes[..];
        while !at.is_empty() {
            let (frame, length) = decode(at, &WireLimits::default())
                .expect("valid frames")
                .expect("whole frames");
            frames.push(frame);
            at = &at[length..];
        }
        frames
    }
}

fn journal_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("groups.journal")).map_or(0, |m| m.len())
}

fn main() {
    let level = match std::env::var("FLO_BENCH_LOG") {
        Ok(_) => simplelog::LevelFilter::Info,
        Err(_) => simplelog::LevelFilter::Warn,
    };
    let _ = simplelog::SimpleLogger::init(level, simplelog::Config::default());
    let turns: usize = std::env::args()
        .nth(1)
        .map_or(3000, |t| t.parse().expect("TURNS"));
    let fsync = match std::env::args().nth(2).as_deref() {
        None | Some("always") => FsyncPolicy::Always,
        Some("interval") => FsyncPolicy::IntervalMs(100),
        Some(other) => panic!("fsync policy {other:?}: always or interval"),
    };
    let dir = std::env::temp_dir().join(format!("flo-compaction-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.clone());
    config.actor_id = ActorId(7);
    config.groups.journal_compact_bytes = 14 << 20;
    let engine = Engine::new(EngineConfig::from_config(&config), MemoryLog::new());
    let mut bench = Bench {
        engine,
        now_ms: 0,
        next_slot: 0,
    };
    let store = FileGroupStore::open_with(&dir, fsync, RecoveryMode::Refuse).expect("journal");
    bench.engine.load_groups(Box::new(store)).expect("load");
    let producer = bench.connect();
    for op_id in 0..u64::from(PARKED_PER_GROUP / 500) {
        let events = (0..500)
            .map(|n| NewEvent {
                namespace: format!("/jobs/{n}"),
                parent_id: None,
                data: vec![b'x'; 100],
            })
            .collect();
        bench.send(
            producer,
            &ClientFrame::ProduceBatch(ProduceBatch { op_id, events }),
        );
        bench.turn();
    }
    bench.received(producer);
    for group in 0..GROUPS {
        let member = bench.connect();
        bench.send(
            member,
            &ClientFrame::JoinGroup(JoinGroup {
                subscription_id: 1,
                group: format!("parked-{group}"),
                glob: "/jobs/**".into(),
                start: StartPosition::Beginning,
                credit: PARKED_PER_GROUP,
                ack_timeout_ms: 3_600_000,
                max_deliveries: 1,
                max_in_flight: PARKED_PER_GROUP,
            }),
        );
        let mut refused = 0;
        while refused < PARKED_PER_GROUP {
            bench.turn();
            let ids: Vec<EventId> = (bench.received(member).into_iter())
                .filter_map(|frame| match frame {
                    ServerFrame::Event { event, .. } => Some(event.id),
                    _ => None,
                })
                .collect();
            for chunk in ids.chunks(10_000) {
                refused += chunk.len() as u32;
                let nack = GroupAck {
                    subscription_id: 1,
                    delay_ms: 0,
                    ids: chunk.to_vec(),
                };
                bench.send(member, &ClientFrame::GroupNack(nack));
            }
        }
        bench.turn();
        bench.received(member);
    }
    let before = journal_bytes(&dir);
    // The bystander pings every turn; filler creations and deletions grow the journal (about
    // 2 KB a pair with the longest glob) until it passes the compaction threshold.
    let bystander = bench.connect();
    let filler = bench.connect();
    let mut times = Vec::with_capacity(turns);
    let threshold = config.groups.journal_compact_bytes;
    // The turns from the one that found the journal past the threshold to the one after
    // which it had shrunk (the compaction's).
    let mut compaction: Option<(usize, Option<usize>)> = None;
    let mut size = before;
    let glob = format!("/{}", "f".repeat(1023));
    for turn in 0..turns {
        let started = Instant::now();
        bench.send(bystander, &ClientFrame::Ping { token: turn as u64 });
        for n in 0..4 {
            let group = format!("filler-{n}-{}", "n".repeat(240));
            let create = GroupAdminAction::Create {
                glob: glob.clone(),
                start: StartPosition::End,
                settings: GroupSettings::default(),
            };
            for action in [create, GroupAdminAction::Delete] {
                let admin = GroupAdmin {
                    group: group.clone(),
                    action,
                };
                bench.send(filler, &ClientFrame::GroupAdmin(admin));
            }
        }
        let input = started.elapsed();
        times.push(input + bench.turn());
        bench.received(bystander);
        bench.received(filler);
        let grown = journal_bytes(&dir);
        match compaction {
            // A compaction done within one turn.
            None if grown < size => compaction = Some((turn, Some(turn))),
            None if grown >= threshold => compaction = Some((turn, None)),
            Some((first, None)) if grown < size => compaction = Some((first, Some(turn))),
            _ => {}
        }
        size = grown;
    }
    let mut sorted = times.clone();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let slowest = times
        .iter()
        .enumerate()
        .max_by_key(|(_, t)| **t)
        .map(|(turn, t)| (turn, t.as_secs_f64() * 1e3))
        .expect("turns");
    let (first, last) = match compaction {
        Some((first, Some(last))) => (first, last),
        other => panic!("no compaction ran in {turns} turns: {other:?}"),
    };
    let during = times[first..=last]
        .iter()
        .max()
        .expect("turns")
        .as_secs_f64()
        * 1e3;
    println!(
        "{fsync:?}: journal {before} bytes after parking; compaction over turns {first}..={last} \
         (max turn {during:.3} ms); {turns} bystander turns: p50 {:.3} ms, p99 {:.3} ms, \
         p99.9 {:.3} ms, max {:.3} ms (turn {})",
        at(0.5),
        at(0.99),
        at(0.999),
        slowest.1,
        slowest.0
    );
    drop(bench);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
