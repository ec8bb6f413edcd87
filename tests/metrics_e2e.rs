//! The metrics endpoint after a mixed workload, on the real binary: produces (one refused),
//! a consumer reading them back, small segments with retention deleting old ones. The scrape
//! shows what happened (appends by origin, the error by code, fsyncs and their latency, cache
//! reads, retention, connections) and passes `promtool check metrics` (the Debian package
//! `prometheus`; ci/test.sh installs it and sets FLO_REQUIRE_PROMTOOL=1, elsewhere the check
//! is skipped with a note when promtool is missing). The endpoint's own hostile cases are in
//! tests/hostile/metrics.rs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FloProcess, RawConn};
use flo::event::StartPosition;
use flo::protocol::{ErrorCode, ServerFrame, Subscribe};

fn metrics_addr(server: &FloProcess) -> SocketAddr {
    server
        .early_lines
        .iter()
        .find_map(|line| line.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("flo logged its metrics address")
        .parse()
        .expect("a socket address")
}

/// The body of a `GET /metrics`.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: flo\r\n\r\n")
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "scrape failed: {head}");
    body.to_string()
}

fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in the scrape"))
}

/// Runs `promtool check metrics` on `text`; false when promtool is not installed.
fn promtool_check(text: &str) -> bool {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("FLO_REQUIRE_PROMTOOL").is_none(),
                "FLO_REQUIRE_PROMTOOL is set but promtool is not installed"
            );
            eprintln!(
                "note: promtool is not installed (apt-get install prometheus); check skipped"
            );
            return false;
        }
        Err(error) => panic!("could not run promtool: {error}"),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[test]
fn a_scrape_after_a_mixed_workload_shows_it_and_passes_promtool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(
        dir.path(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--segment-size",
            "4K",
            "--max-events",
            "20",
        ],
    );
    let addr = metrics_addr(&server);
    let mut producer = RawConn::hello(server.addr);
    let data = [7u8; 500];
    for op_id in 1..=40 {
        producer.produce(op_id, "/metrics/test", &data);
        match producer.recv() {
            Some(ServerFrame::Ack(ack)) => assert_eq!(ack.op_id, op_id),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    producer.produce(41, "no-slash", b"refused");
    match producer.recv() {
        Some(ServerFrame::Error(error)) => assert_eq!(error.code, ErrorCode::InvalidNamespace),
        other => panic!("expected InvalidNamespace, got {other:?}"),
    }
    let mut consumer = RawConn::hello(server.addr);
    consumer.subscribe(Subscribe {
        subscription_id: 1,
        glob: "/metrics/**".into(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: true,
        credit: 1000,
        skip_damaged: false,
        order: Default::default(),
    });
    loop {
        match consumer.recv() {
            Some(ServerFrame::CaughtUp { .. }) => break,
            Some(ServerFrame::Event { .. } | ServerFrame::Skipped { .. }) => {}
            other => panic!("unexpected frame while consuming: {other:?}"),
        }
    }
    // Retention runs at housekeeping (every second): wait for it.
    let started = Instant::now();
    let text = loop {
        let text = scrape(addr);
        if sample(&text, "flo_retention_deleted_segments_total") >= 1.0 {
            break text;
        }
        // A hang guard: housekeeping runs every second.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "retention deleted nothing within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(&text, "flo_events_appended_total{origin=\"1\"}"),
        40.0
    );
    assert_eq!(
        sample(&text, "flo_event_data_appended_bytes_total{origin=\"1\"}"),
        40.0 * 500.0
    );
    assert_eq!(
        sample(&text, "flo_produce_errors_total{code=\"InvalidNamespace\"}"),
        1.0
    );
    assert_eq!(sample(&text, "flo_connections{kind=\"client\"}"), 2.0);
    assert_eq!(sample(&text, "flo_subscriptions"), 1.0);
    assert!(sample(&text, "flo_fsyncs_total") >= 40.0);
    assert!(sample(&text, "flo_fsync_duration_seconds_count") >= 40.0);
    assert!(sample(&text, "flo_turn_duration_seconds_count") >= 40.0);
    assert!(sample(&text, "flo_log_reads_total{source=\"cache\"}") >= 1.0);
    assert!(sample(&text, "flo_retention_deleted_events_total") >= 1.0);
    assert!(sample(&text, "flo_log_segments") >= 2.0);
    assert!(sample(&text, "flo_log_events") < 40.0);
    assert!(sample(&text, "flo_received_bytes_total") > 40.0 * 500.0);
    assert!(sample(&text, "flo_sent_bytes_total") > 0.0);
    assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&text, "process_open_fds") >= 5.0);
    promtool_check(&text);
    drop(server);
}

