//! Crash safety of the real binary: a producer pipelines events and records every ack; the
//! server is killed with SIGKILL at a random moment (after a random number of acks, with more
//! produces in flight), restarted on the same data directory, and this repeats. After every
//! restart, every acknowledged event must be present exactly once, intact, and in the order it
//! was acknowledged. The events go to 16 namespaces, and each namespace read on its own (by its
//! literal name, through the namespace index once the log is long enough) must be exactly the
//! scan's events of that namespace: the index files, written beside the segments the kills cut
//! short, agree with the log after every restart (issue 14). The seed comes from
//! FLO_TEST_SEED (printed on failure) or the time.
//!
//! The same for a consumer group (docs/consumers.md, "Restart"): several members consume and
//! acknowledge (and refuse "poison" events until they are parked) while the server is killed
//! 20 times; the rules checked after every restart are in `group_members_survive_20_kills`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{client, produce_jobs, try_client, FloProcess, RawConn, SeededRng};
use flo::client::Client;
use flo::event::{EventId, StartPosition};
use flo::protocol::{encode, ClientFrame, GroupAck, JoinGroup, ServerFrame};

fn seed() -> u64 {
    std::env::var("FLO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

/// Reads every stored event: (id, data).
fn read_log(conn: &mut RawConn) -> Vec<(EventId, Vec<u8>)> {
    conn.read_all()
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect()
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let seed = seed();
    eprintln!("kill9 seed: {seed} (rerun with FLO_TEST_SEED={seed})");
    let mut rng = SeededRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    // (data, id) of every acknowledged event, in ack order.
    let mut acknowledged: Vec<(Vec<u8>, EventId)> = Vec::new();
    let mut next_op = 0u64;
    for round in 0..12 {
        let server = FloProcess::start(dir.path(), &["--segment-size", "16K"]);
        let mut reader = RawConn::hello(server.addr);
        let stored = read_log(&mut reader);
        check_log(&stored, &acknowledged, seed, round);
        check_namespaces(&server, &stored, seed, round);
        let mut producer = RawConn::hello(server.addr);
        let window = 1 + rng.below(64);
        // At least 100 a round: the log passes 1,024 records, so later reads use the index.
        let acks_before_kill = 100 + rng.below(300);
        let size = rng.below(2000) as usize;
        let mut in_flight = std::collections::VecDeque::new();
        let mut acked_this_round = 0;
        while acked_this_round < acks_before_kill {
            while (in_flight.len() as u64) < window {
                let mut data = format!("op {next_op} ").into_bytes();
                data.resize(data.len() + size, b'x');
                producer.produce(next_op, &kill9_namespace(next_op), &data);
                in_flight.push_back((next_op, data));
                next_op += 1;
            }
            match producer.recv() {
                Some(ServerFrame::Ack(ack)) => {
                    let (op_id, data) = in_flight.pop_front().expect("an op in flight");
                    assert_eq!(ack.op_id, op_id, "acks arrive in produce order");
                    acknowledged.push((data, ack.first_id));
                    acked_this_round += 1;
                }
                other => panic!("seed {seed}: unexpected {other:?}"),
            }
        }
        // Produces are still in flight: kill now.
        server.kill9();
    }
    let server = FloProcess::start(dir.path(), &["--segment-size", "16K"]);
    let mut reader = RawConn::hello(server.addr);
    let stored = read_log(&mut reader);
    check_log(&stored, &acknowledged, seed, 12);
    check_namespaces(&server, &stored, seed, 12);
    assert!(
        stored.len() > 1024,
        "seed {seed}: {} events, too few for an index-driven read",
        stored.len()
    );
}

/// The namespace of the produce with op id `op` (16 namespaces, round-robin: each holds one
/// record in 16, a sparse namespace that a long read takes through the index).
fn kill9_namespace(op: u64) -> String {
    format!("/kill9/{}", op % 16)
}

/// Each namespace read by its literal name (the namespace index, once more than 1,024 records
/// lie ahead) delivers exactly the events the whole log (`stored`, read by a scan) holds in it,
/// in the same order.
fn check_namespaces(server: &FloProcess, stored: &[(EventId, Vec<u8>)], seed: u64, round: usize) {
    let mut reader = client(server);
    for op in 0..16 {
        let namespace = kill9_namespace(op);
        let by_name: Vec<EventId> = reader
            .consume()
            .glob(&namespace)
            .start(StartPosition::Beginning)
            .subscribe()
            .expect("subscribe")
            .map(|event| event.expect("event").id)
            .collect();
        let by_scan: Vec<EventId> = stored
            .iter()
            .filter(|(_, data)| op_of(data) % 16 == op)
            .map(|(id, _)| *id)
            .collect();
        assert!(
            by_name == by_scan,
            "seed {seed} round {round}: {namespace} read by name has {} events, the scan {}",
            by_name.len(),
            by_scan.len()
        );
    }
}

/// The op id an event of the produce test carries (its data starts with `op N `).
fn op_of(data: &[u8]) -> u64 {
    std::str::from_utf8(&data[..data.len().min(24)])
        .ok()
        .and_then(|text| text.strip_prefix("op "))
        .and_then(|text| text.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not a produce of this test: {:?}",
                &data[..data.len().min(24)]
            )
        })
}

