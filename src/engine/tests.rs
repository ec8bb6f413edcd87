//! Engine scenario tests: no sockets, no clock. Each test feeds encoded frames with a fake
//! time, ends turns, and checks the frames and actions the engine produces.

use super::*;
use crate::config::Config;
use crate::event::{ActorId, Cursor, Event, StartPosition, VersionVector};
use crate::protocol::{
    decode, Ack, AnyFrame, Decode, EndReason, ErrorFrame, Expectation, NewEvent, Produce,
    ProduceBatch, ProduceIf, Subscribe,
};
use crate::storage::MemoryLog;

// Authentication and permissions (`--auth-file`), and the handshake fuzz.
mod auth;
// Membership: the member list, removal and addition.
mod members;
// The catch-up hold of a node on an empty (perhaps lost) data directory.
mod empty_dir;
// Id order: the reorder buffer and the members' clocks.
mod order;
// The peer handshake fuzz (issue 15).
mod peers_fuzz;
// What a connected peer is trusted with: credit, vector claims, clock promises, purges.
mod peer_trust;
// Conditional and idempotent produce.
mod streams;
// Purges, their tombstones between peers, and per-namespace retention.
mod purge;
// A full disk: produces refused, the log lines rate-limited.
mod storage_full;
// Received bytes decoded in place: only partial frames are buffered.
mod input;
// Waking tail subscriptions through the tail index (attack F4).
mod tail_index;
// Connection time-outs close on time whether or not events flow (review18, finding 7).
mod timeouts;

struct Harness {
    engine: Engine<MemoryLog>,
    now: Now,
    next_slot: u32,
    closed: Vec<(ConnId, Vec<AnyFrame>)>,
    dials: Vec<std::net::SocketAddr>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(|_| {})
    }

    /// A node configured for clustering (`--cluster-secret ""`), so peer scenarios can
    /// connect; [`Harness::standalone`] is one that is not.
    fn with_config(change: impl FnOnce(&mut Config)) -> Harness {
        Harness::with_log(MemoryLog::new(), |config| {
            config.cluster.secret = Some(String::new());
            change(config);
        })
    }

    /// A node with no `--peer-addr` and no `--cluster-secret`.
    fn standalone() -> Harness {
        Harness::with_log(MemoryLog::new(), |_| {})
    }

    fn with_log(log: MemoryLog, change: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/nonexistent".into());
        config.actor_id = ActorId(7);
        change(&mut config);
        // Not validated: some scenarios set limits that `Config::validate` refuses together
        // (a hard output limit below the high-water mark) to reach a backstop directly.
        let engine = Engine::new(EngineConfig::from_config(&config), log);
        Harness {
            engine,
            now: Now {
                wall: WallClockMs(1_700_000_000_000),
                monotonic: MonotonicMs(0),
            },
            next_slot: 0,
            closed: Vec::new(),
            dials: Vec::new(),
        }
    }

    /// Connects and completes the handshake.
    fn client(&mut self) -> ConnId {
        let conn = self.connect();
        self.send(conn, hello());
        self.turn();
        let frames = self.received(conn);
        assert!(
            matches!(frames.as_slice(), [ServerFrame::Welcome(w)] if w.actor_id == 7),
            "{frames:?}"
        );
        conn
    }

    fn connect(&mut self) -> ConnId {
        let conn = ConnId {
            slot: self.next_slot,
            generation: self.next_slot + 100,
        };
        self.next_slot += 1;
        self.engine.handle_connect(self.now, conn);
        conn
    }

    fn send<F: Encode>(&mut self, conn: ConnId, frame: F) {
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes);
        self.engine.handle_input(self.now, conn, &bytes);
    }

    fn turn(&mut self) {
        self.engine.handle_turn_end(self.now);
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Close { conn, final_output } => {
                    self.closed.push((conn, decode_all(&final_output)));
                }
                Action::Dial { addr } => self.dials.push(addr),
                Action::Send(_) => {}
            }
        }
    }

    /// Takes every frame the engine has queued for client connection `conn`, as if the
    /// socket took it all.
    fn received(&mut self, conn: ConnId) -> Vec<ServerFrame> {
        let bytes = self.engine.output(conn).to_vec();
        self.engine.handle_sent(conn, bytes.len());
        decode_all(&bytes)
    }

    /// Takes every frame the engine has queued for peer connection `conn`, without the
    /// PeerClock frames (id order has its own tests, `received_peer_all` keeps them).
    fn received_peer(&mut self, conn: ConnId) -> Vec<PeerFrame> {
        let frames = self.received_peer_all(conn);
        let clocks = |f: &PeerFrame| matches!(f, PeerFrame::PeerClock { .. });
        frames.into_iter().filter(|f| !clocks(f)).collect()
    }

    /// Takes every frame the engine has queued for peer connection `conn`.
    fn received_peer_all(&mut self, conn: ConnId) -> Vec<PeerFrame> {
        let bytes = self.engine.output(conn).to_vec();
        self.engine.handle_sent(conn, bytes.len());
        decode_all(&bytes)
    }

    fn produce(&mut self, conn: ConnId, op_id: u64, namespace: &str, data: &[u8]) {
        self.send(conn, produce(op_id, namespace, data));
    }

    fn closed_with(&self, conn: ConnId) -> Option<ErrorCode> {
        self.closed
            .iter()
            .find(|(c, _)| *c == conn)
            .and_then(|(_, frames)| match frames.last() {
                Some(AnyFrame::Server(ServerFrame::Error(ErrorFrame {
                    scope: ErrorScope::Connection,
                    code,
                    ..
                }))) => Some(*code),
                _ => None,
            })
    }
}

fn decode_all<F: Decode>(mut bytes: &[u8]) -> Vec<F> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, length) = decode(bytes, &WireLimits::default())
            .expect("the engine sends valid frames")
            .expect("the engine sends whole frames");
        frames.push(frame);
        bytes = &bytes[length..];
    }
    frames
}

fn hello() -> ClientFrame {
    ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "test".into(),
        auth_token: Vec::new(),
    })
}

fn produce(op_id: u64, namespace: &str, data: &[u8]) -> ClientFrame {
    ClientFrame::Produce(Produce {
        op_id,
        event: NewEvent {
            namespace: namespace.into(),
            parent_id: None,
            data: data.to_vec(),
        },
    })
}

fn subscribe(id: u32, glob: &str, start: StartPosition, tail: bool, credit: u32) -> ClientFrame {
    ClientFrame::Subscribe(Subscribe {
        subscription_id: id,
        glob: glob.into(),
        start,
        limit: 0,
        tail,
        skip_damaged: false,
        order: Default::default(),
        credit,
    })
}

/// A tailing id-order subscription of every namespace from the beginning.
fn subscribe_id_order(id: u32, credit: u32) -> ClientFrame {
    ClientFrame::Subscribe(Subscribe {
        subscription_id: id,
        glob: "/**".into(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: true,
        skip_damaged: false,
        order: crate::protocol::Order::Id,
        credit,
    })
}

fn events(frames: &[ServerFrame]) -> Vec<Event> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Event { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The events delivered to one subscription.
fn events_of(frames: &[ServerFrame], id: u32) -> Vec<Event> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Event {
                subscription_id,
                event,
            } if *subscription_id == id => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The ids delivered to one subscription, in delivery order.
fn ids_of(frames: &[ServerFrame], id: u32) -> Vec<EventId> {
    events_of(frames, id).iter().map(|e| e.id).collect()
}

impl Harness {
    /// Sends a Subscribe (no limit) on `conn`.
    fn subscribe(
        &mut self,
        conn: ConnId,
        id: u32,
        glob: &str,
        start: StartPosition,
        tail: bool,
        credit: u32,
    ) {
        self.send(conn, subscribe(id, glob, start, tail, credit));
    }

    /// Produces one event without data per namespace and ends the turn.
    fn produce_namespaces(&mut self, conn: ConnId, namespaces: &[&str]) {
        for (op_id, namespace) in namespaces.iter().enumerate() {
            self.produce(conn, op_id as u64, namespace, b"");
        }
        self.turn();
        self.received(conn);
    }
}

/// The ids of the PeerEvent frames.
fn peer_event_ids(frames: &[PeerFrame]) -> Vec<EventId> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            PeerFrame::PeerEvent(event) => Some(event.id),
            _ => None,
        })
        .collect()
}

/// The first ids of the Ack frames.
fn ack_ids(frames: &[ServerFrame]) -> Vec<EventId> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Ack(ack) => Some(ack.first_id),
            _ => None,
        })
        .collect()
}

fn namespaces(frames: &[ServerFrame]) -> Vec<String> {
    events(frames).into_iter().map(|e| e.namespace).collect()
}

#[test]
fn a_produce_is_acknowledged_only_after_the_turn_syncs() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/food/breakfast/eggs", b"I made some eggs");
    assert!(h.received(conn).is_empty(), "ack before the sync");
    assert_eq!(h.engine.log().durable_end().0, 0);
    h.turn();
    let frames = h.received(conn);
    assert_eq!(
        frames,
        vec![ServerFrame::Ack(Ack {
            op_id: 1,
            first_id: EventId::new(1, 7),
            count: 1,
            timestamp_ms: h.now.wall.0,
        })]
    );
    assert_eq!(h.engine.log().durable_end().0, 1);
}

#[test]
fn pipelined_produces_are_acknowledged_in_order_with_rising_ids() {
    let mut h = Harness::new();
    let conn = h.client();
    for op_id in 1..=5 {
        h.produce(conn, op_id, "/a", b"x");
    }
    h.produce(conn, 6, "no-slash", b"x");
    h.produce(conn, 7, "/a", b"x");
    h.turn();
    let frames = h.received(conn);
    let summary: Vec<(u64, Option<u64>)> = frames
        .iter()
        .map(|frame| match frame {
            ServerFrame::Ack(ack) => (ack.op_id, Some(ack.first_id.counter)),
            ServerFrame::Error(ErrorFrame {
                scope: ErrorScope::Produce(op_id),
                code: ErrorCode::InvalidNamespace,
                ..
            }) => (*op_id, None),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Some(1)),
            (2, Some(2)),
            (3, Some(3)),
            (4, Some(4)),
            (5, Some(5)),
            (6, None),
            (7, Some(6))
        ]
    );
    assert!(
        h.engine.is_open(conn),
        "a bad namespace keeps the connection"
    );
}

#[test]
fn an_oversized_event_is_refused_with_its_op_id() {
    let mut h = Harness::with_config(|c| {
        c.wire.event_data_size_max = 10;
        c.wire.frame_size_max = 64 * 1024;
    });
    let conn = h.client();
    h.produce(conn, 9, "/a", &[0; 11]);
    h.turn();
    let frames = h.received(conn);
    assert!(matches!(
        frames.as_slice(),
        [ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(9),
            code: ErrorCode::EventTooLarge,
            ..
        })]
    ));
    assert_eq!(h.engine.log().end().0, 0);
}

#[test]
fn a_failed_sync_fails_the_turns_produces_and_the_next_turn_works() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/a", b"lost");
    h.engine.log_mut().fail_next_sync = true;
    h.turn();
    let frames = h.received(conn);
    assert!(matches!(
        frames.as_slice(),
        [ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(1),
            code: ErrorCode::StorageFailure,
            ..
        })]
    ));
    assert_eq!(
        h.engine.log().end().0,
        0,
        "nothing of the failed turn stays"
    );
    h.produce(conn, 2, "/a", b"kept");
    h.turn();
    let frames = h.received(conn);
    assert!(matches!(
        frames.as_slice(),
        [ServerFrame::Ack(Ack { op_id: 2, .. })]
    ));
    let reader = h.client();
    h.subscribe(reader, 1, "/**", StartPosition::Beginning, false, 10);
    h.turn();
    let data: Vec<Vec<u8>> = events(&h.received(reader))
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, vec![b"kept".to_vec()]);
}

/// The metrics count what became durable (a failed turn's appends never count), every produce
/// error by its code, the connections by kind and the protocol bytes both ways.
#[test]
fn metrics_count_durable_appends_and_produce_errors_by_code() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/a", b"lost");
    h.engine.log_mut().fail_next_sync = true;
    h.turn();
    h.produce(conn, 2, "/a", b"kept");
    h.produce(conn, 3, "no-slash", b"refused");
    h.turn();
    let replies = h.received(conn);
    assert_eq!(replies.len(), 3);
    let reader = h.client();
    h.subscribe(reader, 1, "/**", StartPosition::Beginning, true, 10);
    h.turn();
    let snapshot = h.engine.metrics_snapshot();
    let appended: Vec<(u16, u64, u64)> = snapshot
        .appended
        .iter()
        .map(|(actor, n)| (*actor, n.events, n.data_bytes))
        .collect();
    let actor = h.engine.config().actor_id.0;
    assert_eq!(appended, [(actor, 1, 4)], "only the durable event counts");
    assert_eq!(
        snapshot.produce_errors,
        [
            (ErrorCode::InvalidNamespace, 1),
            (ErrorCode::StorageFailure, 1)
        ]
    );
    assert_eq!(snapshot.sync_failures, 1);
    assert_eq!(
        (snapshot.client_connections, snapshot.subscriptions),
        (2, 1)
    );
    assert!(snapshot.bytes_received > 0);
    assert!(snapshot.bytes_sent > 0);
    assert_eq!(snapshot.activity.fsync_count, 1, "one successful sync");
}

/// An InfoRequest is answered after the Ack of a Produce sent before it (replies in order),
/// from durable state: the event is counted.
#[test]
fn info_comes_after_earlier_acks_and_counts_them() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/a", b"x");
    h.send(conn, ClientFrame::InfoRequest);
    h.turn();
    let frames = h.received(conn);
    let [ServerFrame::Ack(Ack { op_id: 1, .. }), ServerFrame::Info(info)] = frames.as_slice()
    else {
        panic!("expected the Ack, then Info, got {frames:?}");
    };
    assert_eq!(info.event_count, 1);
    assert_eq!(info.client_connections, 1);
    assert_eq!(info.fsync_policy, "always");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_batch_is_all_or_nothing() {
    let mut h = Harness::new();
    let conn = h.client();
    let event = |namespace: &str| NewEvent {
        namespace: namespace.into(),
        parent_id: Some(EventId::new(3, 1)),
        data: b"d".to_vec(),
    };
    h.send(
        conn,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 1,
            events: vec![event("/a"), event("bad"), event("/c")],
        }),
    );
    h.send(
        conn,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 2,
            events: vec![event("/a"), event("/b"), event("/c")],
        }),
    );
    h.turn();
    let frames = h.received(conn);
    assert!(matches!(
        &frames[0],
        ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(1),
            code: ErrorCode::InvalidNamespace,
            ..
        })
    ));
    assert!(matches!(
        &frames[1],
        ServerFrame::Ack(Ack { op_id: 2, count: 3, first_id, .. }) if *first_id == EventId::new(1, 7)
    ));
    assert_eq!(h.engine.log().end().0, 3);
}

