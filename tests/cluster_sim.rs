//! A deterministic simulation of a flo cluster: 3 to 5 engines with memory logs, in one thread,
//! over a simulated network, driven by one seed.
//!
//! The network carries each connection's bytes in order, in randomly sized chunks with random
//! delays, so deliveries on different connections are reordered but a connection's bytes never
//! are (as with TCP). Faults: connections dropped (both ends see the close), partitions between
//! pairs of nodes (dials fail until healed; half of them also reset the pair's connections, the
//! other half hold their bytes until the heal or a keep-alive time-out), failed syncs (a full
//! disk), and node restarts on
//! the log they leave behind after a crash: a node with `--fsync always` keeps everything it
//! acknowledged; a node with `interval` may lose its unsynced tail (a power loss), which is how
//! the catch-up hold (docs/clustering.md) is exercised. At most one crash a run also loses the
//! node's whole data directory (it restarts empty). Fake
//! clients produce at random.
//!
//! After every step the simulation checks every engine's own invariants
//! (`Engine::check_invariants`) and: no acknowledged event is lost on its origin (except
//! ones a power loss took from an `interval` node, which the docs allow), ids are unique across
//! the cluster (no two nodes hold different events under one id), and per-origin order holds
//! (each actor's counters strictly increase in every log); the clients of even nodes ask for
//! replicas 2 (SetReplicas), and each of their acks must find the event in at least two nodes'
//! logs when it arrives (in runs without a power loss). At the end it heals everything, stops
//! producing, and checks that every node holds the same set of events, among them every event
//! acked with replicas 2 that fewer than two crashes took from nodes holding it. A roaming
//! consumer moves between random nodes with its version-vector cursor all along; it must never
//! be sent an event twice, and, in runs without power loss, must have seen exactly the events of the cluster.
//! In a quarter of the runs catch-up holds may end by their time-out (50 to 1,500 ms): every
//! late id-order delivery must then be one of the documented cases (`order.rs`, `late_case`),
//! and the checks leave out only what docs/clustering.md lets nodes lack after a time-out.
//! Each node also runs a node-local consumer group with two members (`cluster_sim/groups.rs`):
//! confirmed acks are never redelivered and, at the end, every event reached each node's group.
//!
//! Seeds: `FLO_SIM_SEED=n` runs one seed; `FLO_SIM_SEEDS=n` runs seeds 0..n (for a long run:
//! `FLO_SIM_SEEDS=10000 cargo test --release --test cluster_sim`); by default a fixed list of
//! 304 seeds runs, split into four tests that run in parallel. A failure prints the seed that
//! reproduces it.

#[path = "cluster_sim/checks.rs"]
mod checks;
#[path = "cluster_sim/groups.rs"]
mod groups;
#[path = "cluster_sim/network.rs"]
mod network;
#[path = "cluster_sim/node.rs"]
mod node;
#[path = "cluster_sim/order.rs"]
mod order;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use flo::config::{Config, FsyncPolicy};
use flo::engine::{ConnId, Engine, EngineConfig, Now};
use flo::event::{ActorId, EventId};
use flo::storage::MemoryLog;
use flo::time::{MonotonicMs, WallClockMs};

/// The project's one seeded generator, shared with the library by path (it is not public API).
#[allow(dead_code)]
#[path = "../src/random.rs"]
mod random;
use network::Link;
use node::{Checked, Node, Roamer};
use random::SeededRng as Rng;

const STEP_MS: u64 = 10;
const WALL_BASE_MS: u64 = 1_700_000_000_000;

