//! Inspecting and administering consumer groups (GroupsRequest, ParkedRequest, GroupAdmin):
//! the lag figures, paging through groups and parked events, replaying parked events, reset and
//! delete, each surviving a restart on the journal, and the errors. No sockets, no clock.

use std::collections::BTreeSet;

use super::*;
use crate::protocol::{
    GroupAck, GroupAdmin, GroupAdminAction, GroupInfo, GroupsReply, GroupsRequest, JoinGroup,
    ParkedReply, ParkedRequest,
};
use crate::storage::groups::MemoryGroupStore;

fn join_with(id: u32, group: &str, glob: &str, credit: u32, max_deliveries: u16) -> ClientFrame {
    ClientFrame::JoinGroup(JoinGroup {
        subscription_id: id,
        group: group.into(),
        glob: glob.into(),
        start: StartPosition::Beginning,
        credit,
        ack_timeout_ms: 1000,
        max_deliveries,
        max_in_flight: 100,
    })
}

fn join_frame(frame: ClientFrame) -> JoinGroup {
    match frame {
        ClientFrame::JoinGroup(join) => join,
        other => unreachable!("not a JoinGroup: {other:?}"),
    }
}

fn join(id: u32, credit: u32) -> ClientFrame {
    join_with(id, "workers", "/jobs/**", credit, 3)
}

fn ack_frame(id: u32, ids: Vec<EventId>, nack: bool) -> ClientFrame {
    let ack = GroupAck {
        subscription_id: id,
        delay_ms: 0,
        ids,
    };
    if nack {
        ClientFrame::GroupNack(ack)
    } else {
        ClientFrame::GroupAck(ack)
    }
}

fn info_request(group: &str) -> ClientFrame {
    ClientFrame::GroupsRequest(GroupsRequest {
        group: group.into(),
        after: String::new(),
    })
}

fn admin(group: &str, action: GroupAdminAction) -> ClientFrame {
    ClientFrame::GroupAdmin(GroupAdmin {
        group: group.into(),
        action,
    })
}

fn harness_on(
    log: MemoryLog,
    store: &MemoryGroupStore,
    change: impl FnOnce(&mut Config),
) -> Harness {
    let mut harness = Harness::with_log(log, change);
    harness
        .engine
        .load_groups(Box::new(store.reopen()))
        .expect("memory store loads");
    harness
}

fn produce_jobs(harness: &mut Harness, count: usize) {
    let producer = harness.client();
    for n in 0..count {
        harness.produce(producer, n as u64, &format!("/jobs/{n}"), b"job");
    }
    harness.produce(producer, count as u64, "/other", b"not a job");
    turn(harness);
    assert_eq!(ack_ids(&harness.received(producer)).len(), count + 1);
}

/// The one Groups reply among `frames`.
fn groups_reply(frames: &[ServerFrame]) -> GroupsReply {
    let replies: Vec<&GroupsReply> = frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Groups(reply) => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "one Groups reply in {frames:?}");
    replies[0].clone()
}

fn the_group(frames: &[ServerFrame]) -> GroupInfo {
    let reply = groups_reply(frames);
    assert_eq!(reply.groups.len(), 1, "{reply:?}");
    reply.groups[0].clone()
}

fn parked_reply(frames: &[ServerFrame]) -> ParkedReply {
    match frames {
        [ServerFrame::Parked(reply)] => reply.clone(),
        other => panic!("expected one Parked reply, got {other:?}"),
    }
}

fn error_code(frames: &[ServerFrame]) -> Option<ErrorCode> {
    frames.iter().find_map(|frame| match frame {
        ServerFrame::Error(error) => Some(error.code),
        _ => None,
    })
}

/// `request` from `conn` is refused with `code` in the next turn; the connection stays open.
fn assert_refused(harness: &mut Harness, conn: ConnId, request: ClientFrame, code: ErrorCode) {
    harness.send(conn, request);
    turn(harness);
    let frames = harness.received(conn);
    assert_eq!(error_code(&frames), Some(code), "{frames:?}");
    assert!(harness.engine.is_open(conn));
}

