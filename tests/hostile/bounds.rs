//! Hostile cases: bounds. A connection's cost is bounded whatever it sends: a client that
//! sends and never reads stops being read (its unsent replies stay near the high-water mark),
//! a frame before the handshake may not be large, and a frame that has started must complete
//! within the frame time-out.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived;
use flo::protocol::{
    encode, kind, ClientFrame, ErrorCode, ErrorFrame, NewEvent, Produce, ServerFrame,
};

/// What an untouched server's RSS stays under, and what the cases below must stay under.
const RSS_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The baseline the other cases compare with: an untouched server passes the check.
#[test]
fn an_untouched_server_passes_the_survival_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    assert_survived(&mut server, RSS_MAX_BYTES);
}

/// Writes `frame` over and over without reading, until `bytes_max` bytes are written or the
/// server has stopped reading (a write blocks for a second). Returns the bytes written.
fn send_without_reading(conn: &mut RawConn, frame: &ClientFrame, bytes_max: usize) -> usize {
    let mut one = Vec::new();
    encode(frame, &mut one);
    let chunk = one.repeat(64 * 1024 / one.len());
    conn.stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("set write timeout");
    let mut written = 0;
    while written < bytes_max {
        match conn.stream.write(&chunk) {
            Ok(count) => written += count,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break
            }
            Err(error) => panic!("write failed after {written} bytes: {error}"),
        }
    }
    written
}

/// Sends frames that each get a reply, never reads, and checks the server stopped reading
/// long before `bytes_max` and stayed small.
fn never_reading(frame: ClientFrame) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    let bytes_max = 160 * 1024 * 1024;
    let written = send_without_reading(&mut conn, &frame, bytes_max);
    assert_survived(&mut server, RSS_MAX_BYTES);
    assert!(
        written < bytes_max / 4,
        "the server read {written} bytes from a client that never reads"
    );
}

#[test]
fn pings_never_read_stop_being_read() {
    never_reading(ClientFrame::Ping { token: 1 });
}

#[test]
fn status_requests_never_read_stop_being_read() {
    never_reading(ClientFrame::StatusRequest);
}

#[test]
fn produces_whose_acks_are_never_read_stop_being_read() {
    never_reading(ClientFrame::Produce(Produce {
        op_id: 1,
        event: NewEvent {
            namespace: "/never/read".into(),
            parent_id: None,
            data: Vec::new(),
        },
    }));
}

#[test]
fn a_large_frame_before_hello_is_refused_at_its_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::connect(server.addr);
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    let mut header = (8 * 1024 * 1024u32).to_be_bytes().to_vec();
    header.push(kind::HELLO);
    conn.send_bytes(&header);
    match conn.recv() {
        Some(ServerFrame::Error(ErrorFrame { code, .. })) => {
            assert_eq!(code, ErrorCode::FrameTooLarge)
        }
        other => panic!("expected FrameTooLarge for an 8 MiB Hello, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX_BYTES);
}

#[test]
fn a_frame_left_unfinished_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &["--frame-timeout", "1s"]);
    let mut conn = RawConn::hello(server.addr);
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    // The first half of a Ping; the rest never comes.
    conn.send_bytes(&[0, 0, 0, 9, kind::PING, 0, 0]);
    match conn.recv() {
        Some(ServerFrame::Error(ErrorFrame { code, .. })) => assert_eq!(code, ErrorCode::Timeout),
        other => panic!("expected Timeout for an unfinished frame, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX_BYTES);
}
