//! Consumer groups in the simulation. Groups are node-local (docs/consumers.md, "Cluster"): each
//! node has a group "sim" on `/**` with two members connected to it, and a group journal (a
//! `MemoryGroupStore`) that survives the node's crashes, as a file would. Members hold what
//! they are given for a while and acknowledge it at random, then send a Ping; its Pong
//! confirms the acks (the engine syncs the journal in the turn that handled them, before any
//! reply goes out). Checked at once: an event whose ack was confirmed is never delivered again
//! on that node, across crashes and restarts, except an event a power loss took from the
//! node's log (an `interval` node): it comes back from a peer at another offset and is a new
//! record to the group (at least once). Checked at the end, once the cluster is quiet: each
//! node's group has delivered every event of that node's log at least once and has nothing
//! pending. The journal is synced every turn while an `interval` log's tail is not, so after a
//! power loss the journal can name offsets past the log's end: the start-up rule that forgets
//! them (docs/consumers.md, "Restart") is what lets the groups on those nodes pass.

use std::collections::{BTreeSet, HashMap, HashSet};

use flo::event::{EventId, StartPosition};
use flo::protocol::{encode, ClientFrame, GroupAck, JoinGroup, ServerFrame};
use flo::storage::groups::MemoryGroupStore;

use super::*;

/// Members per node's group.
const MEMBERS: usize = 2;
const GROUP: &str = "sim";

/// One member connection of a node's group.
#[derive(Default)]
pub(crate) struct Member {
    pub(crate) conn: Option<ConnId>,
    input: Vec<u8>,
    /// Delivered and not acknowledged yet.
    held: Vec<EventId>,
    /// Acks sent and waiting for the Pong of this token.
    pings: HashMap<u64, Vec<EventId>>,
    next_token: u64,
}

/// A node's group: its journal, its members, and what they saw.
#[derive(Default)]
pub(crate) struct NodeGroup {
    /// The synced journal bytes survive a crash; a restart loads them.
    pub(crate) store: MemoryGroupStore,
    pub(crate) members: [Member; MEMBERS],
    /// Every event this node's group delivered, at least once.
    delivered: HashSet<EventId>,
    /// Events whose ack a Pong confirmed: never delivered again.
    acked_durably: HashSet<EventId>,
}

impl Sim {
    /// Loads node `node`'s group journal into its (new) engine and connects its members.
    pub(crate) fn start_group(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let Some(engine) = n.engine.as_mut() else {
            return;
        };
        if let Err(error) = engine.load_groups(Box::new(n.group.store.reopen())) {
            self.fail(format!(
                "node {node}: the group journal did not load: {error}"
            ));
        }
        for index in 0..MEMBERS {
            self.connect_member(node, index);
        }
    }

    fn connect_member(&mut self, node: usize, index: usize) {
        let credit = 1 + self.rng.below(16) as u32;
        let join = JoinGroup {
            subscription_id: 1,
            group: GROUP.into(),
            glob: "/**".into(),
            start: StartPosition::Beginning,
            credit,
            // Redeliveries come from crashes and member closes; a time-out may add some.
            ack_timeout_ms: 5_000,
            max_deliveries: u16::MAX,
            max_in_flight: 64,
        };
        let join = ClientFrame::JoinGroup(join);
        let Some(conn) = self.connect_with(node, "group member", &[join]) else {
            return;
        };
        self.nodes[node].group.members[index] = Member {
            conn: Some(conn),
            ..Member::default()
        };
    }

    /// The member of node `node` on `conn`, if `conn` is one.
    pub(crate) fn member_index(&self, node: usize, conn: ConnId) -> Option<usize> {
        let members = &self.nodes[node].group.members;
        (0..MEMBERS).find(|index| members[*index].conn == Some(conn))
    }

    /// A crash: the members' connections are gone; the journal keeps what was synced. Events
    /// no longer `present` in the log (a power loss) may come back from a peer as new records.
    pub(crate) fn crash_group(&mut self, node: usize, present: &BTreeSet<EventId>) {
        let group = &mut self.nodes[node].group;
        for member in &mut group.members {
            *member = Member::default();
        }
        group.acked_durably.retain(|id| present.contains(id));
    }

