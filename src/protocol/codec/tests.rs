//! Codec unit tests: every frame variant round-trips; streams decode the same however they are
//! split; truncated, oversized and malformed input gives a clear error or "incomplete"; a
//! million seeded random inputs never panic.

use super::*;

use crate::random::SeededRng as Rng;

/// The frames of every direction, as one stream: most tests here check the byte layout, which
/// is the same whoever sends a frame.
type Frame = AnyFrame;

/// Decodes any frame, whatever its direction.
fn decode(buf: &[u8], limits: &WireLimits) -> Result<Option<(AnyFrame, usize)>, DecodeError> {
    super::decode(buf, limits)
}

fn limits() -> WireLimits {
    WireLimits::default()
}

fn event(counter: u64, namespace: &str, data: &[u8]) -> Event {
    Event {
        id: EventId::new(counter, 1),
        parent_id: Some(EventId::new(counter.saturating_sub(1).max(1), 2)),
        namespace: namespace.to_string(),
        timestamp_ms: 1_700_000_000_000,
        data: data.to_vec(),
    }
}

fn new_event(namespace: &str, parent_id: Option<EventId>, data: &[u8]) -> NewEvent {
    NewEvent {
        namespace: namespace.to_string(),
        parent_id,
        data: data.to_vec(),
    }
}

fn subscribe(start: StartPosition) -> Frame {
    AnyFrame::Client(ClientFrame::Subscribe(Subscribe {
        subscription_id: 7,
        glob: "/food/**".to_string(),
        start,
        limit: 100,
        tail: true,
        skip_damaged: false,
        order: Default::default(),
        credit: 64,
    }))
}

/// At least one of every frame variant, every start position kind and every error scope.
pub(crate) fn sample_frames() -> Vec<Frame> {
    let vector: VersionVector = [(ActorId(1), 5), (ActorId(3), 9), (ActorId(65535), u64::MAX)]
        .into_iter()
        .collect();
    let max_namespace = format!(
        "/{}",
        "n".repeat(limits().namespace_length_max as usize - 1)
    );
    vec![
        AnyFrame::Client(ClientFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: "flo-client 0.1.0".to_string(),
            auth_token: vec![],
        })),
        AnyFrame::Client(ClientFrame::Hello(Hello {
            protocol_version: 9,
            client_name: "é ✓".to_string(),
            auth_token: b"secret".to_vec(),
        })),
        AnyFrame::Client(ClientFrame::Produce(Produce {
            op_id: 1,
            event: new_event("/food/eggs", None, b"hi"),
        })),
        AnyFrame::Client(ClientFrame::Produce(Produce {
            op_id: u64::MAX,
            event: new_event(&max_namespace, Some(EventId::new(3, 1)), b""),
        })),
        AnyFrame::Client(ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 2,
            events: vec![
                new_event("/a", None, b"1"),
                new_event("/b/c", Some(EventId::new(u64::MAX, u16::MAX)), &[0, 255]),
            ],
        })),
        AnyFrame::Client(ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 3,
            events: vec![],
        })),
        subscribe(StartPosition::Beginning),
        subscribe(StartPosition::End),
        subscribe(StartPosition::AfterId(EventId::new(42, 1))),
        subscribe(StartPosition::AfterId(EventId::NONE)),
        subscribe(StartPosition::Cursor(Cursor {
            floor: EventId::new(4, 2),
            vector: vector.clone(),
        })),
        subscribe(StartPosition::Cursor(Cursor::from_vector(
            VersionVector::new(),
        ))),
        subscribe(StartPosition::Timestamp(1_700_000_000_000)),
        AnyFrame::Client(ClientFrame::Credit {
            subscription_id: 7,
            count: 32,
        }),
        AnyFrame::Client(ClientFrame::Unsubscribe { subscription_id: 7 }),
        AnyFrame::Client(ClientFrame::Ping { token: 99 }),
        AnyFrame::Server(ServerFrame::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_version: "flo 0.1.0".to_string(),
            actor_id: 1,
            frame_size_max: limits().frame_size_max,
            namespace_length_max: 1024,
            event_data_size_max: 8 << 20,
            subscriptions_max: 64,
            idle_timeout_ms: 300_000,
        })),
        AnyFrame::Server(ServerFrame::Ack(Ack {
            op_id: 1,
            first_id: EventId::new(10, 1),
            count: 3,
            timestamp_ms: 5,
        })),
        AnyFrame::Server(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code: ErrorCode::UnsupportedVersion,
            message: "protocol version 9 is not supported".to_string(),
        })),
        AnyFrame::Server(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Produce(12),
            code: ErrorCode::InvalidNamespace,
            message: String::new(),
        })),
        AnyFrame::Server(ServerFrame::Error(ErrorFrame {
            scope: ErrorScope::Subscription(7),
            code: ErrorCode::InvalidBatch,
            message: "ü".to_string(),
        })),
        AnyFrame::Server(ServerFrame::Event {
            subscription_id: 7,
            event: event(10, "/food/eggs", b"{\"x\":1}"),
        }),
        AnyFrame::Server(ServerFrame::Event {
            subscription_id: 0,
            event: Event {
                parent_id: None,
                ..event(u64::MAX, &max_namespace, b"")
            },
        }),
        AnyFrame::Server(ServerFrame::CaughtUp { subscription_id: 7 }),
        AnyFrame::Server(ServerFrame::Skipped {
            subscription_id: 7,
            count: 2000,
        }),
        AnyFrame::Server(ServerFrame::End {
            subscription_id: 7,
            reason: EndReason::LimitReached,
        }),
        AnyFrame::Server(ServerFrame::End {
            subscription_id: 8,
            reason: EndReason::EndOfStream,
        }),
        AnyFrame::Server(ServerFrame::End {
            subscription_id: 9,
            reason: EndReason::Unsubscribed,
        }),
        AnyFrame::Server(ServerFrame::Pong { token: 99 }),
        AnyFrame::Client(ClientFrame::JoinGroup(JoinGroup {
            subscription_id: 4,
            group: "workers".into(),
            glob: "/jobs/**".into(),
            start: StartPosition::AfterId(EventId::new(5, 1)),
            credit: 10,
            ack_timeout_ms: 500,
            max_deliveries: 3,
            max_in_flight: 20,
        })),
        AnyFrame::Client(ClientFrame::GroupAck(GroupAck {
            subscription_id: 4,
            delay_ms: 0,
            ids: vec![EventId::new(5, 1), EventId::new(6, 2)],
        })),
        AnyFrame::Client(ClientFrame::GroupNack(GroupAck {
            subscription_id: 4,
            delay_ms: 100,
            ids: vec![EventId::new(7, 1)],
        })),
        AnyFrame::Client(ClientFrame::LeaveGroup { subscription_id: 4 }),
        AnyFrame::Client(ClientFrame::StatusRequest { hold: false }),
        AnyFrame::Client(ClientFrame::StatusRequest { hold: true }),
        AnyFrame::Client(ClientFrame::SetReplicas { replicas: 3 }),
        AnyFrame::Client(ClientFrame::GroupsRequest(GroupsRequest {
            group: String::new(),
            after: "workers".into(),
        })),
        AnyFrame::Client(ClientFrame::ParkedRequest(ParkedRequest {
            group: "workers".into(),
            from_offset: 12,
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::ReplayParked,
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::Reset(StartPosition::AfterId(EventId::new(5, 1))),
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "w".into(),
            action: GroupAdminAction::Delete,
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::ReplayIds(vec![EventId::new(5, 1), EventId::new(9, 2)]),
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::ReplayIds(Vec::new()),
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::ReplayRange {
                from: EventId::new(5, 1),
                to: EventId::new(7, 1),
            },
        })),
        AnyFrame::Server(ServerFrame::Groups(GroupsReply {
            durable_end: 40,
            more: true,
            groups: vec![GroupInfo {
                name: "workers".into(),
                glob: "/jobs/**".into(),
                members: 2,
                in_flight: 7,
                pending: 9,
                parked: 1,
                floor: 20,
                next: 30,
                acked_above_floor: 3,
                lag: 10,
                oldest_pending_age_ms: 1500,
            }],
        })),
        AnyFrame::Server(ServerFrame::Groups(GroupsReply {
            durable_end: 0,
            more: false,
            groups: Vec::new(),
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::Create {
                glob: "/jobs/**".into(),
                start: StartPosition::AfterId(EventId::new(5, 1)),
                settings: GroupSettings {
                    ack_timeout_ms: 60_000,
                    max_deliveries: 5,
                    max_in_flight: 500,
                },
            },
        })),
        AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin {
            group: "workers".into(),
            action: GroupAdminAction::UpdateSettings(GroupSettings::default()),
        })),
        AnyFrame::Client(ClientFrame::GroupsDetailRequest(GroupsRequest {
            group: String::new(),
            after: "w".into(),
        })),
        AnyFrame::Client(ClientFrame::GroupAckRange(GroupAckRange {
            subscription_id: 3,
            first: EventId::new(9, 2),
            last: EventId::new(1, 1),
        })),
        AnyFrame::Client(ClientFrame::GroupProgress(GroupAck {
            subscription_id: 3,
            delay_ms: 0,
            ids: vec![EventId::new(9, 2), EventId::new(1, 1)],
        })),
        AnyFrame::Server(ServerFrame::GroupsDetail(GroupsDetailReply {
            durable_end: 40,
            more: true,
            groups: vec![GroupDetail {
                info: GroupInfo {
                    name: "workers".into(),
                    glob: "/jobs/**".into(),
                    members: 3,
                    in_flight: 7,
                    pending: 9,
                    parked: 1,
                    floor: 20,
                    next: 30,
                    acked_above_floor: 3,
                    lag: 10,
                    oldest_pending_age_ms: 1500,
                },
                settings: GroupSettings {
                    ack_timeout_ms: 30_000,
                    max_deliveries: 10,
                    max_in_flight: 1000,
                },
                members: vec![GroupMemberInfo {
                    subscription_id: 1,
                    connection: "[::1]:50412".into(),
                    in_flight: 4,
                    max_in_flight: 1000,
                    credit: u64::MAX,
                }],
            }],
        })),
        AnyFrame::Server(ServerFrame::Parked(ParkedReply {
            group: "workers".into(),
            more: false,
            events: vec![ParkedEvent {
                offset: 3,
                id: EventId::new(4, 1),
            }],
        })),
        AnyFrame::Client(ClientFrame::InfoRequest),
        AnyFrame::Server(ServerFrame::Info(Info {
            version: "0.1.0".into(),
            uptime_ms: 3_600_000,
            fsync_policy: "interval:100".into(),
            actor_id: 2,
            log_bytes: 1 << 20,
            event_count: 1000,
            segment_count: 2,
            client_connections: 3,
            peer_connections: 1,
            subscriptions: 2,
            group_count: 1,
        })),
        AnyFrame::Server(ServerFrame::Status(Status {
            actor_id: 1,
            counter: 9,
            event_count: 8,
            durable_end: 8,
            vector: [(ActorId(1), 5), (ActorId(2), 9)].into_iter().collect(),
            members: vec![MemberStatus {
                actor_id: 2,
                addr: "127.0.0.1:3001".into(),
                state: MemberState::BackingOff,
                vector: [(ActorId(2), 9)].into_iter().collect(),
                lag: 3,
                disconnected_ms: 42_000,
            }],
            order: OrderStatus {
                stable_clock: 4,
                held_by: Some(OrderHolder {
                    actor_id: 2,
                    addr: "127.0.0.1:3001".into(),
                    clock: 4,
                    held_ms: 41_000,
                }),
                waiting_subscriptions: 1,
                waiting_events: 3,
                waiting_ms: 40_000,
            },
            hold: None,
        })),
        AnyFrame::Server(ServerFrame::Status(Status {
            actor_id: 2,
            counter: 0,
            event_count: 0,
            durable_end: 0,
            vector: VersionVector::new(),
            members: Vec::new(),
            order: OrderStatus::default(),
            hold: Some(ProduceHold {
                actor_id: 3,
                addr: "127.0.0.1:3002".into(),
                held_ms: 41_000,
                timeout_left_ms: 0,
                waits_for: "member 3 at 127.0.0.1:3002, not met since the start".into(),
            }),
        })),
        AnyFrame::Peer(PeerFrame::PeerHello(PeerHandshake {
            protocol_version: 1,
            actor_id: 2,
            advertised_addr: "10.0.0.2:3000".into(),
            nonce: [7; 32],
        })),
        AnyFrame::Peer(PeerFrame::PeerWelcome(PeerHandshake {
            protocol_version: 1,
            actor_id: 1,
            advertised_addr: String::new(),
            nonce: [0; 32],
        })),
        AnyFrame::Peer(PeerFrame::PeerProof(PeerProof {
            proof: [3; 32],
            vector: [(ActorId(1), 5)].into_iter().collect(),
            members: vec![Member {
                actor_id: 3,
                addr: "10.0.0.3:3000".into(),
            }],
        })),
        AnyFrame::Peer(PeerFrame::PeerAccept(PeerProof {
            proof: [4; 32],
            vector: VersionVector::new(),
            members: Vec::new(),
        })),
        AnyFrame::Peer(PeerFrame::PeerEvent(Event {
            id: EventId::new(4, 2),
            parent_id: Some(EventId::new(3, 1)),
            namespace: "/a/b".into(),
            timestamp_ms: 17,
            data: vec![1, 2, 3],
        })),
        AnyFrame::Peer(PeerFrame::PeerCredit { count: 0 }),
        AnyFrame::Peer(PeerFrame::PeerClock { counter: u64::MAX }),
        AnyFrame::Peer(PeerFrame::PeerMembers(vec![Member {
            actor_id: 9,
            addr: "h:1".into(),
        }])),
        AnyFrame::Client(ClientFrame::MembersRequest),
        AnyFrame::Client(ClientFrame::ChangeMember(ChangeMember {
            op: MemberOp::Remove,
            actor_id: 3,
        })),
        AnyFrame::Client(ClientFrame::ChangeMember(ChangeMember {
            op: MemberOp::Add,
            actor_id: 65535,
        })),
        AnyFrame::Server(ServerFrame::Members(vec![
            MemberEntry {
                actor_id: 1,
                state: MembershipState::Itself,
                version: 0,
                addr: "10.0.0.1:3000".into(),
            },
            MemberEntry {
                actor_id: 3,
                state: MembershipState::Removed,
                version: u64::MAX,
                addr: String::new(),
            },
        ])),
        AnyFrame::Peer(PeerFrame::PeerMembership(vec![MembershipRecord {
            actor_id: 3,
            addr: "10.0.0.3:3000".into(),
            removed: true,
            version: 1,
        }])),
        AnyFrame::Peer(PeerFrame::PeerMembership(Vec::new())),
    ]
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

