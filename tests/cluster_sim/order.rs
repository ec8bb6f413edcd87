//! Id-order consumers: every node has one (a tailing Subscribe with `Order::Id`), which
//! resubscribes at its cursor after the node restarts. Each delivery is checked at once: ids
//! strictly increase on each node (never an event before a smaller one that arrived later),
//! and every node's sequence is a prefix of one common sequence (the k-th event delivered on
//! any node is the same event). At the end, once the cluster is quiet, each node's sequence
//! is every event of the cluster in id order. A power loss on an `interval` node can take
//! events that were already delivered (the docs allow it), so runs with one check no more;
//! nor do runs where a node knows only one peer at the start (a node known to nobody may
//! create events below what the others delivered: the documented exception).

use flo::event::{Cursor, EventId, Order, StartPosition};
use flo::protocol::{encode, ClientFrame, ErrorCode, ServerFrame, Subscribe};

use super::*;

/// One node's id-order consumer.
#[derive(Default)]
pub(crate) struct Ordered {
    pub(crate) conn: Option<ConnId>,
    input: Vec<u8>,
    cursor: Cursor,
    /// The ids delivered, in delivery order.
    pub(crate) sequence: Vec<EventId>,
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
                ServerFrame::Event { event, .. } => self.ordered_delivered(node, event.id),
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

    fn ordered_delivered(&mut self, node: usize, id: EventId) {
        let check = self.check_order && self.records_lost_by_power_loss == 0;
        let ordered = &mut self.nodes[node].ordered;
        if ordered.cursor.covers(id) {
            self.fail(format!("node {node}: the id-order consumer got {id} twice"));
        }
        let previous = ordered.sequence.last().copied();
        ordered.cursor.observe(id);
        ordered.sequence.push(id);
        let index = ordered.sequence.len() - 1;
        if !check {
            return;
        }
        if previous.is_some_and(|p| p >= id) {
            self.fail(format!(
                "node {node}: id order broken: {id} delivered after {previous:?}"
            ));
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

    /// At the end, in runs without power loss: is every node's id-order sequence every event
    /// of the cluster, in id order?
    pub(crate) fn ordered_complete(&mut self) -> bool {
        if !self.check_order || self.records_lost_by_power_loss > 0 {
            return true;
        }
        let mut all: Vec<EventId> = self.nodes[0].checked.ids.iter().copied().collect();
        all.sort();
        self.nodes.iter().all(|n| n.ordered.sequence == all)
    }
}
