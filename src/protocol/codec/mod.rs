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

use std::fmt;

use super::frame::*;
use crate::config::WireLimits;
use crate::event::{ActorId, Cursor, Event, EventId, StartPosition, VersionVector};

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

/// Decodes the frame at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more bytes and call again),
/// `Ok(Some((frame, consumed)))` when it holds a whole one, and an error as soon as the bytes
/// cannot be the start of a valid frame: a length over `limits.frame_size_max` is reported
/// when the four length bytes are known, an unknown kind when the fifth byte is.
pub fn decode(buf: &[u8], limits: &WireLimits) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(kind) = decode_header(buf, limits)? else {
        return Ok(None);
    };
    check_kind(kind)?;
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
    Ok(Some((frame, frame_size as usize)))
}

/// The size of the frame whose length field starts `buf` (at least 4 bytes).
fn frame_size_of(buf: &[u8]) -> u64 {
    let mut length = [0u8; LENGTH_SIZE];
    length.copy_from_slice(&buf[..LENGTH_SIZE]);
    u64::from(u32::from_be_bytes(length)) + LENGTH_SIZE as u64
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

/// Appends the bytes of `frame` to `out`.
///
/// Panics if a namespace, glob or auth token is longer than 65535 bytes, if a cursor has more
/// than 65535 entries or if event data is 4 GiB or more: callers validate these against the
/// limits from Welcome before encoding. Free text (names, messages) is truncated instead.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Hello(hello) => write_frame(out, kind::HELLO, |w| hello.write(w)),
        Frame::Produce(produce) => write_frame(out, kind::PRODUCE, |w| produce.write(w)),
        Frame::ProduceBatch(batch) => write_frame(out, kind::PRODUCE_BATCH, |w| batch.write(w)),
        Frame::Subscribe(subscribe) => write_frame(out, kind::SUBSCRIBE, |w| subscribe.write(w)),
        Frame::Credit {
            subscription_id,
            count,
        } => write_frame(out, kind::CREDIT, |w| {
            w.put_u32(*subscription_id);
            w.put_u32(*count);
        }),
        Frame::Unsubscribe { subscription_id } => {
            write_frame(out, kind::UNSUBSCRIBE, |w| w.put_u32(*subscription_id))
        }
        Frame::Ping { token } => write_frame(out, kind::PING, |w| w.put_u64(*token)),
        Frame::Welcome(welcome) => write_frame(out, kind::WELCOME, |w| welcome.write(w)),
        Frame::Ack(ack) => write_frame(out, kind::ACK, |w| ack.write(w)),
        Frame::Error(error) => write_frame(out, kind::ERROR, |w| error.write(w)),
        Frame::Event {
            subscription_id,
            event,
        } => encode_event(*subscription_id, event, out),
        Frame::CaughtUp { subscription_id } => {
            write_frame(out, kind::CAUGHT_UP, |w| w.put_u32(*subscription_id))
        }
        Frame::End {
            subscription_id,
            reason,
        } => write_frame(out, kind::END, |w| {
            w.put_u32(*subscription_id);
            reason.write(w);
        }),
        Frame::Pong { token } => write_frame(out, kind::PONG, |w| w.put_u64(*token)),
        Frame::StatusRequest => write_frame(out, kind::STATUS_REQUEST, |_| {}),
        Frame::Status(status) => write_frame(out, kind::STATUS, |w| status.write(w)),
        Frame::Skipped {
            subscription_id,
            count,
        } => write_frame(out, kind::SKIPPED, |w| {
            w.put_u32(*subscription_id);
            w.put_u64(*count);
        }),
        Frame::PeerHello(hello) => write_frame(out, kind::PEER_HELLO, |w| hello.write(w)),
        Frame::PeerWelcome(welcome) => write_frame(out, kind::PEER_WELCOME, |w| welcome.write(w)),
        Frame::PeerEvent(event) => encode_peer_event(event, out),
        Frame::PeerCredit { count } => write_frame(out, kind::PEER_CREDIT, |w| w.put_u32(*count)),
        Frame::PeerMembers(members) => {
            write_frame(out, kind::PEER_MEMBERS, |w| write_members(w, members))
        }
    }
}