fn all_encoded() -> Vec<u8> {
    let mut out = Vec::new();
    for frame in sample_frames() {
        encode(&frame, &mut out);
    }
    out
}

/// Decodes a stream delivered in the given chunk sizes, as a connection would: append, then
/// decode until incomplete.
fn decode_in_chunks(stream: &[u8], mut chunk_size: impl FnMut() -> usize) -> Vec<Frame> {
    let mut buffered = Vec::new();
    let mut frames = Vec::new();
    let mut position = 0;
    while position < stream.len() {
        let end = (position + chunk_size()).min(stream.len());
        buffered.extend_from_slice(&stream[position..end]);
        position = end;
        while let Some((frame, consumed)) = decode(&buffered, &limits()).expect("valid stream") {
            frames.push(frame);
            buffered.drain(..consumed);
        }
    }
    assert!(buffered.is_empty(), "{} bytes left over", buffered.len());
    frames
}

fn decode_error(bytes: &[u8]) -> DecodeError {
    match decode(bytes, &limits()) {
        Err(error) => error,
        other => panic!("expected an error for {bytes:02x?}, got {other:?}"),
    }
}

/// A frame with the given kind and body.
fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

#[test]
fn every_frame_round_trips() {
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        assert_eq!(
            length as usize,
            bytes.len() - 4,
            "length prefix of {frame:?}"
        );
        assert_eq!(bytes[4], frame_kind(&frame));
        assert_eq!(
            decode(&bytes, &limits()),
            Ok(Some((frame.clone(), bytes.len()))),
            "{frame:?}"
        );
    }
}

#[test]
fn encode_event_and_encode_error_match_encode() {
    let event = event(5, "/x", b"data");
    let mut direct = Vec::new();
    encode_event(3, event.view(), &mut direct);
    let frame = AnyFrame::Server(ServerFrame::Event {
        subscription_id: 3,
        event,
    });
    assert_eq!(direct, encoded(&frame));

    let mut direct = Vec::new();
    encode_error(
        ErrorScope::Produce(4),
        ErrorCode::StorageFailure,
        "disk full",
        &mut direct,
    );
    let frame = AnyFrame::Server(ServerFrame::Error(ErrorFrame {
        scope: ErrorScope::Produce(4),
        code: ErrorCode::StorageFailure,
        message: "disk full".to_string(),
    }));
    assert_eq!(direct, encoded(&frame));
}

#[test]
fn a_known_frame_has_the_documented_bytes() {
    let bytes = encoded(&AnyFrame::Client(ClientFrame::Credit {
        subscription_id: 7,
        count: 32,
    }));
    assert_eq!(bytes, [0, 0, 0, 9, 0x05, 0, 0, 0, 7, 0, 0, 0, 32]);
    let bytes = encoded(&AnyFrame::Client(ClientFrame::Ping { token: 1 }));
    assert_eq!(bytes, [0, 0, 0, 9, 0x07, 0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn long_error_messages_are_truncated_at_a_character_boundary() {
    let message = "é".repeat(40_000);
    let mut out = Vec::new();
    encode_error(
        ErrorScope::Connection,
        ErrorCode::Timeout,
        &message,
        &mut out,
    );
    let Ok(Some((AnyFrame::Server(ServerFrame::Error(error)), _))) = decode(&out, &limits()) else {
        panic!("did not decode");
    };
    assert_eq!(error.message.len(), 65534);
    assert!(message.starts_with(&error.message));
}

#[test]
fn a_stream_decodes_the_same_one_byte_at_a_time() {
    assert_eq!(decode_in_chunks(&all_encoded(), || 1), sample_frames());
}

#[test]
fn a_stream_decodes_the_same_in_random_chunks() {
    let stream = all_encoded();
    for seed in 1..=50 {
        let mut rng = Rng::new(seed);
        let frames = decode_in_chunks(&stream, || 1 + rng.index(64));
        assert_eq!(frames, sample_frames(), "seed {seed}");
    }
}

#[test]
fn every_proper_prefix_of_a_frame_is_incomplete() {
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        for end in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..end], &limits()),
                Ok(None),
                "{frame:?} cut at {end}"
            );
        }
    }
}

