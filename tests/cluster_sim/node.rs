//! The simulated nodes: an engine over a memory log (or the log a down node left), its fake
//! producing client, crashes and restarts, and the roaming consumer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use flo::config::{FsyncPolicy, WireLimits};
use flo::engine::{Action, ConnId, Engine, EngineConfig};
use flo::event::{ActorId, Cursor, EventId, StartPosition};
use flo::protocol::{
    decode, encode, ClientFrame, ErrorCode, Hello, NewEvent, Produce, ServerFrame, Subscribe,
    PROTOCOL_VERSION,
};
use flo::storage::{Log, MemoryLog};

use super::*;

pub(crate) struct Node {
    pub(crate) actor: ActorId,
    pub(crate) addr: SocketAddr,
    pub(crate) config: EngineConfig,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) engine: Option<Engine<MemoryLog>>,
    /// The log of a node that is down.
    pub(crate) stored_log: Option<MemoryLog>,
    pub(crate) next_slot: u32,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) generation: u32,
    pub(crate) client: Option<ConnId>,
    pub(crate) client_input: Vec<u8>,
    pub(crate) next_op: u64,
    /// Produces waiting for their reply: op id -> payload.
    pub(crate) pending: HashMap<u64, Vec<u8>>,
    /// Acknowledged events this node created, which it must keep.
    pub(crate) acked: BTreeMap<EventId, Vec<u8>>,
    /// Acknowledgements not yet checked against the log.
    pub(crate) new_acks: Vec<(EventId, Vec<u8>)>,
    pub(crate) checked: Checked,
    pub(crate) restarts: u64,
    /// The node's id-order consumer (`order.rs`).
    pub(crate) ordered: super::order::Ordered,
    /// The node's consumer group: journal, members, what they saw (`groups.rs`).
    pub(crate) group: super::groups::NodeGroup,
    /// Its starts, the first one first (`order.rs` classifies late deliveries by them).
    pub(crate) lives: Vec<super::order::Life>,
}

/// What the incremental check has read of one node's log.
#[derive(Default)]
pub(crate) struct Checked {
    pub(crate) end: u64,
    pub(crate) highest: HashMap<ActorId, u64>,
    pub(crate) ids: std::collections::HashSet<EventId>,
    /// The log was truncated by a crash: read it again from the start.
    pub(crate) rebuild: bool,
}

impl Node {
    pub(crate) fn new_conn(&mut self) -> ConnId {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        self.generation += 1;
        ConnId {
            slot,
            generation: self.generation,
        }
    }

    pub(crate) fn free(&mut self, conn: ConnId) {
        self.free_slots.push(conn.slot);
    }

    pub(crate) fn log_mut(&mut self) -> &mut MemoryLog {
        match self.engine.as_mut() {
            Some(engine) => engine.log_mut(),
            // A node is either up (engine) or down (stored log).
            None => self.stored_log.as_mut().expect("a down node keeps its log"),
        }
    }
}

/// A consumer that moves from node to node with its version-vector cursor: each session
/// subscribes at the cursor on a random node, reads to the end of that node's log, and leaves.
#[derive(Default)]
pub(crate) struct Roamer {
    pub(crate) cursor: Cursor,
    /// Every event delivered, by id; a repeat is a failure.
    pub(crate) seen: HashMap<EventId, Vec<u8>>,
    /// The node and connection of the current session.
    pub(crate) session: Option<(usize, ConnId)>,
    pub(crate) input: Vec<u8>,
    pub(crate) sessions: u64,
}

/// The replicas the client of `node` asks for: 2 on even nodes, 1 on odd ones.
pub(crate) fn replicas_of(node: usize) -> u8 {
    if node.is_multiple_of(2) {
        2
    } else {
        1
    }
}

/// `bytes` added to a connection's `input`, and the whole frames taken from its front (a
/// partial frame stays for the next bytes).
pub(crate) fn take_frames(input: &mut Vec<u8>, bytes: &[u8]) -> Vec<ServerFrame> {
    input.extend_from_slice(bytes);
    let mut consumed = 0;
    let mut frames = Vec::new();
    while let Some((frame, length)) = decode(&input[consumed..], &WireLimits::default()).unwrap() {
        consumed += length;
        frames.push(frame);
    }
    input.drain(..consumed);
    frames
}

