//! `flo-client bench` against a real `flo` on 127.0.0.1 port 0: the JSON it prints counts the
//! acknowledged events, and its figures are consistent. Small counts, no timing assertions
//! (a benchmark is never a timed test).

mod common;

use std::process::Command;

use common::FloProcess;

/// Runs `flo-client bench --addr <flo> <args> --json` and returns its one line of JSON.
fn bench_json(flo: &FloProcess, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .arg("bench")
        .args(["--addr", &flo.addr.to_string()])
        .args(args)
        .arg("--json")
        .output()
        .expect("run flo-client bench");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}\n{stdout}");
    assert!(
        stderr.is_empty(),
        "no progress line when stderr is not a terminal: {stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {stdout}");
    lines[0].to_string()
}

/// The raw text of a field's value in a flat JSON object.
fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).expect("a value ends");
    &rest[..end]
}

fn number(json: &str, name: &str) -> f64 {
    let text = field(json, name);
    text.parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {text} in {json}"))
}

/// min <= p50 <= p99 <= p99.9 <= max, all positive.
fn assert_ordered_percentiles(json: &str, prefix: &str) {
    let values: Vec<f64> = ["min", "p50", "p99", "p999", "max"]
        .iter()
        .map(|name| number(json, &format!("{prefix}_{name}_us")))
        .collect();
    assert!(values[0] > 0.0, "{prefix}: {json}");
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "{prefix} percentiles out of order: {values:?}"
    );
}

#[test]
fn produce_reports_every_acknowledged_event() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "always"]);
    let json = bench_json(
        &flo,
        &[
            "--connections",
            "2",
            "--window",
            "8",
            "--size",
            "100",
            "--count",
            "2001",
            "--label",
            "flo-test",
        ],
    );
    assert_eq!(field(&json, "target"), "\"flo-test\"");
    assert_eq!(field(&json, "kind"), "\"produce\"");
    assert_eq!(number(&json, "connections"), 2.0);
    assert_eq!(number(&json, "window"), 8.0);
    assert_eq!(number(&json, "events"), 2001.0);
    assert_eq!(number(&json, "bytes"), 200_100.0);
    assert!(number(&json, "events_per_s") > 0.0, "{json}");
    assert!(number(&json, "mb_per_s") > 0.0, "{json}");
    assert_ordered_percentiles(&json, "latency");
    assert_eq!(field(&json, "e2e_p99_us"), "null");
    flo.terminate();
}

#[test]
fn read_reads_back_exactly_the_stored_events() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "interval:1000"]);
    // Events from an earlier run stay in the log; the read must not count them.
    bench_json(&flo, &["--count", "700", "--size", "64"]);
    let json = bench_json(
        &flo,
        &[
            "--read",
            "--count",
            "3000",
            "--size",
            "1024",
            "--connections",
            "3",
            "--window",
            "16",
        ],
    );
    assert_eq!(field(&json, "target"), "\"flo-read\"");
    assert_eq!(field(&json, "kind"), "\"read\"");
    assert_eq!(number(&json, "events"), 3000.0);
    assert_eq!(number(&json, "bytes"), 3000.0 * 1024.0);
    assert!(number(&json, "events_per_s") > 0.0, "{json}");
    assert_ordered_percentiles(&json, "latency");
    flo.terminate();
}

#[test]
fn namespaces_spread_the_events_round_robin() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "interval:1000"]);
    let json = bench_json(
        &flo,
        &[
            "--namespaces",
            "7",
            "--count",
            "700",
            "--connections",
            "3",
            "--window",
            "8",
        ],
    );
    assert_eq!(number(&json, "events"), 700.0);
    let mut client =
        flo::client::Client::connect(&flo.addr.to_string(), flo::client::ClientOptions::default())
            .expect("connect");
    let mut counts = Vec::new();
    client
        .for_each_namespace("/bench/**", &mut |namespace| {
            counts.push((namespace.name.clone(), namespace.event_count));
            true
        })
        .expect("list the namespaces");
    // Seven namespaces under the run's one, 100 events each, and none in the run's own.
    assert_eq!(counts.len(), 7, "{counts:?}");
    let run = counts[0].0.rsplit_once('/').expect("a run namespace").0;
    for (index, (name, count)) in counts.iter().enumerate() {
        assert_eq!(name, &format!("{run}/{index}"), "{counts:?}");
        assert_eq!(*count, 100, "{counts:?}");
    }
    flo.terminate();
}

