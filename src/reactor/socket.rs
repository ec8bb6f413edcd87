//! A socket in the reactor's table.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::engine::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SocketState {
    /// A connection the engine knows.
    Open(ConnId),
    /// Closed by the server: its last bytes are written and its write side shut; it is read
    /// and discarded until the peer closes or the deadline passes, so the peer receives the
    /// last error frame instead of a reset.
    Lingering { deadline_ms: u64, refused: bool },
    /// An outbound peer connection whose non-blocking connect has not finished; the engine
    /// learns of it only once connected (or failed, or past the deadline).
    Connecting { addr: SocketAddr, deadline_ms: u64 },
}

pub(super) struct Socket {
    pub stream: TcpStream,
    pub state: SocketState,
    /// A write returned `WouldBlock`; wait for a writable event before writing again.
    pub write_blocked: bool,
    /// The engine wanted no more input, so the socket was left unread (maybe with bytes in
    /// it); once the engine wants input again it is read without waiting for readiness.
    pub read_paused: bool,
}

impl Socket {
    pub fn new(stream: TcpStream, conn: ConnId) -> Socket {
        Socket {
            stream,
            state: SocketState::Open(conn),
            write_blocked: false,
            read_paused: false,
        }
    }

    pub fn connecting(stream: TcpStream, addr: SocketAddr, deadline_ms: u64) -> Socket {
        Socket {
            stream,
            state: SocketState::Connecting { addr, deadline_ms },
            write_blocked: false,
            read_paused: false,
        }
    }

    /// For a connecting socket that had an event: `Some(Ok(()))` once connected,
    /// `Some(Err(..))` when the connect failed, `None` while it is still in progress.
    pub fn connect_result(&self) -> Option<std::io::Result<()>> {
        match self.stream.take_error() {
            Ok(Some(error)) | Err(error) => return Some(Err(error)),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(error) if error.kind() == ErrorKind::NotConnected => None,
            Err(error) => Some(Err(error)),
        }
    }

    pub fn lingering(stream: TcpStream, deadline_ms: u64, refused: bool) -> Socket {
        Socket {
            stream,
            state: SocketState::Lingering {
                deadline_ms,
                refused,
            },
            write_blocked: true,
            read_paused: false,
        }
    }

    /// Reads and discards what a lingering peer sent. Returns true when the socket can go:
    /// the peer closed, failed, or sent more than a lingering socket is worth.
    pub fn drain_lingering(&mut self) -> bool {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match self.stream.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        true
    }
}
