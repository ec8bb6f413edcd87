//! The client library against a scripted fake server: each test starts a thread with a
//! listener on 127.0.0.1:0 that reads the client's frames with the real codec, asserts them,
//! and answers with scripted frames. This proves the client's side of the protocol (handshake,
//! acks and errors by op id, pipelining order, credit, End, dropped connections, client-side
//! limits) without the real server.

mod fake_server;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use fake_server::{fake_listener, fake_server, FakeConn};

use flo::client::{Client, ClientError, ClientOptions, Delivery, NewEvent};
use flo::event::{Event, EventId, StartPosition};
use flo::protocol::{
    Ack, ClientFrame, EndReason, ErrorCode, ErrorFrame, ErrorScope, ServerFrame, Welcome,
};

fn options() -> ClientOptions {
    ClientOptions {
        io_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

fn ack(op_id: u64, counter: u64) -> ServerFrame {
    ServerFrame::Ack(Ack {
        op_id,
        first_id: EventId::new(counter, 1),
        count: 1,
        timestamp_ms: 1000,
    })
}

fn event(counter: u64, actor: u16) -> Event {
    Event {
        id: EventId::new(counter, actor),
        parent_id: None,
        namespace: "/food/eggs".into(),
        timestamp_ms: 1000 + counter,
        data: format!("event {counter}").into_bytes(),
    }
}

fn produce_op_id(frame: ClientFrame) -> (u64, NewEvent) {
    match frame {
        ClientFrame::Produce(produce) => (produce.op_id, produce.event),
        other => panic!("expected Produce, got {other:?}"),
    }
}

#[test]
fn handshake_keeps_the_servers_limits_and_produce_waits_for_its_ack() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let (op_id, event) = produce_op_id(conn.receive());
        assert_eq!(event.namespace, "/food/eggs");
        assert_eq!(event.data, b"I made some eggs");
        assert_eq!(event.parent_id, None);
        conn.send(ack(op_id, 1));
        let (op_id, event) = produce_op_id(conn.receive());
        assert_eq!(event.parent_id, Some(EventId::new(1, 1)));
        conn.send(ack(op_id, 2));
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    assert_eq!(client.limits().event_data_size_max, 100);
    assert_eq!(client.welcome().actor_id, 1);
    let first = client
        .produce("/food/eggs", b"I made some eggs")
        .expect("ack");
    assert_eq!(first.first_id, EventId::new(1, 1));
    let parent = Event {
        id: first.first_id,
        ..event(1, 1)
    };
    let second = client
        .respond(&parent, "/food/eggs/eaten", b"yum")
        .expect("ack");
    assert_eq!(second.first_id, EventId::new(2, 1));
    server.join().expect("fake server");
}

#[test]
fn oversized_events_and_bad_namespaces_are_refused_before_sending() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(8);
        // The only frame after the handshake must be the valid produce.
        let (op_id, event) = produce_op_id(conn.receive());
        assert_eq!(event.data, b"12345678");
        conn.send(ack(op_id, 1));
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.produce("/a", b"123456789") {
        Err(ClientError::TooLarge { size, size_max, .. }) => assert_eq!((size, size_max), (9, 8)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        client.produce("no-slash", b"x"),
        Err(ClientError::InvalidNamespace { .. })
    ));
    let too_long = format!("/{}", "x".repeat(64));
    assert!(matches!(
        client.produce(&too_long, b"x"),
        Err(ClientError::InvalidNamespace { .. })
    ));
    client
        .produce("/a", b"12345678")
        .expect("a valid event still works");
    server.join().expect("fake server");
}