#[test]
fn group_info_reports_members_pending_positions_and_lag() {
    let mut harness = Harness::new();
    produce_jobs(&mut harness, 10);
    let member = harness.client();
    harness.send(member, join(1, 4));
    turn(&mut harness);
    let delivered = events_of(&harness.received(member), 1);
    assert_eq!(delivered.len(), 4);
    harness.send(member, ack_frame(1, vec![delivered[1].id], false));
    turn(&mut harness);
    harness.now.monotonic.0 += 250;
    let admin_conn = harness.client();
    harness.send(admin_conn, info_request("workers"));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!(
        info,
        GroupInfo {
            name: "workers".into(),
            glob: "/jobs/**".into(),
            members: 1,
            in_flight: 3,
            pending: 3,
            parked: 0,
            floor: 0,
            next: 4,
            acked_above_floor: 1,
            // Offsets 4..11 not looked at yet: 6 jobs and the /other event (a bound).
            lag: 7,
            oldest_pending_age_ms: 250,
        }
    );
    // The metrics endpoint shows the same figures.
    let metrics = harness.engine.metrics_snapshot().groups;
    assert_eq!(
        metrics,
        [crate::engine::metrics::GroupMetrics {
            name: "workers".into(),
            pending: 3,
            parked: 0,
            lag: 7,
            members: 1,
            oldest_pending_age_ms: 250,
        }]
    );
    // Everything acknowledged: the floor passes the end, no lag.
    harness.send(
        member,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 100,
        },
    );
    turn(&mut harness);
    let rest = events_of(&harness.received(member), 1);
    let all: Vec<EventId> = [&delivered[..], &rest[..]]
        .concat()
        .iter()
        .map(|e| e.id)
        .filter(|id| *id != delivered[1].id)
        .collect();
    harness.send(member, ack_frame(1, all, false));
    turn(&mut harness);
    harness.send(admin_conn, info_request("workers"));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!(
        (info.pending, info.floor, info.next, info.lag),
        (0, 11, 11, 0)
    );
    assert_eq!(info.oldest_pending_age_ms, 0);
}

#[test]
fn a_group_list_longer_than_a_frame_comes_in_pages() {
    let mut harness = Harness::with_config(|c| c.wire.frame_size_max = 64 * 1024);
    let member = harness.client();
    let glob = format!("/{}", "a".repeat(1000));
    let mut names = BTreeSet::new();
    for n in 0..60u32 {
        let name = format!("{n:03}{}", "n".repeat(250));
        harness.send(member, join_with(n + 1, &name, &glob, 1, 3));
        harness.send(
            member,
            ClientFrame::LeaveGroup {
                subscription_id: n + 1,
            },
        );
        names.insert(name);
    }
    turn(&mut harness);
    let mut listed = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let request = GroupsRequest {
            group: String::new(),
            after: after.clone(),
        };
        harness.send(member, ClientFrame::GroupsRequest(request));
        turn(&mut harness);
        let reply = groups_reply(&harness.received(member));
        pages += 1;
        assert!(!reply.groups.is_empty(), "a page has at least one group");
        after = reply.groups.last().expect("not empty").name.clone();
        listed.extend(reply.groups.into_iter().map(|g| g.name));
        if !reply.more {
            break;
        }
        assert!(pages < 10, "the list ends");
    }
    // About 1,330 bytes a group: 49 fit a 64 KiB frame.
    assert_eq!(pages, 2);
    assert_eq!(listed, names.into_iter().collect::<Vec<_>>());
}

/// Parks the first `count` jobs of group "workers" (max_deliveries 1, each nacked once) and
/// returns their ids; the member stays joined (subscription 1).
fn park_jobs(harness: &mut Harness, member: ConnId, count: usize) -> Vec<EventId> {
    harness.send(member, join_with(1, "workers", "/jobs/**", count as u32, 1));
    turn(harness);
    let delivered = ids_of(&harness.received(member), 1);
    assert_eq!(delivered.len(), count);
    harness.send(member, ack_frame(1, delivered.clone(), true));
    turn(harness);
    assert_eq!(harness.engine.groups.groups["workers"].parked.len(), count);
    delivered
}

