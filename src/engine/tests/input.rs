//! Received bytes decoded where they lie (issue 13): whole frames are decoded from the bytes the
//! reactor just read, and only a partial frame (or frames a pause or the frame budget holds
//! up) is copied into the connection's input buffer, topped up from the next read with just
//! the bytes it lacks. Checked by the engine's count of buffered bytes, and by feeding the
//! same frames split at every byte boundary, in chunks of every size and under a frame budget
//! of one: the answers are those of one read.

use super::*;

/// Frames of many kinds in one byte string: the handshake, produces (the in-place path), a
/// batch, a subscription that delivers, a Ping, and a produce with a larger body.
fn script() -> Vec<u8> {
    let event = |namespace: &str, data: &[u8]| NewEvent {
        namespace: namespace.into(),
        parent_id: None,
        data: data.to_vec(),
    };
    let mut bytes = Vec::new();
    encode(&hello(), &mut bytes);
    encode(&produce(1, "/split/a", &[1; 100]), &mut bytes);
    let batch = ProduceBatch {
        op_id: 2,
        events: vec![event("/split/b", b"x"), event("/split/c", &[2; 30])],
    };
    encode(&ClientFrame::ProduceBatch(batch), &mut bytes);
    encode(
        &subscribe(5, "/split/**", StartPosition::Beginning, true, 100),
        &mut bytes,
    );
    encode(&ClientFrame::Ping { token: 77 }, &mut bytes);
    encode(&produce(3, "/split/d", &[3; 300]), &mut bytes);
    bytes
}

/// What the client receives when `pieces` arrive one after the other, as the reactor hands
/// them over: each with a budget of `frames_max` frame units, frames a budget deferred decoded
/// (with no new bytes) before the next piece, then one turn's end.
fn answers(pieces: &[&[u8]], frames_max: usize) -> Vec<ServerFrame> {
    let mut h = Harness::new();
    let conn = h.connect();
    for piece in pieces {
        while h.engine.input_deferred(conn) {
            h.engine.handle_input_within(h.now, conn, &[], frames_max);
            h.engine.check_invariants();
        }
        h.engine.handle_input_within(h.now, conn, piece, frames_max);
        // Also in release builds (the engine checks them itself only in debug builds): the
        // memory counted for the connection is its buffer's, whichever path decoded.
        h.engine.check_invariants();
    }
    h.turn();
    h.engine.check_invariants();
    assert!(h.engine.is_open(conn), "{:?}", h.closed);
    h.received(conn)
}

#[test]
fn whole_frames_are_decoded_where_they_were_received_and_only_a_partial_frame_is_buffered() {
    let mut h = Harness::new();
    let conn = h.connect();
    let mut bytes = Vec::new();
    encode(&hello(), &mut bytes);
    encode(&produce(1, "/in-place", &[1; 100]), &mut bytes);
    encode(&produce(2, "/in-place", &[2; 100]), &mut bytes);
    h.engine.handle_input(h.now, conn, &bytes);
    h.turn();
    assert_eq!(
        h.engine.stats().input_bytes_buffered,
        0,
        "whole frames were copied"
    );
    assert!(matches!(
        h.received(conn).as_slice(),
        [
            ServerFrame::Welcome(_),
            ServerFrame::Ack(_),
            ServerFrame::Ack(_)
        ]
    ));
    // A frame split over two reads: its first 10 bytes wait in the buffer, the second read
    // tops it up with the rest of it, and the whole frame behind it is not copied.
    let mut third = Vec::new();
    encode(&produce(3, "/in-place", &[3; 100]), &mut third);
    let mut fourth = Vec::new();
    encode(&produce(4, "/in-place", &[4; 100]), &mut fourth);
    h.engine.handle_input(h.now, conn, &third[..10]);
    assert_eq!(h.engine.stats().input_bytes_buffered, 10);
    h.engine
        .handle_input(h.now, conn, &[&third[10..], &fourth[..]].concat());
    h.turn();
    assert_eq!(
        h.engine.stats().input_bytes_buffered,
        third.len() as u64,
        "only the split frame's bytes are buffered"
    );
    assert_eq!(ack_ids(&h.received(conn)).len(), 2);
    assert!(h.engine.conn(conn).expect("open").input.is_empty());
}