struct Sim {
    seed: u64,
    rng: Rng,
    now_ms: u64,
    nodes: Vec<Node>,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    ends: HashMap<(usize, ConnId), u64>,
    /// Pairs (low, high) that cannot reach each other.
    partitions: BTreeSet<(usize, usize)>,
    /// Every id some node holds now: its payload and how many nodes hold it.
    holders: HashMap<EventId, (Vec<u8>, usize)>,
    produced: u64,
    lost_by_power_loss: u64,
    /// Crashes of nodes whose fsync policy is not `always` (power losses).
    power_loss_crashes: u64,
    /// Durable records a power loss took, acknowledged or not.
    records_lost_by_power_loss: u64,
    stats: FaultStats,
    roamer: Roamer,
    /// The id-order sequence every node's id-order consumer must follow (`order.rs`).
    canonical: Vec<EventId>,
    /// Whether id order is checked in this run (full mesh, no lost data directory).
    check_order: bool,
    /// Crashes that lost the node's whole data directory (at most one a run).
    data_dir_losses: u64,
    /// Per thousand: the chance that a crash loses the node's data directory.
    dir_loss_chance: u64,
    /// Catch-up holds that ended by their time-out so far.
    timed_out_holds: u64,
    /// Ids of events their origin lost in a crash whose next hold timed out: they may never
    /// come back to it, and their ids may be given again (docs/clustering.md, "Losing a data
    /// directory" and "Unclean restarts").
    /// (The index in `lives` of the start whose hold timed out.)
    excused: HashMap<EventId, usize>,
    /// Every produce's payload: the node, its start (index in `lives`) and when.
    created: HashMap<Vec<u8>, (usize, usize, u64)>,
    /// Every event acknowledged with replicas 2, its data and how many crashes took it from a
    /// node that held it (a lost data directory, or a power loss of an `interval` node's
    /// unsynced tail, where "durable" meant written): with fewer than 2 such losses it must
    /// be held at the end.
    must_survive: BTreeMap<EventId, (Vec<u8>, u32)>,
}

/// How many faults a run injected, so the test can check that it exercised them.
#[derive(Default, Debug, Clone, Copy)]
struct FaultStats {
    partitions: u64,
    crashes: u64,
    sync_failures: u64,
    holds: u64,
    roaming_sessions: u64,
    /// Acks with replicas 2 checked against the nodes' logs.
    replicated_acks: u64,
    /// Runs whose roaming consumer was checked for exactly-once delivery (no power loss).
    roamer_exact_checks: u64,
    /// Id-order deliveries checked against the common sequence.
    ordered_deliveries: u64,
    /// Runs whose id-order consumers were checked for the whole sequence at the end.
    ordered_complete_checks: u64,
    /// Runs in which a node lost its data directory, and of those, runs whose replicas-2
    /// acks were all found after convergence.
    data_dir_losses: u64,
    survival_checks: u64,
    /// Events acknowledged with replicas 2 that a crash took from a node holding them and
    /// that were found at the end (received again from another holder).
    survivors_recovered: u64,
    /// OrderStalled errors (the consumer resubscribed).
    order_stalls: u64,
    /// Runs whose catch-up holds could time out, and holds that did.
    timeout_runs: u64,
    timed_out_holds: u64,
    /// Late id-order deliveries of the documented case ("After a catch-up time-out").
    late_lost_events: u64,
    /// Late id-order deliveries of "The exception" (discovery runs: an event created before
    /// the delivering node had heard of its origin).
    late_unknown_events: u64,
}