/// A batch over `batch_events_max` is refused with InvalidBatch naming its real count (the
/// decoder keeps views of only the first `batch_events_max` events, so the refusal is by the
/// frame's count), even when an event past the kept ones is invalid; a ProduceIf likewise. A
/// batch at the limit is appended whole, and the connection goes on.
#[test]
fn a_batch_over_the_limit_is_refused_by_its_count_and_one_at_the_limit_is_appended() {
    let mut h = Harness::with_config(|config| config.batch_events_max = 3);
    let conn = h.client();
    let event = |namespace: &str| NewEvent {
        namespace: namespace.into(),
        parent_id: None,
        data: b"d".to_vec(),
    };
    let over = vec![
        event("/a"),
        event("/a"),
        event("/a"),
        event("/a"),
        event("bad"),
    ];
    h.send(
        conn,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 1,
            events: over.clone(),
        }),
    );
    h.send(
        conn,
        ClientFrame::ProduceIf(ProduceIf {
            op_id: 2,
            expect: Expectation::NoEvents,
            events: over,
        }),
    );
    h.send(
        conn,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 3,
            events: vec![event("/a"), event("/b"), event("/c")],
        }),
    );
    h.turn();
    let frames = h.received(conn);
    let refused = |op_id: u64| {
        move |frame: &ServerFrame| {
            matches!(frame, ServerFrame::Error(ErrorFrame {
                scope: ErrorScope::Produce(id),
                code: ErrorCode::InvalidBatch,
                message,
            }) if *id == op_id && message == "a batch may hold at most 3 events; this one has 5")
        }
    };
    assert!(refused(1)(&frames[0]), "{frames:?}");
    assert!(refused(2)(&frames[1]), "{frames:?}");
    assert!(
        matches!(
            &frames[2],
            ServerFrame::Ack(Ack {
                op_id: 3,
                count: 3,
                ..
            })
        ),
        "{frames:?}"
    );
    assert_eq!(h.engine.log().end().0, 3);
    assert!(h.engine.is_open(conn));
}

#[test]
fn the_first_frame_must_be_hello() {
    let mut h = Harness::new();
    let conn = h.connect();
    h.produce(conn, 1, "/a", b"x");
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::HandshakeRequired));
    assert!(!h.engine.is_open(conn));
    assert_eq!(h.engine.log().end().0, 0);
}

#[test]
fn an_unsupported_version_gets_a_clear_error() {
    let mut h = Harness::new();
    let conn = h.connect();
    h.send(
        conn,
        ClientFrame::Hello(Hello {
            protocol_version: 99,
            client_name: "future".into(),
            auth_token: Vec::new(),
        }),
    );
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::UnsupportedVersion));
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    let mut h = Harness::new();
    let bad = h.client();
    let good = h.client();
    // A Produce frame whose namespace length runs past the end of the frame.
    h.engine.handle_input(
        h.now,
        bad,
        &[0, 0, 0, 12, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, b'/'],
    );
    h.produce(good, 1, "/a", b"x");
    h.turn();
    assert_eq!(h.closed_with(bad), Some(ErrorCode::MalformedFrame));
    assert!(matches!(h.received(good).as_slice(), [ServerFrame::Ack(_)]));
}

#[test]
fn frames_split_at_every_byte_are_handled_the_same() {
    let mut h = Harness::new();
    let conn = h.connect();
    let mut bytes = Vec::new();
    encode(&hello(), &mut bytes);
    encode(&produce(1, "/split/namespace", b"data"), &mut bytes);
    for byte in bytes {
        h.engine.handle_input(h.now, conn, &[byte]);
    }
    h.turn();
    let frames = h.received(conn);
    assert!(matches!(
        frames.as_slice(),
        [
            ServerFrame::Welcome(_),
            ServerFrame::Ack(Ack { op_id: 1, .. })
        ]
    ));
}

#[test]
fn a_non_tail_consume_reads_everything_then_ends() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(
        producer,
        &["/food/breakfast/eggs", "/food/lunch/salad", "/drinks/beer"],
    );
    let consumer = h.client();
    h.subscribe(consumer, 5, "/**", StartPosition::Beginning, false, 100);
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(
        namespaces(&frames),
        vec!["/food/breakfast/eggs", "/food/lunch/salad", "/drinks/beer"]
    );
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::End {
            subscription_id: 5,
            reason: EndReason::EndOfStream
        })
    );
}

#[test]
fn globs_filter_namespaces() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(
        producer,
        &[
            "/food/breakfast/eggs",
            "/food/breakfast/bacon",
            "/food/lunch/salad",
            "/drinks/beer",
        ],
    );
    let consumer = h.client();
    h.subscribe(
        consumer,
        1,
        "/food/*/eggs",
        StartPosition::Beginning,
        false,
        100,
    );
    h.subscribe(
        consumer,
        2,
        "/food/**",
        StartPosition::Beginning,
        false,
        100,
    );
    h.subscribe(consumer, 3, "/*/beer", StartPosition::Beginning, false, 100);
    h.subscribe(consumer, 4, "/food/[", StartPosition::Beginning, false, 100);
    h.turn();
    let frames = h.received(consumer);
    let of = |id: u32| -> Vec<String> {
        events_of(&frames, id)
            .into_iter()
            .map(|e| e.namespace)
            .collect()
    };
    assert_eq!(of(1), vec!["/food/breakfast/eggs"]);
    assert_eq!(
        of(2),
        vec![
            "/food/breakfast/eggs",
            "/food/breakfast/bacon",
            "/food/lunch/salad"
        ]
    );
    assert_eq!(of(3), vec!["/drinks/beer"]);
    assert!(frames.iter().any(|f| matches!(
        f,
        ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Subscription(4),
            code: ErrorCode::InvalidGlob,
            ..
        })
    )));
    assert!(h.engine.is_open(consumer));
}

/// A glob over `glob_length_max` and patterns that could never match what they say are
/// refused at Subscribe with InvalidGlob for that subscription; the over-long one is not
/// echoed back in the message.
#[test]
fn over_long_and_refused_globs_get_an_invalid_glob_error() {
    let mut h = Harness::new();
    let consumer = h.client();
    let glob_length_max = WireLimits::default().glob_length_max as usize;
    let too_long = format!("/{}", "a".repeat(glob_length_max));
    let longest = format!("/{}", "a".repeat(glob_length_max - 1));
    let globs = [
        too_long.as_str(),
        "/{a,b}",
        "/[z-a]",
        "/[/]",
        longest.as_str(),
    ];
    for (index, glob) in globs.iter().enumerate() {
        h.subscribe(
            consumer,
            index as u32 + 1,
            glob,
            StartPosition::End,
            true,
            1,
        );
    }
    h.turn();
    let frames = h.received(consumer);
    let errors: Vec<&ErrorFrame> = frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Error(error) => Some(error),
            _ => None,
        })
        .collect();
    let scopes: Vec<ErrorScope> = errors.iter().map(|error| error.scope).collect();
    assert_eq!(
        scopes,
        (1..=4).map(ErrorScope::Subscription).collect::<Vec<_>>()
    );
    assert!(errors
        .iter()
        .all(|error| error.code == ErrorCode::InvalidGlob));
    assert_eq!(
        errors[0].message,
        format!(
            "glob is {} bytes long, the limit is {glob_length_max} bytes",
            glob_length_max + 1
        )
    );
    assert!(h.engine.is_open(consumer));
}

#[test]
fn a_tail_consumer_is_told_when_it_is_caught_up_and_then_gets_new_events() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce(producer, 1, "/old", b"");
    h.turn();
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, true, 100);
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(namespaces(&frames), vec!["/old"]);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::CaughtUp { subscription_id: 1 })
    );
    h.produce(producer, 2, "/new", b"");
    // Not durable yet: nothing may reach the consumer before the turn's sync.
    assert!(h.received(consumer).is_empty());
    h.turn();
    assert_eq!(namespaces(&h.received(consumer)), vec!["/new"]);
    h.produce(producer, 3, "/newer", b"");
    h.turn();
    assert_eq!(namespaces(&h.received(consumer)), vec!["/newer"]);
}

#[test]
fn credit_limits_delivery_in_catch_up_and_live_mode() {
    let mut h = Harness::new();
    let producer = h.client();
    for op_id in 0..5 {
        h.produce(producer, op_id, "/a", b"");
    }
    h.turn();
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, true, 2);
    h.turn();
    assert_eq!(events(&h.received(consumer)).len(), 2);
    h.send(
        consumer,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 10,
        },
    );
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(events(&frames).len(), 3);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::CaughtUp { subscription_id: 1 })
    );
    // 7 credits left; produce 9 live events: 7 arrive, then 2 after more credit.
    for op_id in 10..19 {
        h.produce(producer, op_id, "/a", b"");
    }
    h.turn();
    assert_eq!(events(&h.received(consumer)).len(), 7);
    h.send(
        consumer,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 1,
        },
    );
    h.turn();
    assert_eq!(events(&h.received(consumer)).len(), 1);
    h.send(
        consumer,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 100,
        },
    );
    h.turn();
    assert_eq!(events(&h.received(consumer)).len(), 1);
}

#[test]
fn a_limit_ends_the_subscription() {
    let mut h = Harness::new();
    let producer = h.client();
    for op_id in 0..5 {
        h.produce(producer, op_id, "/a", b"");
    }
    h.turn();
    let consumer = h.client();
    let mut frame = subscribe(1, "/**", StartPosition::Beginning, true, 100);
    if let ClientFrame::Subscribe(s) = &mut frame {
        s.limit = 3;
    }
    h.send(consumer, frame);
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(events(&frames).len(), 3);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::End {
            subscription_id: 1,
            reason: EndReason::LimitReached
        })
    );
}

#[test]
fn start_positions_after_id_cursor_end_and_timestamp() {
    let mut h = Harness::new();
    let producer = h.client();
    for op_id in 0..4 {
        h.produce(producer, op_id, "/a", &[op_id as u8]);
        h.turn();
        h.now.wall.0 += 10;
    }
    h.received(producer);
    let consumer = h.client();
    let starts = [
        (1, StartPosition::AfterId(EventId::new(2, 7))),
        (2, StartPosition::End),
        (3, StartPosition::Timestamp(1_700_000_000_015)),
        (
            4,
            StartPosition::Cursor(Cursor::from_vector(
                [(ActorId(7), 3), (ActorId(1), 100)].into_iter().collect(),
            )),
        ),
        // Actor 7 is missing from this vector: all of its events are new to the consumer.
        (
            5,
            StartPosition::Cursor(Cursor::from_vector(
                [(ActorId(1), 100)].into_iter().collect::<VersionVector>(),
            )),
        ),
    ];
    for (id, start) in starts {
        h.subscribe(consumer, id, "/**", start, false, 100);
    }
    h.turn();
    let frames = h.received(consumer);
    let data_of =
        |id: u32| -> Vec<u8> { events_of(&frames, id).iter().map(|e| e.data[0]).collect() };
    assert_eq!(data_of(1), vec![2, 3]);
    assert_eq!(data_of(2), Vec::<u8>::new());
    assert_eq!(data_of(3), vec![2, 3]);
    assert_eq!(data_of(4), vec![3]);
    assert_eq!(data_of(5), vec![0, 1, 2, 3]);
}

#[test]
fn unsubscribe_ends_with_unsubscribed() {
    let mut h = Harness::new();
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::End, true, 10);
    h.turn();
    assert_eq!(
        h.received(consumer),
        vec![ServerFrame::CaughtUp { subscription_id: 1 }]
    );
    h.send(consumer, ClientFrame::Unsubscribe { subscription_id: 1 });
    h.send(consumer, ClientFrame::Unsubscribe { subscription_id: 1 });
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(
        frames[0],
        ServerFrame::End {
            subscription_id: 1,
            reason: EndReason::Unsubscribed
        }
    );
    assert!(matches!(
        frames[1],
        ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Subscription(1),
            code: ErrorCode::UnknownSubscription,
            ..
        })
    ));
}

#[test]
fn a_consumer_that_never_reads_costs_no_more_than_the_high_water_mark() {
    let high_water = 64 * 1024;
    let mut h = Harness::with_config(|c| c.send_buffer_high_water = high_water);
    let producer = h.client();
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, true, u32::MAX);
    h.turn();
    h.received(consumer);
    let data = vec![0u8; 1000];
    for op_id in 0..2000 {
        h.produce(producer, op_id, "/a", &data);
        h.turn();
        h.received(producer);
    }
    let pending = h.engine.output(consumer).len();
    assert!(
        pending >= high_water && pending < high_water + 2 * data.len(),
        "pending output {pending}"
    );
    // Once the consumer drains, it gets the rest, in order, with nothing lost.
    let mut delivered = 0;
    for _ in 0..100 {
        delivered += events(&h.received(consumer)).len();
        h.turn();
    }
    assert_eq!(delivered, 2000);
}

#[test]
fn a_new_event_wakes_only_matching_tail_consumers() {
    let mut h = Harness::new();
    let producer = h.client();
    let eggs = h.client();
    let beer = h.client();
    h.subscribe(eggs, 1, "/food/**", StartPosition::End, true, 10);
    h.subscribe(beer, 1, "/drinks/**", StartPosition::End, true, 10);
    h.turn();
    h.received(eggs);
    h.received(beer);
    h.produce(producer, 1, "/food/eggs", b"");
    h.turn();
    assert!(h.engine.ready.is_empty());
    assert_eq!(namespaces(&h.received(eggs)), vec!["/food/eggs"]);
    assert!(h.received(beer).is_empty());
}

/// Matching new events against tail subscriptions is charged against a per-turn budget:
/// 28 subscriptions whose long globs never match and 4 that match everything, then 64 events
/// with distinct long non-ASCII namespaces and, a turn later, 8 more. Every turn's matching
/// (counted in the matcher's steps) stays within the budget twice (waking, then feeding)
/// plus one match each, and every matching subscription still gets all 72 events in order.
#[test]
fn matching_new_events_against_tail_subscriptions_is_bounded_per_turn() {
    const BUDGET: u64 = 200_000;
    let mut h = Harness::with_config(|config| config.match_steps_per_turn_max = BUDGET);
    let never = format!("/**/*{}z", "?".repeat(200));
    let always = format!("/*{}", "?".repeat(100));
    let consumers: Vec<ConnId> = (0..4).map(|_| h.client()).collect();
    for &conn in &consumers {
        for id in 1..=8 {
            let glob = if id == 8 { &always } else { &never };
            h.subscribe(conn, id, glob, StartPosition::End, true, 1000);
        }
    }
    h.turn();
    for &conn in &consumers {
        h.received(conn);
    }
    let namespace = |i: usize| {
        let tail = [b'A' + (i % 26) as u8, b'A' + (i / 26) as u8];
        format!(
            "/{}{}",
            "é".repeat(126),
            std::str::from_utf8(&tail).unwrap()
        )
    };
    let produced: Vec<String> = (0..72).map(namespace).collect();
    // The most one match may cost (the glob test's bound): 7 passes over the words and a
    // binary search per namespace byte, for the longer glob (204 pieces, 4 words).
    let one_match_max = (produced[0].len() as u64 + 1) * (7 * 4 + 11);
    let turn_max = 2 * (BUDGET + one_match_max);
    let producer = h.client();
    let mut delivered: Vec<Vec<Event>> = vec![Vec::new(); consumers.len()];
    let mut turns = 0;
    loop {
        if turns == 0 || turns == 1 {
            let batch = if turns == 0 { 0..64 } else { 64..72 };
            for i in batch {
                h.produce(producer, i as u64, &produced[i], b"");
            }
        }
        let before = crate::protocol::glob::steps_taken();
        h.turn();
        let steps = crate::protocol::glob::steps_taken() - before;
        assert!(
            steps <= turn_max,
            "turn {turns}: {steps} matching steps, over {turn_max}"
        );
        turns += 1;
        for (index, &conn) in consumers.iter().enumerate() {
            let frames = h.received(conn);
            for id in 1..8 {
                assert!(
                    events_of(&frames, id).is_empty(),
                    "glob {id} does not match"
                );
            }
            delivered[index].extend(events_of(&frames, 8));
        }
        h.received(producer);
        if turns > 1 && h.engine.ready.is_empty() {
            break;
        }
        assert!(turns < 1000, "the consumers never caught up");
    }
    assert!(
        turns > 3,
        "the work fit in {turns} turns: the budget was not exercised"
    );
    for events in &delivered {
        let namespaces: Vec<&str> = events.iter().map(|e| e.namespace.as_str()).collect();
        assert_eq!(namespaces, produced, "every event, in order");
        assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id));
    }
}