#[test]
fn reads_split_at_every_byte_boundary_are_handled_like_one_read() {
    let bytes = script();
    let expected = answers(&[&bytes], usize::MAX);
    // Welcome, three acks, the Pong, and the subscription's four events (whatever else it
    // says): the comparison below compares something.
    assert_eq!(ack_ids(&expected).len(), 3, "{expected:?}");
    assert_eq!(events_of(&expected, 5).len(), 4, "{expected:?}");
    assert!(expected.contains(&ServerFrame::Pong { token: 77 }));
    for split in 1..bytes.len() {
        let (first, second) = bytes.split_at(split);
        assert_eq!(
            answers(&[first, second], usize::MAX),
            expected,
            "split at {split}"
        );
        // A budget of one frame unit a call: whole frames wait in the buffer behind the split.
        assert_eq!(
            answers(&[first, second], 1),
            expected,
            "split at {split}, budget 1"
        );
    }
    for size in 1..bytes.len() {
        let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
        assert_eq!(answers(&pieces, usize::MAX), expected, "chunks of {size}");
        assert_eq!(answers(&pieces, 1), expected, "chunks of {size}, budget 1");
    }
}

/// `answers`, on a log that already holds `prelude` (sent and synced in a turn before), and
/// whether the budget ever left frames waiting in the input (`input_deferred`).
fn answers_after(prelude: &[u8], pieces: &[&[u8]], frames_max: usize) -> (Vec<ServerFrame>, bool) {
    let mut h = Harness::new();
    let conn = h.connect();
    h.engine.handle_input(h.now, conn, prelude);
    h.turn();
    let before = h.received(conn);
    assert_eq!(ack_ids(&before).len(), 8, "{before:?}");
    let mut deferred = false;
    // As the reactor does: frames the budget left waiting are decoded (with no new bytes)
    // before the socket is read again, here within the turn.
    let mut decode = |h: &mut Harness, piece: &[u8]| {
        h.engine.handle_input_within(h.now, conn, piece, frames_max);
        h.engine.check_invariants();
        deferred |= h.engine.input_deferred(conn);
        let mut calls = 0;
        while h.engine.input_deferred(conn) {
            calls += 1;
            assert!(calls < 10_000, "the deferred input is never decoded");
            h.engine.handle_input_within(h.now, conn, &[], frames_max);
            h.engine.check_invariants();
        }
    };
    for piece in pieces {
        decode(&mut h, piece);
    }
    h.turn();
    h.engine.check_invariants();
    assert!(h.engine.is_open(conn), "{:?}", h.closed);
    (h.received(conn), deferred)
}