fn now_of(ms: u64) -> Now {
    Now {
        wall: WallClockMs(WALL_BASE_MS + ms),
        monotonic: MonotonicMs(ms),
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let count = 3 + rng.below(3) as usize;
        // Id order is checked only when every node knows every other from the start: a node
        // known to nobody may create events below what others already delivered in id order
        // (docs/clustering.md, "Id order", the exception).
        let full_mesh = rng.below(2) == 0;
        // In a quarter of the runs the catch-up hold times out after 0.05 to 1.5 s, so a node may
        // take produces before it met every member (drawn from a generator of its own, so the
        // other runs are the same as before this option).
        let mut timeout_rng = Rng::new(seed ^ 0x7469_6d65_6f75_7473);
        let catch_up_timeout_ms = (timeout_rng.below(4) == 0).then(|| 50 + timeout_rng.below(1450));
        let addrs: Vec<SocketAddr> = (0..count)
            .map(|i| format!("10.0.0.{}:3000", i + 1).parse().unwrap())
            .collect();
        let mut nodes = Vec::new();
        for i in 0..count {
            let mut config = Config::new(addrs[i], "/nonexistent".into());
            config.actor_id = ActorId(i as u16 + 1);
            let mut engine_config = EngineConfig::from_config(&config);
            engine_config.advertised_addr = Some(addrs[i]);
            let fsync = if rng.below(3) == 0 {
                FsyncPolicy::IntervalMs(50 + rng.below(200))
            } else {
                FsyncPolicy::Always
            };
            // Some nodes know every other; the rest know only one and rely on discovery (in
            // half the runs every node knows every other: see `full_mesh`).
            engine_config.limits.cluster.peer_addrs = if full_mesh || rng.below(2) == 0 {
                addrs.iter().copied().filter(|a| *a != addrs[i]).collect()
            } else {
                vec![addrs[(i + 1) % count]]
            };
            engine_config.seed = rng.next_u64();
            engine_config.limits.cluster.peer_credit_window = 1 + rng.below(8) as u32;
            engine_config.limits.records_per_turn_max = 1 + rng.below(32);
            // Without `catch_up_timeout_ms`, the catch-up hold never times out: partitions
            // always heal. With it, the hold of an `interval` node after a power loss may end
            // before the node met every member, which allows late id-order deliveries of the
            // events it lost, exactly as documented (the checks allow that case only:
            // `excused`, `order::late_case`); ids are never given twice (its counter lease).
            let timeout_ms = catch_up_timeout_ms.unwrap_or(u64::MAX / 4);
            engine_config.catch_up_timeout_ms = match fsync {
                FsyncPolicy::Always => None,
                _ => Some(timeout_ms),
            };
            // A node on an empty (perhaps lost) data directory never times out: that is the
            // default, which closes id reuse after a lost directory.
            engine_config.catch_up_timeout_fresh_ms = None;
            let log = MemoryLog::with_fsync(fsync);
            let engine = Engine::new(engine_config.clone(), log);
            nodes.push(Node {
                actor: config.actor_id,
                addr: addrs[i],
                config: engine_config,
                fsync,
                engine: Some(engine),
                stored_log: None,
                next_slot: 0,
                free_slots: Vec::new(),
                generation: 0,
                client: None,
                client_input: Vec::new(),
                next_op: 1,
                pending: HashMap::new(),
                acked: BTreeMap::new(),
                new_acks: Vec::new(),
                checked: Checked::default(),
                restarts: 0,
                ordered: order::Ordered::default(),
                group: groups::NodeGroup::default(),
                lives: vec![order::Life::default()],
            });
        }
        let mut sim = Sim {
            seed,
            rng,
            now_ms: 0,
            nodes,
            links: BTreeMap::new(),
            next_link: 0,
            ends: HashMap::new(),
            partitions: BTreeSet::new(),
            holders: HashMap::new(),
            produced: 0,
            lost_by_power_loss: 0,
            power_loss_crashes: 0,
            records_lost_by_power_loss: 0,
            stats: FaultStats::default(),
            roamer: Roamer::default(),
            canonical: Vec::new(),
            check_order: full_mesh,
            data_dir_losses: 0,
            must_survive: BTreeMap::new(),
            // More lost directories in time-out runs: their holds must wait anyway
            // (`watch_lives` fails a run where one times out).
            dir_loss_chance: if catch_up_timeout_ms.is_some() {
                250
            } else {
                40
            },
            timed_out_holds: 0,
            excused: HashMap::new(),
            created: HashMap::new(),
        };
        sim.stats.timeout_runs = u64::from(catch_up_timeout_ms.is_some());
        for i in 0..count {
            sim.start_group(i);
            sim.connect_client(i);
            sim.connect_ordered(i);
        }
        sim
    }

    fn now(&self) -> Now {
        now_of(self.now_ms)
    }

    /// Events that a catch-up time-out lets some nodes lack for good (docs/clustering.md,
    /// "Losing a data directory"): their origin's lost ones and the new ones in their range.
    fn excused(&self, id: &EventId) -> bool {
        self.excused.contains_key(id)
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "seed {}: {message} (at {} ms; reproduce with FLO_SIM_SEED={})",
            self.seed, self.now_ms, self.seed
        )
    }

    fn step(&mut self, faults: bool) {
        self.now_ms += STEP_MS;
        let count = self.nodes.len();
        if faults {
            for node in 0..count {
                if self.nodes[node].engine.is_some() && self.rng.chance(150) {
                    self.produce(node);
                }
            }
            if self.rng.chance(8) && !self.links.is_empty() {
                let ids: Vec<u64> = self.links.keys().copied().collect();
                let id = ids[self.rng.below(ids.len() as u64) as usize];
                self.cut(id);
            }
            if self.rng.chance(5) {
                let a = self.rng.below(count as u64) as usize;
                let b = self.rng.below(count as u64) as usize;
                if a != b {
                    self.partitions.insert(Sim::pair(a, b));
                    self.stats.partitions += 1;
                    // Half the partitions reset the connections between the pair; the other
                    // half are silent: bytes wait in the network until the partition heals
                    // (or a keep-alive time-out closes the connection).
                    if self.rng.below(2) == 0 {
                        let cut: Vec<u64> = self
                            .links
                            .iter()
                            .filter(|(_, l)| Sim::pair(l.ends[0].0, l.ends[1].0) == Sim::pair(a, b))
                            .map(|(id, _)| *id)
                            .collect();
                        for id in cut {
                            self.cut(id);
                        }
                    }
                }
            }
            if self.rng.chance(3) {
                // The next sync of a node fails like a full disk.
                let node = self.rng.below(count as u64) as usize;
                if let Some(engine) = self.nodes[node].engine.as_mut() {
                    engine.log_mut().fail_next_sync = true;
                    self.stats.sync_failures += 1;
                }
            }
            if self.rng.chance(6) {
                self.partitions.clear();
            }
            if self.rng.chance(4) {
                let node = self.rng.below(count as u64) as usize;
                if self.nodes[node].engine.is_some() {
                    self.stats.crashes += 1;
                }
                self.crash(node);
            }
        }
        if self.roamer.session.is_none() && self.rng.chance(30) {
            let node = self.rng.below(count as u64) as usize;
            if self.nodes[node].engine.is_some() {
                self.roam_to(node);
            }
        }
        for node in 0..count {
            if self.nodes[node].engine.is_none() && (!faults || self.rng.chance(20)) {
                self.restart(node);
            }
        }
        self.work_groups();
        self.deliver();
        let now = self.now();
        let mut hold_ended = Vec::with_capacity(count);
        for node in 0..count {
            let mut ended = false;
            if let Some(engine) = self.nodes[node].engine.as_mut() {
                let held = engine.is_holding_produces();
                engine.handle_turn_end(now);
                ended = held && !engine.is_holding_produces();
                if ended && std::env::var("FLO_SIM_VERBOSE").is_ok() {
                    eprintln!(
                        "{} ms: node {node} released its hold: {:?}",
                        self.now_ms,
                        engine.status()
                    );
                }
            }
            hold_ended.push(ended);
            self.drain(node);
        }
        for (node, &ended) in hold_ended.iter().enumerate() {
            self.watch_lives(node, ended);
        }
        // Every engine's own invariants hold after every step.
        for node in &self.nodes {
            if let Some(engine) = &node.engine {
                engine.check_invariants();
            }
        }
    }

    fn run(&mut self, fault_steps: u64) {
        for _ in 0..fault_steps {
            self.step(true);
            self.check();
        }
        self.partitions.clear();
        // Quiescence: everything up and healed, no produces; back-off is at most 10 s. A node
        // may read one record per turn for all its streams and consumers together, so a
        // catching-up id-order consumer can take a while.
        for round in 0..12000 {
            self.step(false);
            // Converged, and every node accepts produces again (a node that restarted after
            // a power loss holds them until it has shaken hands with every member).
            let held = self.nodes.iter().any(|n| {
                n.engine
                    .as_ref()
                    .is_some_and(|engine| engine.is_holding_produces())
            });
            if round % 50 == 49
                && !held
                && self.converged()
                && self.ordered_complete()
                && self.groups_complete()
            {
                if std::env::var("FLO_SIM_VERBOSE").is_ok() {
                    eprintln!("seed {}: converged after {round} quiet steps", self.seed);
                }
                if self.check_order && self.records_lost_by_power_loss == 0 {
                    self.stats.ordered_complete_checks += 1;
                }
                self.check_roamer();
                self.check_survivors();
                return;
            }
        }
        let sizes: Vec<usize> = (0..self.nodes.len())
            .map(|n| self.events_of(n).len())
            .collect();
        let ordered: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| n.ordered.sequence.len())
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(engine) = &node.engine {
                eprintln!("node {i}: {:?}", engine.id_order_state());
                for (id, link) in &self.links {
                    eprintln!(
                        "link {id}: ends {:?} pipes {:?} {:?} closed_by {:?} now {}",
                        link.ends,
                        link.pipes[0]
                            .chunks
                            .iter()
                            .map(|c| (c.0, c.1.len()))
                            .collect::<Vec<_>>(),
                        link.pipes[1].chunks.len(),
                        link.closed_by,
                        self.now_ms
                    );
                }
            }
        }
        let all: BTreeSet<EventId> = (0..self.nodes.len())
            .flat_map(|n| self.events_of(n).into_iter().map(|e| e.id))
            .collect();
        let missing: Vec<String> = (0..self.nodes.len())
            .map(|n| {
                let held: BTreeSet<EventId> = self.events_of(n).iter().map(|e| e.id).collect();
                let lacks: Vec<String> = all
                    .difference(&held)
                    .take(5)
                    .map(|id| id.to_string())
                    .collect();
                format!("node {n} lacks {lacks:?}")
            })
            .collect();
        let groups = self.groups_state();
        self.fail(format!(
            "no convergence after healing; events per node {sizes:?}, delivered in id order {ordered:?}; {missing:?}; groups: {groups}"
        ));
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("FLO_SIM_SEED") {
        return vec![seed.parse().expect("FLO_SIM_SEED is a number")];
    }
    if let Ok(count) = std::env::var("FLO_SIM_SEEDS") {
        let count: u64 = count.parse().expect("FLO_SIM_SEEDS is a number");
        return (0..count).collect();
    }
    let mut seeds: Vec<u64> = (0..300).map(|i| i * 7919 + 1).collect();
    // Seeds that once ended with a node that never got one or two events: a sync failure
    // discarded the turn's appends after its PeerProof had claimed them in its vector.
    seeds.extend([297, 960, 164, 994]);
    seeds
}

