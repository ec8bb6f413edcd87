//! What a connected cluster peer is trusted with (docs/clustering.md, "What a member is trusted
//! with"; attack round 12). Each scenario drives one engine through a fake peer connection and
//! checks that what the peer says is believed only within what it could truthfully say:
//!
//! - PeerCredit: a first window over `PEER_CREDIT_WINDOW_MAX`, or credit beyond the PeerEvents
//!   this node sent, closes the connection with MalformedFrame and counts a violation;
//! - the handshake vector's entry for this node's own actor counts as replicas only up to this
//!   node's counter at the handshake;
//! - PeerClock: an event of the peer's own at or below what it promised on the connection
//!   closes it (MalformedFrame, counted) and is not stored;
//! - PeerPurge under `--peer-purges refuse` is ignored and counted, and a client's purge still
//!   applies and goes to the peers;
//! - a handshake claiming the actor id of a member connected from another address is refused
//!   with ActorIdConflict, and the address is dialed again after the back-off.

use super::*;
use crate::config::PeerPurges;
use crate::event::{PurgeBefore, PurgeRule};
use crate::protocol::PEER_CREDIT_WINDOW_MAX;

fn violations(h: &Harness) -> u64 {
    let counted = h.engine.stats().peer_violations;
    assert_eq!(h.engine.metrics_snapshot().peer_violations, counted);
    counted
}

#[test]
fn peer_credit_beyond_the_events_sent_closes_the_connection_and_is_counted() {
    let mut h = Harness::new();
    let client = h.client();
    let (conn, _) = peer(&mut h, 2, VersionVector::new());
    // Its window: two events.
    h.send(conn, PeerFrame::PeerCredit { count: 2 });
    h.produce(client, 1, "/a", b"x");
    h.turn();
    assert_eq!(
        peer_event_ids(&h.received_peer(conn)),
        vec![EventId::new(1, 7)]
    );
    // The credit of the event sent comes back: what a correct peer does.
    h.send(conn, PeerFrame::PeerCredit { count: 1 });
    h.turn();
    assert_eq!(h.closed_with(conn), None);
    assert_eq!(violations(&h), 0);
    // One more than was sent: the peer would hold three credits with a window of two.
    h.send(conn, PeerFrame::PeerCredit { count: 1 });
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MalformedFrame));
    assert_eq!(violations(&h), 1);
    assert!(
        h.engine.status().members[0].state != crate::protocol::MemberState::Connected,
        "the peer is disconnected"
    );
}

#[test]
fn a_first_peer_credit_over_the_protocol_limit_closes_the_connection() {
    let mut h = Harness::new();
    let (at_limit, _) = peer(&mut h, 2, VersionVector::new());
    h.send(
        at_limit,
        PeerFrame::PeerCredit {
            count: PEER_CREDIT_WINDOW_MAX,
        },
    );
    h.turn();
    assert_eq!(
        h.closed_with(at_limit),
        None,
        "a window at the limit is valid"
    );
    let (over, _) = peer(&mut h, 3, VersionVector::new());
    h.send(
        over,
        PeerFrame::PeerCredit {
            count: PEER_CREDIT_WINDOW_MAX + 1,
        },
    );
    h.turn();
    assert_eq!(h.closed_with(over), Some(ErrorCode::MalformedFrame));
    assert_eq!(violations(&h), 1);
    // A keep-alive (credit 0) never counts.
    h.send(at_limit, PeerFrame::PeerCredit { count: 0 });
    h.turn();
    assert_eq!(h.closed_with(at_limit), None);
}

#[test]
fn a_handshake_claim_beyond_this_nodes_counter_counts_no_replica() {
    let mut h = Harness::new();
    let client = h.client();
    // The peer claims to hold this node's (actor 7's) events up to 2^60, far past anything
    // it created: the handshake moves this node's counter only up to 2^48 above its own.
    let claim: VersionVector = [(ActorId(7), 1u64 << 60)].into_iter().collect();
    let (conn, _) = peer(&mut h, 2, claim);
    h.send(client, ClientFrame::SetReplicas { replicas: 2 });
    h.produce(client, 1, "/a", b"x");
    h.turn();
    let frames = h.received(client);
    assert_eq!(
        ack_ids(&frames),
        vec![],
        "the peer never received the event: no second replica ({frames:?})"
    );
    assert_eq!(h.closed_with(conn), None);
    // It times out naming one replica reached, its event stays appended.
    h.now.monotonic.0 += 10_000;
    h.turn();
    let frames = h.received(client);
    let timed_out = frames.iter().any(|f| {
        matches!(f, ServerFrame::Error(e) if e.code == ErrorCode::ReplicationTimeout
            && e.message.starts_with("reached 1 of 2 replicas"))
    });
    assert!(timed_out, "{frames:?}");
}

#[test]
fn an_event_at_or_below_the_peers_own_clock_promise_closes_the_connection() {
    let mut h = Harness::new();
    let (conn, _) = peer(&mut h, 2, VersionVector::new());
    h.send(conn, PeerFrame::PeerEvent(stored(5, 2, b"a")));
    h.send(conn, PeerFrame::PeerClock { counter: 10 });
    h.turn();
    assert_eq!(h.closed_with(conn), None);
    // A copy of an event this node holds, below the promise, changes nothing: dropped.
    h.send(conn, PeerFrame::PeerEvent(stored(5, 2, b"a")));
    h.turn();
    assert_eq!(
        h.closed_with(conn),
        None,
        "a copy of a held event is not a violation"
    );
    assert_eq!(violations(&h), 0);
    // Below the promise: it said every event of its own up to 10 had been sent.
    h.send(conn, PeerFrame::PeerEvent(stored(7, 2, b"late")));
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MalformedFrame));
    assert_eq!(
        h.engine.log().version_vector().get(ActorId(2)),
        5,
        "the late event is not stored"
    );
    assert_eq!(violations(&h), 1);
    // Above the promise, and another actor's events, are what a correct peer sends.
    let (other, _) = peer(&mut h, 3, VersionVector::new());
    h.send(other, PeerFrame::PeerEvent(stored(1, 3, b"b")));
    h.send(other, PeerFrame::PeerClock { counter: 4 });
    h.send(other, PeerFrame::PeerEvent(stored(5, 3, b"c")));
    h.send(other, PeerFrame::PeerEvent(stored(6, 2, b"relayed")));
    h.turn();
    assert_eq!(h.closed_with(other), None);
    assert_eq!(h.engine.log().version_vector().get(ActorId(3)), 5);
    assert_eq!(h.engine.log().version_vector().get(ActorId(2)), 6);
    assert_eq!(violations(&h), 1);
}

