//! The reactor: one thread, one mio `Poll`, one engine. The only code that imports mio and the
//! only code that reads the clock.
//!
//! A turn: wait for readiness (not at all when the engine or a socket has work left over), read
//! every readable socket up to a per-connection budget and hand the bytes to the engine, let the
//! engine end the turn (one sync for all the turn's appends, then acks and consumer feeding),
//! then write every connection the engine names. Sockets are edge-triggered: a socket is read
//! until `WouldBlock`, and one whose budget ran out first is remembered and read again next turn
//! without waiting for a new readiness event. So is one the engine stopped taking input from
//! (its client does not read its replies): it is read again once its output drains.

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
use socket::{Linger, Socket, SocketState};

use crate::config::Config;
use crate::engine::{Action, ConnId, Engine, Now};
use crate::protocol::{encode_error, ErrorCode, ErrorScope};
use crate::storage::Log;
use crate::time::{MonotonicMs, WallClockMs};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// How long a connection refused at the connection limit may linger to deliver its error frame
/// (connections the engine closed linger for `Config::linger_timeout`).
const REFUSED_LINGER_MS: u64 = 1000;
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
    /// Connections the engine closed that are still lingering; they count toward
    /// `connections_max`, which bounds the memory their final output holds.
    closed_lingering_count: usize,
    linger_timeout_ms: u64,
    shutdown_timeout_ms: u64,
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
            closed_lingering_count: 0,
            linger_timeout_ms: config.linger_timeout.as_millis() as u64,
            shutdown_timeout_ms: config.shutdown_timeout.as_millis() as u64,
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
                    Token(key) if self.is_lingering(key) => self.on_lingering_event(event),
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
                    let connections = self.engine.connection_count() + self.closed_lingering_count;
                    if connections >= self.connections_max {
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
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        let mut socket = Socket::new(
            stream,
            ConnId {
                slot: 0,
                generation: 0,
            },
        );
        let registered = self.poll.registry().register(
            &mut socket.stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_ok() {
            entry.insert(socket);
            self.refused_lingering_count += 1;
            let deadline_ms = now.monotonic.0 + REFUSED_LINGER_MS;
            self.start_lingering(key, frame, deadline_ms, true);
        }
    }

    /// Makes the socket at `key` (registered for both readiness kinds) a lingering one that
    /// owes `final_output`, counted by the caller, and writes what the socket takes now.
    fn start_lingering(
        &mut self,
        key: usize,
        final_output: Vec<u8>,
        deadline_ms: u64,
        refused: bool,
    ) {
        let progress = self.sockets[key].start_lingering(final_output, deadline_ms, refused);
        self.after_lingering_progress(key, progress);
    }

    fn is_lingering(&self, key: usize) -> bool {
        matches!(
            self.sockets.get(key).map(|s| s.state),
            Some(SocketState::Lingering { .. })
        )
    }

    /// A readiness event on a lingering socket: write more of its final output, discard what
    /// the peer sent, and remove it once done.
    fn on_lingering_event(&mut self, event: &mio::event::Event) {
        let key = event.token().0;
        if event.is_writable() {
            let progress = self.sockets[key].flush_final_output();
            if progress == Linger::Done {
                return self.remove_socket(key);
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.drain_lingering(key);
        }
    }

    fn drain_lingering(&mut self, key: usize) {
        let progress = self.sockets[key].drain_lingering(self.read_bytes_per_turn_max);
        self.after_lingering_progress(key, progress);
    }

    fn after_lingering_progress(&mut self, key: usize, progress: Linger) {
        match progress {
            Linger::Waiting => {}
            Linger::ReadAgain => self.read_again.push(key),
            Linger::Done => self.remove_socket(key),
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
            SocketState::Lingering { .. } => return self.drain_lingering(key),
            SocketState::Connecting { .. } => return,
        };
        let mut budget = self.read_bytes_per_turn_max;
        loop {
            // The engine stops taking input while the client does not read its replies; the
            // socket's readiness is remembered in `read_paused` (edge-triggered readiness is
            // not repeated) and `write_socket` resumes reading once the replies drain.
            if !self.engine.wants_input(conn) {
                self.sockets[key].read_paused = true;
                return;
            }
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
            match socket.state {
                SocketState::Lingering { refused: true, .. } => self.refused_lingering_count -= 1,
                SocketState::Lingering { refused: false, .. } => self.closed_lingering_count -= 1,
                SocketState::Open(_) | SocketState::Connecting { .. } => {}
            }
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
    }

    fn drain_actions(&mut self, now: Now) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send(conn) => self.write_socket(conn),
                Action::Close { conn, final_output } => {
                    let deadline_ms = now.monotonic.0 + self.linger_timeout_ms;
                    self.close_socket(conn, final_output, deadline_ms);
                }
                Action::Dial { addr } => self.dial(now, addr),
            }
        }
    }

    /// The engine closed `conn`: its socket (still registered for both readiness kinds) lingers
    /// until its final output is delivered and the peer closes, or `deadline_ms`.
    fn close_socket(&mut self, conn: ConnId, final_output: Vec<u8>, deadline_ms: u64) {
        let key = conn.slot as usize;
        if matches!(self.sockets.get(key), Some(s) if s.state == SocketState::Open(conn)) {
            self.closed_lingering_count += 1;
            self.start_lingering(key, final_output, deadline_ms, false);
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
                Ok(count) => {
                    self.engine.handle_sent(conn, count);
                    if socket.read_paused && self.engine.wants_input(conn) {
                        socket.read_paused = false;
                        self.read_again.push(key);
                    }
                }
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

    /// Stops accepting, makes everything durable, queues the last acks and a ShuttingDown error
    /// for every connection, and then delivers them inside this loop, all connections at once,
    /// until each is done or the one shutdown deadline passes (`Config::shutdown_timeout`).
    fn shut_down(mut self, now: Now) -> io::Result<()> {
        let _ = self.poll.registry().deregister(&mut self.listener);
        let deadline_ms = now.monotonic.0 + self.shutdown_timeout_ms;
        self.engine.handle_shutdown(now);
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Close { conn, final_output } => {
                    self.close_socket(conn, final_output, deadline_ms)
                }
                // Every connection is closed by now; nothing else is started.
                Action::Send(_) | Action::Dial { .. } => {}
            }
        }
        // Every connection the engine knew is lingering now; unfinished peer connects owe
        // nothing.
        let not_lingering: Vec<usize> = self
            .sockets
            .iter()
            .filter(|(_, s)| !matches!(s.state, SocketState::Lingering { .. }))
            .map(|(key, _)| key)
            .collect();
        for key in not_lingering {
            self.remove_socket(key);
        }
        let keys: Vec<usize> = self.sockets.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.release_if_delivered(key);
        }
        let mut events = Events::with_capacity(1024);
        while !self.sockets.is_empty() {
            let now = self.clock.now();
            if now.monotonic.0 >= deadline_ms {
                self.log_cut_at_shutdown();
                break;
            }
            let timeout_ms = if self.read_again.is_empty() {
                deadline_ms - now.monotonic.0
            } else {
                0
            };
            match self
                .poll
                .poll(&mut events, Some(Duration::from_millis(timeout_ms)))
            {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for key in std::mem::take(&mut self.read_again) {
                if self.is_lingering(key) {
                    self.drain_lingering(key);
                    self.release_if_delivered(key);
                }
            }
            for event in events.iter() {
                let key = event.token().0;
                if self.is_lingering(key) {
                    self.on_lingering_event(event);
                    self.release_if_delivered(key);
                }
            }
        }
        log::info!("shut down cleanly");
        Ok(())
    }

    /// At shutdown a lingering socket is done once its final output is written and it has no
    /// unread input (closing then sends no reset, and the kernel delivers what is left): the
    /// client's own close is not awaited, since the process is about to exit anyway.
    fn release_if_delivered(&mut self, key: usize) {
        let written = self.sockets.get(key).is_some_and(|s| {
            matches!(s.state, SocketState::Lingering { .. }) && s.final_output_written()
        });
        if !written {
            return;
        }
        match self.sockets[key].drain_lingering(self.read_bytes_per_turn_max) {
            // Nothing more to read now: no reset on close.
            Linger::Waiting | Linger::Done => self.remove_socket(key),
            // The client is still sending: keep draining it until it stops or the deadline.
            Linger::ReadAgain => self.read_again.push(key),
        }
    }

    /// The shutdown deadline passed: says how many connections lose output, and how many had
    /// all of it but were still sending.
    fn log_cut_at_shutdown(&self) {
        let owed = self
            .sockets
            .iter()
            .filter(|(_, s)| !s.final_output_written())
            .count();
        if owed > 0 {
            log::warn!("{owed} connections were still owed output at the shutdown deadline; cut");
        }
        let sending = self.sockets.len() - owed;
        if sending > 0 {
            log::info!(
                "{sending} connections had all their output but were still sending at the \
                 shutdown deadline; closed"
            );
        }
    }
}
