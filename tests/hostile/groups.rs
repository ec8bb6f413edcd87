//! Hostile cases: consumer group inspection and admin.
//!
//! One client creates as many groups as the server keeps, each with the longest name and glob,
//! and asks for the list: the answer must stay within one frame (or page) and the 1025th group
//! is refused. A GroupAdmin with an unknown action closes only its own connection. A million
//! range acks never read stop being read; the longest GroupsDetail lists a bounded number of
//! members. A million GroupProgress frames never read stop being read too; a million for a
//! held event are all read and cost no answers.

use flo::event::StartPosition;
use flo::protocol::{
    kind, ClientFrame, ErrorCode, GroupAckRange, GroupAdmin, GroupAdminAction, GroupSettings,
    GroupsRequest, JoinGroup, ServerFrame,
};

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived;

/// The server's defaults: `groups_max`, the longest group name and glob.
const GROUPS_MAX: u32 = 1024;
const NAME_LENGTH_MAX: usize = 255;
const GLOB_LENGTH_MAX: usize = 1024;

fn join(subscription_id: u32, n: u32) -> ClientFrame {
    ClientFrame::JoinGroup(JoinGroup {
        subscription_id,
        group: format!("{n:05}{}", "g".repeat(NAME_LENGTH_MAX - 5)),
        glob: format!("/{}", "a".repeat(GLOB_LENGTH_MAX - 1)),
        start: StartPosition::Beginning,
        credit: 1,
        ack_timeout_ms: 0,
        max_deliveries: 0,
        max_in_flight: 0,
    })
}

#[test]
fn the_most_groups_with_the_longest_names_are_listed_in_bounded_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    for n in 0..=GROUPS_MAX {
        conn.send(&join(1, n));
        if n < GROUPS_MAX {
            conn.send(&ClientFrame::LeaveGroup { subscription_id: 1 });
        }
    }
    let mut ended = 0;
    loop {
        match conn.recv() {
            Some(ServerFrame::End { .. }) => ended += 1,
            Some(ServerFrame::CaughtUp { .. }) => {}
            Some(ServerFrame::Error(error)) => {
                assert_eq!(error.code, ErrorCode::TooManyGroups, "{error:?}");
                break;
            }
            other => panic!("expected End, CaughtUp or TooManyGroups, got {other:?}"),
        }
    }
    assert_eq!(ended, GROUPS_MAX);
    let mut listed = 0u32;
    let mut after = String::new();
    for _page in 0..GROUPS_MAX {
        conn.send(&ClientFrame::GroupsRequest(GroupsRequest {
            group: String::new(),
            after: after.clone(),
        }));
        let reply = match conn.recv() {
            Some(ServerFrame::Groups(reply)) => reply,
            other => panic!("expected Groups, got {other:?}"),
        };
        assert!(!reply.groups.is_empty(), "a page lists at least one group");
        listed += reply.groups.len() as u32;
        after = reply.groups.last().expect("not empty").name.clone();
        if !reply.more {
            break;
        }
    }
    assert_eq!(listed, GROUPS_MAX);
    // An unknown GroupAdmin action is a malformed frame: this connection closes, no other.
    let mut bad = RawConn::hello(server.addr);
    let body = [0u8, 1, b'x', 9];
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(kind::GROUP_ADMIN);
    frame.extend_from_slice(&body);
    bad.send_bytes(&frame);
    match bad.recv() {
        Some(ServerFrame::Error(error)) => assert_eq!(error.code, ErrorCode::MalformedFrame),
        other => panic!("expected MalformedFrame, got {other:?}"),
    }
    assert!(bad.recv().is_none(), "the malformed connection is closed");
    conn.send(&ClientFrame::Ping { token: 5 });
    assert!(matches!(conn.recv(), Some(ServerFrame::Pong { token: 5 })));
    // Measured at 224bd82: 66.4-66.5 MB after this case (a fresh server 5 MB; about 60 KB a
    // group, mostly the compiled 1 KiB glob), so the old bound of 64 MiB failed now and then
    // by a few hundred KB. The bound is what 1024 groups of the longest name and glob may
    // cost, with room for the allocator's noise.
    assert_survived(&mut server, 96 * 1024 * 1024);
}

