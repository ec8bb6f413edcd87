//! The reactor: one thread, one mio `Poll`, one engine. The only code that imports mio and the
//! only code that reads the clock.
//!
//! A turn: wait for readiness (not at all when the engine or a socket has work left over), read
//! every readable socket up to a per-connection budget and hand the bytes to the engine, let the
//! engine end the turn (one sync for all the turn's appends, then acks and consumer feeding),
//! then write every connection the engine names. Sockets are edge-triggered: a socket is read
//! until `WouldBlock`, and one whose budget ran out first is remembered and read again next turn
//! without waiting for a new readiness event.

mod server;
mod socket;

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

pub use server::{Server, ServerError};
use socket::{Socket, SocketState};

use crate::config::Config;
use crate::engine::{Action, ConnId, Engine, Now};
use crate::protocol::{encode_error, ErrorCode, ErrorScope};
use crate::storage::Log;
use crate::time::{MonotonicMs, WallClockMs};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// How long a closed connection may linger to deliver its last error frame.
const LINGER_MS: u64 = 1000;
/// Connections refused at the connection limit that may linger at once; past it the listener
/// pauses until they are gone.
const REFUSED_LINGERING_MAX: usize = 64;
/// How often lingering and connecting sockets are checked for their deadlines.
const EXPIRY_SCAN_INTERVAL_MS: u64 = 100;
/// The longest the reactor sleeps without a deadline, so housekeeping runs.
const POLL_TIMEOUT_MAX_MS: u64 = 1000;
const READ_CHUNK: usize = 64 * 1024;
/// How long an outbound peer connect may take before it counts as failed.
const CONNECT_TIMEOUT_MS: u64 = 5000;

/// Reads the clocks; the engine gets the result. `Instant` is monotonic, `SystemTime` is not.
struct Clock {
    started: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            wall: WallClockMs(wall_ms),
            monotonic: MonotonicMs(self.started.elapsed().as_millis() as u64),
        }
    }
}

pub(crate) struct Reactor<L: Log> {
    poll: Poll,
    listener: TcpListener,
    listener_paused: bool,
    sockets: Slab<Socket>,
    /// Slab keys of sockets read only partly last turn (their budget ran out).
    read_again: Vec<usize>,
    engine: Engine<L>,
    clock: Clock,
    generation: u32,
    connections_max: usize,
    read_bytes_per_turn_max: usize,
    shutdown: Arc<AtomicBool>,
    read_buffer: Vec<u8>,
    /// Sockets refused at the connection limit that are still lingering.
    refused_lingering_count: usize,
    next_expiry_scan_ms: u64,
}

impl<L: Log> Reactor<L> {
    pub(crate) fn new(
        config: &Config,
        mut listener: TcpListener,
        engine: Engine<L>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<(Reactor<L>, Arc<Waker>)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let reactor = Reactor {
            poll,
            listener,
            listener_paused: false,
            sockets: Slab::new(),
            read_again: Vec::new(),
            engine,
            clock: Clock {
                started: Instant::now(),
            },
            generation: 0,
            connections_max: config.connections_max,
            read_bytes_per_turn_max: config.read_bytes_per_turn_max,
            shutdown,
            read_buffer: vec![0; READ_CHUNK],
            refused_lingering_count: 0,
            next_expiry_scan_ms: 0,
        };
        Ok((reactor, waker))
    }

