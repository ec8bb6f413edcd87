//! The reactor: one thread, one mio `Poll`, one engine. The only code that imports mio and the
//! only code that reads the clock.
//!
//! A turn: wait for readiness (not at all when the engine or a socket has work left over), read
//! every readable socket up to a per-connection budget and hand the bytes to the engine, let the
//! engine end the turn (one sync for all the turn's appends, then acks and consumer feeding),
//! then write every connection the engine names. Sockets are edge-triggered: a socket is read
//! until `WouldBlock` or a read that does not fill the buffer (plaintext sockets whose peer has
//! not signalled its FIN: `Socket::read_to_end`), and one whose budget ran out first is
//! remembered and read again next turn without waiting for a new readiness event. So is one
//! the engine stopped taking input from (its client does not read its replies): it is read
//! again once its output drains.

mod http;
mod metrics_text;
#[cfg(feature = "testing")]
pub mod sched;
#[cfg(not(feature = "testing"))]
mod sched;
mod server;
mod socket;
mod spin;
mod tls;

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use http::{HttpEndpoint, HTTP_LISTENER};
pub use server::{AuthReloader, Server, ServerError, ShutdownTrigger};
use socket::{Linger, Socket, SocketState};
use spin::Spin;
use tls::{Plaintext, TlsRead, TlsSession};

use crate::config::Config;
use crate::engine::{millis, Action, ConnId, Engine, Now};
use crate::protocol::{encode_error, ErrorCode, ErrorScope};
use crate::storage::Log;
use crate::time::{MonotonicMs, WallClockMs};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// How often lingering and connecting sockets are checked for their deadlines.
const EXPIRY_SCAN_INTERVAL_MS: u64 = 100;
/// The longest the reactor sleeps without a deadline, so housekeeping runs.
const POLL_TIMEOUT_MAX_MS: u64 = 1000;

/// Sorts the readable socket keys, drops repeats, and rotates them to start at the first key
/// at or after `rotation` (where the previous turn's read budget ran out).
fn order_for_turn(readable: &mut Vec<usize>, rotation: usize) {
    readable.sort_unstable();
    readable.dedup();
    let first = readable.partition_point(|&key| key < rotation);
    readable.rotate_left(first);
}

/// What each of `count` readable connections may read this turn: an equal part of `total`,
/// at least `READ_SHARE_MIN`, at most `per_connection_max`.
fn read_share(total: usize, count: usize, per_connection_max: usize) -> usize {
    (total / count.max(1))
        .max(READ_SHARE_MIN)
        .min(per_connection_max)
}

/// What one connection may still read and decode this turn, or what the whole turn may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadBudget {
    bytes: usize,
    /// Frame units (a frame, or a batch's events) the engine may decode.
    frames: usize,
}

impl ReadBudget {
    /// Each of `count` readable connections' share of the turn's totals.
    fn share(config: &Config, count: usize) -> ReadBudget {
        ReadBudget {
            bytes: read_share(
                config.read_bytes_per_turn_total_max,
                count,
                config.read_bytes_per_turn_max,
            ),
            frames: (config.frames_per_turn_total_max / count.max(1))
                .max(FRAME_SHARE_MIN)
                .min(config.frames_per_turn_total_max),
        }
    }

    fn is_spent(&self) -> bool {
        self.bytes == 0 || self.frames == 0
    }
}

/// The fewest frames a readable connection may decode in a turn when the total frame budget
/// is shared among many: with more readable connections than the total allows at this share,
/// the budget runs out part-way and the next turn starts where it ran out.
const FRAME_SHARE_MIN: usize = 16;

