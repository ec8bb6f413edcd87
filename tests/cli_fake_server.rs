//! The `flo-client` binary against a scripted fake server (see tests/common): the output
//! formats the README shows, pipelined produce from standard input, and the promise that when
//! the server goes away mid-stream every printed id was acknowledged and the exit code is 1.

mod fake_server;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fake_server::{fake_listener, fake_server, FakeConn, FakeListener};
use flo::event::{Event, EventId};
use flo::protocol::{Ack, ClientFrame, EndReason, ServerFrame};

fn flo_client(port: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", port])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A writer thread, so a full pipe cannot deadlock against the child's output.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("flo-client output");
    writer.join().expect("stdin writer");
    output
}

fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().expect("host:port").to_string()
}

/// The next frame, past the SetProducer an idempotent producer sends first.
fn receive_produce(conn: &mut FakeConn) -> ClientFrame {
    loop {
        match conn.receive() {
            ClientFrame::SetProducer { .. } => {}
            frame => return frame,
        }
    }
}

/// Acks one Produce with the next counter; returns the op's data.
fn ack_next(conn: &mut FakeConn, counter: u64) -> Vec<u8> {
    match receive_produce(conn) {
        ClientFrame::Produce(produce) => {
            conn.send(ServerFrame::Ack(Ack {
                op_id: produce.op_id,
                first_id: EventId::new(counter, 1),
                count: 1,
                timestamp_ms: 1,
            }));
            produce.event.data
        }
        other => panic!("expected Produce, got {other:?}"),
    }
}

#[test]
fn produce_with_data_prints_the_id_and_the_seed_summary() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        match conn.receive() {
            ClientFrame::Produce(produce) => {
                assert_eq!(produce.event.namespace, "/food/breakfast/eggs");
                assert_eq!(produce.event.data, b"I made some eggs");
                assert_eq!(produce.event.parent_id, Some(EventId::new(3, 2)));
                conn.send(ServerFrame::Ack(Ack {
                    op_id: produce.op_id,
                    first_id: EventId::new(1, 1),
                    count: 1,
                    timestamp_ms: 1,
                }));
            }
            other => panic!("expected Produce, got {other:?}"),
        }
    });
    let args = [
        "produce",
        "-n",
        "/food/breakfast/eggs",
        "-d",
        "I made some eggs",
        "--parent",
        "3.2",
    ];
    let output = flo_client(&port_of(&addr), &args, b"");
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0000000000000000000100001\nSuccessfully produced 1 events to /food/breakfast/eggs\n"
    );
}

#[test]
fn produce_from_stdin_keeps_many_in_flight_and_prints_ids_in_order() {
    const LINES: u64 = 2000;
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        // Read 100 produces before acking any: a client that waited for each ack would stall.
        let mut pending = Vec::new();
        for _ in 0..100 {
            match receive_produce(&mut conn) {
                ClientFrame::Produce(produce) => pending.push(produce),
                other => panic!("expected Produce, got {other:?}"),
            }
        }
        for (index, produce) in pending.into_iter().enumerate() {
            assert_eq!(produce.event.data, format!("line {index}").into_bytes());
            conn.send(ServerFrame::Ack(Ack {
                op_id: produce.op_id,
                first_id: EventId::new(index as u64 + 1, 1),
                count: 1,
                timestamp_ms: 1,
            }));
        }
        for counter in 101..=LINES {
            let data = ack_next(&mut conn, counter);
            assert_eq!(data, format!("line {}", counter - 1).into_bytes());
        }
    });
    let input: String = (0..LINES)
        .map(|index| format!("line {index}\r\n"))
        .collect();
    let output = flo_client(
        &port_of(&addr),
        &["produce", "-n", "/lines"],
        input.as_bytes(),
    );
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    let mut expected: String = (1..=LINES)
        .map(|counter| format!("{}\n", EventId::new(counter, 1)))
        .collect();
    expected.push_str(&format!("Successfully produced {LINES} events to /lines\n"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}

#[test]
fn when_the_server_goes_away_only_acknowledged_ids_are_printed_and_the_exit_code_fails() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        for counter in 1..=5 {
            ack_next(&mut conn, counter);
        }
        // Read the other 45 produces without acking them, then vanish. (Reading them all
        // makes the close a clean FIN rather than a reset that could discard the acks.)
        for _ in 0..45 {
            let _ = conn.receive();
        }
    });
    let input: String = (0..50).map(|index| format!("{index}\n")).collect();
    let output = flo_client(
        &port_of(&addr),
        &["produce", "-n", "/lines", "--reconnect-attempts", "0"],
        input.as_bytes(),
    );
    server.join().expect("fake server");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let expected: String = (1..=5)
        .map(|counter| format!("{}\n", EventId::new(counter, 1)))
        .collect();
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("5 events were produced"), "{stderr}");
}