#[test]
fn handshake_and_idle_time_outs_close_connections() {
    let mut h = Harness::with_config(|c| {
        c.handshake_timeout = std::time::Duration::from_secs(10);
        c.idle_timeout = std::time::Duration::from_secs(60);
    });
    let silent = h.connect();
    let idle = h.client();
    let pinging = h.client();
    for _ in 0..70 {
        h.now.monotonic.0 += 1000;
        h.send(pinging, ClientFrame::Ping { token: 1 });
        h.turn();
    }
    assert_eq!(h.closed_with(silent), Some(ErrorCode::Timeout));
    assert_eq!(h.closed_with(idle), Some(ErrorCode::Timeout));
    assert!(h.engine.is_open(pinging));
    assert!(h
        .received(pinging)
        .contains(&ServerFrame::Pong { token: 1 }));
}

/// Any byte resets the idle timer, a frame's first bytes included: a client trickling one
/// frame (the frame time-out set longer than the idle one) stays open past the idle
/// time-out, and the Error that closes it once it falls silent says that no bytes, not no
/// frame, arrived (it said "no frame received", though bytes had).
#[test]
fn the_idle_time_out_counts_bytes_and_its_error_says_so() {
    let mut h = Harness::with_config(|c| {
        c.idle_timeout = std::time::Duration::from_secs(60);
        c.frame_timeout = std::time::Duration::from_secs(600);
    });
    let trickling = h.client();
    let mut bytes = Vec::new();
    encode(&ClientFrame::Ping { token: 1 }, &mut bytes);
    // All but the last byte, one every 30 s: 2 minutes without a whole frame.
    for byte in &bytes[..bytes.len() - 1] {
        h.now.monotonic.0 += 30_000;
        h.engine
            .handle_input(h.now, trickling, std::slice::from_ref(byte));
        h.turn();
        assert!(
            h.engine.is_open(trickling),
            "closed after {} ms",
            h.now.monotonic.0
        );
    }
    h.now.monotonic.0 += 60_000;
    h.turn();
    let (_, frames) = (h.closed.iter())
        .find(|(conn, _)| *conn == trickling)
        .expect("closed once silent for the idle time-out");
    match frames.last() {
        Some(AnyFrame::Server(ServerFrame::Error(error))) => {
            assert_eq!(error.code, ErrorCode::Timeout);
            assert_eq!(error.message, "no bytes received within the idle time-out");
        }
        other => panic!("expected a Timeout error, got {other:?}"),
    }
}

/// `--fsync interval` runs on the monotonic clock: after the wall clock steps back a minute,
/// the next fdatasync still comes one interval after the last, not a minute later.
#[test]
fn the_fsync_interval_keeps_its_schedule_when_the_wall_clock_steps_back() {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/nonexistent".into());
    config.actor_id = ActorId(7);
    config.storage.fsync = crate::config::FsyncPolicy::IntervalMs(100);
    let log = MemoryLog::with_fsync(config.storage.fsync);
    let mut h = Harness::new();
    h.engine = Engine::new(EngineConfig::from_config(&config), log);
    let conn = h.client();
    h.produce(conn, 1, "/clock", b"first");
    h.turn();
    assert_eq!(
        h.engine.log().fsynced_end(),
        crate::storage::Offset(1),
        "the first sync fsyncs"
    );
    // Each step: the wall clock goes back 60 s once, the monotonic clock on by 150 ms.
    for step in 2..=10u64 {
        if step == 2 {
            h.now.wall.0 -= 60_000;
        }
        h.now.monotonic.0 += 150;
        h.produce(conn, step, "/clock", b"more");
        h.turn();
        assert_eq!(
            h.engine.log().fsynced_end(),
            crate::storage::Offset(step),
            "no fdatasync {} ms after the last one (the wall clock stepped back)",
            150
        );
    }
}

#[test]
fn shutdown_releases_the_last_acks_before_closing() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/a", b"x");
    h.engine.handle_shutdown(h.now);
    let mut closes = Vec::new();
    while let Some(action) = h.engine.poll_action() {
        if let Action::Close { conn, final_output } = action {
            closes.push((conn, decode_all(&final_output)));
        }
    }
    assert_eq!(closes.len(), 1);
    let frames = &closes[0].1;
    assert!(matches!(frames[0], ServerFrame::Ack(Ack { op_id: 1, .. })));
    assert!(matches!(
        frames[1],
        ServerFrame::Error(ErrorFrame {
            code: ErrorCode::ShuttingDown,
            ..
        })
    ));
    assert_eq!(h.engine.log().durable_end().0, 1);
}

#[test]
fn the_counter_moves_past_stored_events_on_start() {
    let mut log = MemoryLog::new();
    log.append(Event {
        id: EventId::new(41, 3),
        parent_id: None,
        namespace: "/a".into(),
        timestamp_ms: 0,
        data: Vec::new(),
    })
    .unwrap();
    log.sync(MonotonicMs(0)).unwrap();
    let config = Config::new("127.0.0.1:0".parse().unwrap(), "/x".into());
    let engine = Engine::new(EngineConfig::from_config(&config), log);
    assert_eq!(engine.counter(), 41);
}

// Peer connections. The simulation (tests/cluster_sim.rs) runs whole clusters; these pin the
// rules of one connection.

fn peer_hello(actor: u16, nonce: u8) -> PeerFrame {
    PeerFrame::PeerHello(crate::protocol::PeerHandshake {
        protocol_version: PROTOCOL_VERSION,
        actor_id: actor,
        advertised_addr: format!("10.0.0.{actor}:3000"),
        nonce: [nonce; 32],
    })
}

/// The dialer's PeerProof for a handshake from `actor` with nonce `[nonce; 32]`, answered by
/// `welcome`, with `secret` and `vector`.
fn dialer_proof(
    actor: u16,
    nonce: u8,
    welcome: &crate::protocol::PeerHandshake,
    secret: &[u8],
    vector: VersionVector,
) -> PeerFrame {
    dialer_proof_bound(actor, nonce, welcome, secret, vector, None)
}

/// `dialer_proof` over a TLS session whose channel binding is `channel_binding`.
fn dialer_proof_bound(
    actor: u16,
    nonce: u8,
    welcome: &crate::protocol::PeerHandshake,
    secret: &[u8],
    vector: VersionVector,
    channel_binding: Option<crate::protocol::ChannelBinding>,
) -> PeerFrame {
    let transcript = crate::protocol::PeerTranscript {
        dialer_nonce: [nonce; 32],
        acceptor_nonce: welcome.nonce,
        dialer_actor: actor,
        acceptor_actor: welcome.actor_id,
        channel_binding,
    };
    PeerFrame::PeerProof(crate::protocol::PeerProof {
        proof: transcript.proof(secret, crate::protocol::PeerRole::Dialer),
        vector,
        members: Vec::new(),
    })
}

/// Sends PeerHello from `actor` on a new connection; returns it and the PeerWelcome.
fn hello_welcome(
    harness: &mut Harness,
    actor: u16,
    nonce: u8,
) -> (ConnId, crate::protocol::PeerHandshake) {
    let conn = harness.connect();
    harness.send(conn, peer_hello(actor, nonce));
    harness.turn();
    match harness.received_peer(conn).as_slice() {
        [PeerFrame::PeerWelcome(welcome)] => (conn, welcome.clone()),
        other => panic!("expected PeerWelcome, got {other:?}"),
    }
}

/// Connects a peer (actor `actor`) with `secret` and runs the handshake; returns the
/// connection and the frames the engine sent after PeerProof (PeerAccept, PeerCredit, maybe
/// events, or an Error).
fn peer_with_secret(
    harness: &mut Harness,
    actor: u16,
    secret: &[u8],
    vector: VersionVector,
) -> (ConnId, Vec<PeerFrame>) {
    let (conn, welcome) = hello_welcome(harness, actor, 9);
    harness.send(conn, dialer_proof(actor, 9, &welcome, secret, vector));
    harness.turn();
    let frames = harness.received_peer(conn);
    (conn, frames)
}

/// The acceptor's PeerAccept for a handshake this engine dialed: `hello` is the engine's
/// PeerHello, the acceptor is `actor` with nonce `[nonce; 32]`.
fn acceptor_accept(
    hello: &crate::protocol::PeerHandshake,
    actor: u16,
    nonce: u8,
    vector: VersionVector,
) -> PeerFrame {
    let transcript = crate::protocol::PeerTranscript {
        dialer_nonce: hello.nonce,
        acceptor_nonce: [nonce; 32],
        dialer_actor: hello.actor_id,
        acceptor_actor: actor,
        channel_binding: None,
    };
    PeerFrame::PeerAccept(crate::protocol::PeerProof {
        proof: transcript.proof(b"", crate::protocol::PeerRole::Acceptor),
        vector,
        members: Vec::new(),
    })
}

/// Answers the engine's PeerHello on the dialed `conn` as `actor` at `addr` (PeerWelcome,
/// then PeerAccept with `vector` once the engine's PeerProof came).
fn accept_dial(
    harness: &mut Harness,
    conn: ConnId,
    actor: u16,
    addr: std::net::SocketAddr,
    vector: VersionVector,
) {
    let hello = match harness.received_peer(conn).as_slice() {
        [PeerFrame::PeerHello(hello)] => hello.clone(),
        other => panic!("expected PeerHello, got {other:?}"),
    };
    let welcome = PeerFrame::PeerWelcome(crate::protocol::PeerHandshake {
        protocol_version: PROTOCOL_VERSION,
        actor_id: actor,
        advertised_addr: addr.to_string(),
        nonce: [actor as u8; 32],
    });
    harness.send(conn, welcome);
    harness.turn();
    assert!(
        matches!(
            harness.received_peer(conn).as_slice(),
            [PeerFrame::PeerProof(_)]
        ),
        "the dialer proves itself after PeerWelcome"
    );
    harness.send(conn, acceptor_accept(&hello, actor, actor as u8, vector));
    harness.turn();
}

fn stored(counter: u64, actor: u16, data: &[u8]) -> Event {
    Event {
        id: EventId::new(counter, actor),
        parent_id: None,
        namespace: "/replicated".into(),
        timestamp_ms: 5,
        data: data.to_vec(),
    }
}

/// Connects a peer (actor `actor`) and completes the handshake; returns the connection and
/// the frames the engine sent after the peer's proof (PeerAccept, PeerCredit, maybe events).
fn peer(harness: &mut Harness, actor: u16, vector: VersionVector) -> (ConnId, Vec<PeerFrame>) {
    let (conn, frames) = peer_with_secret(harness, actor, b"", vector);
    assert!(
        matches!(frames.first(), Some(PeerFrame::PeerAccept(_))),
        "{frames:?}"
    );
    (conn, frames)
}

/// Issue 10 item 16: Status says how long a disconnected peer has been gone (the time of the
/// disconnect is the engine's last given monotonic time; the engine reads no clock).
#[test]
fn status_says_since_when_a_peer_is_disconnected() {
    let mut harness = Harness::new();
    harness.now.monotonic.0 = 5_000;
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    let member = |harness: &Harness| {
        let status = harness.engine.status();
        let member = status.members.iter().find(|m| m.actor_id == 2).cloned();
        member.expect("actor 2 is a member")
    };
    harness.now.monotonic.0 = 10_000;
    harness.turn();
    assert_eq!(member(&harness).disconnected_ms, 0, "connected");
    harness.engine.handle_closed(conn);
    harness.now.monotonic.0 = 52_000;
    harness.turn();
    let gone = member(&harness);
    assert_ne!(gone.state, crate::protocol::MemberState::Connected);
    assert_eq!(gone.disconnected_ms, 42_000);
}

/// Issue 17 walkthrough: a member killed after it had received this node's events showed
/// its handshake vector ({} in a new cluster) while disconnected, so `flo-client status` said
/// it missed everything, its own events included. It shows what this node's stream had sent
/// it when the connection ended (before, the handshake vector: {} here).
#[test]
fn a_disconnected_member_shows_the_vector_its_stream_had_reached() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(conn, PeerFrame::PeerCredit { count: 10 });
    let client = harness.client();
    harness.produce(client, 1, "/a", b"x");
    harness.produce(client, 2, "/a", b"y");
    harness.send(conn, PeerFrame::PeerEvent(stored(1, 2, b"theirs")));
    harness.turn();
    harness.turn();
    harness.engine.handle_closed(conn);
    harness.turn();
    let status = harness.engine.status();
    let member = status.members.iter().find(|m| m.actor_id == 2).cloned();
    let expected: VersionVector = [(ActorId(2), 1), (ActorId(7), 2)].into_iter().collect();
    assert_eq!(member.expect("actor 2 is a member").vector, expected);
}

#[test]
fn a_peer_frame_on_a_client_connection_closes_it() {
    let mut harness = Harness::new();
    let conn = harness.client();
    harness.send(conn, PeerFrame::PeerEvent(stored(1, 2, b"x")));
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::UnexpectedFrame));
    assert_eq!(
        harness.engine.log().durable_end().0,
        0,
        "nothing was injected"
    );
}

#[test]
fn a_peer_with_our_actor_id_or_a_wrong_secret_is_refused() {
    let mut harness = Harness::with_config(|c| c.cluster.secret = Some("s3cret".into()));
    let own = harness.connect();
    harness.send(own, peer_hello(7, 1));
    harness.turn();
    assert_eq!(harness.closed_with(own), Some(ErrorCode::ActorIdConflict));
    let (wrong, frames) = peer_with_secret(&mut harness, 2, b"guess", VersionVector::new());
    assert!(
        !frames.iter().any(|f| matches!(f, PeerFrame::PeerAccept(_))),
        "no proof, vector or member list for a dialer without the secret: {frames:?}"
    );
    assert_eq!(harness.closed_with(wrong), Some(ErrorCode::AuthFailed));
    assert!(harness.engine.connected_peers().is_empty());
    let (_, frames) = peer_with_secret(&mut harness, 2, b"s3cret", VersionVector::new());
    assert!(matches!(frames.first(), Some(PeerFrame::PeerAccept(_))));
    assert_eq!(harness.engine.connected_peers(), vec![ActorId(2)]);
}

/// Issue 15: the secret travelled in cleartext in PeerHello, so one recorded handshake let
/// anyone join. Now a recorded PeerHello and PeerProof, replayed on a new connection, fail
/// against the acceptor's fresh nonce, and the secret is in no frame.
#[test]
fn a_replayed_peer_handshake_is_refused_and_no_frame_carries_the_secret() {
    let secret = b"a-long-cluster-secret";
    let mut harness = Harness::with_config(|c| {
        c.cluster.secret = Some(String::from_utf8(secret.to_vec()).unwrap())
    });
    let (first, welcome) = hello_welcome(&mut harness, 2, 9);
    let proof = dialer_proof(2, 9, &welcome, secret, VersionVector::new());
    let mut recorded = Vec::new();
    crate::protocol::encode(&peer_hello(2, 9), &mut recorded);
    crate::protocol::encode(&proof, &mut recorded);
    assert!(
        !recorded.windows(secret.len()).any(|w| w == secret),
        "the secret is not on the wire"
    );
    harness.send(first, proof.clone());
    harness.turn();
    assert!(matches!(
        harness.received_peer(first).first(),
        Some(PeerFrame::PeerAccept(_))
    ));
    // The same bytes again, after the first connection is gone.
    harness.engine.handle_closed(first);
    harness.turn();
    let replay = harness.connect();
    harness.send(replay, peer_hello(2, 9));
    harness.send(replay, proof);
    harness.turn();
    assert_eq!(harness.closed_with(replay), Some(ErrorCode::AuthFailed));
    assert!(harness.engine.connected_peers().is_empty());
}