#[test]
fn a_produce_error_is_matched_by_op_id_and_the_connection_stays_usable() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let (op_id, _) = produce_op_id(conn.receive());
        conn.send(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(op_id),
            code: ErrorCode::StorageFailure,
            message: "disk full".into(),
        }));
        let (op_id, _) = produce_op_id(conn.receive());
        conn.send(ack(op_id, 1));
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.produce("/a", b"x") {
        Err(error @ ClientError::Server { .. }) => {
            assert!(!error.is_fatal());
            assert!(error.to_string().contains("disk full"), "{error}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    client.produce("/a", b"y").expect("second produce acked");
    server.join().expect("fake server");
}

/// protocol.md, section 11: "A client receiving an unknown code handles it by the Error's
/// scope". A newer server's code 999 for a produce fails that produce and leaves the connection
/// usable; before, the client refused the frame as malformed and dropped the connection.
#[test]
fn an_unknown_error_code_fails_its_produce_and_the_connection_stays_usable() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let (op_id, _) = produce_op_id(conn.receive());
        let mut bytes = Vec::new();
        flo::protocol::encode_error(
            ErrorScope::Produce(op_id),
            ErrorCode::StorageFailure,
            "from a newer server",
            &mut bytes,
        );
        // The code sits at offset 6 + 8 (scope 1 carries the u64 op id).
        bytes[14..16].copy_from_slice(&999u16.to_be_bytes());
        conn.stream.write_all(&bytes).expect("fake server write");
        let (op_id, _) = produce_op_id(conn.receive());
        conn.send(ack(op_id, 1));
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.produce("/a", b"x") {
        Err(error @ ClientError::Server { .. }) => {
            assert!(!error.is_fatal(), "{error}");
            let ClientError::Server { code, message, .. } = &error else {
                unreachable!()
            };
            assert_eq!(*code, ErrorCode::Unknown);
            assert!(message.starts_with("code 999"), "{message}");
            assert!(message.contains("from a newer server"), "{message}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    client.produce("/a", b"y").expect("second produce acked");
    server.join().expect("fake server");
}

#[test]
fn pipelined_acks_come_back_in_send_order_even_when_answered_out_of_order() {
    const COUNT: u64 = 20;
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let ops: Vec<u64> = (0..4).map(|_| produce_op_id(conn.receive()).0).collect();
        // Answer the window of four backwards: a failure of the third overtakes the others.
        conn.send(ack(ops[3], 4));
        conn.send(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(ops[2]),
            code: ErrorCode::EventTooLarge,
            message: "refused".into(),
        }));
        conn.send(ack(ops[1], 2));
        conn.send(ack(ops[0], 1));
        for counter in 5..=COUNT {
            let (op_id, _) = produce_op_id(conn.receive());
            conn.send(ack(op_id, counter));
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let mut producer = client.producer(4);
    let mut outcomes = Vec::new();
    for index in 0..COUNT {
        if producer.is_full() {
            outcomes.push(
                producer
                    .recv_ack()
                    .map(|ack| ack.map(|ack| ack.first_id.counter)),
            );
        }
        let event = NewEvent {
            namespace: "/lines".into(),
            parent_id: None,
            data: format!("{index}").into_bytes(),
        };
        producer.send(event).expect("send");
        assert!(producer.in_flight() <= 4);
    }
    assert!(matches!(
        producer.send(NewEvent {
            namespace: "/lines".into(),
            parent_id: None,
            data: Vec::new()
        }),
        Err(ClientError::WindowFull { window: 4 })
    ));
    loop {
        match producer.recv_ack() {
            Ok(None) => break,
            outcome => outcomes.push(outcome.map(|ack| ack.map(|ack| ack.first_id.counter))),
        }
    }
    assert_eq!(outcomes.len(), COUNT as usize);
    assert_eq!(outcomes[0].as_ref().ok(), Some(&Some(1)));
    assert_eq!(outcomes[1].as_ref().ok(), Some(&Some(2)));
    assert!(matches!(outcomes[2], Err(ClientError::Server { .. })));
    for (index, outcome) in outcomes.iter().enumerate().skip(3) {
        assert_eq!(outcome.as_ref().ok(), Some(&Some(index as u64 + 1)));
    }
    server.join().expect("fake server");
}

#[test]
fn consume_grants_credit_at_half_the_window_tracks_the_cursor_and_stops_at_end() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let subscription_id = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => {
                assert_eq!(subscribe.glob, "/food/**");
                assert_eq!(subscribe.start, StartPosition::AfterId(EventId::new(2, 9)));
                assert_eq!((subscribe.credit, subscribe.limit), (4, 0));
                assert!(subscribe.tail);
                subscribe.subscription_id
            }
            other => panic!("expected Subscribe, got {other:?}"),
        };
        let send_event = |conn: &mut FakeConn, counter, actor| {
            conn.send(ServerFrame::Event {
                subscription_id,
                event: event(counter, actor),
            })
        };
        // Spend the whole window of four; the client must grant two after each two events.
        for counter in 3..=6 {
            send_event(&mut conn, counter, 1);
        }
        for _ in 0..2 {
            assert_eq!(
                conn.receive(),
                ClientFrame::Credit {
                    subscription_id,
                    count: 2
                }
            );
        }
        conn.send(ServerFrame::CaughtUp { subscription_id });
        send_event(&mut conn, 7, 2);
        conn.send(ServerFrame::End {
            subscription_id,
            reason: EndReason::LimitReached,
        });
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let mut subscription = client
        .consume()
        .glob("/food/**")
        .start(StartPosition::AfterId(EventId::new(2, 9)))
        .tail(true)
        .credit(4)
        .subscribe()
        .expect("subscribe");
    let mut ids = Vec::new();
    for _ in 0..4 {
        match subscription.next_delivery().expect("delivery") {
            Some(Delivery::Event(event)) => ids.push(event.id),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert!(!subscription.caught_up());
    let rest: Vec<Event> = subscription
        .by_ref()
        .map(|event| event.expect("event"))
        .collect();
    assert!(subscription.caught_up());
    assert!(subscription.is_ended());
    assert_eq!(rest.len(), 1);
    let cursor = subscription.cursor().clone();
    assert_eq!(cursor.floor, EventId::new(2, 9));
    assert!(cursor.covers(EventId::new(6, 1)) && cursor.covers(EventId::new(7, 2)));
    assert!(!cursor.covers(EventId::new(7, 1)));
    assert_eq!(ids.last(), Some(&EventId::new(6, 1)));
    drop(subscription);
    server.join().expect("fake server");
}

#[test]
fn a_dropped_connection_is_an_error_not_a_hang() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let _ = conn.receive();
        // Dropping the stream closes the connection without an answer.
    });
    // The client's I/O time-out (an hour) is far longer than the test's hang guard (60 s): a
    // client that waited for it instead of seeing the close fails the guard, and one that gave
    // up by it would say `Timeout`. `ConnectionClosed` is the close, seen as it happened.
    let options = ClientOptions {
        io_timeout: Duration::from_secs(3600),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&addr, options).expect("connect");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = client.produce("/a", b"x");
        // Later calls fail at once too.
        let second = client.produce("/a", b"x");
        let _ = sender.send((first, second));
    });
    let (first, second) = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the client returned before its I/O time-out");
    assert!(
        matches!(first, Err(ClientError::ConnectionClosed)),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(ClientError::ConnectionClosed)),
        "{second:?}"
    );
    server.join().expect("fake server");
}