fn serve_two_events(mut conn: FakeConn) {
    conn.handshake(1024);
    let subscription_id = match conn.receive() {
        ClientFrame::Subscribe(subscribe) => {
            assert_eq!(subscribe.glob, "/**");
            subscribe.subscription_id
        }
        other => panic!("expected Subscribe, got {other:?}"),
    };
    let events = [
        Event {
            id: EventId::new(1, 1),
            parent_id: None,
            namespace: "/food/breakfast/eggs".into(),
            timestamp_ms: 1_700_000_000_000,
            data: b"I made some eggs".to_vec(),
        },
        Event {
            id: EventId::new(2, 1),
            parent_id: Some(EventId::new(1, 1)),
            namespace: "/bin".into(),
            timestamp_ms: 1_700_000_000_001,
            data: vec![0xff, 0x00],
        },
    ];
    for event in events {
        conn.send(ServerFrame::Event {
            subscription_id,
            event,
        });
    }
    conn.send(ServerFrame::End {
        subscription_id,
        reason: EndReason::EndOfStream,
    });
}

#[test]
fn consume_prints_the_seed_human_format() {
    let (addr, server) = fake_server(serve_two_events);
    let output = flo_client(&port_of(&addr), &["consume"], b"");
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "\nEventId: 0000000000000000000100001\nNamespace: /food/breakfast/eggs\nI made some eggs\n\
         \nEventId: 0000000000000000000200001\nNamespace: /bin\n\
         Data: not UTF-8, invalid bytes shown as \\xNN\n\\xff\\x00\n"
    );
}

#[test]
fn consume_prints_json_lines() {
    let (addr, server) = fake_server(serve_two_events);
    let output = flo_client(&port_of(&addr), &["consume", "--format", "json"], b"");
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"id\":\"0000000000000000000100001\",\"parent_id\":null,\"namespace\":\"/food/breakfast/eggs\",\
         \"timestamp\":1700000000000,\"data\":\"I made some eggs\"}\n\
         {\"id\":\"0000000000000000000200001\",\"parent_id\":\"0000000000000000000100001\",\
         \"namespace\":\"/bin\",\"timestamp\":1700000000001,\"data\":\"/wA=\",\"data_encoding\":\"base64\"}\n"
    );
}

#[test]
fn errors_are_one_line_with_a_failing_exit_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let cases: [(&[&str], String); 3] = [
        (
            &["produce", "-n", "/a", "-d", "x"],
            format!("flo-client: could not connect to 127.0.0.1:{port}: connection refused\n"),
        ),
        (
            &["produce", "-n", "/a", "--parent", "12"],
            "flo-client: invalid event id \"12\": expected 25 digits (20-digit counter, 5-digit actor) or COUNTER.ACTOR\n".to_string(),
        ),
        (
            &["consume", "--from", "yesterday"],
            "flo-client: invalid start position \"yesterday\": expected beginning, end, an event id (25 digits or COUNTER.ACTOR), a time (ms:<millis> or RFC 3339 such as 2024-05-01T12:00:00Z), an age such as 90s, 1h or 7d, or -N (the last N events)\n".to_string(),
        ),
    ];
    for (args, expected) in cases {
        let output = flo_client(&port, args, b"");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
    }
}

