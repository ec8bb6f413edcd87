//! Connection time-outs (idle, handshake, frame) close a connection within
//! `timeout_check_interval_min` of its deadline, whether or not events flow to it (review18,
//! finding 7: with `--idle-timeout 2s` a consumer fed events was closed at 3.00 s, because the
//! time-outs were checked only at housekeeping, once a second). The engine is driven as the
//! reactor drives it: a turn after every input, and with no input due, a turn at
//! `next_deadline_ms` (at least 1 ms on, at most 1 s, as `Reactor::poll_timeout` sleeps).

use super::*;
use std::time::Duration;

/// The reactor's longest sleep (`POLL_TIMEOUT_MAX_MS`).
const POLL_TIMEOUT_MAX_MS: u64 = 1000;

/// Runs turns as the reactor would until `conn` is closed, calling `input` at every multiple
/// of `input_every_ms` (`None`: no input). Returns the time of the close.
fn run_until_closed(
    h: &mut Harness,
    conn: ConnId,
    input_every_ms: Option<u64>,
    mut input: impl FnMut(&mut Harness),
) -> u64 {
    let started_ms = h.now.monotonic.0;
    let mut next_input_ms = input_every_ms.map_or(u64::MAX, |every| started_ms + every);
    while h.closed_with(conn).is_none() {
        let now_ms = h.now.monotonic.0;
        assert!(now_ms < started_ms + 60_000, "not closed within a minute");
        let wake_ms = (h.engine.next_deadline_ms())
            .clamp(now_ms + 1, now_ms + POLL_TIMEOUT_MAX_MS)
            .min(next_input_ms);
        h.now.monotonic.0 = wake_ms;
        h.now.wall.0 += wake_ms - now_ms;
        if wake_ms == next_input_ms {
            input(h);
            next_input_ms += input_every_ms.expect("input is due");
        }
        h.turn();
    }
    h.now.monotonic.0
}

/// A consumer that sends nothing after its Subscribe, with an event produced to its glob every
/// `produce_every_ms` (or none), and the housekeeping tick 10 ms before its last input: the
/// milliseconds from that input to its close.
fn idle_consumer_closed_after_ms(produce_every_ms: Option<u64>) -> u64 {
    let mut h = Harness::with_config(|c| c.idle_timeout = Duration::from_secs(2));
    h.now.monotonic.0 = 5_000;
    // Housekeeping runs in the first turn, at 5,000, and then once a second.
    let producer = h.client();
    let consumer = h.client();
    h.now.monotonic.0 += 10;
    h.subscribe(consumer, 1, "/idle/**", StartPosition::End, true, 100_000);
    let last_input_ms = h.now.monotonic.0;
    h.turn();
    let mut op_id = 0;
    let closed_ms = run_until_closed(&mut h, consumer, produce_every_ms, |h| {
        op_id += 1;
        h.produce(producer, op_id, "/idle/x", b"x");
    });
    // The events did reach the consumer (its output was not paused).
    if produce_every_ms.is_some() {
        let (_, frames) = (h.closed.iter().find(|(c, _)| *c == consumer)).unwrap();
        let events = (frames.iter())
            .filter(|f| matches!(f, AnyFrame::Server(ServerFrame::Event { .. })))
            .count();
        assert!(events > 30, "{events} events");
    }
    assert_eq!(h.closed_with(consumer), Some(ErrorCode::Timeout));
    closed_ms - last_input_ms
}

#[test]
fn the_idle_time_out_closes_on_time_whether_or_not_events_flow() {
    let bound_ms =
        millis(Config::new("127.0.0.1:0".parse().unwrap(), "/x".into()).timeout_check_interval_min);
    for produce_every_ms in [None, Some(50), Some(7), Some(1)] {
        let after_ms = idle_consumer_closed_after_ms(produce_every_ms);
        assert!(
            (2_000..=2_000 + bound_ms).contains(&after_ms),
            "producing every {produce_every_ms:?} ms: closed {after_ms} ms after the last input"
        );
    }
}

