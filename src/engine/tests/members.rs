//! Membership: the member list in the data directory, `cluster remove` / `cluster add`
//! (ChangeMember), and the PeerMembership records that carry them to every member. A removed
//! member no longer holds id order back or counts as a replica, and its handshake is refused
//! until it is added back.

use super::*;
use crate::protocol::{ChangeMember, MemberEntry, MemberOp, MembershipRecord, MembershipState};

fn change(op: MemberOp, actor: u16) -> ClientFrame {
    ClientFrame::ChangeMember(ChangeMember {
        op,
        actor_id: actor,
    })
}

/// The Members reply among `frames`.
fn members_of(frames: &[ServerFrame]) -> Vec<MemberEntry> {
    let reply = frames.iter().find_map(|f| match f {
        ServerFrame::Members(entries) => Some(entries.clone()),
        _ => None,
    });
    reply.unwrap_or_else(|| panic!("no Members reply in {frames:?}"))
}

fn state_of(entries: &[MemberEntry], actor: u16) -> Option<MembershipState> {
    let entry = entries.iter().find(|e| e.actor_id == actor);
    entry.map(|e| e.state)
}

fn record(actor: u16, removed: bool, version: u64) -> MembershipRecord {
    MembershipRecord {
        actor_id: actor,
        addr: format!("10.0.0.{actor}:3000"),
        removed,
        version,
    }
}

#[test]
fn a_removed_member_no_longer_holds_id_order_back_and_is_told_to_every_peer() {
    let mut h = Harness::new();
    let (peer2, _) = peer(&mut h, 2, VersionVector::new());
    let (peer3, _) = peer(&mut h, 3, VersionVector::new());
    let consumer = h.client();
    h.send(consumer, subscribe_id_order(1, 100));
    h.turn();
    h.produce(consumer, 1, "/a", b"x");
    h.send(peer2, PeerFrame::PeerClock { counter: 5 });
    h.turn();
    let frames = h.received(consumer);
    assert_eq!(events_of(&frames, 1), vec![], "member 3 promised nothing");
    // Member 3 goes away for good; an admin removes it.
    h.engine.handle_closed(peer3);
    h.received_peer(peer2);
    h.send(consumer, change(MemberOp::Remove, 3));
    h.turn();
    let frames = h.received(consumer);
    let ids: Vec<EventId> = events_of(&frames, 1).iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![EventId::new(1, 7)], "released once 3 is removed");
    let entries = members_of(&frames);
    assert_eq!(state_of(&entries, 3), Some(MembershipState::Removed));
    assert_eq!(state_of(&entries, 7), Some(MembershipState::Itself));
    assert_eq!(state_of(&entries, 2), Some(MembershipState::Connected));
    assert!(
        h.received_peer(peer2)
            .contains(&PeerFrame::PeerMembership(vec![record(3, true, 1)])),
        "the removal goes to every peer"
    );
    assert!(
        !h.engine.status().members.iter().any(|m| m.actor_id == 3),
        "no longer a member: not counted as a replica, not waited for"
    );
    // Member 3 comes back: refused, naming how to add it back.
    let conn = h.connect();
    h.send(conn, peer_hello(3, 4));
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MemberRemoved));
    // Added back: it may connect again.
    h.send(consumer, change(MemberOp::Add, 3));
    h.turn();
    let entries = members_of(&h.received(consumer));
    assert_ne!(state_of(&entries, 3), Some(MembershipState::Removed));
    let (_, frames) = peer(&mut h, 3, VersionVector::new());
    assert!(
        frames.contains(&PeerFrame::PeerMembership(vec![record(3, false, 2)])),
        "a member that was away learns the changes at its handshake: {frames:?}"
    );
}