/// Issue 15, channel binding: over TLS the proofs are bound to the session's exported value.
/// A proof made on another TLS session (a man in the middle that terminates TLS relays the
/// dialer's proof from its own session with the dialer) is refused, and so is one made without
/// the binding; the proof made on this session is taken.
#[test]
fn a_peer_proof_from_another_tls_session_is_refused() {
    let secret = b"a-long-cluster-secret";
    let mut harness = Harness::with_config(|c| {
        c.cluster.secret = Some(String::from_utf8(secret.to_vec()).unwrap())
    });
    let ours = [0x5a; 32];
    let relayed = [0xa5; 32];
    for (binding, accepted) in [(Some(relayed), false), (None, false), (Some(ours), true)] {
        let conn = harness.connect();
        harness.engine.handle_channel_binding(conn, ours);
        harness.send(conn, peer_hello(2, 9));
        harness.turn();
        let welcome = match harness.received_peer(conn).as_slice() {
            [PeerFrame::PeerWelcome(welcome)] => welcome.clone(),
            other => panic!("expected PeerWelcome, got {other:?}"),
        };
        let proof = dialer_proof_bound(2, 9, &welcome, secret, VersionVector::new(), binding);
        harness.send(conn, proof);
        harness.turn();
        let frames = harness.received_peer(conn);
        if accepted {
            assert!(matches!(frames.first(), Some(PeerFrame::PeerAccept(_))));
            assert_eq!(harness.engine.connected_peers(), vec![ActorId(2)]);
        } else {
            assert_eq!(
                harness.closed_with(conn),
                Some(ErrorCode::AuthFailed),
                "a proof with binding {binding:?} was taken on a session bound to {ours:?}"
            );
            assert!(harness.engine.connected_peers().is_empty());
        }
    }
}

/// Issue 15: failed peer proofs are rate-limited per source IP address. After
/// `peer_proof_failures_max` failures in the window a PeerHello from that address (any port)
/// is refused with AuthFailed before a nonce is made; another address is not affected; after
/// the window the address may try again, and then a right proof is taken.
#[test]
fn failed_peer_proofs_are_rate_limited_per_source_address() {
    let mut harness = Harness::with_config(|c| {
        c.cluster.secret = Some("s3cret".into());
        c.cluster.peer_proof_failures_max = 3;
        c.cluster.peer_proof_failure_window = std::time::Duration::from_secs(60);
    });
    let attacker = |port: u16| std::net::SocketAddr::from(([192, 0, 2, 7], port));
    let guess = |harness: &mut Harness, from: std::net::SocketAddr, secret: &[u8]| {
        let conn = harness.connect();
        harness.engine.handle_peer_addr(conn, from);
        harness.send(conn, peer_hello(2, 9));
        harness.turn();
        let frames = harness.received_peer(conn);
        let Some(PeerFrame::PeerWelcome(welcome)) = frames.first() else {
            return (conn, false);
        };
        let welcome = welcome.clone();
        harness.send(
            conn,
            dialer_proof(2, 9, &welcome, secret, VersionVector::new()),
        );
        harness.turn();
        (conn, true)
    };
    for port in 1..=3 {
        let (conn, welcomed) = guess(&mut harness, attacker(port), b"guess");
        assert!(welcomed, "guess {port} is checked");
        assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    }
    let (conn, welcomed) = guess(&mut harness, attacker(4), b"guess");
    assert!(
        !welcomed,
        "a fourth handshake from an address with three failed proofs got a nonce"
    );
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    let (_, welcomed) = guess(&mut harness, attacker(5), b"s3cret");
    assert!(!welcomed, "refused unchecked, even with the right secret");
    let bystander = std::net::SocketAddr::from(([192, 0, 2, 8], 1));
    let (conn, welcomed) = guess(&mut harness, bystander, b"guess");
    assert!(welcomed, "another address is checked");
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    harness.now.monotonic.0 += 60_000;
    let (_, welcomed) = guess(&mut harness, attacker(6), b"s3cret");
    assert!(welcomed, "after the window the address is checked again");
    assert_eq!(harness.engine.connected_peers(), vec![ActorId(2)]);
}

/// Found by the peer fuzz (issue 15): a peer that listed a known actor under ever new
/// addresses in PeerMembers made this node dial every one of them; the addresses it dials are
/// now at most `members_max` besides the `--peer-addr`s.
#[test]
fn a_peer_cannot_make_a_node_dial_more_addresses_than_members_max() {
    let mut harness = Harness::with_config(|c| c.cluster.members_max = 4);
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    for round in 0..5u16 {
        let members = (0..100u16)
            .map(|i| crate::protocol::Member {
                actor_id: 3,
                addr: format!("10.9.{round}.{i}:3000"),
            })
            .collect();
        harness.send(conn, PeerFrame::PeerMembers(members));
        harness.turn();
    }
    assert!(harness.engine.is_open(conn));
    let mut dialed = harness.dials.clone();
    dialed.sort();
    dialed.dedup();
    assert!(
        dialed.len() <= 4,
        "a peer made this node dial {} addresses with members_max 4",
        dialed.len()
    );
}

/// The dialer checks the acceptor's proof too: a PeerAccept made without the secret (or
/// recorded from another handshake) is refused, and the address is redialed later.
#[test]
fn a_dialer_refuses_an_acceptor_without_the_secret() {
    let mut harness = Harness::with_config(|c| {
        c.cluster.secret = Some("s3cret".into());
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    harness.turn();
    let addr = *harness.dials.first().expect("a Dial action");
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    harness.engine.handle_dialed(harness.now, conn, addr);
    // `accept_dial` proves with the empty secret, not "s3cret".
    accept_dial(&mut harness, conn, 2, addr, VersionVector::new());
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    assert!(harness.engine.connected_peers().is_empty());
}

/// Issue 15, per-peer actor rules: a peer may send its own events, this node's, and those
/// of members and of actors in its handshake vector; an actor no member declared is refused.
#[test]
fn a_peer_event_of_an_actor_no_member_declared_is_refused() {
    let mut harness = Harness::new();
    let held: VersionVector = [(ActorId(3), 1)].into_iter().collect();
    let (conn, _) = peer(&mut harness, 2, held);
    for event in [
        stored(1, 2, b"own"),
        stored(2, 3, b"relayed"),
        stored(3, 7, b"ours"),
    ] {
        harness.send(conn, PeerFrame::PeerEvent(event));
    }
    harness.turn();
    assert!(harness.engine.is_open(conn));
    assert_eq!(harness.engine.log().durable_end().0, 3);
    harness.send(conn, PeerFrame::PeerEvent(stored(4, 99, b"invented")));
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::ActorNotAllowed));
    assert_eq!(harness.engine.log().version_vector().get(ActorId(99)), 0);
}

#[test]
fn a_peer_is_sent_what_its_vector_lacks_under_credit() {
    let mut harness = Harness::new();
    let client = harness.client();
    for op in 1..=4 {
        harness.produce(client, op, "/a", b"x");
    }
    harness.turn();
    harness.received(client);
    // The peer holds 7:1 and 7:2 already.
    let vector: VersionVector = [(ActorId(7), 2)].into_iter().collect();
    let (conn, frames) = peer(&mut harness, 2, vector);
    assert!(frames.contains(&PeerFrame::PeerCredit { count: 1024 }));
    assert!(!frames.iter().any(|f| matches!(f, PeerFrame::PeerEvent(_))));
    harness.send(conn, PeerFrame::PeerCredit { count: 1 });
    harness.turn();
    let sent: Vec<EventId> = peer_event_ids(&harness.received_peer(conn));
    assert_eq!(sent, vec![EventId::new(3, 7)], "one credit, one event");
    // The credit of that event comes back (a peer never holds more than its first window).
    harness.send(conn, PeerFrame::PeerCredit { count: 1 });
    harness.turn();
    let sent: Vec<EventId> = peer_event_ids(&harness.received_peer(conn));
    assert_eq!(sent, vec![EventId::new(4, 7)]);
}

#[test]
fn replicated_events_keep_their_ids_duplicates_are_dropped_and_credit_returns_after_sync() {
    let mut harness = Harness::new();
    let consumer = harness.client();
    harness.subscribe(consumer, 1, "/**", StartPosition::Beginning, true, 100);
    harness.turn();
    harness.received(consumer);
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(conn, PeerFrame::PeerEvent(stored(10, 2, b"a")));
    harness.send(conn, PeerFrame::PeerEvent(stored(10, 2, b"a")));
    harness.send(conn, PeerFrame::PeerEvent(stored(9, 2, b"old")));
    harness.send(conn, PeerFrame::PeerEvent(stored(12, 2, b"b")));
    assert_eq!(
        harness.engine.output(conn),
        &[] as &[u8],
        "no credit before the sync"
    );
    harness.turn();
    assert_eq!(
        harness.received_peer(conn),
        vec![PeerFrame::PeerCredit { count: 4 }],
        "credit back for all four, after the sync, and nothing echoed back"
    );
    let delivered: Vec<EventId> = events(&harness.received(consumer))
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(delivered, vec![EventId::new(10, 2), EventId::new(12, 2)]);
    assert_eq!(
        harness.engine.counter(),
        12,
        "the Lamport clock moved past them"
    );
    let client = harness.client();
    harness.produce(client, 1, "/a", b"mine");
    harness.turn();
    let acks: Vec<EventId> = ack_ids(&harness.received(client));
    assert_eq!(acks, vec![EventId::new(13, 7)]);
}

#[test]
fn a_peer_that_sends_beyond_its_credit_is_closed() {
    let mut harness = Harness::with_config(|_| {});
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    for counter in 1..=1025 {
        harness.send(conn, PeerFrame::PeerEvent(stored(counter, 2, b"")));
    }
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::UnexpectedFrame));
}

#[test]
fn a_second_connection_to_the_same_peer_keeps_the_one_dialed_by_the_lower_actor() {
    let mut harness = Harness::new();
    // Actor 2 (lower than our 7) dials twice: each is dialed by 2, so the first one stays
    // and the second is refused.
    let (first, _) = peer(&mut harness, 2, VersionVector::new());
    let (second, _) = peer_with_secret(&mut harness, 2, b"", VersionVector::new());
    assert_eq!(
        harness.closed_with(second),
        Some(ErrorCode::DuplicatePeerConnection)
    );
    // PeerAccept came first, so the dialer learns who this address is and stops dialing it.
    let (_, frames) = harness.closed.iter().find(|(c, _)| *c == second).unwrap();
    assert!(
        matches!(
            frames.first(),
            Some(AnyFrame::Peer(PeerFrame::PeerAccept(_)))
        ),
        "{frames:?}"
    );
    assert!(harness.engine.is_open(first));
    assert_eq!(harness.engine.connected_peers(), vec![ActorId(2)]);
}

#[test]
fn status_reports_the_node_and_its_members() {
    let mut harness = Harness::new();
    let client = harness.client();
    harness.produce(client, 1, "/a", b"x");
    harness.turn();
    harness.received(client);
    let (_peer, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(client, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    let frames = harness.received(client);
    let [ServerFrame::Status(status)] = frames.as_slice() else {
        panic!("{frames:?}");
    };
    assert_eq!(status.actor_id, 7);
    assert_eq!(status.counter, 1);
    assert_eq!(status.durable_end, 1);
    assert_eq!(status.members.len(), 1);
    let member = &status.members[0];
    assert_eq!(member.actor_id, 2);
    assert_eq!(member.state, crate::protocol::MemberState::Connected);
    assert_eq!(
        member.lag, 1,
        "one record not yet sent (the peer gave no credit)"
    );
}

#[test]
fn with_fsync_interval_and_peers_produces_wait_until_caught_up_with_them() {
    let mut harness = Harness::with_config(|c| {
        c.storage.fsync = crate::config::FsyncPolicy::IntervalMs(100);
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    let client = harness.client();
    harness.produce(client, 1, "/a", b"x");
    harness.turn();
    let frames = harness.received(client);
    assert!(
        matches!(frames.as_slice(), [ServerFrame::Error(e)] if e.code == ErrorCode::NotReady),
        "{frames:?}"
    );
    // The engine dials its configured peer.
    let addr = *harness.dials.first().expect("a Dial action");
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    harness.engine.handle_dialed(harness.now, conn, addr);
    // The peer holds our events up to counter 3, which our log lost.
    accept_dial(
        &mut harness,
        conn,
        2,
        addr,
        [(ActorId(7), 3)].into_iter().collect(),
    );
    assert!(harness.engine.is_holding_produces(), "not caught up yet");
    for counter in 1..=3 {
        harness.send(conn, PeerFrame::PeerEvent(stored(counter, 7, b"ours")));
    }
    harness.turn();
    assert!(!harness.engine.is_holding_produces());
    harness.produce(client, 2, "/a", b"x");
    harness.turn();
    let acks: Vec<EventId> = ack_ids(&harness.received(client));
    assert_eq!(acks, vec![EventId::new(4, 7)], "no id reused");
}

#[test]
fn caught_up_and_end_come_even_when_the_credit_is_spent_on_earlier_events() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(producer, &["/match", "/other", "/other"]);
    let consumer = h.client();
    h.subscribe(consumer, 1, "/match", StartPosition::Beginning, true, 1);
    h.subscribe(consumer, 2, "/match", StartPosition::Beginning, false, 1);
    h.subscribe(consumer, 3, "/nothing", StartPosition::Beginning, false, 0);
    h.turn();
    let frames = h.received(consumer);
    assert!(frames.contains(&ServerFrame::CaughtUp { subscription_id: 1 }));
    for id in [2, 3] {
        assert!(
            frames.contains(&ServerFrame::End {
                subscription_id: id,
                reason: EndReason::EndOfStream
            }),
            "{frames:?}"
        );
    }
}

#[test]
fn a_subscription_from_the_end_skips_a_produce_sent_just_before_it() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/before", b"");
    h.subscribe(conn, 1, "/**", StartPosition::End, true, 10);
    h.turn();
    h.produce(conn, 2, "/after", b"");
    h.turn();
    let frames = h.received(conn);
    assert_eq!(namespaces(&frames), vec!["/after"]);
}

#[test]
fn a_bad_frame_after_a_produce_still_gets_the_ack_before_the_error() {
    let mut h = Harness::new();
    let conn = h.client();
    let mut bytes = Vec::new();
    encode(&produce(1, "/kept", b"x"), &mut bytes);
    bytes.extend_from_slice(&[0, 0, 0, 1, 0x1f]);
    h.engine.handle_input(h.now, conn, &bytes);
    assert!(!h.engine.is_open(conn), "no more input is taken");
    h.turn();
    let (_, frames) = h.closed.iter().find(|(c, _)| *c == conn).expect("closed");
    assert!(
        matches!(
            frames[0],
            AnyFrame::Server(ServerFrame::Ack(Ack { op_id: 1, .. }))
        ),
        "{frames:?}"
    );
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MalformedFrame));
    assert_eq!(h.engine.log().durable_end().0, 1);
    assert_eq!(h.engine.connection_count(), 0);
}

#[test]
fn an_idle_time_out_of_zero_never_closes() {
    let mut h = Harness::with_config(|c| c.idle_timeout = std::time::Duration::ZERO);
    let conn = h.client();
    for _ in 0..5 {
        h.now.monotonic.0 += 3_600_000;
        h.turn();
    }
    assert!(h.engine.is_open(conn));
}

#[test]
fn a_failed_sync_does_not_make_an_end_subscription_skip_reused_offsets() {
    let mut h = Harness::new();
    let conn = h.client();
    h.produce(conn, 1, "/lost", b"");
    h.subscribe(conn, 1, "/**", StartPosition::End, true, 10);
    h.engine.log_mut().fail_next_sync = true;
    h.turn();
    h.received(conn);
    h.produce(conn, 2, "/kept", b"");
    h.turn();
    assert_eq!(namespaces(&h.received(conn)), vec!["/kept"]);
}

