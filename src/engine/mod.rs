//! The engine: all server state and every decision, with no sockets and no clock.
//!
//! The reactor feeds it inputs (`handle_*`, each with the current time) and drains its outputs
//! (`poll_action`, `output`). One reactor turn is: `handle_input` for every connection that had
//! bytes, then `handle_turn_end`, which makes the turn's appends durable with one `Log::sync`
//! (group commit), and only then queues their acknowledgements and feeds consumers, so no
//! client ever sees an event or an ack that a crash could erase. Then the reactor writes the
//! output of every connection `poll_action` names.

mod auth;
mod connection;
mod consume;
mod groups;
mod groups_admin;
mod groups_compaction;
mod groups_ranges;
mod invariants;
mod log_limit;
mod lookups;
mod metrics;
mod order;
mod peer;
mod produce;
mod purge;
mod replicas;
mod streams;
mod tail_index;
mod timeouts;
mod turn_namespaces;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

pub use connection::{ClientConn, ConnId, PeerConn, Phase};
use connection::{Connection, Subscription, BUFFER_CAPACITY_KEPT};
pub use metrics::{Histogram, MetricsSnapshot};

use crate::config::{Config, FsyncPolicy, WireLimits};
use crate::event::EventId;
use crate::protocol::{
    self, encode, encode_error, kind, ClientFrame, Encode, ErrorCode, ErrorScope, Hello,
    OpeningFrame, PeerFrame, ServerFrame, Welcome, PROTOCOL_VERSION,
};
use crate::storage::Log;
use crate::time::{MonotonicMs, WallClockMs};

/// A decoded frame, by the decoder the connection's phase chose.
#[derive(Debug)]
enum Inbound {
    Opening(OpeningFrame),
    Client(ClientFrame),
    Peer(PeerFrame),
}

/// Wraps a decoded frame and its length into an [`Inbound`].
fn inbound<F>(wrap: fn(F) -> Inbound) -> impl Fn((F, usize)) -> (Inbound, usize) {
    move |(frame, length)| (wrap(frame), length)
}

/// The current time, given with every input: the two clocks as distinct types (see
/// [`crate::time`]), so a time-out cannot be measured on the wall clock by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// For event timestamps and retention ages only.
    pub wall: WallClockMs,
    /// For every interval, time-out and deadline (the fsync interval included).
    pub monotonic: MonotonicMs,
}

/// What the reactor must do for the engine.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// The connection has output: write `Engine::output(conn)` and report `handle_sent`.
    Send(ConnId),
    /// Write these last bytes if the socket takes them, then close the connection. The engine
    /// has already forgotten it.
    Close { conn: ConnId, final_output: Vec<u8> },
    /// Open an outbound connection to a peer and report `Engine::handle_dialed` or
    /// `Engine::handle_dial_failed`.
    Dial { addr: SocketAddr },
}

/// What the engine runs with: the server's [`Config`], where every limit is (read through
/// `Deref`, so `config.batch_events_max` is `Config::batch_events_max`; none is copied), plus
/// what the server decides at start-up from it and from the socket it bound.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Every limit, as configured and validated.
    pub limits: Config,
    /// Sent in Welcome.
    pub server_version: String,
    /// The address peers dial to reach this node (sent in the peer handshake).
    pub advertised_addr: Option<SocketAddr>,
    /// The cluster secret peers must present; empty for none.
    pub cluster_secret: Vec<u8>,
    /// Seeds the jitter of reconnect back-off (the engine has no RNG of its own).
    pub seed: u64,
    /// Keys the peer handshake's nonces (with `seed`): the server fills it from the operating
    /// system's random source at start-up, so nonces cannot be predicted; tests and the
    /// simulation leave it at zero and get nonces that a seed reproduces.
    pub nonce_key: [u8; 32],
    /// `Some(timeout)`: after start-up, produces are refused until this node has caught up
    /// with its peers or the time-out passed (set for non-`always` fsync policies).
    pub catch_up_timeout_ms: Option<u64>,
    /// The catch-up time-out for a node started on an empty data directory with peers
    /// (whatever the fsync policy): it may have lost the directory, and must not reuse the
    /// ids it handed out before (docs/clustering.md, "Losing a data directory"). `None` (the
    /// default): no time-out, it waits until it has met every member it knows.
    pub catch_up_timeout_fresh_ms: Option<u64>,
    /// PeerHello is accepted only when this is set or `peer_addrs` is not empty: the server
    /// was configured for clustering (`--peer-addr` or `--cluster-secret`).
    pub accepts_peers: bool,
    /// How often the engine checks time-outs and retention: `Config::housekeeping_interval`,
    /// shortened to the fsync interval under `--fsync interval:<ms>`.
    pub housekeeping_interval_ms: u64,
}

impl std::ops::Deref for EngineConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.limits
    }
}

impl EngineConfig {
    /// The engine's view of `config`.
    pub fn from_config(config: &Config) -> EngineConfig {
        let housekeeping_ms = millis(config.housekeeping_interval).max(1);
        EngineConfig {
            limits: config.clone(),
            server_version: format!("flo {}", env!("CARGO_PKG_VERSION")),
            // Housekeeping also ends a turn, which lets the log run a due fsync under
            // `--fsync interval:<ms>` even when nothing else happens.
            housekeeping_interval_ms: match config.storage.fsync {
                FsyncPolicy::IntervalMs(ms) => ms.clamp(1, housekeeping_ms),
                FsyncPolicy::Always | FsyncPolicy::Never => housekeeping_ms,
            },
            advertised_addr: Some(config.cluster.advertise_addr.unwrap_or(config.bind)),
            cluster_secret: config
                .cluster
                .secret
                .clone()
                .unwrap_or_default()
                .into_bytes(),
            seed: u64::from(config.actor_id.0).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            nonce_key: [0; 32],
            catch_up_timeout_ms: match config.storage.fsync {
                crate::config::FsyncPolicy::Always => None,
                _ => Some(millis(config.cluster.catch_up_timeout)),
            },
            catch_up_timeout_fresh_ms: config.cluster.empty_dir_catch_up_timeout.map(millis),
            accepts_peers: !config.cluster.peer_addrs.is_empty() || config.cluster.secret.is_some(),
        }
    }
}

/// A duration in whole milliseconds, as the engine's monotonic clock counts.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A reply to a produce, held until the turn's sync decides between ack and error.
#[derive(Debug)]
enum PendingReply {
    Ack {
        conn: ConnId,
        op_id: u64,
        first_id: EventId,
        count: u32,
        timestamp_ms: u64,
        /// Members that must hold the events durably before the ack goes out.
        replicas: u8,
    },
    Error {
        conn: ConnId,
        op_id: u64,
        code: ErrorCode,
        message: String,
    },
    /// A StatusRequest (or InfoRequest) that came after a held produce reply: Status must
    /// not overtake it (protocol.md section 14), so it is built at release, from durable
    /// state only. `size` is the encoded size of the reply at the time of the request,
    /// counted while it is held.
    Status {
        conn: ConnId,
        size: usize,
        report: Report,
    },
    /// A Purge, applied (made durable) by the turn's sync: `answer` is set then (Purged, or an
    /// Error of scope connection); still `None` at release means it was not applied. `size`
    /// is counted while it is held, as for Status.
    Purge {
        conn: ConnId,
        rule: crate::event::PurgeRule,
        answer: Option<Box<ServerFrame>>,
        size: usize,
    },
}

/// Which report a held `PendingReply::Status` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// `hold`: the request asked for the produce hold fields.
    Status {
        hold: bool,
    },
    Info,
    Members,
}

impl PendingReply {
    fn conn(&self) -> ConnId {
        match self {
            PendingReply::Ack { conn, .. }
            | PendingReply::Error { conn, .. }
            | PendingReply::Status { conn, .. }
            | PendingReply::Purge { conn, .. } => *conn,
        }
    }

    /// The size of the frame this reply becomes (an Ack, or an Error with its message; a
    /// StorageFailure error in place of an ack is counted as an ack, its message is short).
    fn encoded_size(&self) -> usize {
        match self {
            PendingReply::Ack { .. } => protocol::ACK_FRAME_SIZE,
            PendingReply::Error { message, .. } => 18 + message.len(),
            PendingReply::Status { size, .. } | PendingReply::Purge { size, .. } => *size,
        }
    }
}