#[test]
fn a_frame_whose_length_is_too_short_for_its_fields_is_malformed() {
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        // Drop the last byte of the body and shrink the length to match. A StatusRequest's
        // only byte is an option: without it the request is the one without options.
        if bytes.len() <= 5 || matches!(frame, AnyFrame::Client(ClientFrame::StatusRequest { .. }))
        {
            continue;
        }
        let cut = raw_frame(bytes[4], &bytes[5..bytes.len() - 1]);
        let error = decode_error(&cut);
        assert_eq!(error.code, ErrorCode::MalformedFrame, "{frame:?}");
    }
}

#[test]
fn trailing_bytes_inside_a_frame_are_malformed() {
    for frame in sample_frames() {
        // A Hello of another version may carry fields a later version added.
        if matches!(&frame, AnyFrame::Client(ClientFrame::Hello(hello)) if hello.protocol_version != PROTOCOL_VERSION)
        {
            continue;
        }
        let bytes = encoded(&frame);
        let mut body = bytes[5..].to_vec();
        body.push(0);
        let error = decode_error(&raw_frame(bytes[4], &body));
        assert_eq!(error.code, ErrorCode::MalformedFrame);
        // Bytes after a Status without the hold fields begin them (protocol.md section 14).
        let hold_starts =
            matches!(&frame, AnyFrame::Server(ServerFrame::Status(s)) if s.hold.is_none());
        // A byte after a StatusRequest without options is an option byte, and 0 is none.
        let options_start = frame == AnyFrame::Client(ClientFrame::StatusRequest { hold: false });
        let expected = if hold_starts {
            "hold actor"
        } else if options_start {
            "StatusRequest options are 0x00"
        } else {
            "left over"
        };
        assert!(error.message.contains(expected), "{error}");
    }
}

#[test]
fn a_length_over_the_limit_is_reported_before_the_body_arrives() {
    let limits = limits();
    let too_long = limits.frame_size_max - 4 + 1;
    let error = decode(&too_long.to_be_bytes(), &limits).unwrap_err();
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
    assert!(error.message.contains("over the limit"), "{error}");
    let error = decode(&u32::MAX.to_be_bytes(), &limits).unwrap_err();
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
    // Exactly at the limit is allowed: it waits for the body.
    let at_limit = limits.frame_size_max - 4;
    assert_eq!(decode(&at_limit.to_be_bytes(), &limits), Ok(None));
}

#[test]
fn a_frame_exactly_at_the_limit_decodes_and_one_byte_more_is_too_large() {
    let frame = AnyFrame::Client(ClientFrame::Produce(Produce {
        op_id: 1,
        event: new_event("/a", None, b"0123456789"),
    }));
    let bytes = encoded(&frame);
    let exact = WireLimits {
        frame_size_max: bytes.len() as u32,
        ..limits()
    };
    assert_eq!(decode(&bytes, &exact), Ok(Some((frame, bytes.len()))));
    let one_less = WireLimits {
        frame_size_max: bytes.len() as u32 - 1,
        ..limits()
    };
    let error = decode(&bytes[..4], &one_less).unwrap_err();
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
}

#[test]
fn a_zero_length_is_malformed() {
    assert_eq!(decode_error(&[0, 0, 0, 0]).code, ErrorCode::MalformedFrame);
}

#[test]
fn unknown_kinds_are_reported_as_soon_as_the_kind_byte_arrives() {
    for kind in 0..=255u8 {
        let header = [0, 0, 0, 100, kind];
        let result = decode(&header, &limits());
        match kind {
            _ if kind_name(kind) == "unknown" => {
                let error = result.unwrap_err();
                assert_eq!(error.code, ErrorCode::MalformedFrame);
                assert!(error.message.contains("unknown frame kind"), "{error}");
            }
            _ => assert_eq!(result, Ok(None), "kind {kind:#x}"),
        }
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut body = vec![0, 1, 0, 2, 0xC3, 0x28, 0, 0];
    let error = decode_error(&raw_frame(kind::HELLO, &body));
    assert!(error.message.contains("UTF-8"), "{error}");
    // A namespace in a Produce.
    body = vec![0; 8];
    body.extend_from_slice(&[0, 2, b'/', 0xFF]);
    body.extend_from_slice(&[0; 10]);
    body.extend_from_slice(&[0, 0, 0, 0]);
    let error = decode_error(&raw_frame(kind::PRODUCE, &body));
    assert!(error.message.contains("UTF-8"), "{error}");
}

#[test]
fn inner_lengths_over_the_limits_are_malformed() {
    let limits = WireLimits {
        frame_size_max: 1 << 20,
        namespace_length_max: 4,
        event_data_size_max: 3,
        ..limits()
    };
    let long_namespace = encoded(&AnyFrame::Client(ClientFrame::Produce(Produce {
        op_id: 1,
        event: new_event("/abcd", None, b""),
    })));
    let error = decode(&long_namespace, &limits).unwrap_err();
    assert_eq!(error.code, ErrorCode::MalformedFrame);
    assert!(error.message.contains("namespace of 5 bytes"), "{error}");
    let large_data = encoded(&AnyFrame::Server(ServerFrame::Event {
        subscription_id: 1,
        event: event(1, "/a", b"abcd"),
    }));
    let error = decode(&large_data, &limits).unwrap_err();
    assert!(error.message.contains("data of 4 bytes"), "{error}");
    // A data length beyond the frame is caught before anything is copied.
    let mut body = vec![0; 8];
    body.extend_from_slice(&[0, 2, b'/', b'a']);
    body.extend_from_slice(&[0; 10]);
    body.extend_from_slice(&[0, 0, 0, 3]);
    let error = decode(&raw_frame(kind::PRODUCE, &body), &limits).unwrap_err();
    assert!(error.message.contains("needs 3 bytes"), "{error}");
}

/// StatusRequest has no body (the request of the first version) or one option byte with
/// bit 0 (the hold fields) set: one encoding per request, and an option this server does not
/// know is refused, never ignored (protocol.md section 14).
#[test]
fn a_status_request_has_no_body_or_the_hold_option_alone() {
    assert_eq!(
        encoded(&AnyFrame::Client(ClientFrame::StatusRequest {
            hold: false
        })),
        [0, 0, 0, 1, 0x08]
    );
    assert_eq!(
        encoded(&AnyFrame::Client(ClientFrame::StatusRequest { hold: true })),
        [0, 0, 0, 2, 0x08, 0x01]
    );
    for options in [0x00, 0x02, 0x03, 0x80, 0xFF] {
        let error = decode_error(&raw_frame(0x08, &[options]));
        assert_eq!(error.code, ErrorCode::MalformedFrame);
        assert!(error.message.contains("StatusRequest options"), "{error}");
    }
    let error = decode_error(&raw_frame(0x08, &[0x01, 0x01]));
    assert!(error.message.contains("left over"), "{error}");
}

#[test]
fn invalid_booleans_and_enum_values_are_malformed() {
    // Subscribe's flags byte (once the `tail` bool): bit 0 tail, bit 1 skip damaged, bit 2 id
    // order; an undefined bit (3-7) is malformed.
    let mut flags = encoded(&subscribe(StartPosition::Beginning));
    let flags_index = flags.len() - 5;
    assert_eq!(flags[flags_index], 1);
    for undefined in [0x08, 0x10, 0x80, 0x0F] {
        flags[flags_index] = undefined;
        assert!(decode_error(&flags).message.contains("subscribe flags"));
    }
    // A subscription may ask for both id order and skipping damaged ranges.
    flags[flags_index] = 0x07;
    match decode(&flags, &WireLimits::default()) {
        Ok(Some((AnyFrame::Client(ClientFrame::Subscribe(subscribe)), _))) => {
            assert!(subscribe.tail);
            assert!(subscribe.skip_damaged);
            assert_eq!(subscribe.order, Order::Id);
        }
        other => panic!("flags 7 must decode as a tailing, skipping id-order Subscribe: {other:?}"),
    }
    flags[flags_index] = 0x04;
    match decode(&flags, &WireLimits::default()) {
        Ok(Some((AnyFrame::Client(ClientFrame::Subscribe(subscribe)), _))) => {
            assert!(!subscribe.tail);
            assert!(!subscribe.skip_damaged);
            assert_eq!(subscribe.order, Order::Id);
        }
        other => panic!("flags 4 must decode as an id-order Subscribe: {other:?}"),
    }

    let bad_start = subscribe(StartPosition::Beginning);
    let mut bytes = encoded(&bad_start);
    let start_index = 5 + 4 + 2 + "/food/**".len();
    bytes[start_index] = 5;
    assert!(decode_error(&bytes)
        .message
        .contains("start position kind 5"));

    let end = raw_frame(kind::END, &[0, 0, 0, 1, 4]);
    assert!(decode_error(&end).message.contains("end reason 4"));
    let end = raw_frame(kind::END, &[0, 0, 0, 1, 0]);
    assert!(decode_error(&end).message.contains("end reason 0"));

    let scope = raw_frame(kind::ERROR, &[3, 0, 1, 0, 0]);
    assert!(decode_error(&scope).message.contains("error scope 3"));
    // An error code this build does not know is not malformed: protocol.md tells a client to
    // handle it by its scope, so it decodes as `Unknown` with the number in the message.
    for number in [0u8, 99] {
        let code = raw_frame(kind::ERROR, &[0, 0, number, 0, 0]);
        match decode(&code, &limits()) {
            Ok(Some((AnyFrame::Server(ServerFrame::Error(error)), _))) => {
                assert_eq!(error.code, ErrorCode::Unknown);
                assert_eq!(
                    error.message,
                    format!("code {number}, unknown to this client: ")
                );
            }
            other => panic!("error code {number}: {other:?}"),
        }
    }

    let action = raw_frame(kind::GROUP_ADMIN, &[0, 1, b'w', 8]);
    assert!(decode_error(&action)
        .message
        .contains("group admin action 8"));
    let more = raw_frame(kind::GROUPS, &[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]);
    assert!(decode_error(&more).message.contains("boolean"));
}

#[test]
fn non_canonical_ids_and_cursors_are_malformed() {
    // Absent parent id with a non-zero actor.
    let mut body = vec![0; 8];
    body.extend_from_slice(&[0, 2, b'/', b'a']);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    body.extend_from_slice(&[0, 0, 0, 0]);
    let error = decode_error(&raw_frame(kind::PRODUCE, &body));
    assert!(error.message.contains("absent"), "{error}");

    // An event id with counter 0.
    let mut bytes = encoded(&AnyFrame::Server(ServerFrame::Ack(Ack {
        op_id: 1,
        first_id: EventId::new(1, 1),
        count: 1,
        timestamp_ms: 0,
    })));
    bytes[5 + 8 + 7] = 0;
    assert!(decode_error(&bytes).message.contains("counter 0"));

    let cursor_frame = |entries: &[(u16, u64)]| {
        let mut body = vec![0, 0, 0, 1, 0, 1, b'/', 3];
        body.extend_from_slice(&[0; 10]);
        body.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        for (actor, counter) in entries {
            body.extend_from_slice(&actor.to_be_bytes());
            body.extend_from_slice(&counter.to_be_bytes());
        }
        body.extend_from_slice(&[0; 8]);
        body.push(0);
        body.extend_from_slice(&[0, 0, 0, 1]);
        raw_frame(kind::SUBSCRIBE, &body)
    };
    assert!(decode(&cursor_frame(&[(1, 1), (2, 5)]), &limits()).is_ok());
    let unsorted = decode_error(&cursor_frame(&[(2, 1), (1, 5)]));
    assert!(unsorted.message.contains("ascending"), "{unsorted}");
    let duplicate = decode_error(&cursor_frame(&[(2, 1), (2, 5)]));
    assert!(duplicate.message.contains("ascending"), "{duplicate}");
    let zero = decode_error(&cursor_frame(&[(1, 0)]));
    assert!(zero.message.contains("counter 0"), "{zero}");
}

#[test]
fn a_hello_of_a_later_version_may_carry_more_fields_but_version_1_may_not() {
    let hello = |version: u16| {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 2, b'v', b'2', 0, 0]);
        body.extend_from_slice(&[0xAA; 7]); // fields a later version added
        raw_frame(kind::HELLO, &body)
    };
    let decoded = decode(&hello(2), &limits()).expect("a v2 Hello decodes");
    match decoded {
        Some((AnyFrame::Client(ClientFrame::Hello(hello)), _)) => {
            assert_eq!(hello.protocol_version, 2)
        }
        other => panic!("expected a Hello, got {other:?}"),
    }
    let error = decode_error(&hello(PROTOCOL_VERSION));
    assert!(error.message.contains("left over"), "{error}");
}

