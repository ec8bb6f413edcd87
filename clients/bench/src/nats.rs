//! NATS JetStream as a benchmark peer, over the hand-written NATS text protocol.
//!
//! Each connection subscribes to its own inbox `_INBOX.<unique>.*` and publishes to the
//! stream's subject with a reply subject in that inbox; JetStream answers every stored message
//! with a PubAck (`{"stream":..,"seq":..}`) on the reply subject, which counts as the
//! acknowledgement. With file storage, JetStream writes each message to its file before the
//! PubAck but, by default, fsyncs only every two minutes.

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Connection, GroupTarget, Member, Target};

/// Largest message payload accepted from the server (the server's default limit is 1 MiB).
const PAYLOAD_SIZE_MAX: usize = 8 << 20;
/// Longest protocol line accepted; INFO lines are a few hundred bytes.
const LINE_SIZE_MAX: u64 = 64 << 10;
/// A server that stops answering (e.g. no stream for the subject) fails the run, not hangs it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `MSG <subject> <sid> [reply-to] <#bytes>`; the payload follows.
    Msg {
        subject: Vec<u8>,
        sid: Vec<u8>,
        reply_to: Option<Vec<u8>>,
        size: usize,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
    Info,
}

/// Why a server line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsError(pub String);

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed NATS protocol line: {}", self.0)
    }
}

impl From<NatsError> for io::Error {
    fn from(error: NatsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error.to_string())
    }
}

/// Parses one protocol line, without its CRLF.
pub fn parse_server_op(line: &[u8]) -> Result<ServerOp, NatsError> {
    let text = std::str::from_utf8(line).map_err(|_| NatsError("not UTF-8".to_string()))?;
    let (op, rest) = match text.find([' ', '\t']) {
        Some(index) => (&text[..index], text[index..].trim()),
        None => (text, ""),
    };
    match op.to_ascii_uppercase().as_str() {
        "MSG" => parse_msg(rest),
        "PING" => Ok(ServerOp::Ping),
        "PONG" => Ok(ServerOp::Pong),
        "+OK" => Ok(ServerOp::Ok),
        "-ERR" => Ok(ServerOp::Err(rest.trim_matches('\'').to_string())),
        "INFO" => Ok(ServerOp::Info),
        _ => Err(NatsError(format!("unknown operation {op:?}"))),
    }
}

fn parse_msg(arguments: &str) -> Result<ServerOp, NatsError> {
    let fields: Vec<&str> = arguments.split_ascii_whitespace().collect();
    let (subject, sid, reply_to, size) = match fields.as_slice() {
        [subject, sid, size] => (subject, sid, None, size),
        [subject, sid, reply_to, size] => (subject, sid, Some(reply_to), size),
        _ => return Err(NatsError(format!("MSG with {} fields", fields.len()))),
    };
    let size: usize = size
        .parse()
        .map_err(|_| NatsError(format!("MSG size {size:?}")))?;
    if size > PAYLOAD_SIZE_MAX {
        return Err(NatsError(format!("MSG payload of {size} bytes")));
    }
    Ok(ServerOp::Msg {
        subject: subject.as_bytes().to_vec(),
        sid: sid.as_bytes().to_vec(),
        reply_to: reply_to.map(|reply_to| reply_to.as_bytes().to_vec()),
        size,
    })
}

