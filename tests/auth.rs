//! Client tokens and permissions (issue 15), against the real `flo` and `flo-client` binaries.
//!
//! Each case writes an auth file with two principals into a temporary directory (a writer
//! that may produce to `/orders/**` and consume everything, with admin; a reader that may only
//! consume `/orders/**`), starts `flo --auth-file` on 127.0.0.1 port 0, and checks what each
//! token may do over raw protocol connections and with `flo-client` and `FLO_TOKEN`. The last
//! cases check that `flo` refuses to listen on 0.0.0.0 without authentication, and the
//! `hash-token` / `gen-token` tools.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{FloProcess, RawConn};
use flo::auth_file::hash_token;
use flo::client::ErrorCode;
use flo::event::StartPosition;
use flo::protocol::{ClientFrame, ErrorScope, Hello, ServerFrame, Subscribe, PROTOCOL_VERSION};

const WRITER_TOKEN: &str = "writer-0123456789abcdef0123456789abcdef";
const READER_TOKEN: &str = "reader-0123456789abcdef0123456789abcdef";

fn write_auth_file(dir: &Path) -> PathBuf {
    let path = dir.join("auth.toml");
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/orders/**\"]\nconsume = [\"/**\"]\nadmin = true\n\n\
         [principals.reader]\ntoken = \"{}\"\nconsume = [\"/orders/**\"]\n",
        hash_token(WRITER_TOKEN.as_bytes()),
        hash_token(READER_TOKEN.as_bytes())
    );
    std::fs::write(&path, text).expect("write the auth file");
    path
}

fn start_with_auth() -> (tempfile::TempDir, FloProcess) {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = write_auth_file(dir.path());
    let server = FloProcess::start(
        &dir.path().join("data"),
        &["--auth-file", auth.to_str().expect("UTF-8 path")],
    );
    (dir, server)
}

/// Connects and sends Hello with `token`; returns the connection and the first reply.
fn hello(server: &FloProcess, token: &str) -> (RawConn, Option<ServerFrame>) {
    let mut conn = RawConn::connect(server.addr);
    conn.send(&ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "auth test".into(),
        auth_token: token.as_bytes().to_vec(),
    }));
    let reply = conn.recv();
    (conn, reply)
}

fn authenticated(server: &FloProcess, token: &str) -> RawConn {
    match hello(server, token) {
        (conn, Some(ServerFrame::Welcome(_))) => conn,
        (_, other) => panic!("expected Welcome, got {other:?}"),
    }
}

fn flo_client(server: &FloProcess, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(args)
        .env("FLO_TOKEN", token)
        .output()
        .expect("run flo-client")
}

fn assert_denied(reply: Option<ServerFrame>, expected: ErrorScope) {
    match reply {
        Some(ServerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::PermissionDenied, "{error:?}");
            assert_eq!(error.scope, expected);
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

/// The connection is still open: a Ping is answered.
fn assert_open(conn: &mut RawConn) {
    conn.send(&ClientFrame::Ping { token: 77 });
    assert!(matches!(conn.recv(), Some(ServerFrame::Pong { token: 77 })));
}

/// Waits (at most 10 s) for a log line containing every one of `parts`.
fn await_log_line(server: &FloProcess, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .log_lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {parts:?}"));
        if parts.iter().all(|part| line.contains(part)) {
            return line;
        }
    }
}

#[test]
fn a_wrong_or_missing_token_is_refused_and_logged_with_the_address() {
    let (_dir, server) = start_with_auth();
    for token in ["", "guess", &WRITER_TOKEN[1..]] {
        let (mut conn, reply) = hello(&server, token);
        match reply {
            Some(ServerFrame::Error(error)) => {
                assert_eq!(error.code, ErrorCode::AuthFailed, "{token:?}: {error:?}")
            }
            other => panic!("{token:?}: expected AuthFailed, got {other:?}"),
        }
        assert!(
            conn.recv().is_none(),
            "{token:?}: the connection stayed open"
        );
    }
    await_log_line(&server, &["handshake refused", "127.0.0.1:"]);
    // The CLI without FLO_TOKEN says what is wrong.
    let output = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(["produce", "-n", "/orders/a", "-d", "x"])
        .env_remove("FLO_TOKEN")
        .output()
        .expect("run flo-client");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AuthFailed"), "flo-client said {stderr:?}");
    // ... and how the user gives a token (walk11: it named the server's --auth-file).
    assert!(
        stderr.contains("no auth token") && stderr.contains("FLO_TOKEN or --token"),
        "flo-client said {stderr:?}"
    );
    authenticated(&server, WRITER_TOKEN);
}

#[test]
fn a_consume_only_token_cannot_produce_and_its_connection_stays_open() {
    let (_dir, server) = start_with_auth();
    let mut reader = authenticated(&server, READER_TOKEN);
    reader.produce(1, "/orders/created", b"forged");
    assert_denied(reader.recv(), ErrorScope::Produce(1));
    assert_open(&mut reader);
    reader.send(&ClientFrame::StatusRequest { hold: false });
    assert_denied(reader.recv(), ErrorScope::Connection);
    assert_open(&mut reader);
    let output = flo_client(
        &server,
        READER_TOKEN,
        &["produce", "-n", "/orders/a", "-d", "x"],
    );
    assert!(!output.status.success(), "the reader produced");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PermissionDenied"),
        "flo-client said {stderr:?}"
    );
    // Nothing was appended: the writer reads an empty log.
    let output = flo_client(&server, WRITER_TOKEN, &["consume", "-n", "/**"]);
    assert!(output.status.success());
    assert!(
        output.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_subscription_wider_than_the_permissions_is_refused() {
    let (_dir, server) = start_with_auth();
    let mut writer = authenticated(&server, WRITER_TOKEN);
    writer.produce(1, "/orders/created", b"order");
    assert!(matches!(writer.recv(), Some(ServerFrame::Ack(_))));
    writer.produce(2, "/payments/created", b"payment");
    let reply = writer.recv();
    match &reply {
        Some(ServerFrame::Error(error)) => assert_eq!(
            error.message,
            "writer may not produce to \"/payments/created\"; it may produce to /orders/**"
        ),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert_denied(reply, ErrorScope::Produce(2));

    let mut reader = authenticated(&server, READER_TOKEN);
    let subscribe = |id: u32, glob: &str| Subscribe {
        subscription_id: id,
        glob: glob.into(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: false,
        skip_damaged: false,
        order: Default::default(),
        credit: 100,
    };
    for (id, glob) in [(1, "/**"), (2, "/*/created"), (3, "/order*/**")] {
        reader.subscribe(subscribe(id, glob));
        let reply = reader.recv();
        // The refusal says what the principal may consume (walkthrough, session 9: it said
        // only "subscribe within its permissions").
        match &reply {
            Some(ServerFrame::Error(error)) => assert!(
                error
                    .message
                    .ends_with("subscribe within its permissions: /orders/**"),
                "{error:?}"
            ),
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
        assert_denied(reply, ErrorScope::Subscription(id));
    }
    reader.subscribe(subscribe(4, "/orders/**"));
    match reader.recv() {
        Some(ServerFrame::Event { event, .. }) => assert_eq!(event.data, b"order"),
        other => panic!("expected the order event, got {other:?}"),
    }
    assert!(matches!(reader.recv(), Some(ServerFrame::End { .. })));
}

#[test]
fn flo_client_with_flo_token_produces_consumes_and_reads_the_status() {
    let (_dir, server) = start_with_auth();
    let output = flo_client(
        &server,
        WRITER_TOKEN,
        &["produce", "-n", "/orders/eggs", "-d", "scrambled"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "produce failed: {stderr}");
    let output = flo_client(&server, READER_TOKEN, &["consume", "-n", "/orders/**"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("scrambled"), "the reader got {stdout:?}");
    let output = flo_client(&server, WRITER_TOKEN, &["status"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "status failed: {stderr}");
}

/// Runs `flo` and waits at most `bound` for it to exit; `None` (after killing it) if it is
/// still running then.
fn flo_exit_within(dir: &Path, args: &[&str], bound: Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("-d")
        .arg(dir.join("data"))
        .args(["-p", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flo");
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("collect flo's output"));
        }
        // Polled: std has no wait with a time-out.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn flo_refuses_a_non_loopback_bind_without_authentication() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = flo_exit_within(dir.path(), &["--bind", "0.0.0.0"], Duration::from_secs(10))
        .expect("flo started on 0.0.0.0 without auth and kept running");
    assert!(
        !output.status.success(),
        "flo exited 0 on 0.0.0.0 without auth"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains("--auth-file") && stderr.contains("--insecure-no-auth"),
        "flo said {stderr:?}"
    );
    // With either flag it starts (and is reached through loopback).
    let auth = write_auth_file(dir.path());
    let auth = auth.to_str().expect("UTF-8 path");
    for extra in [&["--insecure-no-auth"][..], &["--auth-file", auth][..]] {
        let args = [&["--bind", "0.0.0.0"][..], extra].concat();
        let server = FloProcess::start(&dir.path().join("data"), &args);
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
        let token = if extra.len() == 2 { WRITER_TOKEN } else { "" };
        let mut conn = RawConn::connect(loopback);
        conn.send(&ClientFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: "auth test".into(),
            auth_token: token.as_bytes().to_vec(),
        }));
        assert!(
            matches!(conn.recv(), Some(ServerFrame::Welcome(_))),
            "{extra:?}"
        );
        server.terminate();
    }
}

#[test]
fn gen_token_and_hash_token_agree_and_short_tokens_are_refused() {
    let generated = Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("gen-token")
        .output()
        .expect("run flo gen-token");
    assert!(generated.status.success());
    let token = String::from_utf8(generated.stdout).expect("UTF-8");
    let token = token.trim();
    assert_eq!(token.len(), 64, "{token:?}");
    let hash_printed = String::from_utf8(generated.stderr).expect("UTF-8");
    let hash_token_of = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flo"))
            .arg("hash-token")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flo hash-token");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write the token");
        child.wait_with_output().expect("wait for flo hash-token")
    };
    let hashed = hash_token_of(&format!("{token}\n"));
    assert!(hashed.status.success());
    let hashed = String::from_utf8(hashed.stdout).expect("UTF-8");
    assert_eq!(hashed.trim(), hash_printed.trim());
    assert_eq!(hashed.trim(), hash_token(token.as_bytes()));
    let short = hash_token_of("s3cret\n");
    assert!(!short.status.success(), "a 6-byte token was hashed");
    assert!(String::from_utf8_lossy(&short.stderr).contains("gen-token"));
}

#[test]
fn sighup_reloads_the_auth_file_and_revokes_removed_tokens() {
    let (dir, server) = start_with_auth();
    let mut reader = authenticated(&server, READER_TOKEN);
    let mut writer = authenticated(&server, WRITER_TOKEN);
    // Only the writer stays, and it may now produce to /audit only.
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/audit\"]\n",
        hash_token(WRITER_TOKEN.as_bytes())
    );
    std::fs::write(dir.path().join("auth.toml"), text).expect("rewrite the auth file");
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    await_log_line(&server, &["auth table reloaded", "1 principals"]);
    match reader.recv() {
        Some(ServerFrame::Error(error)) => assert_eq!(error.code, ErrorCode::AuthFailed),
        other => panic!("expected AuthFailed for the revoked reader, got {other:?}"),
    }
    assert!(
        reader.recv().is_none(),
        "the revoked connection stayed open"
    );
    writer.produce(1, "/orders/created", b"x");
    assert_denied(writer.recv(), ErrorScope::Produce(1));
    writer.produce(2, "/audit", b"x");
    assert!(matches!(writer.recv(), Some(ServerFrame::Ack(_))));
    let (_, reply) = hello(&server, READER_TOKEN);
    assert!(
        matches!(reply, Some(ServerFrame::Error(ref e)) if e.code == ErrorCode::AuthFailed),
        "{reply:?}"
    );
}

/// The auth file example in docs/security.md parses (with a real hash for the elided one).
#[test]
fn the_documented_auth_file_parses() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"))
        .expect("read docs/security.md");
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    let text = block.replace("sha256:...", &hash_token(b"another token"));
    let table = flo::auth_file::AuthTable::parse(&text).expect("the documented file parses");
    assert_eq!(table.principals().len(), 2);
}