#[test]
fn parked_events_are_listed_in_pages_and_a_replay_delivers_them_again_across_a_restart() {
    let store = MemoryGroupStore::new();
    let limits = |c: &mut Config| c.groups.parked_list_max = 2;
    let mut harness = harness_on(MemoryLog::new(), &store, limits);
    produce_jobs(&mut harness, 3);
    let member = harness.client();
    let parked = park_jobs(&mut harness, member, 3);
    let admin_conn = harness.client();
    let request = |from_offset| {
        ClientFrame::ParkedRequest(ParkedRequest {
            group: "workers".into(),
            from_offset,
        })
    };
    harness.send(admin_conn, request(0));
    turn(&mut harness);
    let page = parked_reply(&harness.received(admin_conn));
    assert!(page.more);
    let ids: Vec<EventId> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, parked[..2]);
    harness.send(admin_conn, request(page.events[1].offset + 1));
    turn(&mut harness);
    let page = parked_reply(&harness.received(admin_conn));
    assert!(!page.more);
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        parked[2..]
    );

    // Replay while the member is joined: the three come again, parked count 0.
    harness.send(admin_conn, admin("workers", GroupAdminAction::ReplayParked));
    harness.send(
        member,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 10,
        },
    );
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!((info.parked, info.pending), (0, 3));
    let again = ids_of(&harness.received(member), 1);
    assert_eq!(again, parked);
    // One is acknowledged; then a crash.
    harness.send(member, ack_frame(1, vec![parked[0]], false));
    turn(&mut harness);
    let mut harness = restart(harness, &store, limits);
    assert!(harness.engine.groups.groups["workers"].parked.is_empty());
    let (member, after_restart) = join_and_take(&mut harness, 10);
    assert_eq!(
        after_restart,
        parked[1..],
        "the replayed, unacknowledged ones"
    );
    harness.send(member, ack_frame(1, after_restart, false));
    turn(&mut harness);
    // Acknowledged: not delivered after another restart, nothing parked or pending.
    let mut harness = restart(harness, &store, limits);
    let member = harness.client();
    harness.send(member, join(1, 10));
    harness.send(member, info_request("workers"));
    turn(&mut harness);
    let frames = harness.received(member);
    assert!(events_of(&frames, 1).is_empty(), "{frames:?}");
    let info = the_group(&frames);
    assert_eq!((info.parked, info.pending), (0, 0));
}

#[test]
fn a_reset_needs_no_members_and_moves_the_group_durably() {
    let store = MemoryGroupStore::new();
    let mut harness = harness_on(MemoryLog::new(), &store, |_| {});
    produce_jobs(&mut harness, 5);
    let (member, delivered) = join_and_take(&mut harness, 100);
    harness.send(member, ack_frame(1, delivered.clone(), false));
    turn(&mut harness);
    let admin_conn = harness.client();
    let reset = |start| admin("workers", GroupAdminAction::Reset(start));
    let beginning = reset(StartPosition::Beginning);
    assert_refused(&mut harness, admin_conn, beginning, ErrorCode::GroupInUse);
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    // After the second job: the rest are delivered again, after a restart too.
    harness.send(admin_conn, reset(StartPosition::AfterId(delivered[1])));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!((info.floor, info.next, info.pending), (2, 2, 0));
    let mut harness = restart(harness, &store, |_| {});
    let (member, again) = join_and_take(&mut harness, 100);
    assert_eq!(again, delivered[2..]);
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    let admin_conn = harness.client();
    harness.send(
        admin_conn,
        admin("workers", GroupAdminAction::Reset(StartPosition::End)),
    );
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!((info.next, info.lag, info.pending), (6, 0, 0));
}

#[test]
fn a_delete_needs_no_members_and_survives_a_restart() {
    let store = MemoryGroupStore::new();
    let mut harness = harness_on(MemoryLog::new(), &store, |_| {});
    produce_jobs(&mut harness, 2);
    let member = harness.client();
    harness.send(member, join(1, 100));
    turn(&mut harness);
    let admin_conn = harness.client();
    let delete = || admin("workers", GroupAdminAction::Delete);
    assert_refused(&mut harness, admin_conn, delete(), ErrorCode::GroupInUse);
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    harness.send(admin_conn, delete());
    turn(&mut harness);
    assert!(groups_reply(&harness.received(admin_conn))
        .groups
        .is_empty());
    let info = info_request("workers");
    assert_refused(&mut harness, admin_conn, info, ErrorCode::NoSuchGroup);
    let mut harness = restart(harness, &store, |_| {});
    assert!(harness.engine.groups.groups.is_empty());
    // A new group of the same name starts afresh: both jobs again.
    let (_, again) = join_and_take(&mut harness, 100);
    assert_eq!(again.len(), 2);
}