#[test]
fn the_member_list_and_removals_survive_a_restart() {
    let mut h = Harness::new();
    peer(&mut h, 2, VersionVector::new());
    let (peer3, _) = peer(&mut h, 3, VersionVector::new());
    h.engine.handle_closed(peer3);
    let admin = h.client();
    h.send(admin, change(MemberOp::Remove, 3));
    h.turn();
    h.received(admin);
    let log = h.engine.into_log();
    let mut h = Harness::with_log(log, |c| c.cluster.secret = Some(String::new()));
    let admin = h.client();
    h.send(admin, ClientFrame::MembersRequest);
    h.turn();
    let entries = members_of(&h.received(admin));
    assert_eq!(state_of(&entries, 3), Some(MembershipState::Removed));
    assert_eq!(
        state_of(&entries, 2),
        Some(MembershipState::Connecting),
        "member 2 is remembered and dialed"
    );
    assert!(h.dials.contains(&"10.0.0.2:3000".parse().unwrap()));
    // Member 2 is waited for in id order after the restart, as before it.
    h.send(admin, subscribe_id_order(1, 100));
    h.produce(admin, 1, "/a", b"x");
    h.turn();
    assert_eq!(
        events_of(&h.received(admin), 1),
        vec![],
        "member 2 is known"
    );
    // Member 3 is still refused.
    let conn = h.connect();
    h.send(conn, peer_hello(3, 4));
    h.turn();
    assert_eq!(h.closed_with(conn), Some(ErrorCode::MemberRemoved));
}

#[test]
fn membership_records_from_peers_converge_by_version_with_removal_winning_a_tie() {
    let mut h = Harness::new();
    let (peer2, _) = peer(&mut h, 2, VersionVector::new());
    let (peer3, _) = peer(&mut h, 3, VersionVector::new());
    peer(&mut h, 4, VersionVector::new());
    h.received_peer(peer3);
    h.send(peer2, PeerFrame::PeerMembership(vec![record(4, true, 1)]));
    h.turn();
    assert_eq!(h.closed_with(peer2), None);
    assert!(
        h.received_peer(peer3)
            .contains(&PeerFrame::PeerMembership(vec![record(4, true, 1)])),
        "passed on"
    );
    assert!(h.engine.is_removed(ActorId(4)));
    // An addition at the same version loses to the removal; at a higher one it wins.
    h.send(peer2, PeerFrame::PeerMembership(vec![record(4, false, 1)]));
    h.turn();
    assert!(h.engine.is_removed(ActorId(4)));
    assert_eq!(h.received_peer(peer3), vec![], "nothing new to pass on");
    h.send(peer2, PeerFrame::PeerMembership(vec![record(4, false, 2)]));
    h.turn();
    assert!(!h.engine.is_removed(ActorId(4)));
    // A record saying this node itself was removed is not applied here.
    h.send(peer2, PeerFrame::PeerMembership(vec![record(7, true, 1)]));
    h.turn();
    assert!(!h.engine.is_removed(ActorId(7)));
}

#[test]
fn invalid_member_changes_are_refused_and_keep_the_connection() {
    let mut h = Harness::new();
    let admin = h.client();
    for (frame, what) in [
        (change(MemberOp::Remove, 7), "itself"),
        (change(MemberOp::Remove, 9), "unknown"),
        (change(MemberOp::Add, 9), "never removed"),
    ] {
        h.send(admin, frame);
        h.turn();
        let frames = h.received(admin);
        assert!(
            matches!(frames.as_slice(), [ServerFrame::Error(e)] if e.code == ErrorCode::InvalidMemberChange),
            "{what}: {frames:?}"
        );
    }
    assert_eq!(h.closed_with(admin), None, "the connection stays open");
}

/// A membership change is written and fsynced as it is handled, so a pipelined flood of them
/// is spread over turns (attack round 3: 10,000 ChangeMember frames held the reactor for 52 s):
/// at most 16 a turn, server-wide.
#[test]
fn a_flood_of_member_changes_is_spread_over_turns() {
    let mut h = Harness::new();
    let admin = h.client();
    for _ in 0..100 {
        h.send(admin, change(MemberOp::Remove, 9));
    }
    h.turn();
    let answered = h.received(admin).len();
    assert!(
        (1..=16).contains(&answered),
        "{answered} membership changes were handled in one turn"
    );
}

