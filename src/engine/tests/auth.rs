//! Authentication and permissions in the engine (`Config::auth`): Hello's token decides who
//! the connection is, and produces, subscriptions and status requests outside the principal's
//! permissions are refused one by one. Ends with the handshake fuzz: a million random and
//! mutated Hello frames, each answered by Welcome or an Error, none panicking.

use std::sync::Arc;

use super::*;
use crate::auth_file::{hash_token, AuthTable};
use crate::random::SeededRng;

const WRITER_TOKEN: &[u8] = b"writer-token-0123456789abcdef0123456789";
const READER_TOKEN: &[u8] = b"reader-token-0123456789abcdef0123456789";

fn auth_table() -> Arc<AuthTable> {
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/orders/**\"]\nconsume = [\"/**\"]\nadmin = true\n\
         [principals.reader]\ntoken = \"{}\"\nconsume = [\"/orders/**\", \"/audit\"]\n",
        hash_token(WRITER_TOKEN),
        hash_token(READER_TOKEN)
    );
    Arc::new(AuthTable::parse(&text).expect("valid auth file"))
}

fn hello_with(token: &[u8]) -> ClientFrame {
    ClientFrame::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: "test".into(),
        auth_token: token.to_vec(),
    })
}

fn with_auth() -> Harness {
    Harness::with_config(|c| c.auth = Some(auth_table()))
}

/// Connects and sends Hello with `token`; returns the connection and whether it got Welcome.
fn handshake(harness: &mut Harness, token: &[u8]) -> (ConnId, bool) {
    let conn = harness.connect();
    harness.send(conn, hello_with(token));
    harness.turn();
    let welcomed = harness.engine.is_open(conn)
        && matches!(harness.received(conn).as_slice(), [ServerFrame::Welcome(_)]);
    (conn, welcomed)
}

fn denied(frames: &[ServerFrame], expected: ErrorScope) -> bool {
    frames.iter().any(|frame| {
        matches!(frame, ServerFrame::Error(ErrorFrame { scope, code: ErrorCode::PermissionDenied, .. })
            if *scope == expected)
    })
}

#[test]
fn a_missing_or_wrong_token_is_refused_and_closes() {
    let mut harness = with_auth();
    for token in [&b""[..], b"guess", &WRITER_TOKEN[1..]] {
        let (conn, welcomed) = handshake(&mut harness, token);
        assert!(!welcomed, "{token:?} was welcomed");
        assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    }
    let (_, welcomed) = handshake(&mut harness, WRITER_TOKEN);
    assert!(welcomed, "the right token is welcomed");
}

#[test]
fn a_produce_outside_the_permissions_is_denied_and_the_connection_stays_open() {
    let mut harness = with_auth();
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    harness.produce(reader, 1, "/orders/created", b"x");
    harness.turn();
    let frames = harness.received(reader);
    assert!(denied(&frames, ErrorScope::Produce(1)), "{frames:?}");
    assert!(harness.engine.is_open(reader));
    assert_eq!(harness.engine.log().durable_end().0, 0, "nothing appended");

    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    harness.produce(writer, 1, "/orders/created", b"x");
    harness.produce(writer, 2, "/payments/created", b"x");
    harness.turn();
    let frames = harness.received(writer);
    assert!(
        matches!(frames[0], ServerFrame::Ack(Ack { op_id: 1, .. })),
        "{frames:?}"
    );
    assert!(denied(&frames, ErrorScope::Produce(2)), "{frames:?}");
    // A batch with one event outside the permissions is refused whole.
    let batch = ClientFrame::ProduceBatch(ProduceBatch {
        op_id: 3,
        events: vec![
            NewEvent {
                namespace: "/orders/a".into(),
                parent_id: None,
                data: b"a".to_vec(),
            },
            NewEvent {
                namespace: "/secret".into(),
                parent_id: None,
                data: b"b".to_vec(),
            },
        ],
    });
    harness.send(writer, batch);
    harness.turn();
    assert!(denied(&harness.received(writer), ErrorScope::Produce(3)));
    assert_eq!(
        harness.engine.log().durable_end().0,
        1,
        "only op 1 appended"
    );
}

#[test]
fn a_subscription_wider_than_the_permissions_is_refused_not_narrowed() {
    let mut harness = with_auth();
    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    harness.produce(writer, 1, "/orders/created", b"x");
    harness.turn();
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    for (id, glob) in [
        (1, "/**"),
        (2, "/order*/**"),
        (3, "/*/created"),
        (4, "/audit*"),
    ] {
        harness.send(
            reader,
            subscribe(id, glob, StartPosition::Beginning, false, 10),
        );
    }
    harness.send(
        reader,
        subscribe(5, "/orders/*", StartPosition::Beginning, false, 10),
    );
    harness.turn();
    let frames = harness.received(reader);
    for id in 1..=4 {
        assert!(
            denied(&frames, ErrorScope::Subscription(id)),
            "{id}: {frames:?}"
        );
    }
    assert_eq!(events_of(&frames, 5).len(), 1, "{frames:?}");
    assert!(events(&frames)
        .iter()
        .all(|e| e.namespace == "/orders/created"));
    assert!(harness.engine.is_open(reader));
}

