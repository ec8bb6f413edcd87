//! `flo-client` conveniences against a scripted fake server (tests/fake_server) or a silent
//! listener: FLO_ADDR and FLO_TOKEN, -H HOST:PORT, `produce --quiet`, `consume --from -N`, the
//! handshake time-out's message when the other side does not speak flo, and flag errors as
//! one line with a non-zero exit.

mod fake_server;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use fake_server::{fake_server, FakeConn};
use flo::event::{Event, EventId, StartPosition};
use flo::protocol::{Ack, ClientFrame, ServerFrame};

fn flo_client(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flo-client"));
    command
        .args(args)
        .env_remove("FLO_ADDR")
        .env_remove("FLO_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start flo-client");
    drop(child.stdin.take());
    child.wait_with_output().expect("flo-client output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fake server that checks the Hello's token and acknowledges one Produce.
fn token_checking_server(expected: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
    fake_server(move |mut conn: FakeConn| {
        match conn.receive() {
            ClientFrame::Hello(hello) => assert_eq!(hello.auth_token, expected),
            other => panic!("expected Hello, got {other:?}"),
        }
        conn.send(ServerFrame::Welcome(fake_server::welcome(1024)));
        match conn.receive() {
            ClientFrame::Produce(produce) => conn.send(ServerFrame::Ack(Ack {
                op_id: produce.op_id,
                first_id: EventId::new(1, 1),
                count: 1,
                timestamp_ms: 1,
            })),
            other => panic!("expected Produce, got {other:?}"),
        }
    })
}

#[test]
fn flo_addr_and_flo_token_come_from_the_environment_and_quiet_prints_nothing() {
    let (addr, server) = token_checking_server(b"s3cret");
    let output = flo_client(
        &["produce", "-n", "/a", "-d", "x", "--quiet"],
        &[("FLO_ADDR", &addr), ("FLO_TOKEN", "s3cret")],
    );
    // Checked before joining: a client that never connected would leave the fake server
    // waiting in accept.
    assert!(output.status.success(), "{output:?}");
    server.join().expect("fake server");
    assert_eq!(output.stdout, b"", "{output:?}");
}

#[test]
fn the_token_flag_wins_over_flo_token() {
    let (addr, server) = token_checking_server(b"from-the-flag");
    let output = flo_client(
        &["produce", "-n", "/a", "-d", "x", "--token", "from-the-flag"],
        &[("FLO_ADDR", &addr), ("FLO_TOKEN", "from-the-environment")],
    );
    assert!(output.status.success(), "{output:?}");
    server.join().expect("fake server");
}

fn event(counter: u64) -> Event {
    Event {
        id: EventId::new(counter, 1),
        parent_id: None,
        namespace: "/a".into(),
        timestamp_ms: 1_700_000_000_000 + counter,
        data: format!("event {counter}").into_bytes(),
    }
}

#[test]
fn from_minus_n_prints_the_last_n_events_and_h_takes_host_and_port() {
    let (addr, server) = fake_server(|mut conn: FakeConn| {
        conn.handshake(1024);
        let subscribe = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => subscribe,
            other => panic!("expected Subscribe, got {other:?}"),
        };
        // The client reads from the beginning, tailing so that it learns where the stored
        // events end.
        assert_eq!(subscribe.start, StartPosition::Beginning);
        assert!(subscribe.tail);
        let subscription_id = subscribe.subscription_id;
        for counter in 1..=5 {
            conn.send(ServerFrame::Event {
                subscription_id,
                event: event(counter),
            });
        }
        conn.send(ServerFrame::CaughtUp { subscription_id });
        // The client disconnects after printing (no -t); wait for that.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn.stream, &mut rest);
    });
    let output = flo_client(
        &["-H", &addr, "consume", "--from", "-2", "--format", "json"],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    server.join().expect("fake server");
    let text = String::from_utf8_lossy(&output.stdout);
    let data: Vec<&str> = text
        .lines()
        .map(|line| line.split("\"data\":").nth(1).expect("data field"))
        .collect();
    assert_eq!(data, ["\"event 4\"}", "\"event 5\"}"], "{text}");
}

#[test]
fn a_silent_peer_times_out_with_a_message_that_it_does_not_speak_flo() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // Accepts and says nothing (the kernel's backlog accepts even before this thread runs).
    let holder = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let output = flo_client(&["-H", &addr, "--timeout", "300ms", "status"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("does not speak flo"), "{message}");
    assert!(message.contains("300ms"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    drop(holder.join());
}

#[test]
fn a_peer_speaking_another_protocol_is_named_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let speaker = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    });
    let output = flo_client(&["-H", &addr, "--timeout", "2s", "status"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("does not speak flo"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    speaker.join().expect("speaker");
}

/// Arguments, environment, and a part of the expected message.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn flag_errors_are_one_line_with_a_non_zero_exit() {
    let cases: [Case; 12] = [
        (&["consume", "--limit", "many"], &[], "'--limit <N>'"),
        // Walk11: 0s timed out every answer at once, also a produce the server had stored.
        (&["--timeout", "0s", "status"], &[], "must be above 0"),
        (&["top", "--interval", "0ms"], &[], "must be above 0"),
        (&["produce"], &[], "--namespace"),
        (&["--timeout", "5", "status"], &[], "invalid duration"),
        (&["status"], &[("FLO_ADDR", "nohost")], "FLO_ADDR"),
        (&["-H", "a:1", "-p", "2", "status"], &[], "not both"),
        (
            &["consume", "--from", "-0"],
            &[],
            "-N must be between 1 and",
        ),
        // Sent to the server, it came back as a MalformedFrame error (walkthrough, session 9).
        (&["trace", "0.0"], &[], "counter 0 is not an event id"),
        // Walk10: clap's tips were cut with its usage block; a namespace without -n got none.
        (
            &["produce", "--namepsace", "/a"],
            &[],
            "tip: a similar argument exists: '--namespace'",
        ),
        (&["groups", "inf", "g"], &[], "tip: a similar subcommand exists: 'info'"),
        (
            &["produce", "/a/b", "-d", "x"],
            &[],
            "unexpected argument '/a/b' found (tip: the namespace or glob goes with -n, as in -n /a/b)",
        ),
    ];
    for (args, env, expected) in cases {
        let output = flo_client(args, env);
        assert!(!output.status.success(), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(
            !message.contains("For more information"),
            "{args:?}: {message}"
        );
    }
}
