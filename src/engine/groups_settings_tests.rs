//! Per-group settings, explicit creation, member listing and range acks (docs/consumers.md,
//! "Settings", protocol.md section 16): scenarios without sockets, the clock moved by hand.

use super::groups_tests::{harness_on, produce_jobs};
use super::*;
use crate::protocol::{
    GroupAckRange, GroupAdmin, GroupAdminAction, GroupSettings, GroupsDetailReply, GroupsRequest,
    JoinGroup,
};
use crate::storage::groups::MemoryGroupStore;

fn join_with(id: u32, settings: GroupSettings, credit: u32) -> ClientFrame {
    ClientFrame::JoinGroup(JoinGroup {
        subscription_id: id,
        group: "workers".into(),
        glob: "/jobs/**".into(),
        start: StartPosition::Beginning,
        credit,
        ack_timeout_ms: settings.ack_timeout_ms,
        max_deliveries: settings.max_deliveries,
        max_in_flight: settings.max_in_flight,
    })
}

fn settings(ack_timeout_ms: u32, max_deliveries: u16, max_in_flight: u32) -> GroupSettings {
    GroupSettings {
        ack_timeout_ms,
        max_deliveries,
        max_in_flight,
    }
}

fn admin(action: GroupAdminAction) -> ClientFrame {
    ClientFrame::GroupAdmin(GroupAdmin {
        group: "workers".into(),
        action,
    })
}

fn create(glob: &str, asked: GroupSettings) -> ClientFrame {
    admin(GroupAdminAction::Create {
        glob: glob.into(),
        start: StartPosition::Beginning,
        settings: asked,
    })
}

fn detail_request() -> ClientFrame {
    ClientFrame::GroupsDetailRequest(GroupsRequest {
        group: "workers".into(),
        after: String::new(),
    })
}

fn detail_of(frames: &[ServerFrame]) -> GroupsDetailReply {
    match frames {
        [ServerFrame::GroupsDetail(reply)] => reply.clone(),
        other => panic!("expected one GroupsDetail, got {other:?}"),
    }
}

fn error_code_of(frames: &[ServerFrame]) -> ErrorCode {
    match frames {
        [ServerFrame::Error(error)] => error.code,
        other => panic!("expected one Error, got {other:?}"),
    }
}

/// The ack time-out is the group's: a second member that leaves its fields at 0 gets the
/// group's (60 s, raised by the creating join above the server's 30 s default), not the
/// server's default; a creating join's lower values stay its own caps.
#[test]
fn a_member_joining_with_zeros_gets_the_groups_ack_timeout() {
    let mut harness = Harness::new();
    produce_jobs(&mut harness, 2);
    let first = harness.client();
    harness.send(first, join_with(1, settings(60_000, 3, 0), 0));
    harness.turn();
    let second = harness.client();
    harness.send(second, join_with(1, GroupSettings::default(), 1));
    harness.turn();
    let delivered = events_of(&harness.received(second), 1);
    assert_eq!(delivered.len(), 1, "the second member takes one event");
    // The second member leaves the event unacknowledged; the first takes the other one.
    harness.send(
        first,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 10,
        },
    );
    harness.turn();
    assert_eq!(events_of(&harness.received(first), 1).len(), 1);
    harness.now.monotonic.0 += 30_001;
    harness.turn();
    assert!(
        events_of(&harness.received(first), 1).is_empty(),
        "nothing times out after the server's default 30 s: the group's ack time-out is 60 s"
    );
    harness.now.monotonic.0 += 30_000;
    harness.turn();
    let redelivered = events_of(&harness.received(first), 1);
    assert!(
        redelivered.iter().any(|event| event.id == delivered[0].id),
        "after the group's 60 s the event goes to the other member: {redelivered:?}"
    );
    let group = &harness.engine.groups.groups["workers"];
    assert_eq!(
        group.settings,
        settings(60_000, 10, 1000),
        "raised, never lowered"
    );
}