/// Reads one line without its CRLF; the end of input is `UnexpectedEof`.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    reader
        .by_ref()
        .take(LINE_SIZE_MAX)
        .read_until(b'\n', line)?;
    if !line.ends_with(b"\r\n") {
        if line.len() as u64 >= LINE_SIZE_MAX {
            return Err(NatsError("line too long".to_string()).into());
        }
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    line.truncate(line.len() - 2);
    Ok(())
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: Vec<u8>,
    /// The reply subject; for a JetStream delivery, the subject its ack goes to.
    pub reply_to: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Reads until the next MSG and returns it, answering PINGs through `writer` on the way.
pub fn read_message(reader: &mut impl BufRead, writer: &mut impl Write) -> io::Result<Message> {
    let mut line = Vec::with_capacity(128);
    loop {
        read_line(reader, &mut line)?;
        match parse_server_op(&line)? {
            ServerOp::Msg {
                subject,
                reply_to,
                size,
                ..
            } => {
                let mut payload = vec![0; size + 2];
                reader.read_exact(&mut payload)?;
                if !payload.ends_with(b"\r\n") {
                    return Err(NatsError("MSG payload without CRLF".to_string()).into());
                }
                payload.truncate(size);
                return Ok(Message {
                    subject,
                    reply_to,
                    payload,
                });
            }
            ServerOp::Ping => {
                writer.write_all(b"PONG\r\n")?;
                writer.flush()?;
            }
            ServerOp::Pong | ServerOp::Ok | ServerOp::Info => {}
            ServerOp::Err(message) => {
                return Err(io::Error::other(format!("nats-server: {message}")))
            }
        }
    }
}

/// Whether a JetStream API reply or PubAck reports an error.
pub fn jetstream_error(payload: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(payload);
    if text.contains("\"error\"") || !text.trim_start().starts_with('{') {
        return Some(text.into_owned());
    }
    None
}

/// A blocking NATS connection with its own inbox.
pub struct NatsConnection {
    writer: BufWriter<TcpStream>,
    reader: BufReader<TcpStream>,
    inbox: String,
}

impl NatsConnection {
    /// Connects, waits for the server to confirm (PING/PONG) and subscribes to the inbox.
    pub fn connect(addr: SocketAddr) -> io::Result<NatsConnection> {
        static NEXT_INBOX: AtomicU64 = AtomicU64::new(0);
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        let inbox = format!(
            "_INBOX.bench{}x{}",
            std::process::id(),
            NEXT_INBOX.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = NatsConnection {
            writer: BufWriter::with_capacity(64 << 10, stream.try_clone()?),
            reader: BufReader::with_capacity(64 << 10, stream),
            inbox,
        };
        let mut line = Vec::new();
        read_line(&mut connection.reader, &mut line)?;
        if parse_server_op(&line)? != ServerOp::Info {
            return Err(NatsError("the server did not open with INFO".to_string()).into());
        }
        write!(
            connection.writer,
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"lang\":\"rust\",\"version\":\"flo-bench\"}}\r\n\
             SUB {}.* 1\r\nPING\r\n",
            connection.inbox
        )?;
        connection.writer.flush()?;
        loop {
            read_line(&mut connection.reader, &mut line)?;
            match parse_server_op(&line)? {
                ServerOp::Pong => return Ok(connection),
                ServerOp::Err(message) => {
                    return Err(io::Error::other(format!("nats-server: {message}")))
                }
                _ => {}
            }
        }
    }

    /// Publishes with a reply subject `<inbox>.<token>`; does not flush.
    pub fn publish(&mut self, subject: &str, token: &str, payload: &[u8]) -> io::Result<()> {
        write!(
            self.writer,
            "PUB {subject} {}.{token} {}\r\n",
            self.inbox,
            payload.len()
        )?;
        self.writer.write_all(payload)?;
        self.writer.write_all(b"\r\n")
    }

    /// Sends a request and returns the reply payload.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.publish(subject, "request", payload)?;
        self.writer.flush()?;
        Ok(read_message(&mut self.reader, &mut self.writer)?.payload)
    }
}

/// A JetStream stream with file storage on the NATS server at `addr`. The stream's name is also
/// its only subject.
pub struct JetStream {
    pub addr: SocketAddr,
    pub stream: String,
    pub label: String,
    /// The stream's replicas (`num_replicas`): 1, or up to the servers of a JetStream
    /// cluster; JetStream answers a publish once a quorum of them stored it.
    pub replicas: u8,
}

impl JetStream {
    /// Creates the stream (file storage, `replicas` replicas) through the JetStream API.
    pub fn create_stream(&self) -> io::Result<()> {
        let config = serde_json::json!({
            "name": self.stream,
            "subjects": [self.stream],
            "storage": "file",
            "num_replicas": self.replicas.max(1),
        })
        .to_string();
        self.api(&format!("$JS.API.STREAM.CREATE.{}", self.stream), &config)
    }

    /// Deletes the stream and its files.
    pub fn delete_stream(&self) -> io::Result<()> {
        self.api(&format!("$JS.API.STREAM.DELETE.{}", self.stream), "")
    }

    pub(crate) fn api(&self, subject: &str, body: &str) -> io::Result<()> {
        let mut connection = NatsConnection::connect(self.addr)?;
        let reply = connection.request(subject, body.as_bytes())?;
        match jetstream_error(&reply) {
            Some(error) => Err(io::Error::other(format!("{subject}: {error}"))),
            None => Ok(()),
        }
    }
}

impl Target for JetStream {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn connect(&self) -> io::Result<Box<dyn Connection>> {
        Ok(Box::new(PublishConnection {
            connection: NatsConnection::connect(self.addr)?,
            subject: self.stream.clone(),
        }))
    }
}

struct PublishConnection {
    connection: NatsConnection,
    subject: String,
}

impl Connection for PublishConnection {
    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.connection.publish(&self.subject, "ack", payload)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.connection.writer.flush()
    }

    fn ack_buffered(&self) -> bool {
        !self.connection.reader.buffer().is_empty()
    }

    fn wait_for_ack(&mut self, timeout: Duration) -> io::Result<bool> {
        crate::wait_for_bytes(&mut self.connection.reader, timeout, SOCKET_TIMEOUT)
    }

    fn recv_ack(&mut self) -> io::Result<()> {
        let connection = &mut self.connection;
        let message = read_message(&mut connection.reader, &mut connection.writer)?;
        match jetstream_error(&message.payload) {
            Some(error) => Err(io::Error::other(format!("JetStream refused: {error}"))),
            None => Ok(()),
        }
    }
}