    /// Runs turns until shutdown is requested, then shuts down cleanly.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut accept_pending = false;
        loop {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            let now = self.clock.now();
            let mut readable = std::mem::take(&mut self.read_again);
            let mut writable = Vec::new();
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_pending = true,
                    WAKER => {}
                    Token(key) if self.is_connecting(key) => self.finish_connect(now, key),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            readable.push(key);
                        }
                        if event.is_writable() {
                            if let Some(socket) = self.sockets.get_mut(key) {
                                socket.write_blocked = false;
                                writable.push(key);
                            }
                        }
                    }
                }
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return self.shut_down(now);
            }
            if accept_pending && !self.listener_paused {
                accept_pending = self.accept(now);
            }
            readable.sort_unstable();
            readable.dedup();
            for key in readable {
                self.read_socket(now, key);
            }
            self.engine.handle_turn_end(now);
            self.drain_actions(now);
            self.resume_writes(&writable);
            if now.monotonic.0 >= self.next_expiry_scan_ms {
                self.next_expiry_scan_ms = now.monotonic.0 + EXPIRY_SCAN_INTERVAL_MS;
                self.expire_lingering(now);
                self.expire_connecting(now);
            }
            if self.listener_paused && self.refused_lingering() < REFUSED_LINGERING_MAX {
                self.listener_paused = false;
                accept_pending = true;
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        if self.engine.has_pending_work() || !self.read_again.is_empty() {
            return Duration::ZERO;
        }
        let now = self.clock.now();
        let until_deadline = self
            .engine
            .next_deadline_ms()
            .saturating_sub(now.monotonic.0);
        Duration::from_millis(until_deadline.clamp(1, POLL_TIMEOUT_MAX_MS))
    }

    /// Accepts connections until `WouldBlock`. Returns true when accepting stopped early and
    /// must go on next turn (edge-triggered readiness is not repeated).
    fn accept(&mut self, now: Now) -> bool {
        for _ in 0..1024 {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.engine.connection_count() >= self.connections_max {
                        self.refuse(now, stream);
                        if self.refused_lingering() >= REFUSED_LINGERING_MAX {
                            self.listener_paused = true;
                            log::warn!("connection limit reached; pausing the listener");
                            return true;
                        }
                    } else if let Err(error) = self.add_connection(now, stream) {
                        log::warn!("could not register a new connection: {error}");
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    // EMFILE and the like: log and try again next turn.
                    log::warn!("accept failed: {error}");
                    return true;
                }
            }
        }
        true
    }

    fn add_connection(&mut self, now: Now, mut stream: TcpStream) -> io::Result<()> {
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        // Small frames (acks) must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        self.generation = self.generation.wrapping_add(1);
        let conn = ConnId {
            slot: key as u32,
            generation: self.generation,
        };
        entry.insert(Socket::new(stream, conn));
        self.engine.handle_connect(now, conn);
        Ok(())
    }

    /// Refuses a connection over the limit with a clear error, then lets it linger briefly.
    fn refuse(&mut self, now: Now, stream: TcpStream) {
        let mut frame = Vec::new();
        let message = format!(
            "the server is at its limit of {} connections",
            self.connections_max
        );
        encode_error(
            ErrorScope::Connection,
            ErrorCode::TooManyConnections,
            &message,
            &mut frame,
        );
        self.linger(now, stream, frame, true);
    }

    fn linger(&mut self, now: Now, mut stream: TcpStream, final_output: Vec<u8>, refused: bool) {
        let _ = stream.write(&final_output);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
            .is_ok()
        {
            let deadline_ms = now.monotonic.0 + LINGER_MS;
            entry.insert(Socket::lingering(stream, deadline_ms, refused));
            if refused {
                self.refused_lingering_count += 1;
            }
        }
    }

    fn refused_lingering(&self) -> usize {
        self.refused_lingering_count
    }

    fn read_socket(&mut self, now: Now, key: usize) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let conn = match socket.state {
            SocketState::Open(conn) => conn,
            SocketState::Lingering { .. } => {
                if socket.drain_lingering() {
                    self.remove_socket(key);
                }
                return;
            }
            SocketState::Connecting { .. } => return,
        };
        let mut budget = self.read_bytes_per_turn_max;
        loop {
            if budget == 0 {
                self.read_again.push(key);
                return;
            }
            let socket = &mut self.sockets[key];
            let chunk = budget.min(self.read_buffer.len());
            match socket.stream.read(&mut self.read_buffer[..chunk]) {
                Ok(0) => return self.connection_lost(conn, key, None),
                Ok(count) => {
                    budget -= count;
                    self.engine
                        .handle_input(now, conn, &self.read_buffer[..count]);
                    // The engine may have closed the connection; its Close action removes the
                    // socket later, so stop reading it now.
                    if !self.engine.is_open(conn) {
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return self.connection_lost(conn, key, Some(error)),
            }
        }
    }

    fn connection_lost(&mut self, conn: ConnId, key: usize, error: Option<io::Error>) {
        match error {
            Some(error) => log::debug!("{conn}: connection lost: {error}"),
            None => log::debug!("{conn}: closed by the peer"),
        }
        self.engine.handle_closed(conn);
        self.remove_socket(key);
    }

    fn remove_socket(&mut self, key: usize) {
        if let Some(mut socket) = self.sockets.try_remove(key) {
            if let SocketState::Lingering { refused: true, .. } = socket.state {
                self.refused_lingering_count -= 1;
            }
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
    }

    fn drain_actions(&mut self, now: Now) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send(conn) => self.write_socket(conn),
                Action::Close { conn, final_output } => {
                    let key = conn.slot as usize;
                    if matches!(self.sockets.get(key), Some(s) if s.state == SocketState::Open(conn))
                    {
                        // Checked just above: the socket exists.
                        let mut socket = self.sockets.remove(key);
                        let _ = self.poll.registry().deregister(&mut socket.stream);
                        self.linger(now, socket.stream, final_output, false);
                    }
                }
                Action::Dial { addr } => self.dial(now, addr),
            }
        }
    }

    /// Starts a non-blocking connect to a peer.
    fn dial(&mut self, now: Now, addr: std::net::SocketAddr) {
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("connect to peer {addr} failed: {error}");
                return self.engine.handle_dial_failed(now, addr);
            }
        };
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        let registered = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(error) = registered {
            log::warn!("could not register a connection to peer {addr}: {error}");
            return self.engine.handle_dial_failed(now, addr);
        }
        let deadline_ms = now.monotonic.0 + CONNECT_TIMEOUT_MS;
        entry.insert(Socket::connecting(stream, addr, deadline_ms));
    }

    fn is_connecting(&self, key: usize) -> bool {
        matches!(
            self.sockets.get(key).map(|s| s.state),
            Some(SocketState::Connecting { .. })
        )
    }

    /// A connecting socket had an event: hand it to the engine once connected.
    fn finish_connect(&mut self, now: Now, key: usize) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let SocketState::Connecting { addr, .. } = socket.state else {
            return;
        };
        match socket.connect_result() {
            None => {}
            Some(Err(error)) => {
                log::debug!("connect to peer {addr} failed: {error}");
                self.remove_socket(key);
                self.engine.handle_dial_failed(now, addr);
            }
            Some(Ok(())) => {
                let _ = socket.stream.set_nodelay(true);
                self.generation = self.generation.wrapping_add(1);
                let conn = ConnId {
                    slot: key as u32,
                    generation: self.generation,
                };
                socket.state = SocketState::Open(conn);
                self.engine.handle_dialed(now, conn, addr);
                // The socket may already hold the peer's first bytes.
                self.read_again.push(key);
            }
        }
        self.drain_actions(now);
    }

    fn expire_connecting(&mut self, now: Now) {
        let expired: Vec<(usize, std::net::SocketAddr)> = self
            .sockets
            .iter()
            .filter_map(|(key, s)| match s.state {
                SocketState::Connecting { addr, deadline_ms } if now.monotonic.0 >= deadline_ms => {
                    Some((key, addr))
                }
                _ => None,
            })
            .collect();
        for (key, addr) in expired {
            log::debug!("connect to peer {addr} timed out");
            self.remove_socket(key);
            self.engine.handle_dial_failed(now, addr);
        }
    }

    /// Writes the engine's output for `conn` until it is empty or the socket would block.
    fn write_socket(&mut self, conn: ConnId) {
        let key = conn.slot as usize;
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        if socket.state != SocketState::Open(conn) || socket.write_blocked {
            return;
        }
        loop {
            let output = self.engine.output(conn);
            if output.is_empty() {
                return;
            }
            match socket.stream.write(output) {
                Ok(0) => return,
                Ok(count) => self.engine.handle_sent(conn, count),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    socket.write_blocked = true;
                    return;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("{conn}: write failed: {error}");
                    // The read side reports the loss and removes the socket.
                    socket.write_blocked = true;
                    self.read_again.push(key);
                    return;
                }
            }
        }
    }

    /// Sockets that became writable again this turn get the output the engine still holds for
    /// them (output queued while they were blocked was not written). Other sockets' output
    /// reaches them through the engine's `Send` actions, so no scan of every socket is needed.
    fn resume_writes(&mut self, writable: &[usize]) {
        for &key in writable {
            if let Some(SocketState::Open(conn)) = self.sockets.get(key).map(|s| s.state) {
                self.write_socket(conn);
            }
        }
    }

    fn expire_lingering(&mut self, now: Now) {
        let expired: Vec<usize> = self
            .sockets
            .iter()
            .filter(|(_, s)| matches!(s.state, SocketState::Lingering { deadline_ms, .. } if now.monotonic.0 >= deadline_ms))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.remove_socket(key);
        }
    }

    /// Stops accepting, makes everything durable, sends the last acks and a ShuttingDown error
    /// to every connection, and closes them, waiting at most a second for slow readers.
    fn shut_down(mut self, now: Now) -> io::Result<()> {
        let _ = self.poll.registry().deregister(&mut self.listener);
        self.engine.handle_shutdown(now);
        let mut last_writes = Vec::new();
        while let Some(action) = self.engine.poll_action() {
            if let Action::Close { conn, final_output } = action {
                let key = conn.slot as usize;
                if let Some(socket) = self.sockets.try_remove(key) {
                    last_writes.push((socket.stream, final_output));
                }
            }
        }
        for (stream, output) in last_writes {
            let stream: std::net::TcpStream = stream.into();
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let mut stream = stream;
            let _ = stream.write_all(&output);
        }
        log::info!("shut down cleanly");
        Ok(())
    }
}
