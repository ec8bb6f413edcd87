//! Per-connection state: the handshake phase, the input and output buffers and the
//! subscriptions. The engine decides; this file only keeps the state tidy.

use std::collections::BTreeMap;

use std::net::SocketAddr;

use std::sync::Arc;

use super::tail_index::ReadPosition;
use crate::auth_file::Principal;
use crate::event::{ActorId, Cursor};
use crate::protocol::{ChannelBinding, ErrorCode, NamespaceGlob, PeerNonce, PeerTranscript};
use crate::storage::LastScan;

/// Identifies a connection. `slot` is reused after a connection closes; `generation` tells a
/// stale id (of a closed connection) from the live one in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn {}.{}", self.slot, self.generation)
    }
}

/// Where a connection is in its life (protocol.md, "Connection states"), with the data of its
/// role: a client's principal and replicas exist only on a client connection, a peer's
/// counters only on a peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; only Hello is allowed, before `deadline_ms`.
    AwaitingHello { deadline_ms: u64 },
    /// Handshake done: a client connection.
    Client(ClientConn),
    /// An outbound peer connection: PeerHello with `nonce` sent, waiting for PeerWelcome
    /// before `deadline_ms`. `addr` is the address dialed.
    PeerAwaitingWelcome {
        addr: SocketAddr,
        deadline_ms: u64,
        nonce: PeerNonce,
    },
    /// An outbound peer connection: PeerProof sent, waiting for PeerAccept (the acceptor's
    /// proof) before `deadline_ms`.
    PeerAwaitingAccept {
        addr: SocketAddr,
        pending: PendingPeer,
        deadline_ms: u64,
    },
    /// An inbound peer connection: PeerWelcome sent, waiting for PeerProof (the dialer's
    /// proof) before `deadline_ms`. Not authenticated yet.
    PeerAwaitingProof {
        pending: PendingPeer,
        deadline_ms: u64,
    },
    /// A peer connection after a successful handshake.
    Peer(PeerConn),
    /// The engine decided to close the connection with this error. Its input is ignored; it
    /// is closed at the end of the turn, after the replies it is owed (acks of produces it
    /// sent before the bad frame) are queued ahead of the error.
    Closing { code: ErrorCode, message: String },
}

impl Phase {
    /// True for a peer connection, in its handshake or established.
    pub fn is_peer(&self) -> bool {
        match self {
            Phase::PeerAwaitingWelcome { .. }
            | Phase::PeerAwaitingAccept { .. }
            | Phase::PeerAwaitingProof { .. }
            | Phase::Peer(_) => true,
            Phase::AwaitingHello { .. } | Phase::Client(_) | Phase::Closing { .. } => false,
        }
    }
}

/// What only a client connection has, from its Hello on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConn {
    /// Whose token the Hello carried, when the server has an auth table (`None` on a server
    /// without one).
    pub principal: Option<Arc<Principal>>,
    /// Replicas asked for by SetReplicas (0: the server's `min_replicas`).
    pub replicas: u8,
    /// The idempotent producer this connection speaks for (SetProducer), if any.
    pub producer: Option<super::streams::ProducerSlot>,
}

/// What only an established peer connection has: the peer `actor`; `dialed_by` is the actor
/// that opened it (which of two duplicate connections survives depends on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConn {
    pub actor: ActorId,
    pub dialed_by: ActorId,
    /// PeerEvent frames the other side may still send us (credit we gave).
    pub credit_given: u64,
    /// PeerEvent frames received this turn, whose credit is given back once the turn's
    /// sync made them durable.
    pub events_this_turn: u32,
    /// The counter of each PeerEvent sent and not yet credited back, this node's own counter
    /// or 0 for another actor's event (at most `replicas::REPLICATION_IN_FLIGHT_MAX`).
    pub replication_sent: std::collections::VecDeque<u64>,
    /// The highest of this node's own counters its replication stream has passed (sent, or
    /// skipped because the peer holds it): every own event up to it is at the peer or on
    /// the wire before anything sent later (what PeerClock promises).
    pub own_passed: u64,
    /// The count of the first PeerCredit the peer granted (its window), once it came: it may
    /// never have more credit out than this (`replication::on_peer_credit`).
    pub credit_window_received: Option<u64>,
    /// The largest PeerClock the peer promised on this connection: an event of its own at or
    /// below it breaks the promise (`replication::on_peer_event`).
    pub clock_promised: u64,
}

impl PeerConn {
    /// A peer connection just established, with `credit_given` granted to the other side.
    pub fn new(actor: ActorId, dialed_by: ActorId, credit_given: u64) -> PeerConn {
        PeerConn {
            actor,
            dialed_by,
            credit_given,
            events_this_turn: 0,
            replication_sent: std::collections::VecDeque::new(),
            own_passed: 0,
            credit_window_received: None,
            clock_promised: 0,
        }
    }
}

