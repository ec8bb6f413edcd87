//! The codec between [`Frame`] values and the bytes of protocol v1, as `protocol.md` describes
//! them. Pure: bytes in, frames out, no I/O.
//!
//! Every frame type has one [`WireFormat`] implementation whose `write` and `read` sit side by
//! side and list the fields in the same order, so the two directions cannot drift apart; the
//! hex examples in `protocol.md` are checked against this code by `tests/protocol_spec.rs`.
//!
//! Decoding never panics and never allocates more than the frame it was given: the length
//! prefix is checked against `frame_size_max` as soon as its four bytes are known, and every
//! inner length is checked against the limits and against the bytes left in the frame before
//! anything is copied.

mod groups;
mod members;
mod peer;
mod reader_writer;
pub use groups::{
    GROUPS_FRAME_EMPTY_SIZE, GROUP_DETAIL_EXTRA_SIZE, GROUP_INFO_FIXED_SIZE,
    GROUP_MEMBER_CONNECTION_TEXT_MAX, GROUP_MEMBER_FIXED_SIZE, PARKED_ENTRY_SIZE,
    PARKED_FRAME_EMPTY_SIZE,
};
mod purge;
pub use purge::{PURGES_FRAME_EMPTY_SIZE, PURGE_RULE_FIXED_SIZE, RETENTION_INFO_FIXED_SIZE};
mod status;
mod streams;
pub use streams::{NAMESPACES_FRAME_EMPTY_SIZE, TRACE_FRAME_EMPTY_SIZE};

use std::fmt;

use super::frame::*;
use crate::config::WireLimits;
use crate::event::{
    ActorId, Cursor, Event, EventId, EventRef, PurgeRule, StartPosition, VersionVector,
};
use members::{read_member_entries, read_membership, write_member_entries, write_membership};
use peer::{read_members, write_members};
use reader_writer::{Reader, Writer};
use status::{read_status_options, STATUS_OPTION_HOLD};

/// The bytes of the length prefix.
const LENGTH_SIZE: usize = 4;
/// The length prefix plus the kind byte.
const HEADER_SIZE: usize = LENGTH_SIZE + 1;

/// Why bytes could not be decoded into a frame. Every decode error closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// [`ErrorCode::MalformedFrame`], [`ErrorCode::FrameTooLarge`], or
    /// [`ErrorCode::UnexpectedFrame`] for the reserved peer kinds.
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn malformed(message: String) -> DecodeError {
        DecodeError {
            code: ErrorCode::MalformedFrame,
            message,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes the frame at the start of `buf` as a receiver of `F` frames takes it.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more bytes and call again),
/// `Ok(Some((frame, consumed)))` when it holds a whole one, and an error as soon as the bytes
/// cannot be the start of a valid frame, in the order of protocol.md (section 3): a length
/// over `limits.frame_size_max` is reported when the four length bytes are known; an unknown
/// kind, or one `F` refuses as soon as it is known, when the fifth byte is; a malformed body
/// when the whole frame is there; and a well-formed frame of another direction after that.
pub fn decode<F: Decode>(
    buf: &[u8],
    limits: &WireLimits,
) -> Result<Option<(F, usize)>, DecodeError> {
    let Some(kind) = decode_header(buf, limits)? else {
        return Ok(None);
    };
    let Some(direction) = direction_of(kind) else {
        // 0x40-0x5F is the peer protocol's range, known kind or not: a receiver that refuses
        // peer kinds refuses the whole range (UnexpectedFrame); to a peer an unknown kind in
        // it is malformed like any other.
        if PEER_KINDS.contains(&kind) {
            if let Some(error) = F::refuse_at_header(Direction::PeerToPeer, kind) {
                return Err(error);
            }
        }
        return Err(DecodeError::malformed(format!(
            "unknown frame kind {kind:#04x}"
        )));
    };
    if let Some(error) = F::refuse_at_header(direction, kind) {
        return Err(error);
    }
    let frame_size = frame_size_of(buf);
    // `frame_size` is at most `frame_size_max`, a u32, so it fits in a usize.
    let Some(body) = buf.get(HEADER_SIZE..frame_size as usize) else {
        return Ok(None);
    };
    let mut reader = Reader {
        body,
        position: 0,
        kind,
        limits,
    };
    let frame = read_frame(&mut reader)?;
    reader.finish()?;
    Ok(Some((F::accept(frame)?, frame_size as usize)))
}

/// Decodes a frame as a server takes it on a client connection (after Hello).
pub fn decode_client(
    buf: &[u8],
    limits: &WireLimits,
) -> Result<Option<(ClientFrame, usize)>, DecodeError> {
    decode(buf, limits)
}

/// Decodes a frame as a client takes it from a server.
pub fn decode_server(
    buf: &[u8],
    limits: &WireLimits,
) -> Result<Option<(ServerFrame, usize)>, DecodeError> {
    decode(buf, limits)
}

/// Decodes a frame as a node takes it on a peer connection.
pub fn decode_peer(
    buf: &[u8],
    limits: &WireLimits,
) -> Result<Option<(PeerFrame, usize)>, DecodeError> {
    decode(buf, limits)
}

/// Decodes the first frame a server receives on a new connection.
pub fn decode_opening(
    buf: &[u8],
    limits: &WireLimits,
) -> Result<Option<(OpeningFrame, usize)>, DecodeError> {
    decode(buf, limits)
}

/// Who sends a frame kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
    /// Error (0x23) is `ServerToClient`; peers send it too (see [`PeerFrame`]).
    PeerToPeer,
}

/// The kinds reserved for the peer protocol (protocol.md section 12), known or not.
const PEER_KINDS: std::ops::RangeInclusive<u8> = 0x40..=0x5f;

/// The direction of a known kind; `None` for an unknown one.
fn direction_of(kind: u8) -> Option<Direction> {
    use Direction::*;
    Some(match kind {
        kind::HELLO
        | kind::PRODUCE
        | kind::PRODUCE_BATCH
        | kind::SUBSCRIBE
        | kind::CREDIT
        | kind::UNSUBSCRIBE
        | kind::PING
        | kind::STATUS_REQUEST
        | kind::JOIN_GROUP
        | kind::GROUP_ACK
        | kind::GROUP_NACK
        | kind::LEAVE_GROUP
        | kind::SET_REPLICAS
        | kind::GROUPS_REQUEST
        | kind::PARKED_REQUEST
        | kind::GROUP_ADMIN
        | kind::GROUPS_DETAIL_REQUEST
        | kind::GROUP_ACK_RANGE
        | kind::GROUP_PROGRESS
        | kind::PRODUCE_IF
        | kind::SET_PRODUCER
        | kind::NAMESPACES_REQUEST
        | kind::TRACE_REQUEST
        | kind::INFO_REQUEST
        | kind::MEMBERS_REQUEST
        | kind::CHANGE_MEMBER
        | kind::PURGE
        | kind::PURGES_REQUEST => ClientToServer,
        kind::WELCOME
        | kind::ACK
        | kind::ERROR
        | kind::EVENT
        | kind::CAUGHT_UP
        | kind::END
        | kind::PONG
        | kind::STATUS
        | kind::SKIPPED
        | kind::GROUPS
        | kind::GROUPS_DETAIL
        | kind::PARKED
        | kind::NAMESPACES
        | kind::TRACE
        | kind::INFO
        | kind::MEMBERS
        | kind::PURGED
        | kind::PURGES => ServerToClient,
        kind::PEER_HELLO
        | kind::PEER_WELCOME
        | kind::PEER_EVENT
        | kind::PEER_CREDIT
        | kind::PEER_MEMBERS
        | kind::PEER_PROOF
        | kind::PEER_ACCEPT
        | kind::PEER_CLOCK
        | kind::PEER_MEMBERSHIP
        | kind::PEER_PURGE => PeerToPeer,
        _ => return None,
    })
}

/// A well-formed frame of any direction, as the body decoder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyFrame {
    Client(ClientFrame),
    Server(ServerFrame),
    Peer(PeerFrame),
}

fn unexpected(message: &str) -> DecodeError {
    DecodeError {
        code: ErrorCode::UnexpectedFrame,
        message: message.to_string(),
    }
}