/// A failed sync discards the turn's replicated appends. A PeerProof this node sent on a
/// connection it dialed in that turn carried a vector that counted them; the acceptor filters
/// its whole stream by that vector, so it would never send them again (the cluster simulator's
/// seeds 297 and 960: a node that lacked two events for good). The connection is closed too.
#[test]
fn a_failed_sync_closes_a_dialed_connection_whose_proof_claimed_the_lost_appends() {
    let mut h = Harness::with_config(|c| {
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    let (three, _) = peer(&mut h, 3, VersionVector::new());
    h.turn();
    let addr = *h.dials.first().expect("a Dial action");
    let dial = ConnId {
        slot: 50,
        generation: 1,
    };
    h.engine.handle_dialed(h.now, dial, addr);
    assert!(matches!(
        h.received_peer(dial).as_slice(),
        [PeerFrame::PeerHello(_)]
    ));
    // In one turn: actor 3's event arrives, then actor 2's PeerWelcome, so the PeerProof goes
    // out with a vector that holds 3:5; then the turn's sync fails.
    h.send(three, PeerFrame::PeerEvent(stored(5, 3, b"lost")));
    h.send(
        dial,
        PeerFrame::PeerWelcome(crate::protocol::PeerHandshake {
            protocol_version: PROTOCOL_VERSION,
            actor_id: 2,
            advertised_addr: addr.to_string(),
            nonce: [2; 32],
        }),
    );
    h.engine.log_mut().fail_next_sync = true;
    h.turn();
    assert_eq!(h.engine.log_mut().version_vector().get(ActorId(3)), 0);
    let sent: Vec<PeerFrame> = match h.closed.iter().find(|(c, _)| *c == dial) {
        Some((_, frames)) => frames
            .iter()
            .filter_map(|f| match f {
                AnyFrame::Peer(frame) => Some(frame.clone()),
                _ => None,
            })
            .collect(),
        None => h.received_peer(dial),
    };
    assert!(
        sent.iter()
            .any(|f| matches!(f, PeerFrame::PeerProof(proof) if proof.vector.get(ActorId(3)) == 5)),
        "the proof counted the append the sync then lost: {sent:?}"
    );
    assert!(
        !h.engine.is_open(dial),
        "a dialed connection whose proof claimed lost events must not be accepted"
    );
}

#[test]
fn a_peer_frame_other_than_peer_hello_before_the_handshake_is_unexpected() {
    let mut harness = Harness::new();
    let conn = harness.connect();
    // Only the kind byte has arrived: refused at once.
    harness
        .engine
        .handle_input(harness.now, conn, &[0, 0, 0, 9, kind::PEER_CREDIT]);
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::UnexpectedFrame));
}

#[test]
fn the_catch_up_hold_also_waits_for_actors_whose_events_the_log_holds() {
    let mut harness = Harness::with_config(|c| {
        c.storage.fsync = crate::config::FsyncPolicy::IntervalMs(100);
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    // Actor 3 produced an event this node holds, though no configured peer is actor 3.
    harness.engine.log_mut().append(stored(1, 3, b"x")).unwrap();
    harness.engine.log_mut().sync(MonotonicMs(0)).unwrap();
    harness.turn();
    let addr = *harness.dials.first().expect("a Dial action");
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    harness.engine.handle_dialed(harness.now, conn, addr);
    accept_dial(
        &mut harness,
        conn,
        2,
        addr,
        [(ActorId(3), 1)].into_iter().collect(),
    );
    assert!(
        harness.engine.is_holding_produces(),
        "actor 3 may hold lost events"
    );
    // Actor 3 dials in.
    let (_three, _) = peer(&mut harness, 3, [(ActorId(3), 1)].into_iter().collect());
    harness.turn();
    assert!(!harness.engine.is_holding_produces());
}

#[test]
fn a_former_member_without_peer_addresses_holds_produces_too() {
    let engine_with = |fsync| {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/x".into());
        config.actor_id = ActorId(7);
        config.storage.fsync = fsync;
        let mut log = MemoryLog::new();
        log.append(stored(1, 3, b"from actor 3")).unwrap();
        log.sync(MonotonicMs(0)).unwrap();
        Engine::new(EngineConfig::from_config(&config), log)
    };
    use crate::config::FsyncPolicy;
    assert!(engine_with(FsyncPolicy::IntervalMs(100)).is_holding_produces());
    assert!(engine_with(FsyncPolicy::Never).is_holding_produces());
    assert!(!engine_with(FsyncPolicy::Always).is_holding_produces());
}

#[test]
fn a_replicated_event_with_an_invalid_namespace_closes_the_peer_and_is_not_stored() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    let mut bad = stored(3, 2, b"x");
    bad.namespace = "no-slash".into();
    harness.send(conn, PeerFrame::PeerEvent(bad));
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::MalformedFrame));
    assert_eq!(harness.engine.log().end().0, 0);
}

// ---- Bounds (issue 10, items 7-9): every connection's cost is bounded. ----

/// `count` encoded copies of `frame`.
fn repeated<F: Encode>(frame: &F, count: usize) -> Vec<u8> {
    let mut one = Vec::new();
    encode(frame, &mut one);
    one.repeat(count)
}

/// Feeds `chunk` as a reactor would (only while the engine wants input), up to `count` times,
/// never calling `handle_sent`. Returns the largest output seen and the chunks fed.
fn feed_without_reading(
    h: &mut Harness,
    conn: ConnId,
    chunk: &[u8],
    count: usize,
) -> (usize, usize) {
    let mut output_max = 0;
    let mut fed = 0;
    while fed < count && h.engine.wants_input(conn) {
        h.engine.handle_input(h.now, conn, chunk);
        h.turn();
        fed += 1;
        output_max = output_max.max(h.engine.output(conn).len());
    }
    (output_max, fed)
}

#[test]
fn a_client_that_never_reads_its_pongs_stops_being_read() {
    let mut h = Harness::new();
    let conn = h.client();
    let high_water = h.engine.config().send_buffer_high_water;
    // 1000 chunks of 1000 Pings: a million Pings, 13 MB of Pongs if all were answered.
    let chunk = repeated(&ClientFrame::Ping { token: 9 }, 1000);
    let (output_max, fed) = feed_without_reading(&mut h, conn, &chunk, 1000);
    assert!(
        output_max < high_water + 64 * 1024,
        "the output of a client that never reads grew to {output_max} bytes"
    );
    assert!(
        fed < 1000,
        "the engine took all {fed} chunks of a client that never reads"
    );
    assert!(!h.engine.wants_input(conn));
    assert!(
        h.engine.is_open(conn),
        "back-pressure is not a reason to close"
    );
    // The client reads everything: the input left undecoded is decoded at the next turn, in
    // order, and the engine wants input again.
    let mut tokens = 0;
    while !h.engine.wants_input(conn) || !h.engine.output(conn).is_empty() {
        tokens += h.received(conn).len();
        h.turn();
    }
    tokens += h.received(conn).len();
    assert_eq!(
        tokens,
        fed * 1000,
        "every Ping the engine took got its Pong"
    );
}

#[test]
fn pipelined_producers_with_64_in_flight_are_never_paused() {
    let mut h = Harness::new();
    let conn = h.client();
    let window: Vec<u8> = (0..64)
        .flat_map(|op_id| {
            let mut bytes = Vec::new();
            encode(&produce(op_id, "/fast", &[1; 100]), &mut bytes);
            bytes
        })
        .collect();
    for _ in 0..100 {
        assert!(h.engine.wants_input(conn));
        h.engine.handle_input(h.now, conn, &window);
        h.turn();
        assert_eq!(h.received(conn).len(), 64);
    }
    assert_eq!(h.engine.stats().events_appended, 6400);
}

#[test]
fn output_over_the_hard_limit_closes_the_connection() {
    // A consumer is fed up to the high-water mark plus one event; with the hard limit below
    // that (a configuration `validate` refuses) the limit is what stops it.
    let mut h = Harness::with_config(|c| {
        c.send_buffer_high_water = 64 * 1024;
        c.output_bytes_hard_max = 100 * 1024;
    });
    let producer = h.client();
    let consumer = h.client();
    for op_id in 0..4 {
        h.produce(producer, op_id, "/big", &[0; 60 * 1024]);
    }
    h.turn();
    h.subscribe(consumer, 1, "/big", StartPosition::Beginning, true, 100);
    h.turn();
    assert_eq!(h.closed_with(consumer), Some(ErrorCode::ResourceLimit));
    assert!(h.engine.is_open(producer));
}

#[test]
fn a_connection_over_its_memory_budget_is_closed() {
    let mut h = Harness::with_config(|c| {
        c.connection_memory_max = 20 * 1024;
    });
    let conn = h.client();
    let other = h.client();
    let glob = format!("/{}", "a".repeat(500));
    for id in 0..10 {
        h.subscribe(conn, id, &glob, StartPosition::End, true, 0);
        h.turn();
        h.received(conn);
    }
    assert_eq!(h.closed_with(conn), Some(ErrorCode::ResourceLimit));
    assert!(h.engine.is_open(other));
}

#[test]
fn a_client_that_never_reads_its_acks_stops_being_read() {
    let mut h = Harness::new();
    let conn = h.client();
    let high_water = h.engine.config().send_buffer_high_water;
    let mut output_max = 0;
    for chunk_index in 0..200u64 {
        let mut chunk = Vec::new();
        for op_id in 0..1000 {
            encode(&produce(chunk_index * 1000 + op_id, "/p", b""), &mut chunk);
        }
        if !h.engine.wants_input(conn) {
            break;
        }
        h.engine.handle_input(h.now, conn, &chunk);
        h.turn();
        output_max = output_max.max(h.engine.output(conn).len());
    }
    assert!(
        output_max < high_water + 64 * 1024,
        "the acks of a client that never reads grew to {output_max} bytes"
    );
    assert!(!h.engine.wants_input(conn));
}

#[test]
fn a_frame_before_the_handshake_over_the_hello_limit_closes_at_once() {
    let mut h = Harness::new();
    let conn = h.connect();
    // The header of a 5000-byte Hello: refused from its length alone.
    let mut header = 4996u32.to_be_bytes().to_vec();
    header.push(kind::HELLO);
    h.engine.handle_input(h.now, conn, &header);
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::FrameTooLarge));
}

#[test]
fn a_cursor_with_too_many_entries_is_refused() {
    let mut h = Harness::new();
    let conn = h.client();
    let vector: VersionVector = (1..=2000u16).map(|a| (ActorId(a), 5)).collect();
    h.subscribe(
        conn,
        1,
        "/**",
        StartPosition::Cursor(Cursor::from_vector(vector)),
        true,
        10,
    );
    h.turn();
    let frames = h.received(conn);
    assert!(
        matches!(
            frames.as_slice(),
            [ServerFrame::Error(ErrorFrame {
                scope: ErrorScope::Subscription(1),
                code: ErrorCode::CursorTooLarge,
                ..
            })]
        ),
        "a 2000-entry cursor was accepted: {frames:?}"
    );
}

#[test]
fn a_frame_that_trickles_in_byte_by_byte_times_out() {
    let mut h = Harness::new();
    let conn = h.client();
    let mut bytes = Vec::new();
    encode(&produce(1, "/slow", &[7; 100]), &mut bytes);
    // One byte a second: every byte is input, but the frame never completes in time.
    for byte in bytes.iter().take(60) {
        h.engine
            .handle_input(h.now, conn, std::slice::from_ref(byte));
        h.turn();
        h.now.monotonic.0 += 1000;
    }
    assert_eq!(
        h.closed_with(conn),
        Some(ErrorCode::Timeout),
        "a frame trickling in for 60 s was not timed out"
    );
}

#[test]
fn a_partial_frame_of_a_paused_connection_does_not_time_out() {
    let mut h = Harness::new();
    let conn = h.client();
    let chunk = repeated(&ClientFrame::Ping { token: 9 }, 1000);
    feed_without_reading(&mut h, conn, &chunk, 1000);
    assert!(!h.engine.wants_input(conn));
    // Leave half a Ping behind the paused input: the server holds it up, not the client.
    h.engine.handle_input(h.now, conn, &chunk[..6]);
    for _ in 0..30 {
        h.now.monotonic.0 += 1000;
        h.turn();
    }
    assert!(h.engine.is_open(conn), "{:?}", h.closed_with(conn));
}

/// Peer connections to a node configured for clustering (the harness's default) are served;
/// this node has no `--peer-addr` and no secret: it refuses them.
#[test]
fn a_standalone_node_refuses_peer_hello() {
    let mut harness = Harness::standalone();
    let conn = harness.connect();
    harness.send(conn, peer_hello(2, 1));
    harness.turn();
    assert_eq!(
        harness.closed_with(conn),
        Some(ErrorCode::UnexpectedFrame),
        "a standalone node must refuse PeerHello"
    );
    assert!(harness.engine.connected_peers().is_empty());
}

/// Issue 10, item 2: one PeerEvent with counter 2^64-2 made the next produces get 2^64-1,
/// then 0, reusing ids.
#[test]
fn a_peer_event_far_ahead_of_the_counter_is_refused_and_ids_are_never_reused() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(
        conn,
        PeerFrame::PeerEvent(stored(u64::MAX - 1, 2, b"absurd")),
    );
    harness.turn();
    assert_eq!(
        harness.closed_with(conn),
        Some(ErrorCode::MalformedFrame),
        "a PeerEvent with an absurd counter must close the peer"
    );
    assert_eq!(harness.engine.log().end().0, 0, "the event was not stored");
    assert_eq!(harness.engine.counter(), 0, "the counter did not move");
    let client = harness.client();
    for op in 1..=3 {
        harness.produce(client, op, "/a", b"x");
    }
    harness.turn();
    let acks = ack_ids(&harness.received(client));
    assert_eq!(
        acks,
        (1..=3).map(|c| EventId::new(c, 7)).collect::<Vec<_>>()
    );
}

/// Issue 10, item 3: a PeerEvent of actor 0 is not an event of any actor.
#[test]
fn a_peer_event_of_actor_0_is_refused() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(conn, PeerFrame::PeerEvent(stored(1, 0, b"nobody")));
    harness.turn();
    assert_eq!(
        harness.closed_with(conn),
        Some(ErrorCode::MalformedFrame),
        "a PeerEvent of actor 0 must close the peer"
    );
    assert_eq!(harness.engine.log().end().0, 0, "the event was not stored");
}

/// Issue 13 (session 9): a connection whose frames waited for a later turn's frame budget
/// (`input_deferred`) and that the reactor's decode of them then closed (a malformed frame
/// behind the produces) kept its stale deferred mark, so the same turn's `decode_deferred`
/// decoded it again: the server panicked ("input decoded after the close") and the client lost
/// its last acks and the error. Each owed ack, then the MalformedFrame error.
#[test]
fn a_connection_closed_while_decoding_deferred_frames_gets_its_acks_and_the_error() {
    let mut harness = Harness::with_config(|config| config.frames_per_turn_total_max = 16);
    let client = harness.client();
    let mut bytes = Vec::new();
    for op_id in 1..=20 {
        encode(&produce(op_id, "/deferred", b"x"), &mut bytes);
    }
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    harness.engine.handle_input(harness.now, client, &bytes);
    assert!(harness.engine.input_deferred(client), "16 of 20 decoded");
    harness.turn();
    let mut frames = harness.received(client);
    // The reactor decodes the waiting frames (empty input) before it reads the socket again.
    harness
        .engine
        .handle_input_within(harness.now, client, &[], usize::MAX);
    assert!(
        !harness.engine.is_open(client),
        "the malformed frame closed it"
    );
    harness.engine.check_invariants();
    harness.turn();
    let (_, last) = harness
        .closed
        .iter()
        .find(|(conn, _)| *conn == client)
        .expect("the connection was closed");
    frames.extend(last.iter().filter_map(|frame| match frame {
        AnyFrame::Server(frame) => Some(frame.clone()),
        AnyFrame::Client(_) | AnyFrame::Peer(_) => None,
    }));
    let acked: Vec<u64> = frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Ack(ack) => Some(ack.op_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, (1..=20).collect::<Vec<_>>());
    assert_eq!(harness.closed_with(client), Some(ErrorCode::MalformedFrame));
}

