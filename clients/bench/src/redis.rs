//! Redis Streams as a benchmark peer, over hand-written RESP2.
//!
//! Produce: `XADD <stream> * d <payload>`, pipelined up to the window; the acknowledgement is
//! the entry id Redis replies with (with `appendfsync always`, Redis writes and fsyncs the
//! append-only file before it sends the replies of an event-loop turn). Catch-up read:
//! `XREAD COUNT 1000 STREAMS <stream> <last id>` in a loop from `0-0` until the reply is null.

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{Connection, GroupTarget, Member, ReadTarget, Reader, Tail, TailTarget, Target};

/// Largest bulk string accepted from the server; bigger is treated as a protocol error.
const BULK_SIZE_MAX: usize = 64 << 20;
/// Largest array accepted from the server.
const ARRAY_LENGTH_MAX: usize = 1 << 20;
/// Deepest nesting accepted (an XREAD reply is 5 deep).
const DEPTH_MAX: usize = 8;
/// Entries per XREAD.
const READ_BATCH_COUNT: usize = 1_000;
/// How long a tailing XREAD waits for new entries, in milliseconds.
const TAIL_BLOCK_MS: u64 = 500;
/// A server that stops answering fails the run instead of hanging it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    /// `None` is the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum RespError {
    Io(io::Error),
    Protocol(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(error) => write!(f, "reading a RESP reply: {error}"),
            RespError::Protocol(message) => write!(f, "malformed RESP reply: {message}"),
        }
    }
}

impl From<io::Error> for RespError {
    fn from(error: io::Error) -> RespError {
        RespError::Io(error)
    }
}

impl From<RespError> for io::Error {
    fn from(error: RespError) -> io::Error {
        match error {
            RespError::Io(error) => error,
            RespError::Protocol(_) => io::Error::new(io::ErrorKind::InvalidData, error.to_string()),
        }
    }
}

/// Reads one whole reply; the end of input in the middle of a reply is `UnexpectedEof`.
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, RespError> {
    read_reply_at_depth(reader, 0)
}

fn read_reply_at_depth(reader: &mut impl BufRead, depth: usize) -> Result<Reply, RespError> {
    if depth > DEPTH_MAX {
        return Err(RespError::Protocol(format!(
            "nested deeper than {DEPTH_MAX}"
        )));
    }
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| RespError::Protocol("empty line".to_string()))?;
    match kind {
        b'+' => Ok(Reply::Simple(rest.to_vec())),
        b'-' => Ok(Reply::Error(rest.to_vec())),
        b':' => Ok(Reply::Integer(parse_integer(rest)?)),
        b'$' => match parse_length(rest, BULK_SIZE_MAX)? {
            None => Ok(Reply::Bulk(None)),
            Some(size) => {
                let mut data = vec![0; size + 2];
                reader.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(RespError::Protocol("bulk string without CRLF".to_string()));
                }
                data.truncate(size);
                Ok(Reply::Bulk(Some(data)))
            }
        },
        b'*' => match parse_length(rest, ARRAY_LENGTH_MAX)? {
            None => Ok(Reply::Array(None)),
            Some(length) => {
                let mut items = Vec::with_capacity(length);
                for _ in 0..length {
                    items.push(read_reply_at_depth(reader, depth + 1)?);
                }
                Ok(Reply::Array(Some(items)))
            }
        },
        other => Err(RespError::Protocol(format!(
            "unknown reply type {:?}",
            char::from(*other)
        ))),
    }
}