#[test]
fn peer_purges_are_accepted_by_default() {
    let config = crate::config::Config::new("127.0.0.1:0".parse().unwrap(), "/d".into());
    assert_eq!(config.cluster.peer_purges, PeerPurges::Accept);
}

#[test]
fn under_peer_purges_refuse_a_peers_purge_is_ignored_and_counted() {
    let mut h = Harness::with_config(|c| c.cluster.peer_purges = PeerPurges::Refuse);
    let (conn, _) = peer(&mut h, 2, VersionVector::new());
    let (other, _) = peer(&mut h, 3, VersionVector::new());
    h.received_peer(other);
    let client = h.client();
    h.produce(client, 1, "/logs/a", b"x");
    h.turn();
    h.received(client);
    let rule = PurgeRule {
        glob: "/logs/**".into(),
        before: PurgeBefore::Time(1_800_000_000_000),
    };
    h.send(conn, PeerFrame::PeerPurge(rule.clone()));
    h.turn();
    assert_eq!(h.closed_with(conn), None, "the connection stays open");
    assert!(h.engine.log().hide_rules().purges().is_empty());
    assert_eq!(h.engine.stats().peer_purges_refused, 1);
    assert_eq!(h.engine.metrics_snapshot().peer_purges_refused, 1);
    assert!(
        !h.received_peer(other).contains(&PeerFrame::PeerPurge(rule)),
        "not passed on"
    );
    h.subscribe(client, 1, "/**", StartPosition::Beginning, false, 10);
    h.turn();
    assert_eq!(events_of(&h.received(client), 1).len(), 1, "still visible");
    // A purge from this node's own client still applies, and goes to the peers.
    let own = PurgeRule {
        glob: "/logs/**".into(),
        before: PurgeBefore::Time(h.now.wall.0),
    };
    h.send(client, ClientFrame::Purge(own.clone()));
    h.turn();
    assert_eq!(h.engine.log().hide_rules().purges(), vec![own.clone()]);
    assert!(h.received_peer(other).contains(&PeerFrame::PeerPurge(own)));
}

/// Advances the clock in 100 ms steps, up to a minute, until this node dials `addr`.
fn dialed_again(h: &mut Harness, addr: std::net::SocketAddr) -> bool {
    h.dials.clear();
    for _ in 0..600 {
        h.now.monotonic.0 += 100;
        h.now.wall.0 += 100;
        h.turn();
        if h.dials.contains(&addr) {
            return true;
        }
    }
    false
}

/// Attack round 18 (docs/clustering.md, "One connection per pair"): a node dialed at another
/// address that answers with the actor id of a connected member is a second node with a
/// copied `--actor-id` (or the member moved). The handshake is refused with ActorIdConflict
/// before the connection is established (it completed, and lost by the duplicate rule with
/// DuplicatePeerConnection), the member's connection goes on, and the address is dialed again
/// after the back-off. So is an address whose acceptor refused with ActorIdConflict after a
/// PeerWelcome of another actor (before, the address was taken for this node's own, as when
/// a node dials itself, and never dialed again).
#[test]
fn a_second_node_with_a_members_actor_id_is_refused_and_dialed_again() {
    let addr: std::net::SocketAddr = "10.0.0.9:3000".parse().expect("an address");
    let mut h = Harness::with_config(|c| c.cluster.peer_addrs = vec![addr]);
    let (member, _) = peer(&mut h, 2, VersionVector::new());
    h.turn();
    assert!(h.dials.contains(&addr));
    let conn = ConnId {
        slot: 50,
        generation: 1,
    };
    h.engine.handle_dialed(h.now, conn, addr);
    accept_dial(&mut h, conn, 2, addr, VersionVector::new());
    assert_eq!(h.closed_with(conn), Some(ErrorCode::ActorIdConflict));
    assert!(h.engine.is_open(member));
    assert_eq!(h.engine.connected_peers(), vec![ActorId(2)]);
    assert!(
        dialed_again(&mut h, addr),
        "the conflicting address is dialed again"
    );
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
        PeerFrame::PeerWelcome(crate::protocol::PeerHandshake {
            protocol_version: PROTOCOL_VERSION,
            actor_id: 3,
            advertised_addr: addr.to_string(),
            nonce: [3; 32],
        }),
    );
    h.turn();
    assert!(matches!(
        h.received_peer(conn).as_slice(),
        [PeerFrame::PeerProof(_)]
    ));
    h.send(
        conn,
        PeerFrame::Error(crate::protocol::ErrorFrame {
            scope: crate::protocol::ErrorScope::Connection,
            code: ErrorCode::ActorIdConflict,
            message: "actor 7 is connected from 10.0.0.7:3000".into(),
        }),
    );
    h.turn();
    assert!(
        dialed_again(&mut h, addr),
        "an acceptor of another actor that refused with ActorIdConflict is not this node"
    );
}