#[test]
fn a_start_id_or_cursor_floor_with_counter_0_and_an_actor_is_malformed() {
    // "After id" with counter 0 and actor 5: "none" is all zeros (protocol.md, section 2).
    let after_id = |actor: u16| {
        let mut body = vec![0, 0, 0, 1, 0, 1, b'/', 2];
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&actor.to_be_bytes());
        body.extend_from_slice(&[0; 8]);
        body.push(0);
        body.extend_from_slice(&[0, 0, 0, 1]);
        raw_frame(kind::SUBSCRIBE, &body)
    };
    assert!(decode(&after_id(0), &limits()).is_ok());
    let error = decode_error(&after_id(5));
    assert_eq!(error.code, ErrorCode::MalformedFrame, "{error}");
    assert!(error.message.contains("start id"), "{error}");

    let floor = |actor: u16| {
        let mut body = vec![0, 0, 0, 1, 0, 1, b'/', 3];
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&actor.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&[0; 8]);
        body.push(0);
        body.extend_from_slice(&[0, 0, 0, 1]);
        raw_frame(kind::SUBSCRIBE, &body)
    };
    assert!(decode(&floor(0), &limits()).is_ok());
    let error = decode_error(&floor(5));
    assert_eq!(error.code, ErrorCode::MalformedFrame, "{error}");
    assert!(error.message.contains("cursor floor"), "{error}");
}

#[test]
fn a_batch_count_larger_than_the_frame_is_malformed_without_allocating() {
    let mut body = vec![0; 8];
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = decode_error(&raw_frame(kind::PRODUCE_BATCH, &body));
    assert_eq!(error.code, ErrorCode::MalformedFrame);
}

#[test]
fn decode_errors_display_their_code_and_message() {
    let error = decode_error(&[0, 0, 0, 1, 0xEE]);
    assert_eq!(
        error.to_string(),
        "MalformedFrame (1): unknown frame kind 0xee"
    );
}

/// Checks one decode result: incomplete, a whole frame inside the input that re-encodes to
/// the same bytes, or an error with a decode error code and a message.
fn check_decode(bytes: &[u8], limits: &WireLimits) {
    if bytes.get(4) == Some(&kind::PRODUCE) {
        check_produce_view(bytes, limits);
    }
    match decode(bytes, limits) {
        Ok(None) => {}
        Ok(Some((frame, consumed))) => {
            assert!(consumed <= bytes.len());
            // A Hello of another version ignores what follows its frozen fields.
            if matches!(&frame, AnyFrame::Client(ClientFrame::Hello(hello)) if hello.protocol_version != PROTOCOL_VERSION)
                || is_unknown_error(&frame)
            {
                return;
            }
            assert_eq!(
                encoded(&frame),
                bytes[..consumed],
                "not canonical: {frame:?}"
            );
        }
        Err(error) => {
            assert!(matches!(
                error.code,
                ErrorCode::MalformedFrame | ErrorCode::FrameTooLarge | ErrorCode::UnexpectedFrame
            ));
            assert!(!error.message.is_empty());
        }
    }
}

/// The server decodes a Produce as a view (`decode_produce_view`): the same outcome as the
/// owned decoder, frame for frame and error for error.
fn check_produce_view(bytes: &[u8], limits: &WireLimits) {
    let owned = decode_client(bytes, limits);
    let view = decode_produce_view(bytes, limits);
    match (owned, view) {
        (Ok(None), Ok(None)) => {}
        (Ok(Some((ClientFrame::Produce(produce), length))), Ok(Some((op_id, event, size)))) => {
            assert_eq!(
                (produce.op_id, produce.event.view(), length),
                (op_id, event, size)
            );
        }
        (Err(owned), Err(view)) => assert_eq!(owned, view),
        (owned, view) => panic!("decoders disagree: {owned:?} and {view:?}"),
    }
}

#[test]
fn a_produce_decodes_as_a_view_like_the_owned_decoder() {
    let produce = ClientFrame::Produce(Produce {
        op_id: 9,
        event: new_event("/orders/eu", Some(EventId::new(3, 1)), b"payload"),
    });
    let mut bytes = Vec::new();
    encode(&produce, &mut bytes);
    for end in 0..=bytes.len() {
        check_produce_view(&bytes[..end], &limits());
    }
    let wire = limits();
    let (op_id, event, size) = decode_produce_view(&bytes, &wire).unwrap().unwrap();
    assert_eq!(
        (op_id, event.namespace, event.data, size),
        (9, "/orders/eu", &b"payload"[..], bytes.len())
    );
    // A namespace over the limit, invalid UTF-8 and a short frame are refused alike.
    let mut tight = limits();
    tight.namespace_length_max = 4;
    check_produce_view(&bytes, &tight);
    let mut bad = bytes.clone();
    let at = bytes.windows(3).position(|w| w == b"/or").unwrap();
    bad[at + 1] = 0xff;
    check_produce_view(&bad, &limits());
    assert!(decode_produce_view(&bad, &limits()).is_err());
}

