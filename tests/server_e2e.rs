//! End-to-end tests of the `flo` binary on real sockets: each test starts the server on
//! 127.0.0.1 port 0 with a temporary data directory, talks to it with bare protocol frames,
//! and checks what comes back. They prove the wiring (reactor, engine, storage) that the
//! socket-free engine tests cannot: real reads split anywhere, real fsync, restarts, signals,
//! bad input on one connection, many connections and a consumer that never reads.

mod common;

use std::time::Duration;

use common::{FloProcess, RawConn};
use flo::event::{EventId, StartPosition};
use flo::protocol::{
    kind, Ack, ClientFrame, EndReason, ErrorCode, ErrorFrame, ErrorScope, ServerFrame, Subscribe,
};

fn subscribe(id: u32, glob: &str, start: StartPosition, tail: bool) -> Subscribe {
    Subscribe {
        subscription_id: id,
        glob: glob.into(),
        start,
        limit: 0,
        tail,
        skip_damaged: false,
        order: Default::default(),
        credit: 1_000_000,
    }
}

fn expect_ack(conn: &mut RawConn, op_id: u64) -> Ack {
    match conn.recv() {
        Some(ServerFrame::Ack(ack)) if ack.op_id == op_id => ack,
        other => panic!("expected the ack of op {op_id}, got {other:?}"),
    }
}