/// The frames one receiver takes: which kinds it refuses before their body, and which
/// well-formed frames it accepts.
pub trait Decode: Sized {
    /// Check 2 of protocol.md section 3, beyond the unknown kind: `Some` refuses the frame as
    /// soon as its kind byte is known.
    fn refuse_at_header(_direction: Direction, _kind: u8) -> Option<DecodeError> {
        None
    }
    /// Check 4, for frames of another direction: the frame was well-formed but this receiver
    /// never takes it.
    fn accept(frame: AnyFrame) -> Result<Self, DecodeError>;
}

impl Decode for ClientFrame {
    fn refuse_at_header(direction: Direction, _kind: u8) -> Option<DecodeError> {
        match direction {
            Direction::PeerToPeer => Some(unexpected("a peer frame on a client connection")),
            Direction::ClientToServer | Direction::ServerToClient => None,
        }
    }

    fn accept(frame: AnyFrame) -> Result<ClientFrame, DecodeError> {
        match frame {
            AnyFrame::Client(frame) => Ok(frame),
            AnyFrame::Server(_) => Err(unexpected("a server frame was sent by a client")),
            // Refused at the header.
            AnyFrame::Peer(_) => Err(unexpected("a peer frame on a client connection")),
        }
    }
}

impl Decode for ServerFrame {
    fn accept(frame: AnyFrame) -> Result<ServerFrame, DecodeError> {
        match frame {
            AnyFrame::Server(frame) => Ok(frame),
            AnyFrame::Client(_) => Err(unexpected("a client frame was sent by a server")),
            AnyFrame::Peer(_) => Err(unexpected("a peer frame was sent by a server")),
        }
    }
}

impl Decode for PeerFrame {
    fn accept(frame: AnyFrame) -> Result<PeerFrame, DecodeError> {
        let message = "a client or server frame on a peer connection";
        match frame {
            AnyFrame::Peer(frame) => Ok(frame),
            AnyFrame::Server(ServerFrame::Error(error)) => Ok(PeerFrame::Error(error)),
            AnyFrame::Server(
                ServerFrame::Welcome(_)
                | ServerFrame::Ack(_)
                | ServerFrame::Event { .. }
                | ServerFrame::CaughtUp { .. }
                | ServerFrame::End { .. }
                | ServerFrame::Pong { .. }
                | ServerFrame::Status(_)
                | ServerFrame::Skipped { .. }
                | ServerFrame::Groups(_)
                | ServerFrame::GroupsDetail(_)
                | ServerFrame::Parked(_)
                | ServerFrame::Namespaces(_)
                | ServerFrame::Trace(_)
                | ServerFrame::Info(_)
                | ServerFrame::Members(_)
                | ServerFrame::Purged(_)
                | ServerFrame::Purges(_),
            ) => Err(unexpected(message)),
            AnyFrame::Client(_) => Err(unexpected(message)),
        }
    }
}

/// Any frame of any direction, for tools and tests that watch both directions of a stream.
impl Decode for AnyFrame {
    fn accept(frame: AnyFrame) -> Result<AnyFrame, DecodeError> {
        Ok(frame)
    }
}

impl Decode for OpeningFrame {
    fn refuse_at_header(direction: Direction, kind: u8) -> Option<DecodeError> {
        match direction {
            Direction::PeerToPeer if kind != kind::PEER_HELLO => {
                Some(unexpected("a peer frame on a client connection"))
            }
            Direction::PeerToPeer | Direction::ClientToServer | Direction::ServerToClient => None,
        }
    }

    fn accept(frame: AnyFrame) -> Result<OpeningFrame, DecodeError> {
        let required = || DecodeError {
            code: ErrorCode::HandshakeRequired,
            message: "the first frame must be Hello (or PeerHello from a cluster peer)".into(),
        };
        match frame {
            AnyFrame::Client(ClientFrame::Hello(hello)) => Ok(OpeningFrame::Hello(hello)),
            AnyFrame::Peer(PeerFrame::PeerHello(hello)) => Ok(OpeningFrame::PeerHello(hello)),
            AnyFrame::Client(
                ClientFrame::Produce(_)
                | ClientFrame::ProduceBatch(_)
                | ClientFrame::Subscribe(_)
                | ClientFrame::Credit { .. }
                | ClientFrame::Unsubscribe { .. }
                | ClientFrame::Ping { .. }
                | ClientFrame::StatusRequest { .. }
                | ClientFrame::JoinGroup(_)
                | ClientFrame::GroupAck(_)
                | ClientFrame::GroupNack(_)
                | ClientFrame::LeaveGroup { .. }
                | ClientFrame::SetReplicas { .. }
                | ClientFrame::GroupsRequest(_)
                | ClientFrame::ParkedRequest(_)
                | ClientFrame::GroupAdmin(_)
                | ClientFrame::GroupsDetailRequest(_)
                | ClientFrame::GroupAckRange(_)
                | ClientFrame::GroupProgress(_)
                | ClientFrame::ProduceIf(_)
                | ClientFrame::SetProducer { .. }
                | ClientFrame::NamespacesRequest(_)
                | ClientFrame::TraceRequest { .. }
                | ClientFrame::InfoRequest
                | ClientFrame::MembersRequest
                | ClientFrame::ChangeMember(_)
                | ClientFrame::Purge(_)
                | ClientFrame::PurgesRequest,
            ) => Err(required()),
            AnyFrame::Server(_) => Err(required()),
            // Refused at the header.
            AnyFrame::Peer(
                PeerFrame::PeerWelcome(_)
                | PeerFrame::PeerProof(_)
                | PeerFrame::PeerAccept(_)
                | PeerFrame::PeerEvent(_)
                | PeerFrame::PeerCredit { .. }
                | PeerFrame::PeerMembers(_)
                | PeerFrame::PeerClock { .. }
                | PeerFrame::PeerMembership(_)
                | PeerFrame::PeerPurge(_)
                | PeerFrame::Error(_),
            ) => Err(unexpected("a peer frame on a client connection")),
        }
    }
}

/// The size of the frame whose length field starts `buf` (at least 4 bytes).
fn frame_size_of(buf: &[u8]) -> u64 {
    let mut length = [0u8; LENGTH_SIZE];
    length.copy_from_slice(&buf[..LENGTH_SIZE]);
    u64::from(u32::from_be_bytes(length)) + LENGTH_SIZE as u64
}

/// How many more bytes the frame at the start of `buf` needs before [`decode`] can take it
/// whole: up to its five header bytes while they are not all there, then up to the size its
/// length field gives; 0 when it is whole (or its length is 0, which the decoder refuses once
/// the header is there). No limit is checked: a caller that tops up a partial frame with it
/// decodes after every top-up, and the decoder refuses a length over the limit.
pub fn frame_bytes_missing(buf: &[u8]) -> usize {
    if buf.len() < HEADER_SIZE {
        return HEADER_SIZE - buf.len();
    }
    // At most 2^32 + 3, which fits in the usize of every target flo builds for (64 bits), and
    // saturates on others rather than wrapping.
    let frame_size = usize::try_from(frame_size_of(buf)).unwrap_or(usize::MAX);
    frame_size.saturating_sub(buf.len())
}

/// The first two checks of every frame, in the order protocol.md (section 3) gives them: the
/// length (0 is malformed, over `frame_size_max` too large), then the kind byte, which is
/// returned unchecked so that a caller can refuse kinds by connection state before the
/// unknown-kind check. `Ok(None)` until the five header bytes are there.
pub fn decode_header(buf: &[u8], limits: &WireLimits) -> Result<Option<u8>, DecodeError> {
    let Some(length_bytes) = buf.get(..LENGTH_SIZE) else {
        return Ok(None);
    };
    let mut length = [0u8; LENGTH_SIZE];
    length.copy_from_slice(length_bytes);
    let length = u32::from_be_bytes(length);
    if length == 0 {
        return Err(DecodeError::malformed(
            "frame length 0: a frame has at least its kind byte".to_string(),
        ));
    }
    let frame_size = u64::from(length) + LENGTH_SIZE as u64;
    if frame_size > u64::from(limits.frame_size_max) {
        return Err(DecodeError {
            code: ErrorCode::FrameTooLarge,
            message: format!(
                "frame of {frame_size} bytes is over the limit of {} bytes",
                limits.frame_size_max
            ),
        });
    }
    Ok(buf.get(LENGTH_SIZE).copied())
}