#[test]
fn a_tailing_consumer_measures_end_to_end_latency() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "always"]);
    let json = bench_json(
        &flo,
        &[
            "--consumers",
            "1",
            "--count",
            "500",
            "--rate",
            "5000",
            "--window",
            "16",
        ],
    );
    assert_eq!(number(&json, "events"), 500.0);
    assert_eq!(number(&json, "rate"), 5000.0);
    assert_ordered_percentiles(&json, "latency");
    assert_ordered_percentiles(&json, "e2e");
    flo.terminate();
}

#[test]
fn several_consumers_each_receive_every_event() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "interval:1000"]);
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["bench", "--addr", &flo.addr.to_string()])
        .args(["--consumers", "3", "--count", "400", "--rate", "4000"])
        .output()
        .expect("run flo-client bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("400 events in"), "{stdout}");
    assert!(stdout.contains("end-to-end us:"), "{stdout}");
    flo.terminate();
}

#[test]
fn group_members_share_and_ack_every_event() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &["--fsync", "always"]);
    // Events of an earlier run stay in the log; the group must not deliver them.
    bench_json(&flo, &["--count", "300"]);
    let json = bench_json(
        &flo,
        &[
            "--members",
            "3",
            "--count",
            "900",
            "--rate",
            "6000",
            "--window",
            "16",
        ],
    );
    assert_eq!(field(&json, "kind"), "\"group\"");
    assert_eq!(number(&json, "members"), 3.0);
    assert_eq!(number(&json, "events"), 900.0);
    assert_ordered_percentiles(&json, "latency");
    assert_ordered_percentiles(&json, "e2e");
    assert_ordered_percentiles(&json, "acked");
    assert!(
        number(&json, "acked_min_us") >= number(&json, "e2e_min_us"),
        "{json}"
    );
    let json = bench_json(
        &flo,
        &[
            "--members",
            "2",
            "--drain",
            "--count",
            "1500",
            "--connections",
            "2",
        ],
    );
    assert_eq!(field(&json, "kind"), "\"group-drain\"");
    assert_eq!(number(&json, "events"), 1500.0);
    assert_eq!(field(&json, "acked_p99_us"), "null");
    // Each run deleted its group once nothing was pending.
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            &flo.addr.port().to_string(),
            "groups",
        ])
        .output()
        .expect("run flo-client groups");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(!stdout.contains("bench"), "{stdout}");
    flo.terminate();
}

#[test]
fn text_output_names_throughput_and_latency() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let flo = FloProcess::start(dir.path(), &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &flo.addr.port().to_string()])
        .args(["bench", "--count", "300"])
        .output()
        .expect("run flo-client bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("300 events in"), "{stdout}");
    assert!(stdout.contains("events/s"), "{stdout}");
    assert!(stdout.contains("ack latency us:"), "{stdout}");
    assert!(stdout.contains("p99.9"), "{stdout}");
    flo.terminate();
}

#[test]
fn bad_arguments_are_refused_before_connecting() {
    for args in [
        &["--connections", "0"][..],
        &["--consumers", "65"][..],
        &["--duration", "0"][..],
        &["--consumers", "1", "--size", "4"][..],
        &["--members", "65"][..],
        &["--members", "2", "--size", "4"][..],
        &["--drain"][..],
        &["--namespaces", "0"][..],
        &["--namespaces", "2", "--read"][..],
    ] {
        // Port 9 (discard) on loopback: nothing listens, so only argument checks can pass.
        let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
            .args(["bench", "--addr", "127.0.0.1:9"])
            .args(args)
            .output()
            .expect("run flo-client bench");
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(!output.stderr.is_empty(), "{args:?} without a message");
    }
}
