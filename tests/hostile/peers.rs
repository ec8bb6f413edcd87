//! Hostile cases: peers. A raw connection plays a peer against the real binary: PeerHello to a
//! server that is not clustered, a PeerEvent with an absurd counter, PeerEvents from more
//! actors than the server accepts, and a PeerMembers of invented members. Each is refused or
//! bounded, and the server survives.

use flo::event::{Event, EventId, VersionVector};
use flo::protocol::{
    ClientFrame, ErrorCode, Member, PeerFrame, PeerHandshake, ServerFrame, PROTOCOL_VERSION,
};

use crate::common::{FloProcess, RawConn};
use crate::support::assert_survived;

const RSS_MAX: u64 = 64 * 1024 * 1024;

fn peer_hello(secret: &str) -> PeerFrame {
    PeerFrame::PeerHello(PeerHandshake {
        protocol_version: PROTOCOL_VERSION,
        actor_id: 2,
        advertised_addr: "127.0.0.1:9".into(),
        secret: secret.as_bytes().to_vec(),
        vector: VersionVector::new(),
        members: Vec::new(),
    })
}

fn peer_event(counter: u64, actor: u16) -> PeerFrame {
    PeerFrame::PeerEvent(Event {
        id: EventId::new(counter, actor),
        parent_id: None,
        namespace: "/injected".into(),
        timestamp_ms: 1,
        data: Vec::new(),
    })
}

/// Connects as actor 2 to a server started with `--cluster-secret s3cret`.
fn connect_peer(server: &FloProcess) -> RawConn {
    let mut conn = RawConn::connect(server.addr);
    conn.send(&peer_hello("s3cret"));
    match conn.recv_peer() {
        Some(PeerFrame::PeerWelcome(_)) => conn,
        other => panic!("expected PeerWelcome, got {other:?}"),
    }
}

/// Reads until the server's closing Error; returns its code.
fn closing_code(conn: &mut RawConn) -> ErrorCode {
    loop {
        match conn.recv_peer() {
            Some(PeerFrame::Error(error)) => return error.code,
            Some(_) => {}
            None => panic!("closed without an Error"),
        }
    }
}

fn clustered(dir: &std::path::Path) -> FloProcess {
    FloProcess::start(dir, &["--actor-id", "1", "--cluster-secret", "s3cret"])
}

#[test]
fn a_standalone_server_refuses_peer_hello() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    let mut conn = RawConn::connect(server.addr);
    conn.send(&peer_hello(""));
    assert_eq!(closing_code(&mut conn), ErrorCode::UnexpectedFrame);
    assert!(conn.recv().is_none(), "the connection is closed");
    assert_survived(&mut server, RSS_MAX);
}

#[test]
fn a_peer_event_with_an_absurd_counter_is_refused_and_ids_do_not_wrap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut conn = connect_peer(&server);
    conn.send(&peer_event(u64::MAX - 1, 2));
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    let mut client = RawConn::hello(server.addr);
    client.produce(1, "/after", b"x");
    match client.recv() {
        Some(ServerFrame::Ack(ack)) => assert_eq!(ack.first_id, EventId::new(1, 1)),
        other => panic!("expected an ack, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

#[test]
fn peer_events_of_too_many_actors_are_refused_and_status_still_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut client = RawConn::hello(server.addr);
    client.produce(1, "/own", b"x");
    assert!(matches!(client.recv(), Some(ServerFrame::Ack(_))));
    let mut conn = connect_peer(&server);
    // Actor 0 first: refused at once.
    conn.send(&peer_event(1, 0));
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    // Then one event each from actors 2.. until the server refuses a new actor (within the
    // initial credit window of 1024: the limit of 1024 actors includes actor 1).
    let mut conn = connect_peer(&server);
    let mut bytes = Vec::new();
    for actor in 2..=1025u16 {
        flo::protocol::encode(&peer_event(1, actor), &mut bytes);
    }
    conn.send_bytes(&bytes);
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    client.send(&ClientFrame::StatusRequest);
    match client.recv() {
        Some(ServerFrame::Status(status)) => assert_eq!(status.vector.len(), 1024),
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

#[test]
fn a_member_list_of_invented_members_is_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut conn = connect_peer(&server);
    let members: Vec<Member> = (0..5000u16)
        .map(|i| Member {
            actor_id: 100 + i,
            addr: format!("127.0.0.1:{}", 20000 + i),
        })
        .collect();
    conn.send(&PeerFrame::PeerMembers(members));
    let mut client = RawConn::hello(server.addr);
    client.send(&ClientFrame::StatusRequest);
    match client.recv() {
        Some(ServerFrame::Status(status)) => assert!(
            status.members.len() <= 64 + 1,
            "{} members known",
            status.members.len()
        ),
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}