/// Issue 10, item 3: PeerEvents from every actor (0 included) made the next StatusRequest
/// panic in the codec. A node now holds events of at most `actors_max` actors.
#[test]
fn events_of_too_many_actors_are_refused_and_status_still_answers() {
    let mut harness = Harness::new();
    let client = harness.client();
    harness.produce(client, 1, "/own", b"x");
    harness.turn();
    let actors: Vec<u16> = (1..=u16::MAX).chain([0]).filter(|a| *a != 7).collect();
    // The peer declares each batch's actors in its handshake vector, so that they pass the
    // per-peer actor rule and meet the actor limit.
    let declared = |batch: &[u16]| -> VersionVector {
        let real = batch.iter().filter(|a| **a != 0);
        real.map(|a| (ActorId(*a), 1)).collect()
    };
    let mut refusals = 0;
    for batch in actors.chunks(1024) {
        let (conn, _) = peer(&mut harness, 2, declared(batch));
        for actor in batch {
            harness.send(conn, PeerFrame::PeerEvent(stored(1, *actor, b"")));
            if !harness.engine.is_open(conn) {
                break;
            }
        }
        harness.turn();
        harness.received(conn);
        if harness.closed_with(conn).is_some() {
            assert_eq!(harness.closed_with(conn), Some(ErrorCode::MalformedFrame));
            refusals += 1;
            if refusals == 3 {
                break;
            }
        } else {
            harness.engine.handle_closed(conn);
            harness.turn();
        }
    }
    let held = harness.engine.log().version_vector().len();
    harness.send(client, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    assert!(held <= 1024, "the log holds events of {held} actors");
    harness.received(client);
    harness.send(client, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    let frames = harness.received(client);
    assert!(
        matches!(frames.as_slice(), [ServerFrame::Status(_)]),
        "{frames:?}"
    );
}

/// Issue 10, item 4: one PeerMembers listing 5,000 invented members made a node dial about
/// 720 times a second forever. Dials are now bounded: at most `members_max` members are
/// learned, and a discovered member that never answered is forgotten after a few attempts.
#[test]
fn invented_members_cost_a_bounded_number_of_dials() {
    let mut harness = Harness::new();
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    let members: Vec<crate::protocol::Member> = (0..5000u16)
        .map(|i| crate::protocol::Member {
            actor_id: 100 + i,
            addr: format!("10.9.{}.{}:3000", i / 250, i % 250 + 1),
        })
        .collect();
    harness.send(conn, PeerFrame::PeerMembers(members));
    let mut dials = 0;
    let mut dials_last_minute = 0;
    // Ten simulated minutes in 100 ms steps; every dial fails.
    for step in 0..6000 {
        harness.now.monotonic.0 += 100;
        harness.now.wall.0 += 100;
        harness.turn();
        let due = std::mem::take(&mut harness.dials);
        // The real peer (actor 2, 10.0.0.2) times out and is redialed: not counted.
        let invented = due
            .iter()
            .filter(|a| a.to_string().starts_with("10.9."))
            .count();
        dials += invented;
        if step >= 5400 {
            dials_last_minute += invented;
        }
        for addr in due {
            harness.engine.handle_dial_failed(harness.now, addr);
        }
    }
    assert!(dials <= 64 * 10, "{dials} dials in ten minutes");
    assert_eq!(
        dials_last_minute, 0,
        "members that never answered are forgotten"
    );
    assert!(harness.engine.status().members.len() <= 65);
}

/// Issue 10, item 2: counters never wrap. With the ahead limit lifted, a peer moves the
/// counter to one below the last; one produce still fits, the next is refused with a clear
/// error, and nothing is stored under a reused id. A counter past the last is never accepted.
#[test]
fn produces_are_refused_at_the_end_of_the_counter_space_and_never_wrap() {
    let mut harness = Harness::with_config(|c| c.cluster.peer_counter_ahead_max = u64::MAX);
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(
        conn,
        PeerFrame::PeerEvent(stored(EventId::COUNTER_MAX - 1, 2, b"")),
    );
    harness.turn();
    assert_eq!(harness.engine.counter(), EventId::COUNTER_MAX - 1);
    let client = harness.client();
    harness.produce(client, 1, "/a", b"last");
    harness.produce(client, 2, "/a", b"one too many");
    harness.turn();
    let frames = harness.received(client);
    assert_eq!(
        ack_ids(&frames),
        vec![EventId::new(EventId::COUNTER_MAX, 7)]
    );
    assert!(
        matches!(&frames[1], ServerFrame::Error(e) if e.code == ErrorCode::StorageFailure
            && e.scope == ErrorScope::Produce(2) && e.message.contains("counter")),
        "{frames:?}"
    );
    assert_eq!(harness.engine.counter(), EventId::COUNTER_MAX);
    assert_eq!(
        harness.engine.log().end().0,
        2,
        "nothing stored past the end"
    );
    harness.send(conn, PeerFrame::PeerEvent(stored(u64::MAX, 3, b"")));
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::MalformedFrame));
}

/// A peer event exactly `peer_counter_ahead_max` ahead is accepted; one more is refused.
#[test]
fn the_counter_ahead_limit_is_inclusive() {
    let mut harness = Harness::with_config(|c| c.cluster.peer_counter_ahead_max = 1000);
    let (conn, _) = peer(&mut harness, 2, VersionVector::new());
    harness.send(conn, PeerFrame::PeerEvent(stored(1000, 2, b"")));
    harness.send(conn, PeerFrame::PeerEvent(stored(2001, 2, b"")));
    harness.turn();
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::MalformedFrame));
    assert_eq!(harness.engine.counter(), 1000);
    assert_eq!(harness.engine.log().end().0, 1);
}

/// Issue 10, item 3, the restart path: a log that already holds events of every possible
/// actor (and a stray event of actor 0) starts, answers a StatusRequest and shakes hands;
/// its events are served, and events of new actors are refused.
#[test]
fn a_log_holding_events_of_too_many_actors_is_served_after_a_restart() {
    let mut log = MemoryLog::new();
    log.append(stored(1, 0, b"actor 0")).unwrap();
    for actor in 1..=u16::MAX {
        log.append(stored(1, actor, b"")).unwrap();
    }
    log.sync(crate::time::MonotonicMs(0)).unwrap();
    let mut harness = Harness::with_log(log, |c| c.cluster.secret = Some(String::new()));
    assert_eq!(harness.engine.log().version_vector().len(), 65535);
    let client = harness.client();
    harness.send(client, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    let frames = harness.received(client);
    assert!(matches!(frames.as_slice(), [ServerFrame::Status(s)] if s.vector.len() == 65535));
    // This node's own handshake carries the whole vector (a peer with the same limit
    // refuses it; see `a_handshake_vector_over_the_actor_limit_is_refused`).
    let (conn, frames) = peer(&mut harness, 2, VersionVector::new());
    assert!(matches!(&frames[0], PeerFrame::PeerAccept(a) if a.vector.len() == 65535));
    harness.send(conn, PeerFrame::PeerEvent(stored(2, 2, b"known actor")));
    harness.turn();
    assert_eq!(
        harness.received_peer(conn),
        vec![PeerFrame::PeerCredit { count: 1 }]
    );
}

/// A handshake whose vector lists more actors than `actors_max` is refused.
#[test]
fn a_handshake_vector_over_the_actor_limit_is_refused() {
    let mut harness = Harness::with_config(|c| {
        c.cluster.actors_max = 3;
        c.cluster.members_max = 2;
    });
    let vector: VersionVector = (1..=4).map(|a| (ActorId(a), 1)).collect();
    let (conn, _) = peer_with_secret(&mut harness, 2, b"", vector);
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::MalformedFrame));
}

#[test]
fn a_subscription_from_the_end_with_no_credit_sent_with_a_produce_gets_caught_up_and_end() {
    let mut h = Harness::new();
    let conn = h.client();
    h.subscribe(conn, 1, "/**", StartPosition::End, true, 0);
    h.subscribe(conn, 2, "/**", StartPosition::End, false, 0);
    h.produce(conn, 1, "/x", b"");
    h.turn();
    let frames = h.received(conn);
    assert!(
        frames.contains(&ServerFrame::CaughtUp { subscription_id: 1 }),
        "tail subscription from the end gets CaughtUp at once: {frames:?}"
    );
    assert!(
        frames.contains(&ServerFrame::End {
            subscription_id: 2,
            reason: EndReason::EndOfStream
        }),
        "non-tail subscription from the end gets End at once: {frames:?}"
    );
}

#[test]
fn retention_that_deletes_unread_events_tells_the_consumer_how_many() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(producer, &["/a", "/a", "/a", "/a", "/a"]);
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, true, 1);
    h.turn();
    assert_eq!(namespaces(&h.received(consumer)), vec!["/a"]);
    // Retention deletes three records: the one delivered and two the consumer has not read.
    h.engine.log.delete_oldest(3);
    h.send(
        consumer,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 10,
        },
    );
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(
        frames.first(),
        Some(&ServerFrame::Skipped {
            subscription_id: 1,
            count: 2
        }),
        "{frames:?}"
    );
    assert_eq!(events_of(&frames, 1).len(), 2, "{frames:?}");
    assert!(frames.contains(&ServerFrame::CaughtUp { subscription_id: 1 }));
}

/// Issue 10 item 6: a consumer may choose to skip a damaged range of the log (Subscribe flags
/// bit 1); it is told with Skipped and gets every readable event after it. Without the option
/// the subscription ends with `StorageFailure` at the damage, as before.
#[test]
fn a_subscription_that_asks_skips_a_damaged_range_with_skipped_and_goes_on() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(producer, &["/a", "/a", "/a", "/a", "/a"]);
    assert!(h.engine.log.flip_bit(crate::storage::Offset(2)));
    let skipping = h.client();
    h.send(
        skipping,
        ClientFrame::Subscribe(Subscribe {
            subscription_id: 1,
            glob: "/**".into(),
            start: StartPosition::Beginning,
            limit: 0,
            tail: false,
            skip_damaged: true,
            order: Default::default(),
            credit: 100,
        }),
    );
    let plain = h.client();
    h.subscribe(plain, 1, "/**", StartPosition::Beginning, false, 100);
    h.turn();
    let frames = h.received(skipping);
    assert_eq!(events_of(&frames, 1).len(), 4, "{frames:?}");
    assert_eq!(
        frames[2],
        ServerFrame::Skipped {
            subscription_id: 1,
            count: 1
        },
        "{frames:?}"
    );
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::End {
            subscription_id: 1,
            reason: EndReason::EndOfStream
        })
    );
    let frames = h.received(plain);
    assert_eq!(events_of(&frames, 1).len(), 2, "{frames:?}");
    assert!(
        matches!(frames.last(), Some(ServerFrame::Error(e))
            if e.code == ErrorCode::StorageFailure && e.message.contains("offsets 2..3")),
        "{frames:?}"
    );
}

/// A cursor whose first uncovered record lies past the damage: the start search meets the
/// damage, and a subscription that asked to skip starts there instead of being refused.
#[test]
fn a_skipping_subscription_whose_start_search_meets_damage_starts_at_it() {
    let mut h = Harness::new();
    let producer = h.client();
    h.produce_namespaces(producer, &["/a", "/a", "/a", "/a"]);
    assert!(h.engine.log.flip_bit(crate::storage::Offset(1)));
    let consumer = h.client();
    let cursor = Cursor::from_vector([(ActorId(7), 2)].into_iter().collect());
    h.send(
        consumer,
        ClientFrame::Subscribe(Subscribe {
            subscription_id: 1,
            glob: "/**".into(),
            start: StartPosition::Cursor(cursor),
            limit: 0,
            tail: true,
            skip_damaged: true,
            order: Default::default(),
            credit: 100,
        }),
    );
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(
        frames.first(),
        Some(&ServerFrame::Skipped {
            subscription_id: 1,
            count: 1
        }),
        "{frames:?}"
    );
    let ids: Vec<u64> = events_of(&frames, 1).iter().map(|e| e.id.counter).collect();
    assert_eq!(ids, vec![3, 4], "{frames:?}");
    assert!(frames.contains(&ServerFrame::CaughtUp { subscription_id: 1 }));
}

#[test]
fn the_length_is_checked_before_the_kind_then_the_body() {
    // Length 0 with a peer kind byte after it: the length check comes first.
    let mut h = Harness::new();
    let conn = h.client();
    h.engine
        .handle_input(h.now, conn, &[0, 0, 0, 0, kind::PEER_EVENT]);
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MalformedFrame));
    // A length over the limit with a peer kind: FrameTooLarge, not UnexpectedFrame.
    let conn = h.client();
    h.engine
        .handle_input(h.now, conn, &[0xff, 0xff, 0xff, 0xff, kind::PEER_EVENT]);
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::FrameTooLarge));
    // A good length and a peer kind on a client connection: UnexpectedFrame, before the body.
    let conn = h.client();
    h.engine
        .handle_input(h.now, conn, &[0, 0, 0, 9, kind::PEER_EVENT]);
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::UnexpectedFrame));
}

/// Issue 10 review: acknowledged events lost in a power loss (`--fsync never`) must not give
/// their ids to new events after the restart. The counter restarts at the log's lease, above
/// every counter handed out, and the lease is written once per step, not per produce.
#[test]
fn ids_of_events_lost_in_a_power_loss_are_never_given_again() {
    let mut harness = Harness::with_log(
        MemoryLog::with_fsync(crate::config::FsyncPolicy::Never),
        |_| {},
    );
    let client = harness.client();
    for op_id in 1..=100 {
        harness.produce(client, op_id, "/lost", b"acked");
    }
    harness.turn();
    let acked = ack_ids(&harness.received(client));
    assert_eq!(acked.last(), Some(&EventId::new(100, 7)));
    assert_eq!(
        harness.engine.log().lease_writes,
        1,
        "one lease for 100 events"
    );
    let mut log = harness.engine.into_log();
    log.crash(0);
    assert_eq!(
        log.version_vector().counter_max(),
        0,
        "the power loss took them"
    );
    let mut harness = Harness::with_log(log, |_| {});
    let client = harness.client();
    harness.produce(client, 1, "/lost", b"after the restart");
    harness.turn();
    let ids = ack_ids(&harness.received(client));
    assert!(
        ids.iter().all(|id| id.counter > 100),
        "an event after the restart got an id acknowledged before: {ids:?}"
    );
}

/// The invariant check catches a fact stored twice that disagrees with itself (here a
/// connection that claims to be in the output queue but is not).
#[test]
#[should_panic(expected = "has_output_queued disagrees with the output queue")]
fn check_invariants_catches_a_flag_that_disagrees_with_its_queue() {
    let mut h = Harness::new();
    let conn = h.client();
    h.engine.check_invariants();
    h.engine.conn_mut(conn).expect("open").has_output_queued = true;
    h.engine.check_invariants();
}