#[test]
fn status_needs_admin_and_a_refusal_leaves_the_connection_open() {
    let mut harness = with_auth();
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    harness.send(reader, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    assert!(denied(&harness.received(reader), ErrorScope::Connection));
    assert!(harness.engine.is_open(reader));
    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    harness.send(writer, ClientFrame::StatusRequest { hold: false });
    harness.turn();
    assert!(matches!(
        harness.received(writer).as_slice(),
        [ServerFrame::Status(_)]
    ));
}

#[test]
fn past_the_failure_cap_every_hello_waits_for_the_next_second() {
    let mut harness = Harness::with_config(|c| {
        c.auth = Some(auth_table());
        c.auth_failures_per_second_max = 3;
    });
    for _ in 0..3 {
        assert!(!handshake(&mut harness, b"guess").1);
    }
    let (conn, welcomed) = handshake(&mut harness, WRITER_TOKEN);
    assert!(
        !welcomed,
        "the cap refuses even a right token in the same second"
    );
    assert_eq!(harness.closed_with(conn), Some(ErrorCode::AuthFailed));
    harness.now.monotonic.0 += 1000;
    assert!(
        handshake(&mut harness, WRITER_TOKEN).1,
        "accepted after the second"
    );
}

#[test]
fn without_an_auth_table_any_token_is_accepted() {
    let mut harness = Harness::new();
    assert!(handshake(&mut harness, b"anything").1);
    assert!(handshake(&mut harness, b"").1);
}

/// One Hello-ish input: a valid Hello with a random or mutated token, a valid frame with
/// random bytes flipped, cut or appended, or plain random bytes.
fn fuzz_input(rng: &mut SeededRng) -> Vec<u8> {
    let token: Vec<u8> = match rng.below(4) {
        0 => WRITER_TOKEN.to_vec(),
        1 => {
            let mut token = READER_TOKEN.to_vec();
            let index = rng.index(token.len());
            token[index] ^= 1 << rng.below(8);
            token
        }
        2 => Vec::new(),
        _ => (0..rng.below(80)).map(|_| rng.next_u64() as u8).collect(),
    };
    let hello = Hello {
        protocol_version: if rng.chance(950) {
            PROTOCOL_VERSION
        } else {
            rng.below(4) as u16
        },
        client_name: "fuzz".into(),
        auth_token: token,
    };
    let mut bytes = Vec::new();
    encode(&ClientFrame::Hello(hello), &mut bytes);
    match rng.below(5) {
        0 | 1 => {}
        2 => {
            for _ in 0..=rng.below(3) {
                let index = rng.index(bytes.len());
                bytes[index] = rng.next_u64() as u8;
            }
        }
        3 => {
            let length = rng.index(bytes.len() + 1);
            bytes.truncate(length);
            bytes.extend((0..rng.below(16)).map(|_| rng.next_u64() as u8));
        }
        _ => {
            bytes = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
        }
    }
    bytes
}

#[test]
fn a_million_random_and_mutated_hellos_are_each_answered_welcome_or_error() {
    let seed = 0x5eed_0015;
    let mut rng = SeededRng::new(seed);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "/nonexistent".into());
    config.auth = Some(auth_table());
    let mut engine = Engine::new(EngineConfig::from_config(&config), MemoryLog::new());
    let mut now = Now::default();
    let handshake_timeout_ms = millis(config.handshake_timeout);
    let (mut welcomed, mut errors) = (0u64, 0u64);
    for generation in 0..1_000_000u32 {
        let conn = ConnId {
            slot: 0,
            generation,
        };
        // About a hundred handshakes a second: the failure cap is reached in most seconds.
        now.monotonic.0 += 10;
        engine.handle_connect(now, conn);
        engine.handle_input(now, conn, &fuzz_input(&mut rng));
        engine.handle_turn_end(now);
        if engine.is_open(conn) && engine.output(conn).is_empty() {
            // Part of a frame: the answer is the handshake or frame time-out.
            now.monotonic.0 += handshake_timeout_ms + 1;
            engine.handle_turn_end(now);
        }
        let answer = if engine.is_open(conn) {
            let output = engine.output(conn).to_vec();
            engine.handle_closed(conn);
            output
        } else {
            let mut output = None;
            while let Some(action) = engine.poll_action() {
                if let Action::Close {
                    conn: closed,
                    final_output,
                } = action
                {
                    assert_eq!(closed, conn, "seed {seed:#x}");
                    output = Some(final_output);
                }
            }
            output.unwrap_or_else(|| {
                panic!("seed {seed:#x}: input {generation} closed without an action")
            })
        };
        while engine.poll_action().is_some() {}
        let frames: Vec<ServerFrame> = decode_all(&answer);
        // A Hello followed by garbage is answered Welcome, then the closing Error.
        match frames.as_slice() {
            [ServerFrame::Welcome(_)] => welcomed += 1,
            [.., ServerFrame::Error(ErrorFrame {
                scope: ErrorScope::Connection,
                code,
                ..
            })] if code.closes_connection() && frames.len() <= 2 => errors += 1,
            other => panic!("seed {seed:#x}: input {generation} was answered {other:?}"),
        }
    }
    assert_eq!(welcomed + errors, 1_000_000);
    assert!(welcomed > 10_000, "the valid token got through: {welcomed}");
    assert!(errors > 100_000, "the rest was refused: {errors}");
}