/// attack2 finding 4: one flipped bit in the middle of `groups.journal` (valid records after
/// it) is not a torn tail. A plain start refuses, naming the journal and `--repair`; a
/// `--repair` start keeps every other record, so the groups redeliver at most the events of
/// the one damaged record instead of every event acknowledged after it.
#[test]
fn a_flipped_bit_in_the_group_journal_is_refused_then_repaired_without_losing_other_acks() {
    use std::process::{Command, Stdio};
    const EVENTS: u64 = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let group_join = |group: &str| {
        ClientFrame::JoinGroup(JoinGroup {
            subscription_id: 1,
            group: group.to_string(),
            glob: "/jobs/**".to_string(),
            start: StartPosition::Beginning,
            credit: 1000,
            ack_timeout_ms: 0,
            max_deliveries: 0,
            max_in_flight: 0,
        })
    };
    let delivered = |conn: &mut RawConn, count: u64| {
        let mut ids = Vec::new();
        while (ids.len() as u64) < count {
            match conn.recv() {
                Some(ServerFrame::Event { event, .. }) => ids.push(event.id),
                Some(ServerFrame::CaughtUp { .. }) if count == u64::MAX => break,
                Some(ServerFrame::CaughtUp { .. }) => {}
                other => panic!("expected events, got {other:?}"),
            }
        }
        ids
    };
    let server = FloProcess::start(dir.path(), &[]);
    let mut producer = RawConn::hello(server.addr);
    for n in 0..EVENTS {
        producer.produce(n, &format!("/jobs/{n}"), b"x");
    }
    for _ in 0..EVENTS {
        assert!(matches!(producer.recv(), Some(ServerFrame::Ack(_))));
    }
    for group in ["a", "b"] {
        let mut member = RawConn::hello(server.addr);
        member.send(&group_join(group));
        for (token, id) in delivered(&mut member, EVENTS).into_iter().enumerate() {
            // One ack per turn: one Ack record each in the journal.
            member.send(&ClientFrame::GroupAck(flo::protocol::GroupAck {
                subscription_id: 1,
                delay_ms: 0,
                ids: vec![id],
            }));
            member.send(&ClientFrame::Ping {
                token: token as u64,
            });
            loop {
                match member.recv() {
                    Some(ServerFrame::Pong { .. }) => break,
                    Some(ServerFrame::CaughtUp { .. }) => {}
                    other => panic!("expected Pong, got {other:?}"),
                }
            }
        }
    }
    assert!(server.terminate().success());
    let journal = dir.path().join("groups.journal");
    let mut bytes = std::fs::read(&journal).expect("read journal");
    // The last byte (an offset) of the middle Ack record (kind 3, 0x83 when it names its group
    // by number; records are `u32 size | u32 CRC | body`, docs/consumers.md).
    let mut acks = Vec::new();
    let mut at = 0;
    while at + 8 < bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if bytes[at + 8] & 0x7f == 3 {
            acks.push(at + 8 + size - 1);
        }
        at += 8 + size;
    }
    assert!(
        acks.len() >= EVENTS as usize,
        "one Ack record per ack: {}",
        acks.len()
    );
    bytes[acks[acks.len() / 2]] ^= 0x04;
    std::fs::write(&journal, &bytes).expect("flip a bit");
    let child = Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("-d")
        .arg(dir.path())
        .args(["-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flo");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    let Ok(output) = receiver.recv_timeout(std::time::Duration::from_secs(20)) else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("flo started on a group journal damaged in the middle (it should refuse)");
    };
    let output = output.expect("wait for flo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("groups.journal") && stderr.contains("--repair"),
        "the refusal names the journal and --repair: {stderr}"
    );
    assert_eq!(
        std::fs::read(&journal).expect("read"),
        bytes,
        "nothing changed"
    );
    let mut server = FloProcess::start(dir.path(), &["--repair"]);
    let mut redelivered = 0;
    for group in ["a", "b"] {
        let mut member = RawConn::hello(server.addr);
        member.send(&group_join(group));
        redelivered += delivered(&mut member, u64::MAX).len();
    }
    assert!(
        redelivered <= 1,
        "{redelivered} acknowledged events delivered again; only the damaged record's may be"
    );
    let quarantined = std::fs::read_dir(dir.path()).expect("list").any(|entry| {
        let name = entry.expect("entry").file_name();
        name.to_string_lossy()
            .starts_with("groups.journal.quarantine-")
    });
    assert!(quarantined, "--repair kept a copy of the damaged journal");
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// Writes `frame` over and over without reading, until `bytes_max` bytes are written or the
/// server has stopped reading (a write blocks for a second). Returns the bytes written.
fn send_without_reading(conn: &mut RawConn, frame: &ClientFrame, bytes_max: usize) -> usize {
    use std::io::{ErrorKind, Write};
    let mut one = Vec::new();
    flo::protocol::encode(frame, &mut one);
    let chunk = one.repeat(64 * 1024 / one.len());
    conn.stream
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("set write timeout");
    let mut written = 0;
    while written < bytes_max {
        match conn.stream.write(&chunk) {
            Ok(count) => written += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break
            }
            Err(error) => panic!("write failed after {written} bytes: {error}"),
        }
    }
    written
}