/// Appends the bytes of `frame` (a [`ClientFrame`], [`ServerFrame`] or [`PeerFrame`]) to `out`.
///
/// Panics if a namespace, glob or auth token is longer than 65535 bytes, if a cursor has more
/// than 65535 entries or if event data is 4 GiB or more: callers validate these against the
/// limits from Welcome before encoding. Free text (names, messages) is truncated instead.
pub fn encode<F: Encode>(frame: &F, out: &mut Vec<u8>) {
    frame.encode(out)
}

/// A frame that can be sent.
pub trait Encode {
    /// Appends the frame's bytes to `out` (see [`encode`]).
    fn encode(&self, out: &mut Vec<u8>);
    /// The frame's kind byte.
    fn kind(&self) -> u8;
}

impl ClientFrame {
    /// Appends the frame's bytes to `out`, or nothing when one of its length-prefixed fields
    /// (a glob, a group name, an auth token, ...) is over 65535 bytes. [`Encode::encode`]
    /// panics on such a frame instead; a client encodes what its user gave with this.
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), FieldTooLong> {
        let kind = self.kind();
        match self {
            ClientFrame::Hello(hello) => try_write_frame(out, kind, |w| hello.write(w)),
            ClientFrame::Produce(produce) => try_write_frame(out, kind, |w| produce.write(w)),
            ClientFrame::ProduceBatch(batch) => try_write_frame(out, kind, |w| batch.write(w)),
            ClientFrame::Subscribe(subscribe) => try_write_frame(out, kind, |w| subscribe.write(w)),
            ClientFrame::Credit {
                subscription_id,
                count,
            } => try_write_frame(out, kind, |w| {
                w.put_u32(*subscription_id);
                w.put_u32(*count);
            }),
            ClientFrame::Unsubscribe { subscription_id } => {
                try_write_frame(out, kind, |w| w.put_u32(*subscription_id))
            }
            ClientFrame::Ping { token } => try_write_frame(out, kind, |w| w.put_u64(*token)),
            // The option byte only when an option is set: one encoding per request.
            ClientFrame::StatusRequest { hold } => try_write_frame(out, kind, |w| {
                if *hold {
                    w.put_u8(STATUS_OPTION_HOLD);
                }
            }),
            ClientFrame::JoinGroup(join) => try_write_frame(out, kind, |w| join.write(w)),
            ClientFrame::GroupAck(ack) | ClientFrame::GroupProgress(ack) => {
                try_write_frame(out, kind, |w| write_group_ids(w, ack))
            }
            ClientFrame::GroupNack(nack) => try_write_frame(out, kind, |w| {
                w.put_u32(nack.subscription_id);
                w.put_u32(nack.delay_ms);
                write_ids(w, &nack.ids);
            }),
            ClientFrame::LeaveGroup { subscription_id } => {
                try_write_frame(out, kind, |w| w.put_u32(*subscription_id))
            }
            ClientFrame::SetReplicas { replicas } => {
                try_write_frame(out, kind, |w| w.put_u8(*replicas))
            }
            ClientFrame::GroupsRequest(request) => try_write_frame(out, kind, |w| request.write(w)),
            ClientFrame::ParkedRequest(request) => try_write_frame(out, kind, |w| request.write(w)),
            ClientFrame::GroupAdmin(admin) => try_write_frame(out, kind, |w| admin.write(w)),
            ClientFrame::GroupsDetailRequest(request) => {
                try_write_frame(out, kind, |w| request.write(w))
            }
            ClientFrame::GroupAckRange(range) => try_write_frame(out, kind, |w| range.write(w)),
            ClientFrame::ProduceIf(produce) => try_write_frame(out, kind, |w| produce.write(w)),
            ClientFrame::SetProducer {
                producer_id,
                next_sequence,
            } => try_write_frame(out, kind, |w| {
                w.put_u64(*producer_id);
                w.put_u64(*next_sequence);
            }),
            ClientFrame::InfoRequest => try_write_frame(out, kind, |_| {}),
            ClientFrame::NamespacesRequest(request) => {
                try_write_frame(out, kind, |w| request.write(w))
            }
            ClientFrame::TraceRequest { id } => try_write_frame(out, kind, |w| w.put_id(*id)),
            ClientFrame::MembersRequest => try_write_frame(out, kind, |_| {}),
            ClientFrame::ChangeMember(change) => try_write_frame(out, kind, |w| change.write(w)),
            ClientFrame::Purge(rule) => try_write_frame(out, kind, |w| rule.write(w)),
            ClientFrame::PurgesRequest => try_write_frame(out, kind, |_| {}),
        }
    }
}

impl Encode for ClientFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Err(error) = self.try_encode(out) {
            panic!("{error}: use ClientFrame::try_encode for fields from a user");
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ClientFrame::Hello(_) => kind::HELLO,
            ClientFrame::Produce(_) => kind::PRODUCE,
            ClientFrame::ProduceBatch(_) => kind::PRODUCE_BATCH,
            ClientFrame::Subscribe(_) => kind::SUBSCRIBE,
            ClientFrame::Credit { .. } => kind::CREDIT,
            ClientFrame::Unsubscribe { .. } => kind::UNSUBSCRIBE,
            ClientFrame::Ping { .. } => kind::PING,
            ClientFrame::StatusRequest { .. } => kind::STATUS_REQUEST,
            ClientFrame::JoinGroup(_) => kind::JOIN_GROUP,
            ClientFrame::GroupAck(_) => kind::GROUP_ACK,
            ClientFrame::GroupNack(_) => kind::GROUP_NACK,
            ClientFrame::LeaveGroup { .. } => kind::LEAVE_GROUP,
            ClientFrame::SetReplicas { .. } => kind::SET_REPLICAS,
            ClientFrame::GroupsRequest(_) => kind::GROUPS_REQUEST,
            ClientFrame::ParkedRequest(_) => kind::PARKED_REQUEST,
            ClientFrame::GroupAdmin(_) => kind::GROUP_ADMIN,
            ClientFrame::GroupsDetailRequest(_) => kind::GROUPS_DETAIL_REQUEST,
            ClientFrame::GroupAckRange(_) => kind::GROUP_ACK_RANGE,
            ClientFrame::GroupProgress(_) => kind::GROUP_PROGRESS,
            ClientFrame::ProduceIf(_) => kind::PRODUCE_IF,
            ClientFrame::SetProducer { .. } => kind::SET_PRODUCER,
            ClientFrame::InfoRequest => kind::INFO_REQUEST,
            ClientFrame::NamespacesRequest(_) => kind::NAMESPACES_REQUEST,
            ClientFrame::TraceRequest { .. } => kind::TRACE_REQUEST,
            ClientFrame::MembersRequest => kind::MEMBERS_REQUEST,
            ClientFrame::ChangeMember(_) => kind::CHANGE_MEMBER,
            ClientFrame::Purge(_) => kind::PURGE,
            ClientFrame::PurgesRequest => kind::PURGES_REQUEST,
        }
    }
}