/// A durable JetStream push consumer with explicit acks, shared by the members of a group run
/// (`flo_bench::group`) through a queue group on its deliver subject: JetStream hands each
/// message to one member; a member acks with `+ACK` to the message's reply subject, without a
/// reply (as the NATS clients' `Ack()`), for each message it received. `max_ack_pending`
/// bounds the messages delivered and not acknowledged over all members.
pub struct JetStreamGroup<'a> {
    pub stream: &'a JetStream,
    pub consumer: String,
    deliver_subject: String,
}

/// The queue group the members subscribe with.
const QUEUE_GROUP: &str = "workers";
/// How long a member waits for a message before `next_batch` returns 0.
const MEMBER_WAIT: Duration = Duration::from_millis(100);
/// How long `settled` polls the consumer's state for the last acks.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

impl<'a> JetStreamGroup<'a> {
    /// Creates the durable consumer (deliver all, explicit acks, 30 s ack wait, 10 deliveries).
    pub fn create(stream: &'a JetStream, max_ack_pending: usize) -> io::Result<JetStreamGroup<'a>> {
        let consumer = format!("{}_group", stream.stream);
        let deliver_subject = format!("deliver.{}", stream.stream);
        let config = serde_json::json!({
            "stream_name": stream.stream,
            "config": {
                "durable_name": consumer,
                "deliver_subject": deliver_subject,
                "deliver_group": QUEUE_GROUP,
                "deliver_policy": "all",
                "ack_policy": "explicit",
                "ack_wait": 30_000_000_000u64,
                "max_deliver": 10,
                "max_ack_pending": max_ack_pending.max(1),
            }
        })
        .to_string();
        stream.api(
            &format!(
                "$JS.API.CONSUMER.DURABLE.CREATE.{}.{consumer}",
                stream.stream
            ),
            &config,
        )?;
        Ok(JetStreamGroup {
            stream,
            consumer,
            deliver_subject,
        })
    }

    /// The consumer's `num_ack_pending` and `num_pending` (`$JS.API.CONSUMER.INFO`).
    fn pending(&self) -> io::Result<(u64, u64)> {
        let subject = format!(
            "$JS.API.CONSUMER.INFO.{}.{}",
            self.stream.stream, self.consumer
        );
        let reply = NatsConnection::connect(self.stream.addr)?.request(&subject, b"")?;
        if let Some(error) = jetstream_error(&reply) {
            return Err(io::Error::other(format!("{subject}: {error}")));
        }
        consumer_pending(&reply)
    }
}

/// `num_ack_pending` and `num_pending` of a consumer info reply.
pub fn consumer_pending(reply: &[u8]) -> io::Result<(u64, u64)> {
    let info: serde_json::Value = serde_json::from_slice(reply)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    let field = |name: &str| {
        info[name].as_u64().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("consumer info without {name}"),
            )
        })
    };
    Ok((field("num_ack_pending")?, field("num_pending")?))
}