#[test]
fn unknown_groups_get_no_such_group_and_the_connection_stays_open() {
    let mut harness = Harness::new();
    let conn = harness.client();
    let requests = [
        info_request("nope"),
        ClientFrame::ParkedRequest(ParkedRequest {
            group: "nope".into(),
            from_offset: 0,
        }),
        admin("nope", GroupAdminAction::ReplayParked),
        admin("nope", GroupAdminAction::Reset(StartPosition::Beginning)),
        admin("nope", GroupAdminAction::Delete),
    ];
    for request in requests {
        assert_refused(&mut harness, conn, request, ErrorCode::NoSuchGroup);
    }
    // An empty list is an answer, not an error.
    harness.send(conn, info_request(""));
    turn(&mut harness);
    let reply = groups_reply(&harness.received(conn));
    assert!(reply.groups.is_empty() && !reply.more);
}

#[test]
fn a_journal_compaction_keeps_replayed_events_pending() {
    let store = MemoryGroupStore::new();
    let mut harness = harness_on(MemoryLog::new(), &store, |_| {});
    produce_jobs(&mut harness, 4);
    let member = harness.client();
    let parked = park_jobs(&mut harness, member, 2);
    // The remaining two jobs are acknowledged: the floor passes the parked ones.
    harness.send(
        member,
        ClientFrame::Credit {
            subscription_id: 1,
            count: 10,
        },
    );
    turn(&mut harness);
    let rest = ids_of(&harness.received(member), 1);
    assert_eq!(rest.len(), 2);
    harness.send(member, ack_frame(1, rest, false));
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    let admin_conn = harness.client();
    harness.send(admin_conn, admin("workers", GroupAdminAction::ReplayParked));
    turn(&mut harness);
    // Force a compaction: the snapshot must carry the replayed events.
    let snapshot = harness.engine.groups.snapshot_for_tests();
    let mut compacted = MemoryGroupStore::new();
    crate::storage::groups::GroupStore::rewrite(&mut compacted, &snapshot).expect("rewrite");
    let mut harness = restart(harness, &compacted, |_| {});
    let (_, again) = join_and_take(&mut harness, 10);
    assert_eq!(again, parked);
}

/// The engine restarted on its log and the group journal in `store`.
fn restart(
    harness: Harness,
    store: &MemoryGroupStore,
    change: impl FnOnce(&mut Config),
) -> Harness {
    harness_on(harness.engine.into_log(), store, change)
}

/// A new member joins "workers" (subscription 1, `credit`); it and the ids it is given.
fn join_and_take(harness: &mut Harness, credit: u32) -> (ConnId, Vec<EventId>) {
    let member = harness.client();
    harness.send(member, join(1, credit));
    turn(harness);
    (member, ids_of(&harness.received(member), 1))
}

/// A turn, then the engine's invariants (release test builds skip them otherwise).
fn turn(harness: &mut Harness) {
    harness.turn();
    harness.engine.check_invariants();
}

/// Replays of chosen parked events: by id list (all named ids parked, or nothing and
/// `NotParked`; at most `parked_list_max` ids) and by id range; only the chosen ones come
/// again, the rest stay parked, across a restart.
#[test]
fn a_replay_of_chosen_parked_events_delivers_only_those_durably() {
    let store = MemoryGroupStore::new();
    let limits = |c: &mut Config| c.groups.parked_list_max = 3;
    let mut harness = harness_on(MemoryLog::new(), &store, limits);
    produce_jobs(&mut harness, 6);
    let member = harness.client();
    let parked = park_jobs(&mut harness, member, 6);
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    let admin_conn = harness.client();
    let replay_ids = |ids: &[EventId]| admin("workers", GroupAdminAction::ReplayIds(ids.to_vec()));
    // One id that is not parked (the /other event, never a job): nothing is replayed.
    let not_a_job = EventId {
        counter: parked[5].counter + 1,
        ..parked[5]
    };
    let refused = [
        replay_ids(&[parked[1], not_a_job]),
        replay_ids(&[parked[0], parked[1], parked[2], parked[3]]),
    ];
    for request in refused {
        assert_refused(&mut harness, admin_conn, request, ErrorCode::NotParked);
        assert_eq!(harness.engine.groups.groups["workers"].parked.len(), 6);
    }
    harness.send(admin_conn, replay_ids(&[parked[4], parked[1]]));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!((info.parked, info.pending), (4, 2));
    // A range: jobs 2 and 3 (both ends included).
    let range = GroupAdminAction::ReplayRange {
        from: parked[2],
        to: parked[3],
    };
    harness.send(admin_conn, admin("workers", range));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!((info.parked, info.pending), (2, 4));
    // Nothing parked in a range is an answer, not an error.
    let empty = GroupAdminAction::ReplayRange {
        from: not_a_job,
        to: EventId::new(EventId::COUNTER_MAX, u16::MAX),
    };
    harness.send(admin_conn, admin("workers", empty));
    turn(&mut harness);
    assert_eq!(the_group(&harness.received(admin_conn)).parked, 2);
    // After a restart the four chosen come again, and only they.
    let mut harness = restart(harness, &store, limits);
    let (_, again) = join_and_take(&mut harness, 10);
    let again: BTreeSet<EventId> = again.into_iter().collect();
    let chosen: BTreeSet<EventId> = [1, 2, 3, 4].iter().map(|n| parked[*n]).collect();
    assert_eq!(again, chosen);
    let still_parked: Vec<EventId> = harness.engine.groups.groups["workers"]
        .parked
        .values()
        .copied()
        .collect();
    assert_eq!(still_parked, [parked[0], parked[5]]);
}

