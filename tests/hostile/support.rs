//! What every hostile case checks afterwards.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::{FloProcess, RawConn};
use flo::event::StartPosition;
use flo::protocol::{ClientFrame, Hello, ServerFrame, Subscribe, PROTOCOL_VERSION};

/// The server is still running, a fresh client can produce one event and read it back (in a
/// non-tail subscription of its own namespace), and the server's resident set stays below
/// `rss_max_bytes`. How long the server takes is not asserted (a timed test fails on a busy
/// machine, and speed is measured by benchmarks); a generous read time-out only keeps a
/// server that stopped answering from hanging the test.
pub fn assert_survived(server: &mut FloProcess, rss_max_bytes: u64) {
    assert_survived_as(server, rss_max_bytes, b"");
}

/// How long a check waits for an answer before it fails as hung: far longer than any answer
/// takes on a loaded machine, so only a server that stopped answering reaches it.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// `assert_survived` on a server with an auth file: the fresh client says Hello with `token`.
pub fn assert_survived_as(server: &mut FloProcess, rss_max_bytes: u64, token: &[u8]) {
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the server process exited"
    );
    let mut conn = RawConn::connect(server.addr);
    conn.send(&ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "survival check".into(),
        auth_token: token.to_vec(),
    }));
    match conn.recv() {
        Some(ServerFrame::Welcome(_)) => {}
        other => panic!("expected Welcome for the survival check, got {other:?}"),
    }
    conn.stream
        .set_read_timeout(Some(HANG_GUARD))
        .expect("set timeout");
    let namespace = format!("/hostile/check/{}", std::process::id());
    conn.produce(1, &namespace, b"still alive");
    match conn.recv() {
        Some(ServerFrame::Ack(ack)) => assert_eq!(ack.op_id, 1),
        other => panic!("expected an ack from the surviving server, got {other:?}"),
    }
    conn.subscribe(Subscribe {
        subscription_id: 1,
        glob: namespace.clone(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: false,
        skip_damaged: false,
        order: Default::default(),
        credit: 1000,
    });
    let mut seen = false;
    loop {
        match conn.recv() {
            Some(ServerFrame::Event { event, .. }) => {
                assert_eq!(event.data, b"still alive");
                seen = true;
            }
            Some(ServerFrame::End { .. }) => break,
            other => panic!("unexpected frame while reading back: {other:?}"),
        }
    }
    assert!(seen, "the event produced by the check was not read back");
    let rss = server.rss_bytes();
    assert!(
        rss < rss_max_bytes,
        "server RSS {rss} bytes is above the bound {rss_max_bytes}"
    );
}

/// Cases that load the machine (a flood of 100 connections) and cases whose pass depends on a
/// deadline (a linger time-out against a client reading 35 MB) must not overlap: each takes
/// this lock for its whole run. The test harness runs cases in parallel otherwise.
pub fn heavy_case() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
