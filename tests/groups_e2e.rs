//! Consumer groups with real processes (docs/consumers.md): `flo-client consume --group`
//! members split a stream, a killed member's unacknowledged events reach the other member,
//! and a group survives kill -9 of the server with every event acknowledged or delivered
//! again. Everything on 127.0.0.1, bounded in count and time; every process is killed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{client, produce_jobs, FloProcess};
use flo::client::{GroupConsumer, GroupDelivery};
use flo::event::EventId;

/// How long any one wait in these tests may take before the test fails (a hang, not speed).
const WAIT: Duration = Duration::from_secs(60);

/// A `flo-client consume --group` process whose stdout lines arrive on a channel.
struct Member {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Member {
    fn start(server: &FloProcess, group: &str, extra: &[&str]) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flo-client"))
            .args(["-H", &server.addr.to_string(), "consume", "--group", group])
            .args(["-n", "/jobs/**", "--format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flo-client");
        let stdout = child.stdout.take().expect("stdout is piped");
        // Bounded: a member whose lines the test does not take stalls on a full pipe.
        let (sender, lines) = mpsc::sync_channel(100);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Member { child, lines }
    }

    /// The job number of the next printed line, waiting at most `wait`.
    fn next_job(&self, wait: Duration) -> Option<usize> {
        self.lines.recv_timeout(wait).ok().map(|line| job_of(&line))
    }

    fn kill(mut self) -> Vec<usize> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The last line may be cut off by the kill: an event not completely printed.
        let lines: Vec<usize> = self
            .lines
            .iter()
            .filter(|line| line.ends_with('}'))
            .map(|line| job_of(&line))
            .collect();
        std::mem::forget(self);
        lines
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The n of a JSON line whose data is `job-<n>`.
fn job_of(line: &str) -> usize {
    let data = line
        .split("\"data\":\"job-")
        .nth(1)
        .unwrap_or_else(|| panic!("not a job event: {line}"));
    data.split('"')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("job number")
}

fn job_of_event(data: &[u8]) -> usize {
    let text = std::str::from_utf8(data).expect("utf-8 data");
    text.strip_prefix("job-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a job: {text}"))
}

/// Takes every line the members printed so far into `seen` (job -> member index); returns
/// the members that printed something.
fn take_printed(members: &[Member], seen: &mut BTreeMap<usize, usize>) -> BTreeSet<usize> {
    let mut printed = BTreeSet::new();
    for (index, member) in members.iter().enumerate() {
        while let Some(job) = member.next_job(Duration::from_millis(5)) {
            assert!(seen.insert(job, index).is_none(), "job {job} printed twice");
            printed.insert(index);
        }
    }
    printed
}

#[test]
fn two_cli_members_split_the_events_each_printed_by_exactly_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let members = [
        Member::start(&server, "split", &["-t"]),
        Member::start(&server, "split", &["-t"]),
    ];
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    // Produce one job at a time, each once the one before was printed, until both members
    // printed one: then both have joined (round robin alternates between the members).
    let mut next_job = 0;
    let mut printed_by = BTreeSet::new();
    while printed_by.len() < 2 {
        assert!(
            next_job < 100,
            "a member printed nothing of {next_job} jobs"
        );
        produce_jobs(&server, next_job..next_job + 1);
        next_job += 1;
        let started = Instant::now();
        while seen.len() < next_job {
            assert!(
                started.elapsed() < WAIT,
                "nobody printed job {}",
                next_job - 1
            );
            printed_by.extend(take_printed(&members, &mut seen));
        }
    }
    let total = next_job + 4000;
    produce_jobs(&server, next_job..total);
    let started = Instant::now();
    while seen.len() < total {
        assert!(
            started.elapsed() < WAIT,
            "{} of {total} printed",
            seen.len()
        );
        take_printed(&members, &mut seen);
    }
    let [first, second] = members;
    // Nothing more arrives: every event went to exactly one member.
    let late: Vec<usize> = first.kill().into_iter().chain(second.kill()).collect();
    assert!(late.is_empty(), "printed twice: {late:?}");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    let by_first = seen.values().filter(|m| **m == 0).count();
    // Who gets more depends on who is free (competing consumers), but the burst starts
    // with both members' credit windows (256 each) handed out in turn.
    assert!(
        by_first >= total / 20 && by_first <= total - total / 20,
        "the members did not share the work: the first printed {by_first} of {total}"
    );
    // The members acknowledged what they printed: a new member gets at most the acks each
    // member had queued when it was killed (a member sends its acks before it waits, so
    // normally none), then CaughtUp.
    let mut check = client(&server);
    let mut consumer = check
        .join_group("split")
        .glob("/jobs/**")
        .join()
        .expect("join");
    let mut unacknowledged = 0;
    while let GroupDelivery::Event(event) = next_delivery(&mut consumer) {
        assert!(seen.contains_key(&job_of_event(&event.data)));
        unacknowledged += 1;
        consumer.ack(event.id).expect("ack");
    }
    assert!(
        unacknowledged <= 2 * flo::client::ACK_BATCH_DEFAULT,
        "{unacknowledged} printed events were not acknowledged"
    );
}