/// Counters the engine keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub connections: usize,
    pub events_appended: u64,
    pub events_delivered: u64,
    /// Events an id-order subscription delivered after a larger id (docs/clustering.md, "Id
    /// order": the exception and "After a catch-up time-out"); each is also logged.
    pub events_delivered_late: u64,
    /// Replicated events appended (duplicates not counted).
    pub events_replicated: u64,
    pub sync_failures: u64,
    /// Peer connections closed for breaking a rule of the peer protocol that a correct peer
    /// never breaks (credit beyond its window, an event below its own clock promise:
    /// docs/clustering.md, "What a member is trusted with").
    pub peer_violations: u64,
    /// PeerPurges ignored because this node runs with `--peer-purges refuse`.
    pub peer_purges_refused: u64,
    /// Glob matching charged against the per-turn budget (`NamespaceGlob::match_cost`
    /// steps), while waking tail subscriptions and feeding consumers.
    pub match_steps_charged: u64,
    /// Subscriptions the waking of tail subscriptions looked at, over all turns: those the
    /// tail index named as candidates, or all of them in a turn that wakes everyone.
    pub tail_subscriptions_visited: u64,
    /// Events acknowledged by GroupAckRange frames (each settled in some turn's budget).
    pub group_range_acks: u64,
    /// Received bytes copied into connections' input buffers: the start of a frame that is
    /// not all there yet, and whole frames a pause or the frame budget left undecoded. Whole
    /// frames are decoded where they were received, without a copy (`Engine::decode_input`).
    pub input_bytes_buffered: u64,
    /// Walks of every connection to check its time-outs (`Engine::check_timeouts`): at most
    /// one per `timeout_check_interval_min`.
    pub timeout_checks: u64,
}

/// Where the frames of a decoding pass (`Engine::decode_pass`) lie.
#[derive(Debug, Clone, Copy)]
enum InputAt<'a> {
    /// In the connection's input buffer: frames a pause or the frame budget left there, or a
    /// partial frame topped up from the bytes just received.
    Buffered,
    /// In bytes just received (the reactor's read buffer), while the input buffer is empty:
    /// only what the pass leaves undecoded is copied into the buffer.
    Fresh(&'a [u8]),
}

/// Why a decoding pass stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputStop {
    /// No whole frame is left: the bytes ended, perhaps in the middle of a frame.
    Incomplete,
    /// The connection's output reached the high-water mark.
    Paused,
    /// The frame budget ran out, or a range ack waits for a later budget.
    Deferred,
    /// A frame closed the connection.
    Closed,
}

/// What a decoding pass did: frame units and bytes decoded, and why it stopped.
#[derive(Debug, Clone, Copy)]
struct InputPass {
    units: usize,
    consumed: usize,
    stop: InputStop,
}

/// Copies into `input`, which holds the start of one frame, the bytes of `bytes` that frame
/// still lacks (all of `bytes` when they are fewer), and returns the bytes after them. Leaves
/// `input` as it is when it holds a whole frame at its start. Each step copies up to the
/// header, then up to the size the header gives, so a frame whose length is over the limit
/// costs at most one read before the decoder refuses it.
fn top_up_input<'a>(input: &mut Vec<u8>, mut bytes: &'a [u8]) -> &'a [u8] {
    loop {
        let missing = protocol::frame_bytes_missing(input);
        if missing == 0 || bytes.is_empty() {
            return bytes;
        }
        let (taken, rest) = bytes.split_at(missing.min(bytes.len()));
        input.extend_from_slice(taken);
        bytes = rest;
    }
}

pub struct Engine<L: Log> {
    config: EngineConfig,
    log: L,
    /// The Lamport clock: the highest counter of any event this node has stored or created.
    counter: u64,
    /// Indexed by `ConnId::slot`.
    conns: Vec<Option<Connection>>,
    connection_count: usize,
    /// Replies to this turn's produces, in the order the produces arrived.
    pending_replies: Vec<PendingReply>,
    /// The connections of the replies `release_replies` releases (kept for its allocation).
    replied_conns: Vec<ConnId>,
    /// The subscriptions `wake_tailing_consumers` wakes (kept for its allocation).
    woken: Vec<(ConnId, u32)>,
    /// Every subscription, filed by the literal part of its glob, and the wake clock that
    /// subscriptions' positions are read through (`tail_index.rs`).
    tail: tail_index::TailIndex,
    /// The subscriptions the index names as candidates for a wake (kept for its allocation).
    tail_candidates: Vec<(ConnId, u32)>,
    /// The views of a ProduceBatch's or ProduceIf's events (`decode_produce_many`): empty
    /// between frames, kept for its allocation.
    batch_views: Vec<protocol::NewEventView<'static>>,
    /// Set when an append failed this turn: the log discarded the turn's appends.
    turn_failure: Option<String>,
    /// Failed writes, logged at most once every 10 s (a full disk fails every produce).
    storage_failures: log_limit::StorageFailureLog,
    /// Namespaces appended this turn, with the newest id of each: to wake only the tailing
    /// consumers that match, and for conditional produces.
    turn_namespaces: turn_namespaces::TurnNamespaces,
    /// The newest durable id of namespaces conditional produces asked about (`streams.rs`);
    /// at most `streams.last_ids_max` between turns.
    last_ids: HashMap<String, Option<EventId>>,
    /// Recent acks of idempotent producers (`streams.rs`).
    producers: streams::Producers,
    /// Subscriptions that can make progress now, in the order they became ready.
    ready: VecDeque<(ConnId, u32)>,
    /// Namespace listings and traces in progress, at most one per connection (`lookups.rs`).
    lookups: VecDeque<lookups::Lookup>,
    /// Connections with output the reactor has not been told about yet.
    output_queue: VecDeque<ConnId>,
    /// Connections whose produce replies this turn released; `poll_action` hands them out
    /// before `output_queue`, so the acks are written before what feeding queued.
    reply_queue: VecDeque<ConnId>,
    /// `groups.deliveries` at the last `take_member_deliveries`.
    member_deliveries_seen: u64,
    /// Connections whose input was paused and may be decoded again (their output drained).
    input_resumed: Vec<ConnId>,
    /// Connections whose whole frames wait because a frame budget ran out (`input_deferred`);
    /// may hold stale or repeated entries, checked when taken.
    input_deferred_queue: Vec<ConnId>,
    /// What is left of `frames_per_turn_total_max` this turn: the frame units every
    /// connection's input may still decode before `handle_turn_end`.
    turn_frames_left: usize,
    /// Frame units the frame being handled cost beyond `frame_units` (a conditional
    /// produce's namespace lookup, one per unit of the log's work), added by `decode_input`
    /// to the frame's units once it is handled.
    frame_units_charged: usize,
    closing: VecDeque<Action>,
    /// Connections marked `Closing` this turn, closed at its end.
    closing_conns: Vec<ConnId>,
    next_housekeeping_ms: u64,
    /// When the connections' time-outs are next checked (`check_timeouts`): the earliest
    /// deadline the last check left, lowered when a deadline is set that comes sooner (a new
    /// connection, a partial frame: `note_deadline`), but at least
    /// `timeout_check_interval_min` after the last check.
    next_timeout_check_ms: u64,
    /// The earliest a check may come: `timeout_check_interval_min` after the last one.
    timeout_check_allowed_ms: u64,
    stats: EngineStats,
    /// Failed handshakes this second, for `auth_failures_per_second_max`.
    auth_failures: auth::AuthFailures,
    cluster: peer::Cluster,
    /// The monotonic time of the latest input.
    now_ms: u64,
    /// The sum of every connection's `memory_counted`: what all connections hold, against
    /// `connections_memory_max`. Kept up to date where a connection's memory changes
    /// (`recount_memory`), never by a scan.
    connections_memory: usize,
    /// Subscriptions that had an event to deliver but were not fed because it would take
    /// `connections_memory` past `connections_memory_max`, with the bytes that event needs.
    /// They are queued again once that much is free (output drained or connections closed).
    memory_waiting: BTreeMap<(ConnId, u32), usize>,
    /// Consumer groups and their journal (`groups.rs`).
    groups: groups::Groups,
    /// Connections with replies waiting for replicas.
    waiting_conns: Vec<ConnId>,
    /// Purges received from peers this turn, applied with the clients' at the turn's sync.
    peer_purges: Vec<crate::event::PurgeRule>,
    /// Counters for the metrics endpoint (`metrics.rs`).
    metrics: metrics::Metrics,
    /// The turn's sync, done by `handle_turn_sync` and not yet followed by `handle_turn_end`.
    turn_synced: Option<TurnSync>,
}

/// The outcome of a turn's sync, between `handle_turn_sync` and `handle_turn_end`.
struct TurnSync {
    durable_before: crate::storage::Offset,
    failure: Option<String>,
}

/// The frame units (of `frames_per_turn_total_max`, 16384 by default) one membership change
/// costs: it is written and fsynced when handled, so a flood of them must not fit in a turn.
const MEMBERSHIP_CHANGE_UNITS: usize = 1024;