/// Appends the same bytes as encoding `Frame::PeerEvent(event)`, without an owned event.
pub fn encode_peer_event(event: &Event, out: &mut Vec<u8>) {
    write_frame(out, kind::PEER_EVENT, |w| write_event(w, event));
}

/// Appends the same bytes as encoding `Frame::Event { subscription_id, event }`, without
/// needing an owned event.
pub fn encode_event(subscription_id: u32, event: &Event, out: &mut Vec<u8>) {
    write_frame(out, kind::EVENT, |w| {
        w.put_u32(subscription_id);
        write_event(w, event);
    });
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
        kind::STATUS => "Status",
        kind::SKIPPED => "Skipped",
        kind::PEER_HELLO => "PeerHello",
        kind::PEER_WELCOME => "PeerWelcome",
        kind::PEER_EVENT => "PeerEvent",
        kind::PEER_CREDIT => "PeerCredit",
        kind::PEER_MEMBERS => "PeerMembers",
        _ => "unknown",
    }
}

/// The kind byte of a frame.
pub fn frame_kind(frame: &Frame) -> u8 {
    match frame {
        Frame::Hello(_) => kind::HELLO,
        Frame::Produce(_) => kind::PRODUCE,
        Frame::ProduceBatch(_) => kind::PRODUCE_BATCH,
        Frame::Subscribe(_) => kind::SUBSCRIBE,
        Frame::Credit { .. } => kind::CREDIT,
        Frame::Unsubscribe { .. } => kind::UNSUBSCRIBE,
        Frame::Ping { .. } => kind::PING,
        Frame::Welcome(_) => kind::WELCOME,
        Frame::Ack(_) => kind::ACK,
        Frame::Error(_) => kind::ERROR,
        Frame::Event { .. } => kind::EVENT,
        Frame::CaughtUp { .. } => kind::CAUGHT_UP,
        Frame::End { .. } => kind::END,
        Frame::Pong { .. } => kind::PONG,
        Frame::StatusRequest => kind::STATUS_REQUEST,
        Frame::Status(_) => kind::STATUS,
        Frame::Skipped { .. } => kind::SKIPPED,
        Frame::PeerHello(_) => kind::PEER_HELLO,
        Frame::PeerWelcome(_) => kind::PEER_WELCOME,
        Frame::PeerEvent(_) => kind::PEER_EVENT,
        Frame::PeerCredit { .. } => kind::PEER_CREDIT,
        Frame::PeerMembers(_) => kind::PEER_MEMBERS,
    }
}

fn check_kind(kind: u8) -> Result<(), DecodeError> {
    if kind_name(kind) == "unknown" {
        return Err(DecodeError::malformed(format!(
            "unknown frame kind {kind:#04x}"
        )));
    }
    Ok(())
}

fn read_frame(r: &mut Reader) -> Result<Frame, DecodeError> {
    Ok(match r.kind {
        kind::HELLO => Frame::Hello(Hello::read(r)?),
        kind::PRODUCE => Frame::Produce(Produce::read(r)?),
        kind::PRODUCE_BATCH => Frame::ProduceBatch(ProduceBatch::read(r)?),
        kind::SUBSCRIBE => Frame::Subscribe(Subscribe::read(r)?),
        kind::CREDIT => Frame::Credit {
            subscription_id: r.get_u32("subscription id")?,
            count: r.get_u32("count")?,
        },
        kind::UNSUBSCRIBE => Frame::Unsubscribe {
            subscription_id: r.get_u32("subscription id")?,
        },
        kind::PING => Frame::Ping {
            token: r.get_u64("token")?,
        },
        kind::WELCOME => Frame::Welcome(Welcome::read(r)?),
        kind::ACK => Frame::Ack(Ack::read(r)?),
        kind::ERROR => Frame::Error(ErrorFrame::read(r)?),
        kind::EVENT => Frame::Event {
            subscription_id: r.get_u32("subscription id")?,
            event: read_event(r)?,
        },
        kind::CAUGHT_UP => Frame::CaughtUp {
            subscription_id: r.get_u32("subscription id")?,
        },
        kind::END => Frame::End {
            subscription_id: r.get_u32("subscription id")?,
            reason: EndReason::read(r)?,
        },
        kind::PONG => Frame::Pong {
            token: r.get_u64("token")?,
        },
        kind::STATUS_REQUEST => Frame::StatusRequest,
        kind::STATUS => Frame::Status(Status::read(r)?),
        kind::SKIPPED => Frame::Skipped {
            subscription_id: r.get_u32("subscription id")?,
            count: r.get_u64("count")?,
        },
        kind::PEER_HELLO => Frame::PeerHello(PeerHandshake::read(r)?),
        kind::PEER_WELCOME => Frame::PeerWelcome(PeerHandshake::read(r)?),
        kind::PEER_EVENT => Frame::PeerEvent(read_event(r)?),
        kind::PEER_CREDIT => Frame::PeerCredit {
            count: r.get_u32("count")?,
        },
        kind::PEER_MEMBERS => Frame::PeerMembers(read_members(r)?),
        other => return Err(r.error(format!("unknown frame kind {other:#04x}"))),
    })
}