impl Encode for ServerFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.kind();
        match self {
            ServerFrame::Welcome(welcome) => write_frame(out, kind, |w| welcome.write(w)),
            ServerFrame::Ack(ack) => encode_ack(ack, out),
            ServerFrame::Error(error) => write_frame(out, kind, |w| error.write(w)),
            ServerFrame::Event {
                subscription_id,
                event,
            } => encode_event(*subscription_id, event.view(), out),
            ServerFrame::CaughtUp { subscription_id } => {
                write_frame(out, kind, |w| w.put_u32(*subscription_id))
            }
            ServerFrame::End {
                subscription_id,
                reason,
            } => write_frame(out, kind, |w| {
                w.put_u32(*subscription_id);
                reason.write(w);
            }),
            ServerFrame::Pong { token } => write_frame(out, kind, |w| w.put_u64(*token)),
            ServerFrame::Status(status) => write_frame(out, kind, |w| status.write(w)),
            ServerFrame::Skipped {
                subscription_id,
                count,
            } => write_frame(out, kind, |w| {
                w.put_u32(*subscription_id);
                w.put_u64(*count);
            }),
            ServerFrame::Groups(reply) => write_frame(out, kind, |w| reply.write(w)),
            ServerFrame::GroupsDetail(reply) => write_frame(out, kind, |w| reply.write(w)),
            ServerFrame::Parked(reply) => write_frame(out, kind, |w| reply.write(w)),
            ServerFrame::Info(info) => write_frame(out, kind, |w| info.write(w)),
            ServerFrame::Namespaces(reply) => write_frame(out, kind, |w| reply.write(w)),
            ServerFrame::Trace(reply) => write_frame(out, kind, |w| reply.write(w)),
            ServerFrame::Members(entries) => {
                write_frame(out, kind, |w| write_member_entries(w, entries))
            }
            ServerFrame::Purged(purged) => write_frame(out, kind, |w| purged.write(w)),
            ServerFrame::Purges(reply) => write_frame(out, kind, |w| reply.write(w)),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ServerFrame::Welcome(_) => kind::WELCOME,
            ServerFrame::Ack(_) => kind::ACK,
            ServerFrame::Error(_) => kind::ERROR,
            ServerFrame::Event { .. } => kind::EVENT,
            ServerFrame::CaughtUp { .. } => kind::CAUGHT_UP,
            ServerFrame::End { .. } => kind::END,
            ServerFrame::Pong { .. } => kind::PONG,
            ServerFrame::Status(_) => kind::STATUS,
            ServerFrame::Skipped { .. } => kind::SKIPPED,
            ServerFrame::Groups(_) => kind::GROUPS,
            ServerFrame::GroupsDetail(_) => kind::GROUPS_DETAIL,
            ServerFrame::Parked(_) => kind::PARKED,
            ServerFrame::Info(_) => kind::INFO,
            ServerFrame::Namespaces(_) => kind::NAMESPACES,
            ServerFrame::Trace(_) => kind::TRACE,
            ServerFrame::Members(_) => kind::MEMBERS,
            ServerFrame::Purged(_) => kind::PURGED,
            ServerFrame::Purges(_) => kind::PURGES,
        }
    }
}

impl Encode for AnyFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AnyFrame::Client(frame) => frame.encode(out),
            AnyFrame::Server(frame) => frame.encode(out),
            AnyFrame::Peer(frame) => frame.encode(out),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            AnyFrame::Client(frame) => frame.kind(),
            AnyFrame::Server(frame) => frame.kind(),
            AnyFrame::Peer(frame) => frame.kind(),
        }
    }
}

impl Encode for PeerFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.kind();
        match self {
            PeerFrame::PeerHello(hello) => write_frame(out, kind, |w| hello.write(w)),
            PeerFrame::PeerWelcome(welcome) => write_frame(out, kind, |w| welcome.write(w)),
            PeerFrame::PeerProof(proof) | PeerFrame::PeerAccept(proof) => {
                write_frame(out, kind, |w| proof.write(w))
            }
            PeerFrame::PeerEvent(event) => encode_peer_event(event.view(), out),
            PeerFrame::PeerCredit { count } => write_frame(out, kind, |w| w.put_u32(*count)),
            PeerFrame::PeerClock { counter } => write_frame(out, kind, |w| w.put_u64(*counter)),
            PeerFrame::PeerPurge(rule) => write_frame(out, kind, |w| rule.write(w)),
            PeerFrame::PeerMembers(members) => {
                write_frame(out, kind, |w| write_members(w, members))
            }
            PeerFrame::PeerMembership(records) => {
                write_frame(out, kind, |w| write_membership(w, records))
            }
            PeerFrame::Error(error) => write_frame(out, kind, |w| error.write(w)),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            PeerFrame::PeerHello(_) => kind::PEER_HELLO,
            PeerFrame::PeerWelcome(_) => kind::PEER_WELCOME,
            PeerFrame::PeerProof(_) => kind::PEER_PROOF,
            PeerFrame::PeerAccept(_) => kind::PEER_ACCEPT,
            PeerFrame::PeerEvent(_) => kind::PEER_EVENT,
            PeerFrame::PeerCredit { .. } => kind::PEER_CREDIT,
            PeerFrame::PeerMembers(_) => kind::PEER_MEMBERS,
            PeerFrame::PeerClock { .. } => kind::PEER_CLOCK,
            PeerFrame::PeerMembership(_) => kind::PEER_MEMBERSHIP,
            PeerFrame::PeerPurge(_) => kind::PEER_PURGE,
            PeerFrame::Error(_) => kind::ERROR,
        }
    }
}

/// Appends the same bytes as encoding `PeerFrame::PeerEvent(event)`, without an owned event.
pub fn encode_peer_event(event: EventRef<'_>, out: &mut Vec<u8>) {
    write_frame(out, kind::PEER_EVENT, |w| write_event(w, event));
}

/// Appends the same bytes as encoding `ServerFrame::Event { subscription_id, event }`, without
/// needing an owned event.
pub fn encode_event(subscription_id: u32, event: EventRef<'_>, out: &mut Vec<u8>) {
    write_frame(out, kind::EVENT, |w| {
        w.put_u32(subscription_id);
        write_event(w, event);
    });
}

/// The bytes of an Ack frame, length prefix included (protocol.md section 6).
pub const ACK_FRAME_SIZE: usize = HEADER_SIZE + 8 + 10 + 4 + 8;

/// Appends an Ack frame to `out`: the bytes `Ack::write` gives inside `write_frame`, built as
/// one fixed-size array and appended with one copy. An Ack per produced event is the server's
/// commonest frame; the general path checks the buffer's capacity once per field and patches
/// the length in afterwards.
pub fn encode_ack(ack: &Ack, out: &mut Vec<u8>) {
    let mut frame = [0u8; ACK_FRAME_SIZE];
    let body_size = (ACK_FRAME_SIZE - LENGTH_SIZE) as u32;
    frame[..4].copy_from_slice(&body_size.to_be_bytes());
    frame[4] = kind::ACK;
    frame[5..13].copy_from_slice(&ack.op_id.to_be_bytes());
    frame[13..21].copy_from_slice(&ack.first_id.counter.to_be_bytes());
    frame[21..23].copy_from_slice(&ack.first_id.actor.0.to_be_bytes());
    frame[23..27].copy_from_slice(&ack.count.to_be_bytes());
    frame[27..35].copy_from_slice(&ack.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&frame);
}

/// Appends an Error frame. A message over 65535 bytes is truncated at a character boundary.
pub fn encode_error(scope: ErrorScope, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    write_frame(out, kind::ERROR, |w| write_error(w, scope, code, message));
}

/// The frame's name, for messages.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::HELLO => "Hello",
        kind::PRODUCE => "Produce",
        kind::PRODUCE_BATCH => "ProduceBatch",
        kind::SUBSCRIBE => "Subscribe",
        kind::CREDIT => "Credit",
        kind::UNSUBSCRIBE => "Unsubscribe",
        kind::PING => "Ping",
        kind::WELCOME => "Welcome",
        kind::ACK => "Ack",
        kind::ERROR => "Error",
        kind::EVENT => "Event",
        kind::CAUGHT_UP => "CaughtUp",
        kind::END => "End",
        kind::PONG => "Pong",
        kind::STATUS_REQUEST => "StatusRequest",
        kind::JOIN_GROUP => "JoinGroup",
        kind::GROUP_ACK => "GroupAck",
        kind::GROUP_NACK => "GroupNack",
        kind::LEAVE_GROUP => "LeaveGroup",
        kind::SET_REPLICAS => "SetReplicas",
        kind::PRODUCE_IF => "ProduceIf",
        kind::SET_PRODUCER => "SetProducer",
        kind::STATUS => "Status",
        kind::SKIPPED => "Skipped",
        kind::GROUPS_REQUEST => "GroupsRequest",
        kind::PARKED_REQUEST => "ParkedRequest",
        kind::GROUP_ADMIN => "GroupAdmin",
        kind::GROUPS => "Groups",
        kind::GROUPS_DETAIL_REQUEST => "GroupsDetailRequest",
        kind::GROUP_ACK_RANGE => "GroupAckRange",
        kind::GROUP_PROGRESS => "GroupProgress",
        kind::GROUPS_DETAIL => "GroupsDetail",
        kind::PARKED => "Parked",
        kind::INFO_REQUEST => "InfoRequest",
        kind::INFO => "Info",
        kind::NAMESPACES_REQUEST => "NamespacesRequest",
        kind::NAMESPACES => "Namespaces",
        kind::TRACE_REQUEST => "TraceRequest",
        kind::TRACE => "Trace",
        kind::MEMBERS_REQUEST => "MembersRequest",
        kind::CHANGE_MEMBER => "ChangeMember",
        kind::MEMBERS => "Members",
        kind::PEER_HELLO => "PeerHello",
        kind::PEER_WELCOME => "PeerWelcome",
        kind::PEER_EVENT => "PeerEvent",
        kind::PEER_CREDIT => "PeerCredit",
        kind::PEER_MEMBERS => "PeerMembers",
        kind::PEER_PROOF => "PeerProof",
        kind::PEER_ACCEPT => "PeerAccept",
        kind::PEER_CLOCK => "PeerClock",
        kind::PEER_MEMBERSHIP => "PeerMembership",
        kind::PURGE => "Purge",
        kind::PURGES_REQUEST => "PurgesRequest",
        kind::PURGED => "Purged",
        kind::PURGES => "Purges",
        kind::PEER_PURGE => "PeerPurge",
        _ => "unknown",
    }
}