#[test]
fn a_silent_server_times_out_and_a_tailing_consumer_pings_first() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        assert!(matches!(conn.receive(), ClientFrame::Subscribe(_)));
        // Quiet for one time-out: the client pings; the server answers, stays quiet again,
        // and then ignores the second ping, so the client gives up.
        match conn.receive() {
            ClientFrame::Ping { token } => conn.send(ServerFrame::Pong { token }),
            other => panic!("expected Ping, got {other:?}"),
        }
        assert!(matches!(conn.receive(), ClientFrame::Ping { .. }));
        // Hold the connection open until the client hangs up.
        let mut rest = Vec::new();
        let _ = conn.stream.read_to_end(&mut rest);
    });
    let options = ClientOptions {
        io_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&addr, options).expect("connect");
    let mut subscription = client.consume().tail(true).subscribe().expect("subscribe");
    match subscription.next() {
        Some(Err(ClientError::Timeout)) => {}
        other => panic!("expected a time-out, got {other:?}"),
    }
    assert!(subscription.next().is_none(), "the subscription ended");
    drop(subscription);
    drop(client);
    server.join().expect("fake server");
}

#[test]
fn connection_errors_and_refused_connections_read_as_one_line() {
    let (addr, server) = fake_server(|mut conn| {
        assert!(matches!(conn.receive(), ClientFrame::Hello(_)));
        conn.send(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code: ErrorCode::UnsupportedVersion,
            message: "version 1 only".into(),
        }));
    });
    match Client::connect(&addr, options()) {
        Err(ClientError::UnsupportedVersion { .. }) => {}
        other => panic!("expected UnsupportedVersion, got {:?}", other.err()),
    }
    server.join().expect("fake server");
    // A port that was just bound and released refuses connections.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let error = Client::connect(&addr, options()).err().expect("refused");
    assert_eq!(
        error.to_string(),
        format!("could not connect to {addr}: connection refused")
    );
}

#[test]
fn ping_waits_for_its_own_pong_and_batches_get_one_ack() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        match conn.receive() {
            ClientFrame::Ping { token } => {
                conn.send(ServerFrame::Pong { token: token + 100 });
                conn.send(ServerFrame::Pong { token });
            }
            other => panic!("expected Ping, got {other:?}"),
        }
        match conn.receive() {
            ClientFrame::ProduceBatch(batch) => {
                assert_eq!(batch.events.len(), 3);
                conn.send(ServerFrame::Ack(Ack {
                    op_id: batch.op_id,
                    first_id: EventId::new(10, 1),
                    count: 3,
                    timestamp_ms: 5,
                }));
            }
            other => panic!("expected ProduceBatch, got {other:?}"),
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    client.ping().expect("pong");
    let events: Vec<NewEvent> = (0..3)
        .map(|index| NewEvent {
            namespace: "/batch".into(),
            parent_id: None,
            data: vec![index],
        })
        .collect();
    let ack = client.produce_batch(&events).expect("batch ack");
    assert_eq!((ack.first_id, ack.count), (EventId::new(10, 1), 3));
    server.join().expect("fake server");
}

