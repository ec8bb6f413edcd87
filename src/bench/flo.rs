//! flo itself as a benchmark target, directly on the codec over `std::net`.
//!
//! The client library ([`crate::client`]) writes every produce with its own `write_all`, which
//! is right for a library but would make a benchmark measure one system call per event on the
//! client side. Here the produces of one window are encoded into one buffer and written with one
//! call, like the Redis and NATS drivers do, so that flo is driven exactly like its peers.
//!
//! - Produce: `Produce` frames with a fresh op id each, pipelined up to the window; the
//!   acknowledgement is the `Ack` with that op id (flo sends it only once the event is durable
//!   under the server's `--fsync` policy). The frame is encoded once; each send patches in the
//!   op id and the payload.
//! - Catch-up read: one subscription on the run's namespace, starting just after a marker event
//!   produced before the stored events, not tailing, with a large credit window, read until its
//!   `End` frame.
//! - End-to-end: a tailing subscription at the end of the log on the run's namespace, opened
//!   (and caught up) before the first produce.
//!
//! Every run uses a fresh namespace, so repeats on one server never see each other's events.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Connection, ReadTarget, Reader, Tail, TailTarget, Target};
use crate::config::WireLimits;
use crate::event::{EventId, StartPosition};
use crate::protocol::{
    self, EndReason, ErrorFrame, Frame, FrameBuffer, Hello, NewEvent, Produce, Subscribe,
    PROTOCOL_VERSION,
};

/// A server that stops answering fails the run instead of hanging it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tailing consumer waits for new events before `next_batch` returns 0.
const TAIL_WAIT: Duration = Duration::from_millis(500);
/// Bytes asked of the socket per read.
const READ_CHUNK_SIZE: usize = 256 << 10;
/// Credit window of the catch-up reader and of the tailing consumer: large enough that the
/// server never waits for credit while the client keeps up; the client grants more as it goes.
const READ_CREDIT: u32 = 1 << 20;
/// The largest frame accepted before Welcome announces the server's limit.
const HANDSHAKE_FRAME_SIZE_MAX: u32 = 64 << 10;
/// Where the op id sits in an encoded Produce frame: after the 4-byte length and the kind byte.
const OP_ID_RANGE: std::ops::Range<usize> = 5..13;
/// The subscription id every benchmark connection uses (one subscription per connection).
const SUBSCRIPTION_ID: u32 = 1;

/// A flo server at `addr`, producing to (and reading) one namespace.
pub struct FloTarget {
    /// `host:port`; resolved on every connect.
    pub addr: String,
    /// The namespace this run produces to, e.g. `/bench/1234_5678`.
    pub namespace: String,
    /// Shown in reports, e.g. `flo-always`.
    pub label: String,
    /// Events acknowledged so far over all connections, for a progress line.
    pub acknowledged: Arc<AtomicU64>,
    /// The event the catch-up reader starts after; set by [`FloTarget::produce_marker`].
    marker: Option<EventId>,
}

impl FloTarget {
    pub fn new(addr: String, namespace: String, label: String) -> FloTarget {
        FloTarget {
            addr,
            namespace,
            label,
            acknowledged: Arc::new(AtomicU64::new(0)),
            marker: None,
        }
    }

    /// Produces one event to the namespace and remembers its id: the catch-up reader starts
    /// just after it, so it reads what is produced after this call and nothing before.
    pub fn produce_marker(&mut self) -> io::Result<EventId> {
        let mut wire = Wire::connect(&self.addr)?;
        let frame = Frame::Produce(Produce {
            op_id: 1,
            event: NewEvent {
                namespace: self.namespace.clone(),
                parent_id: None,
                data: b"marker".to_vec(),
            },
        });
        wire.queue(&frame);
        wire.flush()?;
        loop {
            match wire.receive()? {
                Frame::Ack(ack) if ack.op_id == 1 => {
                    self.marker = Some(ack.first_id);
                    return Ok(ack.first_id);
                }
                Frame::Error(error) => return Err(server_error(&error)),
                Frame::Pong { .. } => {}
                other => return Err(unexpected(&other, "the marker's Ack")),
            }
        }
    }
}