#[test]
fn a_reload_closes_revoked_tokens_and_applies_new_permissions() {
    let mut harness = with_auth();
    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    // The reader is removed; the writer may now produce only to /audit.
    let text = format!(
        "[principals.writer]\ntoken = \"{}\"\nproduce = [\"/audit\"]\n",
        hash_token(WRITER_TOKEN)
    );
    let table = Arc::new(AuthTable::parse(&text).expect("valid auth file"));
    harness.engine.handle_auth_reload(harness.now, table);
    harness.produce(writer, 1, "/orders/created", b"x");
    harness.produce(writer, 2, "/audit", b"x");
    harness.turn();
    assert_eq!(harness.closed_with(reader), Some(ErrorCode::AuthFailed));
    let frames = harness.received(writer);
    assert!(denied(&frames, ErrorScope::Produce(1)), "{frames:?}");
    assert!(
        matches!(frames[1], ServerFrame::Ack(Ack { op_id: 2, .. })),
        "{frames:?}"
    );
    assert!(
        !handshake(&mut harness, READER_TOKEN).1,
        "the removed token is refused"
    );
}

/// JoinGroup is checked like Subscribe: a group glob wider than the consume permissions is
/// denied and no group is created; one inside them joins.
#[test]
fn a_group_join_outside_the_consume_permissions_is_denied_and_creates_no_group() {
    let mut harness = with_auth();
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    let join = |id: u32, glob: &str| {
        ClientFrame::JoinGroup(crate::protocol::JoinGroup {
            subscription_id: id,
            group: format!("g{id}"),
            glob: glob.into(),
            start: StartPosition::Beginning,
            credit: 10,
            ack_timeout_ms: 0,
            max_deliveries: 0,
            max_in_flight: 0,
        })
    };
    harness.send(reader, join(1, "/**"));
    harness.turn();
    assert!(denied(
        &harness.received(reader),
        ErrorScope::Subscription(1)
    ));
    assert!(
        !harness.engine.groups.groups.contains_key("g1"),
        "no group was created"
    );
    harness.send(reader, join(2, "/orders/**"));
    harness.turn();
    let frames = harness.received(reader);
    assert!(!denied(&frames, ErrorScope::Subscription(2)), "{frames:?}");
    assert!(harness.engine.groups.groups.contains_key("g2"));
    assert!(harness.engine.is_open(reader));
}