/// Issue 10 follow-up, item 1: 600 tail subscribers that never read each got a copy of one
/// 8 MiB event (4.8 GB). Under `connections_memory_max` the copies that would pass it wait,
/// nothing is dropped, the producer's ack goes out, and each waiting subscriber gets the
/// event once others drain.
#[test]
fn fan_out_of_a_large_event_waits_under_the_connections_memory_limit() {
    let limit = 4 * 1024 * 1024;
    let mut h = Harness::with_config(|c| c.connections_memory_max = limit);
    let consumers: Vec<ConnId> = (0..20)
        .map(|_| {
            let conn = h.client();
            h.subscribe(conn, 1, "/**", StartPosition::End, true, 1);
            h.turn();
            h.received(conn);
            conn
        })
        .collect();
    let producer = h.client();
    h.produce(producer, 1, "/big", &vec![7; 1024 * 1024]);
    h.turn();
    let acks = ack_ids(&h.received(producer));
    assert_eq!(acks.len(), 1, "the producer's ack must not wait for memory");
    assert!(
        h.engine.connections_memory() <= limit,
        "the fan-out took the connections to {} bytes, over the limit of {limit}",
        h.engine.connections_memory()
    );
    let fed_first = consumers
        .iter()
        .filter(|c| !h.engine.output(**c).is_empty())
        .count();
    assert!(
        (1..20).contains(&fed_first),
        "{fed_first} of 20 consumers were fed at once"
    );
    // Consumers read, one round at a time: every one gets the event exactly once.
    let mut delivered = vec![0; consumers.len()];
    for _ in 0..20 {
        for (index, conn) in consumers.iter().enumerate() {
            delivered[index] += events(&h.received(*conn)).len();
        }
        h.turn();
        assert!(h.engine.connections_memory() <= limit);
    }
    assert_eq!(
        delivered,
        vec![1; consumers.len()],
        "an event was lost or doubled"
    );
}

/// Issue 10 follow-up, item 2: half-frames held by many connections (each under its own
/// limit) took the server past a gigabyte. Past `connections_memory_max` the connection
/// holding the most is closed with ResourceLimit; the others and new clients go on.
#[test]
fn half_frames_over_the_connections_memory_limit_close_the_largest_first() {
    let limit = 4 * 1024 * 1024;
    let mut h = Harness::with_config(|c| c.connections_memory_max = limit);
    let mut frame = Vec::new();
    encode(&produce(1, "/half", &vec![1; 2 * 1024 * 1024]), &mut frame);
    let senders: Vec<ConnId> = (0..6).map(|_| h.client()).collect();
    // 600 KiB, 700 KiB, ...: six together hold 5.4 MiB.
    for (index, conn) in senders.iter().enumerate() {
        let size = (600 + 100 * index) * 1024;
        h.engine.handle_input(h.now, *conn, &frame[..size]);
        h.turn();
    }
    assert!(
        h.engine.connections_memory() <= limit,
        "half-frames hold {} bytes, over the limit of {limit}",
        h.engine.connections_memory()
    );
    assert_eq!(
        h.closed_with(senders[5]),
        Some(ErrorCode::ResourceLimit),
        "the connection holding the most must be closed"
    );
    assert!(senders[..4].iter().all(|c| h.engine.is_open(*c)));
    let fresh = h.client();
    h.produce(fresh, 1, "/ok", b"x");
    h.turn();
    assert_eq!(ack_ids(&h.received(fresh)).len(), 1);
}

/// Issue 10 follow-up, item 2: a pause (the output over the high-water mark) restarted the
/// frame time-out of a partial frame when it ended, so drain/one-byte cycles kept it alive.
/// The deadline is moved on by the time paused, never restarted.
#[test]
fn a_pause_extends_the_frame_deadline_by_its_length_and_no_more() {
    let mut h = Harness::with_config(|c| c.send_buffer_high_water = 4096);
    let timeout_ms = millis(h.engine.config().frame_timeout);
    let consumer = h.client();
    h.subscribe(consumer, 1, "/big/**", StartPosition::End, true, 10);
    h.turn();
    h.received(consumer);
    let mut frame = Vec::new();
    encode(&produce(1, "/slow", &[7; 100]), &mut frame);
    h.engine.handle_input(h.now, consumer, &frame[..50]);
    h.turn();
    // At 5 s its output passes the high-water mark and one more byte pauses its input.
    h.now.monotonic.0 += 5000;
    let producer = h.client();
    h.produce(producer, 1, "/big/x", &[1; 8000]);
    h.turn();
    h.engine.handle_input(h.now, consumer, &frame[50..51]);
    h.turn();
    assert!(!h.engine.wants_input(consumer));
    // Paused for 3 s, then the consumer reads and its input resumes.
    h.now.monotonic.0 += 3000;
    h.turn();
    h.received(consumer);
    h.turn();
    assert!(h.engine.wants_input(consumer));
    // The frame began at 0 and was held up 3 s: its deadline is timeout + 3 s.
    let deadline_ms = timeout_ms + 3000;
    while h.now.monotonic.0 < deadline_ms + 1000 {
        h.now.monotonic.0 += 500;
        h.turn();
    }
    assert_eq!(
        h.closed_with(consumer),
        Some(ErrorCode::Timeout),
        "a partial frame outlived its deadline moved on by the pause"
    );
}

/// Issue 10 follow-up, item 3: a standalone server buffered a 256 KiB PeerHello before
/// refusing it. Its header is refused at once: over the Hello limit by its length
/// (FrameTooLarge), under it by its kind (UnexpectedFrame).
#[test]
fn a_standalone_node_refuses_peer_hello_at_its_header() {
    for (length, code) in [
        (200 * 1024u32, ErrorCode::FrameTooLarge),
        (1000, ErrorCode::UnexpectedFrame),
    ] {
        let mut h = Harness::standalone();
        let conn = h.connect();
        let mut header = length.to_be_bytes().to_vec();
        header.push(kind::PEER_HELLO);
        h.engine.handle_input(h.now, conn, &header);
        h.turn();
        assert_eq!(
            h.closed_with(conn),
            Some(code),
            "a {length}-byte PeerHello header to a node that accepts no peers"
        );
    }
}

/// Issue 10 follow-up, item 4: Produce, StatusRequest and Ping in one write came back as
/// Status, Pong, Ack. Only Pong may overtake (protocol.md section 14): the Status comes after
/// the Ack, and reports the produce as durable.
#[test]
fn status_does_not_overtake_the_ack_of_an_earlier_produce() {
    let mut h = Harness::new();
    let conn = h.client();
    let mut bytes = Vec::new();
    encode(&produce(1, "/a", b"x"), &mut bytes);
    encode(&ClientFrame::StatusRequest { hold: false }, &mut bytes);
    encode(&ClientFrame::Ping { token: 5 }, &mut bytes);
    h.engine.handle_input(h.now, conn, &bytes);
    h.turn();
    let frames = h.received(conn);
    let position = |wanted: fn(&ServerFrame) -> bool| frames.iter().position(wanted);
    let ack = position(|f| matches!(f, ServerFrame::Ack(_))).expect("an Ack");
    let status = position(|f| matches!(f, ServerFrame::Status(_))).expect("a Status");
    assert!(
        ack < status,
        "Status overtook the Ack of an earlier Produce: {frames:?}"
    );
    let ServerFrame::Status(status) = &frames[status] else {
        unreachable!()
    };
    assert_eq!((status.counter, status.durable_end), (1, 1));
}

/// protocol.md, "Writing a client: the order of things", step 4: frames with no success reply
/// are refused at once, so the refusals of frames sent before a Ping come before its Pong,
/// and a Pong with none before it means they were taken. One write of such frames, each
/// refused, then a Ping: the Errors in order, then the Pong, and a taken Unsubscribe's End
/// before the Pong too.
#[test]
fn the_refusals_of_frames_sent_before_a_ping_come_before_its_pong() {
    use crate::protocol::{GroupAck, GroupAckRange, JoinGroup};
    let mut h = Harness::new();
    let conn = h.client();
    let id = EventId::new(1, 1);
    let ack = |subscription_id| GroupAck {
        subscription_id,
        delay_ms: 0,
        ids: vec![id],
    };
    let frames = [
        subscribe(9, "/**", StartPosition::End, true, 0),
        subscribe(1, "no-slash", StartPosition::Beginning, true, 1),
        ClientFrame::Credit {
            subscription_id: 2,
            count: 1,
        },
        ClientFrame::Unsubscribe { subscription_id: 3 },
        ClientFrame::GroupAck(ack(4)),
        ClientFrame::GroupAckRange(GroupAckRange {
            subscription_id: 5,
            first: id,
            last: id,
        }),
        ClientFrame::GroupNack(ack(6)),
        ClientFrame::GroupProgress(ack(10)),
        ClientFrame::LeaveGroup { subscription_id: 7 },
        ClientFrame::JoinGroup(JoinGroup {
            subscription_id: 8,
            group: String::new(),
            glob: "/**".into(),
            start: StartPosition::Beginning,
            credit: 1,
            ack_timeout_ms: 0,
            max_deliveries: 0,
            max_in_flight: 0,
        }),
        ClientFrame::Unsubscribe { subscription_id: 9 },
        ClientFrame::Ping { token: 77 },
    ];
    let mut bytes = Vec::new();
    for frame in &frames {
        encode(frame, &mut bytes);
    }
    h.engine.handle_input(h.now, conn, &bytes);
    h.turn();
    let received: Vec<ServerFrame> = (h.received(conn).into_iter())
        .filter(|frame| !matches!(frame, ServerFrame::CaughtUp { .. }))
        .collect();
    let summary: Vec<String> = (received.iter())
        .map(|frame| match frame {
            ServerFrame::Error(error) => format!("{:?} {:?}", error.scope, error.code),
            ServerFrame::End {
                subscription_id,
                reason,
            } => format!("End {subscription_id} {reason:?}"),
            ServerFrame::Pong { token } => format!("Pong {token}"),
            other => format!("{other:?}"),
        })
        .collect();
    let expected = [
        "Subscription(1) InvalidGlob",
        "Subscription(2) UnknownSubscription",
        "Subscription(3) UnknownSubscription",
        "Subscription(4) UnknownGroup",
        "Subscription(5) UnknownGroup",
        "Subscription(6) UnknownGroup",
        "Subscription(10) UnknownGroup",
        "Subscription(7) UnknownGroup",
        "Subscription(8) InvalidGroupName",
        "End 9 Unsubscribed",
        "Pong 77",
    ];
    assert_eq!(summary, expected);
}

/// Copies that others never read must not starve a healthy consumer: one small event to a
/// connection with nothing unsent goes even at the limit, and the connection holding the
/// most is closed to make room.
#[test]
fn a_healthy_consumer_is_fed_when_unread_copies_fill_the_connections_memory() {
    let limit = 3 * 1024 * 1024 + 32 * 1024;
    // The four copies of the large event go out in one turn, past the feeding byte budget.
    let mut h = Harness::with_config(|c| {
        c.connections_memory_max = limit;
        c.feed_bytes_per_turn_max = 16 * 1024 * 1024;
    });
    let stalled: Vec<ConnId> = (0..4)
        .map(|_| {
            let conn = h.client();
            h.subscribe(conn, 1, "/big/**", StartPosition::End, true, 1);
            h.turn();
            h.received(conn);
            conn
        })
        .collect();
    let healthy = h.client();
    h.subscribe(healthy, 1, "/small", StartPosition::End, true, 10);
    h.turn();
    h.received(healthy);
    let producer = h.client();
    h.produce(producer, 1, "/big/x", &vec![7; 1024 * 1024]);
    h.turn();
    h.received(producer);
    let room = limit - h.engine.connections_memory();
    assert!(room < 40 * 1024, "the copies left {room} bytes of room");
    h.produce(producer, 2, "/small", &[1; 40 * 1024]);
    h.turn();
    assert_eq!(
        events(&h.received(healthy)).len(),
        1,
        "a consumer with nothing unsent was starved by others' unread copies"
    );
    let evicted = stalled
        .iter()
        .filter(|c| h.closed_with(**c) == Some(ErrorCode::ResourceLimit))
        .count();
    assert_eq!(evicted, 1, "the connection holding the most makes room");
    assert!(h.engine.connections_memory() <= limit);
}
#[path = "groups_admin_tests.rs"]
mod groups_admin_tests;
#[path = "groups_compaction_tests.rs"]
mod groups_compaction_tests;
#[path = "groups_settings_tests.rs"]
mod groups_settings_tests;
#[path = "groups_tests.rs"]
mod groups_tests;

/// A connection between two engines in one test: `dialer` dialed `acceptor`. Bytes move
/// only when the test calls [`Link::pump`], so a test can stop between any two hops.
struct Link {
    at_dialer: ConnId,
    at_acceptor: ConnId,
}

/// A node of a replicated-ack scenario: actor `actor`, advertised at 10.0.1.`actor`:3000.
fn replica_node(actor: u16) -> Harness {
    Harness::with_config(|c| {
        c.actor_id = ActorId(actor);
        c.cluster.advertise_addr = Some(format!("10.0.1.{actor}:3000").parse().unwrap());
    })
}

impl Link {
    /// Dials `acceptor` from `dialer` and completes the handshake.
    fn open(dialer: &mut Harness, acceptor: &mut Harness) -> Link {
        let at_dialer = ConnId {
            slot: 1000 + dialer.next_slot,
            generation: 1,
        };
        dialer.next_slot += 1;
        let addr = acceptor.engine.config().advertised_addr.unwrap();
        dialer.engine.handle_dialed(dialer.now, at_dialer, addr);
        let link = Link {
            at_dialer,
            at_acceptor: acceptor.connect(),
        };
        for _ in 0..4 {
            link.pump(dialer, acceptor);
        }
        link
    }

    /// Moves what each side has queued to the other, then ends a turn on both.
    fn pump(&self, dialer: &mut Harness, acceptor: &mut Harness) {
        self.hop(dialer, acceptor, true);
        self.hop(dialer, acceptor, false);
    }

    /// One direction: `forward` is dialer to acceptor. Ends a turn on the sender first (so
    /// its replies are released) and on the receiver after.
    fn hop(&self, dialer: &mut Harness, acceptor: &mut Harness, forward: bool) {
        let (from, from_conn, to, to_conn) = if forward {
            (dialer, self.at_dialer, acceptor, self.at_acceptor)
        } else {
            (acceptor, self.at_acceptor, dialer, self.at_dialer)
        };
        from.turn();
        let bytes = from.engine.output(from_conn).to_vec();
        from.engine.handle_sent(from_conn, bytes.len());
        to.engine.handle_input(to.now, to_conn, &bytes);
        to.turn();
    }
}

