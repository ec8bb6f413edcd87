//! Hostile cases: consumer group inspection and admin.
//!
//! One client creates as many groups as the server keeps, each with the longest name and glob,
//! and asks for the list: the answer must stay within one frame (or page) and the 1025th group
//! is refused. A GroupAdmin with an unknown action closes only its own connection.

use flo::event::StartPosition;
use flo::protocol::{kind, ClientFrame, ErrorCode, GroupsRequest, JoinGroup, ServerFrame};

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
    assert_survived(&mut server, 64 * 1024 * 1024);
}