fn check_log(
    stored: &[(EventId, Vec<u8>)],
    acknowledged: &[(Vec<u8>, EventId)],
    seed: u64,
    round: usize,
) {
    let mut seen = HashSet::new();
    for (id, _) in stored {
        assert!(
            seen.insert(*id),
            "seed {seed} round {round}: id {id} stored twice"
        );
    }
    let mut position = 0;
    for (data, id) in acknowledged {
        let found = stored[position..]
            .iter()
            .position(|(stored_id, _)| stored_id == id)
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed} round {round}: acknowledged event {id} is missing or out of order"
                )
            });
        position += found;
        assert_eq!(
            &stored[position].1, data,
            "seed {seed} round {round}: event {id} was changed"
        );
    }
}

/// The group every member of the group test joins, its glob and its parking rule.
const GROUP: &str = "kill9";
const GROUP_GLOB: &str = "/jobs/**";
const MAX_DELIVERIES: u16 = 3;
/// How long any one wait of the group test may take before it fails (a hang, not speed).
const WAIT: Duration = Duration::from_secs(60);

/// Every member refuses (nacks) a poison job each time it gets it, so it is parked after
/// `MAX_DELIVERIES` deliveries; every other job is acknowledged at once.
fn is_poison(job: usize) -> bool {
    job % 17 == 5
}

fn job_of(data: &[u8]) -> usize {
    std::str::from_utf8(data)
        .ok()
        .and_then(|text| text.strip_prefix("job-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a job: {data:?}"))
}

/// What the members and the admin saw, across all server lifetimes.
#[derive(Default)]
struct Ledger {
    /// The server lifetime the members now work in (0: before the first kill).
    lifetime: usize,
    /// Deliveries of each job, per lifetime.
    deliveries: BTreeMap<usize, BTreeMap<usize, u32>>,
    /// The id of each delivered job (to name parked events).
    job_of_id: HashMap<EventId, usize>,
    /// Jobs whose ack a later Pong on the same connection confirmed: the server handled the
    /// ack and synced the journal (fsync always) before it sent the Pong, so these must never
    /// be delivered again.
    acked_durably: BTreeSet<usize>,
    /// Jobs whose ack was sent but not confirmed before the kill: they may come again.
    acked_maybe: BTreeSet<usize>,
    /// Jobs an admin's Parked answer listed (answered after the journal sync): they must stay
    /// parked after every restart and never be delivered again.
    parked_seen: BTreeSet<usize>,
    /// Acks sent in this lifetime.
    acks_this_lifetime: usize,
    violations: Vec<String>,
}

struct Shared {
    ledger: Mutex<Ledger>,
    changed: Condvar,
}

/// Sends a frame; false once the server is gone.
fn try_send(conn: &mut RawConn, frame: &ClientFrame) -> bool {
    let mut bytes = Vec::new();
    encode(frame, &mut bytes);
    conn.stream.write_all(&bytes).is_ok()
}

