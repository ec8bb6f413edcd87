//! The README walkthrough, run for real: every ```console block in README.md is a transcript
//! of `$ command` lines, each followed by the output it must print. This test starts the real
//! `flo` binary on a free port in a temporary directory, runs each command with the real
//! `flo-client` (through `script`, so standard input is a terminal, as for a reader typing it),
//! and compares the output with the README's. A tailing consumer (`consume -t`) runs in the
//! background until it has printed what the README shows. Timestamps are compared as "a number",
//! and `info`'s uptime line by its name only.
//! So the README cannot drift from the program.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::FloProcess;
use flo::event::StartPosition;

// The README's Rust examples, compiled into this test and run by
// `the_readmes_rust_examples_run` (their `main` only reads arguments and calls `run`).
#[allow(dead_code)]
#[path = "../examples/event_sourcing.rs"]
mod event_sourcing;
#[allow(dead_code)]
#[path = "../examples/worker_group.rs"]
mod worker_group;

struct Step {
    command: String,
    expected: String,
}

fn transcript_steps(readme: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.trim().to_string(),
                expected: String::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push_str(line);
            step.expected.push('\n');
        }
    }
    steps
}

/// Trailing spaces and blank lines don't count, \r\n is \n, and every JSON timestamp is 0.
fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.trim_end().to_string();
        // `flo-client info`'s uptime differs from run to run.
        if line.starts_with("uptime:") {
            line = "uptime:".to_string();
        }
        if let Some(start) = line.find("\"timestamp\":") {
            let digits_start = start + "\"timestamp\":".len();
            let digits_end = line[digits_start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(line.len(), |i| digits_start + i);
            line.replace_range(digits_start..digits_end, "0");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// The README's command with the test's binary and port.
fn local_command(command: &str, port: u16) -> String {
    let client = env!("CARGO_BIN_EXE_flo-client");
    let rest = command
        .strip_prefix("flo-client")
        .unwrap_or_else(|| panic!("README commands start with flo-client: {command}"));
    let rest = rest.replace(" -H localhost -p 3000", "");
    format!("{client} -p {port}{rest}")
}

fn run_in_terminal(command: &str) -> String {
    let output = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Starts a tailing consumer and reads its output until it matches `expected`.
fn run_tail(command: &str, expected: &str) -> String {
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tailing consumer");
    let mut stdout = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut chunk = [0u8; 4096];
    while normalize(&String::from_utf8_lossy(&seen)) != normalize(expected)
        && Instant::now() < deadline
    {
        match stdout.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(count) => seen.extend_from_slice(&chunk[..count]),
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait for the consumer");
    assert!(
        status.success(),
        "Ctrl-C ends a tailing consumer with exit code 0"
    );
    String::from_utf8_lossy(&seen).to_string()
}

#[test]
fn the_readme_walkthrough_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let steps = transcript_steps(&readme);
    assert!(steps.len() >= 8, "the README has its walkthrough");
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let port = server.addr.port();
    for step in &steps {
        let command = local_command(&step.command, port);
        let actual = if step.command.contains(" -t") {
            run_tail(&command, &step.expected)
        } else {
            run_in_terminal(&command)
        };
        assert_eq!(
            normalize(&actual),
            normalize(&step.expected),
            "README command `{}` printed something else",
            step.command
        );
    }
}

/// The README's Rust, run against a real server: `cargo run --example worker_group` (three
/// workers share a group, each job done by one of them; a second run carries on with the new
/// jobs only) and `cargo run --example event_sourcing` ("Event sourcing with flo": load the
/// aggregate, append with an expectation on its newest event, produce once through an
/// idempotent producer; a second run appends on top of the first).
#[test]
fn the_readmes_rust_examples_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let addr = server.addr.to_string();
    for jobs in [30, 10] {
        let done: Vec<u64> = worker_group::run(&addr, 3, jobs)
            .expect("worker_group")
            .into_iter()
            .map(|done| done.expect("a worker failed"))
            .collect();
        assert_eq!(done.len(), 3);
        assert_eq!(
            done.iter().sum::<u64>(),
            jobs as u64,
            "jobs per worker {done:?}"
        );
    }
    let mut client = common::client(&server);
    let info = client.group_info("worker-example").expect("group info");
    assert_eq!(
        (info.members, info.pending, info.parked),
        (0, 0, 0),
        "{info:?}"
    );

    event_sourcing::run(&addr).expect("the first run");
    event_sourcing::run(&addr).expect("the second run");
    let mut read = |namespace: &str| -> Vec<flo::event::Event> {
        client
            .consume()
            .glob(namespace)
            .start(StartPosition::Beginning)
            .subscribe()
            .expect("subscribe")
            .map(|event| event.expect("event"))
            .collect()
    };
    let account = read("/accounts/42");
    let data: Vec<&[u8]> = account.iter().map(|e| e.data.as_slice()).collect();
    assert_eq!(data, [&b"withdrew 5"[..], b"withdrew 5"]);
    // The second run loaded the first one's event and appended on top of it.
    assert_eq!(account[0].parent_id, None);
    assert_eq!(account[1].parent_id, Some(account[0].id));
    assert_eq!(read("/orders").len(), 2);
}