/// The kind byte of a frame.
pub fn frame_kind<F: Encode>(frame: &F) -> u8 {
    frame.kind()
}

fn read_frame(r: &mut Reader) -> Result<AnyFrame, DecodeError> {
    Ok(match r.kind {
        kind::HELLO => AnyFrame::Client(ClientFrame::Hello(Hello::read(r)?)),
        kind::PRODUCE => AnyFrame::Client(ClientFrame::Produce(Produce::read(r)?)),
        kind::PRODUCE_BATCH => AnyFrame::Client(ClientFrame::ProduceBatch(ProduceBatch::read(r)?)),
        kind::SUBSCRIBE => AnyFrame::Client(ClientFrame::Subscribe(Subscribe::read(r)?)),
        kind::CREDIT => AnyFrame::Client(ClientFrame::Credit {
            subscription_id: r.get_u32("subscription id")?,
            count: r.get_u32("count")?,
        }),
        kind::UNSUBSCRIBE => AnyFrame::Client(ClientFrame::Unsubscribe {
            subscription_id: r.get_u32("subscription id")?,
        }),
        kind::PING => AnyFrame::Client(ClientFrame::Ping {
            token: r.get_u64("token")?,
        }),
        kind::WELCOME => AnyFrame::Server(ServerFrame::Welcome(Welcome::read(r)?)),
        kind::ACK => AnyFrame::Server(ServerFrame::Ack(Ack::read(r)?)),
        kind::ERROR => AnyFrame::Server(ServerFrame::Error(ErrorFrame::read(r)?)),
        kind::EVENT => AnyFrame::Server(ServerFrame::Event {
            subscription_id: r.get_u32("subscription id")?,
            event: read_event(r)?,
        }),
        kind::CAUGHT_UP => AnyFrame::Server(ServerFrame::CaughtUp {
            subscription_id: r.get_u32("subscription id")?,
        }),
        kind::END => AnyFrame::Server(ServerFrame::End {
            subscription_id: r.get_u32("subscription id")?,
            reason: EndReason::read(r)?,
        }),
        kind::PONG => AnyFrame::Server(ServerFrame::Pong {
            token: r.get_u64("token")?,
        }),
        kind::STATUS_REQUEST => AnyFrame::Client(ClientFrame::StatusRequest {
            hold: read_status_options(r)?,
        }),
        kind::SET_REPLICAS => AnyFrame::Client(ClientFrame::SetReplicas {
            replicas: r.get_u8("replicas")?,
        }),
        kind::PRODUCE_IF => AnyFrame::Client(ClientFrame::ProduceIf(ProduceIf::read(r)?)),
        kind::SET_PRODUCER => AnyFrame::Client(ClientFrame::SetProducer {
            producer_id: r.get_u64("producer id")?,
            next_sequence: r.get_u64("next sequence")?,
        }),
        kind::STATUS => AnyFrame::Server(ServerFrame::Status(Status::read(r)?)),
        kind::JOIN_GROUP => AnyFrame::Client(ClientFrame::JoinGroup(JoinGroup::read(r)?)),
        kind::GROUP_ACK => AnyFrame::Client(ClientFrame::GroupAck(GroupAck {
            subscription_id: r.get_u32("subscription id")?,
            delay_ms: 0,
            ids: read_ids(r)?,
        })),
        kind::GROUP_PROGRESS => AnyFrame::Client(ClientFrame::GroupProgress(GroupAck {
            subscription_id: r.get_u32("subscription id")?,
            delay_ms: 0,
            ids: read_ids(r)?,
        })),
        kind::GROUP_NACK => AnyFrame::Client(ClientFrame::GroupNack(GroupAck {
            subscription_id: r.get_u32("subscription id")?,
            delay_ms: r.get_u32("delay")?,
            ids: read_ids(r)?,
        })),
        kind::LEAVE_GROUP => AnyFrame::Client(ClientFrame::LeaveGroup {
            subscription_id: r.get_u32("subscription id")?,
        }),
        kind::SKIPPED => AnyFrame::Server(ServerFrame::Skipped {
            subscription_id: r.get_u32("subscription id")?,
            count: r.get_u64_positive("count")?,
        }),
        kind::GROUPS_REQUEST => {
            AnyFrame::Client(ClientFrame::GroupsRequest(GroupsRequest::read(r)?))
        }
        kind::PARKED_REQUEST => {
            AnyFrame::Client(ClientFrame::ParkedRequest(ParkedRequest::read(r)?))
        }
        kind::GROUP_ADMIN => AnyFrame::Client(ClientFrame::GroupAdmin(GroupAdmin::read(r)?)),
        kind::GROUPS => AnyFrame::Server(ServerFrame::Groups(GroupsReply::read(r)?)),
        kind::GROUPS_DETAIL_REQUEST => {
            AnyFrame::Client(ClientFrame::GroupsDetailRequest(GroupsRequest::read(r)?))
        }
        kind::GROUP_ACK_RANGE => {
            AnyFrame::Client(ClientFrame::GroupAckRange(GroupAckRange::read(r)?))
        }
        kind::GROUPS_DETAIL => {
            AnyFrame::Server(ServerFrame::GroupsDetail(GroupsDetailReply::read(r)?))
        }
        kind::PARKED => AnyFrame::Server(ServerFrame::Parked(ParkedReply::read(r)?)),
        kind::INFO_REQUEST => AnyFrame::Client(ClientFrame::InfoRequest),
        kind::INFO => AnyFrame::Server(ServerFrame::Info(Info::read(r)?)),
        kind::NAMESPACES_REQUEST => {
            AnyFrame::Client(ClientFrame::NamespacesRequest(NamespacesRequest::read(r)?))
        }
        kind::NAMESPACES => AnyFrame::Server(ServerFrame::Namespaces(NamespacesReply::read(r)?)),
        kind::TRACE_REQUEST => AnyFrame::Client(ClientFrame::TraceRequest {
            id: r.get_event_id("traced id")?,
        }),
        kind::TRACE => AnyFrame::Server(ServerFrame::Trace(TraceReply::read(r)?)),
        kind::MEMBERS_REQUEST => AnyFrame::Client(ClientFrame::MembersRequest),
        kind::CHANGE_MEMBER => AnyFrame::Client(ClientFrame::ChangeMember(ChangeMember::read(r)?)),
        kind::MEMBERS => AnyFrame::Server(ServerFrame::Members(read_member_entries(r)?)),
        kind::PEER_MEMBERSHIP => AnyFrame::Peer(PeerFrame::PeerMembership(read_membership(r)?)),
        kind::PEER_HELLO => AnyFrame::Peer(PeerFrame::PeerHello(PeerHandshake::read(r)?)),
        kind::PEER_WELCOME => AnyFrame::Peer(PeerFrame::PeerWelcome(PeerHandshake::read(r)?)),
        kind::PEER_EVENT => AnyFrame::Peer(PeerFrame::PeerEvent(read_event(r)?)),
        kind::PEER_CREDIT => AnyFrame::Peer(PeerFrame::PeerCredit {
            count: r.get_u32("count")?,
        }),
        kind::PEER_MEMBERS => AnyFrame::Peer(PeerFrame::PeerMembers(read_members(r)?)),
        kind::PEER_PROOF => AnyFrame::Peer(PeerFrame::PeerProof(PeerProof::read(r)?)),
        kind::PEER_ACCEPT => AnyFrame::Peer(PeerFrame::PeerAccept(PeerProof::read(r)?)),
        kind::PEER_CLOCK => AnyFrame::Peer(PeerFrame::PeerClock {
            counter: r.get_u64("counter")?,
        }),
        kind::PURGE => AnyFrame::Client(ClientFrame::Purge(PurgeRule::read(r)?)),
        kind::PURGES_REQUEST => AnyFrame::Client(ClientFrame::PurgesRequest),
        kind::PURGED => AnyFrame::Server(ServerFrame::Purged(Purged::read(r)?)),
        kind::PURGES => AnyFrame::Server(ServerFrame::Purges(PurgesReply::read(r)?)),
        kind::PEER_PURGE => AnyFrame::Peer(PeerFrame::PeerPurge(PurgeRule::read(r)?)),
        other => return Err(r.error(format!("unknown frame kind {other:#04x}"))),
    })
}