/// A fresh namespace for one run: `/bench/<pid>_<nanoseconds since the epoch>`.
pub fn fresh_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    format!("/bench/{}_{nanos}", std::process::id())
}

/// One handshaken connection: frames are queued into a buffer, written by `flush`, and read
/// back whole.
struct Wire {
    stream: TcpStream,
    received: FrameBuffer,
    write_buffer: Vec<u8>,
    limits: WireLimits,
}

impl Wire {
    fn connect(addr: &str) -> io::Result<Wire> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        for candidate in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&candidate, SOCKET_TIMEOUT) {
                Ok(stream) => return Wire::handshake(stream),
                Err(error) => last_error = error,
            }
        }
        Err(io::Error::new(
            last_error.kind(),
            format!("could not connect to {addr}: {last_error}"),
        ))
    }

    fn handshake(stream: TcpStream) -> io::Result<Wire> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        let mut wire = Wire {
            stream,
            received: FrameBuffer::with_capacity(READ_CHUNK_SIZE),
            write_buffer: Vec::with_capacity(64 << 10),
            limits: WireLimits {
                frame_size_max: HANDSHAKE_FRAME_SIZE_MAX,
                ..WireLimits::default()
            },
        };
        wire.queue(&Frame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: format!("flo-client bench {}", env!("CARGO_PKG_VERSION")),
            auth_token: Vec::new(),
        }));
        wire.flush()?;
        match wire.receive()? {
            Frame::Welcome(welcome) => {
                wire.limits = WireLimits {
                    frame_size_max: welcome.frame_size_max,
                    namespace_length_max: welcome.namespace_length_max,
                    event_data_size_max: welcome.event_data_size_max,
                    ..WireLimits::default()
                };
                Ok(wire)
            }
            Frame::Error(error) => Err(server_error(&error)),
            other => Err(unexpected(&other, "Welcome")),
        }
    }

    fn queue(&mut self, frame: &Frame) {
        protocol::encode(frame, &mut self.write_buffer);
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.write_buffer);
        self.write_buffer.clear();
        result
    }

    /// The next whole frame already received, without touching the socket.
    fn receive_buffered(&mut self) -> io::Result<Option<Frame>> {
        match self.received.decode(&self.limits) {
            Ok(frame) => Ok(frame),
            Err(error) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("undecodable bytes from the server: {error}"),
            )),
        }
    }

    /// Reads once from the socket; false when the read timed out.
    fn fill(&mut self) -> io::Result<bool> {
        let stream = &mut self.stream;
        let result = self.received.fill_with(READ_CHUNK_SIZE, |room| loop {
            match stream.read(room) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        });
        match result {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// The next frame, waiting for it (a quiet read time-out is an error).
    fn receive(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(frame) = self.receive_buffered()? {
                return Ok(frame);
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the server in {SOCKET_TIMEOUT:?}"),
                ));
            }
        }
    }

    fn subscribe(&mut self, namespace: &str, start: StartPosition, tail: bool) -> io::Result<()> {
        self.queue(&Frame::Subscribe(Subscribe {
            subscription_id: SUBSCRIPTION_ID,
            glob: namespace.to_string(),
            start,
            limit: 0,
            tail,
            credit: READ_CREDIT,
        }));
        self.flush()
    }
}

fn server_error(error: &ErrorFrame) -> io::Error {
    io::Error::other(format!(
        "the server refused ({:?}, {:?}): {}",
        error.scope, error.code, error.message
    ))
}

fn unexpected(frame: &Frame, expected: &str) -> io::Error {
    let name = protocol::kind_name(protocol::frame_kind(frame));
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("expected {expected}, got a {name} frame"),
    )
}

impl Target for FloTarget {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn connect(&self) -> io::Result<Box<dyn Connection>> {
        let wire = Wire::connect(&self.addr)?;
        Ok(Box::new(FloProducer {
            wire,
            namespace: self.namespace.clone(),
            template: Vec::new(),
            template_payload_size: None,
            next_op_id: 1,
            acknowledged: Arc::clone(&self.acknowledged),
        }))
    }
}