#[test]
fn group_inspection_and_admin_need_admin_and_a_refusal_leaves_the_connection_open() {
    use crate::protocol::{GroupAdmin, GroupAdminAction, GroupsRequest, ParkedRequest};
    let mut harness = with_auth();
    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    let join = crate::protocol::JoinGroup {
        subscription_id: 1,
        group: "g".into(),
        glob: "/orders/**".into(),
        start: StartPosition::Beginning,
        credit: 10,
        ack_timeout_ms: 0,
        max_deliveries: 0,
        max_in_flight: 0,
    };
    harness.send(writer, ClientFrame::JoinGroup(join));
    harness.send(writer, ClientFrame::LeaveGroup { subscription_id: 1 });
    harness.turn();
    harness.received(writer);
    let requests = || {
        vec![
            ClientFrame::GroupsRequest(GroupsRequest {
                group: String::new(),
                after: String::new(),
            }),
            ClientFrame::ParkedRequest(ParkedRequest {
                group: "g".into(),
                from_offset: 0,
            }),
            ClientFrame::GroupAdmin(GroupAdmin {
                group: "g".into(),
                action: GroupAdminAction::Delete,
            }),
        ]
    };
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    for request in requests() {
        harness.send(reader, request);
        harness.turn();
        assert!(denied(&harness.received(reader), ErrorScope::Connection));
        assert!(harness.engine.is_open(reader));
    }
    assert!(
        harness.engine.groups.groups.contains_key("g"),
        "not deleted"
    );
    for request in requests() {
        harness.send(writer, request);
        harness.turn();
        let frames = harness.received(writer);
        assert!(
            matches!(
                frames.as_slice(),
                [ServerFrame::Groups(_) | ServerFrame::Parked(_)]
            ),
            "{frames:?}"
        );
    }
    assert!(!harness.engine.groups.groups.contains_key("g"), "deleted");
}