/// Writes the header, lets `body` append the fields, then fills in the length.
fn write_frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Writer)) {
    if let Err(error) = try_write_frame(out, kind, body) {
        // The server's and peers' fields are bounded far below it by their limits.
        panic!("{error}: callers bound their fields first");
    }
}

/// [`write_frame`] that appends nothing and says which field is too long when a
/// length-prefixed field is over 65535 bytes (the client's frames: their fields come from
/// its user).
fn try_write_frame(
    out: &mut Vec<u8>,
    kind: u8,
    body: impl FnOnce(&mut Writer),
) -> Result<(), FieldTooLong> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_SIZE]);
    out.push(kind);
    let mut writer = Writer {
        out,
        overlong: None,
    };
    body(&mut writer);
    if let Some(overlong) = writer.overlong {
        out.truncate(start);
        return Err(overlong);
    }
    let length = out.len() - start - LENGTH_SIZE;
    let length = u32::try_from(length).expect("frame over 4 GiB: callers check the limits first");
    out[start..start + LENGTH_SIZE].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// A length-prefixed field of a frame over the 65535 bytes its `u16` length can say: such a
/// frame cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldTooLong {
    /// The field ("glob", "group name", "auth token", ...).
    pub what: &'static str,
    /// Its size in bytes.
    pub size: usize,
}

impl fmt::Display for FieldTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let FieldTooLong { what, size } = self;
        write!(
            f,
            "{what} of {size} bytes is over the 65535 bytes a frame can carry"
        )
    }
}

/// One wire type: `write` and `read` list the same fields in the same order.
trait WireFormat: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
}

impl WireFormat for Hello {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.protocol_version);
        w.put_text16(&self.client_name);
        w.put_bytes16(&self.auth_token, "auth token");
    }

    /// The layout up to the auth token is frozen for every protocol version (protocol.md,
    /// section 5): a later version may only add fields after it. So a Hello of another
    /// version is read up to the token and the rest is ignored, and the server can answer it
    /// with a clear `UnsupportedVersion` instead of `MalformedFrame`.
    fn read(r: &mut Reader) -> Result<Hello, DecodeError> {
        let hello = Hello {
            protocol_version: r.get_u16("protocol version")?,
            client_name: r.get_str16("client name")?,
            auth_token: r.get_bytes16("auth token")?.to_vec(),
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            r.position = r.body.len();
        }
        Ok(hello)
    }
}

impl WireFormat for Welcome {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.protocol_version);
        w.put_text16(&self.server_version);
        w.put_u16(self.actor_id);
        w.put_u32(self.frame_size_max);
        w.put_u32(self.namespace_length_max);
        w.put_u32(self.event_data_size_max);
        w.put_u32(self.subscriptions_max);
        w.put_u32(self.idle_timeout_ms);
    }

    fn read(r: &mut Reader) -> Result<Welcome, DecodeError> {
        Ok(Welcome {
            protocol_version: r.get_u16("protocol version")?,
            server_version: r.get_str16("server version")?,
            actor_id: r.get_u16("actor id")?,
            frame_size_max: r.get_u32("frame size max")?,
            namespace_length_max: r.get_u32("namespace length max")?,
            event_data_size_max: r.get_u32("event data size max")?,
            subscriptions_max: r.get_u32("subscriptions max")?,
            idle_timeout_ms: r.get_u32("idle timeout")?,
        })
    }
}

impl WireFormat for NewEvent {
    fn write(&self, w: &mut Writer) {
        w.put_namespace(&self.namespace);
        w.put_optional_id(self.parent_id);
        w.put_data(&self.data);
    }

    fn read(r: &mut Reader) -> Result<NewEvent, DecodeError> {
        Ok(read_new_event_view(r)?.to_event())
    }
}

/// The fields of a [`NewEvent`], borrowed from the frame.
fn read_new_event_view<'a>(r: &mut Reader<'a>) -> Result<NewEventView<'a>, DecodeError> {
    Ok(NewEventView {
        namespace: r.get_namespace_str()?,
        parent_id: r.get_optional_id("parent id")?,
        data: r.get_data()?,
    })
}

/// The frame at the start of `buf` if it is complete: a reader of its body and its size.
/// Its kind must be one of `kinds` (the server calls the view decoders by the kind byte, so
/// another kind is a bug, reported as malformed).
fn open_frame<'a>(
    buf: &'a [u8],
    limits: &'a WireLimits,
    kinds: &[u8],
    expected: &str,
) -> Result<Option<(Reader<'a>, usize)>, DecodeError> {
    let Some(kind) = decode_header(buf, limits)? else {
        return Ok(None);
    };
    if !kinds.contains(&kind) {
        return Err(DecodeError::malformed(format!(
            "expected {expected}, got kind {kind:#04x}"
        )));
    }
    let frame_size = frame_size_of(buf);
    // `frame_size` is at most `frame_size_max`, a u32, so it fits in a usize.
    let Some(body) = buf.get(HEADER_SIZE..frame_size as usize) else {
        return Ok(None);
    };
    let reader = Reader {
        body,
        position: 0,
        kind,
        limits,
    };
    Ok(Some((reader, frame_size as usize)))
}

/// Decodes a Produce frame at the start of `buf` into its op id and a view of its event
/// (namespace and data borrowed from `buf`), with the checks and results of
/// [`decode_client`] for the same bytes. The server calls it when the kind byte says
/// Produce, so a produce is appended from the received bytes with no owned copy.
pub fn decode_produce_view<'a>(
    buf: &'a [u8],
    limits: &'a WireLimits,
) -> Result<Option<(u64, NewEventView<'a>, usize)>, DecodeError> {
    let Some((mut reader, frame_size)) =
        open_frame(buf, limits, &[kind::PRODUCE], "a Produce frame")?
    else {
        return Ok(None);
    };
    let op_id = reader.get_u64("op id")?;
    let event = read_new_event_view(&mut reader)?;
    reader.finish()?;
    Ok(Some((op_id, event, frame_size)))
}

impl WireFormat for Produce {
    fn write(&self, w: &mut Writer) {
        w.put_u64(self.op_id);
        self.event.write(w);
    }

    fn read(r: &mut Reader) -> Result<Produce, DecodeError> {
        Ok(Produce {
            op_id: r.get_u64("op id")?,
            event: NewEvent::read(r)?,
        })
    }
}

/// A ProduceBatch or ProduceIf as the server decodes it: the op id and the expectation
/// (`Any` for a ProduceBatch); its events are views into the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceManyView {
    pub op_id: u64,
    pub expect: Expectation,
    /// The frame's length in bytes.
    pub length: usize,
    /// The number of events the frame holds; more than were kept when it is over `kept_max`.
    pub count: usize,
}