/// Produces with pipelined `Produce` frames.
struct FloProducer {
    wire: Wire,
    namespace: String,
    /// The encoded frame for the current payload size; op id and payload are patched in.
    template: Vec<u8>,
    /// The payload size `template` was encoded for.
    template_payload_size: Option<usize>,
    next_op_id: u64,
    acknowledged: Arc<AtomicU64>,
}

impl FloProducer {
    /// Encodes the frame once per payload size, checked against the server's limits.
    fn prepare(&mut self, size: usize) -> io::Result<()> {
        let event = NewEvent {
            namespace: self.namespace.clone(),
            parent_id: None,
            data: vec![0; size],
        };
        let limits = self.wire.limits;
        crate::event::validate_namespace(&event.namespace, limits.namespace_length_max as usize)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
        if size > limits.event_data_size_max as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "events of {size} bytes are over the server's limit of {} bytes",
                    limits.event_data_size_max
                ),
            ));
        }
        self.template.clear();
        protocol::encode(
            &Frame::Produce(Produce { op_id: 0, event }),
            &mut self.template,
        );
        if self.template.len() > limits.frame_size_max as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the produce frame is over the server's frame size limit",
            ));
        }
        Ok(())
    }
}

impl Connection for FloProducer {
    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.template_payload_size != Some(payload.len()) {
            self.prepare(payload.len())?;
            self.template_payload_size = Some(payload.len());
        }
        let payload_start = self.template.len() - payload.len();
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        self.template[OP_ID_RANGE].copy_from_slice(&op_id.to_be_bytes());
        self.template[payload_start..].copy_from_slice(payload);
        self.wire.write_buffer.extend_from_slice(&self.template);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.wire.flush()
    }

    fn ack_buffered(&self) -> bool {
        self.wire.received.has_bytes()
    }

    fn recv_ack(&mut self) -> io::Result<()> {
        loop {
            match self.wire.receive()? {
                Frame::Ack(_) => {
                    self.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Frame::Error(error) => return Err(server_error(&error)),
                Frame::Pong { .. } => {}
                other => return Err(unexpected(&other, "an Ack")),
            }
        }
    }
}

impl ReadTarget for FloTarget {
    fn name(&self) -> String {
        format!("{}-read", self.label)
    }

    /// Subscribes after the marker; the time the server takes to find that position counts in
    /// the first batch.
    fn open_reader(&self) -> io::Result<Box<dyn Reader>> {
        let marker = self.marker.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "produce_marker must run before the events to read are produced",
            )
        })?;
        let mut wire = Wire::connect(&self.addr)?;
        wire.subscribe(&self.namespace, StartPosition::AfterId(marker), false)?;
        Ok(Box::new(FloReader {
            wire,
            ended: false,
            delivered_since_credit: 0,
        }))
    }
}

/// Reads one subscription until its End frame.
struct FloReader {
    wire: Wire,
    ended: bool,
    delivered_since_credit: u32,
}

/// What one pass over the received frames found.
enum Seen {
    Event,
    /// The subscription ended (end of the stored events).
    End,
    /// Nothing that concerns the caller (a CaughtUp, a Pong).
    Other,
}

/// Classifies one frame of a benchmark subscription; a server error is an error.
fn on_subscription_frame(frame: &Frame) -> io::Result<Seen> {
    match frame {
        Frame::Event { .. } => Ok(Seen::Event),
        Frame::End { reason, .. } => match reason {
            EndReason::EndOfStream | EndReason::LimitReached => Ok(Seen::End),
            EndReason::Unsubscribed => Err(io::Error::other("the subscription was ended")),
        },
        Frame::CaughtUp { .. } | Frame::Pong { .. } | Frame::Ack(_) => Ok(Seen::Other),
        Frame::Error(error) => Err(server_error(error)),
        other => Err(unexpected(other, "an Event")),
    }
}

