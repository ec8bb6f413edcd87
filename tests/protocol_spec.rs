//! Keeps protocol.md and the codec from drifting apart: every ```hex block in protocol.md must
//! decode, with the default limits, to exactly one whole frame that re-encodes to the same
//! bytes; every frame kind, start position kind and error scope must have at least one
//! example; and the error table's names and "closes" column must match `ErrorCode`.

use std::collections::BTreeSet;

use flo::config::WireLimits;
use flo::protocol::{
    decode, encode, frame_kind, kind, kind_name, AnyFrame, ClientFrame, ServerFrame,
};

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// One ```hex block: the line it starts on and its bytes.
struct HexExample {
    line: usize,
    bytes: Vec<u8>,
}

/// Extracts the ```hex blocks: whitespace-separated pairs of hex digits, `#` to the end of the
/// line is a comment.
fn hex_examples(markdown: &str) -> Vec<HexExample> {
    let mut examples = Vec::new();
    let mut current: Option<HexExample> = None;
    for (index, line) in markdown.lines().enumerate() {
        let line_number = index + 1;
        match current.as_mut() {
            None if line.trim() == "```hex" => {
                current = Some(HexExample {
                    line: line_number,
                    bytes: Vec::new(),
                })
            }
            None => {}
            Some(_) if line.trim() == "```" => examples.extend(current.take()),
            Some(example) => {
                let code = line.split('#').next().unwrap_or("");
                for pair in code.split_whitespace() {
                    let byte = u8::from_str_radix(pair, 16).unwrap_or_else(|_| {
                        panic!("protocol.md line {line_number}: {pair:?} is not a hex byte")
                    });
                    assert_eq!(pair.len(), 2, "protocol.md line {line_number}: {pair:?}");
                    example.bytes.push(byte);
                }
            }
        }
    }
    assert!(current.is_none(), "protocol.md ends inside a ```hex block");
    examples
}

#[test]
fn every_hex_example_decodes_to_one_frame_and_re_encodes_byte_for_byte() {
    let examples = hex_examples(&protocol_md());
    assert!(examples.len() >= 20, "only {} examples", examples.len());
    for example in &examples {
        let line = example.line;
        let (frame, consumed) = match decode::<AnyFrame>(&example.bytes, &WireLimits::default()) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => panic!("protocol.md line {line}: incomplete frame"),
            Err(error) => panic!("protocol.md line {line}: {error}"),
        };
        assert_eq!(
            consumed,
            example.bytes.len(),
            "protocol.md line {line}: the block holds more than one frame"
        );
        let mut encoded = Vec::new();
        encode(&frame, &mut encoded);
        assert_eq!(
            encoded, example.bytes,
            "protocol.md line {line}: {frame:?} re-encodes differently"
        );
    }
}

#[test]
fn every_frame_kind_has_an_example() {
    let examples = hex_examples(&protocol_md());
    let documented: BTreeSet<u8> = examples
        .iter()
        .filter_map(|example| decode::<AnyFrame>(&example.bytes, &WireLimits::default()).ok()?)
        .map(|(frame, _)| frame_kind(&frame))
        .collect();
    let all_kinds = [
        kind::HELLO,
        kind::PRODUCE,
        kind::PRODUCE_BATCH,
        kind::SUBSCRIBE,
        kind::CREDIT,
        kind::UNSUBSCRIBE,
        kind::PING,
        kind::WELCOME,
        kind::ACK,
        kind::ERROR,
        kind::EVENT,
        kind::CAUGHT_UP,
        kind::END,
        kind::PONG,
        kind::STATUS_REQUEST,
        kind::STATUS,
        kind::SKIPPED,
        kind::INFO_REQUEST,
        kind::INFO,
        kind::NAMESPACES_REQUEST,
        kind::NAMESPACES,
        kind::TRACE_REQUEST,
        kind::TRACE,
        kind::PEER_HELLO,
        kind::PEER_WELCOME,
        kind::PEER_EVENT,
        kind::PEER_CREDIT,
        kind::PEER_MEMBERS,
        kind::PEER_PROOF,
        kind::PEER_ACCEPT,
        kind::MEMBERS_REQUEST,
        kind::CHANGE_MEMBER,
        kind::MEMBERS,
        kind::PEER_MEMBERSHIP,
        kind::GROUP_ACK_RANGE,
        kind::GROUP_PROGRESS,
        kind::GROUPS_DETAIL_REQUEST,
        kind::GROUPS_DETAIL,
    ];
    for kind in all_kinds {
        assert!(
            documented.contains(&kind),
            "no example for {} ({kind:#04x})",
            kind_name(kind)
        );
    }
}

