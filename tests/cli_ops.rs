//! The operator's commands of `flo-client` against the real server: `purge` and what `info`
//! shows of purges and retention rules (text and JSON), `groups --format json`, and `top`,
//! piped (one refresh after another, text and JSON) and in a real terminal (tmux), where it
//! redraws in place and shows new appends. And Ctrl-C in the middle of a piped `produce`: every
//! stored event's id is printed and one line says how many lines were produced.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{success_stdout as stdout, FloProcess, RawConn};

fn flo_client(server: &FloProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", &server.addr.to_string()])
        .args(args)
        .env_remove("FLO_ADDR")
        .env_remove("FLO_TOKEN")
        .output()
        .expect("run flo-client")
}

fn metrics_addr(server: &FloProcess) -> String {
    server
        .early_lines
        .iter()
        .find_map(|line| line.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("a metrics start-up line")
        .to_string()
}

#[test]
fn purge_and_info_show_purges_and_retention_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--retention-rule", "/metrics/** keep 7d"]);
    let text = stdout(&flo_client(
        &server,
        &["produce", "-n", "/tenant/1", "-d", "x"],
    ));
    let id = text.lines().next().expect("an id").trim().to_string();
    let text = stdout(&flo_client(
        &server,
        &["purge", "-n", "/tenant/**", "--before", &id],
    ));
    assert_eq!(text, format!("/tenant/**: purged before id {id}\n"));
    let text = stdout(&flo_client(
        &server,
        &[
            "purge",
            "-n",
            "/tenant/**",
            "--before",
            &id,
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        text,
        format!("{{\"glob\":\"/tenant/**\",\"before_id\":\"{id}\",\"changed\":false}}\n")
    );
    let text = stdout(&flo_client(&server, &["info"]));
    assert!(
        text.contains("retention:     /metrics/** keep 7d (hidden before ms:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("purge:         /tenant/** before id {id}")),
        "{text}"
    );
    let text = stdout(&flo_client(&server, &["info", "--format", "json"]));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("\"retention\":[{\"glob\":\"/metrics/**\",\"keep_ms\":604800000,"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\"purges\":[{{\"glob\":\"/tenant/**\",\"before_id\":\"{id}\"}}]"
        )),
        "{text}"
    );
    let bad = flo_client(&server, &["purge", "-n", "/x", "--before", "end"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    // A bound ahead of the server (attack round 3, F7) is refused on one line, exit status 1,
    // and the namespace takes new events.
    for future in ["2999-01-01T00:00:00Z", "0000000099999999999900001"] {
        let ahead = flo_client(&server, &["purge", "-n", "/tenant/**", "--before", future]);
        let message = String::from_utf8_lossy(&ahead.stderr).into_owned();
        assert_eq!(ahead.status.code(), Some(1), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains("PurgeBoundAhead (48)"), "{message}");
    }
    let later = stdout(&flo_client(
        &server,
        &["produce", "-n", "/tenant/1", "-d", "later"],
    ));
    let consumed = stdout(&flo_client(
        &server,
        &["consume", "-n", "/tenant/**", "--format", "json"],
    ));
    assert!(
        consumed.contains(later.lines().next().expect("an id").trim()),
        "{consumed}"
    );
    assert_eq!(
        stdout(&flo_client(&server, &["groups", "--format", "json"])),
        "[]\n"
    );
}

#[test]
fn top_prints_one_refresh_after_another_when_piped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    stdout(&flo_client(&server, &["produce", "-n", "/a", "-d", "x"]));
    let text = stdout(&flo_client(
        &server,
        &[
            "top",
            "--count",
            "2",
            "--interval",
            "100ms",
            "--metrics-addr",
            &metrics,
        ],
    ));
    assert_eq!(text.matches("appended/s").count(), 2, "{text}");
    assert!(
        !text.contains('\x1b'),
        "no terminal codes when piped: {text:?}"
    );
    assert!(text.contains("clients      1"), "{text}");
    // The header's time is a date and time (walk11: it was seconds since the epoch).
    let header = text.lines().next().unwrap_or_default();
    let at = header.split("(at ").nth(1).unwrap_or_default();
    let stamp: Vec<char> = at.chars().take(23).collect();
    assert!(
        stamp.len() == 23
            && stamp[4] == '-'
            && stamp[10] == 'T'
            && stamp[13] == ':'
            && at[19..].starts_with(" UTC, refreshing"),
        "{header}"
    );
    let text = stdout(&flo_client(
        &server,
        &[
            "top",
            "--count",
            "2",
            "--interval",
            "100ms",
            "--format",
            "json",
        ],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("{\"appended_per_second\":null,"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("{\"appended_per_second\":0.000,"),
        "{text}"
    );
    assert!(lines[1].contains("\"groups\":[]"), "{text}");
    // `top | head`: a reader that has gone ends it quietly with 0, as for `consume`.
    // Walkthrough (session 9): it failed with "could not write to standard output: broken
    // pipe" and exit code 1.
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", &server.addr.to_string(), "top", "--interval", "50ms"])
        .env_remove("FLO_ADDR")
        .env_remove("FLO_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client top");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the first line");
    assert!(first.starts_with("flo 0.1.0"), "{first:?}");
    let output = child.wait_with_output().expect("top exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}

/// Kills the tmux session when the test ends, passed or not.
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn capture(session: &str) -> String {
    let output = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .expect("tmux capture-pane");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_for_screen(session: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let screen = capture(session);
        if check(&screen) {
            return screen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the terminal never showed {what}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_redraws_in_place_in_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test (apt-get install tmux)");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let session = TmuxSession(format!("flo-top-{}", std::process::id()));
    let command = format!(
        "{} -H {} top --interval 100ms",
        env!("CARGO_BIN_EXE_flo-client"),
        server.addr
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "120",
            "-y",
            "30",
            &command,
        ])
        .status()
        .expect("tmux new-session");
    assert!(status.success());
    wait_for_screen(&session.0, "a first refresh", |s| s.contains("appended/s"));
    for _ in 0..20 {
        stdout(&flo_client(&server, &["produce", "-n", "/top", "-d", "x"]));
    }
    let screen = wait_for_screen(&session.0, "20 events", |s| {
        s.contains("events           20")
    });
    // Redrawn in place: one screen, not a scroll of refreshes.
    assert_eq!(screen.matches("appended/s").count(), 1, "{screen}");
}

#[test]
fn produce_prints_json_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let text = stdout(&flo_client(
        &server,
        &["produce", "-n", "/j", "-d", "x", "--format", "json"],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("{\"id\":\"") && lines[0].len() == 34,
        "{text}"
    );
    assert_eq!(lines[1], "{\"produced\":1,\"namespace\":\"/j\"}");
}

/// Issue 14 lists three expectations of a conditional produce: its newest event is ID, it has
/// no events, it exists. `--expect-last exists` is the third (the CLI had only the first two):
/// refused with exit code 3 on a namespace without events, appended on one with events.
#[test]
fn produce_expect_last_exists_appends_only_to_a_namespace_with_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let refused = flo_client(
        &server,
        &[
            "produce",
            "-n",
            "/acct/1",
            "--expect-last",
            "exists",
            "-d",
            "x",
        ],
    );
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{error}");
    assert!(
        error.starts_with("flo-client: expectation failed: the newest event of /acct/1 is none"),
        "{error}"
    );
    stdout(&flo_client(
        &server,
        &[
            "produce",
            "-n",
            "/acct/1",
            "--expect-last",
            "none",
            "-d",
            "opened",
        ],
    ));
    let text = stdout(&flo_client(
        &server,
        &[
            "produce",
            "-n",
            "/acct/1",
            "--expect-last",
            "exists",
            "-d",
            "deposit",
        ],
    ));
    assert!(
        text.ends_with("Successfully produced 1 events to /acct/1\n"),
        "{text}"
    );
    let data: Vec<Vec<u8>> = RawConn::hello(server.addr)
        .read_all()
        .into_iter()
        .map(|event| event.data)
        .collect();
    assert_eq!(data, [b"opened".to_vec(), b"deposit".to_vec()]);
}

/// Walk9: `produce --replicas 3` against a server outside any cluster waited the 5 s
/// replication time-out, then failed with "reached 1 of 3 replicas" (its event appended). The
/// server now refuses it in its own turn, says why, and appends nothing.
#[test]
fn replicas_above_1_on_a_standalone_server_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let output = flo_client(
        &server,
        &["produce", "-n", "/r", "-d", "x", "--replicas", "3"],
    );
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("NotReady")
            && message.contains("3 replicas asked, but this server is not in a cluster")
            && !message.contains("reached 1 of 3"),
        "{message}"
    );
    let info = stdout(&flo_client(&server, &["info", "--format", "json"]));
    assert!(
        info.contains("\"event_count\":0,"),
        "nothing was appended: {info}"
    );
    let text = stdout(&flo_client(&server, &["produce", "-n", "/r", "-d", "x"]));
    assert!(
        text.ends_with("Successfully produced 1 events to /r\n"),
        "{text}"
    );
}

#[test]
fn cluster_members_prints_json_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let text = stdout(&flo_client(
        &server,
        &["cluster", "members", "--format", "json"],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("{\"actor_id\":") && lines[0].contains("\"state\":\"self\""),
        "{text}"
    );
    assert!(
        lines[0].ends_with(&format!("\"addr\":\"{}\"}}", server.addr)),
        "{text}"
    );
}

/// Walkthrough (session 9): Ctrl-C in the middle of `seq 1000000 | flo-client produce -n /x`
/// killed the producer with events stored whose ids it never printed (61,630 stored, 61,079
/// printed) and without a word, so a user could not tell which lines to send again. Now the
/// first Ctrl-C stops reading, the acks in flight are collected and printed, one line says how
/// many lines were produced, and the exit code is 130.
#[test]
fn ctrl_c_in_a_piped_produce_prints_the_id_of_every_stored_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = FloProcess::start(dir.path(), &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args([
            "-H",
            &server.addr.to_string(),
            "produce",
            "-n",
            "/interrupted",
        ])
        .env_remove("FLO_ADDR")
        .env_remove("FLO_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    // Lines as fast as the producer takes them, until it exits (the pipe breaks).
    let mut input = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        for line in 0u64.. {
            if writeln!(input, "line {line}").is_err() {
                return;
            }
        }
    });
    let mut ids = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = 0u64;
    while printed < 2000 {
        ids.next()
            .expect("an id before Ctrl-C")
            .expect("read an id");
        printed += 1;
    }
    // SAFETY: kill(2) of the child this test started and has not waited for yet.
    let sent = unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGINT) };
    assert_eq!(sent, 0, "kill -INT");
    for id in ids {
        let id = id.expect("read an id");
        assert!(
            id.len() == 25 && id.bytes().all(|b| b.is_ascii_digit()),
            "{id:?}"
        );
        printed += 1;
    }
    let output = child.wait_with_output().expect("flo-client exits");
    writer.join().expect("writer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
    let stored = RawConn::hello(server.addr).read_all().len() as u64;
    assert_eq!(printed, stored, "every stored event's id is printed");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "flo-client: interrupted: the first {stored} lines of standard input were produced; \
             no later line was sent"
        )
    );
}