impl Sim {
    /// A new connection to node `node` that sends Hello (as `name`) and then `frames`, in one
    /// input; None while the node is down (its connection id is used up all the same).
    pub(crate) fn connect_with(
        &mut self,
        node: usize,
        name: &str,
        frames: &[ClientFrame],
    ) -> Option<ConnId> {
        let now = self.now();
        let n = &mut self.nodes[node];
        let conn = n.new_conn();
        let engine = n.engine.as_mut()?;
        engine.handle_connect(now, conn);
        let mut bytes = Vec::new();
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: name.into(),
            auth_token: Vec::new(),
        };
        encode(&ClientFrame::Hello(hello), &mut bytes);
        for frame in frames {
            encode(frame, &mut bytes);
        }
        engine.handle_input(now, conn, &bytes);
        Some(conn)
    }

    pub(crate) fn connect_client(&mut self, node: usize) {
        // Even nodes' clients ask for replicated acks (checked in `client_output`).
        let replicas = replicas_of(node);
        let frames = if replicas > 1 {
            vec![ClientFrame::SetReplicas { replicas }]
        } else {
            Vec::new()
        };
        let conn = self.connect_with(node, "sim", &frames);
        let n = &mut self.nodes[node];
        n.client = Some(conn.expect("client connects to an up node"));
        n.client_input.clear();
    }

    pub(crate) fn produce(&mut self, node: usize) {
        let now = self.now();
        self.produced += 1;
        let payload = format!("event {} from node {}", self.produced, node).into_bytes();
        let n = &mut self.nodes[node];
        if n.engine.is_none() || n.client.is_none() {
            return;
        }
        let op_id = n.next_op;
        n.next_op += 1;
        n.pending.insert(op_id, payload.clone());
        // When and in which start of its node the event was created (a NotReady refusal
        // creates nothing; the entry then names no event).
        let life = n.lives.len() - 1;
        self.created
            .insert(payload.clone(), (node, life, self.now_ms));
        let n = &mut self.nodes[node];
        let (Some(engine), Some(conn)) = (n.engine.as_mut(), n.client) else {
            return;
        };
        let mut bytes = Vec::new();
        let frame = ClientFrame::Produce(Produce {
            op_id,
            event: NewEvent {
                namespace: format!("/sim/{}", op_id % 3),
                parent_id: None,
                data: payload,
            },
        });
        encode(&frame, &mut bytes);
        engine.handle_input(now, conn, &bytes);
    }

    /// Drains every action of one node.
    pub(crate) fn drain(&mut self, node: usize) {
        loop {
            let Some(engine) = self.nodes[node].engine.as_mut() else {
                return;
            };
            let Some(action) = engine.poll_action() else {
                return;
            };
            match action {
                Action::Send(conn) => {
                    let bytes = engine.output(conn).to_vec();
                    engine.handle_sent(conn, bytes.len());
                    if Some(conn) == self.nodes[node].client {
                        self.client_output(node, &bytes);
                    } else if Some(conn) == self.nodes[node].ordered.conn {
                        self.ordered_output(node, &bytes);
                    } else if self.roamer.session == Some((node, conn)) {
                        self.roamer_output(&bytes);
                    } else if let Some(index) = self.member_index(node, conn) {
                        self.member_output(node, index, &bytes);
                    } else {
                        self.transmit(node, conn, bytes);
                    }
                }
                Action::Close { conn, final_output } => {
                    self.nodes[node].free(conn);
                    if self.roamer.session == Some((node, conn)) {
                        self.fail(format!("node {node} closed the roaming consumer"));
                    }
                    if Some(conn) == self.nodes[node].client {
                        self.client_output(node, &final_output);
                        self.fail(format!("node {node} closed the fake client"));
                    }
                    if Some(conn) == self.nodes[node].ordered.conn {
                        self.fail(format!("node {node} closed the id-order consumer"));
                    }
                    if let Some(index) = self.member_index(node, conn) {
                        self.member_output(node, index, &final_output);
                        self.fail(format!("node {node} closed group member {index}"));
                    }
                    self.transmit(node, conn, final_output);
                    if let Some(&id) = self.ends.get(&(node, conn)) {
                        let link = self.links.get_mut(&id).unwrap();
                        link.closed_by = Some(node);
                        self.ends.remove(&(node, conn));
                    }
                }
                Action::Dial { addr } => self.dial(node, addr),
            }
        }
    }

    /// Starts a consumer session on `node` at the roamer's cursor.
    pub(crate) fn roam_to(&mut self, node: usize) {
        let subscribe = ClientFrame::Subscribe(Subscribe {
            subscription_id: 1,
            glob: "/**".into(),
            start: StartPosition::Cursor(self.roamer.cursor.clone()),
            limit: 0,
            tail: false,
            skip_damaged: false,
            order: Default::default(),
            credit: u32::MAX,
        });
        let Some(conn) = self.connect_with(node, "roamer", &[subscribe]) else {
            return;
        };
        self.roamer.session = Some((node, conn));
        self.roamer.input.clear();
        self.roamer.sessions += 1;
    }

    /// Ends the roamer's session (it read to the end, or its node went down).
    pub(crate) fn leave(&mut self) {
        if let Some((node, conn)) = self.roamer.session.take() {
            if let Some(engine) = self.nodes[node].engine.as_mut() {
                if engine.is_open(conn) {
                    engine.handle_closed(conn);
                    self.nodes[node].free(conn);
                }
            }
        }
    }

    pub(crate) fn roamer_output(&mut self, bytes: &[u8]) {
        for frame in take_frames(&mut self.roamer.input, bytes) {
            match frame {
                ServerFrame::Welcome(_) | ServerFrame::CaughtUp { .. } => {}
                ServerFrame::Event { event, .. } => {
                    if self.roamer.cursor.covers(event.id) {
                        self.fail(format!("the roaming consumer got {} twice", event.id));
                    }
                    self.roamer.cursor.observe(event.id);
                    self.roamer.seen.insert(event.id, event.data);
                }
                ServerFrame::End { .. } => self.leave(),
                other => self.fail(format!("roaming consumer: unexpected frame {other:?}")),
            }
        }
    }

    pub(crate) fn client_output(&mut self, node: usize, bytes: &[u8]) {
        let n = &mut self.nodes[node];
        let replies = take_frames(&mut n.client_input, bytes);
        let mut replicated = Vec::new();
        for frame in replies {
            match frame {
                ServerFrame::Welcome(_) => {}
                ServerFrame::Ack(ack) => {
                    let payload = n.pending.remove(&ack.op_id).unwrap();
                    if ack.first_id.actor != n.actor {
                        self.fail(format!(
                            "node {node} acked with a foreign id {}",
                            ack.first_id
                        ));
                    }
                    if std::env::var("FLO_SIM_VERBOSE").is_ok() {
                        eprintln!("{} ms: node {node} acked {}", self.now_ms, ack.first_id);
                    }
                    n.acked.insert(ack.first_id, payload.clone());
                    n.new_acks.push((ack.first_id, payload));
                    replicated.push(ack.first_id);
                }
                ServerFrame::Error(error) => {
                    let allowed = [
                        ErrorCode::NotReady,
                        ErrorCode::StorageFailure,
                        ErrorCode::ReplicationTimeout,
                    ];
                    if !allowed.contains(&error.code) {
                        self.fail(format!("node {node}: unexpected error {error:?}"));
                    }
                    if let flo::protocol::ErrorScope::Produce(op_id) = error.scope {
                        n.pending.remove(&op_id);
                    }
                }
                other => self.fail(format!("node {node}: unexpected frame {other:?}")),
            }
        }
        if replicas_of(node) > 1 {
            for id in &replicated {
                let payload = self.nodes[node].acked.get(id).cloned().unwrap_or_default();
                self.must_survive.insert(*id, (payload, 0));
            }
            self.check_replicated(node, &replicated);
        }
    }

    /// An event acked with replicas N is held by at least N nodes' logs when its ack arrives
    /// (each origin's events are a prefix on every node, so the vector says). A power loss on
    /// an `interval` node may take events it had credited (durable there means written, not
    /// fsynced), so runs with such a loss skip this check.
    fn check_replicated(&mut self, node: usize, ids: &[EventId]) {
        if self.power_loss_crashes > 0 {
            return;
        }
        for &id in ids {
            let holders = (0..self.nodes.len())
                .filter(|&other| {
                    self.nodes[other].log_mut().version_vector().get(id.actor) >= id.counter
                })
                .count();
            self.stats.replicated_acks += 1;
            if holders < usize::from(replicas_of(node)) {
                self.fail(format!(
                    "node {node} acked {id} with replicas {} but only {holders} nodes hold it",
                    replicas_of(node)
                ));
            }
        }
    }

    pub(crate) fn crash(&mut self, node: usize) {
        if self.roamer.session.is_some_and(|(n, _)| n == node) {
            self.roamer.session = None;
        }
        let ids: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.ends.iter().any(|(n, _)| *n == node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.cut(id);
        }
        if self.nodes[node].engine.is_none() {
            return;
        }
        // At most once a run (replicas 2 promise survival of one lost directory), a crash
        // loses the node's whole data directory: it restarts on an empty one.
        let lose_dir = self.data_dir_losses == 0 && self.rng.chance(self.dir_loss_chance);
        let n = &mut self.nodes[node];
        let Some(engine) = n.engine.take() else {
            return;
        };
        let mut log = engine.into_log();
        let mut held_before = BTreeSet::new();
        let _ = log.read(log.start(), &mut |_, e| {
            held_before.insert(e.id);
            true
        });
        if lose_dir {
            self.data_dir_losses += 1;
            let lost = log.durable_end();
            if std::env::var("FLO_SIM_VERBOSE").is_ok() {
                eprintln!(
                    "{} ms: node {node} crashed and lost its data directory ({lost} records)",
                    self.now_ms
                );
            }
            // Events no other node held yet (acked with replicas 1, not yet replicated) are
            // gone with it: the exact checks of id order and of the roaming consumer then do
            // not apply to this run.
            let holders = &self.holders;
            let mut gone = 0;
            let _ = log.read(log.start(), &mut |_, e| {
                gone += u64::from(holders.get(&e.id).is_none_or(|h| h.1 <= 1));
                true
            });
            self.records_lost_by_power_loss += gone;
            // Id order stays checked after a lost directory: the node's new counter passes
            // its peers' events at the handshakes of its catch-up hold, and their clocks no
            // longer count the promises it made before (docs/clustering.md, "Losing a data
            // directory").
            log = MemoryLog::with_fsync(n.fsync);
            n.acked.clear();
        }
        let keep = match n.fsync {
            // A crash of the process: everything written survives.
            FsyncPolicy::Always => u64::MAX / 2,
            // A power loss: part of the unsynced tail survives.
            _ => self.rng.below(4),
        };
        let before_end = log.durable_end();
        if n.fsync != FsyncPolicy::Always {
            self.power_loss_crashes += 1;
        }
        log.crash(keep);
        self.records_lost_by_power_loss += before_end.0 - log.durable_end().0.min(before_end.0);
        if std::env::var("FLO_SIM_VERBOSE").is_ok() {
            eprintln!(
                "{} ms: node {node} ({}) crashed: durable end {} -> {}, own counter {}",
                self.now_ms,
                n.fsync,
                before_end,
                log.durable_end(),
                log.version_vector().get(n.actor)
            );
        }
        // Acknowledged events a power loss took are allowed to be gone (docs/clustering.md);
        // they must not come back with another payload, which `check` verifies.
        let mut present = BTreeSet::new();
        let _ = log.read(log.start(), &mut |_, e| {
            present.insert(e.id);
            true
        });
        for (id, (_, losses)) in self.must_survive.iter_mut() {
            if held_before.contains(id) && !present.contains(id) {
                *losses += 1;
            }
        }
        let n = &mut self.nodes[node];
        // The member list persists with the directory: what it knew, it knows again.
        let known = match (lose_dir, n.lives.last()) {
            (false, Some(life)) => life.known.clone(),
            _ => Default::default(),
        };
        n.lives.push(super::order::Life {
            lost_dir: lose_dir,
            known,
        });
        let before = n.acked.len();
        n.acked.retain(|id, _| present.contains(id));
        let lost = (before - n.acked.len()) as u64;
        if lost > 0 && n.fsync == FsyncPolicy::Always {
            self.fail(format!(
                "node {node} lost {lost} acknowledged events with fsync always"
            ));
        }
        self.lost_by_power_loss += lost;
        n.stored_log = Some(log);
        n.checked.rebuild = true;
        n.new_acks.retain(|(id, _)| present.contains(id));
        n.client = None;
        n.ordered.conn = None;
        self.crash_group(node, &present);
        let n = &mut self.nodes[node];
        n.pending.clear();
        n.next_slot = 0;
        n.free_slots.clear();
    }

    pub(crate) fn restart(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let Some(log) = n.stored_log.take() else {
            return;
        };
        n.restarts += 1;
        n.config.seed = n.config.seed.wrapping_add(n.restarts);
        n.ordered.late_this_start = 0;
        if std::env::var("FLO_SIM_VERBOSE").is_ok() {
            eprintln!("{} ms: node {node} restarts", self.now_ms);
        }
        let engine = Engine::new(n.config.clone(), log);
        if engine.is_holding_produces() {
            self.stats.holds += 1;
        }
        n.engine = Some(engine);
        self.start_group(node);
        self.connect_client(node);
        self.connect_ordered(node);
    }
}