/// The least a readable connection may read in a turn when the total read budget
/// (`read_bytes_per_turn_total_max`) is shared among many: a few frames' worth. With more
/// readable connections than the total allows at this share, the budget runs out part-way and
/// the next turn starts where it ran out.
const READ_SHARE_MIN: usize = 16 * 1024;
const READ_CHUNK: usize = 64 * 1024;

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
    /// The last turn delivered events to group members (`Engine::take_member_deliveries`;
    /// `Spin`: then the reactor polls a little before it sleeps, for their acks).
    delivered_last_turn: bool,
    spin: Spin,
    /// The socket key the next turn's reads start at: where the previous turn's total read
    /// budget ran out (`read_readable`).
    read_rotation: usize,
    engine: Engine<L>,
    clock: Clock,
    generation: u32,
    /// The limits (connections, read budget, linger, connect and shutdown time-outs).
    config: Config,
    shutdown: Arc<AtomicBool>,
    read_buffer: Vec<u8>,
    /// Sockets refused at the connection limit that are still lingering.
    refused_lingering_count: usize,
    /// Connections the engine closed that are still lingering; they count toward
    /// `connections_max`.
    closed_lingering_count: usize,
    /// The final output all lingering sockets still hold (`Socket::final_output_held`),
    /// counted with the engine's `connections_memory` against `connections_memory_max`.
    lingering_output_bytes: usize,
    /// Lingering sockets cut, with their final output, to bring that sum under the limit.
    lingering_cut_count: u64,
    next_expiry_scan_ms: u64,
    /// Set when the listener speaks TLS: every accepted connection gets a session.
    tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Set when the node speaks TLS and is clustered: every dialed peer connection gets a
    /// client session.
    peer_tls_config: Option<Arc<rustls::ClientConfig>>,
    /// A new auth table from [`AuthReloader`], taken at the start of a turn.
    auth_reload: server::AuthSlot,
    /// The metrics endpoint (`--metrics-addr`), if configured.
    http: Option<HttpEndpoint>,
    /// The engine's figures the last scrape gathered and when (monotonic ms): reused by the
    /// scrapes within `metrics.snapshot_interval` of it (attack round 9).
    metrics_snapshot: Option<metrics_text::Snapshot>,
    /// Read system calls on plaintext client and peer sockets, and those that found nothing
    /// (`WouldBlock`), for `flo_socket_reads_total`.
    socket_reads: SocketReads,
}

/// Counts of the reads of plaintext client and peer sockets.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SocketReads {
    pub calls: u64,
    pub would_block: u64,
}