/// The server decodes a ProduceBatch or ProduceIf as views (`decode_produce_many_view`):
/// the same outcome as the owned decoder, frame for frame and error for error.
fn check_produce_many_view(bytes: &[u8], limits: &WireLimits) {
    let owned = decode_client(bytes, limits);
    let mut views = Vec::new();
    let view = decode_produce_many_view(bytes, limits, usize::MAX, &mut views);
    fn as_view(
        op_id: u64,
        expect: Expectation,
        events: &[NewEvent],
        length: usize,
    ) -> (ProduceManyView, Vec<NewEventView<'_>>) {
        let views = events.iter().map(NewEvent::view).collect();
        let frame = ProduceManyView {
            op_id,
            expect,
            length,
            count: events.len(),
        };
        (frame, views)
    }
    match (owned, view) {
        (Ok(None), Ok(None)) => {}
        (Ok(Some((ClientFrame::ProduceBatch(batch), length))), Ok(Some(frame))) => {
            let expected = as_view(batch.op_id, Expectation::Any, &batch.events, length);
            assert_eq!(expected, (frame, views));
        }
        (Ok(Some((ClientFrame::ProduceIf(produce), length))), Ok(Some(frame))) => {
            let expected = as_view(produce.op_id, produce.expect, &produce.events, length);
            assert_eq!(expected, (frame, views));
        }
        (Err(owned), Err(view)) => assert_eq!(owned, view),
        (owned, view) => panic!("decoders disagree: {owned:?} and {view:?}"),
    }
}

#[test]
fn a_batch_and_a_conditional_produce_decode_as_views_like_the_owned_decoder() {
    let events = vec![
        new_event("/orders/eu", Some(EventId::new(3, 1)), b"payload"),
        new_event("/orders/us", None, b""),
    ];
    let frames = [
        ClientFrame::ProduceBatch(ProduceBatch {
            op_id: 9,
            events: events.clone(),
        }),
        ClientFrame::ProduceIf(ProduceIf {
            op_id: 10,
            expect: Expectation::LastIs(EventId::new(7, 2)),
            events: events.clone(),
        }),
        ClientFrame::ProduceIf(ProduceIf {
            op_id: 11,
            expect: Expectation::NoEvents,
            events,
        }),
    ];
    for frame in &frames {
        let mut bytes = Vec::new();
        encode(frame, &mut bytes);
        for end in 0..=bytes.len() {
            check_produce_many_view(&bytes[..end], &limits());
        }
        // A namespace over the limit, invalid UTF-8, a bad expectation and a wrong count are
        // refused alike.
        let mut tight = limits();
        tight.namespace_length_max = 4;
        check_produce_many_view(&bytes, &tight);
        let mut bad = bytes.clone();
        let at = bytes.windows(3).position(|w| w == b"/or").unwrap();
        bad[at + 1] = 0xff;
        check_produce_many_view(&bad, &limits());
        assert!(decode_produce_many_view(&bad, &limits(), usize::MAX, &mut Vec::new()).is_err());
        for at in HEADER_SIZE + 8..HEADER_SIZE + 14 {
            let mut changed = bytes.clone();
            changed[at] ^= 0x03;
            check_produce_many_view(&changed, &limits());
        }
    }
    // Another kind is refused.
    let mut produce = Vec::new();
    encode(
        &ClientFrame::Produce(Produce {
            op_id: 1,
            event: new_event("/a", None, b"x"),
        }),
        &mut produce,
    );
    assert!(decode_produce_many_view(&produce, &limits(), usize::MAX, &mut Vec::new()).is_err());
}

/// A frame of many tiny events (a hostile batch: 100,000 events in about 1 MiB) keeps views of
/// only the first `kept_max` of them (the server's limit of events per batch, which refuses the
/// batch by its count), so the views take memory bounded by the limit, not by the frame's size;
/// every event is still read and checked, and the count is the frame's.
#[test]
fn a_batch_of_many_tiny_events_keeps_views_of_only_as_many_as_the_limit() {
    const EVENTS: usize = 100_000;
    const KEPT_MAX: usize = 10;
    let events = vec![new_event("/a", None, b""); EVENTS];
    let mut bytes = Vec::new();
    encode(
        &ClientFrame::ProduceBatch(ProduceBatch { op_id: 5, events }),
        &mut bytes,
    );
    let wire = limits();
    let mut views = Vec::new();
    let frame = decode_produce_many_view(&bytes, &wire, KEPT_MAX, &mut views)
        .expect("a valid frame")
        .expect("a whole frame");
    assert_eq!(
        (frame.op_id, frame.count, frame.length),
        (5, EVENTS, bytes.len())
    );
    assert_eq!(
        views.len(),
        KEPT_MAX,
        "views stored for {EVENTS} tiny events"
    );
    assert!(
        views.capacity() <= 2 * KEPT_MAX,
        "the views' vector grew to {} for a limit of {KEPT_MAX}",
        views.capacity()
    );
    assert!(views.iter().all(|view| view.namespace == "/a"));
    // An event past the kept ones is still checked: invalid UTF-8 in the last one is refused.
    let last_namespace = bytes.len() - bytes.iter().rev().position(|&b| b == b'/').unwrap() - 1;
    bytes[last_namespace + 1] = 0xff;
    let refused = decode_produce_many_view(&bytes, &limits(), KEPT_MAX, &mut Vec::new()).err();
    assert!(
        refused.is_some(),
        "the last event's bad namespace was not read"
    );
    assert_eq!(refused, decode_client(&bytes, &limits()).err());
}

/// Random bytes shaped like frames: a plausible length and a known kind most of the time, so
/// the fields are exercised and not only the header check.
fn random_input(rng: &mut Rng, out: &mut Vec<u8>) {
    const KINDS: [u8; 16] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x40,
        0x08,
    ];
    out.clear();
    let body_size = rng.index(48);
    let length = match rng.index(8) {
        0 => rng.next_u64() as u32,
        1 => body_size as u32 + rng.index(3) as u32,
        _ => body_size as u32 + 1,
    };
    out.extend_from_slice(&length.to_be_bytes());
    out.push(if rng.index(16) == 0 {
        rng.next_u64() as u8
    } else {
        KINDS[rng.index(KINDS.len())]
    });
    for _ in 0..body_size {
        // Small values make plausible lengths, tags and booleans.
        let byte = if rng.index(2) == 0 {
            rng.index(4)
        } else {
            rng.index(256)
        };
        out.push(byte as u8);
    }
}

fn mutate_valid_frame(rng: &mut Rng, valid: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&valid[rng.index(valid.len())]);
    for _ in 0..1 + rng.index(3) {
        let index = rng.index(out.len());
        match rng.index(3) {
            0 => out[index] = rng.next_u64() as u8,
            1 => out[index] ^= 1 << rng.index(8),
            _ => out.truncate(index.max(1)),
        }
    }
}

#[test]
fn a_million_random_inputs_never_panic() {
    let seed = 0x05EE_DF10;
    let mut rng = Rng::new(seed);
    let small = WireLimits {
        frame_size_max: 200,
        namespace_length_max: 16,
        event_data_size_max: 32,
        ..limits()
    };
    let valid: Vec<Vec<u8>> = sample_frames()
        .iter()
        .map(encoded)
        .filter(|bytes| bytes.len() < 300)
        .collect();
    let mut input = Vec::new();
    let (mut frames, mut errors, mut incomplete) = (0u32, 0u32, 0u32);
    for round in 0..1_000_000u32 {
        if round % 4 == 0 {
            mutate_valid_frame(&mut rng, &valid, &mut input);
        } else {
            random_input(&mut rng, &mut input);
        }
        let limits = if round % 2 == 0 { limits() } else { small };
        check_decode(&input, &limits);
        match decode(&input, &limits) {
            Ok(None) => incomplete += 1,
            Ok(Some(_)) => frames += 1,
            Err(_) => errors += 1,
        }
    }
    // The generator must reach every outcome, or the test proves little.
    assert!(frames > 10_000, "seed {seed}: only {frames} frames");
    assert!(errors > 10_000, "seed {seed}: only {errors} errors");
    assert!(
        incomplete > 10_000,
        "seed {seed}: only {incomplete} incomplete"
    );
}

/// A random string of up to `length_max` bytes mixing ASCII, `/`, and multi-byte characters.
fn random_text(rng: &mut Rng, length_max: usize) -> String {
    const PIECES: [&str; 8] = ["/", "a", "Z", "9", "é", "✓", "𝄞", "*"];
    let mut text = String::new();
    loop {
        let piece = PIECES[rng.index(PIECES.len())];
        if text.len() + piece.len() > length_max || rng.index(16) == 0 {
            return text;
        }
        text.push_str(piece);
    }
}

fn random_bytes(rng: &mut Rng, length_max: usize) -> Vec<u8> {
    (0..rng.index(length_max + 1))
        .map(|_| rng.next_u64() as u8)
        .collect()
}

fn random_id(rng: &mut Rng) -> EventId {
    EventId::new(1 + rng.next_u64() % u64::MAX, rng.next_u64() as u16)
}

fn random_optional_id(rng: &mut Rng) -> Option<EventId> {
    (rng.index(2) == 0).then(|| random_id(rng))
}

fn random_new_event(rng: &mut Rng) -> NewEvent {
    NewEvent {
        namespace: random_text(rng, 1024),
        parent_id: random_optional_id(rng),
        data: random_bytes(rng, 64),
    }
}