/// A million GroupAckRange frames (25 MB) whose ends are not in flight, never read: each is
/// answered NotPending, so the replies pile up until the server stops reading the connection;
/// it stays small and answers everyone else.
#[test]
fn a_million_range_acks_never_read_stop_being_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    conn.send(&join(1, 1));
    let id = flo::event::EventId::new(7, 1);
    let range = ClientFrame::GroupAckRange(GroupAckRange {
        subscription_id: 1,
        first: id,
        last: id,
    });
    let bytes_max = 1_000_000 * 25;
    let written = send_without_reading(&mut conn, &range, bytes_max);
    assert!(
        written < bytes_max / 4,
        "the server read {written} bytes of range acks from a client that never reads"
    );
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// The longest GroupsDetail: a group created (GroupAdmin create) with the longest name and
/// glob and more members than one reply lists; the reply lists `members_listed_max` (100) of
/// them and fits a frame. Creates past the limits are refused, the connection stays open.
#[test]
fn the_longest_group_detail_lists_a_bounded_number_of_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut operator = RawConn::hello(server.addr);
    let name = format!("{:05}{}", 0, "g".repeat(NAME_LENGTH_MAX - 5));
    let glob = format!("/{}", "a".repeat(GLOB_LENGTH_MAX - 1));
    let create = |glob: &str, max_in_flight| {
        ClientFrame::GroupAdmin(GroupAdmin {
            group: name.clone(),
            action: GroupAdminAction::Create {
                glob: glob.to_string(),
                start: StartPosition::Beginning,
                settings: GroupSettings {
                    ack_timeout_ms: 0,
                    max_deliveries: 0,
                    max_in_flight,
                },
            },
        })
    };
    operator.send(&create(&glob, 100_001));
    match operator.recv() {
        Some(ServerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::InvalidGroupSettings, "{error:?}")
        }
        other => panic!("expected InvalidGroupSettings, got {other:?}"),
    }
    operator.send(&create(&format!("{glob}a"), 0));
    match operator.recv() {
        Some(ServerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::InvalidGlob, "{error:?}")
        }
        other => panic!("expected InvalidGlob, got {other:?}"),
    }
    operator.send(&create(&glob, 0));
    match operator.recv() {
        Some(ServerFrame::GroupsDetail(reply)) => assert_eq!(reply.groups[0].info.name, name),
        other => panic!("expected GroupsDetail, got {other:?}"),
    }
    let members: Vec<RawConn> = (0..101)
        .map(|_| {
            let mut member = RawConn::hello(server.addr);
            member.send(&join(1, 0));
            member.send(&ClientFrame::Ping { token: 1 });
            loop {
                match member.recv() {
                    Some(ServerFrame::Pong { .. }) => break,
                    Some(ServerFrame::CaughtUp { .. }) => {}
                    other => panic!("expected CaughtUp or Pong, got {other:?}"),
                }
            }
            member
        })
        .collect();
    operator.send(&ClientFrame::GroupsDetailRequest(GroupsRequest {
        group: name.clone(),
        after: String::new(),
    }));
    match operator.recv() {
        Some(ServerFrame::GroupsDetail(reply)) => {
            let group = &reply.groups[0];
            assert_eq!(group.info.members, 101);
            assert_eq!(group.members.len(), 100, "members_listed_max");
        }
        other => panic!("expected GroupsDetail, got {other:?}"),
    }
    drop(members);
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// The longest range: a member holding 70,000 events (more than the 65,536 acks one turn may
/// settle) acknowledges them all with one 25-byte GroupAckRange and sends a Ping. The range
/// is finished over more than one turn, the Pong comes only after it, and then nothing is
/// pending; another connection is answered meanwhile.
#[test]
fn a_range_over_more_than_one_turn_of_acks_is_finished_before_the_next_frame() {
    const HELD: usize = 70_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &["--fsync", "interval:1000"]);
    crate::common::produce_jobs(&server, 0..HELD);
    let mut member = RawConn::hello(server.addr);
    member.send(&ClientFrame::GroupAdmin(GroupAdmin {
        group: "wide".into(),
        action: GroupAdminAction::Create {
            glob: "/jobs/**".into(),
            start: StartPosition::Beginning,
            settings: GroupSettings {
                ack_timeout_ms: 600_000,
                max_deliveries: 0,
                max_in_flight: HELD as u32,
            },
        },
    }));
    assert!(matches!(member.recv(), Some(ServerFrame::GroupsDetail(_))));
    member.send(&ClientFrame::JoinGroup(JoinGroup {
        subscription_id: 1,
        group: "wide".into(),
        glob: "/jobs/**".into(),
        start: StartPosition::Beginning,
        credit: HELD as u32,
        ack_timeout_ms: 0,
        max_deliveries: 0,
        max_in_flight: 0,
    }));
    let mut ids = Vec::with_capacity(HELD);
    while ids.len() < HELD {
        match member.recv() {
            Some(ServerFrame::Event { event, .. }) => ids.push(event.id),
            Some(ServerFrame::CaughtUp { .. }) => {}
            other => panic!("expected Event, got {other:?}"),
        }
    }
    member.send(&ClientFrame::GroupAckRange(GroupAckRange {
        subscription_id: 1,
        first: ids[0],
        last: ids[HELD - 1],
    }));
    member.send(&ClientFrame::Ping { token: 77 });
    let mut other = RawConn::hello(server.addr);
    other.send(&ClientFrame::Ping { token: 1 });
    assert!(matches!(other.recv(), Some(ServerFrame::Pong { token: 1 })));
    loop {
        match member.recv() {
            Some(ServerFrame::Pong { token: 77 }) => break,
            Some(ServerFrame::CaughtUp { .. }) => {}
            other => panic!("expected Pong, got {other:?}"),
        }
    }
    other.send(&ClientFrame::GroupsRequest(GroupsRequest {
        group: "wide".into(),
        after: String::new(),
    }));
    match other.recv() {
        Some(ServerFrame::Groups(reply)) => {
            let group = &reply.groups[0];
            assert_eq!((group.pending, group.in_flight), (0, 0), "{group:?}");
        }
        other => panic!("expected Groups, got {other:?}"),
    }
    assert_survived(&mut server, 256 * 1024 * 1024);
}