/// Writes the header, lets `body` append the fields, then fills in the length.
fn write_frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Writer)) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_SIZE]);
    out.push(kind);
    body(&mut Writer { out });
    let length = out.len() - start - LENGTH_SIZE;
    let length = u32::try_from(length).expect("frame over 4 GiB: callers check the limits first");
    out[start..start + LENGTH_SIZE].copy_from_slice(&length.to_be_bytes());
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
        Ok(NewEvent {
            namespace: r.get_namespace()?,
            parent_id: r.get_optional_id("parent id")?,
            data: r.get_data()?.to_vec(),
        })
    }
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

impl WireFormat for ProduceBatch {
    fn write(&self, w: &mut Writer) {
        w.put_u64(self.op_id);
        let count = u32::try_from(self.events.len())
            .expect("batch of 2^32 events: callers check the batch limit first");
        w.put_u32(count);
        for event in &self.events {
            event.write(w);
        }
    }

    fn read(r: &mut Reader) -> Result<ProduceBatch, DecodeError> {
        let op_id = r.get_u64("op id")?;
        let count = r.get_u32("event count")?;
        // No capacity is reserved from `count`: the events are pushed as they are read, so
        // a lying count cannot allocate more than the frame holds.
        let mut events = Vec::new();
        for _ in 0..count {
            events.push(NewEvent::read(r)?);
        }
        Ok(ProduceBatch { op_id, events })
    }
}

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
            count: r.get_u32("count")?,
            timestamp_ms: r.get_u64("timestamp")?,
        })
    }
}

impl WireFormat for Subscribe {
    fn write(&self, w: &mut Writer) {
        w.put_u32(self.subscription_id);
        w.put_bytes16(self.glob.as_bytes(), "glob");
        self.start.write(w);
        w.put_u64(self.limit);
        w.put_bool(self.tail);
        w.put_u32(self.credit);
    }

    fn read(r: &mut Reader) -> Result<Subscribe, DecodeError> {
        Ok(Subscribe {
            subscription_id: r.get_u32("subscription id")?,
            glob: r.get_str16("glob")?,
            start: StartPosition::read(r)?,
            limit: r.get_u64("limit")?,
            tail: r.get_bool("tail")?,
            credit: r.get_u32("credit")?,
        })
    }
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

fn write_members(w: &mut Writer, members: &[Member]) {
    // The engine lists at most `members_max` members; writing is total all the same.
    let count = w.put_count16(members.len());
    for member in members.iter().take(count) {
        w.put_u16(member.actor_id);
        w.put_text16(&member.addr);
    }
}

fn read_members(r: &mut Reader) -> Result<Vec<Member>, DecodeError> {
    let count = r.get_u16("member count")?;
    // Pushed as read: a lying count cannot allocate more than the frame holds.
    let mut members = Vec::new();
    for _ in 0..count {
        let actor_id = r.get_u16("member actor")?;
        if actor_id == 0 {
            return Err(r.error("a member list names actor 0, which is no actor".into()));
        }
        members.push(Member {
            actor_id,
            addr: r.get_str16("member address")?,
        });
    }
    Ok(members)
}

impl WireFormat for PeerHandshake {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.protocol_version);
        w.put_u16(self.actor_id);
        w.put_text16(&self.advertised_addr);
        w.put_bytes16(&self.secret, "cluster secret");
        write_vector(w, &self.vector);
        write_members(w, &self.members);
    }

    fn read(r: &mut Reader) -> Result<PeerHandshake, DecodeError> {
        Ok(PeerHandshake {
            protocol_version: r.get_u16("protocol version")?,
            actor_id: r.get_u16("actor id")?,
            advertised_addr: r.get_str16("advertised address")?,
            secret: r.get_bytes16("cluster secret")?.to_vec(),
            vector: read_vector(r, "vector")?,
            members: read_members(r)?,
        })
    }
}