/// Settings survive a restart on the journal, also after an update and a compaction.
#[test]
fn settings_are_journaled_with_the_group_and_recovered() {
    let store = MemoryGroupStore::new();
    let mut harness = harness_on(MemoryLog::new(), &store);
    let operator = harness.client();
    harness.send(operator, create("/jobs/**", settings(60_000, 5, 500)));
    harness.turn();
    let created = detail_of(&harness.received(operator));
    assert_eq!(created.groups[0].settings, settings(60_000, 5, 500));
    harness.send(
        operator,
        admin(GroupAdminAction::UpdateSettings(settings(120_000, 0, 0))),
    );
    harness.turn();
    let updated = detail_of(&harness.received(operator));
    assert_eq!(updated.groups[0].settings, settings(120_000, 5, 500));

    let mut restarted = harness_on(MemoryLog::new(), &store);
    let operator = restarted.client();
    restarted.send(operator, detail_request());
    restarted.turn();
    let recovered = detail_of(&restarted.received(operator));
    assert_eq!(
        recovered.groups[0].settings,
        settings(120_000, 5, 500),
        "the update survives a restart"
    );
    // A compaction writes the settings into the snapshot.
    let snapshot = restarted.engine.groups.snapshot_for_tests();
    assert!(
        snapshot.iter().any(|record| matches!(
            record,
            crate::storage::groups::GroupRecord::Settings {
                ack_timeout_ms: 120_000,
                ..
            }
        )),
        "{snapshot:?}"
    );
}

/// A create of an existing group: same glob and settings is the group as it is; another glob
/// or other settings are refused; values past the limits are refused.
#[test]
fn create_is_idempotent_and_refuses_other_globs_settings_and_excess() {
    let mut harness = Harness::new();
    let operator = harness.client();
    harness.send(operator, create("/jobs/**", GroupSettings::default()));
    harness.turn();
    let created = detail_of(&harness.received(operator));
    assert_eq!(created.groups[0].settings, settings(30_000, 10, 1000));
    harness.send(operator, create("/jobs/**", settings(30_000, 10, 1000)));
    harness.turn();
    detail_of(&harness.received(operator));
    harness.send(operator, create("/other/**", GroupSettings::default()));
    harness.turn();
    assert_eq!(
        error_code_of(&harness.received(operator)),
        ErrorCode::GroupGlobMismatch
    );
    harness.send(operator, create("/jobs/**", settings(5_000, 0, 0)));
    harness.turn();
    assert_eq!(
        error_code_of(&harness.received(operator)),
        ErrorCode::GroupSettingsMismatch
    );
    harness.send(
        operator,
        admin(GroupAdminAction::UpdateSettings(settings(0, 0, 100_001))),
    );
    harness.turn();
    assert_eq!(
        error_code_of(&harness.received(operator)),
        ErrorCode::InvalidGroupSettings
    );
    harness.send(
        operator,
        admin(GroupAdminAction::UpdateSettings(settings(
            24 * 3600 * 1000 + 1,
            0,
            0,
        ))),
    );
    harness.turn();
    assert_eq!(
        error_code_of(&harness.received(operator)),
        ErrorCode::InvalidGroupSettings
    );
    assert!(harness.engine.is_open(operator), "errors do not close");
}

/// A member's own values only lower the group's; GroupsDetail lists members with their
/// in-flight counts, at most `members_listed_max` of them.
#[test]
fn detail_lists_members_with_in_flight_counts_and_own_lower_caps() {
    let mut harness = Harness::with_config(|config| config.groups.members_listed_max = 2);
    produce_jobs(&mut harness, 10);
    let first = harness.client();
    harness.send(first, join_with(1, settings(1000, 3, 4), 100));
    harness.turn();
    let second = harness.client();
    // The first member's 4 is its own cap (the group keeps the default 1000); this one's is 2,
    // the third's 50.
    harness.send(second, join_with(7, settings(0, 0, 2), 100));
    let third = harness.client();
    harness.send(third, join_with(1, settings(0, 0, 50), 0));
    harness.turn();
    for conn in [first, second, third] {
        let _ = harness.received(conn);
    }
    let operator = harness.client();
    harness.send(operator, detail_request());
    harness.turn();
    let reply = detail_of(&harness.received(operator));
    let group = &reply.groups[0];
    assert_eq!(group.info.members, 3);
    assert_eq!(
        group.members.len(),
        2,
        "members_listed_max lists two of three"
    );
    let listed: Vec<(u32, u32, u32)> = (group.members.iter())
        .map(|m| (m.subscription_id, m.in_flight, m.max_in_flight))
        .collect();
    assert_eq!(listed, vec![(1, 4, 4), (7, 2, 2)]);
    assert_eq!(group.info.in_flight, 6);
}