#[test]
fn an_invalid_glob_is_refused_before_sending() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        // Nothing but the ping may follow: the bad subscription never reaches the server.
        match conn.receive() {
            ClientFrame::Ping { token } => conn.send(ServerFrame::Pong { token }),
            other => panic!("expected Ping, got {other:?}"),
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.consume().glob("no-slash[").subscribe() {
        Err(ClientError::InvalidGlob { glob, .. }) => assert_eq!(glob, "no-slash["),
        Err(other) => panic!("expected InvalidGlob, got {other:?}"),
        Ok(_) => panic!("a bad glob was accepted"),
    }
    client.ping().expect("pong");
    server.join().expect("fake server");
}

#[test]
fn a_typed_subscription_decodes_values_and_reports_bad_data_without_ending() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let subscription_id = match conn.receive() {
            ClientFrame::Subscribe(subscribe) => subscribe.subscription_id,
            other => panic!("expected Subscribe, got {other:?}"),
        };
        for data in [b"hello".to_vec(), vec![0xff], b"again".to_vec()] {
            let counter = data.len() as u64;
            conn.send(ServerFrame::Event {
                subscription_id,
                event: Event {
                    data,
                    ..event(counter, 1)
                },
            });
        }
        conn.send(ServerFrame::End {
            subscription_id,
            reason: EndReason::EndOfStream,
        });
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let values: Vec<Result<String, String>> = client
        .consume()
        .subscribe()
        .expect("subscribe")
        .typed(flo::client::Utf8Codec)
        .map(|item| {
            item.map(|typed| typed.value)
                .map_err(|error| error.to_string())
        })
        .collect();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0], Ok("hello".to_string()));
    assert!(values[1]
        .as_ref()
        .is_err_and(|error| error.starts_with("could not decode the data of event")));
    assert_eq!(values[2], Ok("again".to_string()));
    server.join().expect("fake server");
}

#[test]
fn a_waiting_client_pings_within_a_third_of_the_servers_idle_time_out() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake_with(Welcome {
            idle_timeout_ms: 300,
            ..fake_server::welcome(100)
        });
        let (op_id, _) = produce_op_id(conn.receive());
        // The ack is slow; the client must keep the connection alive meanwhile. The fake
        // server reads with a 10 s time-out, so a client that does not ping for the server's
        // idle time-out (its I/O time-out, 30 s, is the only other reason it would) fails
        // the test.
        match conn.receive() {
            ClientFrame::Ping { token } => conn.send(ServerFrame::Pong { token }),
            other => panic!("expected Ping, got {other:?}"),
        }
        conn.send(ack(op_id, 1));
    });
    // The I/O time-out is long: only the server's idle time-out can explain a quick ping.
    let options = ClientOptions {
        io_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&addr, options).expect("connect");
    let ack = client
        .produce("/a", b"x")
        .expect("a slow ack still arrives");
    assert_eq!(ack.first_id, EventId::new(1, 1));
    server.join().expect("fake server");
}

#[test]
fn an_owned_producer_queues_a_window_and_recv_ack_flushes_it() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let ops: Vec<u64> = (0..3).map(|_| produce_op_id(conn.receive()).0).collect();
        for (index, op_id) in ops.into_iter().enumerate() {
            conn.send(ack(op_id, index as u64 + 1));
        }
    });
    let client = Client::connect(&addr, options()).expect("connect");
    // Owned, so it can move to another thread (as a load generator's connections do).
    let mut producer = client.into_producer(3);
    let counters = std::thread::spawn(move || {
        for data in ["a", "b", "c"] {
            let event = NewEvent {
                namespace: "/lines".into(),
                parent_id: None,
                data: data.into(),
            };
            producer.queue(event).expect("queue");
        }
        assert!(producer.is_full());
        // Nothing was written yet: recv_ack must flush the queue before it waits.
        (0..3)
            .map(|_| producer.recv_ack().expect("ack").expect("in flight"))
            .map(|ack| ack.first_id.counter)
            .collect::<Vec<_>>()
    })
    .join()
    .expect("producer thread");
    assert_eq!(counters, vec![1, 2, 3]);
    server.join().expect("fake server");
}