/// After a power loss (`--fsync never` here) the log can end below offsets the group journal
/// names. Records written there later are new: the group must deliver them, and after the
/// next restart too (the journal's old Ack records must not come back and hide them).
#[test]
fn a_power_loss_below_the_groups_floor_hides_no_later_event() {
    use crate::config::FsyncPolicy;
    use crate::storage::Offset;
    let store = MemoryGroupStore::new();
    let never = |c: &mut Config| c.storage.fsync = FsyncPolicy::Never;
    let mut harness = harness_on(MemoryLog::with_fsync(FsyncPolicy::Never), &store, never);
    produce_jobs(&mut harness, 3);
    let (member, first) = join_and_take(&mut harness, 10);
    assert_eq!(first.len(), 3);
    harness.send(member, ack_frame(1, first.clone(), false));
    turn(&mut harness);
    assert_eq!(harness.engine.groups.groups["workers"].floor(), Offset(4));
    let mut log = harness.engine.into_log();
    // One unsynced record survives the power loss; the journal says 0..4 are done.
    log.crash(1);
    assert_eq!(log.durable_end(), Offset(1));
    let mut harness = harness_on(log, &store, never);
    produce_jobs(&mut harness, 3);
    for restart in 0..2 {
        let (_, again) = join_and_take(&mut harness, 10);
        assert_eq!(
            again.len(),
            3,
            "restart {restart}: the jobs written after the power loss (offsets 1 to 3)"
        );
        assert!(again.iter().all(|id| !first.contains(id)));
        // Not acknowledged: a crash that keeps everything, and they must come again.
        let mut log = harness.engine.into_log();
        log.crash(u64::MAX / 2);
        harness = harness_on(log, &store, never);
    }
}

/// attack5 finding F3: parked events count against `groups.memory_max`, and a replay of
/// parked events makes pending again only as many as the limit has room for; the rest stay
/// parked, which the reply's `parked` count shows (and a later replay takes them once acks
/// freed memory).
#[test]
fn a_replay_over_memory_max_is_capped_and_parked_events_are_counted() {
    use super::groups::{GROUP_PARKED_ENTRY_BYTES, GROUP_PENDING_ENTRY_BYTES};
    let store = MemoryGroupStore::new();
    let mut harness = harness_on(MemoryLog::new(), &store, |_| {});
    produce_jobs(&mut harness, 10);
    let member = harness.client();
    let parked = park_jobs(&mut harness, member, 10);
    harness.send(member, ClientFrame::LeaveGroup { subscription_id: 1 });
    turn(&mut harness);
    // Room for the ten parked entries and four replayed ones (a replayed entry is pending).
    let room =
        10 * GROUP_PARKED_ENTRY_BYTES + 4 * (GROUP_PENDING_ENTRY_BYTES - GROUP_PARKED_ENTRY_BYTES);
    let mut harness = restart(harness, &store, |c| c.groups.memory_max = room);
    assert_eq!(
        harness.engine.groups.memory_bytes(),
        10 * GROUP_PARKED_ENTRY_BYTES,
        "parked events are counted against groups.memory_max"
    );
    let admin_conn = harness.client();
    harness.send(admin_conn, admin("workers", GroupAdminAction::ReplayParked));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    assert_eq!(
        (info.pending, info.parked),
        (4, 6),
        "a replay of 10 parked events with room for 4: (pending, parked) in the reply"
    );
    assert!(harness.engine.groups.memory_bytes() <= room);
    // The four come first (lowest offsets), then, once acknowledged, the next replay frees more.
    let (member, again) = join_and_take(&mut harness, 10);
    assert_eq!(again, parked[..4]);
    harness.send(member, ack_frame(1, again, false));
    turn(&mut harness);
    harness.send(admin_conn, admin("workers", GroupAdminAction::ReplayParked));
    turn(&mut harness);
    let info = the_group(&harness.received(admin_conn));
    // Six parked (288 bytes) and room for five more pending entries of 144 bytes each.
    assert_eq!((info.pending, info.parked), (5, 1));
}