/// One line without its CRLF.
fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::with_capacity(16);
    // A line longer than this is not a RESP header; stop reading rather than grow.
    let read = reader.by_ref().take(1_024).read_until(b'\n', &mut line)?;
    if read == 0 || !line.ends_with(b"\n") {
        if line.len() >= 1_024 {
            return Err(RespError::Protocol("header line too long".to_string()));
        }
        return Err(RespError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Protocol("line ends without CR".to_string()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_integer(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| RespError::Protocol(format!("bad integer {:?}", lossy(text))))
}

/// A length, `None` for `-1` (null), refused above `max`.
fn parse_length(text: &[u8], max: usize) -> Result<Option<usize>, RespError> {
    match parse_integer(text)? {
        -1 => Ok(None),
        length if length >= 0 && length as u64 <= max as u64 => Ok(Some(length as usize)),
        length => Err(RespError::Protocol(format!("length {length} out of range"))),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Appends one command in RESP array form.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A blocking RESP connection.
pub struct RespConnection {
    writer: BufWriter<TcpStream>,
    reader: BufReader<TcpStream>,
}

impl RespConnection {
    pub fn connect(addr: SocketAddr) -> io::Result<RespConnection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        Ok(RespConnection {
            writer: BufWriter::with_capacity(64 << 10, stream.try_clone()?),
            reader: BufReader::with_capacity(256 << 10, stream),
        })
    }

    /// Sends one command and waits for its reply; an error reply is an error.
    pub fn command(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        self.writer.write_all(&out)?;
        self.writer.flush()?;
        self.reply()
    }

    fn reply(&mut self) -> io::Result<Reply> {
        match read_reply(&mut self.reader)? {
            Reply::Error(message) => Err(io::Error::other(format!(
                "redis replied with an error: {}",
                lossy(&message)
            ))),
            reply => Ok(reply),
        }
    }
}

/// Redis Streams at `addr`, appending to `stream`.
pub struct RedisStreams {
    pub addr: SocketAddr,
    pub stream: String,
    /// Shown in reports, e.g. `redis-always`.
    pub label: String,
}

impl RedisStreams {
    /// Deletes the stream, so that repeated runs start empty and memory stays bounded.
    pub fn delete_stream(&self) -> io::Result<()> {
        let mut connection = RespConnection::connect(self.addr)?;
        connection.command(&[b"DEL", self.stream.as_bytes()])?;
        Ok(())
    }
}

impl Target for RedisStreams {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn connect(&self) -> io::Result<Box<dyn Connection>> {
        let connection = RespConnection::connect(self.addr)?;
        let mut prefix = Vec::new();
        prefix.extend_from_slice(b"*5\r\n$4\r\nXADD\r\n");
        prefix.extend_from_slice(format!("${}\r\n", self.stream.len()).as_bytes());
        prefix.extend_from_slice(self.stream.as_bytes());
        prefix.extend_from_slice(b"\r\n$1\r\n*\r\n$1\r\nd\r\n");
        Ok(Box::new(XaddConnection { connection, prefix }))
    }
}

/// Produces with XADD; the prefix up to the payload is encoded once.
struct XaddConnection {
    connection: RespConnection,
    prefix: Vec<u8>,
}

impl Connection for XaddConnection {
    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let writer = &mut self.connection.writer;
        writer.write_all(&self.prefix)?;
        write!(writer, "${}\r\n", payload.len())?;
        writer.write_all(payload)?;
        writer.write_all(b"\r\n")
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
        match self.connection.reply()? {
            Reply::Bulk(Some(_)) => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("XADD replied {other:?}, not an entry id"),
            )),
        }
    }
}

impl ReadTarget for RedisStreams {
    fn name(&self) -> String {
        format!("{}-read", self.label)
    }

    fn open_reader(&self) -> io::Result<Box<dyn Reader>> {
        Ok(Box::new(XreadReader {
            connection: RespConnection::connect(self.addr)?,
            stream: self.stream.clone(),
            last_id: b"0-0".to_vec(),
        }))
    }
}

struct XreadReader {
    connection: RespConnection,
    stream: String,
    last_id: Vec<u8>,
}

impl Reader for XreadReader {
    fn read_batch(&mut self) -> io::Result<u64> {
        let count = READ_BATCH_COUNT.to_string();
        let reply = self.connection.command(&[
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            b"STREAMS",
            self.stream.as_bytes(),
            &self.last_id,
        ])?;
        let batch = xread_batch(reply)
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))?;
        if let Some(last_id) = batch.last_id {
            self.last_id = last_id;
        }
        Ok(batch.count)
    }
}

/// The stream read back through a consumer group: `XGROUP CREATE <stream> <group> 0`, then
/// `XREADGROUP GROUP <group> c COUNT 1000 STREAMS <stream> >` and one `XACK` of the batch's ids
/// (one round trip each) until XREADGROUP returns nothing.
pub struct RedisGroupRead<'a>(pub &'a RedisStreams);