/// The lines a rate-limited log line says it held back since the previous one ("(N more like
/// it since the last such message)"), summed over `lines`.
fn held_back_total(lines: &[String]) -> u64 {
    let marker = " more like it since the last such message)";
    let held_back = |line: &String| {
        let before = &line[..line.find(marker)?];
        before[before.rfind('(')? + 1..].parse::<u64>().ok()
    };
    lines.iter().filter_map(held_back).sum()
}

/// Attack round 5, finding 1: a member that nacks every event of a group with
/// `max_deliveries` 1 parks one event per nack, and each park wrote a warning: one consumer
/// made the server write 14 MB of log a second. The warning is written at most once a second
/// per group (the lines held back are counted in the next one). The once-a-second rule is
/// checked with a fake clock by the engine's `LogLimit` tests; here, without timing the run,
/// that the parks' lines are a small fraction of the parks (one a park before: only a run of
/// over 200 s, a hung one, could reach a tenth at one a second) and that the counts of lines
/// held back that the lines report never exceed the parks.
#[test]
fn a_member_parking_every_event_does_not_flood_the_servers_log() {
    const EVENTS: usize = 2_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    crate::common::produce_jobs(&server, 0..EVENTS);
    let mut member_client = crate::common::client(&server);
    let mut member = member_client
        .join_group("poison")
        .glob("/jobs/**")
        .start(StartPosition::Beginning)
        .credit(256)
        .max_deliveries(1)
        .join()
        .expect("join");
    let mut nacked = 0;
    while nacked < EVENTS {
        match member.next_delivery().expect("delivery") {
            Some(flo::client::GroupDelivery::Event(event)) => {
                member
                    .nack(&[event.id], std::time::Duration::ZERO)
                    .expect("nack");
                nacked += 1;
            }
            Some(_) => {}
            None => panic!("the membership ended after {nacked} events"),
        }
    }
    member.flush().expect("flush");
    let mut admin = crate::common::client(&server);
    crate::common::wait_until("every event is parked", || {
        admin.group_info("poison").expect("group info").parked == EVENTS as u64
    });
    let warnings: Vec<String> = server
        .log_lines
        .try_iter()
        .filter(|line| line.contains("parked after"))
        .collect();
    let (lines, held_back) = (warnings.len() as u64, held_back_total(&warnings));
    assert!(
        lines <= EVENTS as u64 / 10 && lines + held_back <= EVENTS as u64,
        "{lines} 'parked after' lines reporting {held_back} more held back for {EVENTS} \
         parked events"
    );
    drop(member);
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// Attack round 8: every GroupAdmin change wrote an info line (created, deleted, settings
/// now, parked events replayed, reset to offset), so one client pipelining GroupAdmin frames
/// made the server write 30 to 51 MB of log a second (a create and delete of a group with a
/// 255-byte name: 306 MB in 6 s). Each kind of line is written at most once a second per
/// group (created and deleted once a second for all groups), the lines held back counted in
/// the next one. As above, the run is not timed: the lines are a small fraction of the
/// frames (one a frame before; five kinds at one a second reach a fifth only in a run of
/// over 100 s) and the counts held back they report never exceed the frames.
#[test]
fn a_flood_of_group_admin_changes_does_not_flood_the_servers_log() {
    const ROUNDS: u32 = 500;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut admin = RawConn::hello(server.addr);
    let create = |name: &str| {
        ClientFrame::GroupAdmin(GroupAdmin {
            group: name.to_string(),
            action: GroupAdminAction::Create {
                glob: "/admin/**".to_string(),
                start: StartPosition::End,
                settings: GroupSettings::default(),
            },
        })
    };
    let action = |action: GroupAdminAction| {
        ClientFrame::GroupAdmin(GroupAdmin {
            group: "kept".to_string(),
            action,
        })
    };
    admin.send(&create("kept"));
    let mut frames = 1;
    for round in 0..ROUNDS {
        let settings = GroupSettings {
            ack_timeout_ms: 1000 + round % 2,
            max_deliveries: 3,
            max_in_flight: 10,
        };
        admin.send(&action(GroupAdminAction::UpdateSettings(settings)));
        admin.send(&action(GroupAdminAction::ReplayParked));
        admin.send(&action(GroupAdminAction::Reset(StartPosition::End)));
        admin.send(&create("cycled"));
        admin.send(&ClientFrame::GroupAdmin(GroupAdmin {
            group: "cycled".to_string(),
            action: GroupAdminAction::Delete,
        }));
        frames += 5;
    }
    for _ in 0..frames {
        match admin.recv() {
            Some(ServerFrame::Groups(_) | ServerFrame::GroupsDetail(_)) => {}
            other => panic!("expected Groups or GroupsDetail, got {other:?}"),
        }
    }
    let group_lines: Vec<String> = server
        .log_lines
        .try_iter()
        .filter(|line| line.contains("flo::engine::groups"))
        .collect();
    let (lines, held_back) = (group_lines.len() as u64, held_back_total(&group_lines));
    assert!(
        lines <= frames / 5 && lines + held_back <= frames,
        "{lines} group log lines reporting {held_back} more held back for {frames} \
         GroupAdmin frames"
    );
    assert_survived(&mut server, 64 * 1024 * 1024);
}

fn group_progress(subscription_id: u32, id: flo::event::EventId) -> ClientFrame {
    ClientFrame::GroupProgress(flo::protocol::GroupAck {
        subscription_id,
        delay_ms: 0,
        ids: vec![id],
    })
}

/// A million GroupProgress frames (17 MB) naming an event that is not in flight, never read:
/// each is answered NotPending (one per frame, as GroupAck), so the replies pile up until the
/// server stops reading the connection; it stays small and answers everyone else.
#[test]
fn a_million_group_progress_frames_never_read_stop_being_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    conn.send(&join(1, 1));
    let progress = group_progress(1, flo::event::EventId::new(7, 1));
    let bytes_max = 1_000_000 * 17;
    let written = send_without_reading(&mut conn, &progress, bytes_max);
    // The same bound as the range acks' (a quarter of their 25 MB): the output limit and the
    // sockets' buffers, whatever the frame's size.
    assert!(
        written < 25_000_000 / 4,
        "the server read {written} bytes of GroupProgress from a client that never reads"
    );
    assert_survived(&mut server, 64 * 1024 * 1024);
}