impl GroupTarget for JetStreamGroup<'_> {
    fn join(&self) -> io::Result<Box<dyn Member>> {
        let mut connection = NatsConnection::connect(self.stream.addr)?;
        write!(
            connection.writer,
            "SUB {} {QUEUE_GROUP} 2\r\nPING\r\n",
            self.deliver_subject
        )?;
        connection.writer.flush()?;
        await_pong(&mut connection)?;
        Ok(Box::new(JetStreamMember { connection }))
    }

    /// Polls the consumer until no message is delivered-and-unacknowledged nor undelivered:
    /// JetStream handles acks asynchronously, after the member's PING was answered.
    fn settled(&self) -> io::Result<()> {
        let deadline = std::time::Instant::now() + SETTLE_WAIT;
        loop {
            let (ack_pending, pending) = self.pending()?;
            if ack_pending == 0 && pending == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the consumer still has {ack_pending} unacknowledged and {pending} \
                     undelivered messages"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads until PONG; a message that arrives meanwhile is acknowledged.
fn await_pong(connection: &mut NatsConnection) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        read_line(&mut connection.reader, &mut line)?;
        match parse_server_op(&line)? {
            ServerOp::Pong => return Ok(()),
            ServerOp::Ping => connection.writer.write_all(b"PONG\r\n")?,
            ServerOp::Err(message) => {
                return Err(io::Error::other(format!("nats-server: {message}")))
            }
            ServerOp::Msg { reply_to, size, .. } => {
                let mut payload = vec![0; size + 2];
                connection.reader.read_exact(&mut payload)?;
                if let Some(reply_to) = reply_to {
                    ack(&mut connection.writer, &reply_to)?;
                }
            }
            ServerOp::Ok | ServerOp::Info => {}
        }
    }
}

fn ack(writer: &mut impl Write, reply_to: &[u8]) -> io::Result<()> {
    writer.write_all(b"PUB ")?;
    writer.write_all(reply_to)?;
    writer.write_all(b" 4\r\n+ACK\r\n")
}

struct JetStreamMember {
    connection: NatsConnection,
}