fn next_delivery(consumer: &mut GroupConsumer<'_>) -> GroupDelivery {
    assert!(
        consumer.wait_for_delivery(WAIT).expect("wait"),
        "no delivery within {WAIT:?}"
    );
    consumer
        .next_delivery()
        .expect("delivery")
        .expect("not ended")
}

#[test]
fn a_killed_members_unacknowledged_events_reach_the_other_member() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let mut survivor_client = client(&server);
    // A long ack time-out: what the survivor gets, it gets because the other member's
    // connection closed, not because a time-out passed.
    let mut survivor = survivor_client
        .join_group("workers")
        .glob("/jobs/**")
        .credit(4)
        .ack_timeout(Duration::from_secs(600))
        .join()
        .expect("join");
    // The group is empty: CaughtUp first, then the first job.
    assert_eq!(next_delivery(&mut survivor), GroupDelivery::CaughtUp);
    produce_jobs(&server, 0..1);
    let GroupDelivery::Event(first) = next_delivery(&mut survivor) else {
        panic!("expected the first job");
    };
    survivor.ack(first.id).expect("ack");
    survivor.flush().expect("flush");
    // The victim: a CLI member whose output the test does not read until it is killed, so
    // that it stalls on a full pipe with events printed and not acknowledged, and more in
    // flight.
    let victim = Member::start(&server, "workers", &["-t"]);
    let mut survivor_jobs: BTreeMap<usize, EventId> = BTreeMap::new();
    survivor_jobs.insert(0, first.id);
    let mut next_job = 1;
    let mut victim_early = Vec::new();
    // Wait until the victim joined: produce single jobs until one is printed by it; the
    // survivor acknowledges what it gets meanwhile.
    'joined: for _ in 0..100 {
        produce_jobs(&server, next_job..next_job + 1);
        next_job += 1;
        loop {
            if let Some(job) = victim.next_job(Duration::from_millis(20)) {
                victim_early.push(job);
                break 'joined;
            }
            if survivor
                .wait_for_delivery(Duration::from_millis(20))
                .expect("wait")
            {
                let GroupDelivery::Event(event) = survivor.next_delivery().expect("d").expect("e")
                else {
                    continue;
                };
                survivor_jobs.insert(job_of_event(&event.data), event.id);
                survivor.ack(event.id).expect("ack");
                survivor.flush().expect("flush");
                break;
            }
        }
    }
    assert!(!victim_early.is_empty(), "the victim never joined");
    let total = next_job + 3000;
    produce_jobs(&server, next_job..total);
    // The survivor holds 4 unacknowledged events at most (its credit), so the victim takes the
    // rest until its pipe is full. Wait until the victim has printed a good part.
    let mut survivor_held = Vec::new();
    let started = Instant::now();
    while survivor_held.len() < 4 {
        assert!(started.elapsed() < WAIT, "the survivor got no events");
        let GroupDelivery::Event(event) = next_delivery(&mut survivor) else {
            continue;
        };
        survivor_held.push(event);
    }
    // The victim cannot have taken everything: its pipe holds far fewer than 3000 lines.
    let mut victim_printed: BTreeSet<usize> = victim_early.into_iter().collect();
    let started = Instant::now();
    while victim_printed.len() < 200 {
        assert!(
            started.elapsed() < WAIT,
            "the victim printed {}",
            victim_printed.len()
        );
        if let Some(job) = victim.next_job(Duration::from_millis(50)) {
            victim_printed.insert(job);
        }
    }
    victim_printed.extend(victim.kill());
    assert!(
        victim_printed.len() < total - 100,
        "the victim printed nearly everything ({}); the test shows nothing",
        victim_printed.len()
    );
    for event in survivor_held {
        survivor_jobs.insert(job_of_event(&event.data), event.id);
        survivor.ack(event.id).expect("ack");
    }
    // Every job the victim did not print must now reach the survivor (a job it printed may
    // come too, if its ack was not sent yet).
    let missing = |survivor_jobs: &BTreeMap<usize, EventId>| {
        (0..total)
            .filter(|job| !survivor_jobs.contains_key(job) && !victim_printed.contains(job))
            .count()
    };
    let started = Instant::now();
    while missing(&survivor_jobs) > 0 {
        assert!(
            started.elapsed() < WAIT,
            "{} jobs never reached the survivor",
            missing(&survivor_jobs)
        );
        if !survivor
            .wait_for_delivery(Duration::from_millis(100))
            .expect("wait")
        {
            continue;
        }
        match survivor.next_delivery().expect("delivery") {
            Some(GroupDelivery::Event(event)) => {
                let job = job_of_event(&event.data);
                assert!(
                    survivor_jobs.insert(job, event.id).is_none(),
                    "job {job} reached the survivor twice (it acknowledged it)"
                );
                survivor.ack(event.id).expect("ack");
            }
            Some(GroupDelivery::CaughtUp) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    survivor.leave().expect("leave");
}

/// One round of the kill -9 test: consume and acknowledge part of the group's events, make
/// sure the acks were handled (a Ping answered after them), and return the jobs acknowledged.
fn consume_some(server: &FloProcess, count: usize) -> BTreeSet<usize> {
    let mut member = client(server);
    let mut consumer = member
        .join_group("durable")
        .glob("/jobs/**")
        .credit(64)
        .join()
        .expect("join");
    let mut acked = BTreeSet::new();
    while acked.len() < count {
        match next_delivery(&mut consumer) {
            GroupDelivery::Event(event) => {
                assert!(
                    acked.insert(job_of_event(&event.data)),
                    "a job delivered twice in one run"
                );
                consumer.ack(event.id).expect("ack");
            }
            GroupDelivery::CaughtUp => break,
            GroupDelivery::End(reason) => panic!("ended: {reason:?}"),
        }
    }
    consumer.flush().expect("flush");
    // Keep the membership (and its unacknowledged in-flight events) until the kill.
    std::mem::forget(consumer);
    member.ping().expect("ping after the acks");
    acked
}

#[test]
fn kill_9_of_the_server_mid_stream_loses_no_event_of_a_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let total = 3000;
    let mut server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..total);
    let mut acked_before: BTreeSet<usize> = BTreeSet::new();
    for round in 0..5 {
        let acked = consume_some(&server, 300 + round * 37);
        for job in &acked {
            assert!(
                !acked_before.contains(job),
                "round {round}: job {job} was delivered again after its ack was handled"
            );
        }
        acked_before.extend(acked);
        server.kill9();
        server = FloProcess::start(dir.path(), &[]);
    }
    // After the last restart: everything not acknowledged is delivered, nothing acknowledged.
    let mut member = client(&server);
    let mut consumer = member
        .join_group("durable")
        .glob("/jobs/**")
        .join()
        .expect("join");
    let mut rest = BTreeSet::new();
    loop {
        match next_delivery(&mut consumer) {
            GroupDelivery::Event(event) => {
                let job = job_of_event(&event.data);
                assert!(
                    !acked_before.contains(&job),
                    "job {job} redelivered after its ack"
                );
                assert!(rest.insert(job), "job {job} twice");
                consumer.ack(event.id).expect("ack");
            }
            GroupDelivery::CaughtUp => break,
            GroupDelivery::End(reason) => panic!("ended: {reason:?}"),
        }
    }
    consumer.leave().expect("leave");
    let all: BTreeSet<usize> = acked_before.union(&rest).copied().collect();
    assert_eq!(
        all.len(),
        total,
        "missing: {:?}",
        (0..total)
            .filter(|j| !all.contains(j))
            .take(10)
            .collect::<Vec<_>>()
    );
}