/// A peer in the middle of the handshake: who it says it is, and what both proofs are over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPeer {
    /// The actor id its PeerHello or PeerWelcome named (not proven until its proof checks).
    pub actor: ActorId,
    /// The address it advertised, already checked to be an IP address and port.
    pub advertised_addr: SocketAddr,
    pub transcript: PeerTranscript,
}

/// What a subscription is, and what it does when it reaches the end of the durable log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// A client subscription without tail: it ends (End, EndOfStream) there.
    Bounded,
    /// A tailing client subscription: it sends CaughtUp the first time it gets there, then
    /// waits for new events.
    Tail { caught_up_sent: bool },
    /// A peer's replication stream: it always tails, events go out as PeerEvent frames, the
    /// filter grows with every event the peer is known to hold, and there is no CaughtUp.
    Replication,
}

/// One open subscription: a cursor into the log plus credit, never a copy of events.
#[derive(Debug)]
pub struct Subscription {
    pub id: u32,
    pub glob: NamespaceGlob,
    /// Events the cursor covers are skipped (start positions "after id" and "cursor").
    pub filter: Cursor,
    /// The next log record to look at, and whether the subscription is in the engine's
    /// ready queue (read through the engine's `TailClock`: see `tail_index`).
    pub position: ReadPosition,
    /// Events still allowed by the limit; `None` means no limit.
    pub remaining: Option<u64>,
    pub credit: u64,
    /// What the subscription is and does at the end of the log.
    pub stream: Stream,
    /// The client asked to skip damaged ranges of the log (Subscribe flags bit 1): a read
    /// that meets one sends Skipped and goes on after it instead of ending the subscription.
    pub skip_damaged: bool,
    /// Id order: the events read and not yet delivered (`None`: arrival order).
    pub order: Option<Box<super::order::OrderBuffer>>,
    /// The namespace index found the subscription's namespace in most records it looked at:
    /// it reads by scanning until a scan finds the matches sparse again (see
    /// `consume::DENSE_SHARE`).
    pub scan_dense: bool,
}

/// The engine's view of one connection.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnId,
    pub phase: Phase,
    /// Bytes received and not yet decoded (at most one partial frame after decoding). Whole
    /// frames are decoded from the bytes received, without coming here, unless a pause or
    /// the frame budget holds them up (`Engine::decode_input`).
    pub input: Vec<u8>,
    /// Bytes to send; `output_sent` bytes at its front are already sent.
    output: Vec<u8>,
    output_sent: usize,
    /// Boxed: a B-tree node holds 11 entries, so an unboxed `Subscription` (hundreds of bytes)
    /// made one subscription cost a whole node of 11 (about 6 KB of RSS per subscribed
    /// connection with 10,000 connections, BENCHMARKS.md issue 13 session 10).
    pub subscriptions: BTreeMap<u32, Box<Subscription>>,
    pub last_input_ms: u64,
    /// True while the connection is in the engine's list of connections with output.
    pub has_output_queued: bool,
    /// True while the connection is in the engine's list of connections with released
    /// replies, which the reactor is told about before any other output.
    pub has_reply_queued: bool,
    /// True while the engine does not decode this connection's input (its output is above the
    /// high-water mark): undecoded bytes stay in `input` and the reactor stops reading.
    pub input_paused: bool,
    /// True while whole frames wait in `input` because the turn's frame budget
    /// (`frames_per_turn_total_max`, shared by the reactor) ran out: the reactor reads no
    /// more bytes from the socket until they are decoded, so `input` holds at most one read.
    pub input_deferred: bool,
    /// The encoded size of the replies held for this turn's sync (acks and produce errors).
    pub held_reply_bytes: usize,
    /// When the first byte of the frame now partly in `input` arrived; `None` when `input`
    /// holds no partial frame or the input is paused.
    pub frame_started_ms: Option<u64>,
    /// When the engine paused this connection's input; `None` while it is not paused. The
    /// time paused is added to the frame's deadline on resume, never taken off it.
    pub paused_at_ms: Option<u64>,
    /// `memory_bytes()` as last counted into the engine's total of connection memory
    /// (`Engine::recount_memory` keeps them equal).
    pub memory_counted: usize,
    /// The client's address, for the log line of a refused handshake (the reactor tells it).
    pub peer_addr: Option<SocketAddr>,
    /// The TLS channel binding of the connection's session, when it runs over TLS (the reactor
    /// tells it before the first input): a peer handshake's proofs are bound to it.
    pub channel_binding: Option<ChannelBinding>,
    /// Replies after the sync that wait for replicas (or behind one that does), in produce
    /// order; their encoded size is `waiting_reply_bytes`, counted as output owed. Only client
    /// connections produce, but these outlive the client phase: a connection closing with an
    /// error still gets the replies it is owed first, so they belong to the connection.
    pub(in crate::engine) waiting_replies:
        std::collections::VecDeque<super::replicas::WaitingReply>,
    pub waiting_reply_bytes: usize,
    /// The lookup of a namespace's newest event that the conditional produce at the front of
    /// `input` waits for, kept between turns (`Engine::last_id`): at most one, for a
    /// validated namespace.
    pub last_scan: Option<LastScan>,
}