fn random_start(rng: &mut Rng) -> StartPosition {
    match rng.index(5) {
        0 => StartPosition::Beginning,
        1 => StartPosition::End,
        2 => StartPosition::AfterId(random_id(rng)),
        3 => StartPosition::Cursor(Cursor {
            floor: random_id(rng),
            vector: (0..rng.index(20))
                .map(|_| (ActorId(rng.next_u64() as u16), 1 + rng.next_u64() % 1000))
                .collect(),
        }),
        _ => StartPosition::Timestamp(rng.next_u64()),
    }
}

/// A random value of a random frame variant, within the default limits.
fn random_frame(rng: &mut Rng) -> Frame {
    let u32_value = rng.next_u64() as u32;
    match rng.index(8) {
        0 => AnyFrame::Client(ClientFrame::Hello(Hello {
            protocol_version: rng.next_u64() as u16,
            client_name: random_text(rng, 100),
            auth_token: random_bytes(rng, 40),
        })),
        1 => AnyFrame::Client(ClientFrame::Produce(Produce {
            op_id: rng.next_u64(),
            event: random_new_event(rng),
        })),
        2 => AnyFrame::Client(ClientFrame::ProduceBatch(ProduceBatch {
            op_id: rng.next_u64(),
            events: (0..rng.index(5)).map(|_| random_new_event(rng)).collect(),
        })),
        3 => AnyFrame::Client(ClientFrame::Subscribe(Subscribe {
            subscription_id: u32_value,
            glob: random_text(rng, 300),
            start: random_start(rng),
            limit: rng.next_u64(),
            tail: rng.index(2) == 0,
            skip_damaged: rng.index(2) == 0,
            order: if rng.index(2) == 0 {
                Order::Arrival
            } else {
                Order::Id
            },
            credit: rng.next_u64() as u32,
        })),
        4 => AnyFrame::Server(ServerFrame::Error(ErrorFrame {
            scope: match rng.index(3) {
                0 => ErrorScope::Connection,
                1 => ErrorScope::Produce(rng.next_u64()),
                _ => ErrorScope::Subscription(u32_value),
            },
            code: ErrorCode::from_u16(1 + rng.index(17) as u16).expect("codes 1-17 exist"),
            message: random_text(rng, 200),
        })),
        5 => AnyFrame::Server(ServerFrame::Event {
            subscription_id: u32_value,
            event: Event {
                id: random_id(rng),
                parent_id: random_optional_id(rng),
                namespace: random_text(rng, 1024),
                timestamp_ms: rng.next_u64(),
                data: random_bytes(rng, 64),
            },
        }),
        6 => AnyFrame::Server(ServerFrame::Ack(Ack {
            op_id: rng.next_u64(),
            first_id: random_id(rng),
            count: u32_value,
            timestamp_ms: rng.next_u64(),
        })),
        _ => sample_frames().swap_remove(rng.index(sample_frames().len())),
    }
}

#[test]
fn random_frames_round_trip_alone_and_in_random_chunks() {
    let seed = 0xF10_F10;
    let mut rng = Rng::new(seed);
    let frames: Vec<Frame> = (0..3_000).map(|_| random_frame(&mut rng)).collect();
    let mut stream = Vec::new();
    for frame in &frames {
        let bytes = encoded(frame);
        assert_eq!(
            decode(&bytes, &limits()),
            Ok(Some((frame.clone(), bytes.len()))),
            "seed {seed}"
        );
        stream.extend_from_slice(&bytes);
    }
    let decoded = decode_in_chunks(&stream, || 1 + rng.index(200));
    assert!(
        decoded == frames,
        "seed {seed}: the stream decoded differently"
    );
}

/// Issue 10, item 3: a vector of every actor a `u16` can name encodes (it cannot grow past
/// that: actor 0 is never an entry), and encoding has no panic path left.
#[test]
fn the_largest_possible_vector_encodes_and_round_trips() {
    let mut vector: VersionVector = (1..=u16::MAX).map(|a| (ActorId(a), 1)).collect();
    vector.observe(EventId::new(9, 0));
    vector.set(ActorId(0), 3);
    assert_eq!(vector.len(), 65535, "actor 0 is never an entry");
    let status = AnyFrame::Server(ServerFrame::Status(Status {
        actor_id: 1,
        counter: 1,
        event_count: 0,
        durable_end: 0,
        vector: vector.clone(),
        members: Vec::new(),
        order: OrderStatus::default(),
        hold: None,
    }));
    let bytes = encoded(&status);
    assert_eq!(decode(&bytes, &limits()), Ok(Some((status, bytes.len()))));
}

#[test]
fn actor_0_in_a_vector_or_member_list_is_malformed() {
    // Vector {0: 5} in a PeerMembers-free PeerProof body.
    let mut body = vec![0; 32]; // proof
    body.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    body.extend_from_slice(&[0, 0]);
    let error = decode_error(&raw_frame(0x45, &body));
    assert!(error.message.contains("actor 0"), "{error}");
    // PeerMembers naming actor 0.
    let body = [0, 1, 0, 0, 0, 1, b'x'];
    let error = decode_error(&raw_frame(0x44, &body));
    assert!(error.message.contains("actor 0"), "{error}");
}

/// Feeds `bytes` to decoder `F` one byte at a time; returns the frames it decoded.
fn decode_bytewise<F: Decode>(bytes: &[u8]) -> Result<Vec<F>, DecodeError> {
    let mut buffered = Vec::new();
    let mut frames = Vec::new();
    for byte in bytes {
        buffered.push(*byte);
        while let Some((frame, consumed)) = super::decode::<F>(&buffered, &limits())? {
            frames.push(frame);
            buffered.drain(..consumed);
        }
    }
    assert!(buffered.is_empty(), "{} bytes left over", buffered.len());
    Ok(frames)
}

#[test]
fn every_frame_decodes_through_its_own_directions_decoder_one_byte_at_a_time() {
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        match frame {
            AnyFrame::Client(frame) => {
                assert_eq!(
                    decode_bytewise::<ClientFrame>(&bytes),
                    Ok(vec![frame.clone()])
                );
                if let ClientFrame::Hello(hello) = frame {
                    let opening = decode_bytewise::<OpeningFrame>(&bytes);
                    assert_eq!(opening, Ok(vec![OpeningFrame::Hello(hello)]));
                }
            }
            AnyFrame::Server(frame) => {
                assert_eq!(
                    decode_bytewise::<ServerFrame>(&bytes),
                    Ok(vec![frame.clone()])
                );
                if let ServerFrame::Error(error) = frame {
                    let peer = decode_bytewise::<PeerFrame>(&bytes);
                    assert_eq!(
                        peer,
                        Ok(vec![PeerFrame::Error(error)]),
                        "Error is a peer frame too"
                    );
                }
            }
            AnyFrame::Peer(frame) => {
                assert_eq!(
                    decode_bytewise::<PeerFrame>(&bytes),
                    Ok(vec![frame.clone()])
                );
                if let PeerFrame::PeerHello(hello) = frame {
                    let opening = decode_bytewise::<OpeningFrame>(&bytes);
                    assert_eq!(opening, Ok(vec![OpeningFrame::PeerHello(hello)]));
                }
            }
        }
    }
}

/// The code each direction's decoder gives a frame it does not take, in the order of checks
/// of protocol.md section 3: a peer kind on a client connection as soon as its kind byte is
/// there, a malformed body before the direction, then the direction.
#[test]
fn each_decoder_refuses_the_other_directions_in_the_order_of_checks() {
    let code = |result: Result<Option<((), usize)>, DecodeError>| result.map_err(|e| e.code);
    fn first<F: Decode>(bytes: &[u8]) -> Result<Option<((), usize)>, DecodeError> {
        super::decode::<F>(bytes, &limits()).map(|d| d.map(|(_, n)| ((), n)))
    }
    let peer_event = encoded(&AnyFrame::Peer(PeerFrame::PeerEvent(event(1, "/x", b""))));
    let peer_welcome = encoded(&AnyFrame::Peer(PeerFrame::PeerWelcome(PeerHandshake {
        protocol_version: PROTOCOL_VERSION,
        actor_id: 2,
        advertised_addr: "h:1".into(),
        nonce: [0; 32],
    })));
    let ack = encoded(&AnyFrame::Server(ServerFrame::Ack(Ack {
        op_id: 1,
        first_id: EventId::new(1, 1),
        count: 1,
        timestamp_ms: 1,
    })));
    let malformed_ack = raw_frame(kind::ACK, &[1, 2, 3]);
    let ping = encoded(&AnyFrame::Client(ClientFrame::Ping { token: 1 }));
    let unknown = raw_frame(0x3f, &[]);
    let unexpected = Err(ErrorCode::UnexpectedFrame);
    let malformed = Err(ErrorCode::MalformedFrame);
    let required = Err(ErrorCode::HandshakeRequired);

    // Client connections: a peer kind is refused from the five header bytes alone.
    assert_eq!(code(first::<ClientFrame>(&peer_event[..5])), unexpected);
    assert_eq!(code(first::<ClientFrame>(&malformed_ack)), malformed);
    assert_eq!(code(first::<ClientFrame>(&ack)), unexpected);
    assert_eq!(code(first::<ClientFrame>(&unknown)), malformed);
    // The first frame: Hello or PeerHello; another peer kind at once, anything else once
    // whole and well-formed.
    assert_eq!(code(first::<OpeningFrame>(&peer_welcome[..5])), unexpected);
    assert_eq!(code(first::<OpeningFrame>(&ping)), required);
    assert_eq!(code(first::<OpeningFrame>(&ack)), required);
    assert_eq!(code(first::<OpeningFrame>(&malformed_ack)), malformed);
    assert_eq!(code(first::<OpeningFrame>(&unknown)), malformed);
    // Peer connections and clients: the body first, then the direction.
    assert_eq!(code(first::<PeerFrame>(&ping[..5])), Ok(None));
    assert_eq!(code(first::<PeerFrame>(&ping)), unexpected);
    assert_eq!(code(first::<PeerFrame>(&ack)), unexpected);
    assert_eq!(code(first::<PeerFrame>(&malformed_ack)), malformed);
    assert_eq!(code(first::<ServerFrame>(&ping)), unexpected);
    assert_eq!(code(first::<ServerFrame>(&peer_event)), unexpected);
    assert_eq!(code(first::<ServerFrame>(&unknown)), malformed);
}