/// `flo-client info` on a real server, as text and as JSON: the version, the policy, the
/// counts after two produces, and the connection of a producer that is still open; and
/// `flo-client status --format json`.
#[test]
fn flo_client_info_shows_version_policy_counts_and_connections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--fsync", "interval:50"]);
    let mut producer = RawConn::hello(server.addr);
    for op_id in 1..=2 {
        producer.produce(op_id, "/info/test", b"x");
        assert!(matches!(producer.recv(), Some(ServerFrame::Ack(_))));
    }
    let host = server.addr.to_string();
    let run = |format: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
            .args(["-H", &host, "info", "--format", format])
            .output()
            .expect("run flo-client");
        assert!(
            output.status.success(),
            "flo-client info failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    };
    let text = run("human");
    let version = format!("version:       flo {}\n", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&version), "{text}");
    assert!(text.contains("fsync:         interval:50\n"), "{text}");
    assert!(text.contains("events:        2\n"), "{text}");
    assert!(text.contains("segments:      1\n"), "{text}");
    // The producer and flo-client's own connection.
    assert!(
        text.contains("connections:   2 clients, 0 peers\n"),
        "{text}"
    );
    let json = run("json");
    assert!(json.starts_with("{\"version\":\""), "{json}");
    assert!(json.contains("\"fsync\":\"interval:50\""), "{json}");
    assert!(json.contains("\"event_count\":2,"), "{json}");
    // Then the retention rules and purges in force (none here).
    assert!(
        json.trim_end()
            .ends_with("\"group_count\":0,\"retention\":[],\"purges\":[]}"),
        "{json}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", &host, "status", "--format", "json"])
        .output()
        .expect("run flo-client");
    let status = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        status.trim_end(),
        "{\"actor_id\":1,\"counter\":2,\"event_count\":2,\"durable_end\":2,\"vector\":{\"1\":2},\"members\":[],\
         \"order\":{\"stable_clock\":2,\"held_by\":null,\"waiting_subscriptions\":0,\"waiting_events\":0,\"waiting_ms\":0},\"hold\":null}"
    );
    drop(server);
}

/// A read that does not fill the reactor's buffer ends the socket's reads for the turn (the
/// receive queue is empty; later bytes raise a new readiness edge), so a client that produces
/// one event at a time costs the server one read per produce, not a second one that only says
/// `WouldBlock` (the syscall issue 13 counted at a third of the calls per event at window 1).
#[test]
fn a_produce_at_a_time_costs_one_read_and_no_read_that_finds_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(
        dir.path(),
        &["--metrics-addr", "127.0.0.1:0", "--fsync", "never"],
    );
    let addr = metrics_addr(&server);
    let mut producer = RawConn::hello(server.addr);
    let before = scrape(addr);
    let produces = 200u64;
    for op_id in 1..=produces {
        producer.produce(op_id, "/reads/test", b"one at a time");
        match producer.recv() {
            Some(ServerFrame::Ack(ack)) => assert_eq!(ack.op_id, op_id),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    let after = scrape(addr);
    let delta = |name| sample(&after, name) - sample(&before, name);
    let reads = delta("flo_socket_reads_total");
    let would_block = delta("flo_socket_reads_would_block_total");
    assert!(
        reads >= produces as f64,
        "{reads} reads for {produces} produces"
    );
    // Spurious edges (bytes that arrive between the poll and the read) may cost a few.
    assert!(
        would_block <= 10.0,
        "{would_block} of {reads} reads found nothing for {produces} produces sent one at a time"
    );
    server.terminate();
}
