//! One blocking connection: frames out, frames in, with time-outs. Every read is bounded by the
//! I/O time-out, so a server that vanishes shows up as an error, never as a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::WireLimits;
use crate::protocol::{self, ClientFrame, FrameBuffer, ServerFrame};

use super::error::ClientError;
use super::tls::{self, ClientTls, Transport};

/// Bytes asked of the socket per read.
const READ_CHUNK_SIZE: usize = 64 * 1024;

/// The largest frame accepted before Welcome announces the real limit (protocol.md section 2).
const HANDSHAKE_FRAME_SIZE_MAX: u32 = 64 * 1024;

pub(crate) struct Connection {
    stream: Transport,
    /// Received bytes not yet decoded.
    received: FrameBuffer,
    write_buffer: Vec<u8>,
    pub(crate) limits: WireLimits,
    /// A keep-alive Ping was sent after a quiet read time-out and nothing has arrived since.
    keepalive_outstanding: bool,
    next_ping_token: u64,
    /// Set once sending failed; every later send fails fast with ConnectionClosed.
    send_failed: bool,
    /// Set once receiving failed (end of stream, reset, undecodable bytes). Frames buffered
    /// before an end of stream are still handed out; then every receive fails fast.
    receive_failed: bool,
    /// How long a read waits, except in `wait_for_bytes` and `poll_bytes` (the I/O time-out,
    /// after the handshake perhaps shorter for keep-alives: `set_read_timeout`).
    read_timeout: Duration,
    /// The time-out the socket has now. A wait leaves its own there and the next read that
    /// needs `read_timeout` puts that back, so a consumer that only waits (a group member
    /// between deliveries) sets it once instead of three system calls per wait.
    socket_read_timeout: Duration,
    /// Changes of the socket's read time-out (setsockopt calls), for tests.
    pub(crate) read_timeout_changes: u64,
}

impl Connection {
    /// Connects to the first address `addr` resolves to that accepts within `timeout`, and
    /// with `tls` completes a TLS handshake on it.
    pub(crate) fn open(
        addr: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Connection, ClientError> {
        let connect_error = |error| ClientError::Connect {
            addr: addr.to_string(),
            error,
        };
        let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(connect_error)?.collect();
        let mut last_error = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolved to nothing",
        );
        for candidate in candidates {
            match TcpStream::connect_timeout(&candidate, connect_timeout) {
                Ok(stream) => return Connection::from_stream(stream, io_timeout, addr, tls),
                Err(error) => last_error = error,
            }
        }
        Err(connect_error(last_error))
    }

    pub(crate) fn from_stream(
        stream: TcpStream,
        io_timeout: Duration,
        addr: &str,
        tls: Option<&ClientTls>,
    ) -> Result<Connection, ClientError> {
        stream.set_nodelay(true).map_err(ClientError::Io)?;
        stream
            .set_read_timeout(Some(io_timeout))
            .map_err(ClientError::Io)?;
        stream
            .set_write_timeout(Some(io_timeout))
            .map_err(ClientError::Io)?;
        let stream = match tls {
            Some(tls) => tls::connect(stream, addr, tls)?,
            None => Transport::Plain(stream),
        };
        Ok(Connection {
            stream,
            received: FrameBuffer::with_capacity(READ_CHUNK_SIZE),
            write_buffer: Vec::new(),
            limits: WireLimits {
                frame_size_max: HANDSHAKE_FRAME_SIZE_MAX,
                ..WireLimits::default()
            },
            keepalive_outstanding: false,
            next_ping_token: 1,
            send_failed: false,
            receive_failed: false,
            read_timeout: io_timeout,
            socket_read_timeout: io_timeout,
            read_timeout_changes: 0,
        })
    }

    /// Encodes `frame`; refuses it if it is over the frame size limit, or a field of it over
    /// 65535 bytes (see `queue`). Does not send.
    pub(crate) fn encode_checked(&self, frame: &ClientFrame) -> Result<Vec<u8>, ClientError> {
        let mut bytes = Vec::new();
        frame.try_encode(&mut bytes).map_err(field_too_long)?;
        let size_max = self.limits.frame_size_max as usize;
        if bytes.len() > size_max {
            return Err(ClientError::TooLarge {
                what: "the frame",
                size: bytes.len(),
                size_max,
            });
        }
        Ok(bytes)
    }