/// `flo --repair` opens the group journal too: a group keeps its acknowledged position
/// across a repairing start, and what it acknowledged then is still acknowledged after a
/// normal start.
#[test]
fn a_repairing_start_keeps_the_groups_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..100);
    let acked = consume_some(&server, 40);
    assert_eq!(acked.len(), 40);
    assert!(server.terminate().success());
    let server = FloProcess::start(dir.path(), &["--repair"]);
    let after_repair = consume_some(&server, 30);
    for job in &after_repair {
        assert!(
            !acked.contains(job),
            "job {job}, acknowledged before, was delivered again after flo --repair"
        );
    }
    assert!(server.terminate().success());
    let server = FloProcess::start(dir.path(), &[]);
    let rest = consume_some(&server, 1000);
    for job in &rest {
        assert!(
            !acked.contains(job) && !after_repair.contains(job),
            "job {job}, acknowledged before, was delivered again after a restart"
        );
    }
    assert_eq!(acked.len() + after_repair.len() + rest.len(), 100);
}

/// Runs `flo-client ARGS` against the server; returns (success, stdout, stderr).
fn cli(server: &FloProcess, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", &server.addr.to_string(), "--timeout", "10s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flo-client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Joins group `name` (one delivery before parking), nacks the jobs in `refuse` (parking
/// them) and acknowledges the rest until CaughtUp; returns the jobs it was given.
fn work_group(server: &FloProcess, name: &str, refuse: &[usize]) -> BTreeSet<usize> {
    let mut member = client(server);
    let mut consumer = member
        .join_group(name)
        .glob("/jobs/**")
        .max_deliveries(1)
        .join()
        .expect("join");
    let mut given = BTreeSet::new();
    while let GroupDelivery::Event(event) = next_delivery(&mut consumer) {
        let job = job_of_event(&event.data);
        given.insert(job);
        if refuse.contains(&job) {
            consumer.nack(&[event.id], Duration::ZERO).expect("nack");
        } else {
            consumer.ack(event.id).expect("ack");
        }
    }
    consumer.leave().expect("leave");
    given
}

/// The value after `label` in `flo-client groups info` output.
fn info_field(text: &str, label: &str) -> u64 {
    let line = text
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// `flo-client groups`: the list, info, parked, replay, reset and delete, each change durable
/// across kill -9 of the server.
#[test]
fn the_groups_cli_inspects_and_administers_a_group_across_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..5);
    assert_eq!(work_group(&server, "admin", &[1, 3]).len(), 5);
    let (ok, list, _) = cli(&server, &["groups"]);
    assert!(ok);
    let row = list
        .lines()
        .find(|line| line.starts_with("admin "))
        .unwrap_or_else(|| panic!("no admin row in {list}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    // GROUP MEMBERS PENDING PARKED FLOOR NEXT LAG ACK_MS MAXDEL MAXINF GLOB
    assert_eq!(
        columns,
        ["admin", "0", "0", "2", "5", "5", "0", "30000", "10", "1000", "/jobs/**"]
    );
    let (ok, parked, _) = cli(&server, &["groups", "parked", "admin"]);
    assert!(ok);
    assert_eq!(parked.lines().count(), 2, "{parked}");

    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    let (ok, info, _) = cli(&server, &["groups", "info", "admin"]);
    assert!(ok);
    assert_eq!(info_field(&info, "parked:"), 2, "{info}");
    let (ok, replayed, _) = cli(&server, &["groups", "replay", "admin"]);
    assert!(ok, "{replayed}");
    assert!(replayed.contains("replayed 2 parked events"), "{replayed}");
    assert_eq!(info_field(&replayed, "pending:"), 2);
    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    // The replay was durable: the two parked jobs come again, and only they.
    let again = work_group(&server, "admin", &[]);
    assert_eq!(again, [1, 3].into_iter().collect());

    let (ok, reset, _) = cli(&server, &["groups", "reset", "admin", "--to", "beginning"]);
    assert!(ok, "{reset}");
    assert_eq!(info_field(&reset, "next:"), 0);
    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    assert_eq!(
        work_group(&server, "admin", &[]).len(),
        5,
        "all five after the reset"
    );

    let (ok, deleted, _) = cli(&server, &["groups", "delete", "admin"]);
    assert!(ok && deleted.contains("deleted"), "{deleted}");
    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    let (ok, _, error) = cli(&server, &["groups", "info", "admin"]);
    assert!(!ok);
    assert!(error.contains("NoSuchGroup"), "{error}");
    assert!(server.terminate().success());
}

/// `flo-client groups replay NAME --id ... | --from ID --to ID`: only the chosen parked events
/// come again; an id that is not parked replays nothing (NotParked).
#[test]
fn the_groups_cli_replays_chosen_parked_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..5);
    assert_eq!(work_group(&server, "chosen", &[0, 1, 2, 3]).len(), 5);
    let (ok, parked, _) = cli(&server, &["groups", "parked", "chosen"]);
    assert!(ok);
    // "ID offset N", in log order: jobs 0 to 3.
    let ids: Vec<&str> = parked
        .lines()
        .map(|line| line.split_whitespace().next().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 4, "{parked}");
    let (ok, _, error) = cli(
        &server,
        &[
            "groups",
            "replay",
            "chosen",
            "--id",
            &format!("{},999.1", ids[0]),
        ],
    );
    assert!(!ok && error.contains("NotParked"), "{error}");
    let (ok, out, error) = cli(&server, &["groups", "replay", "chosen", "--id", ids[0]]);
    assert!(ok, "{error}");
    assert!(out.contains("replayed 1 parked events"), "{out}");
    let (ok, out, error) = cli(
        &server,
        &[
            "groups", "replay", "chosen", "--from", ids[2], "--to", ids[3],
        ],
    );
    assert!(ok, "{error}");
    assert!(out.contains("replayed 2 parked events"), "{out}");
    assert_eq!(info_field(&out, "parked:"), 1);
    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    assert_eq!(
        work_group(&server, "chosen", &[]),
        [0, 2, 3].into_iter().collect(),
        "the chosen three, durably"
    );
    let (ok, parked, _) = cli(&server, &["groups", "parked", "chosen"]);
    assert!(ok);
    assert!(parked.starts_with(ids[1]), "{parked}");
    // Issue 12 names the command `group replay-parked NAME`: the same as `groups replay`.
    let (ok, out, error) = cli(&server, &["group", "replay-parked", "chosen"]);
    assert!(ok, "{error}");
    assert!(out.contains("replayed 1 parked events"), "{out}");
    assert_eq!(
        work_group(&server, "chosen", &[]),
        [1].into_iter().collect()
    );
    assert!(server.terminate().success());
}

/// `flo-client groups create` with settings, `groups info` showing them and each member's
/// in-flight count, `groups update` on a live group; the settings survive kill -9. The member
/// acknowledges with ranges (the client's default): after its acks and a Pong nothing is
/// pending.
#[test]
fn group_settings_are_created_shown_updated_and_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..20);
    let create = [
        "groups",
        "create",
        "settings",
        "-n",
        "/jobs/**",
        "--ack-timeout",
        "5s",
        "--max-deliveries",
        "4",
        "--max-in-flight",
        "8",
    ];
    let (ok, created, error) = cli(&server, &create);
    assert!(ok, "{created}{error}");
    assert_eq!(info_field(&created, "ack time-out:"), 5000, "{created}");
    // The same again is the group as it is; other settings are refused.
    assert!(cli(&server, &create).0);
    let (ok, _, error) = cli(
        &server,
        &[
            "groups",
            "create",
            "settings",
            "-n",
            "/jobs/**",
            "--max-deliveries",
            "9",
        ],
    );
    assert!(!ok && error.contains("GroupSettingsMismatch"), "{error}");

    let mut member = client(&server);
    let mut consumer = member
        .join_group("settings")
        .glob("/jobs/**")
        .credit(100)
        .join()
        .expect("join");
    let mut held = Vec::new();
    for _ in 0..8 {
        match next_delivery(&mut consumer) {
            GroupDelivery::Event(event) => held.push(event.id),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    let (ok, info, _) = cli(&server, &["groups", "info", "settings"]);
    assert!(ok);
    assert_eq!(info_field(&info, "max in flight:"), 8, "{info}");
    let row = info
        .lines()
        .find(|line| line.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no member row in {info}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    // MEMBER CONNECTION IN-FLIGHT MAX CREDIT: the member holds its whole window of 8.
    assert_eq!(columns[2..4], ["8", "8"], "{info}");
    for id in &held {
        consumer.ack(*id).expect("ack");
    }
    // Leaving waits for the End, which follows the acks (journaled and synced before it).
    consumer.leave().expect("leave");
    let (ok, updated, error) = cli(
        &server,
        &["groups", "update", "settings", "--ack-timeout", "7s"],
    );
    assert!(ok, "{error}");
    assert_eq!(info_field(&updated, "ack time-out:"), 7000, "{updated}");
    assert_eq!(info_field(&updated, "max deliveries:"), 4, "{updated}");
    drop(member);

    server.kill9();
    let server = FloProcess::start(dir.path(), &[]);
    let (ok, info, _) = cli(&server, &["groups", "info", "settings"]);
    assert!(ok);
    assert_eq!(info_field(&info, "ack time-out:"), 7000, "{info}");
    assert_eq!(info_field(&info, "max deliveries:"), 4, "{info}");
    assert_eq!(info_field(&info, "max in flight:"), 8, "{info}");
    // The eight range-acked events are not delivered again: twelve are left.
    assert_eq!(work_group(&server, "settings", &[]).len(), 12);
    assert!(server.terminate().success());
}

/// `flo-client group info NAME --format json` (`group` is `groups` spelled for one group) has
/// what the text shows: the settings and each member with its in-flight count, its max in
/// flight and its credit; `groups --format json` has each group's settings.
#[test]
fn group_info_json_has_the_settings_and_the_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..10);
    let (ok, created, error) = cli(
        &server,
        &[
            "groups",
            "create",
            "json",
            "-n",
            "/jobs/**",
            "--ack-timeout",
            "5s",
            "--max-deliveries",
            "4",
            "--max-in-flight",
            "6",
            "--format",
            "json",
        ],
    );
    assert!(ok, "{error}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("one JSON object");
    assert_eq!(created["settings"]["max_in_flight"], 6, "{created}");
    assert_eq!(created["member_list"], serde_json::json!([]), "{created}");

    let mut member = client(&server);
    let mut consumer = member
        .join_group("json")
        .glob("/jobs/**")
        .credit(100)
        .join()
        .expect("join");
    for _ in 0..6 {
        match next_delivery(&mut consumer) {
            GroupDelivery::Event(_) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
    let (ok, info, error) = cli(&server, &["group", "info", "json", "--format", "json"]);
    assert!(ok, "{error}");
    assert_eq!(info.lines().count(), 1, "{info}");
    let info: serde_json::Value = serde_json::from_str(&info).expect("one JSON object");
    assert_eq!(info["name"], "json", "{info}");
    assert_eq!(info["members"], 1, "{info}");
    assert_eq!(info["in_flight"], 6, "{info}");
    assert_eq!(
        info["settings"],
        serde_json::json!({"ack_timeout_ms": 5000, "max_deliveries": 4, "max_in_flight": 6}),
        "{info}"
    );
    let members = info["member_list"].as_array().expect("a member list");
    assert_eq!(members.len(), 1, "{info}");
    let listed = &members[0];
    assert_eq!(
        listed["subscription_id"],
        consumer.subscription_id(),
        "{info}"
    );
    assert!(
        listed["connection"]
            .as_str()
            .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
        "{info}"
    );
    assert_eq!(listed["in_flight"], 6, "{info}");
    assert_eq!(listed["max_in_flight"], 6, "{info}");
    // Credit 100, six events sent: 94 left (the client grants more only at half the window).
    assert_eq!(listed["credit"], 94, "{info}");

    let (ok, list, error) = cli(&server, &["groups", "--format", "json"]);
    assert!(ok, "{error}");
    let list: serde_json::Value = serde_json::from_str(&list).expect("one JSON array");
    let groups = list.as_array().expect("an array");
    assert_eq!(groups.len(), 1, "{list}");
    assert_eq!(groups[0]["settings"], info["settings"], "{list}");
    assert_eq!(groups[0]["members"], 1, "{list}");
    consumer.leave().expect("leave");

    // reset and replay show the group as info does: with its settings (and members).
    for format in ["json", "human"] {
        for action in [
            &["reset", "json", "--from", "beginning"][..],
            &["replay", "json"],
        ] {
            let mut args = vec!["group"];
            args.extend_from_slice(action);
            args.extend_from_slice(&["--format", format]);
            let (ok, out, error) = cli(&server, &args);
            assert!(ok, "{args:?}: {error}");
            if format == "json" {
                let shown: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
                assert_eq!(shown["settings"], info["settings"], "{args:?}: {out}");
                assert_eq!(
                    shown["member_list"],
                    serde_json::json!([]),
                    "{args:?}: {out}"
                );
            } else {
                for line in [
                    "ack time-out:   5000 ms",
                    "max deliveries: 4",
                    "max in flight:  6 per member",
                ] {
                    assert!(out.contains(line), "{args:?}: no {line:?} in {out}");
                }
            }
        }
    }
    assert!(server.terminate().success());
}

/// `flo-client groups ... | head` where the reader has gone before the output: the command
/// ends quietly with status 0 (before, `println!` panicked with "failed printing to stdout:
/// Broken pipe" and a stack trace, status 101), for the text and the JSON forms.
#[test]
fn the_groups_cli_ends_quietly_when_its_reader_has_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let (ok, _, error) = cli(&server, &["groups", "create", "piped", "-n", "/jobs/**"]);
    assert!(ok, "{error}");
    for args in [
        &["groups", "info", "piped"][..],
        &["groups"],
        &["groups", "replay", "piped"],
        &["groups", "--format", "json"],
        &["group", "info", "piped", "--format", "json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
            .args(["-H", &server.addr.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .expect("run flo-client");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    assert!(server.terminate().success());
}

/// What the walkthrough of README.md and docs/consumers.md met (groupscli8): `group` for
/// `groups`, `reset --from` for `--to`, ages such as 7d as in `consume --from`, an update that
/// changes nothing, settings of 0, and a member that joins without -n.
#[test]
fn the_groups_cli_takes_what_the_docs_say_and_explains_what_it_refuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..3);
    let (ok, _, error) = cli(&server, &["groups", "create", "walk", "-n", "/jobs/**"]);
    assert!(ok, "{error}");
    assert_eq!(work_group(&server, "walk", &[]).len(), 3);

    // A week ago is before every event: the group starts again at the beginning.
    let (ok, reset, error) = cli(&server, &["group", "reset", "walk", "--from", "7d"]);
    assert!(ok, "{error}");
    assert_eq!(info_field(&reset, "floor:"), 0, "{reset}");
    let (ok, _, error) = cli(&server, &["groups", "reset", "walk", "--to", "-2"]);
    assert!(
        !ok && error.contains("a group cannot start at \"-2\""),
        "{error}"
    );

    let (ok, _, error) = cli(&server, &["groups", "update", "walk"]);
    assert!(
        !ok && error.starts_with("flo-client: nothing to update"),
        "{error}"
    );
    for setting in ["--max-deliveries", "--max-in-flight"] {
        let (ok, _, error) = cli(
            &server,
            &["groups", "create", "zero", "-n", "/jobs/**", setting, "0"],
        );
        assert!(
            !ok && error.contains("0 is not in 1.."),
            "{setting}: {error}"
        );
    }

    let (ok, _, error) = cli(&server, &["consume", "--group", "walk"]);
    assert!(!ok, "{error}");
    assert!(error.contains("GroupGlobMismatch"), "{error}");
    assert!(
        error.contains("without -n the glob is /**: join with -n and the group's glob"),
        "{error}"
    );
    assert!(server.terminate().success());
}

/// Walkthrough (session 15): `consume --group NAME --from end` on a group that already exists
/// went on from the group's position, as documented, but without a word, so the user saw old
/// events where they had asked for new ones. The CLI now says so on standard error; the join
/// that creates the group (where --from applies) says nothing.
#[test]
fn from_on_an_existing_group_is_named_as_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    produce_jobs(&server, 0..3);
    let join = |from: &str| {
        cli(
            &server,
            &[
                "consume", "--group", "late", "-n", "/jobs/**", "--from", from, "--limit", "1",
                "--format", "json",
            ],
        )
    };
    // Created at the end: nothing stored is delivered, and there is nothing to note.
    let (ok, out, error) = join("end");
    assert!(ok, "{error}");
    assert_eq!(out, "", "{error}");
    assert!(!error.contains("exists"), "{error}");
    produce_jobs(&server, 3..5);
    // The group exists now: --from earliest does not move it back, and the CLI says so.
    let (ok, out, error) = join("earliest");
    assert!(ok, "{error}");
    assert!(out.contains("\"job-3\""), "{out}");
    assert!(error.contains("group \"late\" exists"), "{error}");
    assert!(error.contains("not from --from earliest"), "{error}");
    assert!(
        error.contains("flo-client groups reset late --to earliest"),
        "{error}"
    );
    assert!(server.terminate().success());
}