/// A member's acks not confirmed yet: sent since its last Ping, or waiting for a Pong.
#[derive(Default)]
struct UnconfirmedAcks {
    unconfirmed: Vec<usize>,
    pings: HashMap<u64, Vec<usize>>,
    token: u64,
}

impl UnconfirmedAcks {
    /// Sends a Ping whose Pong confirms the acks sent so far; false once the server is gone.
    fn ping(&mut self, conn: &mut RawConn) -> bool {
        self.token += 1;
        self.pings
            .insert(self.token, std::mem::take(&mut self.unconfirmed));
        try_send(conn, &ClientFrame::Ping { token: self.token })
    }
}

/// One member: joins the group, acknowledges each job (nacks poison jobs), sends a Ping
/// after every `ping_every` events and records the acks its Pong confirms. Ends when the
/// server is killed.
fn run_member(mut conn: RawConn, shared: Arc<Shared>, credit: u32, ping_every: usize) {
    let join = ClientFrame::JoinGroup(JoinGroup {
        subscription_id: 1,
        group: GROUP.into(),
        glob: GROUP_GLOB.into(),
        start: StartPosition::Beginning,
        credit,
        // Long: redeliveries in this test come from nacks and restarts only.
        ack_timeout_ms: 600_000,
        max_deliveries: MAX_DELIVERIES,
        max_in_flight: 1000,
    });
    if !try_send(&mut conn, &join) {
        return;
    }
    let mut acks = UnconfirmedAcks::default();
    let mut since_ping = 0;
    while let Some(frame) = conn.recv() {
        match frame {
            ServerFrame::Event { event, .. } => {
                let job = job_of(&event.data);
                {
                    let mut ledger = shared.ledger.lock().unwrap();
                    let lifetime = ledger.lifetime;
                    *ledger
                        .deliveries
                        .entry(job)
                        .or_default()
                        .entry(lifetime)
                        .or_default() += 1;
                    ledger.job_of_id.insert(event.id, job);
                    if ledger.acked_durably.contains(&job) {
                        let message = format!(
                            "lifetime {lifetime}: job {job} delivered again after its ack was confirmed"
                        );
                        ledger.violations.push(message);
                    }
                    if ledger.parked_seen.contains(&job) {
                        let message =
                            format!("lifetime {lifetime}: job {job} delivered after it was parked");
                        ledger.violations.push(message);
                    }
                    if !is_poison(job) {
                        ledger.acked_maybe.insert(job);
                        ledger.acks_this_lifetime += 1;
                    }
                }
                shared.changed.notify_all();
                let ack = GroupAck {
                    subscription_id: 1,
                    delay_ms: 0,
                    ids: vec![event.id],
                };
                let frame = if is_poison(job) {
                    ClientFrame::GroupNack(ack)
                } else {
                    acks.unconfirmed.push(job);
                    ClientFrame::GroupAck(ack)
                };
                let credit = ClientFrame::Credit {
                    subscription_id: 1,
                    count: 1,
                };
                if !try_send(&mut conn, &frame) || !try_send(&mut conn, &credit) {
                    return;
                }
                since_ping += 1;
                if since_ping >= ping_every {
                    since_ping = 0;
                    if !acks.ping(&mut conn) {
                        return;
                    }
                }
            }
            ServerFrame::Pong { token } => {
                let jobs = acks.pings.remove(&token).unwrap_or_default();
                shared.ledger.lock().unwrap().acked_durably.extend(jobs);
                shared.changed.notify_all();
            }
            ServerFrame::CaughtUp { .. } => {
                if !acks.unconfirmed.is_empty() && !acks.ping(&mut conn) {
                    return;
                }
            }
            other => {
                let mut ledger = shared.ledger.lock().unwrap();
                ledger.violations.push(format!("a member got {other:?}"));
                return;
            }
        }
    }
}