/// Attack round 8: a replay visits every parked event of its group (up to `parked_max`,
/// 100,000) whatever it replays, so a pipelined flood of replays of an id that is not parked
/// cost one frame unit each and held the reactor: 100,000 parked events froze a bystander's
/// produce for 28.5 s. The visit is charged to the turn's frame budget, one unit per
/// `SCAN_ENTRIES_PER_FRAME_UNIT` parked events, so the flood is spread over turns.
#[test]
fn a_flood_of_replays_over_many_parked_events_is_spread_over_turns() {
    const PARKED: usize = 4096;
    const REPLAYS: usize = 1000;
    let mut harness = harness_on(MemoryLog::new(), &MemoryGroupStore::new(), |_| {});
    produce_jobs(&mut harness, PARKED);
    let member = harness.client();
    harness.send(
        member,
        ClientFrame::JoinGroup(JoinGroup {
            max_in_flight: PARKED as u32,
            ..join_frame(join_with(1, "workers", "/jobs/**", PARKED as u32, 1))
        }),
    );
    turn(&mut harness);
    let parked = ids_of(&harness.received(member), 1);
    harness.send(member, ack_frame(1, parked.clone(), true));
    turn(&mut harness);
    assert_eq!(harness.engine.groups.groups["workers"].parked.len(), PARKED);
    let admin_conn = harness.client();
    let not_parked = EventId {
        counter: parked[PARKED - 1].counter + 1,
        ..parked[0]
    };
    for n in 0..REPLAYS {
        let action = if n % 2 == 0 {
            GroupAdminAction::ReplayRange {
                from: not_parked,
                to: not_parked,
            }
        } else {
            GroupAdminAction::ReplayIds(vec![not_parked])
        };
        harness.send(admin_conn, admin("workers", action));
    }
    turn(&mut harness);
    let answered = harness.received(admin_conn).len();
    let units = PARKED / crate::engine::SCAN_ENTRIES_PER_FRAME_UNIT + 1;
    let answered_max = harness.engine.config.frames_per_turn_total_max / units + 1;
    assert!(
        (1..=answered_max).contains(&answered),
        "{answered} replays over {PARKED} parked events were answered in one turn \
         (at most {answered_max} fit its frame budget)"
    );
    assert_eq!(harness.engine.groups.groups["workers"].parked.len(), PARKED);
}

/// Attack round 8: a group's state sums the in-flight counts of all its members, so a
/// pipelined flood of GroupsRequests for a group of 12,800 members (200 connections x 64
/// memberships) held a bystander's produce at 563 ms median for one frame unit each. The
/// members visited are charged to the turn's frame budget.
#[test]
fn a_flood_of_group_state_requests_for_a_group_of_many_members_is_spread_over_turns() {
    const CONNECTIONS: usize = 16;
    const REQUESTS: usize = 1000;
    let mut harness = harness_on(MemoryLog::new(), &MemoryGroupStore::new(), |_| {});
    for _ in 0..CONNECTIONS {
        let member = harness.client();
        for id in 1..=64 {
            harness.send(member, join(id, 1));
        }
    }
    turn(&mut harness);
    let members = harness.engine.groups.groups["workers"].members.len();
    assert_eq!(members, CONNECTIONS * 64);
    let admin_conn = harness.client();
    for _ in 0..REQUESTS {
        harness.send(admin_conn, info_request("workers"));
    }
    turn(&mut harness);
    let answered = harness.received(admin_conn).len();
    let units = members / crate::engine::SCAN_ENTRIES_PER_FRAME_UNIT + 1;
    let answered_max = harness.engine.config.frames_per_turn_total_max / units + 1;
    assert!(
        (1..=answered_max).contains(&answered),
        "{answered} GroupsRequests for a group of {members} members were answered in one \
         turn (at most {answered_max} fit its frame budget)"
    );
}