/// Every start position kind and every error scope has its own example.
#[test]
fn every_start_position_and_error_scope_has_an_example() {
    use flo::event::StartPosition;
    use flo::protocol::ErrorScope;
    let frames: Vec<AnyFrame> = hex_examples(&protocol_md())
        .iter()
        .filter_map(|example| decode::<AnyFrame>(&example.bytes, &WireLimits::default()).ok()?)
        .map(|(frame, _)| frame)
        .collect();
    let starts: BTreeSet<&str> = frames
        .iter()
        .filter_map(|frame| match frame {
            AnyFrame::Client(ClientFrame::Subscribe(subscribe)) => Some(match subscribe.start {
                StartPosition::Beginning => "beginning",
                StartPosition::End => "end",
                StartPosition::AfterId(_) => "after id",
                StartPosition::Cursor(_) => "cursor",
                StartPosition::Timestamp(_) => "timestamp",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 5, "start positions with examples: {starts:?}");
    let scopes: BTreeSet<&str> = frames
        .iter()
        .filter_map(|frame| match frame {
            AnyFrame::Server(ServerFrame::Error(error)) => Some(match error.scope {
                ErrorScope::Connection => "connection",
                ErrorScope::Produce(_) => "produce",
                ErrorScope::Subscription(_) => "subscription",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(scopes.len(), 3, "error scopes with examples: {scopes:?}");
}

/// The error table in protocol.md says, for each code, whether the connection closes; it must
/// agree with `ErrorCode::closes_connection`. Its last column, the client action, must be
/// filled in.
#[test]
fn the_error_table_matches_the_code() {
    use flo::protocol::ErrorCode;
    let markdown = protocol_md();
    let mut rows = 0;
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | code | name | meaning | closes | client action |
        let [_, code, name, _, closes, ref rest @ ..] = cells[..] else {
            continue;
        };
        let Ok(code) = code.parse::<u16>() else {
            continue;
        };
        if closes != "yes" && closes != "no" {
            continue;
        }
        let [action, ""] = rest[..] else {
            panic!("the row of code {code} needs exactly one more column, the client action");
        };
        assert!(
            !action.is_empty(),
            "the client action of code {code} is empty"
        );
        let error_code = ErrorCode::from_u16(code)
            .unwrap_or_else(|| panic!("protocol.md lists unknown error code {code}"));
        assert_eq!(format!("{error_code:?}"), name, "name of code {code}");
        assert_eq!(
            error_code.closes_connection(),
            closes == "yes",
            "closes-connection of {name}"
        );
        rows += 1;
    }
    let codes_in_rust = (0..=u16::MAX)
        .filter(|code| ErrorCode::from_u16(*code).is_some())
        .count();
    assert_eq!(rows, codes_in_rust, "every error code has one row");
}

/// The proofs in the PeerProof and PeerAccept examples are the real HMAC-SHA256 proofs, with the
/// secret "s3cret", for the nonces and actor ids of the PeerHello and PeerWelcome examples; so a
/// client in another language can check its proof computation against protocol.md.
#[test]
fn the_peer_handshake_examples_carry_valid_proofs() {
    use flo::protocol::{PeerFrame, PeerRole, PeerTranscript};
    let frames: Vec<PeerFrame> = hex_examples(&protocol_md())
        .iter()
        .filter_map(|example| decode::<AnyFrame>(&example.bytes, &WireLimits::default()).ok()?)
        .filter_map(|(frame, _)| match frame {
            AnyFrame::Peer(frame) => Some(frame),
            _ => None,
        })
        .collect();
    let find = |kind: u8| {
        let found = frames.iter().find(|f| frame_kind(*f) == kind);
        found.unwrap_or_else(|| panic!("no {} example", kind_name(kind)))
    };
    let (PeerFrame::PeerHello(hello), PeerFrame::PeerWelcome(welcome)) =
        (find(kind::PEER_HELLO), find(kind::PEER_WELCOME))
    else {
        unreachable!("found by kind")
    };
    let (PeerFrame::PeerProof(proof), PeerFrame::PeerAccept(accept)) =
        (find(kind::PEER_PROOF), find(kind::PEER_ACCEPT))
    else {
        unreachable!("found by kind")
    };
    let transcript = PeerTranscript {
        dialer_nonce: hello.nonce,
        acceptor_nonce: welcome.nonce,
        dialer_actor: hello.actor_id,
        acceptor_actor: welcome.actor_id,
        channel_binding: None,
    };
    assert!(transcript.verify(b"s3cret", PeerRole::Dialer, &proof.proof));
    assert!(transcript.verify(b"s3cret", PeerRole::Acceptor, &accept.proof));
}