/// Attack round 3, F6: a peer holding the secret sent a removal at version u64::MAX; every
/// later `cluster add` saturated at that version and lost the tie to the removal, so the member
/// stayed removed there while the nodes that never got the record let it in. A record more than
/// `membership_version_ahead_max` above the known version is now ignored (logged), one exactly
/// at the bound is kept, and operators' changes keep superseding.
#[test]
fn a_membership_version_far_ahead_of_the_known_one_is_ignored() {
    let mut h = Harness::with_config(|c| c.cluster.membership_version_ahead_max = 100);
    let (peer2, _) = peer(&mut h, 2, VersionVector::new());
    let (peer3, _) = peer(&mut h, 3, VersionVector::new());
    peer(&mut h, 4, VersionVector::new());
    h.received_peer(peer3);
    for version in [u64::MAX, 101] {
        h.send(
            peer2,
            PeerFrame::PeerMembership(vec![record(4, true, version)]),
        );
        h.turn();
        assert!(
            !h.engine.is_removed(ActorId(4)),
            "a removal at version {version} (known 0) must be ignored"
        );
        assert_eq!(h.closed_with(peer2), None, "the peer stays connected");
        assert_eq!(h.received_peer(peer3), vec![], "and it is not passed on");
    }
    h.send(peer2, PeerFrame::PeerMembership(vec![record(4, true, 100)]));
    h.turn();
    assert!(h.engine.is_removed(ActorId(4)), "at the bound it is kept");
    // An operator's addition supersedes it and reaches the peers.
    let admin = h.client();
    h.send(admin, change(MemberOp::Add, 4));
    h.turn();
    let entries = members_of(&h.received(admin));
    assert_ne!(state_of(&entries, 4), Some(MembershipState::Removed));
    assert!(h
        .received_peer(peer3)
        .contains(&PeerFrame::PeerMembership(vec![record(4, false, 101)])));
}

/// Issue 17, id order after a lost data directory: a promise (PeerClock) a member made before
/// it reconnected counts only up to what this node's clocks had already passed, because the
/// member may have restarted on an empty directory with a lower counter. Before, its old
/// promise let this node release its own newer event at once, and the restarted member's
/// event with a smaller id was then delivered late.
#[test]
fn a_promise_made_before_a_reconnect_releases_nothing_new() {
    let mut h = Harness::new();
    let (peer2, _) = peer(&mut h, 2, VersionVector::new());
    let consumer = h.client();
    h.send(consumer, subscribe_id_order(1, 100));
    h.send(peer2, PeerFrame::PeerClock { counter: 100 });
    h.turn();
    let producer = h.client();
    for op in 1..=3 {
        h.produce(producer, op, "/a", b"x");
    }
    h.turn();
    let ids = |frames: &[ServerFrame]| -> Vec<EventId> {
        events_of(frames, 1).iter().map(|e| e.id).collect()
    };
    assert_eq!(ids(&h.received(consumer)).len(), 3);
    // Member 2 lost its directory and comes back empty; this node produces (4, 7).
    h.engine.handle_closed(peer2);
    let (peer2, _) = peer(&mut h, 2, VersionVector::new());
    h.produce(producer, 4, "/a", b"y");
    h.turn();
    assert_eq!(
        ids(&h.received(consumer)),
        vec![],
        "(4, 7) must wait for member 2's promise on its new connection"
    );
    // Member 2, its counter moved past 3 at the handshake, creates (4, 2) and promises 4.
    h.send(peer2, PeerFrame::PeerEvent(stored(4, 2, b"z")));
    h.send(peer2, PeerFrame::PeerClock { counter: 4 });
    h.turn();
    assert_eq!(
        ids(&h.received(consumer)),
        vec![EventId::new(4, 2), EventId::new(4, 7)]
    );
}

/// Issue 17: a handshake moves this node's Lamport counter past every event the peer holds,
/// so a node restarted on an empty data directory creates its next events above everything
/// its peers can have delivered in id order.
#[test]
fn a_handshake_moves_the_counter_past_the_events_the_peer_holds() {
    let mut h = Harness::new();
    peer(&mut h, 2, [(ActorId(2), 40)].into_iter().collect());
    let client = h.client();
    h.produce(client, 1, "/a", b"x");
    h.turn();
    assert_eq!(
        ack_ids(&h.received(client)),
        vec![EventId::new(41, 7)],
        "the first event after the handshake"
    );
}