    /// Each step: every member of every up node acknowledges what it holds with a
    /// probability, and sends a Ping to confirm it; now and then a member closes its
    /// connection (its unacknowledged events go to the other member) and joins again.
    pub(crate) fn work_groups(&mut self) {
        let now = self.now();
        for node in 0..self.nodes.len() {
            for index in 0..MEMBERS {
                if self.nodes[node].engine.is_none() {
                    continue;
                }
                let Some(conn) = self.nodes[node].group.members[index].conn else {
                    continue;
                };
                if self.rng.chance(1) {
                    let n = &mut self.nodes[node];
                    n.engine.as_mut().expect("up").handle_closed(conn);
                    n.free(conn);
                    n.group.members[index] = Member::default();
                    self.connect_member(node, index);
                    continue;
                }
                if !self.rng.chance(300) {
                    continue;
                }
                let n = &mut self.nodes[node];
                let member = &mut n.group.members[index];
                if member.held.is_empty() {
                    continue;
                }
                let ids = std::mem::take(&mut member.held);
                member.next_token += 1;
                let token = member.next_token;
                let count = ids.len() as u32;
                member.pings.insert(token, ids.clone());
                let mut bytes = Vec::new();
                let ack = GroupAck {
                    subscription_id: 1,
                    delay_ms: 0,
                    ids,
                };
                encode(&ClientFrame::GroupAck(ack), &mut bytes);
                let credit = ClientFrame::Credit {
                    subscription_id: 1,
                    count,
                };
                encode(&credit, &mut bytes);
                encode(&ClientFrame::Ping { token }, &mut bytes);
                n.engine
                    .as_mut()
                    .expect("up")
                    .handle_input(now, conn, &bytes);
            }
        }
    }

    /// Frames for member `index` of node `node`.
    pub(crate) fn member_output(&mut self, node: usize, index: usize, bytes: &[u8]) {
        let member = &mut self.nodes[node].group.members[index];
        for frame in node::take_frames(&mut member.input, bytes) {
            let group = &mut self.nodes[node].group;
            match frame {
                ServerFrame::Welcome(_) | ServerFrame::CaughtUp { .. } => {}
                ServerFrame::Event { event, .. } => {
                    if group.acked_durably.contains(&event.id) {
                        self.fail(format!(
                            "node {node}: group member {index} got {} again after its ack \
                             was confirmed",
                            event.id
                        ));
                    }
                    group.delivered.insert(event.id);
                    group.members[index].held.push(event.id);
                }
                ServerFrame::Pong { token } => {
                    let acked = group.members[index].pings.remove(&token);
                    group.acked_durably.extend(acked.unwrap_or_default());
                }
                other => self.fail(format!(
                    "node {node} group member {index}: unexpected {other:?}"
                )),
            }
        }
    }

    /// At the end: has every node's group delivered every event of its log at least once,
    /// with nothing pending?
    pub(crate) fn groups_complete(&mut self) -> bool {
        for node in 0..self.nodes.len() {
            let Some(engine) = self.nodes[node].engine.as_ref() else {
                return false;
            };
            let pending: u64 = engine
                .metrics_snapshot()
                .groups
                .iter()
                .filter(|g| g.name == GROUP)
                .map(|g| g.pending)
                .sum();
            let group = &self.nodes[node].group;
            if pending > 0 || !self.nodes[node].checked.ids.is_subset(&group.delivered) {
                return false;
            }
        }
        true
    }

    /// Why `groups_complete` is false, for the failure message.
    pub(crate) fn groups_state(&self) -> String {
        let mut out = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let missing = node
                .checked
                .ids
                .iter()
                .filter(|id| !node.group.delivered.contains(id))
                .count();
            let metrics = node
                .engine
                .as_ref()
                .map(|engine| engine.metrics_snapshot().groups);
            out += &format!(
                "node {index}: {missing} events never delivered to its group (held {:?}, \
                 {metrics:?}); ",
                node.group
                    .members
                    .iter()
                    .map(|m| (m.conn, m.held.len()))
                    .collect::<Vec<_>>()
            );
        }
        out
    }
}