/// Every parked job of the group, a page at a time (the answer comes after the journal sync).
fn parked_jobs(admin: &mut Client, shared: &Shared) -> BTreeSet<usize> {
    let mut ids = Vec::new();
    let mut from_offset = 0;
    loop {
        let page = admin.parked_page(GROUP, from_offset).expect("parked");
        ids.extend(page.events.iter().map(|e| e.id));
        match page.events.last() {
            Some(last) if page.more => from_offset = last.offset + 1,
            _ => break,
        }
    }
    let ledger = shared.ledger.lock().unwrap();
    ids.iter()
        .map(|id| {
            *ledger
                .job_of_id
                .get(id)
                .unwrap_or_else(|| panic!("parked {id} was never delivered"))
        })
        .collect()
}

/// Waits (bounded) until `done` holds for the ledger.
fn wait_until(shared: &Shared, seed: u64, what: &str, done: impl Fn(&Ledger) -> bool) {
    let started = Instant::now();
    let mut ledger = shared.ledger.lock().unwrap();
    while !done(&ledger) {
        assert!(
            started.elapsed() < WAIT,
            "seed {seed}: waited {WAIT:?} for {what}"
        );
        ledger = shared
            .changed
            .wait_timeout(ledger, Duration::from_millis(50))
            .unwrap()
            .0;
    }
}

/// Starts `count` members with random credit and a Ping after every 1 to `ping_every_max`
/// events.
fn start_members(
    server: &FloProcess,
    shared: &Arc<Shared>,
    rng: &mut SeededRng,
    count: usize,
    ping_every_max: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            // Connected here, so that a kill right after the start finds every member joined
            // or joining.
            let conn = RawConn::hello(server.addr);
            let shared = Arc::clone(shared);
            let credit = 1 + rng.below(32) as u32;
            let ping_every = 1 + rng.below(ping_every_max) as usize;
            std::thread::spawn(move || run_member(conn, shared, credit, ping_every))
        })
        .collect()
}