/// The seed list runs as `SEED_SHARES` tests, each taking every `SEED_SHARES`-th seed, so the
/// test harness runs them in parallel and each share still spans the whole list.
const SEED_SHARES: usize = 4;

/// Runs share `share` of the seeds and checks that it exercised every fault it claims to.
fn run_seed_share(share: usize) {
    let seeds: Vec<u64> = seeds()
        .into_iter()
        .skip(share)
        .step_by(SEED_SHARES)
        .collect();
    let mut produced = 0;
    let mut lost = 0;
    let mut faults = FaultStats::default();
    for (done, &seed) in seeds.iter().enumerate() {
        // Long runs (`FLO_SIM_SEEDS`) say how far they are, with --nocapture.
        if seeds.len() >= 1000 && done % 250 == 0 && done > 0 {
            eprintln!("share {share}: {done} of {} seeds passed", seeds.len());
        }
        let mut sim = Sim::new(seed);
        sim.run(2000);
        let acked: usize = sim.nodes.iter().map(|n| n.acked.len()).sum();
        assert!(acked > 0, "seed {seed}: nothing was acknowledged");
        // Long runs name the seeds that delivered late (rare: candidates for regression tests).
        let late = sim.stats.late_lost_events + sim.stats.late_unknown_events;
        if seeds.len() >= 1000 && late > 0 {
            eprintln!(
                "share {share}: seed {seed} delivered {} events late after a time-out, {} of \"the exception\"",
                sim.stats.late_lost_events, sim.stats.late_unknown_events
            );
        }
        produced += acked;
        lost += sim.lost_by_power_loss;
        faults.partitions += sim.stats.partitions;
        faults.crashes += sim.stats.crashes;
        faults.sync_failures += sim.stats.sync_failures;
        faults.holds += sim.stats.holds;
        faults.roaming_sessions += sim.stats.roaming_sessions;
        faults.roamer_exact_checks += sim.stats.roamer_exact_checks;
        faults.replicated_acks += sim.stats.replicated_acks;
        faults.ordered_deliveries += sim.stats.ordered_deliveries;
        faults.ordered_complete_checks += sim.stats.ordered_complete_checks;
        faults.order_stalls += sim.stats.order_stalls;
        faults.timeout_runs += sim.stats.timeout_runs;
        faults.timed_out_holds += sim.timed_out_holds;
        faults.late_lost_events += sim.stats.late_lost_events;
        faults.late_unknown_events += sim.stats.late_unknown_events;
        faults.data_dir_losses += sim.data_dir_losses;
        faults.survival_checks += sim.stats.survival_checks;
        faults.survivors_recovered += sim.stats.survivors_recovered;
    }
    eprintln!(
        "share {share}: {} seeds: acknowledged events kept {produced}, lost by simulated power loss {lost}, faults {faults:?}",
        seeds.len()
    );
    if seeds.len() * SEED_SHARES >= 100 {
        // The default run must exercise every fault it claims to, in each share.
        assert!(faults.partitions > 0 && faults.crashes > 0 && faults.sync_failures > 0);
        assert!(
            faults.holds > 0 && lost > 0,
            "no power loss hit an interval node"
        );
        assert!(
            faults.replicated_acks > 0,
            "no ack with replicas 2 was checked"
        );
        // About a third of the runs have no power loss (843 of 2500 seeds per share in the
        // 10,000-seed run); a share of the 76 default seeds can fall to 18% (share 2, 14 runs,
        // since the holds of lost directories no longer time out).
        assert!(
            faults.roamer_exact_checks * 6 > seeds.len() as u64,
            "too few runs checked the roaming consumer exactly"
        );
        // Share 2 of the default seeds has 6 of 76 (8%) since lost directories' holds no longer
        // time out (9 before, of the same seeds without time-out runs).
        assert!(
            faults.ordered_complete_checks * 13 > seeds.len() as u64,
            "too few runs checked the id-order consumers' whole sequences"
        );
        assert!(
            faults.survival_checks * 20 > seeds.len() as u64 && faults.survivors_recovered > 0,
            "too few runs checked replicas-2 acks after a lost data directory"
        );
        // A quarter of the runs let catch-up holds time out (13 to 26 of a share's 76).
        assert!(
            faults.timeout_runs * 8 > seeds.len() as u64 && faults.timed_out_holds > 0,
            "too few runs let a catch-up hold time out"
        );
    }
}