/// Entries a request may visit for one unit of the turn's frame budget when its answer walks
/// a collection whose size clients choose (a Status's id-order block visits every connection
/// and subscription, a group's state every member, a replay every parked event): 16384 units
/// a turn visit at most 262,144 entries a turn. Measured about 20 ns per parked event visited
/// (a replay of 100,000 took 2 ms), so a turn of them costs about what 16384 Pings do
/// (attack round 8; at 64 a turn of replays still took a bystander to 180 ms median).
pub(crate) const SCAN_ENTRIES_PER_FRAME_UNIT: usize = 16;

impl<L: Log> Engine<L> {
    /// Charges the turn's frame budget for a request whose answer walked `entries` entries
    /// of a collection clients size (`SCAN_ENTRIES_PER_FRAME_UNIT`), added to the frame's
    /// units by `decode_input`.
    fn charge_scan(&mut self, entries: usize) {
        let units = entries / SCAN_ENTRIES_PER_FRAME_UNIT;
        self.frame_units_charged = self.frame_units_charged.saturating_add(units);
    }

    /// What a pass over every connection and its subscriptions visits: the connection slots
    /// (open or not) and the subscriptions (a Status's id-order block, an Info's counts).
    fn connection_scan_entries(&self) -> usize {
        let subscriptions: usize = (self.conns.iter().flatten())
            .map(|connection| connection.subscriptions.len())
            .sum();
        self.conns.len().saturating_add(subscriptions)
    }

    pub fn new(config: EngineConfig, log: L) -> Engine<L> {
        let frames_per_turn_total_max = config.frames_per_turn_total_max;
        // The lease covers every counter handed out before, also those of acknowledged
        // events the log has lost since (a power loss, a torn tail): starting at it leaves a
        // gap instead of reusing their ids.
        let counter = log.version_vector().counter_max().max(log.counter_floor());
        // A data directory that has never handed out a counter (no counter lease): new, or
        // lost and restarted empty, or restarted before its catch-up after such a start.
        let fresh = log.counter_floor() == 0;
        let cluster = peer::Cluster::new(&config, log.version_vector(), fresh);
        // Names of earlier turns kept for reuse: as many as a turn matches one by one.
        let turn_namespaces =
            turn_namespaces::TurnNamespaces::new(config.turn_namespaces_matched_max);
        let tail = tail_index::TailIndex::new(log.durable_end());
        let mut engine = Engine {
            config,
            log,
            counter,
            conns: Vec::new(),
            connection_count: 0,
            pending_replies: Vec::new(),
            replied_conns: Vec::new(),
            woken: Vec::new(),
            tail,
            tail_candidates: Vec::new(),
            batch_views: Vec::new(),
            turn_failure: None,
            storage_failures: log_limit::StorageFailureLog::default(),
            turn_namespaces,
            last_ids: HashMap::new(),
            producers: streams::Producers::default(),
            ready: VecDeque::new(),
            lookups: VecDeque::new(),
            output_queue: VecDeque::new(),
            reply_queue: VecDeque::new(),
            member_deliveries_seen: 0,
            input_resumed: Vec::new(),
            input_deferred_queue: Vec::new(),
            turn_frames_left: frames_per_turn_total_max,
            frame_units_charged: 0,
            closing: VecDeque::new(),
            closing_conns: Vec::new(),
            next_housekeeping_ms: 0,
            next_timeout_check_ms: u64::MAX,
            timeout_check_allowed_ms: 0,
            stats: EngineStats::default(),
            auth_failures: auth::AuthFailures::default(),
            cluster,
            now_ms: 0,
            connections_memory: 0,
            memory_waiting: BTreeMap::new(),
            groups: groups::Groups::new(),
            waiting_conns: Vec::new(),
            metrics: metrics::Metrics::default(),
            peer_purges: Vec::new(),
            turn_synced: None,
        };
        engine.load_producers();
        engine.load_members();
        engine
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// Gives the log back (the simulator restarts a node on the log it left behind).
    #[cfg(any(test, feature = "testing"))]
    pub fn into_log(self) -> L {
        self.log
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            connections: self.connection_count,
            ..self.stats
        }
    }

