//! Id-order consumers: every node has one (a tailing Subscribe with `Order::Id`), which
//! resubscribes at its cursor after the node restarts. Each delivery is checked at once: ids
//! strictly increase on each node (never an event before a smaller one that arrived later),
//! and every node's sequence is a prefix of one common sequence (the k-th event delivered on
//! any node is the same event). At the end, once the cluster is quiet, each node's sequence
//! is every event of the cluster in id order. A power loss on an `interval` node can take
//! events that were already delivered (the docs allow it), so runs with one check no more;
//! nor do runs where a node knows only one peer at the start (a node known to nobody may
//! create events below what the others delivered: the documented exception). In every run, a
//! delivery below the largest id already delivered (late) must be one of the cases
//! docs/clustering.md lists under "After a catch-up time-out", and the engine must count it;
//! once a hold has timed out, the common sequence is no longer compared.

use flo::event::{Cursor, EventId, Order, StartPosition};
use flo::protocol::{encode, ClientFrame, ErrorCode, ServerFrame, Subscribe};

use std::collections::HashSet;

use flo::storage::Log;

use super::*;

/// One node's id-order consumer.
#[derive(Default)]
pub(crate) struct Ordered {
    pub(crate) conn: Option<ConnId>,
    input: Vec<u8>,
    cursor: Cursor,
    /// The ids delivered, in delivery order.
    pub(crate) sequence: Vec<EventId>,
    /// The largest id delivered so far; an id below it is delivered late.
    largest: EventId,
    /// Late deliveries since the node's engine started (the engine must count as many).
    pub(crate) late_this_start: u64,
}

/// One start of a node: what the crash before it took, and how its catch-up hold ended.
#[derive(Default)]
pub(crate) struct Life {
    /// It started on an empty data directory after losing its own.
    pub(crate) lost_dir: bool,
    /// When it first listed each member (in any state) in this start, or in an earlier start
    /// on the same directory (watched only in runs with discovery-only members: "The
    /// exception").
    pub(crate) known: BTreeMap<ActorId, u64>,
}

/// Why an id-order consumer may see an event after a larger one (docs/clustering.md, "After
/// a catch-up time-out"); anything else fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateCase {
    /// An event its origin lost in a crash whose next hold timed out (a power loss: a
    /// lost data directory's hold never times out).
    LostEventsRelayed,
    /// "The exception": in a run with discovery-only members, created by its origin before
    /// the delivering node had heard of the origin.
    CreatedBeforeKnown,
}

impl Sim {
    /// Connects node `node`'s id-order consumer and subscribes at its cursor.
    pub(crate) fn connect_ordered(&mut self, node: usize) {
        let Some(conn) = self.connect_with(node, "ordered", &[]) else {
            return;
        };
        let n = &mut self.nodes[node];
        n.ordered.conn = Some(conn);
        n.ordered.input.clear();
        self.subscribe_ordered(node);
    }

    /// Subscribes node `node`'s id-order consumer at its cursor (again after OrderStalled).
    fn subscribe_ordered(&mut self, node: usize) {
        let now = self.now();
        let n = &mut self.nodes[node];
        let (Some(engine), Some(conn)) = (n.engine.as_mut(), n.ordered.conn) else {
            return;
        };
        let mut bytes = Vec::new();
        let subscribe = Subscribe {
            subscription_id: 1,
            glob: "/**".into(),
            start: StartPosition::Cursor(n.ordered.cursor.clone()),
            limit: 0,
            tail: true,
            skip_damaged: false,
            order: Order::Id,
            credit: u32::MAX,
        };
        encode(&ClientFrame::Subscribe(subscribe), &mut bytes);
        engine.handle_input(now, conn, &bytes);
    }

    /// Frames for node `node`'s id-order consumer.
    pub(crate) fn ordered_output(&mut self, node: usize, bytes: &[u8]) {
        let ordered = &mut self.nodes[node].ordered;
        for frame in node::take_frames(&mut ordered.input, bytes) {
            match frame {
                ServerFrame::Welcome(_) | ServerFrame::CaughtUp { .. } => {}
                ServerFrame::Event { event, .. } => {
                    self.ordered_delivered(node, event.id, &event.data)
                }
                ServerFrame::Error(error) if error.code == ErrorCode::OrderStalled => {
                    // What a client does: resubscribe at its cursor.
                    self.stats.order_stalls += 1;
                    self.subscribe_ordered(node);
                }
                other => self.fail(format!(
                    "node {node} id-order consumer: unexpected {other:?}"
                )),
            }
        }
    }