impl ReadTarget for RedisGroupRead<'_> {
    fn name(&self) -> String {
        format!("{}-group", self.0.label)
    }

    fn open_reader(&self) -> io::Result<Box<dyn Reader>> {
        let mut connection = RespConnection::connect(self.0.addr)?;
        let group = format!("{}-group", self.0.stream);
        match connection.command(&[
            b"XGROUP",
            b"CREATE",
            self.0.stream.as_bytes(),
            group.as_bytes(),
            b"0",
        ])? {
            Reply::Simple(_) => {}
            other => return Err(io::Error::other(format!("XGROUP CREATE replied {other:?}"))),
        }
        Ok(Box::new(XreadgroupReader {
            connection,
            stream: self.0.stream.clone(),
            group,
        }))
    }
}

struct XreadgroupReader {
    connection: RespConnection,
    stream: String,
    group: String,
}

impl Reader for XreadgroupReader {
    fn read_batch(&mut self) -> io::Result<u64> {
        let count = READ_BATCH_COUNT.to_string();
        let reply = self.connection.command(&[
            b"XREADGROUP",
            b"GROUP",
            self.group.as_bytes(),
            b"c",
            b"COUNT",
            count.as_bytes(),
            b"STREAMS",
            self.stream.as_bytes(),
            b">",
        ])?;
        let ids = xread_ids(reply)
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args: Vec<&[u8]> = vec![b"XACK", self.stream.as_bytes(), self.group.as_bytes()];
        args.extend(ids.iter().map(Vec::as_slice));
        match self.connection.command(&args)? {
            Reply::Integer(acked) if acked as usize == ids.len() => Ok(ids.len() as u64),
            other => Err(io::Error::other(format!(
                "XACK of {} ids replied {other:?}",
                ids.len()
            ))),
        }
    }
}

/// The entry ids of an XREAD or XREADGROUP reply for one stream, in order.
pub fn xread_ids(reply: Reply) -> Result<Vec<Vec<u8>>, String> {
    let streams = match reply {
        Reply::Array(None) | Reply::Bulk(None) => return Ok(Vec::new()),
        Reply::Array(Some(streams)) => streams,
        other => return Err(format!("XREAD replied {other:?}")),
    };
    let Some(Reply::Array(Some(stream))) = streams.into_iter().next() else {
        return Ok(Vec::new());
    };
    let Some(Reply::Array(Some(entries))) = stream.into_iter().nth(1) else {
        return Err("XREAD stream without an entry list".to_string());
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            Reply::Array(Some(entry)) => match entry.into_iter().next() {
                Some(Reply::Bulk(Some(id))) => Ok(id),
                other => Err(format!("XREAD entry id is {other:?}")),
            },
            other => Err(format!("XREAD entry is {other:?}")),
        })
        .collect()
}

impl TailTarget for RedisStreams {
    /// Follows the stream from its first entry: each run uses a fresh, empty stream, and `$`
    /// would miss whatever was appended before the consumer's first XREAD.
    fn tail(&self) -> io::Result<Box<dyn Tail>> {
        Ok(Box::new(XreadTail {
            connection: RespConnection::connect(self.addr)?,
            stream: self.stream.clone(),
            last_id: b"0-0".to_vec(),
        }))
    }
}

struct XreadTail {
    connection: RespConnection,
    stream: String,
    last_id: Vec<u8>,
}

impl Tail for XreadTail {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let (count, block) = (READ_BATCH_COUNT.to_string(), TAIL_BLOCK_MS.to_string());
        let reply = self.connection.command(&[
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            self.stream.as_bytes(),
            &self.last_id,
        ])?;
        let batch = xread_visit(reply, on_event)
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))?;
        if let Some(last_id) = batch.last_id {
            self.last_id = last_id;
        }
        Ok(batch.count)
    }
}