#[test]
fn the_cluster_converges_and_keeps_its_invariants_under_faults_share_0() {
    run_seed_share(0);
}

#[test]
fn the_cluster_converges_and_keeps_its_invariants_under_faults_share_1() {
    run_seed_share(1);
}

#[test]
fn the_cluster_converges_and_keeps_its_invariants_under_faults_share_2() {
    run_seed_share(2);
}

#[test]
fn the_cluster_converges_and_keeps_its_invariants_under_faults_share_3() {
    run_seed_share(3);
}

/// Catch-up holds that end by their time-out (docs/clustering.md, "After a catch-up
/// time-out"): in these seeds an `interval` node loses events in a power loss that another
/// node holds, and its hold times out before it gets them back. Every late id-order delivery
/// must be the documented case and counted by the engine, and the run's other checks hold,
/// leaving out only those lost events, which some nodes may lack for good. Seeds 1058 and 2198
/// deliver late (found by the 10,000-seed run of session 9, which names such seeds; the
/// default seeds have none since lost directories stopped timing out). Seeds 145 and 1528368
/// did this before, when the holds that timed out were those of lost directories.
#[test]
fn catch_up_time_outs_after_a_power_loss_deliver_late_only_as_documented() {
    let mut late = 0;
    for seed in [1058, 2198] {
        let mut sim = Sim::new(seed);
        sim.run(2000);
        assert!(sim.timed_out_holds > 0, "seed {seed}: no hold timed out");
        assert!(
            !sim.excused.is_empty(),
            "seed {seed}: no hold timed out while another node held events its node had lost"
        );
        late += sim.stats.late_lost_events;
    }
    assert!(late > 0, "no late delivery to check");
}