/// The whole range 0x40-0x5F is the peer protocol's (protocol.md section 12): on a client
/// connection a kind of it is refused from the five header bytes as UnexpectedFrame, known or
/// not; on a peer connection an unknown one is MalformedFrame.
#[test]
fn the_whole_peer_range_is_refused_at_the_header_on_a_client_connection() {
    for kind in [0x45u8, 0x50, 0x5f] {
        let header = &raw_frame(kind, &[])[..5];
        let client = super::decode::<ClientFrame>(header, &limits()).map_err(|e| e.code);
        assert_eq!(
            client.err(),
            Some(ErrorCode::UnexpectedFrame),
            "{kind:#04x}"
        );
        let opening = super::decode::<OpeningFrame>(header, &limits()).map_err(|e| e.code);
        assert_eq!(
            opening.err(),
            Some(ErrorCode::UnexpectedFrame),
            "{kind:#04x}"
        );
        let peer = super::decode::<PeerFrame>(header, &limits()).map_err(|e| e.code);
        assert_eq!(peer.err(), Some(ErrorCode::MalformedFrame), "{kind:#04x}");
    }
    // Just outside the range: unknown everywhere.
    for kind in [0x3fu8, 0x60] {
        let header = &raw_frame(kind, &[])[..5];
        let client = super::decode::<ClientFrame>(header, &limits()).map_err(|e| e.code);
        assert_eq!(client.err(), Some(ErrorCode::MalformedFrame), "{kind:#04x}");
    }
}

/// Subscribe's flags byte (protocol.md section 7): bit 0 tail, bit 1 skip_damaged, bit 2 id
/// order (in any combination), the other bits refused, so an option a server does not know is
/// never ignored.
#[test]
fn subscribe_flags_carry_tail_skip_damaged_and_id_order_and_nothing_else() {
    let AnyFrame::Client(ClientFrame::Subscribe(plain)) = subscribe(StartPosition::Beginning)
    else {
        unreachable!("subscribe() builds a Subscribe");
    };
    for flags in 0..=u8::MAX {
        let mut bytes = encoded(&subscribe(StartPosition::Beginning));
        // The flags byte is the fifth from the end, before the u32 credit.
        let at = bytes.len() - 5;
        bytes[at] = flags;
        let decoded = super::decode::<ClientFrame>(&bytes, &limits());
        if flags > 7 {
            assert_eq!(
                decoded.map_err(|e| e.code).err(),
                Some(ErrorCode::MalformedFrame),
                "flags {flags:#04x}"
            );
            continue;
        }
        let expected = Subscribe {
            tail: flags & 1 != 0,
            skip_damaged: flags & 2 != 0,
            order: if flags & 4 != 0 {
                Order::Id
            } else {
                Order::Arrival
            },
            ..plain.clone()
        };
        let frame = decoded
            .expect("defined flags decode")
            .map(|(frame, _)| frame);
        assert_eq!(
            frame,
            Some(ClientFrame::Subscribe(expected)),
            "{flags:#04x}"
        );
    }
}

/// Skipped's and Ack's `count` are at least 1 (protocol.md sections 6 and 7).
#[test]
fn a_zero_count_in_skipped_or_ack_is_malformed() {
    let mut skipped = 7u32.to_be_bytes().to_vec();
    skipped.extend_from_slice(&0u64.to_be_bytes());
    let decoded = super::decode::<ServerFrame>(&raw_frame(kind::SKIPPED, &skipped), &limits());
    assert_eq!(
        decoded.map_err(|e| e.code).err(),
        Some(ErrorCode::MalformedFrame),
        "Skipped with count 0"
    );
    let ack = encoded(&AnyFrame::Server(ServerFrame::Ack(Ack {
        op_id: 1,
        first_id: EventId::new(1, 1),
        count: 0,
        timestamp_ms: 1,
    })));
    let decoded = super::decode::<ServerFrame>(&ack, &limits());
    assert_eq!(
        decoded.map_err(|e| e.code).err(),
        Some(ErrorCode::MalformedFrame),
        "Ack with count 0"
    );
}

/// Issue 15: the peer handshake decoders under a million seeded inputs. Random peer frames
/// of every kind (handshakes with long vectors and member lists, events, credits, clocks,
/// errors), then mutated: bit flips, random bytes, truncations, the length field set to 0, to
/// the limit, one over it and to `u32::MAX`, the kind byte swapped for another peer kind (a
/// valid body in the wrong frame), several frames in a row. Each goes through the opening
/// decoder (the first frame of a connection) and the peer decoder, under the handshake size
/// limit and the full one. No input panics; each decodes to a canonical frame inside the
/// input, asks for more, or fails with a decode error code; and "incomplete" never happens
/// past a length the limit refuses (so nothing over the limit is ever buffered).
#[test]
fn a_million_mutated_peer_frames_decode_or_fail_cleanly() {
    let seed = 0x0015_9EE2;
    let mut rng = Rng::new(seed);
    let handshake_limits = WireLimits {
        frame_size_max: 256 * 1024,
        ..limits()
    };
    let tiny = WireLimits {
        frame_size_max: 96,
        ..limits()
    };
    let count = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let mut input = Vec::new();
    let (mut frames, mut errors, mut incomplete) = (0u32, 0u32, 0u32);
    for round in 0..count {
        input.clear();
        for _ in 0..1 + usize::from(rng.chance(100)) {
            input.extend_from_slice(&encoded(&AnyFrame::Peer(random_peer_frame(&mut rng))));
        }
        mutate_peer_bytes(&mut rng, &mut input);
        let limits = match round % 3 {
            0 => handshake_limits,
            1 => limits(),
            _ => tiny,
        };
        let outcomes = [
            check_typed::<PeerFrame>(&input, &limits, AnyFrame::Peer),
            check_typed::<OpeningFrame>(&input, &limits, |opening| match opening {
                OpeningFrame::Hello(hello) => AnyFrame::Client(ClientFrame::Hello(hello)),
                OpeningFrame::PeerHello(hello) => AnyFrame::Peer(PeerFrame::PeerHello(hello)),
            }),
        ];
        for outcome in outcomes {
            match outcome {
                Outcome::Frame => frames += 1,
                Outcome::Error => errors += 1,
                Outcome::Incomplete => incomplete += 1,
            }
        }
    }
    for (what, seen) in [
        ("frames", frames),
        ("errors", errors),
        ("incomplete", incomplete),
    ] {
        assert!(
            seen > count / 50,
            "seed {seed:#x}: only {seen} {what} of {count}: the generator must reach every outcome"
        );
    }
}

enum Outcome {
    Frame,
    Error,
    Incomplete,
}

/// One typed decode of `bytes`, checked as `check_decode` checks the untyped one, plus: an
/// incomplete frame's announced length is within the limit.
fn check_typed<F: Decode>(
    bytes: &[u8],
    limits: &WireLimits,
    as_any: impl Fn(F) -> AnyFrame,
) -> Outcome {
    match super::decode::<F>(bytes, limits) {
        Ok(None) => {
            if let Some(length) = bytes.get(..4) {
                let length = u32::from_be_bytes(length.try_into().expect("four bytes"));
                assert!(
                    length != 0 && length <= limits.frame_size_max - 4,
                    "incomplete under a length of {length}, which the limit {} refuses",
                    limits.frame_size_max
                );
            }
            Outcome::Incomplete
        }
        Ok(Some((frame, consumed))) => {
            assert!(consumed <= bytes.len());
            let frame = as_any(frame);
            if matches!(&frame, AnyFrame::Client(ClientFrame::Hello(hello)) if hello.protocol_version != PROTOCOL_VERSION)
                || is_unknown_error(&frame)
            {
                return Outcome::Frame;
            }
            assert_eq!(
                encoded(&frame),
                bytes[..consumed],
                "not canonical: {frame:?}"
            );
            Outcome::Frame
        }
        Err(error) => {
            assert!(
                matches!(
                    error.code,
                    ErrorCode::MalformedFrame
                        | ErrorCode::FrameTooLarge
                        | ErrorCode::UnexpectedFrame
                        | ErrorCode::HandshakeRequired
                ),
                "{error}"
            );
            assert!(!error.message.is_empty());
            Outcome::Error
        }
    }
}

