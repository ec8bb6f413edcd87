//! Crash safety of the real binary: a producer pipelines events and records every ack; the
//! server is killed with SIGKILL at a random moment (after a random number of acks, with more
//! produces in flight), restarted on the same data directory, and this repeats. After every
//! restart, every acknowledged event must be present exactly once, intact, and in the order it
//! was acknowledged. The seed comes from FLO_TEST_SEED (printed on failure) or the time.

mod common;

use std::collections::HashSet;

use common::{FloProcess, RawConn, SeededRng};
use flo::event::{EventId, StartPosition};
use flo::protocol::{EndReason, ServerFrame, Subscribe};

fn seed() -> u64 {
    std::env::var("FLO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

/// Reads every stored event: (id, data).
fn read_log(conn: &mut RawConn) -> Vec<(EventId, Vec<u8>)> {
    conn.subscribe(Subscribe {
        subscription_id: 1,
        glob: "/**".into(),
        start: StartPosition::Beginning,
        limit: 0,
        tail: false,
        skip_damaged: false,
        order: Default::default(),
        credit: u32::MAX,
    });
    let mut events = Vec::new();
    loop {
        match conn.recv() {
            Some(ServerFrame::Event { event, .. }) => events.push((event.id, event.data)),
            Some(ServerFrame::End {
                reason: EndReason::EndOfStream,
                ..
            }) => return events,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let seed = seed();
    eprintln!("kill9 seed: {seed} (rerun with FLO_TEST_SEED={seed})");
    let mut rng = SeededRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    // (data, id) of every acknowledged event, in ack order.
    let mut acknowledged: Vec<(Vec<u8>, EventId)> = Vec::new();
    let mut next_op = 0u64;
    for round in 0..12 {
        let server = FloProcess::start(dir.path(), &["--segment-size", "16K"]);
        let mut reader = RawConn::hello(server.addr);
        check_log(&read_log(&mut reader), &acknowledged, seed, round);
        let mut producer = RawConn::hello(server.addr);
        let window = 1 + rng.below(64);
        let acks_before_kill = rng.below(400);
        let size = rng.below(2000) as usize;
        let mut in_flight = std::collections::VecDeque::new();
        let mut acked_this_round = 0;
        while acked_this_round < acks_before_kill {
            while (in_flight.len() as u64) < window {
                let mut data = format!("op {next_op} ").into_bytes();
                data.resize(data.len() + size, b'x');
                producer.produce(next_op, "/kill9", &data);
                in_flight.push_back((next_op, data));
                next_op += 1;
            }
            match producer.recv() {
                Some(ServerFrame::Ack(ack)) => {
                    let (op_id, data) = in_flight.pop_front().expect("an op in flight");
                    assert_eq!(ack.op_id, op_id, "acks arrive in produce order");
                    acknowledged.push((data, ack.first_id));
                    acked_this_round += 1;
                }
                other => panic!("seed {seed}: unexpected {other:?}"),
            }
        }
        // Produces are still in flight: kill now.
        server.kill9();
    }
    let server = FloProcess::start(dir.path(), &["--segment-size", "16K"]);
    let mut reader = RawConn::hello(server.addr);
    check_log(&read_log(&mut reader), &acknowledged, seed, 12);
}

fn check_log(
    stored: &[(EventId, Vec<u8>)],
    acknowledged: &[(Vec<u8>, EventId)],
    seed: u64,
    round: usize,
) {
    let mut seen = HashSet::new();
    for (id, _) in stored {
        assert!(
            seen.insert(*id),
            "seed {seed} round {round}: id {id} stored twice"
        );
    }
    let mut position = 0;
    for (data, id) in acknowledged {
        let found = stored[position..]
            .iter()
            .position(|(stored_id, _)| stored_id == id)
            .unwrap_or_else(|| {
                panic!(
                    "seed {seed} round {round}: acknowledged event {id} is missing or out of order"
                )
            });
        position += found;
        assert_eq!(
            &stored[position].1, data,
            "seed {seed} round {round}: event {id} was changed"
        );
    }
}