/// Conditional produces whose expectation's lookup reads the log (the memory log has no
/// namespace index): under a budget of one frame unit the lookup stops after one record and
/// its frame waits in the input buffer (`InputStop::Deferred` from a lookup), also when the
/// frame arrived split. Split at every byte and in chunks of every size, with budgets of one
/// and of everything, the answers are those of one read.
#[test]
fn conditional_produces_split_anywhere_under_any_budget_are_answered_as_in_one_read() {
    let event = |namespace: &str, data: &[u8]| NewEvent {
        namespace: namespace.into(),
        parent_id: None,
        data: data.to_vec(),
    };
    let produce_if = |op_id, expect, namespace: &str| {
        ClientFrame::ProduceIf(ProduceIf {
            op_id,
            expect,
            events: vec![event(namespace, b"if"), event(namespace, &[7; 20])],
        })
    };
    let mut prelude = Vec::new();
    encode(&hello(), &mut prelude);
    let bytes = &mut prelude;
    for op_id in 1..=4 {
        encode(&produce(op_id, "/if/other", &[1; 10]), bytes);
    }
    encode(&produce(5, "/if/a", b"first"), bytes);
    for op_id in 6..=8 {
        encode(&produce(op_id, "/if/other", &[1; 10]), bytes);
    }
    let mut bytes = Vec::new();
    encode(&produce_if(9, Expectation::NoEvents, "/if/new"), &mut bytes);
    // Alone, under a budget of one, this frame waits only for its lookup, which reads the
    // log's 8 records one a call.
    let (_, deferred) = answers_after(&prelude, &[&bytes], 1);
    assert!(deferred, "the lookup did not wait for a later budget");
    encode(&produce_if(10, Expectation::HasEvents, "/if/a"), &mut bytes);
    encode(&produce_if(11, Expectation::NoEvents, "/if/a"), &mut bytes);
    encode(&ClientFrame::Ping { token: 5 }, &mut bytes);
    encode(
        &produce_if(12, Expectation::HasEvents, "/if/none"),
        &mut bytes,
    );
    encode(&produce(13, "/if/b", &[3; 50]), &mut bytes);
    let answers = |pieces: &[&[u8]], budget| answers_after(&prelude, pieces, budget).0;
    let (expected, deferred) = answers_after(&prelude, &[&bytes], usize::MAX);
    assert!(!deferred);
    assert_eq!(answers(&[&bytes], 1), expected, "one read, budget 1");
    // Acks of 9, 10 and 13; 11 and 12 fail their expectations.
    assert_eq!(ack_ids(&expected).len(), 3, "{expected:?}");
    assert!(expected.contains(&ServerFrame::Pong { token: 5 }));
    for split in 1..bytes.len() {
        let (first, second) = bytes.split_at(split);
        for budget in [1, 2, usize::MAX] {
            assert_eq!(
                answers(&[first, second], budget),
                expected,
                "split at {split}, budget {budget}"
            );
        }
    }
    for size in 1..bytes.len() {
        let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
        assert_eq!(answers(&pieces, 1), expected, "chunks of {size}, budget 1");
    }
}

/// A large frame that arrived over many reads grows the input buffer to its size; once it is
/// decoded, the buffer must not keep that capacity behind the few bytes of the next frame's
/// start that came with its last read: the connection's memory is counted by the buffer's
/// length (`Connection::memory_bytes`), so every connection could otherwise hold a frame's
/// size (8 MiB by default) each while counted as a few bytes, past `connections_memory_max`
/// (attack round 15). Fails before the fix: the buffer kept about 8 MiB behind 1 byte.
#[test]
fn a_large_frame_decoded_from_the_buffer_leaves_no_large_capacity_behind_a_partial_frame() {
    let mut h = Harness::new();
    let conn = h.connect();
    let mut bytes = Vec::new();
    encode(&hello(), &mut bytes);
    h.engine.handle_input(h.now, conn, &bytes);
    let mut large = Vec::new();
    encode(&produce(1, "/large", &vec![1; 8 << 20]), &mut large);
    // As the reactor reads: 64 KiB at a time, the last read also bringing the first byte of
    // the next frame.
    large.push(0);
    for piece in large.chunks(64 * 1024) {
        h.engine.handle_input(h.now, conn, piece);
        h.engine.check_invariants();
    }
    h.turn();
    assert_eq!(ack_ids(&h.received(conn)).len(), 1);
    let connection = h.engine.conn(conn).expect("open");
    assert_eq!(
        connection.input.len(),
        1,
        "the next frame's first byte waits"
    );
    assert!(
        connection.input.capacity() <= BUFFER_CAPACITY_KEPT,
        "{} bytes of capacity held behind {} byte(s) counted",
        connection.input.capacity(),
        connection.memory_bytes()
    );
}