#[test]
fn purges_need_admin_and_a_refusal_leaves_the_connection_open() {
    use crate::event::{PurgeBefore, PurgeRule};
    let mut harness = with_auth();
    let (reader, _) = handshake(&mut harness, READER_TOKEN);
    let (writer, _) = handshake(&mut harness, WRITER_TOKEN);
    let purge = || {
        ClientFrame::Purge(PurgeRule {
            glob: "/orders/**".into(),
            before: PurgeBefore::Time(5),
        })
    };
    harness.send(reader, purge());
    harness.send(reader, ClientFrame::PurgesRequest);
    harness.turn();
    let frames = harness.received(reader);
    let refusals = frames
        .iter()
        .filter(|frame| {
            matches!(
                frame,
                ServerFrame::Error(ErrorFrame {
                    scope: ErrorScope::Connection,
                    code: ErrorCode::PermissionDenied,
                    ..
                })
            )
        })
        .count();
    assert_eq!(refusals, 2, "{frames:?}");
    assert!(harness.engine.is_open(reader));
    assert!(harness.engine.log().hide_rules().purges().is_empty());
    harness.send(writer, purge());
    harness.send(writer, ClientFrame::PurgesRequest);
    harness.turn();
    let frames = harness.received(writer);
    assert!(
        matches!(
            frames.as_slice(),
            [ServerFrame::Purges(_), ServerFrame::Purged(_)]
        ),
        "the list is answered at once, the purge after the sync: {frames:?}"
    );
}
/// Three principals for group ownership: two ordinary ones that may consume everything and an
/// admin.
fn owners_table() -> Arc<AuthTable> {
    let text = format!(
        "[principals.alice]\ntoken = \"{}\"\nconsume = [\"/**\"]\n\
         [principals.bob]\ntoken = \"{}\"\nconsume = [\"/**\"]\n\
         [principals.root]\ntoken = \"{}\"\nconsume = [\"/**\"]\nadmin = true\n",
        hash_token(b"alice-token-0123456789abcdef0123456789"),
        hash_token(b"bob-token-0123456789abcdef0123456789ab"),
        hash_token(b"root-token-0123456789abcdef0123456789a"),
    );
    Arc::new(AuthTable::parse(&text).expect("valid auth file"))
}

fn join_group(id: u32, group: &str) -> ClientFrame {
    ClientFrame::JoinGroup(crate::protocol::JoinGroup {
        subscription_id: id,
        group: group.into(),
        glob: "/jobs/**".into(),
        start: StartPosition::Beginning,
        credit: 10,
        ack_timeout_ms: 1000,
        max_deliveries: 3,
        max_in_flight: 100,
    })
}

fn delete_group(group: &str) -> ClientFrame {
    ClientFrame::GroupAdmin(crate::protocol::GroupAdmin {
        group: group.into(),
        action: crate::protocol::GroupAdminAction::Delete,
    })
}

/// The error codes among `frames`.
fn codes(frames: &[ServerFrame]) -> Vec<ErrorCode> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Error(error) => Some(error.code),
            _ => None,
        })
        .collect()
}

/// Issue 10 (closing note of session 3): group names are global and one principal could fill
/// `groups_max`. With an auth file a group remembers the principal that created it: only it
/// or an admin may join or change it, and a principal may have created at most
/// `groups.per_principal_max` groups (deleting one frees the quota). The owner is journaled.
#[test]
fn a_group_belongs_to_its_creator_and_a_principal_creates_at_most_its_quota() {
    let mut harness = Harness::with_config(|c| {
        c.auth = Some(owners_table());
        c.groups.per_principal_max = 2;
    });
    let (alice, welcomed) = handshake(&mut harness, b"alice-token-0123456789abcdef0123456789");
    assert!(welcomed);
    let (bob, welcomed) = handshake(&mut harness, b"bob-token-0123456789abcdef0123456789ab");
    assert!(welcomed);
    let (root, welcomed) = handshake(&mut harness, b"root-token-0123456789abcdef0123456789a");
    assert!(welcomed);
    harness.send(alice, join_group(1, "one"));
    harness.send(alice, join_group(2, "two"));
    harness.send(alice, join_group(3, "three"));
    harness.turn();
    assert_eq!(
        codes(&harness.received(alice)),
        [ErrorCode::GroupQuotaExceeded],
        "alice's third group is over her quota of 2"
    );
    harness.send(bob, join_group(1, "one"));
    harness.send(bob, delete_group("two"));
    harness.send(bob, join_group(2, "bobs"));
    harness.turn();
    assert_eq!(
        codes(&harness.received(bob)),
        [ErrorCode::PermissionDenied, ErrorCode::PermissionDenied],
        "bob may neither join nor delete alice's groups, but creates his own"
    );
    harness.send(root, join_group(1, "one"));
    harness.turn();
    assert_eq!(
        codes(&harness.received(root)),
        [],
        "an admin joins any group"
    );
    // Alice frees her quota by deleting a group of hers (no admin needed), then creates one.
    harness.send(alice, ClientFrame::LeaveGroup { subscription_id: 2 });
    harness.send(alice, delete_group("two"));
    harness.send(alice, join_group(3, "three"));
    harness.turn();
    assert_eq!(codes(&harness.received(alice)), []);
    let owners: Vec<(String, Option<String>)> = harness
        .engine
        .groups
        .snapshot_for_tests()
        .into_iter()
        .filter_map(|record| match record {
            crate::storage::groups::GroupRecord::Create { group, owner, .. } => {
                Some((group, owner))
            }
            _ => None,
        })
        .collect();
    let named = |name: &str, owner: &str| (name.to_string(), Some(owner.to_string()));
    assert_eq!(
        owners,
        [
            named("bobs", "bob"),
            named("one", "alice"),
            named("three", "alice")
        ],
        "the journal's snapshot keeps each group's owner"
    );
}

