//! Namespaces as streams in the engine: conditional produce (ProduceIf, checked against the log
//! and the turn's earlier appends, all or nothing, the actual newest id in the error) and
//! idempotent produce (SetProducer: a retried sequence number gets its original ack, on a new
//! connection, after a restart on the same log, and not after a failed sync).

use super::*;
use crate::protocol::{Expectation, ProduceIf};

fn event(namespace: &str, data: &[u8]) -> NewEvent {
    NewEvent {
        namespace: namespace.into(),
        parent_id: None,
        data: data.to_vec(),
    }
}

fn produce_if(op_id: u64, expect: Expectation, events: Vec<NewEvent>) -> ClientFrame {
    ClientFrame::ProduceIf(ProduceIf {
        op_id,
        expect,
        events,
    })
}

fn set_producer(producer_id: u64, next_sequence: u64) -> ClientFrame {
    ClientFrame::SetProducer {
        producer_id,
        next_sequence,
    }
}

fn ack_of(frames: &[ServerFrame], op_id: u64) -> Ack {
    frames
        .iter()
        .find_map(|frame| match frame {
            ServerFrame::Ack(ack) if ack.op_id == op_id => Some(ack.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ack for op {op_id} in {frames:?}"))
}

fn error_of(frames: &[ServerFrame], op_id: u64) -> ErrorFrame {
    frames
        .iter()
        .find_map(|frame| match frame {
            ServerFrame::Error(error) if error.scope == ErrorScope::Produce(op_id) => {
                Some(error.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error for op {op_id} in {frames:?}"))
}

fn stored_count(harness: &mut Harness) -> u64 {
    harness.engine.log().stats().event_count
}

#[test]
fn a_conditional_produce_appends_only_on_the_expected_newest_event() {
    let mut harness = Harness::new();
    let conn = harness.client();
    harness.produce(conn, 1, "/other", b"x");
    harness.send(
        conn,
        produce_if(
            2,
            Expectation::NoEvents,
            vec![event("/accounts/42", b"open")],
        ),
    );
    harness.turn();
    let frames = harness.received(conn);
    let opened = ack_of(&frames, 2).first_id;

    harness.send(
        conn,
        produce_if(
            3,
            Expectation::NoEvents,
            vec![event("/accounts/42", b"again")],
        ),
    );
    harness.send(
        conn,
        produce_if(
            4,
            Expectation::LastIs(opened),
            vec![event("/accounts/42", b"a")],
        ),
    );
    harness.turn();
    let frames = harness.received(conn);
    let error = error_of(&frames, 3);
    assert_eq!(error.code, ErrorCode::ExpectationFailed);
    assert!(
        error.message.starts_with(&format!("{opened}:")),
        "{}",
        error.message
    );
    let deposited = ack_of(&frames, 4).first_id;

    // A stale expectation: refused with the actual newest id, and nothing of the batch (whose
    // second event is in another namespace) is appended.
    let before = stored_count(&mut harness);
    let batch = vec![event("/accounts/42", b"b"), event("/audit", b"c")];
    harness.send(conn, produce_if(5, Expectation::LastIs(opened), batch));
    harness.send(
        conn,
        produce_if(6, Expectation::HasEvents, vec![event("/accounts/42", b"d")]),
    );
    harness.send(
        conn,
        produce_if(7, Expectation::HasEvents, vec![event("/nobody", b"e")]),
    );
    harness.turn();
    let frames = harness.received(conn);
    let error = error_of(&frames, 5);
    assert_eq!(error.code, ErrorCode::ExpectationFailed);
    assert!(
        error.message.starts_with(&format!("{deposited}:")),
        "{}",
        error.message
    );
    ack_of(&frames, 6);
    let error = error_of(&frames, 7);
    assert!(error.message.starts_with("none:"), "{}", error.message);
    assert_eq!(stored_count(&mut harness), before + 1);
}

#[test]
fn two_connections_racing_in_one_turn_exactly_one_wins() {
    let mut harness = Harness::new();
    let first = harness.client();
    let second = harness.client();
    let create = |op_id| produce_if(op_id, Expectation::NoEvents, vec![event("/cart/9", b"new")]);
    harness.send(first, create(1));
    harness.send(second, create(1));
    harness.turn();
    let (first_frames, second_frames) = (harness.received(first), harness.received(second));
    let winner = ack_of(&first_frames, 1).first_id;
    let error = error_of(&second_frames, 1);
    assert_eq!(error.code, ErrorCode::ExpectationFailed);
    assert!(
        error.message.starts_with(&format!("{winner}:")),
        "{}",
        error.message
    );
    assert_eq!(stored_count(&mut harness), 1);
}

#[test]
fn a_conditional_produce_sees_the_log_after_a_restart() {
    let mut harness = Harness::new();
    let conn = harness.client();
    harness.produce(conn, 1, "/accounts/1", b"a");
    harness.turn();
    let first = ack_of(&harness.received(conn), 1).first_id;
    let log = harness.engine.into_log();
    let mut harness = Harness::with_log(log, |_| {});
    let conn = harness.client();
    harness.send(
        conn,
        produce_if(2, Expectation::NoEvents, vec![event("/accounts/1", b"b")]),
    );
    harness.send(
        conn,
        produce_if(
            3,
            Expectation::LastIs(first),
            vec![event("/accounts/1", b"c")],
        ),
    );
    harness.turn();
    let frames = harness.received(conn);
    assert_eq!(error_of(&frames, 2).code, ErrorCode::ExpectationFailed);
    ack_of(&frames, 3);
}

#[test]
fn a_retried_sequence_gets_its_original_ack_on_a_new_connection_and_after_a_restart() {
    let mut harness = Harness::new();
    let conn = harness.client();
    harness.send(conn, set_producer(77, 1));
    harness.produce(conn, 1, "/orders", b"one");
    harness.send(
        conn,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 2,
            events: vec![event("/orders", b"two"), event("/orders", b"three")],
        }),
    );
    harness.turn();
    let frames = harness.received(conn);
    let (one, two) = (ack_of(&frames, 1), ack_of(&frames, 2));

    // The connection dropped before the client read the acks: it resends both on a new one.
    let retry = harness.client();
    harness.send(retry, set_producer(77, 1));
    harness.produce(retry, 11, "/orders", b"one");
    harness.send(
        retry,
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 12,
            events: vec![event("/orders", b"two"), event("/orders", b"three")],
        }),
    );
    harness.produce(retry, 13, "/orders", b"four");
    harness.turn();
    let frames = harness.received(retry);
    assert_eq!(ack_of(&frames, 11).first_id, one.first_id);
    assert_eq!(
        (ack_of(&frames, 12).first_id, ack_of(&frames, 12).count),
        (two.first_id, 2)
    );
    assert_eq!(stored_count(&mut harness), 4);

    let log = harness.engine.into_log();
    let mut harness = Harness::with_log(log, |_| {});
    let conn = harness.client();
    harness.send(conn, set_producer(77, 3));
    harness.produce(conn, 21, "/orders", b"four");
    harness.turn();
    let frames = harness.received(conn);
    assert_eq!(ack_of(&frames, 21).timestamp_ms, one.timestamp_ms);
    assert_eq!(stored_count(&mut harness), 4);
}

#[test]
fn a_sequence_outside_the_window_is_refused_and_a_failed_sync_forgets_its_acks() {
    let mut harness = Harness::with_config(|c| c.streams.producer_window = 2);
    let conn = harness.client();
    harness.send(conn, set_producer(5, 1));
    for op_id in 1..=3 {
        harness.produce(conn, op_id, "/p", b"x");
    }
    harness.turn();
    harness.received(conn);
    harness.send(conn, set_producer(5, 1));
    harness.produce(conn, 4, "/p", b"x");
    harness.turn();
    let frames = harness.received(conn);
    assert_eq!(error_of(&frames, 4).code, ErrorCode::SequenceUnknown);
    assert_eq!(stored_count(&mut harness), 3);

    // Sequence 4 fails with the sync: its retry is stored, not answered from a stale ack.
    harness.send(conn, set_producer(5, 4));
    harness.produce(conn, 5, "/p", b"y");
    harness.engine.log_mut().fail_next_sync = true;
    harness.turn();
    assert_eq!(
        error_of(&harness.received(conn), 5).code,
        ErrorCode::StorageFailure
    );
    harness.send(conn, set_producer(5, 4));
    harness.produce(conn, 6, "/p", b"y");
    harness.turn();
    ack_of(&harness.received(conn), 6);
    assert_eq!(stored_count(&mut harness), 4);
}