impl Member for JetStreamMember {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let connection = &mut self.connection;
        if connection.reader.buffer().is_empty() {
            // Waits a bounded time for the first bytes without consuming anything, so that a
            // time-out never cuts a message in half.
            let stream = connection.reader.get_ref();
            stream.set_read_timeout(Some(MEMBER_WAIT))?;
            let filled = connection.reader.fill_buf().map(|bytes| bytes.is_empty());
            connection
                .reader
                .get_ref()
                .set_read_timeout(Some(SOCKET_TIMEOUT))?;
            match filled {
                Ok(false) => {}
                Ok(true) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(0)
                }
                Err(error) => return Err(error),
            }
        }
        let mut count = 0u64;
        while !connection.reader.buffer().is_empty() {
            let message = read_message(&mut connection.reader, &mut connection.writer)?;
            let Some(reply_to) = message.reply_to else {
                return Err(
                    NatsError("a JetStream delivery without an ack subject".to_string()).into(),
                );
            };
            on_event(&message.payload);
            ack(&mut connection.writer, &reply_to)?;
            count += 1;
        }
        connection.writer.flush()?;
        Ok(count)
    }

    /// PING after the acks: the server has read them once the PONG comes (JetStream applies
    /// them asynchronously; [`GroupTarget::settled`] waits for that).
    fn finish(&mut self) -> io::Result<()> {
        self.connection.writer.write_all(b"PING\r\n")?;
        self.connection.writer.flush()?;
        await_pong(&mut self.connection)?;
        self.connection.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_operations() {
        assert_eq!(parse_server_op(b"PING").unwrap(), ServerOp::Ping);
        assert_eq!(parse_server_op(b"pong").unwrap(), ServerOp::Pong);
        assert_eq!(parse_server_op(b"+OK").unwrap(), ServerOp::Ok);
        assert_eq!(parse_server_op(b"INFO {\"a\":1}").unwrap(), ServerOp::Info);
        assert_eq!(
            parse_server_op(b"-ERR 'Authorization Violation'").unwrap(),
            ServerOp::Err("Authorization Violation".to_string())
        );
        assert_eq!(
            parse_server_op(b"MSG _INBOX.a.ack 1 37").unwrap(),
            ServerOp::Msg {
                subject: b"_INBOX.a.ack".to_vec(),
                sid: b"1".to_vec(),
                reply_to: None,
                size: 37
            }
        );
        assert_eq!(
            parse_server_op(b"MSG s\t9  r.x 0").unwrap(),
            ServerOp::Msg {
                subject: b"s".to_vec(),
                sid: b"9".to_vec(),
                reply_to: Some(b"r.x".to_vec()),
                size: 0
            }
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in [
            &b"MSG a 1"[..],
            b"MSG a 1 b c 4",
            b"MSG a 1 -4",
            b"MSG a 1 99999999999",
            b"HELLO",
            b"",
            b"\xff",
        ] {
            assert!(parse_server_op(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn messages_are_read_and_pings_answered() {
        let input =
            b"INFO {}\r\nPING\r\n+OK\r\nMSG _INBOX.a.ack 1 5\r\nhe\r\no\r\nMSG x 1 0\r\n\r\n";
        let mut reader = BufReader::with_capacity(1, &input[..]);
        let mut written = Vec::new();
        let first = read_message(&mut reader, &mut written).unwrap();
        assert_eq!(first.subject, b"_INBOX.a.ack".to_vec());
        assert_eq!(first.payload, b"he\r\no".to_vec());
        assert_eq!(written, b"PONG\r\n".to_vec());
        let second = read_message(&mut reader, &mut written).unwrap();
        assert_eq!(second.payload, Vec::<u8>::new());
        let end = read_message(&mut reader, &mut written).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn truncated_and_corrupt_messages_fail() {
        let whole = b"MSG s 1 3\r\nabc\r\n";
        for end in 0..whole.len() {
            let error = read_message(&mut &whole[..end], &mut Vec::new()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "at {end}");
        }
        let corrupt = read_message(&mut &b"MSG s 1 3\r\nabcd\r\n"[..], &mut Vec::new());
        assert_eq!(corrupt.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let refused = read_message(&mut &b"-ERR 'Maximum Payload'\r\n"[..], &mut Vec::new());
        assert!(refused.unwrap_err().to_string().contains("Maximum Payload"));
    }

    #[test]
    fn deliveries_carry_their_ack_subject() {
        let input = b"MSG deliver.S 2 $JS.ACK.S.C.1.7.7.1700000000.0 3\r\nabc\r\n";
        let message = read_message(&mut &input[..], &mut Vec::new()).unwrap();
        assert_eq!(
            message.reply_to,
            Some(b"$JS.ACK.S.C.1.7.7.1700000000.0".to_vec())
        );
        let mut written = Vec::new();
        ack(&mut written, message.reply_to.as_deref().unwrap()).unwrap();
        assert_eq!(
            written,
            b"PUB $JS.ACK.S.C.1.7.7.1700000000.0 4\r\n+ACK\r\n".to_vec()
        );
    }

    #[test]
    fn consumer_info_pending_counts() {
        let info = br#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","num_ack_pending":3,"num_redelivered":0,"num_waiting":0,"num_pending":12}"#;
        assert_eq!(consumer_pending(info).unwrap(), (3, 12));
        assert!(consumer_pending(b"{}").is_err());
        assert!(consumer_pending(b"not json").is_err());
    }

    #[test]
    fn pub_acks_and_errors() {
        assert_eq!(jetstream_error(b"{\"stream\":\"S\",\"seq\":12}"), None);
        assert!(
            jetstream_error(b"{\"error\":{\"code\":503,\"description\":\"no responders\"}}")
                .is_some()
        );
        assert!(jetstream_error(b"").is_some());
    }
}
