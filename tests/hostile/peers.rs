//! Hostile cases: peers. A raw connection plays a peer against the real binary: PeerHello to a
//! server that is not clustered, a dialer that does not hold the cluster secret, a recorded
//! handshake replayed, a PeerEvent with an absurd counter, PeerEvents from more actors than the
//! server accepts, of an actor no member declared, a PeerMembers of invented members, credit
//! beyond the window and an event below the peer's own clock promise. Each is refused or
//! bounded, and the server survives. And a node that would accept peers on a non-loopback
//! address with no (or an empty or short) cluster secret refuses to start.

use std::time::{Duration, Instant};

use flo::event::{ActorId, Event, EventId, VersionVector};
use flo::protocol::{
    ClientFrame, ErrorCode, Member, PeerFrame, PeerHandshake, PeerProof, PeerRole, PeerTranscript,
    ServerFrame, PROTOCOL_VERSION,
};

use crate::common::{wait_until, FloProcess, RawConn};
use crate::metrics::{metrics_addr, sample, scrape};
use crate::support::assert_survived;

const RSS_MAX: u64 = 64 * 1024 * 1024;

/// The dialer's nonce in these tests: fixed, so a recording can be replayed byte for byte.
const NONCE: [u8; 32] = [0x5a; 32];

fn peer_hello() -> PeerFrame {
    PeerFrame::PeerHello(PeerHandshake {
        protocol_version: PROTOCOL_VERSION,
        actor_id: 2,
        advertised_addr: "127.0.0.1:9".into(),
        nonce: NONCE,
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

/// Sends PeerHello as actor 2 and reads the acceptor's PeerWelcome.
fn hello(server: &FloProcess) -> (RawConn, PeerHandshake) {
    let mut conn = RawConn::connect(server.addr);
    conn.send(&peer_hello());
    match conn.recv_peer() {
        Some(PeerFrame::PeerWelcome(welcome)) => (conn, welcome),
        other => panic!("expected PeerWelcome, got {other:?}"),
    }
}

/// Actor 2's PeerProof with `secret`, answering `welcome`, declaring `vector`.
fn proof(secret: &str, welcome: &PeerHandshake, vector: VersionVector) -> PeerFrame {
    let transcript = PeerTranscript {
        dialer_nonce: NONCE,
        acceptor_nonce: welcome.nonce,
        dialer_actor: 2,
        acceptor_actor: welcome.actor_id,
        channel_binding: None,
    };
    PeerFrame::PeerProof(PeerProof {
        proof: transcript.proof(secret.as_bytes(), PeerRole::Dialer),
        vector,
        members: Vec::new(),
    })
}

/// Connects as actor 2 to a server started with `--cluster-secret s3cret`, declaring `vector`
/// (the actors whose events it holds, so it may relay them).
fn connect_peer_holding(server: &FloProcess, vector: VersionVector) -> RawConn {
    let (mut conn, welcome) = hello(server);
    conn.send(&proof("s3cret", &welcome, vector));
    match conn.recv_peer() {
        Some(PeerFrame::PeerAccept(_)) => conn,
        other => panic!("expected PeerAccept, got {other:?}"),
    }
}

fn connect_peer(server: &FloProcess) -> RawConn {
    connect_peer_holding(server, VersionVector::new())
}

/// True when the server logs a line containing every one of `needles` within 30 s (a hang
/// guard: every caller expects the line).
fn logged(server: &FloProcess, needles: &[&str]) -> bool {
    let matches = |line: &str| needles.iter().all(|n| line.contains(n));
    if server.early_lines.iter().any(|line| matches(line)) {
        return true;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = server.log_lines.recv_timeout(Duration::from_millis(100)) {
            if matches(&line) {
                return true;
            }
        }
    }
    false
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
    conn.send(&peer_hello());
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
    // initial credit window of 1024: the limit of 1024 actors includes actor 1). The peer
    // declares them all in its handshake vector, so the per-peer actor rule lets them through
    // to the actor limit.
    let declared: VersionVector = (2..=1025u16).map(|a| (ActorId(a), 1)).collect();
    let mut conn = connect_peer_holding(&server, declared);
    let mut bytes = Vec::new();
    for actor in 2..=1025u16 {
        flo::protocol::encode(&peer_event(1, actor), &mut bytes);
    }
    conn.send_bytes(&bytes);
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    client.send(&ClientFrame::StatusRequest { hold: false });
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
    client.send(&ClientFrame::StatusRequest { hold: false });
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

/// Issue 15: a dialer without the cluster secret is refused with AuthFailed, logged with its
/// address, and learns nothing before that: PeerWelcome carries no vector and no members, and
/// no PeerAccept (the acceptor's proof) is sent.
#[test]
fn a_dialer_with_a_wrong_secret_is_refused_and_learns_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut client = RawConn::hello(server.addr);
    client.produce(1, "/private", b"x");
    assert!(matches!(client.recv(), Some(ServerFrame::Ack(_))));
    let (mut conn, welcome) = hello(&server);
    // PeerWelcome is the version, actor id, address and nonce: no vector, no member list.
    let mut bytes = Vec::new();
    flo::protocol::encode(&PeerFrame::PeerWelcome(welcome.clone()), &mut bytes);
    assert_eq!(
        bytes.len(),
        4 + 1 + 2 + 2 + 2 + welcome.advertised_addr.len() + 32
    );
    conn.send(&proof("guess", &welcome, VersionVector::new()));
    match conn.recv_peer() {
        Some(PeerFrame::Error(error)) => assert_eq!(error.code, ErrorCode::AuthFailed),
        other => panic!("expected AuthFailed and nothing before it, got {other:?}"),
    }
    assert!(conn.recv_peer().is_none(), "the connection is closed");
    assert!(
        logged(&server, &["refusing peer 2", "127.0.0.1:", "does not hold"]),
        "the refusal is logged with the dialer's address"
    );
    client.send(&ClientFrame::StatusRequest { hold: false });
    match client.recv() {
        Some(ServerFrame::Status(status)) => {
            assert!(status.members.is_empty(), "{:?}", status.members);
            assert_eq!(status.event_count, 1, "nothing was injected");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

/// Issue 15: the cluster secret travelled in cleartext in PeerHello, so one recorded
/// handshake let anyone join. Now the bytes a real dialer sent (PeerHello and PeerProof with
/// the right secret), replayed on a new connection, fail against the acceptor's fresh nonce.
#[test]
fn a_replayed_recorded_handshake_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let (mut first, welcome) = hello(&server);
    let mut recorded = Vec::new();
    flo::protocol::encode(&peer_hello(), &mut recorded);
    let proof = proof("s3cret", &welcome, VersionVector::new());
    flo::protocol::encode(&proof, &mut recorded);
    assert!(
        !recorded.windows(6).any(|w| w == b"s3cret"),
        "the secret is not in the recording"
    );
    first.send(&proof);
    assert!(
        matches!(first.recv_peer(), Some(PeerFrame::PeerAccept(_))),
        "the original handshake succeeds"
    );
    drop(first);
    let mut replay = RawConn::connect(server.addr);
    replay.send_bytes(&recorded);
    assert_eq!(closing_code(&mut replay), ErrorCode::AuthFailed);
    assert!(replay.recv_peer().is_none(), "the connection is closed");
    let mut client = RawConn::hello(server.addr);
    client.send(&ClientFrame::StatusRequest { hold: false });
    match client.recv() {
        Some(ServerFrame::Status(status)) => assert!(
            status
                .members
                .iter()
                .all(|m| m.state != flo::protocol::MemberState::Connected),
            "the replayer is not connected: {:?}",
            status.members
        ),
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

/// Issue 15: a peer may only send events of actors some member declared; an invented actor
/// is refused with ActorNotAllowed and nothing of it is stored.
#[test]
fn a_peer_event_of_an_undeclared_actor_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut conn = connect_peer(&server);
    conn.send(&peer_event(1, 2));
    conn.send(&peer_event(1, 4242));
    assert_eq!(closing_code(&mut conn), ErrorCode::ActorNotAllowed);
    let mut client = RawConn::hello(server.addr);
    client.send(&ClientFrame::StatusRequest { hold: false });
    match client.recv() {
        Some(ServerFrame::Status(status)) => {
            assert_eq!(status.vector.get(ActorId(4242)), 0, "nothing of actor 4242");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

/// Issue 15: failed peer proofs are logged with the dialer's address and limited per source
/// address. Five wrong proofs from 127.0.0.1 (the default `peer_proof_failures_max`), then a
/// sixth PeerHello, even one that would prove the right secret, is refused with AuthFailed
/// before any nonce is sent; clients are not affected, and the server survives.
#[test]
fn failed_peer_proofs_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    for _ in 0..5 {
        let (mut conn, welcome) = hello(&server);
        conn.send(&proof("guess", &welcome, VersionVector::new()));
        assert_eq!(closing_code(&mut conn), ErrorCode::AuthFailed);
    }
    assert!(
        logged(
            &server,
            &[
                "does not hold",
                "failed proof 5 of at most 5 from 127.0.0.1"
            ]
        ),
        "each failed proof is logged with the address and its count"
    );
    let mut refused = RawConn::connect(server.addr);
    refused.send(&peer_hello());
    match refused.recv_peer() {
        Some(PeerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::AuthFailed);
            assert!(
                error.message.contains("too many failed peer proofs"),
                "{}",
                error.message
            );
        }
        other => panic!("expected AuthFailed before any PeerWelcome, got {other:?}"),
    }
    assert!(refused.recv_peer().is_none(), "the connection is closed");
    let mut client = RawConn::hello(server.addr);
    client.produce(1, "/still/served", b"x");
    assert!(matches!(client.recv(), Some(ServerFrame::Ack(_))));
    assert_survived(&mut server, RSS_MAX);
}

/// Issue 15, the peer handshake fuzz against the real binary: 300 connections, each sending a
/// seeded random mutation of a handshake (PeerHello, or PeerHello then a PeerProof without the
/// secret, or a post-handshake frame out of turn) with bits flipped, cut short, or its length
/// field at 0, at the handshake limit or over it, then closing. The server answers each with at
/// most a PeerWelcome and an Error, connects no peer, stores nothing, and survives (the engine
/// fuzz in src/engine/tests/peers_fuzz.rs runs a million such inputs without sockets).
#[test]
fn mutated_peer_handshakes_from_real_sockets_connect_nothing() {
    let seed = 0x0015_50C3;
    let mut rng = crate::common::SeededRng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(
        dir.path(),
        &[
            "--actor-id",
            "1",
            "--cluster-secret",
            "s3cret",
            "--handshake-timeout",
            "2s",
        ],
    );
    for round in 0..300 {
        let mut bytes = Vec::new();
        flo::protocol::encode(&peer_hello(), &mut bytes);
        match rng.below(3) {
            0 => {}
            1 => flo::protocol::encode(
                &PeerFrame::PeerProof(PeerProof {
                    proof: [rng.next_u64() as u8; 32],
                    vector: VersionVector::new(),
                    members: Vec::new(),
                }),
                &mut bytes,
            ),
            _ => flo::protocol::encode(&peer_event(1 + rng.below(100), 2), &mut bytes),
        }
        match rng.below(4) {
            0 => {
                for _ in 0..1 + rng.below(3) {
                    let index = rng.index(bytes.len());
                    bytes[index] ^= 1 << rng.below(8);
                }
            }
            1 => bytes.truncate(1 + rng.index(bytes.len() - 1)),
            2 => {
                let length: u32 = [0, 256 * 1024 - 4, 256 * 1024 - 3, u32::MAX][rng.index(4)];
                bytes[..4].copy_from_slice(&length.to_be_bytes());
                bytes.truncate(64);
            }
            _ => {}
        }
        let mut conn = RawConn::connect(server.addr);
        conn.send_bytes(&bytes);
        // Closing our side now: a partial frame is dropped with the connection; a whole
        // handshake frame still gets its answer, which is read when it comes.
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        let mut answers = 0;
        while let Some(frame) = conn.recv_peer() {
            answers += 1;
            assert!(
                matches!(frame, PeerFrame::PeerWelcome(_) | PeerFrame::Error(_)),
                "seed {seed:#x}, round {round}: answered {frame:?}"
            );
        }
        assert!(
            answers <= 2,
            "seed {seed:#x}, round {round}: {answers} frames"
        );
    }
    let mut client = RawConn::hello(server.addr);
    client.send(&ClientFrame::StatusRequest { hold: false });
    match client.recv() {
        Some(ServerFrame::Status(status)) => {
            assert!(status.members.is_empty(), "{:?}", status.members);
            assert_eq!(status.event_count, 0, "nothing was injected");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

/// Waits until the metrics endpoint shows `flo_peer_violations_total` at `count` (a scrape
/// within a second of the last one shows the same figures).
fn wait_for_violations(server: &FloProcess, count: f64) {
    let addr = metrics_addr(server);
    wait_until("flo_peer_violations_total is counted", || {
        sample(&scrape(addr), "flo_peer_violations_total") == Some(count)
    });
}

/// Session 14 item 1: a peer that grants credit beyond the PeerEvents it was sent, or a first
/// window over the protocol's limit, would make the server queue and send without bound: the
/// connection is closed with MalformedFrame and counted in `flo_peer_violations_total`.
#[test]
fn peer_credit_beyond_the_window_closes_the_peer_and_is_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(
        dir.path(),
        &[
            "--actor-id",
            "1",
            "--cluster-secret",
            "s3cret",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    // A window of 2, then one more credit with nothing sent.
    let mut conn = connect_peer(&server);
    conn.send(&PeerFrame::PeerCredit { count: 2 });
    conn.send(&PeerFrame::PeerCredit { count: 1 });
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    // A first window over 65536.
    let mut conn = connect_peer(&server);
    conn.send(&PeerFrame::PeerCredit {
        count: flo::protocol::PEER_CREDIT_WINDOW_MAX + 1,
    });
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    assert!(logged(&server, &["PeerCredit window 65537 is over"]));
    wait_for_violations(&server, 2.0);
    assert_survived(&mut server, RSS_MAX);
}

/// Session 14 item 3: a peer promised (PeerClock 10) that every event of its own up to 10 was
/// sent; an event of its own at 7 after that is refused, the connection closed with
/// MalformedFrame, nothing of it stored, and the violation counted.
#[test]
fn an_event_below_the_peers_clock_promise_closes_the_peer_and_is_not_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(
        dir.path(),
        &[
            "--actor-id",
            "1",
            "--cluster-secret",
            "s3cret",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let mut conn = connect_peer(&server);
    conn.send(&peer_event(5, 2));
    conn.send(&PeerFrame::PeerClock { counter: 10 });
    conn.send(&peer_event(7, 2));
    assert_eq!(closing_code(&mut conn), ErrorCode::MalformedFrame);
    let mut client = RawConn::hello(server.addr);
    client.send(&ClientFrame::StatusRequest { hold: false });
    match client.recv() {
        Some(ServerFrame::Status(status)) => {
            assert_eq!(status.vector.get(ActorId(2)), 5, "7 is not stored");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    wait_for_violations(&server, 1.0);
    assert_survived(&mut server, RSS_MAX);
}

/// Attack round 18: a second node with the same actor id as a connected member (a copied
/// `--actor-id`), from another address, completed its handshake and only then lost to the
/// member by the duplicate rule (DuplicatePeerConnection, logged at debug level), so it
/// redialed about 13 times a second without end while both nodes acknowledged different
/// events under the same ids. It is refused before PeerAccept with `ActorIdConflict`, logged
/// as an error naming both addresses, and the member's connection goes on.
#[test]
fn a_second_node_with_a_connected_members_actor_id_is_refused_as_a_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = clustered(dir.path());
    let mut member = connect_peer(&server);
    let mut copy = RawConn::connect(server.addr);
    copy.send(&PeerFrame::PeerHello(PeerHandshake {
        advertised_addr: "127.0.0.1:10".into(),
        ..match peer_hello() {
            PeerFrame::PeerHello(hello) => hello,
            _ => unreachable!("peer_hello is a PeerHello"),
        }
    }));
    let welcome = match copy.recv_peer() {
        Some(PeerFrame::PeerWelcome(welcome)) => welcome,
        other => panic!("expected PeerWelcome, got {other:?}"),
    };
    copy.send(&proof("s3cret", &welcome, VersionVector::new()));
    match copy.recv_peer() {
        Some(PeerFrame::Error(error)) => {
            assert_eq!(error.code, ErrorCode::ActorIdConflict, "{}", error.message);
            assert!(error.message.contains("127.0.0.1:9"), "{}", error.message);
        }
        other => panic!("expected Error ActorIdConflict before any PeerAccept, got {other:?}"),
    }
    assert!(
        logged(
            &server,
            &["ERROR", "two nodes share actor id 2", "127.0.0.1:10"]
        ),
        "no error line about the conflict"
    );
    // The member's connection is the one kept: it still replicates.
    member.send(&peer_event(1, 2));
    let mut client = RawConn::hello(server.addr);
    client.produce(1, "/after", b"x");
    match client.recv() {
        Some(ServerFrame::Ack(ack)) => assert_eq!(ack.first_id, EventId::new(2, 1)),
        other => panic!("expected an ack, got {other:?}"),
    }
    assert_survived(&mut server, RSS_MAX);
}

/// Runs `flo` with `args` (and a data directory in `dir`), waiting at most 30 s for it to exit
/// (a server that starts is killed by its PID and the test fails); returns its exit code and
/// standard error.
fn flo_exit(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flo"))
        .arg("-d")
        .arg(dir.join("data"))
        .args(["-p", "0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start flo");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flo {args:?} was still running after 30 s: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let mut pipe = child.stderr.take().expect("stderr is piped");
    pipe.read_to_string(&mut stderr).expect("read stderr");
    (status.code(), stderr)
}

/// Attack round 18: a node that accepts peers (`--peer-addr`) on a non-loopback `--bind`
/// started without `--cluster-secret`, also with `--auth-file`: any host that reached the
/// port joined as a member with a proof keyed with nothing, was sent every event (a token
/// holder's `/private/secret`) and had its own PeerEvent stored, no token asked. Such a
/// start, an empty secret (a script's unset variable) and a short one (docs/operations.md's
/// example said `"change me"`) are now refused with one line, at start and by
/// `--check-config`; `--insecure-no-auth`, a loopback bind and a long secret still start.
#[test]
fn a_node_open_to_the_network_refuses_peers_without_a_long_cluster_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[principals.w]\ntoken = \"{}\"\nproduce = [\"/**\"]\n",
            flo::auth_file::hash_token(b"writer-0123456789abcdef0123456789abcdef")
        ),
    )
    .expect("write the auth file");
    let auth = auth.to_str().expect("UTF-8 path");
    let open = ["--bind", "0.0.0.0", "--auth-file", auth];
    let long = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let refused: [(&[&str], &str); 4] = [
        (&["--peer-addr", "127.0.0.1:9"], "without --cluster-secret"),
        (&["--cluster-secret", "change me"], "of 9 bytes"),
        (
            &["--peer-addr", "127.0.0.1:9", "--cluster-secret", ""],
            "empty --cluster-secret",
        ),
        (&["--cluster-secret", "short"], "of 5 bytes"),
    ];
    for (extra, needle) in refused {
        for check in [&[][..], &["--check-config"][..]] {
            let args = [&open[..], extra, check].concat();
            let (code, stderr) = flo_exit(dir.path(), &args);
            assert_eq!(code, Some(1), "{args:?}: {stderr}");
            // One error line (an INFO line about the auth file may come before it).
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("flo: ")).collect();
            assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
            assert!(errors[0].contains(needle), "{args:?}: {stderr}");
        }
    }
    // An empty secret is refused on loopback too: the engine takes it for none.
    let (code, stderr) = flo_exit(dir.path(), &["--cluster-secret", "", "--check-config"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("empty --cluster-secret"), "{stderr}");
    let accepted: [&[&str]; 4] = [
        &[
            &open[..],
            &["--peer-addr", "127.0.0.1:9", "--cluster-secret", long],
        ]
        .concat(),
        &[
            "--bind",
            "0.0.0.0",
            "--insecure-no-auth",
            "--peer-addr",
            "127.0.0.1:9",
        ],
        &["--peer-addr", "127.0.0.1:9"],
        &["--cluster-secret", "s3cret"],
    ];
    for args in accepted {
        let args = [args, &["--check-config"][..]].concat();
        let (code, stderr) = flo_exit(dir.path(), &args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
}