    /// The Lamport counter: the highest counter stored or created here.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// True while the engine takes input from the connection: it was connected, and neither
    /// closed nor marked for closing.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .is_some_and(|c| !matches!(c.phase, Phase::Closing { .. }))
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count
    }

    /// A new client connection was accepted. The reactor chooses the id; the slot must not be
    /// in use.
    pub fn handle_connect(&mut self, now: Now, conn: ConnId) {
        self.observe_time(now);
        let slot = conn.slot as usize;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        assert!(self.conns[slot].is_none(), "{conn}: slot already in use");
        let deadline_ms = now.monotonic.0 + millis(self.config.handshake_timeout);
        self.conns[slot] = Some(Connection::new(conn, now.monotonic.0, deadline_ms));
        self.connection_count += 1;
        self.note_deadline(conn);
        self.debug_check_invariants();
    }

    /// Bytes arrived on a connection. Decodes and handles every whole frame in them (within
    /// the turn's frame budget), unless the connection's input is paused (`wants_input`),
    /// when they wait in its input buffer.
    pub fn handle_input(&mut self, now: Now, conn: ConnId, bytes: &[u8]) {
        self.handle_input_within(now, conn, bytes, usize::MAX);
    }

    /// `handle_input` with a share of the turn's frame budget: decodes at most `frames_max`
    /// frame units (a frame, or a batch's events) and at most what is left of
    /// `frames_per_turn_total_max` this turn, and returns the units decoded. Whole frames past
    /// the budget wait in the input buffer (`input_deferred`) and the reactor must not read
    /// more from the socket until a later call (with empty `bytes`) has decoded them.
    pub fn handle_input_within(
        &mut self,
        now: Now,
        conn: ConnId,
        bytes: &[u8],
        frames_max: usize,
    ) -> usize {
        if !self.is_open(conn) {
            return 0;
        }
        if !bytes.is_empty() {
            // Checked just above.
            self.conn_mut(conn)
                .expect("connection is open")
                .last_input_ms = now.monotonic.0;
        }
        self.metrics.on_received(bytes.len());
        self.observe_time(now);
        let decoded = self.decode_input(now, conn, bytes, frames_max);
        self.enforce_connections_memory();
        self.debug_check_invariants();
        decoded
    }

    /// False while the engine takes no more input from the connection: its replies are above
    /// the high-water mark and the client is not reading them. The reactor then stops reading
    /// the socket until this turns true again (after `handle_sent`), and must then read it
    /// again without waiting for a new readiness event.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| !c.input_paused)
    }

    /// True while whole frames of the connection wait in its input buffer because a frame
    /// budget ran out (`handle_input_within`): the reactor decodes them, with empty input,
    /// before it reads the socket again.
    pub fn input_deferred(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.input_deferred)
    }

    /// What a frame costs of the turn's frame budget: one unit, or one per event of a batch
    /// (each is an append).
    fn frame_units(frame: &Inbound) -> usize {
        match frame {
            Inbound::Client(ClientFrame::ProduceBatch(batch)) => batch.events.len().max(1),
            Inbound::Client(ClientFrame::ProduceIf(produce)) => produce.events.len().max(1),
            // A membership change rewrites and fsyncs the member file at once (not at the
            // turn's group commit): at most 16 of them a turn, server-wide, and one a turn
            // per connection.
            Inbound::Client(ClientFrame::ChangeMember(_))
            | Inbound::Peer(PeerFrame::PeerMembership(_)) => MEMBERSHIP_CHANGE_UNITS,
            // Each id is an ack, a nack or a time-out to restart (a GroupAckRange charges its
            // own, as it settles them: `groups_ranges.rs`).
            Inbound::Client(
                ClientFrame::GroupAck(ack)
                | ClientFrame::GroupNack(ack)
                | ClientFrame::GroupProgress(ack),
            ) => ack
                .ids
                .len()
                .div_ceil(groups_ranges::ACKS_PER_FRAME_UNIT)
                .max(1),
            _ => 1,
        }
    }

    /// Decodes and handles the whole frames in the connection's input buffer and then in
    /// `bytes` (just received), until only part of a frame is left, the connection's output
    /// reaches the high-water mark, or the frame budget runs out. Frames are decoded where they
    /// lie: a partial frame in the buffer is topped up from `bytes` with just the bytes it
    /// lacks, and once the buffer is empty the rest of `bytes` is decoded in place, so only
    /// what is left undecoded (a partial frame, or frames a pause or the budget holds up) is
    /// copied into the buffer.
    fn decode_input(&mut self, now: Now, conn: ConnId, bytes: &[u8], frames_max: usize) -> usize {
        let frames_max = frames_max.min(self.turn_frames_left);
        let mut units = 0;
        let mut consumed = 0;
        let mut rest = bytes;
        let stop = loop {
            // The callers found the connection open, and a pass that closes it ends the loop.
            let input = &mut self.conn_mut(conn).expect("connection is open").input;
            if input.is_empty() {
                // Also with no bytes: a range ack queued by an earlier budget continues there.
                let frames_left = frames_max.saturating_sub(units);
                let pass = self.decode_pass(now, conn, InputAt::Fresh(rest), frames_left);
                units = units.saturating_add(pass.units);
                consumed += pass.consumed;
                break pass.stop;
            }
            let length_before = input.len();
            rest = top_up_input(input, rest);
            // Still a partial frame when not whole, which took every byte received; decoded
            // all the same, for the pause and the early checks of its header.
            let whole = protocol::frame_bytes_missing(input) == 0;
            self.stats.input_bytes_buffered += (input.len() - length_before) as u64;
            let frames_left = frames_max.saturating_sub(units);
            let pass = self.decode_pass(now, conn, InputAt::Buffered, frames_left);
            units = units.saturating_add(pass.units);
            consumed += pass.consumed;
            // A whole frame at the front is decoded, refused or held up; were it neither, the
            // loop would not end.
            debug_assert!(!whole || pass.consumed > 0 || pass.stop != InputStop::Incomplete);
            if pass.stop != InputStop::Incomplete || !whole || pass.consumed == 0 {
                if pass.stop != InputStop::Closed {
                    // The received bytes wait behind the buffered frames.
                    let input = &mut self.conn_mut(conn).expect("connection is open").input;
                    input.extend_from_slice(rest);
                    self.stats.input_bytes_buffered += rest.len() as u64;
                }
                break pass.stop;
            }
        };
        if stop == InputStop::Closed {
            return units;
        }
        self.finish_input(now, conn, consumed > 0, stop);
        units
    }

    /// After `decode_input`: frees a large emptied input buffer, records a pause or a deferral,
    /// moves the deadline of a partial frame (`frame_started_ms`; `consumed`: a frame was
    /// decoded, so a partial frame left now started with this input) and checks the
    /// connection's memory.
    fn finish_input(&mut self, now: Now, conn: ConnId, consumed: bool, stop: InputStop) {
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        // The memory counted for the input is its length (`Connection::memory_bytes`): a
        // buffer that grew to a large frame's size and now holds only the start of the next
        // frame gives the rest back, else every connection could hold a frame's size (8 MiB by
        // default) counted as a few bytes, past `connections_memory_max` (attack round 15).
        // Not while a frame accumulates: its length is then at least half the capacity.
        let kept = connection.input.len().max(BUFFER_CAPACITY_KEPT);
        if connection.input.is_empty() && connection.input.capacity() > BUFFER_CAPACITY_KEPT {
            connection.input = Vec::new();
        } else if connection.input.capacity() > 2 * kept {
            connection.input.shrink_to(kept);
        }
        let paused = stop == InputStop::Paused;
        let deferred = stop == InputStop::Deferred;
        connection.input_paused = paused;
        let newly_deferred = deferred && !connection.input_deferred;
        connection.input_deferred = deferred;
        let now_ms = now.monotonic.0;
        // A frame's deadline runs from its first byte. While the input is paused (or deferred
        // by the frame budget) the server, not the client, holds it up: the deadline stops,
        // and on resume it is moved on by the time paused, never restarted (a pause cannot
        // renew a partial frame's life).
        if paused || deferred {
            connection.paused_at_ms.get_or_insert(now_ms);
        } else if let Some(paused_at) = connection.paused_at_ms.take() {
            if let Some(started) = connection.frame_started_ms.as_mut() {
                *started = started.saturating_add(now_ms.saturating_sub(paused_at));
            }
        }
        connection.frame_started_ms = if connection.input.is_empty() {
            None
        } else if consumed {
            Some(now_ms)
        } else {
            Some(connection.frame_started_ms.unwrap_or(now_ms))
        };
        // A partial frame's deadline, or a new phase's (a handshake done), may come sooner.
        self.note_deadline(conn);
        self.check_memory(conn);
        if newly_deferred {
            self.input_deferred_queue.push(conn);
        }
    }

    /// The whole frames of the connection at `at`, decoded and handled in order until no whole
    /// frame is left, the connection's output reaches the high-water mark, at most
    /// `frames_max` frame units were decoded, or a frame closes the connection. Then the
    /// decoded bytes leave the input buffer (`Buffered`), or what is left of the received bytes
    /// is copied into it (`Fresh`); a closed connection's input is dropped.
    fn decode_pass(&mut self, now: Now, conn: ConnId, at: InputAt, frames_max: usize) -> InputPass {
        let high_water = self.config.send_buffer_high_water;
        let mut units_decoded = 0;
        let mut consumed = 0;
        let stop = loop {
            // Checked by the callers and below: the connection exists until `close` removes
            // it, and the loop ends right after a close.
            let connection = self.conn(conn).expect("connection is open");
            let input = match at {
                InputAt::Buffered => &connection.input[consumed..],
                InputAt::Fresh(bytes) => &bytes[consumed..],
            };
            if !input.is_empty() && connection.output_owed() >= high_water {
                break InputStop::Paused;
            }
            if !input.is_empty() && units_decoded >= frames_max {
                break InputStop::Deferred;
            }
            // A range ack not done yet goes before the connection's next frame; while it is
            // not done (the budget ran out), its later frames wait (`groups_ranges.rs`).
            if self.group_ack_range_queued(conn) {
                let units_left = frames_max.saturating_sub(units_decoded);
                if units_left > 0 {
                    let units = self.continue_group_ack_range(conn, units_left);
                    units_decoded = units_decoded.saturating_add(units);
                    self.turn_frames_left = self.turn_frames_left.saturating_sub(units);
                    self.metrics.on_decoded(units);
                }
                if self.group_ack_range_queued(conn) {
                    break InputStop::Deferred;
                }
                continue;
            }
            // The decoder is chosen by the connection's phase, so each frame is checked in the
            // order of protocol.md (section 3): the length (against the limit of this phase and
            // kind), the kind (a peer frame on a client connection is refused as soon as its
            // kind byte is known; PeerHello is the one peer frame a new connection may start
            // with), the body, and last a well-formed frame of the wrong direction.
            let peeked_kind = input.get(4).copied();
            if matches!(connection.phase, Phase::AwaitingHello { .. })
                && peeked_kind == Some(kind::PEER_HELLO)
                && !self.accepts_peer_hello()
                && Self::length_within(input, self.config.hello_frame_size_max)
            {
                // Refused as soon as its kind is known, not after buffering its body (a length
                // over the Hello limit is refused first, by the decoder: FrameTooLarge).
                log::warn!("{conn}: refusing PeerHello: this server accepts no peers");
                let message = "this server is not configured for clustering (no --peer-addr and no --cluster-secret); it accepts no peers";
                self.close_with_error(conn, ErrorCode::UnexpectedFrame, message);
                break InputStop::Closed;
            }
            let wire = self.decode_limits(&connection.phase, peeked_kind);
            let produce_kind = match peeked_kind {
                Some(kind::PRODUCE) => Some(false),
                Some(kind::PRODUCE_BATCH | kind::PRODUCE_IF) => Some(true),
                _ => None,
            };
            if let (Phase::Client(_), Some(many)) = (&connection.phase, produce_kind) {
                let decoded = if many {
                    let units_max = frames_max.saturating_sub(units_decoded);
                    self.decode_produce_many(now, conn, at, consumed, &wire, units_max)
                } else {
                    self.decode_produce(now, conn, at, consumed, &wire)
                        .map(|length| length.map(|length| (Some(length), 1)))
                };
                match decoded {
                    Ok(Some((length, units))) => {
                        units_decoded = units_decoded.saturating_add(units);
                        self.turn_frames_left = self.turn_frames_left.saturating_sub(units);
                        self.metrics.on_decoded(units);
                        let Some(length) = length else {
                            // A conditional produce waits for its lookup, which used the
                            // budget: it is decoded again in a later turn.
                            break InputStop::Deferred;
                        };
                        consumed += length;
                        if !self.is_open(conn) {
                            break InputStop::Closed;
                        }
                        continue;
                    }
                    Ok(None) => break InputStop::Incomplete,
                    Err(error) => {
                        self.close_with_error(conn, error.code, &error.message);
                        break InputStop::Closed;
                    }
                }
            }
            let decoded =
                match connection.phase {
                    Phase::AwaitingHello { .. } => protocol::decode_opening(input, &wire)
                        .map(|d| d.map(inbound(Inbound::Opening))),
                    Phase::Client(_) => protocol::decode_client(input, &wire)
                        .map(|d| d.map(inbound(Inbound::Client))),
                    Phase::PeerAwaitingWelcome { .. }
                    | Phase::PeerAwaitingAccept { .. }
                    | Phase::PeerAwaitingProof { .. }
                    | Phase::Peer(_) => {
                        protocol::decode_peer(input, &wire).map(|d| d.map(inbound(Inbound::Peer)))
                    }
                    // `handle_input` takes no input of a closing connection, and the loop ends as
                    // soon as a frame closed it.
                    Phase::Closing { .. } => unreachable!("{conn}: input decoded after the close"),
                };
            match decoded {
                Ok(None) => break InputStop::Incomplete,
                Ok(Some((frame, length))) => {
                    consumed += length;
                    let units = Self::frame_units(&frame);
                    let open = self.on_frame(now, conn, frame);
                    let units = units.saturating_add(std::mem::take(&mut self.frame_units_charged));
                    units_decoded = units_decoded.saturating_add(units);
                    self.turn_frames_left = self.turn_frames_left.saturating_sub(units);
                    self.metrics.on_decoded(units);
                    if !open {
                        break InputStop::Closed;
                    }
                }
                Err(error) => {
                    self.close_with_error(conn, error.code, &error.message);
                    break InputStop::Closed;
                }
            }
        };
        if stop != InputStop::Closed {
            // Checked above: the connection is open.
            let connection = self.conn_mut(conn).expect("connection is open");
            match at {
                InputAt::Buffered => {
                    connection.input.drain(..consumed);
                }
                InputAt::Fresh(bytes) => {
                    debug_assert!(
                        connection.input.is_empty(),
                        "{conn}: fresh input behind buffered"
                    );
                    let left = &bytes[consumed..];
                    connection.input.extend_from_slice(left);
                    self.stats.input_bytes_buffered += left.len() as u64;
                }
            }
        }
        InputPass {
            units: units_decoded,
            consumed,
            stop,
        }
    }

    /// Decodes the Produce at `consumed` in the input at `at` as a view of those bytes and
    /// handles it: the event goes from the received bytes (or the input buffer) into the log's
    /// record buffer with no owned copy. A buffered input is moved out of the connection while
    /// it is borrowed (moving a `Vec` does not allocate) and put back after. Returns the
    /// frame's length, or `None` when only part of it is there.
    fn decode_produce(
        &mut self,
        now: Now,
        conn: ConnId,
        at: InputAt,
        consumed: usize,
        wire: &WireLimits,
    ) -> Result<Option<usize>, protocol::DecodeError> {
        let buffered = self.take_buffered_input(conn, at);
        let input = match at {
            InputAt::Buffered => &buffered[consumed..],
            InputAt::Fresh(bytes) => &bytes[consumed..],
        };
        let result = match protocol::decode_produce_view(input, wire) {
            Ok(Some((op_id, event, length))) => {
                self.on_produce(now, conn, op_id, event);
                Ok(Some(length))
            }
            other => other.map(|_| None),
        };
        self.restore_buffered_input(conn, buffered);
        result
    }

    /// `decode_produce` for a ProduceBatch or ProduceIf: its events are decoded as views of
    /// the input into `batch_views` (kept from frame to frame, so no allocation at steady
    /// state) and appended from there. Returns the frame's length and its frame units (one
    /// per event, plus the work its expectation's lookup took), or `None` when only part of
    /// it is there. The length is `None` when a ProduceIf waits for its expectation's
    /// lookup, which read `units_max` records (the units are then the lookup's alone): the
    /// frame stays in the input for a later turn.
    fn decode_produce_many(
        &mut self,
        now: Now,
        conn: ConnId,
        at: InputAt,
        consumed: usize,
        wire: &WireLimits,
        units_max: usize,
    ) -> Result<Option<(Option<usize>, usize)>, protocol::DecodeError> {
        let buffered = self.take_buffered_input(conn, at);
        let input = match at {
            InputAt::Buffered => &buffered[consumed..],
            InputAt::Fresh(bytes) => &bytes[consumed..],
        };
        let mut views = produce::recycle_views(std::mem::take(&mut self.batch_views));
        // Only the first `batch_events_max` views are kept (a batch with more is refused by its
        // count), so a frame of many tiny events costs views bounded by the limit.
        let kept_max = self.config.batch_events_max;
        let decoded = protocol::decode_produce_many_view(input, wire, kept_max, &mut views);
        let result = match decoded {
            Ok(Some(frame)) => {
                let op = (frame.op_id, frame.expect);
                let handled = self.on_produce_many(now, conn, op, &views, frame.count, units_max);
                let charged = std::mem::take(&mut self.frame_units_charged);
                if handled {
                    let units = frame.count.max(1);
                    Ok(Some((Some(frame.length), units.saturating_add(charged))))
                } else {
                    Ok(Some((None, charged)))
                }
            }
            other => other.map(|_| None),
        };
        // Kept for the next frame: at most `batch_events_max` views were pushed, so the vector
        // grew (by doubling) to at most twice the limit, whatever the frame held.
        self.batch_views = produce::recycle_views(views);
        self.restore_buffered_input(conn, buffered);
        result
    }

    /// The connection's input buffer, moved out while a produce borrows it (`Buffered`); an
    /// empty `Vec`, which costs nothing, for input decoded where it was received (`Fresh`).
    fn take_buffered_input(&mut self, conn: ConnId, at: InputAt) -> Vec<u8> {
        match at {
            // The caller found the connection open.
            InputAt::Buffered => std::mem::take(&mut self.conn_mut(conn).expect("open").input),
            InputAt::Fresh(_) => Vec::new(),
        }
    }

    /// Puts back what `take_buffered_input` took, unless the produce closed the connection
    /// (over its memory limit): a closing connection's input is never decoded again.
    fn restore_buffered_input(&mut self, conn: ConnId, buffered: Vec<u8>) {
        if buffered.capacity() == 0 || !self.is_open(conn) {
            return;
        }
        // Checked just above.
        self.conn_mut(conn).expect("connection is open").input = buffered;
    }

    /// True when the frame at the front of `input` announces a length the decoder accepts
    /// under `frame_size_max` (not 0, not over it), so the next check is its kind.
    fn length_within(input: &[u8], frame_size_max: u32) -> bool {
        let Some(length) = input.get(..4) else {
            return false;
        };
        // Four bytes, checked just above.
        let length = u32::from_be_bytes(length.try_into().expect("four bytes"));
        length != 0 && length <= frame_size_max.saturating_sub(4)
    }

    /// True when this node takes a PeerHello: it was configured for clustering (the same
    /// rule as `on_peer_hello`).
    pub(super) fn accepts_peer_hello(&self) -> bool {
        self.config.accepts_peers || !self.config.cluster.peer_addrs.is_empty()
    }

    /// The limits a frame is decoded with. Only the frame size limit applies, so that an
    /// event whose namespace or data is over its limit (but inside a legal frame) gets an
    /// error with its op id and the connection stays open; `validate` applies the real limits.
    /// Before the handshake the frame size limit is the small one of a Hello (or a PeerHello).
    fn decode_limits(&self, phase: &Phase, kind: Option<u8>) -> WireLimits {
        // A server that accepts no peers refuses PeerHello, so it never allows one's size.
        let frame_size_max = match (phase, kind) {
            (Phase::AwaitingHello { .. }, Some(kind::PEER_HELLO) | None)
                if self.accepts_peer_hello() =>
            {
                self.config.peer_hello_frame_size_max
            }
            (Phase::AwaitingHello { .. }, Some(_)) => self.config.hello_frame_size_max,
            // Until both proofs are checked, a peer's frames are held to the handshake limit:
            // an unauthenticated one must not make this node buffer a full-size frame.
            (
                Phase::PeerAwaitingWelcome { .. }
                | Phase::PeerAwaitingAccept { .. }
                | Phase::PeerAwaitingProof { .. },
                _,
            ) => self.config.peer_hello_frame_size_max,
            _ => self.config.wire.frame_size_max,
        };
        WireLimits {
            frame_size_max,
            namespace_length_max: u32::from(u16::MAX),
            event_data_size_max: self.config.wire.frame_size_max,
            ..self.config.wire
        }
    }

    /// Closes the connection if it holds more than its limits allow: unsent output over
    /// `output_bytes_hard_max`, or everything together over `connection_memory_max`.
    pub(super) fn check_memory(&mut self, conn: ConnId) {
        self.recount_memory(conn);
        let Some(connection) = self.conn(conn) else {
            return;
        };
        if matches!(connection.phase, Phase::Closing { .. }) {
            return;
        }
        let output = connection.output_len();
        let message = if output > self.config.output_bytes_hard_max {
            format!(
                "{output} bytes of replies are unread, over the limit of {} bytes",
                self.config.output_bytes_hard_max
            )
        } else {
            let memory = connection.memory_bytes();
            if memory <= self.config.connection_memory_max {
                return;
            }
            format!(
                "the connection holds {memory} bytes, over its limit of {} bytes",
                self.config.connection_memory_max
            )
        };
        log::warn!("{conn}: closing: {message}");
        self.close_with_error(conn, ErrorCode::ResourceLimit, &message);
    }

    /// The connection's socket closed or failed. Forgets it, and with it its subscriptions.
    pub fn handle_closed(&mut self, conn: ConnId) {
        if let Some(connection) = self.take_connection(conn) {
            // A closing connection was already accounted for by `close_with_error`.
            let vector = connection.stream_vector();
            self.peer_connection_gone(conn, connection.phase, vector);
        }
        self.debug_check_invariants();
    }

    /// Removes a connection from the table.
    fn take_connection(&mut self, conn: ConnId) -> Option<Connection> {
        if let Phase::Client(client) = &self.conn(conn)?.phase {
            let slot = client.producer;
            self.release_producer(conn, slot);
        }
        self.unfile_subscriptions(conn);
        self.groups_connection_gone(conn);
        self.connection_count -= 1;
        let connection = self.conns[conn.slot as usize].take();
        if let Some(connection) = &connection {
            self.connections_memory -= connection.memory_counted;
        }
        self.forget_memory_waiting(conn);
        connection
    }

    /// Forgets a connection the other side is closing, and asks the reactor to close it.
    fn forget(&mut self, conn: ConnId) {
        if let Some(mut connection) = self.take_connection(conn) {
            self.closing.push_back(Action::Close {
                conn,
                final_output: connection.take_output(),
            });
            let vector = connection.stream_vector();
            self.peer_connection_gone(conn, connection.phase, vector);
        }
    }

    fn observe_time(&mut self, now: Now) {
        self.now_ms = self.now_ms.max(now.monotonic.0);
    }

    /// Bytes pending for a connection.
    pub fn output(&self, conn: ConnId) -> &[u8] {
        match self.conn(conn) {
            Some(connection) => connection.output_pending(),
            None => &[],
        }
    }

    /// The reactor wrote `count` bytes of `output(conn)`.
    pub fn handle_sent(&mut self, conn: ConnId, count: usize) {
        let high_water = self.config.send_buffer_high_water;
        let Some(connection) = self
            .conns
            .get_mut(conn.slot as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        if connection.id != conn {
            return;
        }
        let was_above = connection.output_len() >= high_water;
        connection.consume_output(count);
        self.metrics.on_sent(count);
        let memory = connection.memory_bytes();
        let counted = std::mem::replace(&mut connection.memory_counted, memory);
        self.connections_memory = self.connections_memory - counted + memory;
        if connection.input_paused && connection.output_owed() < high_water / 2 {
            connection.input_paused = false;
            self.input_resumed.push(conn);
        }
        if was_above && connection.output_len() < high_water {
            let ids: Vec<u32> = connection.subscriptions.keys().copied().collect();
            for id in ids {
                self.mark_ready(conn, id);
            }
        }
        self.debug_check_invariants();
    }

    /// Input the frame budget deferred, decoded with what is left of this turn's budget (the
    /// reactor decodes it first, in its read order; this serves the rest, and drivers that do
    /// not share the budget out).
    fn decode_deferred(&mut self, now: Now) {
        let mut queue = std::mem::take(&mut self.input_deferred_queue);
        queue.sort_unstable();
        queue.dedup();
        for conn in queue {
            if !self.input_deferred(conn) || !self.wants_input(conn) {
                continue;
            }
            if self.turn_frames_left > 0 {
                self.decode_input(now, conn, &[], usize::MAX);
            }
            if self.input_deferred(conn) {
                self.input_deferred_queue.push(conn);
            }
        }
    }

    /// The first part of a turn's end, the group commit, on its own so that the reactor can
    /// time it (the fsync latency): input left undecoded while the output was full joins the
    /// turn, then one `Log::sync`. `handle_turn_end` must follow; it does this part itself when
    /// the reactor did not.
    pub fn handle_turn_sync(&mut self, now: Now) {
        self.observe_time(now);
        if self.turn_synced.is_some() {
            return;
        }
        for conn in std::mem::take(&mut self.input_resumed) {
            if self.is_open(conn) && self.wants_input(conn) {
                self.decode_input(now, conn, &[], usize::MAX);
            }
        }
        self.decode_deferred(now);
        let durable_before = self.log.durable_end();
        let result = self.log.sync(now.monotonic);
        self.commit_purges();
        let failure = match (self.turn_failure.take(), result) {
            (Some(message), _) => Some(message),
            (None, Ok(durable)) => {
                if durable > durable_before {
                    self.storage_failures.succeeded();
                }
                None
            }
            (None, Err(error)) => {
                self.storage_failures.failed(
                    self.now_ms,
                    "could not make appended events durable",
                    &error,
                );
                Some(format!("the events were not stored: {error}"))
            }
        };
        self.metrics.on_turn_synced(failure.is_none());
        self.turn_synced = Some(TurnSync {
            durable_before,
            failure,
        });
    }

    /// The end of a reactor turn: group commit, then acknowledgements, then consumers.
    pub fn handle_turn_end(&mut self, now: Now) {
        self.handle_turn_sync(now);
        // Set by `handle_turn_sync` just above (or earlier in the turn).
        let TurnSync {
            durable_before,
            failure,
        } = self.turn_synced.take().expect("the turn was synced");
        if failure.is_some() {
            self.stats.sync_failures += 1;
            self.forget_discarded_offsets();
        }
        self.streams_after_sync(failure.is_some());
        self.release_replies(failure.as_deref());
        self.after_sync_peers(failure.is_some());
        if self.commit_clocks(failure.is_some()) {
            self.wake_ordered();
        }
        self.release_replicated();
        if self.log.durable_end() > durable_before {
            self.wake_tailing_consumers(durable_before);
        }
        self.turn_namespaces.clear();
        self.resume_memory_waiting();
        self.feed_consumers();
        self.send_clocks(false);
        let mut group_budget = groups::GroupBudget {
            records: self.config.records_per_turn_max,
            match_steps: self.config.match_steps_per_turn_max,
        };
        self.groups_turn_end(now, &mut group_budget);
        self.lookups_turn_end();
        self.update_hold(now);
        self.dial_due(now);
        let housekeeping_due = now.monotonic.0 >= self.next_housekeeping_ms;
        if housekeeping_due || now.monotonic.0 >= self.next_timeout_check_ms {
            self.check_timeouts(now);
        }
        if housekeeping_due {
            self.next_housekeeping_ms = now.monotonic.0 + self.config.housekeeping_interval_ms;
            self.housekeeping(now);
        }
        self.enforce_connections_memory();
        self.finish_closes();
        self.metrics.on_turn_decoded();
        self.turn_frames_left = self.config.frames_per_turn_total_max;
        self.debug_check_invariants();
    }

    /// The next output for the reactor, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.closing.pop_front() {
            return Some(action);
        }
        while let Some(conn) = self.reply_queue.pop_front() {
            if let Some(connection) = self.conn_mut(conn) {
                connection.has_reply_queued = false;
                if connection.output_len() > 0 {
                    return Some(Action::Send(conn));
                }
            }
        }
        while let Some(conn) = self.output_queue.pop_front() {
            if let Some(connection) = self.conn_mut(conn) {
                connection.has_output_queued = false;
                if connection.output_len() > 0 {
                    return Some(Action::Send(conn));
                }
            }
        }
        None
    }

    /// A turn summary: whether events went to group members since the last call. A member
    /// answers a delivery with its ack within microseconds, and the reactor polls briefly
    /// after such a turn so that the ack finds it awake (`reactor/spin.rs`); a turn that only
    /// wrote replies (producer acks, Pongs, lookups) or plain subscriptions' events, which are
    /// answered at most by a Credit every half window, brings no such answer, and polling
    /// after it only costs CPU (BENCHMARKS.md, issue 12, run U and left18's run).
    pub fn take_member_deliveries(&mut self) -> bool {
        let deliveries = self.groups.deliveries;
        let delivered = deliveries != self.member_deliveries_seen;
        self.member_deliveries_seen = deliveries;
        delivered
    }

    /// True when consumers can make progress without new input, so the reactor must not
    /// block waiting for readiness.
    pub fn has_pending_work(&self) -> bool {
        !self.ready.is_empty()
            || !self.input_resumed.is_empty()
            || !self.input_deferred_queue.is_empty()
            || self.groups_have_work()
            || self.has_lookups()
    }

    /// When the engine next wants `handle_turn_end` even if nothing happens (time-outs,
    /// retention, the fsync interval), in monotonic milliseconds.
    pub fn next_deadline_ms(&self) -> u64 {
        let housekeeping_ms = self.next_housekeeping_ms.min(self.next_timeout_check_ms);
        let deadline_ms = match self.next_dial_ms() {
            Some(dial_ms) => dial_ms.min(housekeeping_ms),
            None => housekeeping_ms,
        };
        let deadline_ms = match self.next_group_deadline_ms() {
            Some(group_ms) => group_ms.min(deadline_ms),
            None => deadline_ms,
        };
        match self.next_replication_deadline_ms() {
            Some(replication_ms) => replication_ms.min(deadline_ms),
            None => deadline_ms,
        }
    }

    /// The server is shutting down: makes everything durable, releases the last acks, and
    /// closes every connection with a ShuttingDown error after its pending output.
    pub fn handle_shutdown(&mut self, now: Now) {
        self.handle_turn_end(now);
        let open: Vec<ConnId> = self.conns.iter().flatten().map(|c| c.id).collect();
        for conn in open {
            self.close_with_error(conn, ErrorCode::ShuttingDown, "the server is shutting down");
        }
        self.finish_closes();
        self.debug_check_invariants();
    }

    /// After a failed append or sync the log discarded the turn's records and will reuse their
    /// offsets; a subscription that started at the old end must not skip the reused ones.
    fn forget_discarded_offsets(&mut self) {
        let end = self.log.end();
        let clock = self.tail.clock();
        for connection in self.conns.iter_mut().flatten() {
            for subscription in connection.subscriptions.values_mut() {
                let position = &mut subscription.position;
                position.set_next(position.next(clock).min(end), clock);
            }
        }
    }

    /// Takes the connection's subscriptions out of the tail index (they are about to go).
    fn unfile_subscriptions(&mut self, conn: ConnId) {
        let connection = match self.conns.get(conn.slot as usize) {
            Some(Some(connection)) if connection.id == conn => connection,
            _ => return,
        };
        for (id, subscription) in &connection.subscriptions {
            self.tail.remove((conn, *id), subscription.glob.as_str());
        }
    }

    /// The checks of the housekeeping interval (the time-outs are checked just before, by
    /// `check_timeouts`).
    fn housekeeping(&mut self, now: Now) {
        self.peer_keepalives();
        self.end_stalled_ordered(now.monotonic.0);
        self.compact_produced();
        match self.log.apply_retention(now.wall) {
            Ok(0) => {}
            Ok(deleted) => {
                log::info!("retention deleted {deleted} events");
                // A namespace whose events retention deleted has none now.
                self.last_ids.clear();
                self.warn_peer_retention_gaps();
            }
            Err(error) => log::error!("retention failed: {error}"),
        }
    }

    /// Handles one decoded frame. Returns false when the connection was closed.
    fn on_frame(&mut self, now: Now, conn: ConnId, frame: Inbound) -> bool {
        match frame {
            Inbound::Opening(OpeningFrame::Hello(hello)) => self.on_hello(conn, hello),
            Inbound::Opening(OpeningFrame::PeerHello(hello)) => self.on_peer_hello(conn, hello),
            Inbound::Client(frame) => self.on_client_frame(now, conn, frame),
            Inbound::Peer(frame) => self.on_peer_frame(conn, frame),
        }
    }

    /// A frame on a client connection after its Hello. Returns false when the connection was
    /// closed.
    fn on_client_frame(&mut self, now: Now, conn: ConnId, frame: ClientFrame) -> bool {
        match frame {
            ClientFrame::Produce(produce) => {
                self.on_produce(now, conn, produce.op_id, produce.event.view())
            }
            ClientFrame::ProduceBatch(batch) => self.on_produce_batch(now, conn, batch),
            ClientFrame::Subscribe(subscribe) => self.on_subscribe(conn, subscribe),
            ClientFrame::Credit {
                subscription_id,
                count,
            } => self.on_credit(conn, subscription_id, count),
            ClientFrame::Unsubscribe { subscription_id } => {
                self.on_unsubscribe(conn, subscription_id)
            }
            ClientFrame::Ping { token } => self.send(conn, &ServerFrame::Pong { token }),
            ClientFrame::InfoRequest => match self.check_admin(conn, "ask for the server info") {
                Ok(()) => self.on_info_request(conn),
                Err(message) => {
                    let code = ErrorCode::PermissionDenied;
                    self.send_error(conn, ErrorScope::Connection, code, &message)
                }
            },
            ClientFrame::MembersRequest => match self.check_admin(conn, "list the members") {
                Ok(()) => self.on_members_request(conn),
                Err(message) => {
                    let code = ErrorCode::PermissionDenied;
                    self.send_error(conn, ErrorScope::Connection, code, &message)
                }
            },
            ClientFrame::ChangeMember(change) => {
                match self.check_admin(conn, "add or remove members") {
                    Ok(()) => self.on_change_member(conn, change),
                    Err(message) => {
                        let code = ErrorCode::PermissionDenied;
                        self.send_error(conn, ErrorScope::Connection, code, &message)
                    }
                }
            }
            ClientFrame::StatusRequest { hold } => {
                match self.check_admin(conn, "ask for the status") {
                    Ok(()) => self.on_status_request(conn, hold),
                    Err(message) => {
                        let code = ErrorCode::PermissionDenied;
                        self.send_error(conn, ErrorScope::Connection, code, &message)
                    }
                }
            }
            ClientFrame::JoinGroup(join) => self.on_join_group(conn, join),
            ClientFrame::GroupAck(ack) => self.on_group_ack(conn, ack, false),
            ClientFrame::GroupNack(nack) => self.on_group_ack(conn, nack, true),
            ClientFrame::LeaveGroup { subscription_id } => {
                self.on_leave_group(conn, subscription_id)
            }
            ClientFrame::SetReplicas { replicas } => self.on_set_replicas(conn, replicas),
            ClientFrame::GroupsRequest(request) => self.on_groups_request(conn, request),
            ClientFrame::ParkedRequest(request) => self.on_parked_request(conn, request),
            ClientFrame::GroupAdmin(admin) => self.on_group_admin(conn, admin),
            ClientFrame::GroupsDetailRequest(request) => {
                self.on_groups_detail_request(conn, request)
            }
            ClientFrame::GroupAckRange(range) => self.on_group_ack_range(conn, range),
            ClientFrame::GroupProgress(progress) => self.on_group_progress(conn, progress),
            ClientFrame::NamespacesRequest(request) => self.on_namespaces_request(conn, request),
            ClientFrame::TraceRequest { id } => self.on_trace_request(conn, id),
            ClientFrame::ProduceIf(produce) => self.on_produce_if(now, conn, produce),
            ClientFrame::SetProducer {
                producer_id,
                next_sequence,
            } => self.on_set_producer(conn, producer_id, next_sequence),
            ClientFrame::Purge(rule) => self.on_purge(now, conn, rule),
            ClientFrame::PurgesRequest => self.on_purges_request(conn),
            ClientFrame::Hello(_) => {
                return self.close_with_error(
                    conn,
                    ErrorCode::UnexpectedFrame,
                    "Hello was already received",
                )
            }
        }
        true
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello) -> bool {
        if hello.protocol_version != PROTOCOL_VERSION {
            let message = format!(
                "protocol version {} is not supported; this server speaks version {}",
                hello.protocol_version, PROTOCOL_VERSION
            );
            return self.close_with_error(conn, ErrorCode::UnsupportedVersion, &message);
        }
        let principal = match self.authenticate(conn, &hello.auth_token) {
            Ok(principal) => principal,
            Err(message) => return self.close_with_error(conn, ErrorCode::AuthFailed, &message),
        };
        log::debug!("{conn}: hello from {:?}", hello.client_name);
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_version: self.config.server_version.clone(),
            actor_id: self.config.actor_id.0,
            frame_size_max: self.config.wire.frame_size_max,
            namespace_length_max: self.config.wire.namespace_length_max,
            event_data_size_max: self.config.wire.event_data_size_max,
            subscriptions_max: self.config.subscriptions_per_connection_max,
            idle_timeout_ms: millis(self.config.idle_timeout).min(u32::MAX as u64) as u32,
        };
        // Checked by the caller: the connection is open.
        let client = ClientConn {
            principal,
            replicas: 0,
            producer: None,
        };
        self.conn_mut(conn).expect("connection is open").phase = Phase::Client(client);
        self.send(conn, &ServerFrame::Welcome(welcome));
        true
    }

    /// Queues an error frame and the close of the connection. Returns false (the connection
    /// is gone) so callers can `return self.close_with_error(..)`.
    fn close_with_error(&mut self, conn: ConnId, code: ErrorCode, message: &str) -> bool {
        let Some(connection) = self.conn_mut(conn) else {
            return false;
        };
        if let Phase::Closing { .. } = connection.phase {
            return false;
        }
        log::debug!("{conn}: closing with {code}: {message}");
        let closing = Phase::Closing {
            code,
            message: message.to_string(),
        };
        let phase = std::mem::replace(&mut connection.phase, closing);
        let vector = connection.stream_vector();
        if let Phase::Client(client) = &phase {
            self.release_producer(conn, client.producer);
        }
        self.unfile_subscriptions(conn);
        // Checked above: the connection is open.
        let connection = self.conn_mut(conn).expect("connection is open");
        connection.subscriptions.clear();
        // Its input is never decoded again; only its owed output is kept. Nor is it waiting
        // for a frame budget: `decode_deferred` must not decode it later this turn.
        connection.input = Vec::new();
        connection.input_deferred = false;
        self.recount_memory(conn);
        self.forget_memory_waiting(conn);
        self.closing_conns.push(conn);
        self.groups_connection_gone(conn);
        self.peer_connection_gone(conn, phase, vector);
        false
    }

    /// Closes the connections that `close_with_error` marked, after the replies they are owed:
    /// queues the error frame behind everything else and hands the output to the reactor.
    fn finish_closes(&mut self) {
        for conn in std::mem::take(&mut self.closing_conns) {
            let Some(mut connection) = self.conns[conn.slot as usize].take_if(|c| c.id == conn)
            else {
                continue;
            };
            self.connection_count -= 1;
            self.connections_memory -= connection.memory_counted;
            let Phase::Closing { code, message } = &mut connection.phase else {
                unreachable!("{conn} was queued for closing without the Closing phase");
            };
            let (code, message) = (*code, std::mem::take(message));
            encode_error(
                ErrorScope::Connection,
                code,
                &message,
                connection.output_buffer(),
            );
            self.closing.push_back(Action::Close {
                conn,
                final_output: connection.take_output(),
            });
        }
    }

    fn send<F: Encode>(&mut self, conn: ConnId, frame: &F) {
        if let Some(connection) = self.conn_mut(conn) {
            encode(frame, connection.output_buffer());
            self.queue_output(conn);
        }
    }

    fn send_error(&mut self, conn: ConnId, scope: ErrorScope, code: ErrorCode, message: &str) {
        if let Some(connection) = self.conn_mut(conn) {
            encode_error(scope, code, message, connection.output_buffer());
            self.queue_output(conn);
        }
    }

    /// Queues a connection whose output holds a released produce reply: `poll_action` hands
    /// these out before anything else, so a turn's acks are written before what feeding queued.
    /// The caller recounts the connection's memory (`send_reply`, or `release_replies` once
    /// for all its replies).
    fn queue_reply(&mut self, conn: ConnId) {
        if let Some(connection) = self.conn_mut(conn) {
            if !connection.has_reply_queued {
                connection.has_reply_queued = true;
                self.reply_queue.push_back(conn);
            }
        }
    }

    fn queue_output(&mut self, conn: ConnId) {
        if let Some(connection) = self.conn_mut(conn) {
            if !connection.has_output_queued {
                connection.has_output_queued = true;
                self.output_queue.push_back(conn);
            }
        }
        self.recount_memory(conn);
    }

    /// Brings `connections_memory` up to date with what one connection holds now. Called
    /// wherever a connection's buffers, held replies or subscriptions change.
    pub(super) fn recount_memory(&mut self, conn: ConnId) {
        let Some(connection) = self.conn_mut(conn) else {
            return;
        };
        let memory = connection.memory_bytes();
        let counted = std::mem::replace(&mut connection.memory_counted, memory);
        self.connections_memory = self.connections_memory - counted + memory;
    }

    /// What all connections hold together (see `Config::connections_memory_max`).
    pub fn connections_memory(&self) -> usize {
        self.connections_memory
    }

    /// While all connections together hold more than `connections_memory_max` (input and
    /// partial frames, replies that are never held back), closes the client connections that
    /// hold the most, largest first, until what the others hold is under it. Costs nothing
    /// while under the limit; a scan and a sort of the connections only when over it. Peer
    /// connections are not chosen (their memory has its own bounds, and closing them stops
    /// replication), as Redis never evicts its replicas.
    fn enforce_connections_memory(&mut self) {
        let limit = self.config.connections_memory_max;
        if self.connections_memory <= limit {
            return;
        }
        // Closing connections give their memory back at the end of the turn.
        let closing: usize = (self.closing_conns.iter())
            .filter_map(|conn| self.conn(*conn))
            .map(|connection| connection.memory_counted)
            .sum();
        let mut over = (self.connections_memory - closing).saturating_sub(limit);
        if over == 0 {
            return;
        }
        let mut candidates: Vec<(usize, ConnId)> = (self.conns.iter().flatten())
            .filter(|c| {
                matches!(
                    c.phase,
                    Phase::AwaitingHello { .. }
                        | Phase::Client(_)
                        | Phase::PeerAwaitingProof { .. }
                )
            })
            .map(|c| (c.memory_counted, c.id))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for (memory, conn) in candidates {
            if over == 0 {
                break;
            }
            let message = format!(
                "the server's connections hold {} bytes, over the limit of {limit} bytes for all connections, and this connection holds the most ({memory} bytes)",
                self.connections_memory
            );
            log::warn!("{conn}: closing: {message}");
            self.close_with_error(conn, ErrorCode::ResourceLimit, &message);
            over = over.saturating_sub(memory);
        }
    }

    /// Forgets the connection's subscriptions that waited for connection memory.
    fn forget_memory_waiting(&mut self, conn: ConnId) {
        let first = (conn, 0);
        let last = (conn, u32::MAX);
        let gone: Vec<(ConnId, u32)> = (self.memory_waiting.range(first..=last))
            .map(|(key, _)| *key)
            .collect();
        for key in gone {
            self.memory_waiting.remove(&key);
        }
    }

    /// Queues again the subscriptions that waited for connection memory whose events now fit
    /// in what is free, as many as fit together (in the order of their ids), so a large event
    /// that still does not fit is not read again and again. A scan of the waiting, never a
    /// read of the log.
    fn resume_memory_waiting(&mut self) {
        let limit = self.config.connections_memory_max;
        let mut room = limit.saturating_sub(self.connections_memory);
        if self.memory_waiting.is_empty() || room == 0 {
            return;
        }
        let mut resumed = Vec::new();
        for (key, needed) in &self.memory_waiting {
            if *needed <= room {
                room -= needed;
                resumed.push(*key);
            }
        }
        for (conn, id) in resumed {
            self.memory_waiting.remove(&(conn, id));
            self.mark_ready(conn, id);
        }
    }

    /// Holds a produce's reply until the turn's sync, counting it in its connection's output.
    fn hold_reply(&mut self, reply: PendingReply) {
        let size = reply.encoded_size();
        let conn = reply.conn();
        if let Some(connection) = self.conn_mut(conn) {
            connection.held_reply_bytes += size;
        }
        self.pending_replies.push(reply);
        self.recount_memory(conn);
    }

    fn conn(&self, conn: ConnId) -> Option<&Connection> {
        match self.conns.get(conn.slot as usize) {
            Some(Some(connection)) if connection.id == conn => Some(connection),
            _ => None,
        }
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        match self.conns.get_mut(conn.slot as usize) {
            Some(Some(connection)) if connection.id == conn => Some(connection),
            _ => None,
        }
    }

    fn subscription_mut(&mut self, conn: ConnId, id: u32) -> Option<&mut Subscription> {
        self.conn_mut(conn)?
            .subscriptions
            .get_mut(&id)
            .map(|s| &mut **s)
    }

    fn release_replies(&mut self, failure: Option<&str>) {
        // Both buffers are the engine's, lent for the turn and given back empty, so their
        // allocations serve the next turns.
        let mut replies = std::mem::take(&mut self.pending_replies);
        let mut conns = std::mem::take(&mut self.replied_conns);
        conns.extend(replies.iter().map(PendingReply::conn));
        conns.dedup();
        for &conn in &conns {
            if let Some(connection) = self.conn_mut(conn) {
                connection.held_reply_bytes = 0;
            }
        }
        for reply in replies.drain(..) {
            let reply = match (reply, failure) {
                (PendingReply::Ack { conn, op_id, .. }, Some(message)) => PendingReply::Error {
                    conn,
                    op_id,
                    code: ErrorCode::StorageFailure,
                    message: message.to_string(),
                },
                (reply, _) => reply,
            };
            if self.must_wait(&reply) {
                self.wait_for_replicas(reply);
            } else {
                // Recounted below, once a connection.
                self.send_reply_uncounted(reply);
            }
        }
        // Every connection replied to (and only those: `conns` holds each reply's) has its
        // memory recounted and checked here.
        for &conn in &conns {
            self.check_memory(conn);
        }
        conns.clear();
        self.replied_conns = conns;
        // Replies held while these were released (none today) stay ahead of the buffer's.
        replies.append(&mut self.pending_replies);
        self.pending_replies = replies;
    }
}

#[cfg(test)]
mod tests;