fn join_members(members: Vec<std::thread::JoinHandle<()>>) {
    for member in members {
        if let Err(panic) = member.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Kills the server, waits for every member, and fails on any rule a member saw broken.
fn kill_and_check_members(
    server: FloProcess,
    members: Vec<std::thread::JoinHandle<()>>,
    shared: &Shared,
    seed: u64,
) {
    server.kill9();
    join_members(members);
    let ledger = shared.ledger.lock().unwrap();
    assert!(
        ledger.violations.is_empty(),
        "seed {seed}: {:?}",
        ledger.violations
    );
}

/// A group under 20 kill -9s, with three members acknowledging. After every restart:
/// - no job whose ack a Pong confirmed is delivered again (acks are pipelined: only an ack
///   the server handled before a sync is final; docs/consumers.md, "Restart");
/// - every job parked before the kill (as an admin's Parked answer showed) is still parked
///   and never delivered again; only poison jobs are parked;
/// - delivery counts survive: a poison job is delivered at most `MAX_DELIVERIES` times plus
///   one per further lifetime it was delivered in (the first delivery is not journaled, a
///   redelivery's count is, before the member sees it);
///
/// And at the end, no job is lost: every job was acknowledged or parked.
#[test]
fn group_members_survive_20_kills() {
    let seed = seed();
    eprintln!("group kill9 seed: {seed} (rerun with FLO_TEST_SEED={seed})");
    let mut rng = SeededRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::default()),
        changed: Condvar::new(),
    });
    let mut jobs = 0;
    let kills = 20;
    for lifetime in 0..=kills {
        let server = FloProcess::start(dir.path(), &["--fsync", "always"]);
        let mut admin = client(&server);
        if lifetime > 0 {
            let parked = parked_jobs(&mut admin, &shared);
            let ledger = shared.ledger.lock().unwrap();
            let lost: Vec<_> = ledger.parked_seen.difference(&parked).collect();
            assert!(
                lost.is_empty(),
                "seed {seed} lifetime {lifetime}: parked before the kill, not after: {lost:?}"
            );
            let wrong: Vec<_> = parked.iter().filter(|job| !is_poison(**job)).collect();
            assert!(
                wrong.is_empty(),
                "seed {seed}: jobs parked that were acknowledged: {wrong:?}"
            );
        }
        {
            let mut ledger = shared.ledger.lock().unwrap();
            ledger.lifetime = lifetime;
            ledger.acks_this_lifetime = 0;
        }
        if lifetime == kills {
            break;
        }
        let new_jobs = 50 + rng.below(150) as usize;
        produce_jobs(&server, jobs..jobs + new_jobs);
        jobs += new_jobs;
        let members = start_members(&server, &shared, &mut rng, 3, 16);
        let to_ack = {
            let ledger = shared.ledger.lock().unwrap();
            let open = (0..jobs)
                .filter(|job| !is_poison(*job) && !ledger.acked_maybe.contains(job))
                .count();
            1 + rng.below(open as u64) as usize
        };
        wait_until(&shared, seed, "acks", |ledger| {
            ledger.acks_this_lifetime >= to_ack
        });
        // Parked now (answered after the sync): must survive the kill.
        let parked = parked_jobs(&mut admin, &shared);
        shared.ledger.lock().unwrap().parked_seen.extend(parked);
        kill_and_check_members(server, members, &shared, seed);
    }
    // The last lifetime: one member drains the group, confirming each ack, and every job
    // ends acknowledged or parked.
    let server = FloProcess::start(dir.path(), &["--fsync", "always"]);
    let mut admin = client(&server);
    let members = start_members(&server, &shared, &mut rng, 1, 1);
    let poison: BTreeSet<usize> = (0..jobs).filter(|job| is_poison(*job)).collect();
    // Settled: the group has looked at the whole log, nothing is pending and every poison job
    // is parked (the answers come after the journal sync).
    let started = Instant::now();
    loop {
        let info = admin.group_info(GROUP).expect("group info");
        if info.pending == 0 && info.lag == 0 && info.parked == poison.len() as u64 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "seed {seed}: the group did not settle: {info:?}"
        );
        let ledger = shared.ledger.lock().unwrap();
        let _ = shared
            .changed
            .wait_timeout(ledger, Duration::from_millis(20))
            .unwrap();
    }
    let parked = parked_jobs(&mut admin, &shared);
    assert_eq!(
        parked, poison,
        "seed {seed}: parked must be the poison jobs"
    );
    // The server counts every other job acknowledged: each was, by some member, at least
    // once (an ack the test saw sent; unconfirmed ones the server may have kept).
    {
        let ledger = shared.ledger.lock().unwrap();
        let never_acked: Vec<usize> = (0..jobs)
            .filter(|job| !is_poison(*job) && !ledger.acked_maybe.contains(job))
            .take(20)
            .collect();
        assert!(
            never_acked.is_empty(),
            "seed {seed}: the group counts these jobs done, but no member acknowledged them: \
             {never_acked:?}"
        );
    }
    kill_and_check_members(server, members, &shared, seed);
    let ledger = shared.ledger.lock().unwrap();
    for job in &poison {
        let per_lifetime = &ledger.deliveries[job];
        let total: u32 = per_lifetime.values().sum();
        let bound = u32::from(MAX_DELIVERIES) + per_lifetime.len() as u32 - 1;
        assert!(
            total <= bound,
            "seed {seed}: poison job {job} was delivered {total} times in {} lifetimes \
             ({per_lifetime:?}): delivery counts did not survive the kills",
            per_lifetime.len()
        );
    }
    let redelivered_acked = ledger
        .deliveries
        .iter()
        .filter(|(job, lifetimes)| !is_poison(**job) && lifetimes.values().sum::<u32>() > 1)
        .count();
    eprintln!(
        "group kill9: {jobs} jobs, {} poison, {} acknowledged jobs delivered more than once \
         (acks not yet confirmed at a kill, or in flight)",
        poison.len(),
        redelivered_acked
    );
}

/// Server arguments that make the group journal compact often and slowly: past 64 KiB (and
/// four times the last snapshot), 16 snapshot entries a loop turn.
const COMPACTING: [&str; 4] = [
    "--group-journal-compact-size",
    "64K",
    "--group-journal-compact-entries",
    "16",
];
/// Groups with a fixed state (acknowledged, parked, pending jobs) that the compactions copy.
const KEPT_GROUPS: usize = 6;
/// Jobs each kept group was delivered.
const KEPT_JOBS: usize = 2000;