/// Without an auth file groups have no owner and no principal quota: as before.
#[test]
fn without_an_auth_file_groups_have_no_owner_and_no_quota() {
    let mut harness = Harness::with_config(|c| c.groups.per_principal_max = 1);
    let first = harness.client();
    let second = harness.client();
    harness.send(first, join_group(1, "one"));
    harness.send(first, join_group(2, "two"));
    harness.send(second, join_group(1, "one"));
    harness.turn();
    assert_eq!(codes(&harness.received(first)), []);
    assert_eq!(codes(&harness.received(second)), []);
}

/// Connects from `addr` and sends Hello with `token`; returns whether it got Welcome.
fn handshake_from(harness: &mut Harness, addr: &str, token: &[u8]) -> bool {
    let conn = harness.connect();
    harness
        .engine
        .handle_peer_addr(conn, addr.parse().expect("an address"));
    harness.send(conn, hello_with(token));
    harness.turn();
    harness.engine.is_open(conn)
        && matches!(harness.received(conn).as_slice(), [ServerFrame::Welcome(_)])
}

/// The auth-failure cap counts per source address: a guesser over it is refused unchecked,
/// another address in the same second is not. With the table full of addresses that failed
/// this second, the others share one count; a second later the table has room again.
#[test]
fn the_failure_cap_holds_up_only_the_address_that_failed() {
    let mut harness = Harness::with_config(|c| {
        c.auth = Some(auth_table());
        c.auth_failures_per_second_max = 3;
        c.auth_failure_sources_max = 2;
    });
    for _ in 0..3 {
        assert!(!handshake_from(&mut harness, "10.0.0.2:5000", b"guess"));
    }
    assert!(
        !handshake_from(&mut harness, "10.0.0.2:5001", WRITER_TOKEN),
        "the guessing address is over its cap, even with a right token"
    );
    assert!(
        handshake_from(&mut harness, "10.0.0.1:5000", WRITER_TOKEN),
        "another address is not held up"
    );
    // IPv6 addresses count per /64.
    for host in 1..=3 {
        assert!(!handshake_from(
            &mut harness,
            &format!("[2001:db8::{host}]:1"),
            b"guess"
        ));
    }
    assert!(!handshake_from(
        &mut harness,
        "[2001:db8::9]:1",
        WRITER_TOKEN
    ));
    // The table (2 sources) is full of live windows: other addresses share one count.
    for host in 3..6 {
        assert!(!handshake_from(
            &mut harness,
            &format!("10.0.0.{host}:1"),
            b"guess"
        ));
    }
    assert!(!handshake_from(&mut harness, "10.0.0.7:1", WRITER_TOKEN));
    assert!(
        !handshake_from(&mut harness, "10.0.0.2:1", WRITER_TOKEN),
        "still capped"
    );
    harness.now.monotonic.0 += 1000;
    assert!(handshake_from(&mut harness, "10.0.0.7:1", WRITER_TOKEN));
    assert!(handshake_from(&mut harness, "10.0.0.2:1", WRITER_TOKEN));
}