fn random_vector(rng: &mut Rng, entries_max: usize) -> VersionVector {
    (0..rng.index(entries_max + 1))
        .map(|_| {
            (
                ActorId(1 + rng.below(u64::from(u16::MAX)) as u16),
                rng.next_u64(),
            )
        })
        .collect()
}

fn random_members(rng: &mut Rng, count_max: usize) -> Vec<Member> {
    (0..rng.index(count_max + 1))
        .map(|_| Member {
            actor_id: 1 + rng.below(u64::from(u16::MAX)) as u16,
            addr: format!(
                "10.0.{}.{}:{}",
                rng.below(256),
                rng.below(256),
                rng.below(65536)
            ),
        })
        .collect()
}

fn random_peer_frame(rng: &mut Rng) -> PeerFrame {
    let mut nonce = [0u8; 32];
    nonce.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
    let handshake = |rng: &mut Rng| PeerHandshake {
        protocol_version: if rng.chance(900) {
            1
        } else {
            rng.below(4) as u16
        },
        actor_id: rng.below(8) as u16,
        advertised_addr: if rng.chance(800) {
            format!("127.0.0.1:{}", rng.below(65536))
        } else {
            random_text(rng, 24)
        },
        nonce,
    };
    // Mostly small vectors and member lists; sometimes long ones (a handshake frame may
    // carry up to the handshake limit).
    let size = if rng.chance(5) { 2000 } else { 4 };
    match rng.below(10) {
        0 => PeerFrame::PeerHello(handshake(rng)),
        1 => PeerFrame::PeerWelcome(handshake(rng)),
        2 => PeerFrame::PeerProof(PeerProof {
            proof: nonce,
            vector: random_vector(rng, size),
            members: random_members(rng, size / 4),
        }),
        3 => PeerFrame::PeerAccept(PeerProof {
            proof: nonce,
            vector: random_vector(rng, size),
            members: random_members(rng, size / 4),
        }),
        4 => PeerFrame::PeerEvent(Event {
            id: EventId::new(rng.next_u64() >> rng.below(64), rng.below(8) as u16),
            parent_id: rng.chance(300).then(|| EventId::new(rng.next_u64(), 1)),
            namespace: random_text(rng, 32),
            timestamp_ms: rng.next_u64(),
            data: random_bytes(rng, 64),
        }),
        5 => PeerFrame::PeerCredit {
            count: rng.next_u64() as u32,
        },
        6 => PeerFrame::PeerMembers(random_members(rng, size / 4)),
        7 => PeerFrame::PeerClock {
            counter: rng.next_u64(),
        },
        _ => PeerFrame::Error(ErrorFrame {
            scope: ErrorScope::Connection,
            code: ErrorCode::AuthFailed,
            message: random_text(rng, 40),
        }),
    }
}

/// Mutates encoded peer frames in place (or leaves them valid, a fifth of the time).
fn mutate_peer_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const PEER_KINDS: [u8; 10] = [0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x23];
    match rng.below(10) {
        0 | 1 => {}
        2 | 3 => {
            for _ in 0..1 + rng.below(4) {
                let index = rng.index(bytes.len());
                bytes[index] ^= 1 << rng.below(8);
            }
        }
        4 => {
            let index = rng.index(bytes.len());
            bytes[index] = rng.next_u64() as u8;
        }
        5 | 6 => bytes.truncate(rng.index(bytes.len())),
        7 => {
            let length: u32 = match rng.below(5) {
                0 => 0,
                1 => 256 * 1024 - 4,
                2 => 256 * 1024 - 3,
                3 => u32::MAX,
                _ => (bytes.len() as u32).saturating_sub(4) ^ (1 << rng.below(20)),
            };
            bytes[..4].copy_from_slice(&length.to_be_bytes());
        }
        8 => bytes[4] = PEER_KINDS[rng.index(PEER_KINDS.len())],
        _ => bytes.extend((0..rng.below(16)).map(|_| rng.next_u64() as u8)),
    }
}

/// `encode_ack` builds the frame as one array: it must give the bytes of the general path
/// (`write_frame` with `Ack::write`) for any field values, and its size constant must match.
#[test]
fn the_fixed_size_ack_encoder_writes_the_general_encoders_bytes() {
    let mut rng = Rng::new(0xac4_0001);
    let extremes = [0, 1, u64::MAX];
    for round in 0..1000 {
        let pick = |rng: &mut Rng| match round % 4 {
            0 => extremes[rng.index(extremes.len())],
            _ => rng.next_u64(),
        };
        let ack = Ack {
            op_id: pick(&mut rng),
            first_id: EventId::new(pick(&mut rng), pick(&mut rng) as u16),
            count: pick(&mut rng) as u32,
            timestamp_ms: pick(&mut rng),
        };
        let mut general = vec![0xEE];
        write_frame(&mut general, kind::ACK, |w| ack.write(w));
        let mut fixed = vec![0xEE];
        encode_ack(&ack, &mut fixed);
        assert_eq!(fixed, general, "{ack:?}");
        assert_eq!(fixed.len(), 1 + ACK_FRAME_SIZE);
    }
}

/// An Error whose code this build does not know decodes as `ErrorCode::Unknown` with the number
/// moved into its message, so it does not re-encode to the bytes it came from (nothing sends
/// `Unknown`: it exists only on the receiving side).
fn is_unknown_error(frame: &AnyFrame) -> bool {
    matches!(
        frame,
        AnyFrame::Server(ServerFrame::Error(ErrorFrame {
            code: ErrorCode::Unknown,
            ..
        })) | AnyFrame::Peer(PeerFrame::Error(ErrorFrame {
            code: ErrorCode::Unknown,
            ..
        }))
    )
}

/// A client frame with a length-prefixed field over 65535 bytes is not encoded: it says
/// which field and appends nothing (attack round 17: the encoder panicked, and the
/// NamespacesRequest's glob was cut to 65535 bytes, asking for another glob).
#[test]
fn a_client_field_over_65535_bytes_is_refused_not_encoded() {
    let long = "/".to_string() + &"a".repeat(70_000);
    let frames = [
        (
            ClientFrame::GroupsRequest(GroupsRequest {
                group: long[1..].to_string(),
                after: String::new(),
            }),
            "group name",
        ),
        (
            ClientFrame::NamespacesRequest(NamespacesRequest {
                glob: long.clone(),
                after: String::new(),
            }),
            "glob",
        ),
        (
            ClientFrame::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client_name: "c".into(),
                auth_token: long.as_bytes().to_vec(),
            }),
            "auth token",
        ),
    ];
    for (frame, what) in frames {
        let mut out = vec![7];
        let error = frame.try_encode(&mut out).expect_err(what);
        assert_eq!(error.what, what);
        assert!(error.size >= 70_000, "{error}");
        assert_eq!(out, [7], "{what}: bytes appended");
    }
    // Within the limit, the same bytes as `encode`.
    let frame = ClientFrame::NamespacesRequest(NamespacesRequest {
        glob: "/a/**".into(),
        after: "/a/b".into(),
    });
    let (mut tried, mut encoded) = (Vec::new(), Vec::new());
    frame.try_encode(&mut tried).expect("fits");
    encode(&frame, &mut encoded);
    assert_eq!(tried, encoded);
}

/// A ProduceIf's bad expectation is refused with a message that names the frame, as the other
/// MalformedFrame messages do (review18, finding 8: "expectation 2 needs an expected id"
/// carried no "ProduceIf frame (kind 0x12): " prefix), by both decoders.
#[test]
fn a_bad_produce_if_expectation_names_its_frame() {
    let encoded = |expect| {
        let mut bytes = Vec::new();
        let events = vec![new_event("/a", None, b"x")];
        let frame = ProduceIf {
            op_id: 1,
            expect,
            events,
        };
        encode(&ClientFrame::ProduceIf(frame), &mut bytes);
        bytes
    };
    // The expectation byte follows the header and the op id.
    let at = HEADER_SIZE + 8;
    let mut with_id = encoded(Expectation::LastIs(EventId::new(7, 2)));
    with_id[at] = 1;
    let mut without_id = encoded(Expectation::NoEvents);
    without_id[at] = 2;
    let mut unknown = encoded(Expectation::NoEvents);
    unknown[at] = 9;
    for (bytes, message) in [
        (with_id, "only expectation 2 has an expected id"),
        (without_id, "expectation 2 needs an expected id"),
        (unknown, "unknown expectation 9"),
    ] {
        let expected = format!("ProduceIf frame (kind 0x12): {message}");
        let error = super::decode::<ClientFrame>(&bytes, &limits()).unwrap_err();
        assert_eq!(
            (error.code, error.message),
            (ErrorCode::MalformedFrame, expected.clone())
        );
        let error =
            decode_produce_many_view(&bytes, &limits(), usize::MAX, &mut Vec::new()).unwrap_err();
        assert_eq!(
            (error.code, error.message),
            (ErrorCode::MalformedFrame, expected)
        );
    }
}