/// What a kept group did with a job: every fourth is parked, every fourth left pending, the
/// rest acknowledged (so the acknowledged offsets above the floor, the parked events and the
/// floor all have entries in a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acked,
    Parked,
    Pending,
}

fn fate(job: usize) -> Fate {
    match job % 4 {
        1 => Fate::Parked,
        3 => Fate::Pending,
        _ => Fate::Acked,
    }
}

fn jobs_with(wanted: Fate) -> BTreeSet<usize> {
    (0..KEPT_JOBS).filter(|job| fate(*job) == wanted).collect()
}

/// Gives each kept group its state: one member acknowledges, refuses twice (max_deliveries 2:
/// parked) or keeps each job, then leaves (the kept jobs are pending again). Returns each job's
/// event id.
fn build_kept_groups(server: &FloProcess) -> HashMap<EventId, usize> {
    use flo::client::{GroupDelivery, GroupSettings};
    produce_jobs(server, 0..KEPT_JOBS);
    let mut admin = client(server);
    let mut job_of_id = HashMap::new();
    for group in 0..KEPT_GROUPS {
        let name = format!("kept{group}");
        let settings = GroupSettings {
            ack_timeout_ms: 3_600_000,
            max_deliveries: 2,
            max_in_flight: 2 * KEPT_JOBS as u32,
        };
        admin
            .create_group(&name, "/jobs/**", StartPosition::Beginning, settings)
            .expect("create");
        let mut member_client = client(server);
        let mut member = member_client
            .join_group(&name)
            .glob("/jobs/**")
            .credit(2 * KEPT_JOBS as u32)
            .join()
            .expect("join");
        let mut refusals: HashMap<usize, u32> = HashMap::new();
        let mut settled = 0;
        while settled < KEPT_JOBS {
            let event = match member.next_delivery().expect("a delivery") {
                Some(GroupDelivery::Event(event)) => event,
                Some(GroupDelivery::CaughtUp) => continue,
                other => panic!("group {name}: {other:?}"),
            };
            let job = job_of(&event.data);
            job_of_id.insert(event.id, job);
            match fate(job) {
                Fate::Acked => {
                    member.ack(event.id).expect("ack");
                    settled += 1;
                }
                Fate::Pending => settled += 1,
                Fate::Parked => {
                    let refused = refusals.entry(job).or_default();
                    *refused += 1;
                    if *refused == 2 {
                        settled += 1;
                    }
                    member.nack(&[event.id], Duration::ZERO).expect("nack");
                }
            }
        }
        member.leave().expect("leave");
        let info = admin.group_info(&name).expect("info");
        assert_eq!(
            info.parked as usize,
            jobs_with(Fate::Parked).len(),
            "{info:?}"
        );
    }
    job_of_id
}

/// After the restart: each kept group holds exactly the parked jobs it held, delivers exactly
/// its pending jobs (each once; no acknowledged or parked job again), then has nothing left.
fn check_kept_groups(server: &FloProcess, attempt: usize, job_of_id: &HashMap<EventId, usize>) {
    use flo::client::GroupDelivery;
    let mut admin = client(server);
    for group in 0..KEPT_GROUPS {
        let name = format!("kept{group}");
        let mut parked_ids = Vec::new();
        let mut from_offset = 0;
        loop {
            let page = admin.parked_page(&name, from_offset).expect("parked");
            parked_ids.extend(page.events.iter().map(|e| e.id));
            match page.events.last() {
                Some(last) if page.more => from_offset = last.offset + 1,
                _ => break,
            }
        }
        let parked: BTreeSet<usize> = parked_ids.iter().map(|id| job_of_id[id]).collect();
        assert_eq!(
            parked,
            jobs_with(Fate::Parked),
            "attempt {attempt}, group {name}: parked jobs"
        );
        let mut member_client = client(server);
        let mut member = member_client
            .join_group(&name)
            .glob("/jobs/**")
            .credit(2 * KEPT_JOBS as u32)
            .join()
            .expect("join");
        let mut delivered = Vec::new();
        loop {
            match member.next_delivery().expect("a delivery") {
                Some(GroupDelivery::Event(event)) => {
                    delivered.push(job_of(&event.data));
                    member.ack(event.id).expect("ack");
                }
                Some(GroupDelivery::CaughtUp) => break,
                other => panic!("group {name}: {other:?}"),
            }
        }
        member.leave().expect("leave");
        let once: BTreeSet<usize> = delivered.iter().copied().collect();
        assert_eq!(
            once.len(),
            delivered.len(),
            "attempt {attempt}, group {name}: a job delivered twice"
        );
        let wrong: Vec<usize> = once
            .iter()
            .copied()
            .filter(|job| fate(*job) != Fate::Pending)
            .collect();
        assert!(
            wrong.is_empty(),
            "attempt {attempt}, group {name}: acknowledged or parked jobs delivered again: {wrong:?}"
        );
        assert_eq!(
            once,
            jobs_with(Fate::Pending),
            "attempt {attempt}, group {name}: pending jobs"
        );
        let info = admin.group_info(&name).expect("info");
        assert_eq!(
            (info.pending, info.in_flight),
            (0, 0),
            "attempt {attempt}, group {name}: {info:?}"
        );
    }
}