    /// Sends one frame (after anything queued) and waits until the kernel has taken all of it.
    pub(crate) fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.queue(frame)?;
        self.flush()
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write_buffer.extend_from_slice(bytes);
        self.flush()
    }

    /// Encodes `frame` after the frames already queued; refuses it, queuing nothing, if it is
    /// over the frame size limit or a field of it over the 65535 bytes its length can say
    /// (attack round 17: `flo-client groups info` with a 70,000-byte name panicked in the
    /// encoder). Nothing is written until [`Connection::flush`].
    pub(crate) fn queue(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let start = self.write_buffer.len();
        (frame.try_encode(&mut self.write_buffer)).map_err(field_too_long)?;
        let size = self.write_buffer.len() - start;
        let size_max = self.limits.frame_size_max as usize;
        if size > size_max {
            self.write_buffer.truncate(start);
            return Err(ClientError::TooLarge {
                what: "the frame",
                size,
                size_max,
            });
        }
        Ok(())
    }

    /// Writes every queued frame with one call and waits until the kernel has taken them.
    pub(crate) fn flush(&mut self) -> Result<(), ClientError> {
        if self.send_failed {
            self.write_buffer.clear();
            return Err(ClientError::ConnectionClosed);
        }
        if self.write_buffer.is_empty() {
            return Ok(());
        }
        // TLS may hold the tail of what it was given until flushed.
        let result = self
            .stream
            .write_all(&self.write_buffer)
            .and_then(|()| self.stream.flush());
        self.write_buffer.clear();
        result.map_err(|error| {
            // A send that failed half-way leaves the stream unusable for sending; answers to
            // earlier frames may still be readable.
            self.send_failed = true;
            ClientError::from_io(error)
        })
    }

    /// True when frames were queued and not yet flushed.
    pub(crate) fn has_queued(&self) -> bool {
        !self.write_buffer.is_empty()
    }

    /// True when received bytes wait to be decoded (perhaps only part of a frame).
    pub(crate) fn has_received_bytes(&self) -> bool {
        self.received.has_bytes()
    }

    /// Reads once, waiting at most `wait` for bytes; false when none came. A quiet wait sends
    /// a keep-alive Ping, as [`Connection::receive`] does, so that the server's idle time-out
    /// never closes a connection that is only waiting.
    pub(crate) fn wait_for_bytes(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<bool, ClientError> {
        // Whole milliseconds (at least one; the kernel counts in ticks of 1-4 ms anyway), so
        // that the shrinking rest of a caller's deadline keeps the socket's time-out as it is.
        let wait = Duration::from_millis(wait.as_millis().max(1) as u64);
        match self.fill(wait) {
            Ok(()) => Ok(true),
            Err(ClientError::Timeout) => {
                if !self.keepalive_outstanding {
                    let token = self.take_ping_token();
                    self.send(&ClientFrame::Ping { token })?;
                    self.keepalive_outstanding = true;
                }
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads once, waiting at most `wait` (at least 10 us) for bytes; false when none came.
    /// Unlike `wait_for_bytes` it sends no keep-alive: for a caller that writes often anyway.
    pub(crate) fn poll_bytes(&mut self, wait: Duration) -> Result<bool, ClientError> {
        match self.fill(wait.max(Duration::from_micros(10))) {
            Ok(()) => Ok(true),
            Err(ClientError::Timeout) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sets how long one read may wait. After the handshake this is the smaller of the I/O
    /// time-out and a third of the server's idle time-out, so a quiet connection pings in time.
    pub(crate) fn set_read_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.read_timeout = timeout;
        self.socket_timeout(timeout)
    }

    /// Gives the socket the read time-out `timeout` unless it has it already.
    fn socket_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if self.socket_read_timeout != timeout {
            self.stream
                .tcp()
                .set_read_timeout(Some(timeout))
                .map_err(ClientError::Io)?;
            self.socket_read_timeout = timeout;
            self.read_timeout_changes += 1;
        }
        Ok(())
    }

    pub(crate) fn take_ping_token(&mut self) -> u64 {
        let token = self.next_ping_token;
        self.next_ping_token += 1;
        token
    }

    /// The next frame. A read that waits a whole read time-out sends a keep-alive Ping (its
    /// Pong is handed out like any other frame; callers skip Pongs they did not ask for); a
    /// second quiet time-out with that Ping unanswered is [`ClientError::Timeout`]. Time-outs
    /// leave the connection usable (partial frames stay buffered); other errors break it.
    pub(crate) fn receive(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            if let Some(frame) = self.decode_buffered()? {
                return Ok(frame);
            }
            match self.fill(self.read_timeout) {
                Err(ClientError::Timeout) if !self.keepalive_outstanding => {
                    let token = self.take_ping_token();
                    self.send(&ClientFrame::Ping { token })?;
                    self.keepalive_outstanding = true;
                }
                other => other?,
            }
        }
    }

    /// The next frame if a whole one is already buffered; never touches the socket.
    pub(crate) fn receive_buffered(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        self.decode_buffered()
    }

    fn decode_buffered(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        match self.received.decode(&self.limits) {
            Ok(Some(frame)) => {
                // Any frame shows the server is alive.
                self.keepalive_outstanding = false;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                // The rest of the buffer cannot be framed; drop it so nothing decodes again.
                self.received.clear();
                self.receive_failed = true;
                self.send_failed = true;
                Err(ClientError::Protocol {
                    code: error.code,
                    message: error.message,
                })
            }
        }
    }

    /// The server broke the protocol in a way the decoder cannot see (a reply longer than any
    /// server sends): nothing more is read or sent on this connection, as after a frame that
    /// does not decode.
    pub(crate) fn fail_protocol(&mut self, message: String) -> ClientError {
        self.received.clear();
        self.receive_failed = true;
        self.send_failed = true;
        ClientError::Protocol {
            code: crate::protocol::ErrorCode::MalformedFrame,
            message,
        }
    }

    /// Reads once from the socket into the buffer, waiting at most `timeout`.
    fn fill(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if self.receive_failed {
            return Err(ClientError::ConnectionClosed);
        }
        self.socket_timeout(timeout)?;
        let stream = &mut self.stream;
        let result = self.received.fill_with(READ_CHUNK_SIZE, |room| loop {
            match stream.read(room) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        });
        match result {
            Ok(0) => {
                self.receive_failed = true;
                Err(ClientError::ConnectionClosed)
            }
            Ok(_) => Ok(()),
            Err(error) => {
                let error = ClientError::from_io(error);
                // A time-out leaves the connection usable: partial frames stay buffered.
                if !matches!(error, ClientError::Timeout) {
                    self.receive_failed = true;
                }
                Err(error)
            }
        }
    }
}

/// A frame field over the 65535 bytes its `u16` length can say, as the error of the frame.
fn field_too_long(error: protocol::FieldTooLong) -> ClientError {
    ClientError::TooLarge {
        what: error.what,
        size: error.size,
        size_max: usize::from(u16::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn waiting_for_deliveries_sets_the_socket_time_out_once_not_per_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let mut connection =
            Connection::from_stream(stream, Duration::from_millis(50), "test", None)
                .expect("plain");
        // Quiet waits: the first one sets the wait's time-out (its Ping goes out), the second
        // one finds it there.
        assert!(!connection
            .wait_for_bytes(Duration::from_millis(5))
            .expect("waits"));
        assert!(!connection
            .wait_for_bytes(Duration::from_millis(5))
            .expect("waits"));
        assert_eq!(connection.read_timeout_changes, 1);
        // What is left of a deadline a little later is the same whole milliseconds.
        server.write_all(&[0u8; 3]).expect("written");
        assert!(connection
            .wait_for_bytes(Duration::from_micros(5_900))
            .expect("bytes came"));
        assert_eq!(connection.read_timeout_changes, 1);
        // A read that needs the I/O time-out puts it back first.
        connection
            .fill(connection.read_timeout)
            .expect_err("no more bytes: times out");
        assert_eq!(connection.read_timeout_changes, 2);
        // (The kernel keeps it in ticks: 50 ms may read back as 52.)
        let socket = connection.stream.tcp().read_timeout().expect("read");
        assert!(socket >= Some(Duration::from_millis(50)), "{socket:?}");
    }
}