/// A group member's acks are pipelined and batched: one GroupAck (a run of consecutive
/// deliveries: one GroupAckRange) frame per 128 acks or per
/// wait for the network (the client reads 4 KiB at a time, so a few), never one per event,
/// all before LeaveGroup; a NotPending answer (a late ack) does not end the membership.
#[test]
fn group_acks_are_batched_and_a_not_pending_answer_does_not_end_the_membership() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let id = match conn.receive() {
            ClientFrame::JoinGroup(join) => {
                assert_eq!(join.group, "workers");
                assert_eq!(join.glob, "/food/**");
                assert_eq!(join.credit, 500);
                join.subscription_id
            }
            other => panic!("expected JoinGroup, got {other:?}"),
        };
        // One write, so that the client's reads, not the fake server's writes, decide when it
        // runs dry.
        let mut bytes = Vec::new();
        for counter in 1..=300 {
            let frame = ServerFrame::Event {
                subscription_id: id,
                event: event(counter, 1),
            };
            flo::protocol::encode(&frame, &mut bytes);
            if counter == 10 {
                let error = ServerFrame::Error(ErrorFrame {
                    scope: ErrorScope::Subscription(id),
                    code: ErrorCode::NotPending,
                    message: "1 of the ids are not pending".into(),
                });
                flo::protocol::encode(&error, &mut bytes);
            }
        }
        std::io::Write::write_all(&mut conn.stream, &bytes).expect("write the events");
        let mut acked = Vec::new();
        let mut ack_frames = 0;
        loop {
            match conn.receive() {
                ClientFrame::GroupAck(ack) => {
                    assert_eq!(ack.subscription_id, id);
                    ack_frames += 1;
                    acked.extend(ack.ids);
                }
                // The events came one after another and were acked in that order: the client
                // sends runs of them as ranges (here the deliveries are ids 1, 2, 3, ...).
                ClientFrame::GroupAckRange(range) => {
                    assert_eq!(range.subscription_id, id);
                    ack_frames += 1;
                    acked.extend(
                        (range.first.counter..=range.last.counter).map(|c| EventId::new(c, 1)),
                    );
                }
                ClientFrame::Credit { .. } => {}
                // The Ping after the first range: its Pong tells the client the server knows
                // GroupAckRange.
                ClientFrame::Ping { token } => conn.send(ServerFrame::Pong { token }),
                ClientFrame::LeaveGroup { subscription_id } => {
                    assert_eq!(subscription_id, id);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<EventId> = (1..=300).map(|c| EventId::new(c, 1)).collect();
        assert_eq!(
            acked, expected,
            "every event acknowledged once, in order, before the leave"
        );
        assert!(
            (3..=20).contains(&ack_frames),
            "300 acks in {ack_frames} GroupAck or GroupAckRange frames"
        );
        conn.send(ServerFrame::End {
            subscription_id: id,
            reason: EndReason::Unsubscribed,
        });
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let mut member = client
        .join_group("workers")
        .glob("/food/**")
        .credit(500)
        .join()
        .expect("join");
    for _ in 0..300 {
        let event = member.next().expect("an event").expect("no error");
        member.ack(event.id).expect("ack");
    }
    assert_eq!(member.not_pending_count(), 1);
    assert!(!member.is_ended());
    member.leave().expect("leave");
    server.join().expect("fake server");
}

/// A server older than GroupsDetailRequest (session 6) closes the connection with
/// MalformedFrame: `groups info` says the server is older and to upgrade it, instead of a bare
/// "malformed frame".
#[test]
fn a_server_older_than_groups_detail_is_named_as_older() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        match conn.receive() {
            ClientFrame::GroupsDetailRequest(_) => {}
            other => panic!("expected GroupsDetailRequest, got {other:?}"),
        }
        conn.refuse_unknown_frame(0x11);
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.group_detail("cooks") {
        Err(error @ ClientError::Server { .. }) => {
            let text = error.to_string();
            assert!(text.contains("unknown frame kind 0x11"), "{text}");
            assert!(text.contains("upgrade the server"), "{text}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    server.join().expect("fake server");
}

/// A server older than GroupAckRange (session 6) closes the connection with MalformedFrame at
/// the first range. The member connects again, joins again, acknowledges by id what the
/// range (and anything after it) acknowledged, and sends only GroupAck from then on; an event
/// the new membership gets again although this member acknowledged it is not handed out twice.
#[test]
fn a_member_falls_back_to_single_acks_on_a_server_older_than_ack_ranges() {
    let (addr, server) = fake_listener(|listener| {
        let mut conn = listener.accept();
        conn.handshake(100);
        let join = match conn.receive() {
            ClientFrame::JoinGroup(join) => join,
            other => panic!("expected JoinGroup, got {other:?}"),
        };
        let id = join.subscription_id;
        let mut bytes = Vec::new();
        for counter in 1..=5 {
            let frame = ServerFrame::Event {
                subscription_id: id,
                event: event(counter, 1),
            };
            flo::protocol::encode(&frame, &mut bytes);
        }
        std::io::Write::write_all(&mut conn.stream, &bytes).expect("write the events");
        // An old server decodes up to the unknown kind and closes. This one reads what the
        // client sent with the range (its Ping) first, so that its close is a clean one.
        match conn.receive() {
            ClientFrame::GroupAckRange(range) => {
                assert_eq!((range.first.counter, range.last.counter), (1, 5));
            }
            other => panic!("expected GroupAckRange, got {other:?}"),
        }
        assert!(matches!(conn.receive(), ClientFrame::Ping { .. }));
        conn.refuse_unknown_frame(0x1b);
        drop(conn);

        let mut conn = listener.accept();
        conn.handshake(100);
        let id = match conn.receive() {
            ClientFrame::JoinGroup(again) => {
                assert_eq!((&again.group, &again.glob), (&join.group, &join.glob));
                again.subscription_id
            }
            other => panic!("expected JoinGroup again, got {other:?}"),
        };
        match conn.receive() {
            ClientFrame::GroupAck(ack) => {
                assert_eq!(ack.subscription_id, id);
                let counters: Vec<u64> = ack.ids.iter().map(|id| id.counter).collect();
                assert_eq!(counters, [1, 2, 3, 4, 5], "the lost acks, by id");
            }
            other => panic!("expected GroupAck, got {other:?}"),
        }
        // 3 delivered again (as if sent before the server read that ack), then a new event.
        for counter in [3, 6] {
            conn.send(ServerFrame::Event {
                subscription_id: id,
                event: event(counter, 1),
            });
        }
        match conn.receive() {
            ClientFrame::GroupAck(ack) => {
                let counters: Vec<u64> = ack.ids.iter().map(|id| id.counter).collect();
                assert_eq!(counters, [6]);
            }
            other => panic!("expected GroupAck (never a range now), got {other:?}"),
        }
        assert!(matches!(conn.receive(), ClientFrame::LeaveGroup { .. }));
        conn.send(ServerFrame::End {
            subscription_id: id,
            reason: EndReason::Unsubscribed,
        });
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let mut member = client
        .join_group("workers")
        .glob("/food/**")
        .join()
        .expect("join");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let event = member.next().expect("an event").expect("no error");
        seen.push(event.id.counter);
        member.ack(event.id).expect("ack");
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6], "each event handed out once");
    assert!(member.ack_ranges_refused());
    member.leave().expect("leave");
    server.join().expect("fake server");
}

/// Attack round 11: the client took the frame limit of the server's Welcome as its receive
/// limit, so a hostile server announcing 4 GiB and then sending a frame of that length made
/// it buffer all it was sent (`flo-client consume` reached 3.3 GB in 9 s). The client's own
/// `ClientOptions::frame_size_max` (64 MiB by default) caps it: the frame is refused with
/// FrameTooLarge as soon as its length arrives.
#[test]
fn a_frame_over_the_clients_own_limit_is_refused_whatever_the_welcome_announced() {
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake_with(Welcome {
            frame_size_max: u32::MAX,
            ..fake_server::welcome(100)
        });
        let _ = produce_op_id(conn.receive());
        // The length of an Ack of almost 4 GiB, its kind, and the first 64 KiB of its body.
        let mut bytes = vec![0xFF, 0xFF, 0xFF, 0xF0, 0x22];
        bytes.resize(5 + 64 * 1024, 0);
        let _ = std::io::Write::write_all(&mut conn.stream, &bytes);
        // Hold the connection until the client drops it (or the read time-out).
        let _ = conn.stream.read_to_end(&mut Vec::new());
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.produce("/a", b"x") {
        Err(ClientError::Protocol { code, .. }) => assert_eq!(code, ErrorCode::FrameTooLarge),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(client.limits().frame_size_max, 64 * 1024 * 1024);
    drop(client);
    server.join().expect("fake server");
}

/// Attack round 11: `Client::trace` kept every entry of every Trace frame until one ended the
/// trace, so a server sending Trace frames with `more` set without end grew the client
/// without bound. No server sends more than `TRACE_ENTRIES_MAX` (the largest
/// `streams.trace_events_max`) entries: past it the client stops with MalformedFrame. This
/// fake server sends 1,100 frames of 1,000 entries, then a last one.
#[test]
fn a_trace_longer_than_any_server_sends_is_refused() {
    use flo::protocol::{TraceEntry, TraceReply};
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake_with(Welcome {
            frame_size_max: 1 << 20,
            ..fake_server::welcome(100)
        });
        assert!(matches!(conn.receive(), ClientFrame::TraceRequest { .. }));
        let reply = |more| {
            let entries = (1..=1000)
                .map(|counter| TraceEntry {
                    depth: 1,
                    id: EventId::new(counter, 1),
                    parent_id: None,
                    timestamp_ms: 1000,
                    namespace: "/t".into(),
                })
                .collect();
            let mut bytes = Vec::new();
            flo::protocol::encode(
                &ServerFrame::Trace(TraceReply {
                    more,
                    truncated: false,
                    entries,
                }),
                &mut bytes,
            );
            bytes
        };
        let more = reply(true);
        for _ in 0..1100 {
            if std::io::Write::write_all(&mut conn.stream, &more).is_err() {
                return;
            }
        }
        let _ = std::io::Write::write_all(&mut conn.stream, &reply(false));
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.trace(EventId::new(1, 1)) {
        Err(ClientError::Protocol { code, .. }) => assert_eq!(code, ErrorCode::MalformedFrame),
        Ok(trace) => panic!("the client kept a trace of {} entries", trace.entries.len()),
        Err(other) => panic!("expected MalformedFrame, got {other:?}"),
    }
    drop(client);
    server.join().expect("fake server");
}

/// Attack round 11: `Client::groups` gathered pages until one said `more` = false or came
/// empty, so a server answering every request with the same page and `more` set grew the
/// list without end. Names must now go up across the listing: this fake server repeats one
/// page 1,000 times, then ends.
#[test]
fn a_group_listing_that_does_not_go_forward_is_refused() {
    use flo::protocol::{GroupInfo, GroupsReply};
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let page = |more| {
            ServerFrame::Groups(GroupsReply {
                durable_end: 1,
                more,
                groups: vec![GroupInfo {
                    name: "cooks".into(),
                    glob: "/**".into(),
                    members: 0,
                    in_flight: 0,
                    pending: 0,
                    parked: 0,
                    floor: 0,
                    next: 0,
                    acked_above_floor: 0,
                    lag: 0,
                    oldest_pending_age_ms: 0,
                }],
            })
        };
        for round in 0..=1000 {
            match conn.receive() {
                ClientFrame::GroupsRequest(_) => {}
                other => panic!("expected GroupsRequest, got {other:?}"),
            }
            conn.send(page(round < 1000));
            if round == 0 {
                // The client stops after the second page and closes: this script's next
                // `receive` then panics, which ends the thread (its join is not checked).
                conn.stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
            }
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.groups() {
        Err(ClientError::Protocol { code, .. }) => assert_eq!(code, ErrorCode::MalformedFrame),
        Ok(groups) => panic!("the client listed {} groups", groups.len()),
        Err(other) => panic!("expected MalformedFrame, got {other:?}"),
    }
    drop(client);
    let _ = server.join();
}

/// Attack round 11, as for groups: `Client::for_each_namespace` (flo-client namespaces)
/// visited a page repeated with `more` set again and again. This fake server repeats one page
/// 1,000 times, then ends.
#[test]
fn a_namespace_listing_that_does_not_go_forward_is_refused() {
    use flo::protocol::{NamespaceInfo, NamespacesReply};
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        for round in 0..=1000 {
            match conn.receive() {
                ClientFrame::NamespacesRequest(_) => {}
                other => panic!("expected NamespacesRequest, got {other:?}"),
            }
            conn.send(ServerFrame::Namespaces(NamespacesReply {
                more: round < 1000,
                namespaces: vec![NamespaceInfo {
                    name: "/same".into(),
                    event_count: 1,
                    first_id: EventId::new(1, 1),
                    first_timestamp_ms: 1,
                    last_id: EventId::new(1, 1),
                    last_timestamp_ms: 1,
                }],
            }));
            if round == 0 {
                // As in the groups case: the client closes after the second page, and this
                // script's next `receive` panics, which ends the thread.
                conn.stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
            }
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let mut visited = 0;
    let result = client.for_each_namespace("/**", &mut |_| {
        visited += 1;
        true
    });
    match result {
        Err(ClientError::Protocol { code, .. }) => assert_eq!(code, ErrorCode::MalformedFrame),
        other => panic!("expected MalformedFrame after {visited} visits, got {other:?}"),
    }
    assert_eq!(visited, 1);
    drop(client);
    let _ = server.join();
}

/// Walk 11: `Client::groups` (and `groups_detail`) kept every group of every page while the
/// names went up, so a server inventing new names with `more` set without end grew the client
/// without bound. No server lists more than `GROUPS_LISTED_MAX` (the largest
/// `groups.groups_max`): past it the client stops with MalformedFrame. This fake server sends
/// pages of 1,000 new names, 150 of them (more than the limit), the last one without `more`.
#[test]
fn a_group_listing_longer_than_any_server_sends_is_refused() {
    use flo::client::GROUPS_LISTED_MAX;
    use flo::protocol::{GroupInfo, GroupsReply};
    const PAGE: usize = 1000;
    const PAGES: usize = 150;
    const _: () = assert!(PAGE * PAGES > GROUPS_LISTED_MAX);
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake_with(Welcome {
            frame_size_max: 1 << 20,
            ..fake_server::welcome(100)
        });
        let group = |index: usize| GroupInfo {
            name: format!("g{index:09}"),
            glob: "/**".into(),
            members: 0,
            in_flight: 0,
            pending: 0,
            parked: 0,
            floor: 0,
            next: 0,
            acked_above_floor: 0,
            lag: 0,
            oldest_pending_age_ms: 0,
        };
        for page in 0..PAGES {
            // The client stops past the limit and closes: the next `receive` then panics,
            // which ends this thread (its join is not checked).
            match conn.receive() {
                ClientFrame::GroupsRequest(_) => {}
                other => panic!("expected GroupsRequest, got {other:?}"),
            }
            conn.send(ServerFrame::Groups(GroupsReply {
                durable_end: 1,
                more: page + 1 < PAGES,
                groups: (page * PAGE..(page + 1) * PAGE).map(group).collect(),
            }));
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    match client.groups() {
        Err(ClientError::Protocol { code, message }) => {
            assert_eq!(code, ErrorCode::MalformedFrame);
            assert!(message.contains("100000 groups"), "{message}");
        }
        Ok(groups) => panic!("the client listed {} groups", groups.len()),
        Err(other) => panic!("expected MalformedFrame, got {other:?}"),
    }
    drop(client);
    let _ = server.join();
}

/// Fencing (protocol.md, SetProducer): a server that refuses a produce with `ProducerFenced`
/// (a newer connection announced the producer id) ends the idempotent producer. The error
/// reaches the caller as that code, the producer sends nothing more and never reconnects: a
/// reconnect would send SetProducer again and fence the newer connection in turn. Before,
/// the client did not know code 51: a protocol error, so it reconnected to announce the id
/// again (here: the fake server has gone, so the error was a refused connection).
#[test]
fn a_fenced_idempotent_producer_stops_without_reconnecting() {
    use flo::client::IdempotentProducer;
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        assert!(matches!(
            conn.receive(),
            ClientFrame::SetProducer {
                producer_id: 42,
                next_sequence: 1
            }
        ));
        let (op_id, _) = produce_op_id(conn.receive());
        conn.send(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(op_id),
            code: ErrorCode::ProducerFenced,
            message: "producer 42 was taken over by a newer connection".into(),
        }));
        // Nothing more comes: the client closes without another frame.
        let mut rest = Vec::new();
        let _ = conn.stream.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "the fenced producer sent {} bytes",
            rest.len()
        );
    });
    let client = Client::connect(&addr, options()).expect("connect");
    let mut producer = IdempotentProducer::with_client(client, &addr, options(), 42, 8);
    producer.set_reconnect(3, Duration::ZERO);
    let event = || NewEvent {
        namespace: "/fenced".into(),
        parent_id: None,
        data: b"x".to_vec(),
    };
    match producer.produce(event()) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::ProducerFenced);
            assert!(message.contains("newer connection"), "{message}");
        }
        other => panic!("expected ProducerFenced, got {other:?}"),
    }
    assert!(producer.is_fenced());
    match producer.send(event()) {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::ProducerFenced);
            assert!(message.contains("producer 42 is fenced"), "{message}");
        }
        other => panic!("expected ProducerFenced, got {other:?}"),
    }
    assert_eq!((producer.reconnects(), producer.in_flight()), (0, 0));
    drop(producer);
    server.join().expect("fake server");
}