/// A range ack settles the run of deliveries to this member between its ends, skips those
/// already acknowledged and never touches another member's events; an end not in flight to
/// the member acknowledges nothing (`NotPending`).
#[test]
fn a_range_ack_settles_this_members_run_only() {
    let mut harness = Harness::new();
    produce_jobs(&mut harness, 10);
    let first = harness.client();
    harness.send(first, join_with(1, settings(60_000, 3, 100), 5));
    let second = harness.client();
    harness.send(second, join_with(2, GroupSettings::default(), 100));
    harness.turn();
    let mine = events_of(&harness.received(first), 1);
    let theirs = events_of(&harness.received(second), 2);
    assert_eq!(
        (mine.len(), theirs.len()),
        (5, 5),
        "its credit, then the other member"
    );
    let range = |subscription_id, first_id, last_id| {
        ClientFrame::GroupAckRange(GroupAckRange {
            subscription_id,
            first: first_id,
            last: last_id,
        })
    };
    // An end that is the other member's: nothing is acknowledged.
    harness.send(first, range(1, mine[0].id, theirs[4].id));
    harness.turn();
    assert_eq!(
        error_code_of(&harness.received(first)),
        ErrorCode::NotPending
    );
    harness.send(
        first,
        ClientFrame::GroupAck(crate::protocol::GroupAck {
            subscription_id: 1,
            delay_ms: 0,
            ids: vec![mine[2].id],
        }),
    );
    // Ends in either order.
    harness.send(first, range(1, mine[3].id, mine[0].id));
    harness.turn();
    assert!(harness.received(first).is_empty());
    let group = &harness.engine.groups.groups["workers"];
    assert_eq!(
        group.pending.len(),
        6,
        "mine[4] and the other member's five"
    );
    assert!(group.pending_by_id.contains_key(&mine[4].id));
    for event in &theirs {
        assert!(group.pending_by_id.contains_key(&event.id));
    }
}

/// A range over many in-flight events is charged to the turn's frame budget and finished in
/// later turns; the connection's later frames wait for it (the Pong comes after the last ack).
#[test]
fn a_long_range_ack_is_spread_over_turns_and_later_frames_wait() {
    let mut harness = Harness::with_config(|config| config.frames_per_turn_total_max = 16);
    produce_jobs(&mut harness, 1000);
    let member = harness.client();
    harness.send(member, join_with(1, settings(600_000, 3, 1000), 1000));
    for _ in 0..100 {
        harness.turn();
    }
    let delivered = events_of(&harness.received(member), 1);
    assert_eq!(delivered.len(), 1000);
    harness.send(
        member,
        ClientFrame::GroupAckRange(GroupAckRange {
            subscription_id: 1,
            first: delivered[0].id,
            last: delivered[999].id,
        }),
    );
    harness.send(member, ClientFrame::Ping { token: 9 });
    let mut turns = 0;
    loop {
        let pending = harness.engine.groups.groups["workers"].pending.len();
        let frames = harness.received(member);
        let ponged = frames
            .iter()
            .any(|frame| matches!(frame, ServerFrame::Pong { token: 9 }));
        if ponged {
            assert_eq!(pending, 0, "the Pong follows the whole range");
            break;
        }
        // 16 units of 4 acks a turn: 64 events a turn at most.
        assert!(
            pending + 64 * (turns + 1) >= 1000,
            "{pending} left after {turns} turns"
        );
        harness.turn();
        turns += 1;
        assert!(turns < 100, "the range never finished");
    }
    assert!(turns >= 1000 / 64, "the range took {turns} turns");
    assert_eq!(harness.engine.stats().group_range_acks, 1000);
}