impl WireFormat for Status {
    fn write(&self, w: &mut Writer) {
        w.put_u16(self.actor_id);
        w.put_u64(self.counter);
        w.put_u64(self.event_count);
        w.put_u64(self.durable_end);
        write_vector(w, &self.vector);
        // At most `members_max` members plus the configured addresses; never clamps.
        let count = w.put_count16(self.members.len());
        for member in self.members.iter().take(count) {
            w.put_u16(member.actor_id);
            w.put_text16(&member.addr);
            w.put_u8(member.state as u8);
            write_vector(w, &member.vector);
            w.put_u64(member.lag);
        }
    }

    fn read(r: &mut Reader) -> Result<Status, DecodeError> {
        let actor_id = r.get_u16("actor id")?;
        let counter = r.get_u64("counter")?;
        let event_count = r.get_u64("event count")?;
        let durable_end = r.get_u64("durable end")?;
        let vector = read_vector(r, "vector")?;
        let count = r.get_u16("member count")?;
        let mut members = Vec::new();
        for _ in 0..count {
            let actor_id = r.get_u16("member actor")?;
            let addr = r.get_str16("member address")?;
            let state = match r.get_u8("member state")? {
                1 => MemberState::Connected,
                2 => MemberState::Connecting,
                3 => MemberState::BackingOff,
                other => return Err(r.error(format!("unknown member state {other}"))),
            };
            members.push(MemberStatus {
                actor_id,
                addr,
                state,
                vector: read_vector(r, "member vector")?,
                lag: r.get_u64("member lag")?,
            });
        }
        Ok(Status {
            actor_id,
            counter,
            event_count,
            durable_end,
            vector,
            members,
        })
    }
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
        let code = r.get_u16("error code")?;
        let Some(code) = ErrorCode::from_u16(code) else {
            return Err(r.error(format!("unknown error code {code}")));
        };
        Ok(ErrorFrame {
            scope,
            code,
            message: r.get_str16("message")?,
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

fn write_event(w: &mut Writer, event: &Event) {
    w.put_id(event.id);
    w.put_optional_id(event.parent_id);
    w.put_u64(event.timestamp_ms);
    w.put_namespace(&event.namespace);
    w.put_data(&event.data);
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

/// Appends big-endian fields to a frame being encoded.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn put_u8(&mut self, value: u8) {
        self.out.push(value);
    }

    fn put_u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    /// Writes a `u16` element count for `length` elements and returns how many to write:
    /// `length`, or 65535 if it is longer (callers bound their lists far below that, so
    /// this is only what keeps encoding total).
    fn put_count16(&mut self, length: usize) -> usize {
        let count = u16::try_from(length).unwrap_or(u16::MAX);
        self.put_u16(count);
        usize::from(count)
    }

    fn put_u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    fn put_u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    fn put_bool(&mut self, value: bool) {
        self.put_u8(u8::from(value));
    }

    /// An id is 10 bytes: the u64 counter, then the u16 actor.
    fn put_id(&mut self, id: EventId) {
        self.put_u64(id.counter);
        self.put_u16(id.actor.0);
    }

    /// An absent id is written as the id with counter 0 and actor 0.
    fn put_optional_id(&mut self, id: Option<EventId>) {
        self.put_id(id.unwrap_or(EventId::NONE));
    }

    fn put_bytes16(&mut self, bytes: &[u8], what: &str) {
        let length = u16::try_from(bytes.len())
            .unwrap_or_else(|_| panic!("{what} of {} bytes is over 65535", bytes.len()));
        self.put_u16(length);
        self.out.extend_from_slice(bytes);
    }

    /// Free text: truncated to 65535 bytes at a character boundary.
    fn put_text16(&mut self, text: &str) {
        let mut end = text.len().min(usize::from(u16::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.put_bytes16(&text.as_bytes()[..end], "text");
    }

    fn put_namespace(&mut self, namespace: &str) {
        self.put_bytes16(namespace.as_bytes(), "namespace");
    }

    fn put_data(&mut self, data: &[u8]) {
        let length = u32::try_from(data.len()).expect("event data over 4 GiB");
        self.put_u32(length);
        self.out.extend_from_slice(data);
    }
}

/// Reads big-endian fields from the body of one frame, checking each against the bytes left.
struct Reader<'a> {
    body: &'a [u8],
    position: usize,
    kind: u8,
    limits: &'a WireLimits,
}

impl<'a> Reader<'a> {
    fn error(&self, message: String) -> DecodeError {
        DecodeError::malformed(format!(
            "{} frame (kind {:#04x}): {message}",
            kind_name(self.kind),
            self.kind
        ))
    }

    fn take(&mut self, size: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let left = self.body.len() - self.position;
        if size > left {
            return Err(self.error(format!(
                "{what} needs {size} bytes but only {left} are left in the frame"
            )));
        }
        let bytes = &self.body[self.position..self.position + size];
        self.position += size;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    fn get_u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>(what)?[0])
    }

    fn get_u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array(what)?))
    }

    fn get_u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array(what)?))
    }

    fn get_u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take_array(what)?))
    }

    fn get_bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.get_u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("{what} is {other}; a boolean must be 0 or 1"))),
        }
    }

    /// Any id, including counter 0 with any actor: callers check the canonical form.
    fn get_id(&mut self, what: &str) -> Result<EventId, DecodeError> {
        let counter = self.get_u64(what)?;
        let actor = self.get_u16(what)?;
        Ok(EventId::new(counter, actor))
    }

    /// An id where counter 0 means "none" (a start id, a cursor floor): "none" has one
    /// encoding, all zeros, so counter 0 with a non-zero actor is refused.
    fn get_id_or_none(&mut self, what: &str) -> Result<EventId, DecodeError> {
        Ok(self.get_optional_id(what)?.unwrap_or(EventId::NONE))
    }

    /// The id of an existing event: counter 0 is refused.
    fn get_event_id(&mut self, what: &str) -> Result<EventId, DecodeError> {
        let id = self.get_id(what)?;
        if id.is_none() {
            return Err(self.error(format!("{what} has counter 0, which is not an event id")));
        }
        Ok(id)
    }

    /// Counter 0 means absent; its actor must then be 0 too, so each value has one encoding.
    fn get_optional_id(&mut self, what: &str) -> Result<Option<EventId>, DecodeError> {
        let id = self.get_id(what)?;
        match (id.counter, id.actor.0) {
            (0, 0) => Ok(None),
            (0, actor) => Err(self.error(format!(
                "{what} has counter 0 (absent) but actor {actor}; an absent id is all zeros"
            ))),
            _ => Ok(Some(id)),
        }
    }

    fn get_bytes16(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let length = self.get_u16(what)?;
        self.take(usize::from(length), what)
    }

    fn get_str16(&mut self, what: &str) -> Result<String, DecodeError> {
        let bytes = self.get_bytes16(what)?;
        self.utf8(bytes, what)
    }

    fn utf8(&self, bytes: &[u8], what: &str) -> Result<String, DecodeError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(error) => Err(self.error(format!("{what} is not valid UTF-8: {error}"))),
        }
    }

    fn get_namespace(&mut self) -> Result<String, DecodeError> {
        let length = self.get_u16("namespace")?;
        if u32::from(length) > self.limits.namespace_length_max {
            return Err(self.error(format!(
                "namespace of {length} bytes is over the limit of {} bytes",
                self.limits.namespace_length_max
            )));
        }
        let bytes = self.take(usize::from(length), "namespace")?;
        self.utf8(bytes, "namespace")
    }

    fn get_data(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.get_u32("data")?;
        if length > self.limits.event_data_size_max {
            return Err(self.error(format!(
                "event data of {length} bytes is over the limit of {} bytes",
                self.limits.event_data_size_max
            )));
        }
        // A u32 always fits in a usize on the 32- and 64-bit targets flo supports.
        self.take(length as usize, "data")
    }

    fn finish(&self) -> Result<(), DecodeError> {
        let left = self.body.len() - self.position;
        if left > 0 {
            return Err(self.error(format!("{left} bytes left over after the last field")));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