/// A consumer group on the run's stream for a group run (`flo_bench::group`), made at setup with
/// `XGROUP CREATE <stream> <group> 0 MKSTREAM`. Each member is a consumer of its own name that
/// loops on `XREADGROUP GROUP <group> <member> COUNT <batch> BLOCK 100 STREAMS <stream> >`
/// and, for each non-empty reply, writes one `XACK` of the batch's ids without waiting: its
/// reply (the count acked, checked) is read after the next XREADGROUP was written, so an ack
/// costs a member no round trip, as in flo and NATS, whose acks have no reply at all.
pub struct RedisGroup<'a> {
    pub streams: &'a RedisStreams,
    pub group: String,
    /// Entries one XREADGROUP may return: the most a member holds unacknowledged.
    pub batch: usize,
    next_member: std::sync::atomic::AtomicU64,
}

/// How long a member's XREADGROUP waits for new entries, in milliseconds.
const GROUP_BLOCK_MS: u64 = 100;

impl<'a> RedisGroup<'a> {
    /// Creates the group (and the stream, if it does not exist yet) at the stream's start.
    pub fn create(streams: &'a RedisStreams, batch: usize) -> io::Result<RedisGroup<'a>> {
        let group = format!("{}-group", streams.stream);
        let mut connection = RespConnection::connect(streams.addr)?;
        match connection.command(&[
            b"XGROUP",
            b"CREATE",
            streams.stream.as_bytes(),
            group.as_bytes(),
            b"0",
            b"MKSTREAM",
        ])? {
            Reply::Simple(_) => {}
            other => return Err(io::Error::other(format!("XGROUP CREATE replied {other:?}"))),
        }
        Ok(RedisGroup {
            streams,
            group,
            batch: batch.max(1),
            next_member: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

impl GroupTarget for RedisGroup<'_> {
    fn join(&self) -> io::Result<Box<dyn Member>> {
        let member = format!(
            "m{}",
            self.next_member
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (count, block) = (self.batch.to_string(), GROUP_BLOCK_MS.to_string());
        let mut read = Vec::new();
        encode_command(
            &mut read,
            &[
                b"XREADGROUP",
                b"GROUP",
                self.group.as_bytes(),
                member.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                self.streams.stream.as_bytes(),
                b">",
            ],
        );
        Ok(Box::new(XreadgroupMember {
            connection: RespConnection::connect(self.streams.addr)?,
            read,
            stream: self.streams.stream.clone(),
            group: self.group.clone(),
            unanswered_ack: None,
            out: Vec::new(),
        }))
    }

    /// `XPENDING <stream> <group>`: the group's count of delivered, unacknowledged entries.
    fn settled(&self) -> io::Result<()> {
        let mut connection = RespConnection::connect(self.streams.addr)?;
        let reply = connection.command(&[
            b"XPENDING",
            self.streams.stream.as_bytes(),
            self.group.as_bytes(),
        ])?;
        match reply {
            Reply::Array(Some(items)) if items.first() == Some(&Reply::Integer(0)) => Ok(()),
            other => Err(io::Error::other(format!(
                "the group still has pending entries: XPENDING replied {other:?}"
            ))),
        }
    }
}

struct XreadgroupMember {
    connection: RespConnection,
    /// The encoded XREADGROUP command.
    read: Vec<u8>,
    stream: String,
    group: String,
    /// Ids in the XACK whose reply was not read yet.
    unanswered_ack: Option<usize>,
    out: Vec<u8>,
}

impl XreadgroupMember {
    fn read_ack_reply(&mut self) -> io::Result<()> {
        if let Some(ids) = self.unanswered_ack.take() {
            match self.connection.reply()? {
                Reply::Integer(acked) if acked as usize == ids => {}
                other => {
                    return Err(io::Error::other(format!(
                        "XACK of {ids} ids replied {other:?}"
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Member for XreadgroupMember {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        self.connection.writer.write_all(&self.read)?;
        self.connection.writer.flush()?;
        self.read_ack_reply()?;
        let reply = self.connection.reply()?;
        let ids = xreadgroup_entries(reply, on_event)
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args: Vec<&[u8]> = vec![b"XACK", self.stream.as_bytes(), self.group.as_bytes()];
        args.extend(ids.iter().map(Vec::as_slice));
        self.out.clear();
        encode_command(&mut self.out, &args);
        self.connection.writer.write_all(&self.out)?;
        self.connection.writer.flush()?;
        self.unanswered_ack = Some(ids.len());
        Ok(ids.len() as u64)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.read_ack_reply()
    }
}

/// The entry ids of an XREADGROUP (or XREAD) reply for one stream, in order; calls `on_event`
/// with the value of each entry's first field.
pub fn xreadgroup_entries(
    reply: Reply,
    on_event: &mut dyn FnMut(&[u8]),
) -> Result<Vec<Vec<u8>>, String> {
    let streams = match reply {
        Reply::Array(None) | Reply::Bulk(None) => return Ok(Vec::new()),
        Reply::Array(Some(streams)) => streams,
        other => return Err(format!("XREADGROUP replied {other:?}")),
    };
    let Some(Reply::Array(Some(stream))) = streams.into_iter().next() else {
        return Ok(Vec::new());
    };
    let Some(Reply::Array(Some(entries))) = stream.into_iter().nth(1) else {
        return Err("XREADGROUP stream without an entry list".to_string());
    };
    let mut ids = Vec::with_capacity(entries.len());
    for entry in entries {
        let Reply::Array(Some(mut entry)) = entry else {
            return Err(format!("XREADGROUP entry is {entry:?}"));
        };
        if let Some(Reply::Array(Some(fields))) = entry.get(1) {
            if let Some(Reply::Bulk(Some(value))) = fields.get(1) {
                on_event(value);
            }
        }
        match entry.first_mut() {
            Some(Reply::Bulk(Some(id))) => ids.push(std::mem::take(id)),
            other => return Err(format!("XREADGROUP entry id is {other:?}")),
        }
    }
    Ok(ids)
}

/// What one XREAD reply held.
#[derive(Debug, PartialEq, Eq)]
pub struct XreadBatch {
    pub count: u64,
    pub last_id: Option<Vec<u8>>,
}

/// Interprets an XREAD reply for one stream: `[[name, [[id, [field, value, ..]], ..]]]`, or
/// null when nothing is newer than the id asked for.
pub fn xread_batch(reply: Reply) -> Result<XreadBatch, String> {
    xread_visit(reply, &mut |_| {})
}

/// Like [`xread_batch`], and calls `on_event` with the value of each entry's first field.
pub fn xread_visit(reply: Reply, on_event: &mut dyn FnMut(&[u8])) -> Result<XreadBatch, String> {
    let empty = XreadBatch {
        count: 0,
        last_id: None,
    };
    let streams = match reply {
        Reply::Array(None) | Reply::Bulk(None) => return Ok(empty),
        Reply::Array(Some(streams)) => streams,
        other => return Err(format!("XREAD replied {other:?}")),
    };
    let Some(Reply::Array(Some(stream))) = streams.into_iter().next() else {
        return Ok(empty);
    };
    let Some(Reply::Array(Some(entries))) = stream.into_iter().nth(1) else {
        return Err("XREAD stream without an entry list".to_string());
    };
    let count = entries.len() as u64;
    for entry in &entries {
        if let Reply::Array(Some(entry)) = entry {
            if let Some(Reply::Array(Some(fields))) = entry.get(1) {
                if let Some(Reply::Bulk(Some(value))) = fields.get(1) {
                    on_event(value);
                }
            }
        }
    }
    let last_id = match entries.into_iter().last() {
        None => None,
        Some(Reply::Array(Some(entry))) => match entry.into_iter().next() {
            Some(Reply::Bulk(Some(id))) => Some(id),
            other => return Err(format!("XREAD entry id is {other:?}")),
        },
        Some(other) => return Err(format!("XREAD entry is {other:?}")),
    };
    Ok(XreadBatch { count, last_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut &bytes[..])
    }

    /// Reads through a one-byte buffer, as if every byte arrived in its own packet.
    fn parse_byte_by_byte(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut BufReader::with_capacity(1, bytes))
    }

    const XREAD_REPLY: &[u8] = b"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n\
        *2\r\n$5\r\n1-0-0\r\n*2\r\n$1\r\nd\r\n$3\r\nabc\r\n\
        *2\r\n$3\r\n2-5\r\n*2\r\n$1\r\nd\r\n$0\r\n\r\n";

    #[test]
    fn xreadgroup_entries_give_ids_and_payloads() {
        let mut payloads = Vec::new();
        let ids = xreadgroup_entries(parse(XREAD_REPLY).unwrap(), &mut |payload| {
            payloads.push(payload.to_vec())
        })
        .unwrap();
        assert_eq!(ids, vec![b"1-0-0".to_vec(), b"2-5".to_vec()]);
        assert_eq!(payloads, vec![b"abc".to_vec(), Vec::new()]);
        let none = xreadgroup_entries(parse(b"*-1\r\n").unwrap(), &mut |_| {}).unwrap();
        assert!(none.is_empty());
        assert!(xreadgroup_entries(parse(b":1\r\n").unwrap(), &mut |_| {}).is_err());
    }

    #[test]
    fn every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple(b"OK".to_vec()));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error(b"ERR no".to_vec())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Integer(-42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Array(None));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap(),
            Reply::Bulk(Some(b"a\r\nb".to_vec()))
        );
        assert_eq!(
            parse(b"*2\r\n:1\r\n$2\r\nhi\r\n").unwrap(),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(Some(b"hi".to_vec()))
            ]))
        );
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        assert_eq!(
            parse_byte_by_byte(XREAD_REPLY).unwrap(),
            parse(XREAD_REPLY).unwrap()
        );
    }

    #[test]
    fn pipelined_replies_are_read_one_at_a_time() {
        let bytes = b"$3\r\n1-0\r\n$3\r\n1-1\r\n-ERR x\r\n";
        let mut reader = &bytes[..];
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Bulk(Some(b"1-0".to_vec()))
        );
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Bulk(Some(b"1-1".to_vec()))
        );
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Error(b"ERR x".to_vec())
        );
        assert!(
            matches!(read_reply(&mut reader), Err(RespError::Io(error)) if error.kind() == io::ErrorKind::UnexpectedEof)
        );
    }

    #[test]
    fn every_truncation_is_unexpected_eof() {
        for end in 0..XREAD_REPLY.len() {
            match parse(&XREAD_REPLY[..end]) {
                Err(RespError::Io(error)) => {
                    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "at {end}")
                }
                other => panic!("truncated at {end}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        for bad in [
            &b"?x\r\n"[..],
            b"\r\n",
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*99999999999\r\n",
            b"+OK\n",
            b"$68000000\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(RespError::Protocol(_))),
                "{:?} was accepted",
                lossy(bad)
            );
        }
        let deep = "*1\r\n".repeat(DEPTH_MAX + 2) + ":1\r\n";
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(RespError::Protocol(_))
        ));
        let long = vec![b'+'; 2_000];
        assert!(matches!(parse(&long), Err(RespError::Protocol(_))));
    }

    #[test]
    fn xread_batches() {
        assert_eq!(
            xread_ids(parse(XREAD_REPLY).unwrap()).unwrap().len() as u64,
            xread_batch(parse(XREAD_REPLY).unwrap()).unwrap().count
        );
        let batch = xread_batch(parse(XREAD_REPLY).unwrap()).unwrap();
        assert_eq!(
            batch,
            XreadBatch {
                count: 2,
                last_id: Some(b"2-5".to_vec())
            }
        );
        let mut values = Vec::new();
        let visited = xread_visit(parse(XREAD_REPLY).unwrap(), &mut |value| {
            values.push(value.to_vec())
        });
        assert_eq!(visited.unwrap().count, 2);
        assert_eq!(values, vec![b"abc".to_vec(), Vec::new()]);
        let end = xread_batch(parse(b"*-1\r\n").unwrap()).unwrap();
        assert_eq!(end.count, 0);
        assert!(xread_batch(Reply::Integer(3)).is_err());
    }

    #[test]
    fn commands_are_encoded_as_bulk_arrays() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"XADD", b"s", b"*", b"d", b""]);
        assert_eq!(
            out,
            b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nd\r\n$0\r\n\r\n".to_vec()
        );
    }
}