/// Reads a non-tail subscription to its end and returns the events' namespaces and data.
fn read_all(conn: &mut RawConn, id: u32) -> Vec<(EventId, String, Vec<u8>)> {
    let mut events = Vec::new();
    loop {
        match conn.recv() {
            Some(ServerFrame::Event {
                subscription_id,
                event,
            }) if subscription_id == id => events.push((event.id, event.namespace, event.data)),
            Some(ServerFrame::End {
                subscription_id,
                reason: EndReason::EndOfStream,
            }) if subscription_id == id => return events,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn the_seed_walkthrough_works_at_the_protocol_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let mut producer = RawConn::hello(server.addr);
    producer.produce(1, "/food/breakfast/eggs", b"I made some eggs");
    let ack = expect_ack(&mut producer, 1);
    assert_eq!(ack.first_id.to_string(), "0000000000000000000100001");

    let mut tail = RawConn::hello(server.addr);
    tail.subscribe(subscribe(1, "/**", StartPosition::Beginning, true));
    match tail.recv() {
        Some(ServerFrame::Event { event, .. }) => {
            assert_eq!(event.namespace, "/food/breakfast/eggs");
            assert_eq!(event.data, b"I made some eggs");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        tail.recv(),
        Some(ServerFrame::CaughtUp { subscription_id: 1 })
    );

    let more = [
        ("/food/breakfast/bacon", &b"data about bacon"[..]),
        ("/food/lunch/salad", b""),
        ("/drinks/beer", b"wow, I'm such a great dancer"),
    ];
    for (op_id, (namespace, data)) in more.iter().enumerate() {
        producer.produce(op_id as u64 + 2, namespace, data);
        expect_ack(&mut producer, op_id as u64 + 2);
    }
    for (namespace, data) in more {
        match tail.recv() {
            Some(ServerFrame::Event { event, .. }) => {
                assert_eq!(
                    (event.namespace.as_str(), event.data.as_slice()),
                    (namespace, data)
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    let mut reader = RawConn::hello(server.addr);
    reader.subscribe(subscribe(2, "/food/**", StartPosition::Beginning, false));
    let namespaces: Vec<String> = read_all(&mut reader, 2)
        .into_iter()
        .map(|(_, namespace, _)| namespace)
        .collect();
    assert_eq!(
        namespaces,
        vec![
            "/food/breakfast/eggs",
            "/food/breakfast/bacon",
            "/food/lunch/salad"
        ]
    );
    assert!(server.terminate().success());
}

#[test]
fn a_restart_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &["--segment-size", "8K"]);
    let mut producer = RawConn::hello(server.addr);
    for op_id in 0..500u64 {
        producer.produce(op_id, &format!("/n/{}", op_id % 7), &op_id.to_be_bytes());
    }
    for op_id in 0..500u64 {
        expect_ack(&mut producer, op_id);
    }
    assert!(server.terminate().success(), "SIGTERM exits 0");

    let server = FloProcess::start(dir.path(), &["--segment-size", "8K"]);
    let mut reader = RawConn::hello(server.addr);
    reader.subscribe(subscribe(1, "/**", StartPosition::Beginning, false));
    let events = read_all(&mut reader, 1);
    assert_eq!(events.len(), 500);
    for (index, (id, namespace, data)) in events.iter().enumerate() {
        assert_eq!(id.counter, index as u64 + 1);
        assert_eq!(namespace, &format!("/n/{}", index % 7));
        assert_eq!(data, &(index as u64).to_be_bytes());
    }
    // New ids continue above the recovered ones, after the gap the counter lease leaves at a
    // restart (docs/storage.md, "Counter lease file").
    reader.produce(9, "/after", b"");
    let counter = expect_ack(&mut reader, 9).first_id.counter;
    assert!(counter > 500, "the new event got counter {counter}");
}

#[test]
fn a_malformed_frame_gets_an_error_and_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let mut good = RawConn::hello(server.addr);
    let mut bad = RawConn::hello(server.addr);
    // A frame of an unknown kind.
    bad.send_bytes(&[0, 0, 0, 1, 0x1f]);
    match bad.recv() {
        Some(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code: ErrorCode::MalformedFrame,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bad.recv(), None, "the server closes the connection");

    let mut oversized = RawConn::hello(server.addr);
    oversized.send_bytes(&[0xff, 0xff, 0xff, 0xff, kind::PRODUCE]);
    match oversized.recv() {
        Some(ServerFrame::Error(ErrorFrame {
            code: ErrorCode::FrameTooLarge,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }

    good.produce(1, "/still/works", b"");
    expect_ack(&mut good, 1);
}

#[test]
fn an_oversized_event_gets_an_error_with_its_op_id_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    conn.produce(5, "/big", &vec![0u8; 8 * 1024 * 1024 + 1]);
    match conn.recv() {
        Some(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(5),
            code: ErrorCode::EventTooLarge,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    conn.produce(6, "/small", b"ok");
    expect_ack(&mut conn, 6);
}

#[test]
fn a_thousand_concurrent_connections_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &[]);
    let mut conns: Vec<RawConn> = (0..1000).map(|_| RawConn::hello(server.addr)).collect();
    for (index, conn) in conns.iter_mut().enumerate() {
        conn.produce(index as u64, "/many", b"");
    }
    for (index, conn) in conns.iter_mut().enumerate() {
        expect_ack(conn, index as u64);
    }
    let mut reader = RawConn::hello(server.addr);
    reader.subscribe(subscribe(1, "/many", StartPosition::Beginning, false));
    assert_eq!(read_all(&mut reader, 1).len(), 1000);
}

#[test]
fn connections_over_the_limit_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &["--max-connections", "3"]);
    let _kept: Vec<RawConn> = (0..3).map(|_| RawConn::hello(server.addr)).collect();
    let mut refused = RawConn::connect(server.addr);
    match refused.recv() {
        Some(ServerFrame::Error(ErrorFrame {
            code: ErrorCode::TooManyConnections,
            ..
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
    drop(_kept);
    // Once the others are gone, a new connection gets in; the server notices the closes
    // asynchronously, so retry until it does.
    let admitted = (0..100).any(|_| {
        let mut conn = RawConn::connect(server.addr);
        conn.send(&ClientFrame::Hello(flo::protocol::Hello {
            protocol_version: flo::protocol::PROTOCOL_VERSION,
            client_name: "late".into(),
            auth_token: Vec::new(),
        }));
        matches!(conn.recv(), Some(ServerFrame::Welcome(_)))
    });
    assert!(admitted);
}

/// Walkthrough (session 9): `flo --fsync never` warned about its policy twice at start-up
/// (once from the binary, once from storage, in two wordings).
#[test]
fn the_fsync_policy_warning_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(dir.path(), &["--fsync", "interval:100"]);
    let warnings: Vec<&String> = server
        .early_lines
        .iter()
        .filter(|line| line.contains("fsync policy interval:100"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", server.early_lines);
    assert!(
        warnings[0].ends_with("a power loss can lose the ones not yet synced"),
        "docs/operations.md quotes this line: {}",
        warnings[0]
    );
}

#[test]
fn a_consumer_that_never_reads_keeps_server_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = FloProcess::start(
        dir.path(),
        &["--max-cache-memory", "8M", "--fsync", "never"],
    );
    let mut stalled = RawConn::hello(server.addr);
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    stalled.subscribe(subscribe(1, "/**", StartPosition::Beginning, true));
    let mut producer = RawConn::hello(server.addr);
    let data = vec![7u8; 16 * 1024];
    let total_bytes = 200 * 1024 * 1024;
    let count = (total_bytes / data.len()) as u64;
    let window = 64;
    let mut rss_max = 0;
    for op_id in 0..count {
        producer.produce(op_id, "/bulk", &data);
        if op_id >= window {
            expect_ack(&mut producer, op_id - window);
        }
        if op_id % 2000 == 0 {
            rss_max = rss_max.max(server.rss_bytes());
        }
    }
    for op_id in count.saturating_sub(window)..count {
        expect_ack(&mut producer, op_id);
    }
    rss_max = rss_max.max(server.rss_bytes());
    eprintln!("server RSS peak while writing 200 MB past a stalled consumer: {rss_max} bytes");
    assert!(
        rss_max < 64 * 1024 * 1024,
        "server RSS {rss_max} is not bounded by cache (8 MiB) + buffers"
    );
}

/// The scheduler slice of each thread of process `pid` named `flo-reactor`, from
/// `sched_getattr` (`sched_runtime`).
#[cfg(target_os = "linux")]
fn reactor_slices(pid: u32) -> Vec<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    let mut slices = Vec::new();
    for task in tasks {
        let path = task.expect("a thread").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let tid: Option<i32> = path
            .file_name()
            .and_then(|name| name.to_str()?.parse().ok());
        let (Some(tid), "flo-reactor") = (tid, comm.trim()) else {
            continue;
        };
        let (slice, _nice) = flo::reactor::sched::slice_and_nice(tid).expect("sched_getattr");
        slices.push(slice);
    }
    slices
}

/// `--reactor-slice-us` reaches the reactor thread (Linux 6.12 and later report the slice):
/// the thread asks for it before its first turn, so once a handshake is answered it has it; 0
/// leaves the kernel's default.
#[cfg(target_os = "linux")]
#[test]
fn the_reactor_thread_runs_with_the_slice_it_is_given() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = FloProcess::start(dir.path(), &["--reactor-slice-us", "150"]);
    let _conn = RawConn::hello(server.addr);
    assert_eq!(
        reactor_slices(server.child.id()),
        [Duration::from_micros(150)]
    );
    drop(server);
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = FloProcess::start(dir.path(), &["--reactor-slice-us", "0"]);
    let _conn = RawConn::hello(server.addr);
    let slices = reactor_slices(server.child.id());
    assert_eq!(slices.len(), 1, "{slices:?}");
    assert_ne!(slices[0], Duration::from_micros(150));
}