/// Decodes a ProduceBatch or ProduceIf frame at the start of `buf`, with the checks and
/// results of [`decode_client`] for the same bytes, pushing a view of each event (namespace
/// and data borrowed from `buf`) onto `events`, which must be empty. The server calls it when
/// the kind byte says one of them, so a batch is appended from the received bytes with no
/// owned copy and, with `events` kept from frame to frame, no allocation.
///
/// Every event is read and checked, but only the first `kept_max` are kept (the server passes
/// its limit of events per batch, and refuses a batch with more by its `count`): the views of
/// a frame of many tiny events take memory bounded by the limit, not by the frame's size.
pub fn decode_produce_many_view<'a>(
    buf: &'a [u8],
    limits: &'a WireLimits,
    kept_max: usize,
    events: &mut Vec<NewEventView<'a>>,
) -> Result<Option<ProduceManyView>, DecodeError> {
    debug_assert!(events.is_empty(), "the views of an earlier frame were kept");
    let Some((mut reader, frame_size)) = open_frame(
        buf,
        limits,
        &[kind::PRODUCE_BATCH, kind::PRODUCE_IF],
        "a ProduceBatch or ProduceIf frame",
    )?
    else {
        return Ok(None);
    };
    let kind = reader.kind;
    let op_id = reader.get_u64("op id")?;
    let expect = if kind == kind::PRODUCE_IF {
        read_expectation(&mut reader)?
    } else {
        Expectation::Any
    };
    let count = read_event_views(&mut reader, kept_max, events)?;
    reader.finish()?;
    Ok(Some(ProduceManyView {
        op_id,
        expect,
        length: frame_size,
        count,
    }))
}

/// The events of a ProduceBatch or ProduceIf: a `u32` count, then each event.
fn write_events(w: &mut Writer, events: &[NewEvent]) {
    let count = u32::try_from(events.len())
        .expect("batch of 2^32 events: callers check the batch limit first");
    w.put_u32(count);
    for event in events {
        event.write(w);
    }
}

/// Reads what `write_events` wrote. No capacity is reserved from the count: the events are
/// pushed as they are read, so a lying count cannot allocate more than the frame holds.
fn read_events(r: &mut Reader) -> Result<Vec<NewEvent>, DecodeError> {
    let mut views = Vec::new();
    read_event_views(r, usize::MAX, &mut views)?;
    Ok(views.into_iter().map(NewEventView::to_event).collect())
}

/// `read_events` as views of the frame's bytes, pushed onto `events` as they are read, up to
/// `kept_max` of them: the rest are read and checked, not kept. Returns the count.
fn read_event_views<'a>(
    r: &mut Reader<'a>,
    kept_max: usize,
    events: &mut Vec<NewEventView<'a>>,
) -> Result<usize, DecodeError> {
    let count = r.get_u32("event count")?;
    for _ in 0..count {
        let event = read_new_event_view(r)?;
        if events.len() < kept_max {
            events.push(event);
        }
    }
    // A u32 fits in a usize on the platforms flo builds for (64-bit).
    Ok(count as usize)
}

impl WireFormat for ProduceBatch {
    fn write(&self, w: &mut Writer) {
        w.put_u64(self.op_id);
        write_events(w, &self.events);
    }

    fn read(r: &mut Reader) -> Result<ProduceBatch, DecodeError> {
        let op_id = r.get_u64("op id")?;
        let events = read_events(r)?;
        Ok(ProduceBatch { op_id, events })
    }
}

impl WireFormat for ProduceIf {
    fn write(&self, w: &mut Writer) {
        w.put_u64(self.op_id);
        let (expect, id) = match self.expect {
            Expectation::Any => (EXPECT_ANY, None),
            Expectation::NoEvents => (EXPECT_NO_EVENTS, None),
            Expectation::LastIs(id) => (EXPECT_LAST_IS, Some(id)),
            Expectation::HasEvents => (EXPECT_HAS_EVENTS, None),
        };
        w.put_u8(expect);
        w.put_optional_id(id);
        write_events(w, &self.events);
    }

    fn read(r: &mut Reader) -> Result<ProduceIf, DecodeError> {
        let op_id = r.get_u64("op id")?;
        let expect = read_expectation(r)?;
        let events = read_events(r)?;
        Ok(ProduceIf {
            op_id,
            expect,
            events,
        })
    }
}

/// A ProduceIf's expectation: its code, then the optional expected id.
fn read_expectation(r: &mut Reader) -> Result<Expectation, DecodeError> {
    let expect = r.get_u8("expectation")?;
    let id = r.get_optional_id("expected id")?;
    Ok(match (expect, id) {
        (EXPECT_ANY, None) => Expectation::Any,
        (EXPECT_NO_EVENTS, None) => Expectation::NoEvents,
        (EXPECT_LAST_IS, Some(id)) => Expectation::LastIs(id),
        (EXPECT_HAS_EVENTS, None) => Expectation::HasEvents,
        (EXPECT_LAST_IS, None) => return Err(r.error("expectation 2 needs an expected id".into())),
        (EXPECT_ANY | EXPECT_NO_EVENTS | EXPECT_HAS_EVENTS, Some(_)) => {
            return Err(r.error("only expectation 2 has an expected id".into()))
        }
        (other, _) => return Err(r.error(format!("unknown expectation {other}"))),
    })
}

const EXPECT_ANY: u8 = 0;
const EXPECT_NO_EVENTS: u8 = 1;
const EXPECT_LAST_IS: u8 = 2;
const EXPECT_HAS_EVENTS: u8 = 3;

impl WireFormat for Ack {
    fn write(&self, w: &mut Writer) {
        w.put_u64(self.op_id);
        w.put_id(self.first_id);
        w.put_u32(self.count);
        w.put_u64(self.timestamp_ms);
    }

    fn read(r: &mut Reader) -> Result<Ack, DecodeError> {
        Ok(Ack {
            op_id: r.get_u64("op id")?,
            first_id: r.get_event_id("first id")?,
            count: r.get_u32_positive("count")?,
            timestamp_ms: r.get_u64("timestamp")?,
        })
    }
}

/// Subscribe's flags byte (protocol.md section 7): bit 0, keep delivering new events.
const SUBSCRIBE_TAIL: u8 = 0x01;
/// Subscribe's flags byte: bit 1, skip a damaged range of the log (Skipped) instead of ending
/// the subscription with `StorageFailure`.
const SUBSCRIBE_SKIP_DAMAGED: u8 = 0x02;
/// Subscribe's flags byte: bit 2, deliver events in id order (protocol.md section 7).
const SUBSCRIBE_ID_ORDER: u8 = 0x04;

impl WireFormat for Subscribe {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.subscription_id);
        w.put_bytes16(self.glob.as_bytes(), "glob");
        self.start.write(w);
        w.put_u64(self.limit);
        let mut flags = 0;
        if self.tail {
            flags |= SUBSCRIBE_TAIL;
        }
        if self.skip_damaged {
            flags |= SUBSCRIBE_SKIP_DAMAGED;
        }
        if self.order == Order::Id {
            flags |= SUBSCRIBE_ID_ORDER;
        }
        w.put_u8(flags);
        w.put_u32(self.credit);
    }

    fn read(r: &mut Reader) -> Result<Subscribe, DecodeError> {
        let subscription_id = r.get_u32("subscription id")?;
        let glob = r.get_str16("glob")?;
        let start = StartPosition::read(r)?;
        let limit = r.get_u64("limit")?;
        // The byte that version 1 first defined as the `tail` bool: its values 0 and 1 keep
        // their meaning, bits 1 and 2 were added later, and every other bit is refused (an older
        // server refuses a newer bit the same way, so an option is never ignored silently).
        let flags = r.get_u8("flags")?;
        if flags & !(SUBSCRIBE_TAIL | SUBSCRIBE_SKIP_DAMAGED | SUBSCRIBE_ID_ORDER) != 0 {
            return Err(r.error(format!(
                "subscribe flags are {flags:#04x}; only bits 0 (tail), 1 (skip damaged) and \
                 2 (id order) are defined"
            )));
        }
        Ok(Subscribe {
            subscription_id,
            glob,
            start,
            limit,
            tail: flags & SUBSCRIBE_TAIL != 0,
            skip_damaged: flags & SUBSCRIBE_SKIP_DAMAGED != 0,
            order: if flags & SUBSCRIBE_ID_ORDER != 0 {
                Order::Id
            } else {
                Order::Arrival
            },
            credit: r.get_u32("credit")?,
        })
    }
}