/// Grants the server credit for what was delivered once half the window is used.
fn grant_credit(wire: &mut Wire, delivered_since_credit: &mut u32) -> io::Result<()> {
    if *delivered_since_credit >= READ_CREDIT / 2 {
        wire.queue(&Frame::Credit {
            subscription_id: SUBSCRIPTION_ID,
            count: *delivered_since_credit,
        });
        wire.flush()?;
        *delivered_since_credit = 0;
    }
    Ok(())
}

impl Reader for FloReader {
    fn read_batch(&mut self) -> io::Result<u64> {
        let mut count = 0u64;
        while !self.ended {
            while let Some(frame) = self.wire.receive_buffered()? {
                match on_subscription_frame(&frame)? {
                    Seen::Event => count += 1,
                    Seen::End => {
                        self.ended = true;
                        break;
                    }
                    Seen::Other => {}
                }
            }
            self.delivered_since_credit += count as u32;
            grant_credit(&mut self.wire, &mut self.delivered_since_credit)?;
            if count > 0 || self.ended {
                break;
            }
            if !self.wire.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no events from the server in {SOCKET_TIMEOUT:?}"),
                ));
            }
        }
        Ok(count)
    }
}

impl TailTarget for FloTarget {
    /// Subscribes at the end of the log and waits for the server's CaughtUp, so that every
    /// event produced after this returns is delivered.
    fn tail(&self) -> io::Result<Box<dyn Tail>> {
        let mut wire = Wire::connect(&self.addr)?;
        wire.subscribe(&self.namespace, StartPosition::End, true)?;
        loop {
            match wire.receive()? {
                Frame::CaughtUp { .. } => break,
                frame => {
                    if let Seen::End = on_subscription_frame(&frame)? {
                        return Err(io::Error::other("the tailing subscription ended"));
                    }
                }
            }
        }
        wire.stream.set_read_timeout(Some(TAIL_WAIT))?;
        Ok(Box::new(FloTail {
            wire,
            delivered_since_credit: 0,
            next_ping_token: 1,
        }))
    }
}

/// A tailing consumer.
struct FloTail {
    wire: Wire,
    delivered_since_credit: u32,
    next_ping_token: u64,
}

impl Tail for FloTail {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut count = 0u64;
        loop {
            while let Some(frame) = self.wire.receive_buffered()? {
                if let Frame::Event { event, .. } = &frame {
                    on_event(&event.data);
                    count += 1;
                } else if let Seen::End = on_subscription_frame(&frame)? {
                    return Err(io::Error::other("the tailing subscription ended"));
                }
            }
            self.delivered_since_credit += count as u32;
            grant_credit(&mut self.wire, &mut self.delivered_since_credit)?;
            if count > 0 {
                return Ok(count);
            }
            if !self.wire.fill()? {
                // Quiet for a while: a ping keeps the connection clear of the idle time-out.
                self.wire.queue(&Frame::Ping {
                    token: self.next_ping_token,
                });
                self.next_ping_token += 1;
                self.wire.flush()?;
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_patch_gives_the_codec_bytes() {
        let namespace = "/bench/1_2".to_string();
        for (op_id, payload) in [(1u64, vec![7u8; 100]), (u64::MAX - 3, vec![1u8; 8])] {
            let mut template = Vec::new();
            let event = NewEvent {
                namespace: namespace.clone(),
                parent_id: None,
                data: vec![0; payload.len()],
            };
            protocol::encode(&Frame::Produce(Produce { op_id: 0, event }), &mut template);
            let payload_start = template.len() - payload.len();
            template[OP_ID_RANGE].copy_from_slice(&op_id.to_be_bytes());
            template[payload_start..].copy_from_slice(&payload);
            let mut expected = Vec::new();
            let event = NewEvent {
                namespace: namespace.clone(),
                parent_id: None,
                data: payload,
            };
            protocol::encode(&Frame::Produce(Produce { op_id, event }), &mut expected);
            assert_eq!(template, expected);
        }
    }

    #[test]
    fn fresh_namespaces_are_valid_and_distinct() {
        let first = fresh_namespace();
        let second = fresh_namespace();
        assert_ne!(first, second);
        assert!(crate::event::validate_namespace(&first, 256).is_ok());
    }
}