fn error_codes(frames: &[ServerFrame]) -> Vec<(ErrorCode, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Error(e) => Some((e.code, e.message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_replicas_2_ack_waits_for_the_peers_credit_and_replicas_1_does_not() {
    let mut origin = replica_node(7);
    let mut peer = replica_node(2);
    let link = Link::open(&mut peer, &mut origin);
    let client = origin.client();
    let plain = origin.client();
    origin.send(client, ClientFrame::SetReplicas { replicas: 2 });
    origin.produce(client, 1, "/a", b"x");
    origin.produce(plain, 1, "/a", b"y");
    origin.turn();
    assert_eq!(
        ack_ids(&origin.received(client)),
        vec![],
        "no ack before the peer holds it"
    );
    assert_eq!(
        ack_ids(&origin.received(plain)),
        vec![EventId::new(2, 7)],
        "replicas 1 is acked at the sync as before"
    );
    // The events reach the peer and its sync; its credit is still on the way back.
    link.hop(&mut peer, &mut origin, false);
    peer.turn();
    assert_eq!(peer.engine.log().durable_end().0, 2);
    assert_eq!(ack_ids(&origin.received(client)), vec![]);
    link.hop(&mut peer, &mut origin, true);
    assert_eq!(
        ack_ids(&origin.received(client)),
        vec![EventId::new(1, 7)],
        "acked once the peer's credit for it came back"
    );
}

/// An ack released by a peer's credit (replicas 2) takes the same path as one released by
/// the sync: it is handed to the reactor before the output that feeding queued in that turn,
/// here a catch-up consumer that connected and subscribed in the same turn.
#[test]
fn a_replicated_ack_is_queued_before_the_events_fed_in_the_same_turn() {
    let mut origin = replica_node(7);
    let mut peer = replica_node(2);
    let link = Link::open(&mut peer, &mut origin);
    let plain = origin.client();
    for op_id in 0..300 {
        origin.produce(plain, op_id, "/old", &[7; 100]);
    }
    origin.turn();
    origin.received(plain);
    let client = origin.client();
    origin.send(client, ClientFrame::SetReplicas { replicas: 2 });
    origin.produce(client, 1, "/a", b"x");
    origin.turn();
    assert_eq!(ack_ids(&origin.received(client)), vec![]);
    // The events reach the peer and its sync; its credit comes back in the turn in which a
    // reader connects and subscribes from the beginning.
    link.hop(&mut peer, &mut origin, false);
    for _ in 0..4 {
        peer.turn();
        let bytes = origin.engine.output(link.at_acceptor).to_vec();
        origin.engine.handle_sent(link.at_acceptor, bytes.len());
        peer.engine.handle_input(peer.now, link.at_dialer, &bytes);
    }
    peer.turn();
    let credit = peer.engine.output(link.at_dialer).to_vec();
    peer.engine.handle_sent(link.at_dialer, credit.len());
    let consumer = origin.connect();
    origin.send(consumer, hello());
    origin.subscribe(consumer, 1, "/**", StartPosition::Beginning, false, 10_000);
    origin
        .engine
        .handle_input(origin.now, link.at_acceptor, &credit);
    origin.engine.handle_turn_end(origin.now);
    let mut sends = Vec::new();
    while let Some(action) = origin.engine.poll_action() {
        if let Action::Send(conn) = action {
            sends.push(conn);
        }
    }
    assert!(sends.contains(&consumer), "{sends:?}");
    assert_eq!(
        sends.first(),
        Some(&client),
        "the replicated Ack was queued after the catch-up consumer's events: {sends:?}"
    );
    assert_eq!(
        ack_ids(&origin.received(client)),
        vec![EventId::new(301, 7)]
    );
}

#[test]
fn a_replicas_2_produce_times_out_with_the_count_when_the_peer_is_gone() {
    let mut origin = replica_node(7);
    let mut peer = replica_node(2);
    let link = Link::open(&mut peer, &mut origin);
    origin.engine.handle_closed(link.at_acceptor);
    let client = origin.client();
    origin.send(client, ClientFrame::SetReplicas { replicas: 2 });
    origin.produce(client, 1, "/a", b"x");
    origin.send(client, ClientFrame::SetReplicas { replicas: 1 });
    origin.produce(client, 2, "/a", b"y");
    origin.turn();
    let start = origin.now.monotonic.0;
    assert!(
        origin.engine.next_deadline_ms() <= start + 5000,
        "the reactor wakes for it"
    );
    origin.now.monotonic.0 = start + 4999;
    origin.turn();
    assert_eq!(origin.received(client), vec![], "op 2 waits behind op 1");
    origin.now.monotonic.0 = start + 5000;
    origin.turn();
    let frames = origin.received(client);
    let errors = error_codes(&frames);
    assert_eq!(errors.len(), 1, "{frames:?}");
    assert_eq!(errors[0].0, ErrorCode::ReplicationTimeout);
    assert!(
        errors[0].1.starts_with("reached 1 of 2 replicas"),
        "{}",
        errors[0].1
    );
    assert!(
        matches!(frames.as_slice(), [ServerFrame::Error(e), ServerFrame::Ack(a)]
            if e.scope == ErrorScope::Produce(1) && a.op_id == 2),
        "the error for op 1, then op 2's ack, in produce order: {frames:?}"
    );
    assert_eq!(
        origin.engine.log().durable_end().0,
        2,
        "the event stays appended"
    );
}

#[test]
fn a_replicas_3_ack_needs_both_peers_of_three_nodes() {
    let mut origin = replica_node(7);
    let mut second = replica_node(2);
    let mut third = replica_node(3);
    let to_second = Link::open(&mut second, &mut origin);
    let to_third = Link::open(&mut third, &mut origin);
    let client = origin.client();
    origin.send(client, ClientFrame::SetReplicas { replicas: 3 });
    origin.produce(client, 1, "/a", b"x");
    origin.turn();
    for _ in 0..3 {
        to_second.pump(&mut second, &mut origin);
    }
    assert_eq!(
        ack_ids(&origin.received(client)),
        vec![],
        "two of three hold it"
    );
    for _ in 0..3 {
        to_third.pump(&mut third, &mut origin);
    }
    assert_eq!(ack_ids(&origin.received(client)), vec![EventId::new(1, 7)]);
}

/// `frames` are one NotReady error for produce 1, sent in the produce's own turn (not after a
/// wait), whose message starts with `starts` and says that nothing was appended.
fn assert_refused_at_once(frames: &[ServerFrame], starts: &str) {
    let [ServerFrame::Error(error)] = frames else {
        panic!("one error in the produce's own turn, not a wait: {frames:?}");
    };
    assert_eq!(
        (error.scope, error.code),
        (ErrorScope::Produce(1), ErrorCode::NotReady)
    );
    assert!(
        error.message.starts_with(starts) && error.message.contains("nothing was appended"),
        "{}",
        error.message
    );
}

/// A server outside any cluster can never reach 2 replicas: the produce is refused in its own
/// turn (walk9: `produce --replicas 3` waited the 5 s time-out with no hint), nothing is
/// appended, and replicas 1 on the same connection works again.
#[test]
fn replicas_above_1_on_a_server_outside_any_cluster_are_refused_at_once() {
    let mut h = Harness::standalone();
    let conn = h.client();
    h.send(conn, ClientFrame::SetReplicas { replicas: 3 });
    h.produce(conn, 1, "/a", b"x");
    h.turn();
    assert_refused_at_once(
        &h.received(conn),
        "3 replicas asked, but this server is not in a cluster",
    );
    assert_eq!(h.engine.log().end().0, 0, "nothing was appended");
    h.send(conn, ClientFrame::SetReplicas { replicas: 1 });
    h.produce(conn, 2, "/a", b"x");
    h.turn();
    assert_eq!(ack_ids(&h.received(conn)), vec![EventId::new(1, 7)]);
}

/// A node configured with `peers` (actor 7), none of which has answered, that takes produces
/// (its empty directory's catch-up hold timed out at once).
fn node_with_unreached_peers(peers: &[&str]) -> Harness {
    let mut h = Harness::with_config(|c| {
        c.cluster.peer_addrs = peers.iter().map(|p| p.parse().unwrap()).collect();
        c.cluster.empty_dir_catch_up_timeout = Some(std::time::Duration::ZERO);
    });
    // The hold starts at the first turn's end and times out at the second's.
    h.turn();
    h.turn();
    assert!(!h.engine.is_holding_produces());
    h
}

/// A cluster with fewer members than a produce asks for can never reach them: refused in the
/// produce's own turn like outside a cluster (session 10 left it to wait the 5 s time-out and
/// fail with `reached 2 of 3 replicas`), nothing appended; as many replicas as members wait
/// as before, also for a configured address not yet reached.
#[test]
fn replicas_above_the_members_a_clustered_node_knows_are_refused_at_once() {
    let mut origin = replica_node(7);
    let mut peer = replica_node(2);
    let _link = Link::open(&mut peer, &mut origin);
    let client = origin.client();
    origin.send(client, ClientFrame::SetReplicas { replicas: 3 });
    origin.produce(client, 1, "/a", b"x");
    origin.turn();
    assert_refused_at_once(
        &origin.received(client),
        "3 replicas asked, but this node knows 2 cluster members (itself included)",
    );
    assert_eq!(origin.engine.log().end().0, 0, "nothing was appended");
    // A configured address no handshake has identified may be a third member: wait for it.
    let mut dialing = node_with_unreached_peers(&["10.0.0.2:3000", "10.0.0.3:3000"]);
    let conn = dialing.client();
    dialing.send(conn, ClientFrame::SetReplicas { replicas: 3 });
    dialing.produce(conn, 1, "/a", b"x");
    dialing.send(conn, ClientFrame::SetReplicas { replicas: 4 });
    dialing.produce(conn, 2, "/a", b"x");
    dialing.turn();
    assert_eq!(
        dialing.received(conn),
        vec![],
        "3 of 3 known members: it waits"
    );
    dialing.now.monotonic.0 += 5000;
    dialing.turn();
    let codes: Vec<ErrorCode> = error_codes(&dialing.received(conn))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        codes,
        vec![ErrorCode::ReplicationTimeout, ErrorCode::NotReady]
    );
}

#[test]
fn replies_held_behind_a_waiting_ack_stop_the_connection_being_read() {
    // A member configured but never reached: a replicas 2 ack waits for the whole time-out,
    // and every later reply waits behind it. What the client can make the server hold is
    // bounded by the high-water mark.
    let mut h = node_with_unreached_peers(&["10.0.0.2:3000"]);
    let conn = h.client();
    h.send(conn, ClientFrame::SetReplicas { replicas: 2 });
    let high_water = h.engine.config().send_buffer_high_water;
    let mut held_max = 0;
    let mut chunks = 0;
    for chunk_index in 0..200u64 {
        if !h.engine.wants_input(conn) {
            break;
        }
        let mut chunk = Vec::new();
        for op_id in 0..1000 {
            encode(&produce(chunk_index * 1000 + op_id, "/p", b""), &mut chunk);
        }
        h.engine.handle_input(h.now, conn, &chunk);
        h.turn();
        chunks += 1;
        let connection = h.engine.conn(conn).unwrap();
        held_max = held_max.max(connection.output_owed());
    }
    assert_eq!(
        h.received(conn),
        vec![],
        "nothing is released before the time-out"
    );
    assert!(
        !h.engine.wants_input(conn),
        "still read after {chunks} chunks"
    );
    assert!(
        held_max < high_water + 64 * 1024,
        "the replies held for replicas grew to {held_max} bytes"
    );
    // At the time-out the first becomes ReplicationTimeout, the rest follow in order.
    h.now.monotonic.0 += 5000;
    h.turn();
    let frames = h.received(conn);
    assert_eq!(error_codes(&frames)[0].0, ErrorCode::ReplicationTimeout);
    assert!(
        h.engine.wants_input(conn),
        "read again once the replies went out"
    );
}

/// A turn's acknowledgements go to the reactor before consumers are fed: a catch-up
/// subscription that started in the same turn (its connection queued first, by its
/// handshake) does not put its events ahead of the producer's Ack.
#[test]
fn acks_are_queued_before_the_events_of_the_same_turn() {
    let mut h = Harness::new();
    let producer = h.client();
    for op_id in 0..500 {
        h.produce(producer, op_id, "/old", &[7; 100]);
    }
    h.turn();
    h.received(producer);
    // A reader that connects and subscribes in one go: its Welcome queues its connection
    // first in the turn, and the producer's input comes after it.
    let consumer = h.connect();
    h.send(consumer, hello());
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, false, 10_000);
    h.produce(producer, 1000, "/new", b"x");
    h.engine.handle_turn_end(h.now);
    let mut sends = Vec::new();
    while let Some(action) = h.engine.poll_action() {
        if let Action::Send(conn) = action {
            sends.push(conn);
        }
    }
    assert_eq!(
        sends.first(),
        Some(&producer),
        "the producer's Ack was queued after the catch-up consumer's events: {sends:?}"
    );
    assert!(sends.contains(&consumer), "{sends:?}");
    let acks = ack_ids(&h.received(producer));
    assert_eq!(acks.len(), 1, "{acks:?}");
}

/// Feeding stops once a turn's byte budget is spent and goes on in the next turns, so a
/// catch-up reader costs a bounded amount of work per turn.
#[test]
fn feeding_stops_at_the_byte_budget_and_goes_on_next_turn() {
    let mut h = Harness::with_config(|config| config.feed_bytes_per_turn_max = 1000);
    let producer = h.client();
    for op_id in 0..50 {
        h.produce(producer, op_id, "/a", &[1; 100]);
    }
    h.turn();
    let consumer = h.client();
    h.subscribe(consumer, 1, "/**", StartPosition::Beginning, false, 1000);
    h.turn();
    let first = events(&h.received(consumer)).len();
    assert!(
        (1..=10).contains(&first),
        "one turn delivered {first} events of 100 B under a 1000 B budget"
    );
    let mut total = first;
    let mut turns = 1;
    while total < 50 {
        h.turn();
        let delivered = events(&h.received(consumer)).len();
        assert!(delivered <= 10, "a turn delivered {delivered} events");
        total += delivered;
        turns += 1;
        assert!(turns <= 50, "feeding made no progress");
    }
    assert_eq!(total, 50);
}

/// Issue 13, the catch-up read: reading one namespace that most records belong to goes by a
/// scan after the first index query (each query re-read the namespace's whole offset list of
/// a segment for at most 1,024 positions, and then read each position on its own), and back
/// to the index where the namespace thins out; what is delivered is exactly what a scan
/// delivers, in log order.
#[test]
fn a_catch_up_read_of_a_dense_namespace_scans_and_a_sparse_stretch_uses_the_index() {
    let (dense, sparse_stretch, every) = (20_000u64, 64_000u64, 256u64);
    let mut log = MemoryLog::new();
    let mut counter = 0;
    let mut event = |namespace: &str| {
        counter += 1;
        Event {
            namespace: namespace.into(),
            ..stored(counter, 1, b"")
        }
    };
    for _ in 0..dense {
        log.append(event("/a")).unwrap();
    }
    for index in 0..sparse_stretch {
        let namespace = if index % every == 0 { "/a" } else { "/b" };
        log.append(event(namespace)).unwrap();
    }
    log.sync(crate::time::MonotonicMs(0)).unwrap();
    let mut h = Harness::with_log(log, |c| c.records_per_turn_max = 4096);
    let consumer = h.client();
    h.subscribe(consumer, 1, "/a", StartPosition::Beginning, false, 1 << 30);
    let mut delivered = Vec::new();
    let mut queries_for_the_dense_part = None;
    let mut ended = false;
    for _ in 0..1000 {
        h.turn();
        let frames = h.received(consumer);
        ended |= frames.iter().any(|f| matches!(f, ServerFrame::End { .. }));
        delivered.extend(events_of(&frames, 1).into_iter().map(|e| e.id.counter));
        if delivered.len() as u64 >= dense && queries_for_the_dense_part.is_none() {
            queries_for_the_dense_part = Some(h.engine.log().namespace_queries);
        }
        if ended {
            break;
        }
    }
    assert!(ended, "the read never ended");
    let expected: Vec<u64> = (1..=dense)
        .chain(
            (0..sparse_stretch)
                .step_by(every as usize)
                .map(|i| dense + i + 1),
        )
        .collect();
    assert!(delivered == expected, "a scan's events, in log order");
    // Before: one query per 1,024 positions, 20 for the dense part.
    let dense_queries = queries_for_the_dense_part.unwrap_or(u64::MAX);
    assert!(
        dense_queries <= 2,
        "{dense_queries} index queries for the {dense} records of a namespace holding all"
    );
    // The sparse stretch (64,000 records, 16 turns' budgets) is read through the index again
    // after one turn of scanning.
    let sparse_queries = h.engine.log().namespace_queries - dense_queries;
    assert!(
        sparse_queries >= 8,
        "{sparse_queries} index queries over the sparse stretch"
    );
}