impl WireFormat for JoinGroup {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.subscription_id);
        w.put_bytes16(self.group.as_bytes(), "group name");
        w.put_bytes16(self.glob.as_bytes(), "glob");
        self.start.write(w);
        w.put_u32(self.credit);
        w.put_u32(self.ack_timeout_ms);
        w.put_u16(self.max_deliveries);
        w.put_u32(self.max_in_flight);
    }

    fn read(r: &mut Reader) -> Result<JoinGroup, DecodeError> {
        Ok(JoinGroup {
            subscription_id: r.get_u32("subscription id")?,
            group: r.get_str16("group name")?,
            glob: r.get_str16("glob")?,
            start: StartPosition::read(r)?,
            credit: r.get_u32("credit")?,
            ack_timeout_ms: r.get_u32("ack timeout")?,
            max_deliveries: r.get_u16("max deliveries")?,
            max_in_flight: r.get_u32("max in flight")?,
        })
    }
}

fn write_group_ids(w: &mut Writer, ack: &GroupAck) {
    w.put_u32(ack.subscription_id);
    write_ids(w, &ack.ids);
}

/// A u16 count, then that many 10-byte ids.
fn write_ids(w: &mut Writer, ids: &[EventId]) {
    let count = w.put_count16(ids.len());
    for id in &ids[..count] {
        w.put_id(*id);
    }
}

fn read_ids(r: &mut Reader) -> Result<Vec<EventId>, DecodeError> {
    let count = r.get_u16("id count")? as usize;
    // Each id is 10 bytes, so the count cannot ask for more than the frame holds.
    let mut ids = Vec::with_capacity(count.min(r.body.len().saturating_sub(r.position) / 10));
    for _ in 0..count {
        ids.push(r.get_event_id("id")?);
    }
    Ok(ids)
}

mod start_tag {
    pub const BEGINNING: u8 = 0;
    pub const END: u8 = 1;
    pub const AFTER_ID: u8 = 2;
    pub const CURSOR: u8 = 3;
    pub const TIMESTAMP: u8 = 4;
}

impl WireFormat for StartPosition {
    fn write(&self, w: &mut Writer) {
        match self {
            StartPosition::Beginning => w.put_u8(start_tag::BEGINNING),
            StartPosition::End => w.put_u8(start_tag::END),
            StartPosition::AfterId(id) => {
                w.put_u8(start_tag::AFTER_ID);
                w.put_id(*id);
            }
            StartPosition::Cursor(cursor) => {
                w.put_u8(start_tag::CURSOR);
                write_cursor(w, cursor);
            }
            StartPosition::Timestamp(ms) => {
                w.put_u8(start_tag::TIMESTAMP);
                w.put_u64(*ms);
            }
        }
    }

    fn read(r: &mut Reader) -> Result<StartPosition, DecodeError> {
        match r.get_u8("start position kind")? {
            start_tag::BEGINNING => Ok(StartPosition::Beginning),
            start_tag::END => Ok(StartPosition::End),
            start_tag::AFTER_ID => Ok(StartPosition::AfterId(r.get_id_or_none("start id")?)),
            start_tag::CURSOR => Ok(StartPosition::Cursor(read_cursor(r)?)),
            start_tag::TIMESTAMP => Ok(StartPosition::Timestamp(r.get_u64("start timestamp")?)),
            other => Err(r.error(format!("unknown start position kind {other}"))),
        }
    }
}

fn write_cursor(w: &mut Writer, cursor: &Cursor) {
    w.put_id(cursor.floor);
    write_vector(w, &cursor.vector);
}

fn write_vector(w: &mut Writer, vector: &VersionVector) {
    // A vector never holds actor 0, so it has at most 65535 entries and the count never
    // clamps; writing is total all the same.
    let count = w.put_count16(vector.len());
    for (actor, counter) in vector.iter().take(count) {
        w.put_u16(actor.0);
        w.put_u64(counter);
    }
}

/// Reads a cursor in its canonical form: entries in strictly ascending actor order, no zero
/// counters.
fn read_cursor(r: &mut Reader) -> Result<Cursor, DecodeError> {
    let floor = r.get_id_or_none("cursor floor")?;
    let vector = read_vector(r, "cursor")?;
    Ok(Cursor { floor, vector })
}

/// Reads a version vector in its canonical form: entries in strictly ascending actor order,
/// no zero counters.
fn read_vector(r: &mut Reader, what: &str) -> Result<VersionVector, DecodeError> {
    let count = r.get_u16(&format!("{what} entry count"))?;
    let mut vector = VersionVector::new();
    let mut previous_actor: Option<u16> = None;
    for _ in 0..count {
        let actor = r.get_u16(&format!("{what} entry actor"))?;
        let counter = r.get_u64(&format!("{what} entry counter"))?;
        if previous_actor.is_some_and(|previous| actor <= previous) {
            return Err(r.error(format!(
                "{what} entries must be in strictly ascending actor order; actor {actor} is out of order"
            )));
        }
        if counter == 0 {
            return Err(r.error(format!(
                "{what} entry for actor {actor} has counter 0; leave the actor out instead"
            )));
        }
        if actor == 0 {
            return Err(r.error(format!(
                "{what} has an entry for actor 0, which is no actor"
            )));
        }
        previous_actor = Some(actor);
        vector.set(ActorId(actor), counter);
    }
    Ok(vector)
}

mod scope_tag {
    pub const CONNECTION: u8 = 0;
    pub const PRODUCE: u8 = 1;
    pub const SUBSCRIPTION: u8 = 2;
}

fn write_error(w: &mut Writer, scope: ErrorScope, code: ErrorCode, message: &str) {
    match scope {
        ErrorScope::Connection => w.put_u8(scope_tag::CONNECTION),
        ErrorScope::Produce(op_id) => {
            w.put_u8(scope_tag::PRODUCE);
            w.put_u64(op_id);
        }
        ErrorScope::Subscription(subscription_id) => {
            w.put_u8(scope_tag::SUBSCRIPTION);
            w.put_u32(subscription_id);
        }
    }
    w.put_u16(code as u16);
    w.put_text16(message);
}

impl WireFormat for ErrorFrame {
    fn write(&self, w: &mut Writer) {
        write_error(w, self.scope, self.code, &self.message);
    }

    fn read(r: &mut Reader) -> Result<ErrorFrame, DecodeError> {
        let scope = match r.get_u8("error scope")? {
            scope_tag::CONNECTION => ErrorScope::Connection,
            scope_tag::PRODUCE => ErrorScope::Produce(r.get_u64("op id")?),
            scope_tag::SUBSCRIPTION => ErrorScope::Subscription(r.get_u32("subscription id")?),
            other => return Err(r.error(format!("unknown error scope {other}"))),
        };
        let number = r.get_u16("error code")?;
        let message = r.get_str16("message")?;
        // protocol.md, section 11: a code the receiver does not know is handled by the
        // Error's scope, not refused as a malformed frame (a newer server may send one).
        Ok(match ErrorCode::from_u16(number) {
            Some(code) => ErrorFrame {
                scope,
                code,
                message,
            },
            None => ErrorFrame {
                scope,
                code: ErrorCode::Unknown,
                message: format!("code {number}, unknown to this client: {message}"),
            },
        })
    }
}

impl WireFormat for EndReason {
    fn write(&self, w: &mut Writer) {
        w.put_u8(*self as u8);
    }

    fn read(r: &mut Reader) -> Result<EndReason, DecodeError> {
        match r.get_u8("end reason")? {
            1 => Ok(EndReason::LimitReached),
            2 => Ok(EndReason::EndOfStream),
            3 => Ok(EndReason::Unsubscribed),
            other => Err(r.error(format!("unknown end reason {other}"))),
        }
    }
}

fn write_event(w: &mut Writer, event: EventRef<'_>) {
    w.put_id(event.id);
    w.put_optional_id(event.parent_id);
    w.put_u64(event.timestamp_ms);
    w.put_namespace(event.namespace);
    w.put_data(event.data);
}

fn read_event(r: &mut Reader) -> Result<Event, DecodeError> {
    Ok(Event {
        id: r.get_event_id("event id")?,
        parent_id: r.get_optional_id("parent id")?,
        timestamp_ms: r.get_u64("timestamp")?,
        namespace: r.get_namespace()?,
        data: r.get_data()?.to_vec(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