#[test]
fn ctrl_c_stops_a_tailing_consumer_with_exit_code_zero() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        let subscription_id = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => {
                assert!(subscribe.tail);
                subscribe.subscription_id
            }
            other => panic!("expected Subscribe, got {other:?}"),
        };
        conn.send(ServerFrame::CaughtUp { subscription_id });
        conn.send(ServerFrame::Event {
            subscription_id,
            event: Event {
                id: EventId::new(1, 1),
                parent_id: None,
                namespace: "/a".into(),
                timestamp_ms: 1,
                data: b"live".to_vec(),
            },
        });
        // Stay connected until the client goes away.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn.stream, &mut rest);
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_flo-client"))
        .args(["-H", "127.0.0.1", "-p", &port_of(&addr), "consume", "-t"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo-client");
    // Wait for the event to be printed: the consumer then waits on the network.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut printed = String::new();
    for _ in 0..4 {
        std::io::BufRead::read_line(&mut stdout, &mut printed).expect("read output");
    }
    assert_eq!(
        printed,
        "\nEventId: 0000000000000000000100001\nNamespace: /a\nlive\n"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("flo-client exits");
    assert_eq!(status.code(), Some(0));
    server.join().expect("fake server");
}

#[test]
fn produce_with_empty_standard_input_fails_instead_of_reporting_success() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut conn.stream, &mut rest).expect("read until close");
        assert!(rest.is_empty(), "nothing is produced: {rest:?}");
    });
    let output = flo_client(&port_of(&addr), &["produce", "-n", "/x"], b"");
    server.join().expect("fake server");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "flo-client: standard input was empty: no events produced to /x (use -d \"\" for one event without data)\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn consume_warns_on_standard_error_when_retention_skipped_unread_events() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        let subscription_id = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => subscribe.subscription_id,
            other => panic!("expected Subscribe, got {other:?}"),
        };
        conn.send(ServerFrame::Skipped {
            subscription_id,
            count: 2000,
        });
        conn.send(ServerFrame::Event {
            subscription_id,
            event: Event {
                id: EventId::new(2001, 1),
                parent_id: None,
                namespace: "/a".into(),
                timestamp_ms: 1,
                data: b"x".to_vec(),
            },
        });
        conn.send(ServerFrame::End {
            subscription_id,
            reason: EndReason::EndOfStream,
        });
    });
    let output = flo_client(&port_of(&addr), &["consume"], b"");
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "warning: the server's retention deleted 2000 records this consumer had not read yet; \
         they are skipped\n"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("0000000000000000200100001"));
}

fn food_event(counter: u64) -> Event {
    Event {
        id: EventId::new(counter, 1),
        parent_id: None,
        namespace: "/food/eggs".into(),
        timestamp_ms: 1_700_000_000_000,
        data: format!("egg {counter}").into_bytes(),
    }
}