/// Produces and consumes on a group of its own (acknowledged in order, so its state stays
/// small while every ack is journaled) until `stop`, to grow the journal to its next
/// compaction; ends quietly when the server is gone (the watcher may have killed it before
/// the filler connects: a compaction can start just after the kept groups were built).
fn run_filler(server: &FloProcess, stop: &std::sync::atomic::AtomicBool) {
    use flo::client::{GroupDelivery, NewEvent};
    use std::sync::atomic::Ordering;
    let (Ok(mut producer), Ok(mut member_client)) = (try_client(server), try_client(server)) else {
        return;
    };
    let Ok(mut member) = member_client
        .join_group("filler")
        .glob("/filler/**")
        .credit(1024)
        .ack_batch(8)
        .join()
    else {
        return;
    };
    let batch: Vec<NewEvent> = (0..200)
        .map(|n| NewEvent {
            namespace: format!("/filler/{}", n % 8),
            parent_id: None,
            data: vec![b'f'; 100],
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        if producer.produce_batch(&batch).is_err() {
            return;
        }
        let mut taken = 0;
        while taken < batch.len() {
            match member.next_delivery() {
                Ok(Some(GroupDelivery::Event(event))) => {
                    taken += 1;
                    if member.ack(event.id).is_err() {
                        return;
                    }
                }
                Ok(Some(GroupDelivery::CaughtUp)) => {}
                _ => return,
            }
        }
    }
}

/// kill -9 while a group-journal compaction is under way (its new journal,
/// `groups.journal.tmp`, exists), 10 times, each at a different size of that file: the
/// restarted server removes the unfinished new journal and every group's state is intact (the
/// same parked, pending and acknowledged jobs; none acknowledged or parked is delivered again).
/// A fresh data directory each time, since a restart counts the loaded journal as the last
/// snapshot (the next compaction waits for four times its size).
#[test]
fn kill_9_during_group_journal_compactions_keeps_every_group() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let kills = 10;
    let mut caught = 0;
    let mut attempt = 0;
    while caught < kills {
        attempt += 1;
        assert!(
            attempt <= 3 * kills,
            "only {caught} of {attempt} kills came during a compaction"
        );
        let dir = tempfile::tempdir().unwrap();
        let server = FloProcess::start(dir.path(), &COMPACTING);
        let job_of_id = build_kept_groups(&server);
        assert!(dir.path().join("groups.journal").exists());
        let tmp = dir.path().join("groups.journal.tmp");
        // Kill points spread over the new journal's growth: as soon as it exists, or once it
        // holds at least this many bytes.
        let size_min = (caught as u64 % 5) * 16 * 1024;
        let stop = Arc::new(AtomicBool::new(false));
        let pid = server.child.id() as libc::pid_t;
        let watcher = {
            let (tmp, stop) = (tmp.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut largest = 0;
                while Instant::now() < deadline {
                    if let Ok(meta) = std::fs::metadata(&tmp) {
                        largest = largest.max(meta.len());
                        if meta.len() >= size_min {
                            // SAFETY: kill(2) on our own child's pid, not yet reaped.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                            stop.store(true, Ordering::Relaxed);
                            return Ok(meta.len());
                        }
                    }
                    std::thread::yield_now();
                }
                stop.store(true, Ordering::Relaxed);
                Err(largest)
            })
        };
        run_filler(&server, &stop);
        let killed_at = watcher.join().expect("watcher");
        server.kill9();
        let killed_at = killed_at.unwrap_or_else(|largest| {
            panic!("no compaction reached {size_min} bytes in 60 s (largest {largest})")
        });
        if !tmp.exists() {
            // The rename came between the look and the kill: not a kill during a compaction.
            continue;
        }
        caught += 1;
        eprintln!("attempt {attempt}: killed with groups.journal.tmp at {killed_at} bytes");
        let server = FloProcess::start(dir.path(), &COMPACTING);
        assert!(
            server
                .early_lines
                .iter()
                .any(|line| line.contains("the new journal of a compaction that did not finish")),
            "attempt {attempt}: {:?}",
            server.early_lines
        );
        assert!(!tmp.exists());
        check_kept_groups(&server, attempt, &job_of_id);
        assert!(server.terminate().success());
    }
}

