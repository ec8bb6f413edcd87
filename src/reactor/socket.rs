//! A socket in the reactor's table.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::tls::TlsSession;
use crate::engine::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SocketState {
    /// A connection the engine knows.
    Open(ConnId),
    /// Closed by the server (the engine has forgotten it): its last bytes (the replies it was
    /// owed, then the closing error) are written as the socket takes them, then its write side
    /// is shut; meanwhile it is read and discarded, so the peer receives everything instead of
    /// a reset. It goes when the peer has closed after the last byte, on any error, or at the
    /// deadline. `refused`: refused at the connection limit (never known to the engine).
    Lingering { deadline_ms: u64, refused: bool },
    /// An outbound peer connection whose non-blocking connect has not finished; the engine
    /// learns of it only once connected (or failed, or past the deadline).
    Connecting { addr: SocketAddr, deadline_ms: u64 },
}

/// What a lingering socket still has to do.
#[derive(Debug, Default)]
pub(super) struct FinalOutput {
    bytes: Vec<u8>,
    sent: usize,
    /// The peer closed its side (read returned 0).
    peer_closed: bool,
    /// Every byte is written and the write side shut.
    write_shut: bool,
    /// Bytes the peer sent after the close, read and discarded (`linger_discard_bytes_max`).
    discarded: u64,
}

/// The outcome of some progress on a lingering socket.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Linger {
    /// Waiting for the socket (writable or readable again).
    Waiting,
    /// The read budget ran out with more to read: read again next turn.
    ReadAgain,
    /// Everything was delivered and the peer closed, or the socket failed: remove it.
    Done,
}

pub(super) struct Socket {
    pub stream: TcpStream,
    pub state: SocketState,
    /// A write returned `WouldBlock`; wait for a writable event before writing again.
    pub write_blocked: bool,
    /// The engine wanted no more input, so the socket was left unread (maybe with bytes in
    /// it); once the engine wants input again it is read without waiting for readiness.
    pub read_paused: bool,
    /// A readiness event said the peer closed its write side or the socket failed
    /// (`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`): reads go on until the 0 or the error, even
    /// past a read that did not fill its buffer. Without it such a read ends the socket's
    /// reads for the turn (the kernel's receive queue was empty; new data, a FIN or an error
    /// arriving later raises a new edge).
    pub read_to_end: bool,
    /// While lingering: the last bytes and how far they got.
    pub final_output: FinalOutput,
    /// On a TLS listener, the connection's TLS state while it is open (a lingering socket only
    /// writes the ciphertext it was left with).
    pub tls: Option<Box<TlsSession>>,
}

impl Socket {
    pub fn new(stream: TcpStream, conn: ConnId) -> Socket {
        Socket {
            stream,
            state: SocketState::Open(conn),
            write_blocked: false,
            read_paused: false,
            read_to_end: false,
            final_output: FinalOutput::default(),
            tls: None,
        }
    }

    pub fn connecting(stream: TcpStream, addr: SocketAddr, deadline_ms: u64) -> Socket {
        Socket {
            stream,
            state: SocketState::Connecting { addr, deadline_ms },
            write_blocked: false,
            read_paused: false,
            read_to_end: false,
            final_output: FinalOutput::default(),
            tls: None,
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

    /// Turns the socket into a lingering one that owes `bytes` (registered for both readiness
    /// kinds by the caller), and writes what the socket takes now.
    pub fn start_lingering(
        &mut self,
        mut bytes: Vec<u8>,
        deadline_ms: u64,
        refused: bool,
    ) -> Linger {
        // What the engine counted was the output's length; the capacity past it (a buffer
        // grows by doubling) is given back, so the memory counted is the memory held.
        bytes.shrink_to_fit();
        self.state = SocketState::Lingering {
            deadline_ms,
            refused,
        };
        self.write_blocked = false;
        self.final_output = FinalOutput {
            bytes,
            ..FinalOutput::default()
        };
        self.flush_final_output()
    }

    /// True once every final byte is written (and the write side shut).
    fn final_output_sent(&self) -> bool {
        self.final_output.sent == self.final_output.bytes.len()
    }

    /// Writes final bytes until they are all sent (then shuts the write side, so the peer reads
    /// the end of the stream after the closing error) or the socket would block.
    pub fn flush_final_output(&mut self) -> Linger {
        while !self.final_output_sent() {
            let output = &mut self.final_output;
            match self.stream.write(&output.bytes[output.sent..]) {
                Ok(0) => return Linger::Done,
                Ok(count) => output.sent += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Linger::Waiting,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Linger::Done,
            }
        }
        if !self.final_output.write_shut {
            self.final_output.write_shut = true;
            // Free the memory now; `sent == len` still holds.
            self.final_output.bytes = Vec::new();
            self.final_output.sent = 0;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        if self.final_output.peer_closed {
            Linger::Done
        } else {
            Linger::Waiting
        }
    }

    /// The memory the final output still holds (its buffer's capacity; freed once it is all
    /// written), counted in `connections_memory_max` (`Reactor::lingering_output_bytes`).
    pub fn final_output_held(&self) -> usize {
        self.final_output.bytes.capacity()
    }

    /// Every final byte is written to the kernel and the write side shut: the kernel delivers
    /// the rest, also after the socket is closed, unless unread input makes it send a reset.
    pub fn final_output_written(&self) -> bool {
        self.final_output.write_shut
    }

    /// Reads and discards up to `budget` bytes of what a lingering peer sent (unread input at
    /// close would make the kernel send a reset, and the peer could lose the bytes it is owed).
    /// Once more than `discard_max` bytes were discarded in all, the socket is done: a peer
    /// that goes on sending after the close is not owed more reads.
    pub fn drain_lingering(&mut self, budget: usize, discard_max: u64) -> Linger {
        let mut scratch = [0u8; 16 * 1024];
        let mut left = budget;
        loop {
            if self.final_output.discarded > discard_max {
                return Linger::Done;
            }
            if left == 0 {
                return Linger::ReadAgain;
            }
            let chunk = left.min(scratch.len());
            match self.stream.read(&mut scratch[..chunk]) {
                Ok(0) => {
                    self.final_output.peer_closed = true;
                    return if self.final_output_sent() {
                        Linger::Done
                    } else {
                        Linger::Waiting
                    };
                }
                Ok(count) => {
                    left -= count;
                    self.final_output.discarded += count as u64;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Linger::Waiting,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Linger::Done,
            }
        }
    }
}