    fn ordered_delivered(&mut self, node: usize, id: EventId, data: &[u8]) {
        let check = self.check_order && self.records_lost_by_power_loss == 0;
        let ordered = &mut self.nodes[node].ordered;
        if ordered.cursor.covers(id) {
            self.fail(format!("node {node}: the id-order consumer got {id} twice"));
        }
        let largest = ordered.largest;
        ordered.cursor.observe(id);
        ordered.sequence.push(id);
        ordered.largest = largest.max(id);
        let index = ordered.sequence.len() - 1;
        if id < largest {
            // In every run: a late delivery is one of the documented cases, after a hold
            // that ended by its time-out.
            ordered.late_this_start += 1;
            match self.late_case(node, id, data) {
                Some(case) => {
                    if std::env::var("FLO_SIM_VERBOSE").is_ok() {
                        eprintln!(
                            "{} ms: node {node} delivered {id} late, after {largest} ({case:?})",
                            self.now_ms
                        );
                    }
                    match case {
                        LateCase::LostEventsRelayed => self.stats.late_lost_events += 1,
                        LateCase::CreatedBeforeKnown => self.stats.late_unknown_events += 1,
                    }
                }
                None => self.fail(format!(
                    "node {node}: id order broken: {id} delivered after {largest}, and not as a documented exception ({} catch-up holds timed out in this run)",
                    self.timed_out_holds
                )),
            }
            return;
        }
        // Once a hold has timed out, nodes' sequences may differ in where late events sit:
        // the common sequence is checked only before.
        if !check || self.timed_out_holds > 0 {
            return;
        }
        match self.canonical.get(index) {
            Some(&expected) if expected != id => self.fail(format!(
                "node {node}: id-order event {index} is {id}, another node's is {expected}"
            )),
            Some(_) => {}
            None => self.canonical.push(id),
        }
        self.stats.ordered_deliveries += 1;
    }

    /// Which documented case, if any, lets node `node` deliver `id` (with `data`) late.
    fn late_case(&self, node: usize, id: EventId, data: &[u8]) -> Option<LateCase> {
        let origin = self.nodes.iter().position(|n| n.actor == id.actor)?;
        let &(creator, life, created_ms) = self.created.get(data)?;
        // Its origin lacked it when a later start's hold timed out (it lost it in a power
        // loss and had not got it back).
        if self
            .excused
            .get(&id)
            .is_some_and(|&timed_out_life| life < timed_out_life)
        {
            return Some(LateCase::LostEventsRelayed);
        }
        let known = self.nodes[node]
            .lives
            .last()
            .and_then(|life| life.known.get(&id.actor));
        (!self.check_order && creator == origin && known.is_none_or(|&ms| created_ms <= ms))
            .then_some(LateCase::CreatedBeforeKnown)
    }

    /// After each step: a node whose hold ended records when, and which of its own lost
    /// events may now come back late or have their ids given again; a node that started on
    /// an empty directory records when it meets each member; and every engine counted as
    /// many late deliveries as its id-order consumer saw.
    pub(crate) fn watch_lives(&mut self, node: usize, hold_ended: bool) {
        let now_ms = self.now_ms;
        let count = self.nodes.len();
        let timed_out = hold_ended
            && self.nodes[node]
                .engine
                .as_ref()
                .is_some_and(|e| e.catch_up_timed_out());
        if timed_out {
            // Its own events that some node holds and it does not: it may never get them back
            // (its counter moves past them), and their ids may be given again.
            let actor = self.nodes[node].actor;
            let mut own = HashSet::new();
            let log = self.nodes[node].log_mut();
            let _ = log.read(log.start(), &mut |_, e| {
                own.insert(e.id);
                true
            });
            let life_index = self.nodes[node].lives.len() - 1;
            let missing: Vec<EventId> = self
                .holders
                .keys()
                .filter(|id| id.actor == actor && !own.contains(id))
                .copied()
                .collect();
            if std::env::var("FLO_SIM_VERBOSE").is_ok() {
                eprintln!(
                    "{now_ms} ms: node {node}'s catch-up hold timed out, {} of its own events held elsewhere are missing",
                    missing.len()
                );
            }
            for id in missing {
                self.excused.entry(id).or_insert(life_index);
            }
            if self.nodes[node].lives[life_index].lost_dir {
                self.fail(format!(
                    "node {node}: the catch-up hold after its lost data directory timed out, so it may give the ids of its lost events again (docs/clustering.md, \"Losing a data directory\")"
                ));
            }
            self.timed_out_holds += 1;
        }
        let n = &mut self.nodes[node];
        let Some(engine) = n.engine.as_ref() else {
            return;
        };
        let Some(life) = n.lives.last_mut() else {
            return;
        };
        if !self.check_order && life.known.len() < count {
            for member in engine.status().members {
                life.known.entry(ActorId(member.actor_id)).or_insert(now_ms);
            }
        }
        let counted = engine.stats().events_delivered_late;
        if counted != n.ordered.late_this_start {
            let seen = n.ordered.late_this_start;
            self.fail(format!(
                "node {node}: its id-order consumer got {seen} events late since the node started, the engine counted {counted}"
            ));
        }
    }

    /// At the end, in runs without power loss: is every node's id-order sequence every event
    /// of the cluster, in id order? After a catch-up time-out: every event once, in id order
    /// but for the late ones, and leaving out the events a hold that timed out may have lost
    /// for good.
    pub(crate) fn ordered_complete(&mut self) -> bool {
        if !self.check_order || self.records_lost_by_power_loss > 0 {
            return true;
        }
        let mut all: Vec<EventId> = self.nodes[0].checked.ids.iter().copied().collect();
        all.sort();
        if self.timed_out_holds == 0 {
            return self.nodes.iter().all(|n| n.ordered.sequence == all);
        }
        all.retain(|id| !self.excused(id));
        self.nodes.iter().all(|n| {
            let mut sequence: Vec<EventId> = n
                .ordered
                .sequence
                .iter()
                .copied()
                .filter(|id| !self.excused(id))
                .collect();
            sequence.sort();
            sequence == all
        })
    }
}