/// A buffer emptied with more capacity than this is freed instead of kept for reuse.
pub const BUFFER_CAPACITY_KEPT: usize = 64 * 1024;

/// What one subscription costs besides its glob and cursor: the struct and its map entry.
pub const SUBSCRIPTION_BYTES_FIXED: usize = std::mem::size_of::<Subscription>() + 64;
/// What one version-vector entry of a subscription's cursor costs (a B-tree map entry).
pub const CURSOR_ENTRY_BYTES: usize = 32;

impl Subscription {
    /// The memory this subscription holds, counted in its connection's budget: a fixed part,
    /// the compiled glob and the cursor filter.
    pub fn size_bytes(&self) -> usize {
        SUBSCRIPTION_BYTES_FIXED
            + self.glob.memory_bytes()
            + self.filter.vector.len() * CURSOR_ENTRY_BYTES
            + self.order.as_ref().map_or(0, |order| order.memory_bytes())
    }
}

impl Connection {
    pub fn new(id: ConnId, now_ms: u64, handshake_deadline_ms: u64) -> Connection {
        Connection {
            id,
            phase: Phase::AwaitingHello {
                deadline_ms: handshake_deadline_ms,
            },
            input: Vec::new(),
            output: Vec::new(),
            output_sent: 0,
            subscriptions: BTreeMap::new(),
            last_input_ms: now_ms,
            has_output_queued: false,
            has_reply_queued: false,
            input_paused: false,
            input_deferred: false,
            held_reply_bytes: 0,
            frame_started_ms: None,
            paused_at_ms: None,
            memory_counted: 0,
            peer_addr: None,
            channel_binding: None,
            waiting_replies: std::collections::VecDeque::new(),
            waiting_reply_bytes: 0,
            last_scan: None,
        }
    }

    /// The client's state, while the connection is an open client connection.
    pub fn client(&self) -> Option<&ClientConn> {
        match &self.phase {
            Phase::Client(client) => Some(client),
            _ => None,
        }
    }

    /// The peer's state, while the connection is an established peer connection.
    pub fn peer(&self) -> Option<&PeerConn> {
        match &self.phase {
            Phase::Peer(peer) => Some(peer),
            _ => None,
        }
    }

    pub fn peer_mut(&mut self) -> Option<&mut PeerConn> {
        match &mut self.phase {
            Phase::Peer(peer) => Some(peer),
            _ => None,
        }
    }

    /// Unsent output plus the replies held for the sync: what the high-water mark limits.
    pub fn output_owed(&self) -> usize {
        self.output_len() + self.held_reply_bytes + self.waiting_reply_bytes
    }

    /// Everything the connection holds in memory, for `connection_memory_max`.
    pub fn memory_bytes(&self) -> usize {
        // A producer has no subscription: skip the map's iterator (this runs twice per
        // produced event, `Engine::recount_memory`).
        let subscriptions: usize = if self.subscriptions.is_empty() {
            0
        } else {
            self.subscriptions.values().map(|s| s.size_bytes()).sum()
        };
        // The whole output buffer: its sent front is held until the buffer is compacted.
        let scan = self.last_scan.as_ref().map_or(0, LastScan::memory_bytes);
        self.input.len() + self.output.len() + self.held_reply_bytes + subscriptions + scan
    }

    /// Bytes queued and not yet sent.
    pub fn output_pending(&self) -> &[u8] {
        &self.output[self.output_sent..]
    }

    pub fn output_len(&self) -> usize {
        self.output.len() - self.output_sent
    }

    /// Bytes at the front of `output_buffer()` that are already sent.
    pub fn output_sent(&self) -> usize {
        self.output_sent
    }

    /// The buffer to append encoded frames to.
    pub fn output_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Marks `count` bytes as sent, and compacts the buffer when it is mostly sent.
    pub fn consume_output(&mut self, count: usize) {
        assert!(
            count <= self.output_len(),
            "sent more bytes than were pending"
        );
        self.output_sent += count;
        if self.output_sent == self.output.len() {
            // A buffer that held a large event gives its memory back once sent, so the
            // memory counted (lengths) stays close to the memory held (capacities).
            if self.output.capacity() > BUFFER_CAPACITY_KEPT {
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
            self.output_sent = 0;
        } else if self.output_sent > 64 * 1024 && self.output_sent * 2 > self.output.len() {
            self.output.drain(..self.output_sent);
            self.output_sent = 0;
            // The pages past the moved bytes stay resident while the capacity holds them:
            // give them back, so the memory counted (lengths) is the memory held.
            self.output
                .shrink_to(self.output.len().max(BUFFER_CAPACITY_KEPT));
        }
    }

    /// Takes every pending output byte, for a connection that is being closed.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut output = std::mem::take(&mut self.output);
        output.drain(..self.output_sent);
        self.output_sent = 0;
        output
    }
}