impl<L: Log> Reactor<L> {
    pub(crate) fn new(
        config: &Config,
        mut listener: TcpListener,
        engine: Engine<L>,
        shutdown: Arc<AtomicBool>,
        tls_config: Option<Arc<rustls::ServerConfig>>,
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
            delivered_last_turn: false,
            spin: Spin::new(
                config.reactor_spin,
                config.reactor_spin_per_second_max,
                Instant::now(),
            ),
            read_rotation: 0,
            engine,
            clock: Clock {
                started: Instant::now(),
            },
            generation: 0,
            config: config.clone(),
            shutdown,
            read_buffer: vec![0; READ_CHUNK],
            refused_lingering_count: 0,
            closed_lingering_count: 0,
            lingering_output_bytes: 0,
            lingering_cut_count: 0,
            next_expiry_scan_ms: 0,
            tls_config,
            peer_tls_config: None,
            auth_reload: server::AuthSlot::default(),
            http: None,
            metrics_snapshot: None,
            socket_reads: SocketReads::default(),
        };
        Ok((reactor, waker))
    }

    /// Serves the metrics endpoint on `listener`.
    pub(crate) fn with_metrics(mut self, listener: TcpListener) -> io::Result<Reactor<L>> {
        let endpoint = HttpEndpoint::new(self.poll.registry(), listener, &self.config.metrics)?;
        self.http = Some(endpoint);
        Ok(self)
    }

    /// A readiness event on the metrics listener or one of its connections.
    fn on_http_event(&mut self, now: Now, token: Token) {
        let Some(http) = self.http.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        if token == HTTP_LISTENER {
            return http.accept(registry, now.monotonic.0);
        }
        let engine = &self.engine;
        let socket_reads = self.socket_reads;
        let lingering = metrics_text::LingeringFigures {
            connections: self.refused_lingering_count + self.closed_lingering_count,
            output_bytes: self.lingering_output_bytes,
            cut: self.lingering_cut_count,
        };
        let cached = &mut self.metrics_snapshot;
        let interval_ms = millis(self.config.metrics.snapshot_interval);
        let now_ms = now.monotonic.0;
        http.on_event(registry, token, now_ms, &mut |endpoint| {
            let figures = metrics_text::ReactorFigures {
                process: crate::storage::process_stats(),
                endpoint,
                socket_reads,
                lingering,
            };
            let snapshot = match cached {
                Some(snapshot) if now_ms < snapshot.taken_ms.saturating_add(interval_ms) => {
                    snapshot
                }
                _ => cached.insert(metrics_text::Snapshot::new(
                    now_ms,
                    engine.metrics_snapshot(),
                )),
            };
            metrics_text::render(snapshot, &figures)
        });
    }

    /// Dials peers with TLS under `config`.
    pub(crate) fn with_peer_tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> Reactor<L> {
        self.peer_tls_config = config;
        self
    }

    /// Shares `slot` with the [`AuthReloader`]s of the server.
    pub(crate) fn with_auth_reload(mut self, slot: server::AuthSlot) -> Reactor<L> {
        self.auth_reload = slot;
        self
    }

    /// Applies a new auth table if one is waiting.
    fn take_auth_reload(&mut self, now: Now) {
        // Poisoning cannot leave the Option invalid; take the value regardless.
        let table = self
            .auth_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(table) = table {
            self.engine.handle_auth_reload(now, table);
        }
    }

    /// Runs turns until shutdown is requested, then shuts down cleanly.
    pub(crate) fn run(mut self) -> io::Result<()> {
        if !self.config.reactor_slice.is_zero() {
            if let Err(error) = sched::request_slice(self.config.reactor_slice) {
                // Only the wake-up latency under CPU contention depends on it.
                log::warn!("could not ask for a scheduler slice for the reactor thread: {error}");
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut accept_pending = false;
        loop {
            let timeout = self.poll_timeout();
            match self.poll_spinning_first(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            let now = self.clock.now();
            let turn_started = Instant::now();
            let mut readable = std::mem::take(&mut self.read_again);
            let mut writable = Vec::new();
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_pending = true,
                    WAKER => {}
                    token if HttpEndpoint::owns(token) => self.on_http_event(now, token),
                    Token(key) if self.is_connecting(key) => self.finish_connect(now, key),
                    Token(key) if self.is_lingering(key) => self.on_lingering_event(event),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            readable.push(key);
                        }
                        if event.is_read_closed() || event.is_error() {
                            if let Some(socket) = self.sockets.get_mut(key) {
                                socket.read_to_end = true;
                            }
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
            self.take_auth_reload(now);
            if self.http.as_ref().is_some_and(|http| http.accept_pending) {
                self.on_http_event(now, HTTP_LISTENER);
            }
            if accept_pending && !self.listener_paused {
                accept_pending = self.accept(now);
            }
            self.read_readable(now, readable);
            self.timed_turn_sync(now);
            self.engine.handle_turn_end(now);
            self.drain_actions(now);
            self.delivered_last_turn = self.engine.take_member_deliveries();
            self.resume_writes(&writable);
            self.enforce_lingering_memory();
            if now.monotonic.0 >= self.next_expiry_scan_ms {
                self.next_expiry_scan_ms = now.monotonic.0 + EXPIRY_SCAN_INTERVAL_MS;
                self.expire_lingering(now);
                self.expire_connecting(now);
                if let Some(http) = self.http.as_mut() {
                    http.expire(self.poll.registry(), now.monotonic.0);
                }
            }
            self.engine
                .record_turn_duration(turn_started.elapsed().as_micros() as u64);
            if self.listener_paused && self.refused_lingering() < self.config.refused_lingering_max
            {
                self.listener_paused = false;
                accept_pending = true;
            }
        }
    }

    /// Waits at most `timeout` for readiness. After a turn that delivered events to group
    /// members it first polls without sleeping for the `Spin` allowance, so that a member's
    /// quick ack does not have to wake the reactor (spin.rs says why and what bounds it).
    fn poll_spinning_first(&mut self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        let started = Instant::now();
        let allowance = self.spin.allowance(
            started,
            std::mem::take(&mut self.delivered_last_turn),
            timeout,
        );
        if !allowance.is_zero() {
            let result = loop {
                if let Err(error) = self.poll.poll(events, Some(Duration::ZERO)) {
                    break Err(error);
                }
                if !events.is_empty() || started.elapsed() >= allowance {
                    break Ok(());
                }
                // A busy poll, not a yield (spin.rs, "Why not yield"): yielding put every
                // woken client on this core one after the other and raised the acked p50.
                std::hint::spin_loop();
            };
            let spent = started.elapsed();
            self.spin.record(spent, !events.is_empty());
            if result.is_err() || !events.is_empty() {
                return result;
            }
            return self.poll.poll(events, Some(timeout.saturating_sub(spent)));
        }
        self.poll.poll(events, Some(timeout))
    }

    /// The turn's group commit, timed for the fsync latency histogram when it ran an
    /// fdatasync on this thread (the ones a storage helper thread runs are not waited for).
    fn timed_turn_sync(&mut self, now: Now) {
        let fsyncs_before = self.engine.log().activity().fsync_caller_count;
        let started = Instant::now();
        self.engine.handle_turn_sync(now);
        if self.engine.log().activity().fsync_caller_count > fsyncs_before {
            self.engine
                .record_fsync_duration(started.elapsed().as_micros() as u64);
        }
    }

    fn poll_timeout(&self) -> Duration {
        let http_pending = self.http.as_ref().is_some_and(|http| http.accept_pending);
        if self.engine.has_pending_work() || !self.read_again.is_empty() || http_pending {
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
                    if connections >= self.config.connections_max {
                        self.refuse(now, stream);
                        if self.refused_lingering() >= self.config.refused_lingering_max {
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
        let tls = match &self.tls_config {
            Some(config) => Some(Box::new(
                TlsSession::new(config).map_err(|error| io::Error::other(error.to_string()))?,
            )),
            None => None,
        };
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
        let peer_addr = stream.peer_addr().ok();
        let mut socket = Socket::new(stream, conn);
        socket.tls = tls;
        entry.insert(socket);
        self.engine.handle_connect(now, conn);
        if let Some(addr) = peer_addr {
            self.engine.handle_peer_addr(conn, addr);
        }
        Ok(())
    }

    /// Refuses a connection over the limit with a clear error, then lets it linger briefly.
    fn refuse(&mut self, now: Now, stream: TcpStream) {
        let mut frame = Vec::new();
        let message = format!(
            "the server is at its limit of {} connections",
            self.config.connections_max
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
            let deadline_ms = now.monotonic.0 + millis(self.config.refused_linger_timeout);
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
        let progress = self.lingering_step(key, |socket| {
            socket.start_lingering(final_output, deadline_ms, refused)
        });
        self.after_lingering_progress(key, progress);
    }

    /// Runs `step` on the socket at `key` (lingering after it), keeping
    /// `lingering_output_bytes` up to date with the final output it holds.
    fn lingering_step(&mut self, key: usize, step: impl FnOnce(&mut Socket) -> Linger) -> Linger {
        let socket = &mut self.sockets[key];
        let before = socket.final_output_held();
        let progress = step(socket);
        let after = socket.final_output_held();
        self.lingering_output_bytes = self.lingering_output_bytes - before + after;
        progress
    }

    /// While the final output of the lingering sockets and what the engine's connections hold
    /// (`Engine::connections_memory`) are together over `connections_memory_max`, cuts the
    /// lingering sockets that hold the most, largest first, until the sum is under it or none
    /// holds any: their owed output (replies, events and the closing Error of a connection
    /// already closed) is what the server gives up first, before the engine closes an open
    /// connection. Without it, each connection closed with up to `output_bytes_hard_max`
    /// unsent kept it uncounted for `linger_timeout`, and new connections could fill the
    /// limit again meanwhile. Costs nothing while under the limit; a scan of the sockets only
    /// when over it.
    fn enforce_lingering_memory(&mut self) {
        debug_assert_eq!(
            self.lingering_output_bytes,
            (self.sockets.iter())
                .map(|(_, socket)| socket.final_output_held())
                .sum::<usize>(),
            "lingering_output_bytes disagrees with the sum over the sockets"
        );
        let limit = self.config.connections_memory_max;
        let engine = self.engine.connections_memory();
        // Nothing lingering to cut (an open connection alone over the limit is the engine's
        // to close): no scan of the sockets.
        if self.lingering_output_bytes == 0
            || engine.saturating_add(self.lingering_output_bytes) <= limit
        {
            return;
        }
        let mut held: Vec<(usize, usize)> = (self.sockets.iter())
            .filter(|(_, socket)| matches!(socket.state, SocketState::Lingering { .. }))
            .map(|(key, socket)| (socket.final_output_held(), key))
            .filter(|&(bytes, _)| bytes > 0)
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        for (bytes, key) in held {
            let total = engine.saturating_add(self.lingering_output_bytes);
            if total <= limit {
                break;
            }
            log::warn!(
                "cutting a closed connection that still held {bytes} bytes of owed output: \
                 the connections hold {total} bytes with those of closed ones, over the limit \
                 of {limit} bytes for all connections"
            );
            self.lingering_cut_count += 1;
            self.remove_socket(key);
        }
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
            let progress = self.lingering_step(key, Socket::flush_final_output);
            if progress == Linger::Done {
                return self.remove_socket(key);
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.drain_lingering(key);
        }
    }

    fn drain_lingering(&mut self, key: usize) {
        let progress = self.sockets[key].drain_lingering(
            self.config.read_bytes_per_turn_max,
            self.config.linger_discard_bytes_max,
        );
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

    /// Reads the readable sockets under the turn's total budgets
    /// (`read_bytes_per_turn_total_max` bytes, `frames_per_turn_total_max` frames): each gets
    /// an equal share of both (at least `READ_SHARE_MIN` bytes and `FRAME_SHARE_MIN` frames;
    /// at most `read_bytes_per_turn_max` bytes), starting after the key where the previous
    /// turn's budget ran out, so that no connection waits behind the same others turn after
    /// turn. Sockets the budget did not reach are read first in the next turn.
    fn read_readable(&mut self, now: Now, mut readable: Vec<usize>) {
        order_for_turn(&mut readable, self.read_rotation);
        let mut left = ReadBudget {
            bytes: self.config.read_bytes_per_turn_total_max,
            frames: self.config.frames_per_turn_total_max,
        };
        let share = ReadBudget::share(&self.config, readable.len());
        for (index, &key) in readable.iter().enumerate() {
            if left.is_spent() {
                self.read_rotation = key;
                self.read_again.extend_from_slice(&readable[index..]);
                return;
            }
            let mut budget = ReadBudget {
                bytes: share.bytes.min(left.bytes),
                frames: share.frames.min(left.frames),
            };
            self.read_socket(now, key, &mut budget);
            left.bytes -= share.bytes.min(left.bytes) - budget.bytes;
            left.frames -= share.frames.min(left.frames) - budget.frames;
        }
    }

    /// Reads one socket and decodes its input within `budget` (decreased by what it reads and
    /// decodes), remembering its readiness when the budget stops it.
    fn read_socket(&mut self, now: Now, key: usize, budget: &mut ReadBudget) {
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let conn = match socket.state {
            SocketState::Open(conn) => conn,
            SocketState::Lingering { .. } => return self.drain_lingering(key),
            SocketState::Connecting { .. } => return,
        };
        if socket.tls.is_some() {
            self.read_tls_socket(now, key, conn, budget);
        } else {
            self.read_plain_socket(now, key, conn, budget);
        }
    }

    /// Hands `bytes` (empty: only what waits in its input buffer) to the engine under the
    /// frame budget. Returns false when the socket must not be read further this turn: the
    /// engine closed the connection, or frames still wait for a later turn's budget (the
    /// socket is then remembered in `read_again`).
    fn hand_input(
        &mut self,
        now: Now,
        key: usize,
        conn: ConnId,
        bytes: std::ops::Range<usize>,
        budget: &mut ReadBudget,
    ) -> bool {
        let decoded =
            self.engine
                .handle_input_within(now, conn, &self.read_buffer[bytes], budget.frames);
        budget.frames = budget.frames.saturating_sub(decoded);
        // The engine may have closed the connection; its Close action removes the socket
        // later, so stop reading it now.
        if !self.engine.is_open(conn) {
            return false;
        }
        if self.engine.input_deferred(conn) {
            self.read_again.push(key);
            return false;
        }
        true
    }

    /// `read_socket` for a plaintext connection; `budget` is decreased by what it reads.
    fn read_plain_socket(&mut self, now: Now, key: usize, conn: ConnId, budget: &mut ReadBudget) {
        loop {
            // The engine stops taking input while the client does not read its replies; the
            // socket's readiness is remembered in `read_paused` (edge-triggered readiness is
            // not repeated) and `write_socket` resumes reading once the replies drain.
            if !self.engine.wants_input(conn) {
                self.sockets[key].read_paused = true;
                return;
            }
            // Frames left over from an earlier budget are decoded before more is read, so a
            // connection's input buffer holds at most one read.
            if self.engine.input_deferred(conn) && !self.hand_input(now, key, conn, 0..0, budget) {
                return;
            }
            if budget.is_spent() {
                self.read_again.push(key);
                return;
            }
            let socket = &mut self.sockets[key];
            let chunk = budget.bytes.min(self.read_buffer.len());
            let read_to_end = socket.read_to_end;
            self.socket_reads.calls += 1;
            match socket.stream.read(&mut self.read_buffer[..chunk]) {
                Ok(0) => return self.connection_lost(conn, key, None),
                Ok(count) => {
                    budget.bytes -= count;
                    if !self.hand_input(now, key, conn, 0..count, budget) {
                        return;
                    }
                    // A read that did not fill its buffer emptied the receive queue: another
                    // read would only say `WouldBlock`. Bytes arriving after it raise a new
                    // edge. Not when the peer's FIN (or an error) was signalled: that edge
                    // is not raised again, so the reads go on to the 0.
                    if count < chunk && !read_to_end {
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.socket_reads.would_block += 1;
                    return;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return self.connection_lost(conn, key, Some(error)),
            }
        }
    }

    /// `read_socket` for a TLS connection: ciphertext from the socket goes into rustls, and the
    /// plaintext it yields goes to the engine, under the same budget and the same pause as a
    /// plaintext connection. Plaintext is handed on before more ciphertext is read, so none
    /// is left behind when the socket has nothing more (edge-triggered readiness).
    fn read_tls_socket(&mut self, now: Now, key: usize, conn: ConnId, budget: &mut ReadBudget) {
        loop {
            if !self.engine.wants_input(conn) {
                self.sockets[key].read_paused = true;
                return;
            }
            if self.engine.input_deferred(conn) && !self.hand_input(now, key, conn, 0..0, budget) {
                return;
            }
            let socket = &mut self.sockets[key];
            let Some(tls) = socket.tls.as_mut() else {
                return;
            };
            if let Some(binding) = tls.take_channel_binding() {
                self.engine.handle_channel_binding(conn, binding);
            }
            match tls.read_plaintext(&mut self.read_buffer) {
                Plaintext::Bytes(count) => {
                    if !self.hand_input(now, key, conn, 0..count, budget) {
                        return;
                    }
                    continue;
                }
                Plaintext::Closed => return self.connection_lost(conn, key, None),
                Plaintext::Empty => {}
            }
            if budget.is_spent() {
                self.read_again.push(key);
                return;
            }
            let socket = &mut self.sockets[key];
            let Some(tls) = socket.tls.as_mut() else {
                return;
            };
            match tls.read_ciphertext(&mut socket.stream) {
                TlsRead::Read(count) => budget.bytes = budget.bytes.saturating_sub(count),
                TlsRead::WouldBlock => return self.flush_tls(key, conn),
                TlsRead::NotTls => return self.refuse_plaintext(conn, key),
                TlsRead::Failed { alert, reason } => {
                    if tls.is_client() {
                        // A peer this node dialed: a certificate or CA set-up problem that an
                        // operator must see.
                        log::warn!("{conn}: TLS with the peer this node dialed failed: {reason}");
                    } else {
                        log::debug!("{conn}: TLS failed: {reason}");
                    }
                    return self.end_tls_connection(conn, key, alert);
                }
                TlsRead::Lost(error) => return self.connection_lost(conn, key, Some(error)),
            }
            // The handshake answers as it goes.
            self.flush_tls(key, conn);
        }
    }

    /// Writes the ciphertext rustls holds for a TLS socket (handshake messages, or encrypted
    /// output) until it is all written or the socket would block.
    fn flush_tls(&mut self, key: usize, conn: ConnId) {
        let socket = &mut self.sockets[key];
        if socket.write_blocked {
            return;
        }
        let Some(tls) = socket.tls.as_mut() else {
            return;
        };
        while tls.wants_write() {
            match tls.write_ciphertext(&mut socket.stream) {
                Ok(_) => {}
                Err(error) => {
                    if !write_failed(
                        &mut socket.write_blocked,
                        &mut self.read_again,
                        key,
                        conn,
                        &error,
                    ) {
                        return;
                    }
                }
            }
        }
    }

    /// A plaintext client on the TLS port gets a plaintext Error frame (so flo clients say
    /// what is wrong) and the connection closes; the engine forgets it.
    fn refuse_plaintext(&mut self, conn: ConnId, key: usize) {
        log::debug!("{conn}: plaintext client on the TLS port; refused");
        let mut frame = Vec::new();
        encode_error(
            ErrorScope::Connection,
            ErrorCode::TlsRequired,
            "this port speaks TLS: connect with TLS (flo-client --tls)",
            &mut frame,
        );
        self.end_tls_connection(conn, key, frame);
    }

    /// Ends an open TLS connection outside the engine (a TLS failure, a plaintext client):
    /// the engine forgets it, and the socket lingers to deliver `final_bytes`, already in
    /// their wire form.
    fn end_tls_connection(&mut self, conn: ConnId, key: usize, final_bytes: Vec<u8>) {
        self.engine.handle_closed(conn);
        self.sockets[key].tls = None;
        self.closed_lingering_count += 1;
        let deadline_ms = self.clock.now().monotonic.0 + millis(self.config.linger_timeout);
        self.start_lingering(key, final_bytes, deadline_ms, false);
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
            self.lingering_output_bytes -= socket.final_output_held();
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
                    let deadline_ms = now.monotonic.0 + millis(self.config.linger_timeout);
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
            // A TLS connection's last bytes are encrypted, with the close_notify after them.
            let final_output = match self.sockets[key].tls.take() {
                Some(tls) => tls.close(&final_output),
                None => final_output,
            };
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
        let deadline_ms = now.monotonic.0 + millis(self.config.cluster.connect_timeout);
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
                if let Some(config) = &self.peer_tls_config {
                    match TlsSession::client(config, addr.ip()) {
                        Ok(session) => socket.tls = Some(Box::new(session)),
                        Err(error) => {
                            log::warn!("TLS to peer {addr} could not start: {error}");
                            self.remove_socket(key);
                            self.engine.handle_dial_failed(now, addr);
                            return self.drain_actions(now);
                        }
                    }
                }
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
        if socket.tls.is_some() {
            return self.write_tls_socket(key, conn);
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
                Err(error) => {
                    if !write_failed(
                        &mut socket.write_blocked,
                        &mut self.read_again,
                        key,
                        conn,
                        &error,
                    ) {
                        return;
                    }
                }
            }
        }
    }

    /// `write_socket` for a TLS connection: the ciphertext rustls holds goes out first, then
    /// the engine's output moves into rustls as far as its bounded buffer takes it (it counts
    /// as sent to the engine then), and so on until the output is empty or the socket blocks.
    fn write_tls_socket(&mut self, key: usize, conn: ConnId) {
        loop {
            self.flush_tls(key, conn);
            let socket = &mut self.sockets[key];
            let Some(tls) = socket.tls.as_mut() else {
                return;
            };
            if socket.write_blocked || tls.wants_write() {
                return;
            }
            let output = self.engine.output(conn);
            if output.is_empty() {
                return;
            }
            let count = tls.write_plaintext(output);
            if count == 0 {
                // Only during the handshake: the output waits for it to finish.
                return;
            }
            self.engine.handle_sent(conn, count);
            if socket.read_paused && self.engine.wants_input(conn) {
                socket.read_paused = false;
                self.read_again.push(key);
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
        if let Some(http) = self.http.as_mut() {
            http.close(self.poll.registry());
        }
        let deadline_ms = now.monotonic.0 + millis(self.config.shutdown_timeout);
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
        match self.sockets[key].drain_lingering(
            self.config.read_bytes_per_turn_max,
            self.config.linger_discard_bytes_max,
        ) {
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

/// A socket write failed: true when it should simply be retried (interrupted); otherwise the
/// socket stops being written, until it is writable again (would block) or for good (any other
/// error, which the read side then reports, removing the socket).
fn write_failed(
    write_blocked: &mut bool,
    read_again: &mut Vec<usize>,
    key: usize,
    conn: ConnId,
    error: &io::Error,
) -> bool {
    match error.kind() {
        ErrorKind::Interrupted => true,
        ErrorKind::WouldBlock => {
            *write_blocked = true;
            false
        }
        _ => {
            log::debug!("{conn}: write failed: {error}");
            *write_blocked = true;
            read_again.push(key);
            false
        }
    }
}

#[cfg(test)]
mod read_budget_tests {
    use super::*;

    /// Finding 8 of the second attack review: each readable connection could read
    /// `read_bytes_per_turn_max` (1 MiB) per turn, so 100 pipelining clients made one turn
    /// read 100 MiB and a bystander waited seconds. Now the turn's reads together stay within
    /// the total, and the connections the budget did not reach come first in the next turn.
    #[test]
    fn a_turn_reads_at_most_the_total_and_rotates_who_comes_first() {
        let bind = "127.0.0.1:0".parse().expect("an address");
        let config = crate::config::Config::new(bind, "/nonexistent".into());
        let (total, per_connection) = (
            config.read_bytes_per_turn_total_max,
            config.read_bytes_per_turn_max,
        );
        for count in [1usize, 2, 4, 100, 1000, 10_000] {
            let share = read_share(total, count, per_connection);
            // `read_readable` stops when the total is spent, so what a turn reads is at most
            // this: every connection its share, cut at the total.
            let turn = (share * count).min(total);
            assert!(turn <= total && share <= per_connection, "{count}: {share}");
            assert!(
                share >= READ_SHARE_MIN.min(per_connection),
                "{count}: {share}"
            );
        }
        assert!(
            total <= 8 * per_connection,
            "the total is a few connections' worth"
        );
        let mut readable = vec![9, 3, 7, 3, 1, 12];
        order_for_turn(&mut readable, 7);
        assert_eq!(readable, [7, 9, 12, 1, 3]);
        order_for_turn(&mut readable, 0);
        assert_eq!(readable, [1, 3, 7, 9, 12]);
    }

    /// The rest of finding 8: a turn's work is counted in frames too, so a bystander among N
    /// connections that always have more to send is served within a bounded number of turns
    /// (each taking at most `frames_per_turn_total_max` frames): every readable connection
    /// gets at least `FRAME_SHARE_MIN` frames, the turn stops when the total is spent, and
    /// the next starts where it stopped.
    #[test]
    fn a_bystander_is_served_within_a_bounded_number_of_turns_whatever_the_flooders_do() {
        let bind = "127.0.0.1:0".parse().expect("an address");
        let config = crate::config::Config::new(bind, "/nonexistent".into());
        let total = config.frames_per_turn_total_max;
        for flooders in [1usize, 100, 1000, 4096] {
            let bystander = flooders / 2;
            // Keys 0..=flooders; every one readable every turn (the flooders always are).
            let mut rotation = 0;
            let mut turns = 0;
            let served = loop {
                turns += 1;
                let mut readable: Vec<usize> = (0..=flooders).collect();
                order_for_turn(&mut readable, rotation);
                let share = ReadBudget::share(&config, readable.len());
                let mut left = total;
                let mut served_now = false;
                for &key in &readable {
                    if left == 0 {
                        rotation = key;
                        break;
                    }
                    // A flooder decodes all it may; the bystander its one produce.
                    let used = if key == bystander {
                        1
                    } else {
                        share.frames.min(left)
                    };
                    served_now |= key == bystander;
                    left -= used;
                }
                assert!(total - left <= total, "a turn decoded over the total");
                if served_now {
                    break turns;
                }
                assert!(
                    turns < 1000,
                    "{flooders} flooders: the bystander was never served"
                );
            };
            let bound = (flooders + 1) * FRAME_SHARE_MIN / total + 1;
            assert!(
                served <= bound,
                "{flooders} flooders: the bystander waited {served} turns (bound {bound})"
            );
        }
    }
}
