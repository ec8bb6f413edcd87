//! The catch-up hold of a node on an empty (perhaps lost) data directory: no time-out unless
//! the operator sets one, and the ways out (docs/clustering.md, "Losing a data directory").

use super::*;
use crate::protocol::{MembershipRecord, ProduceHold};

/// A node on an empty directory configured with peers 2 and 3; it has met 2 (which holds
/// none of its events). Returns the harness and 2's connection.
fn met_two_of_three(timeout: Option<std::time::Duration>) -> (Harness, ConnId) {
    let mut h = Harness::with_config(|c| {
        c.cluster.peer_addrs = vec![
            "10.0.0.2:3000".parse().unwrap(),
            "10.0.0.3:3000".parse().unwrap(),
        ];
        c.cluster.empty_dir_catch_up_timeout = timeout;
    });
    h.turn();
    let addr: std::net::SocketAddr = "10.0.0.2:3000".parse().unwrap();
    assert!(h.dials.contains(&addr), "{:?}", h.dials);
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    h.engine.handle_dialed(h.now, conn, addr);
    accept_dial(&mut h, conn, 2, addr, VersionVector::new());
    assert!(h.engine.is_holding_produces(), "3 has not been met");
    (h, conn)
}

fn not_ready_message(h: &mut Harness) -> String {
    let client = h.client();
    h.produce(client, 1, "/a", b"x");
    h.turn();
    let frames = h.received(client);
    match frames.as_slice() {
        [ServerFrame::Error(ErrorFrame {
            code: ErrorCode::NotReady,
            message,
            ..
        })] => message.clone(),
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// Session 9 (issue 17): the hold used to end at `--catch-up-timeout` (30 s), after which a
/// node that had lost its directory gave the ids of its old events, held by the member it had
/// not met, to new events (the simulation's "no convergence after healing"). Failed before:
/// "still refusing produces after an hour without meeting member 3".
#[test]
fn an_empty_directory_waits_for_every_member_with_no_time_out() {
    let (mut h, _two) = met_two_of_three(None);
    for _ in 0..120 {
        h.now.monotonic.0 += 30_000;
        h.now.wall.0 += 30_000;
        h.turn();
    }
    assert!(
        h.engine.is_holding_produces(),
        "still refusing produces after an hour without meeting member 3"
    );
    let message = not_ready_message(&mut h);
    assert!(
        message.contains("empty data directory") && message.contains("no time-out"),
        "{message}"
    );
    assert!(!h.engine.catch_up_timed_out());
    // Status says whom the hold waits for (walk9: `flo-client status` printed "held back by
    // no member"), for how long, and that no time-out will end it.
    assert_eq!(
        h.engine.status().hold,
        Some(ProduceHold {
            actor_id: 0,
            addr: "10.0.0.3:3000".into(),
            held_ms: 3_600_000,
            timeout_left_ms: 0,
            waits_for: "--peer-addr 10.0.0.3:3000, which has never answered".into(),
        })
    );
    // Member 3 dials in, holding none of this node's events: the hold ends.
    let (_three, _) = peer(&mut h, 3, VersionVector::new());
    h.turn();
    assert!(!h.engine.is_holding_produces());
    assert_eq!(h.engine.status().hold, None);
}

/// The hold fields of Status go only to a client that asks for them (StatusRequest option bit
/// 0): session 10 appended them to every Status during a hold, and a client that predates them
/// refused that Status as MalformedFrame (trailing bytes after `waiting_ms`, protocol.md
/// section 2). One that asks gets them, in the same turn's order as before.
#[test]
fn the_hold_fields_go_only_to_a_client_that_asks_for_them() {
    let (mut h, _two) = met_two_of_three(None);
    let old = h.client();
    let new = h.client();
    h.send(old, ClientFrame::StatusRequest { hold: false });
    h.send(new, ClientFrame::StatusRequest { hold: true });
    h.turn();
    let bytes = h.engine.output(old).to_vec();
    let frames = h.received(old);
    let [ServerFrame::Status(status)] = frames.as_slice() else {
        panic!("{frames:?}");
    };
    assert_eq!(
        status.hold, None,
        "bytes after waiting_ms, which a client of the first layout refuses"
    );
    let mut first_layout = Vec::new();
    encode(&ServerFrame::Status(status.clone()), &mut first_layout);
    assert_eq!(bytes, first_layout);
    let frames = h.received(new);
    let [ServerFrame::Status(status)] = frames.as_slice() else {
        panic!("{frames:?}");
    };
    let hold = status.hold.as_ref().expect("asked for: the hold fields");
    assert_eq!((hold.actor_id, hold.addr.as_str()), (0, "10.0.0.3:3000"));
}

/// A way out for a member gone for good: `cluster remove 3` on member 2, which this node has
/// met. The removal names 3 only by its record (this node never learned 3 from a member
/// list), so the `--peer-addr` it was waiting for is matched by the record's address.
#[test]
fn removing_the_member_not_met_ends_the_wait() {
    let (mut h, two) = met_two_of_three(None);
    h.send(
        two,
        PeerFrame::PeerMembership(vec![MembershipRecord {
            actor_id: 3,
            addr: "10.0.0.3:3000".into(),
            removed: true,
            version: 1,
        }]),
    );
    h.turn();
    assert!(
        !h.engine.is_holding_produces(),
        "member 3 was removed: nothing left to wait for"
    );
    assert!(!h.engine.catch_up_timed_out());
}

/// The operator's other way out, with its documented risk: `--empty-dir-catch-up-timeout`.
#[test]
fn the_empty_directory_time_out_is_the_operators_choice() {
    let (mut h, _two) = met_two_of_three(Some(std::time::Duration::from_secs(5)));
    h.now.monotonic.0 += 4_000;
    h.turn();
    assert!(h.engine.is_holding_produces());
    let hold = h.engine.status().hold.expect("the hold is in Status");
    assert_eq!((hold.held_ms, hold.timeout_left_ms), (4_000, 1_000));
    h.now.monotonic.0 += 1_000;
    h.turn();
    assert!(!h.engine.is_holding_produces());
    assert!(h.engine.catch_up_timed_out());
}

/// The hold after an unclean restart (a log with a counter lease, `--fsync interval`) keeps
/// its time-out: the lease keeps ids unique.
#[test]
fn an_unclean_restart_still_times_out() {
    let mut log = MemoryLog::with_fsync(crate::config::FsyncPolicy::IntervalMs(100));
    log.append(stored(1, 7, b"own")).unwrap();
    log.reserve_counters(1).unwrap();
    log.sync(MonotonicMs(0)).unwrap();
    let mut h = Harness::with_log(log, |c| {
        c.storage.fsync = crate::config::FsyncPolicy::IntervalMs(100);
        c.cluster.secret = Some(String::new());
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    assert_ne!(
        h.engine.log().counter_floor(),
        0,
        "a lease: not an empty directory"
    );
    h.turn();
    assert!(h.engine.is_holding_produces());
    h.now.monotonic.0 += 30_000;
    h.turn();
    assert!(!h.engine.is_holding_produces());
    assert!(h.engine.catch_up_timed_out());
}

/// A member this node knows only from a peer's list (its own member list was lost with the
/// directory) and that is down: a discovered member that never answers is forgotten after
/// `discovery_attempts_max` dials (about 40 s), which would end the hold without meeting it,
/// the same hole as a time-out. While the hold of an empty directory waits, none is forgotten.
#[test]
fn a_member_learned_from_a_peer_is_not_forgotten_while_an_empty_directory_waits() {
    let mut h = Harness::with_config(|c| {
        c.cluster.peer_addrs = vec!["10.0.0.2:3000".parse().unwrap()];
    });
    h.turn();
    let addr: std::net::SocketAddr = "10.0.0.2:3000".parse().unwrap();
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    h.engine.handle_dialed(h.now, conn, addr);
    // Member 2 answers, listing member 3 in its PeerAccept.
    let hello = match h.received_peer(conn).as_slice() {
        [PeerFrame::PeerHello(hello)] => hello.clone(),
        other => panic!("expected PeerHello, got {other:?}"),
    };
    h.send(
        conn,
        PeerFrame::PeerWelcome(crate::protocol::PeerHandshake {
            protocol_version: PROTOCOL_VERSION,
            actor_id: 2,
            advertised_addr: addr.to_string(),
            nonce: [2; 32],
        }),
    );
    h.turn();
    let mut accept = acceptor_accept(&hello, 2, 2, VersionVector::new());
    if let PeerFrame::PeerAccept(proof) = &mut accept {
        proof.members = vec![crate::protocol::Member {
            actor_id: 3,
            addr: "10.0.0.3:3000".into(),
        }];
    }
    h.send(conn, accept);
    h.turn();
    assert!(h.engine.is_holding_produces(), "member 3 not met yet");
    let three: std::net::SocketAddr = "10.0.0.3:3000".parse().unwrap();
    let mut dials_last_minute = 0;
    // Ten simulated minutes in 100 ms steps; every dial of member 3 fails. Member 2 keeps
    // its connection alive.
    for step in 0..6000 {
        h.now.monotonic.0 += 100;
        h.now.wall.0 += 100;
        if step % 10 == 0 {
            h.send(conn, PeerFrame::PeerCredit { count: 0 });
        }
        h.turn();
        for due in std::mem::take(&mut h.dials) {
            if due == three {
                if step >= 5400 {
                    dials_last_minute += 1;
                }
                h.engine.handle_dial_failed(h.now, due);
            }
        }
    }
    assert!(
        h.engine.is_holding_produces(),
        "member 3 was never met: the hold must still wait for it"
    );
    assert!(
        dials_last_minute > 0,
        "member 3 is still dialed after ten minutes"
    );
}

/// walk12: a node whose `--peer-addr` refuses its handshake (here a peer with another
/// `--cluster-secret`, AuthFailed) said in `flo-client status` that it waited for "--peer-addr
/// 10.0.0.3:3000, which has never answered", which sends the operator after the network
/// instead of the secret. Failed before: the waits_for text was "... which has never answered".
#[test]
fn a_peer_that_refused_the_handshake_is_named_with_its_refusal() {
    let (mut h, _two) = met_two_of_three(None);
    let addr: std::net::SocketAddr = "10.0.0.3:3000".parse().unwrap();
    assert!(h.dials.contains(&addr), "{:?}", h.dials);
    let conn = ConnId {
        slot: 51,
        generation: 1,
    };
    h.engine.handle_dialed(h.now, conn, addr);
    assert!(matches!(
        h.received_peer(conn).as_slice(),
        [PeerFrame::PeerHello(_)]
    ));
    h.send(
        conn,
        PeerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code: ErrorCode::AuthFailed,
            message: "the handshake proof does not match".into(),
        }),
    );
    h.turn();
    let hold = h.engine.status().hold.expect("3 was not met");
    assert_eq!(
        hold.waits_for,
        "--peer-addr 10.0.0.3:3000, which refused this node's handshake: AuthFailed (this \
         node's log says why)"
    );
    // Once it is met the refusal is forgotten with the hold.
    let (_three, _) = peer(&mut h, 3, VersionVector::new());
    h.turn();
    assert_eq!(h.engine.status().hold, None);
}