/// Issue 14 (README, "Retrying safely"): `flo-client produce` reading standard input is an
/// idempotent producer, so when the server is killed with -9 and started again on the same
/// address while lines are in flight, the client connects again, resends what was not
/// acknowledged, and every line is stored exactly once, in input order, under the id the
/// client printed for it.
#[test]
fn the_cli_stdin_producer_stores_each_line_once_across_kill_9s() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let args = ["--fsync", "always"];
    let mut server = FloProcess::start(dir.path(), &args);
    let port = server.addr.port();
    let mut producer = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args([
            "-H",
            &server.addr.to_string(),
            "--timeout",
            "10s",
            "produce",
        ])
        .args(["-n", "/cli/lines", "--reconnect-attempts", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client produce");
    let mut input = producer.stdin.take().expect("stdin is piped");
    let stdout = producer.stdout.take().expect("stdout is piped");
    let (sender, printed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let (rounds, per_round) = (4, 300);
    for round in 0..rounds {
        let lines: String = (round * per_round..(round + 1) * per_round)
            .map(|n| format!("line {n}\n"))
            .collect();
        input.write_all(lines.as_bytes()).expect("write lines");
        input.flush().expect("flush lines");
        if round + 1 == rounds {
            break;
        }
        // Kill as soon as the server holds a line of this round: most of the round is then
        // in flight (sent and not stored, or stored and its ack not yet read).
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_log(&mut RawConn::hello(server.addr)).len() <= round * per_round {
            assert!(
                Instant::now() < deadline,
                "round {round}: no line stored in 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill9();
        server = FloProcess::start_on_port(dir.path(), port, &args);
    }
    drop(input);
    let status = producer.wait().expect("wait for flo-client");
    reader.join().expect("stdout reader");
    let ids: Vec<String> = printed.try_iter().collect();
    let mut stderr = String::new();
    std::io::Read::read_to_string(
        &mut producer.stderr.take().expect("stderr is piped"),
        &mut stderr,
    )
    .expect("read stderr");
    assert!(status.success(), "flo-client produce failed: {stderr}");
    let stored = read_log(&mut RawConn::hello(server.addr));
    let data: Vec<String> = stored
        .iter()
        .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
        .collect();
    let expected: Vec<String> = (0..rounds * per_round)
        .map(|n| format!("line {n}"))
        .collect();
    assert!(
        data == expected,
        "{} events stored for {} lines; first difference at {:?}",
        data.len(),
        expected.len(),
        data.iter().zip(&expected).position(|(a, b)| a != b)
    );
    let printed_ids: Vec<&String> = ids.iter().filter(|line| line.len() == 25).collect();
    let stored_ids: Vec<String> = stored.iter().map(|(id, _)| id.to_string()).collect();
    assert!(
        printed_ids.iter().copied().eq(stored_ids.iter()),
        "the printed ids are not the stored ones: {} printed, {} stored",
        printed_ids.len(),
        stored_ids.len()
    );
}