/// Without faults, three nodes converge and every node holds every event with the id its
/// origin gave it.
#[test]
fn a_calm_cluster_replicates_every_event_with_its_id() {
    let mut sim = Sim::new(424242);
    for _ in 0..200 {
        sim.now_ms += STEP_MS;
        for node in 0..sim.nodes.len() {
            sim.produce(node);
        }
        sim.step(false);
        sim.check();
    }
    sim.run(0);
    let all: BTreeSet<EventId> = sim.events_of(0).iter().map(|e| e.id).collect();
    for node in 0..sim.nodes.len() {
        for id in sim.nodes[node].acked.keys() {
            assert!(all.contains(id), "{id} from node {node} missing");
        }
    }
    let acked: usize = sim.nodes.iter().map(|n| n.acked.len()).sum();
    assert_eq!(all.len(), acked);
}

/// A node that lost its data directory while a member holding its events was down must not
/// give its old ids to new events (docs/clustering.md, "Losing a data directory"). Before
/// its hold lost the time-out, seed 661 (a time-out run) failed: "no convergence after
/// healing; events per node [809, 630, 809] ... node 1 lacks [3:2, 4:2, 8:2, 9:2, 12:2]":
/// node 2's new events reused counters of old ones that node 1 held, and node 1 dropped them
/// as duplicates. (Session 8 saw the same with seed 175, before later changes moved it.)
#[test]
fn a_node_that_lost_its_directory_never_reuses_ids_and_the_cluster_converges() {
    let mut sim = Sim::new(661);
    sim.run(2000);
    assert!(sim.data_dir_losses > 0, "seed 661 lost no data directory");
}