/// A million GroupProgress frames for an event the member holds: no answers at all, so the
/// server reads them all; the event stays with the member (no redelivery, no error), the
/// Ping after them is answered, and the server stays small.
#[test]
fn a_million_group_progress_frames_for_a_held_event_cost_no_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::hello(server.addr);
    conn.produce(1, "/jobs/1", b"x");
    conn.send(&ClientFrame::JoinGroup(JoinGroup {
        subscription_id: 1,
        group: "workers".into(),
        glob: "/jobs/**".into(),
        start: StartPosition::Beginning,
        credit: 10,
        ack_timeout_ms: 0,
        max_deliveries: 0,
        max_in_flight: 0,
    }));
    let held = loop {
        match conn.recv() {
            Some(ServerFrame::Event { event, .. }) => break event.id,
            Some(ServerFrame::Ack(_) | ServerFrame::CaughtUp { .. }) => {}
            other => panic!("expected the event, got {other:?}"),
        }
    };
    let bytes_max = 1_000_000 * 17;
    let written = send_without_reading(&mut conn, &group_progress(1, held), bytes_max);
    assert!(
        written >= bytes_max,
        "the server stopped reading at {written} bytes"
    );
    conn.stream
        .set_write_timeout(None)
        .expect("set write timeout");
    conn.send(&ClientFrame::Ping { token: 99 });
    loop {
        match conn.recv() {
            Some(ServerFrame::Pong { token: 99 }) => break,
            Some(ServerFrame::CaughtUp { .. }) => {}
            other => panic!("expected only the Pong, got {other:?}"),
        }
    }
    assert_survived(&mut server, 64 * 1024 * 1024);
}