/// fence12's audit: `flo-client groups parked` pages from the last offset + 1, so a server
/// repeating a page (offsets that do not move forward) kept it asking without end. The client
/// now refuses a page whose offsets are not in log order from the offset asked for.
#[test]
fn a_parked_page_that_does_not_move_forward_is_refused() {
    use flo::protocol::{ParkedEvent, ParkedReply};
    let (addr, server) = fake_server(|mut conn| {
        conn.handshake(100);
        let page = |offsets: &[u64]| {
            ServerFrame::Parked(ParkedReply {
                group: "g".into(),
                more: true,
                events: offsets
                    .iter()
                    .map(|&offset| ParkedEvent {
                        offset,
                        id: EventId::new(offset + 1, 1),
                    })
                    .collect(),
            })
        };
        for expected_from in [0, 8] {
            match conn.receive() {
                ClientFrame::ParkedRequest(request) => {
                    assert_eq!(request.from_offset, expected_from)
                }
                other => panic!("expected ParkedRequest, got {other:?}"),
            }
            // The same page twice: the second answers a request from offset 8.
            conn.send(page(&[3, 7]));
        }
    });
    let mut client = Client::connect(&addr, options()).expect("connect");
    let first = client.parked_page("g", 0).expect("a page in log order");
    assert_eq!(first.events.last().map(|event| event.offset), Some(7));
    match client.parked_page("g", 8) {
        Err(ClientError::Protocol { code, message }) => {
            assert_eq!(code, ErrorCode::MalformedFrame);
            assert!(message.contains("parked offset 3"), "{message}");
        }
        other => panic!("expected MalformedFrame, got {other:?}"),
    }
    drop(client);
    server.join().expect("fake server");
}