/// The handshake and frame time-outs too: a connection that never sends Hello, and a client
/// whose frame stops half-way, each closed within the bound of its deadline while another
/// client produces every 50 ms.
#[test]
fn the_handshake_and_frame_time_outs_close_on_time() {
    let mut h = Harness::with_config(|c| {
        c.handshake_timeout = Duration::from_millis(3_000);
        c.frame_timeout = Duration::from_millis(4_000);
        c.idle_timeout = Duration::from_secs(60);
    });
    let bound_ms = millis(h.engine.config.timeout_check_interval_min);
    h.now.monotonic.0 = 5_000;
    let producer = h.client();
    h.now.monotonic.0 += 10;
    let silent = h.connect();
    let silent_since_ms = h.now.monotonic.0;
    h.turn();
    let mut op_id = 0;
    let mut produce = |h: &mut Harness| {
        op_id += 1;
        h.produce(producer, op_id, "/busy", b"x");
        h.received(producer);
    };
    let closed_ms = run_until_closed(&mut h, silent, Some(50), &mut produce);
    assert_eq!(h.closed_with(silent), Some(ErrorCode::Timeout));
    let after_ms = closed_ms - silent_since_ms;
    assert!((3_000..=3_000 + bound_ms).contains(&after_ms), "{after_ms}");

    let halting = h.client();
    h.now.monotonic.0 += 3;
    let mut bytes = Vec::new();
    encode(&ClientFrame::Ping { token: 1 }, &mut bytes);
    h.engine.handle_input(h.now, halting, &bytes[..3]);
    let frame_started_ms = h.now.monotonic.0;
    h.turn();
    let closed_ms = run_until_closed(&mut h, halting, Some(50), &mut produce);
    assert_eq!(h.closed_with(halting), Some(ErrorCode::Timeout));
    let after_ms = closed_ms - frame_started_ms;
    assert!((4_000..=4_000 + bound_ms).contains(&after_ms), "{after_ms}");
}

/// The cost side of the bound: clients that keep moving the earliest deadline (each pings just
/// before its idle time-out, at staggered times, so a check finds a new earliest deadline a
/// millisecond on) get at most one walk of the connections per `timeout_check_interval_min`,
/// plus one per housekeeping interval.
#[test]
fn time_out_checks_come_at_most_once_per_interval() {
    let mut h = Harness::with_config(|c| c.idle_timeout = Duration::from_millis(1_000));
    let interval_ms = millis(h.engine.config.timeout_check_interval_min);
    let clients: Vec<ConnId> = (0..999).map(|_| h.client()).collect();
    let mut checks_before = 0;
    let started_ms = h.now.monotonic.0;
    // Client i pings at i, 999 + i, 1998 + i, ... (client 0 at 999, ...): always 1 ms
    // before its deadline, and at any time some client's deadline is 1 ms away.
    for step_ms in 1..=5_000 {
        if step_ms == 1_001 {
            // Counted from here, when every client has pinged once.
            checks_before = h.engine.stats().timeout_checks;
        }
        h.now.monotonic.0 = started_ms + step_ms;
        let pinging = (step_ms % 999) as usize;
        if let Some(&conn) = clients.get(pinging) {
            h.send(conn, ClientFrame::Ping { token: 1 });
        }
        h.turn();
    }
    assert!(clients.iter().all(|&conn| h.engine.is_open(conn)));
    let checks = h.engine.stats().timeout_checks - checks_before;
    let housekeeping_ms = h.engine.config.housekeeping_interval_ms;
    let checks_max = 4_000 / interval_ms + 4_000 / housekeeping_ms + 1;
    // Not far below the bound either: the clients do press on it (without the interval there
    // would be a check every millisecond).
    assert!(
        (checks_max * 9 / 10..=checks_max).contains(&checks),
        "{checks} checks in 4 s, at most {checks_max}"
    );
}