/// `consume --group` on a server older than GroupAckRange (which closes the connection with
/// MalformedFrame at the first range): the member joins again and acknowledges by id, each
/// event is printed once, one line on standard error says why, and the exit code is 0.
#[test]
fn consume_group_on_a_server_older_than_ack_ranges_goes_on_with_single_acks() {
    let (addr, server) = fake_listener(|listener| {
        let mut conn = listener.accept();
        conn.handshake(1024);
        conn.answer_group_detail_no_such_group();
        conn.answer_progress_probe();
        let id = match conn.receive() {
            ClientFrame::JoinGroup(join) => join.subscription_id,
            other => panic!("expected JoinGroup, got {other:?}"),
        };
        let mut bytes = Vec::new();
        for counter in 1..=3 {
            let frame = ServerFrame::Event {
                subscription_id: id,
                event: food_event(counter),
            };
            flo::protocol::encode(&frame, &mut bytes);
        }
        conn.stream.write_all(&bytes).expect("write the events");
        assert!(matches!(conn.receive(), ClientFrame::GroupAckRange(_)));
        assert!(matches!(conn.receive(), ClientFrame::Ping { .. }));
        conn.refuse_unknown_frame(0x1b);
        drop(conn);

        let mut conn = listener.accept();
        conn.handshake(1024);
        let id = match conn.receive() {
            ClientFrame::JoinGroup(join) => join.subscription_id,
            other => panic!("expected JoinGroup again, got {other:?}"),
        };
        match conn.receive() {
            ClientFrame::GroupAck(ack) => assert_eq!(ack.ids.len(), 3),
            other => panic!("expected GroupAck, got {other:?}"),
        }
        conn.send(ServerFrame::Event {
            subscription_id: id,
            event: food_event(4),
        });
        conn.send(ServerFrame::CaughtUp {
            subscription_id: id,
        });
        loop {
            match conn.receive() {
                ClientFrame::GroupAck(ack) => assert_eq!(ack.ids, [EventId::new(4, 1)]),
                ClientFrame::LeaveGroup { .. } => break,
                other => panic!("expected GroupAck or LeaveGroup, got {other:?}"),
            }
        }
        conn.send(ServerFrame::End {
            subscription_id: id,
            reason: EndReason::Unsubscribed,
        });
    });
    let output = flo_client(
        &port_of(&addr),
        &["consume", "--group", "eaters", "-n", "/food/**"],
        b"",
    );
    server.join().expect("fake server");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for counter in 1..=4 {
        assert_eq!(
            stdout.matches(&format!("egg {counter}\n")).count(),
            1,
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("the server is older than GroupAckRange"),
        "{stderr}"
    );
}

/// A server older than GroupProgress (0x1C), as far as a group member sees it: it closes the
/// connection with MalformedFrame at that frame; it delivers event 1 to a member that joins
/// until the event is acknowledged, answers Pings and the leave. Returns the ids acknowledged
/// and whether the refused GroupProgress named an event (the member lost the event it held).
fn serve_as_a_server_older_than_group_progress(listener: FakeListener) -> (Vec<EventId>, bool) {
    let mut acked = Vec::new();
    for _ in 0..2 {
        let mut conn = listener.accept();
        conn.handshake(1024);
        loop {
            match conn.receive() {
                ClientFrame::GroupProgress(progress) => {
                    conn.refuse_unknown_frame(0x1c);
                    if !progress.ids.is_empty() {
                        return (acked, true);
                    }
                    break;
                }
                ClientFrame::JoinGroup(join) => {
                    if acked.is_empty() {
                        conn.send(ServerFrame::Event {
                            subscription_id: join.subscription_id,
                            event: food_event(1),
                        });
                    }
                    conn.send(ServerFrame::CaughtUp {
                        subscription_id: join.subscription_id,
                    });
                }
                ClientFrame::Ping { token } => conn.send(ServerFrame::Pong { token }),
                ClientFrame::GroupsDetailRequest(_) => conn.send(fake_server::no_such_group()),
                ClientFrame::Credit { .. } => {}
                ClientFrame::GroupAck(ack) => acked.extend(ack.ids),
                ClientFrame::LeaveGroup { subscription_id } => {
                    conn.send(ServerFrame::End {
                        subscription_id,
                        reason: EndReason::Unsubscribed,
                    });
                    return (acked, false);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (acked, false)
}

/// `consume --group --exec` on a server older than GroupProgress, with a command longer than
/// the member's progress interval (1 s). Before: the member sent GroupProgress 1 s into the
/// command, the server closed the connection (the event went back to the group), and
/// flo-client exited 1 without acknowledging the work done. Now the join probes the frame
/// (a GroupProgress without ids before the JoinGroup), the member joins again on a new
/// connection, keeps it open with Pings while the command runs, acknowledges the event, says
/// once on standard error that the server cannot extend ack time-outs, and exits 0.
#[test]
fn consume_group_exec_on_a_server_older_than_group_progress_keeps_its_event() {
    let (addr, server) = fake_listener(serve_as_a_server_older_than_group_progress);
    let command = "sleep 2.5; echo ran $FLO_EVENT_ID";
    let output = flo_client(
        &port_of(&addr),
        &[
            "consume", "--group", "eaters", "-n", "/food/**", "--exec", command,
        ],
        b"",
    );
    let (acked, lost) = server.join().expect("fake server");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!lost, "the member lost its event: {stdout}\n{stderr}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(acked, [EventId::new(1, 1)], "{stderr}");
    assert_eq!(stdout.matches("ran ").count(), 1, "{stdout}");
    assert_eq!(
        stderr.matches("older than GroupProgress").count(),
        1,
        "{stderr}"
    );
}

/// `flo-client groups` on a server older than GroupsDetailRequest (it closes the connection
/// with MalformedFrame): the list comes from GroupsRequest on a new connection, with "-" for
/// the settings that server does not say, and the exit code is 0 (before: the error, although
/// its own hint said that `groups` without a name works on any server).
#[test]
fn groups_on_a_server_older_than_groups_detail_lists_without_settings() {
    use flo::protocol::{GroupInfo, GroupsReply};
    let (addr, server) = fake_listener(|listener| {
        for format in ["human", "json"] {
            let mut conn = listener.accept();
            conn.handshake(1024);
            match conn.receive() {
                ClientFrame::GroupsDetailRequest(_) => {}
                other => panic!("{format}: expected GroupsDetailRequest, got {other:?}"),
            }
            conn.refuse_unknown_frame(0x11);
            drop(conn);
            let mut conn = listener.accept();
            conn.handshake(1024);
            match conn.receive() {
                ClientFrame::GroupsRequest(request) => assert_eq!(request.group, ""),
                other => panic!("{format}: expected GroupsRequest, got {other:?}"),
            }
            conn.send(ServerFrame::Groups(GroupsReply {
                durable_end: 5,
                more: false,
                groups: vec![GroupInfo {
                    name: "cooks".into(),
                    glob: "/food/**".into(),
                    members: 0,
                    in_flight: 0,
                    pending: 0,
                    parked: 1,
                    floor: 5,
                    next: 5,
                    acked_above_floor: 0,
                    lag: 0,
                    oldest_pending_age_ms: 0,
                }],
            }));
        }
    });
    let port = port_of(&addr);
    let human = flo_client(&port, &["groups"], b"");
    let json = flo_client(&port, &["groups", "--format", "json"], b"");
    server.join().expect("fake server");
    for output in [&human, &json] {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let human = String::from_utf8_lossy(&human.stdout);
    let row: Vec<&str> = human
        .lines()
        .find(|line| line.starts_with("cooks "))
        .unwrap_or_else(|| panic!("no cooks row in {human}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["cooks", "0", "0", "1", "5", "5", "0", "-", "-", "-", "/food/**"]
    );
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(json.starts_with("[{\"name\":\"cooks\""), "{json}");
    assert!(!json.contains("settings"), "{json}");
}

/// Attack round 11: `consume --limit N` left the limit to the server (Subscribe's `limit`), so
/// a server that ignores it (hostile, or broken) had every event it sent printed. The CLI now
/// prints at most N whatever arrives: this fake server answers `--limit 3` with 10 events.
#[test]
fn consume_limit_prints_at_most_that_many_events_whatever_the_server_sends() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        let subscription_id = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => {
                assert_eq!(subscribe.limit, 3);
                subscribe.subscription_id
            }
            other => panic!("expected Subscribe, got {other:?}"),
        };
        let mut bytes = Vec::new();
        for counter in 1..=10 {
            let event = Event {
                id: EventId::new(counter, 1),
                parent_id: None,
                namespace: "/many".into(),
                timestamp_ms: 1_700_000_000_000,
                data: b"x".to_vec(),
            };
            flo::protocol::encode(
                &ServerFrame::Event {
                    subscription_id,
                    event,
                },
                &mut bytes,
            );
        }
        let end = ServerFrame::End {
            subscription_id,
            reason: EndReason::EndOfStream,
        };
        flo::protocol::encode(&end, &mut bytes);
        // The client may close as soon as it has enough: write errors are expected.
        let _ = conn.stream.write_all(&bytes);
        let _ = std::io::Read::read_to_end(&mut conn.stream, &mut Vec::new());
    });
    let output = flo_client(
        &port_of(&addr),
        &["consume", "--limit", "3", "--format", "json"],
        b"",
    );
    server.join().expect("fake server");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

/// A stdin producer whose producer id a newer connection took over (`ProducerFenced`, code
/// 51): the ids acknowledged before are printed, the error is one line naming the code, the
/// exit code is 1, and nothing more is sent. Before, the client did not know code 51 and
/// reported an undecodable frame ("unknown error code 51").
#[test]
fn a_fenced_stdin_producer_prints_one_line_and_fails() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(1024);
        ack_next(&mut conn, 1);
        match receive_produce(&mut conn) {
            ClientFrame::Produce(produce) => {
                conn.send(ServerFrame::Error(flo::protocol::ErrorFrame {
                    scope: flo::protocol::ErrorScope::Produce(produce.op_id),
                    code: flo::protocol::ErrorCode::ProducerFenced,
                    message: "producer 7 was taken over by a newer connection".into(),
                }))
            }
            other => panic!("expected Produce, got {other:?}"),
        }
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn.stream, &mut rest);
        assert!(
            rest.is_empty(),
            "the fenced producer sent {} more bytes",
            rest.len()
        );
    });
    let output = flo_client(
        &port_of(&addr),
        &["produce", "-n", "/lines", "--reconnect-attempts", "0"],
        b"one\ntwo\n",
    );
    server.join().expect("fake server");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{}\n", EventId::new(1, 1))
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ProducerFenced (51)"), "{stderr}");
    assert!(stderr.contains("1 events were produced"), "{stderr}");
}

/// `get`, `trace` and `groups parked` need TraceRequest (0x17); a server older than it closes
/// the connection with MalformedFrame "unknown frame kind 0x17". Each command now fails with
/// one `flo-client:` line saying the server is too old for it (before: the bare protocol
/// error, "MalformedFrame (1): unknown frame kind 0x17", which reads like a client bug).
#[test]
fn lookups_on_a_server_older_than_trace_say_the_server_is_too_old() {
    use flo::protocol::{ParkedEvent, ParkedReply};
    let commands: [&[&str]; 4] = [
        &["get", "7.1"],
        &["trace", "7.1"],
        &["groups", "parked", "cooks"],
        &["groups", "parked", "cooks", "--data", "--format", "json"],
    ];
    let parked = |args: &[&str]| args[0] == "groups";
    let scripted: Vec<bool> = commands.iter().map(|args| parked(args)).collect();
    let (addr, server) = fake_listener(move |listener| {
        for parked in scripted {
            let mut conn = listener.accept();
            conn.handshake(1024);
            if parked {
                match conn.receive() {
                    ClientFrame::ParkedRequest(request) => assert_eq!(request.group, "cooks"),
                    other => panic!("expected ParkedRequest, got {other:?}"),
                }
                conn.send(ServerFrame::Parked(ParkedReply {
                    group: "cooks".into(),
                    more: false,
                    events: vec![ParkedEvent {
                        offset: 3,
                        id: EventId::new(7, 1),
                    }],
                }));
            }
            match conn.receive() {
                ClientFrame::TraceRequest { .. } => {}
                other => panic!("expected TraceRequest, got {other:?}"),
            }
            conn.refuse_unknown_frame(0x17);
        }
    });
    let port = port_of(&addr);
    let outputs: Vec<Output> = (commands.iter())
        .map(|args| flo_client(&port, args, b""))
        .collect();
    server.join().expect("fake server");
    for (args, output) in commands.iter().zip(&outputs) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("flo-client: "), "{args:?}: {stderr}");
        let command = if parked(args) {
            "groups parked"
        } else {
            args[0]
        };
        assert!(
            stderr.contains("too old") && stderr.contains(&format!("`{command}`")),
            "{args:?}: {stderr}"
        );
    }
}
