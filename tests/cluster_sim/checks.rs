//! The checks run after every step and at the end: acknowledged events kept, ids unique,
//! per-origin order, the roaming consumer served exactly once, convergence.

use std::collections::HashMap;

use flo::event::{Event, EventId};
use flo::storage::Log;

use super::*;

impl Sim {
    pub(crate) fn events_of(&mut self, node: usize) -> Vec<Event> {
        let mut events = Vec::new();
        let log = self.nodes[node].log_mut();
        let start = log.start();
        let result = log.read(start, &mut |_, e| {
            events.push(e.to_event());
            true
        });
        if let Err(error) = result {
            self.fail(format!("node {node}: read failed: {error}"));
        }
        events
    }

    /// The invariants that hold after every step, checked incrementally: each node's log is
    /// read from where the last check stopped (from the start again after a crash).
    pub(crate) fn check(&mut self) {
        for node in 0..self.nodes.len() {
            if std::mem::take(&mut self.nodes[node].checked.rebuild) {
                let old = std::mem::take(&mut self.nodes[node].checked);
                for id in old.ids {
                    if let Some(entry) = self.holders.get_mut(&id) {
                        entry.1 -= 1;
                        if entry.1 == 0 {
                            self.holders.remove(&id);
                        }
                    }
                }
            }
            let mut events = Vec::new();
            let from = flo::storage::Offset(self.nodes[node].checked.end);
            let log = self.nodes[node].log_mut();
            let result = log.read(from, &mut |_, e| {
                events.push(e.to_event());
                true
            });
            match result {
                Ok(end) => self.nodes[node].checked.end = end.0,
                Err(error) => self.fail(format!("node {node}: read failed: {error}")),
            }
            for event in events {
                let checked = &mut self.nodes[node].checked;
                let previous = checked
                    .highest
                    .insert(event.id.actor, event.id.counter)
                    .unwrap_or(0);
                if event.id.counter <= previous {
                    self.fail(format!(
                        "node {node}: per-origin order broken: {} after counter {previous}",
                        event.id
                    ));
                }
                checked.ids.insert(event.id);
                let entry = self
                    .holders
                    .entry(event.id)
                    .or_insert_with(|| (event.data.clone(), 0));
                if entry.0 != event.data {
                    self.fail(format!(
                        "id {} names different events on two nodes (node {node} holds one)",
                        event.id
                    ));
                }
                entry.1 += 1;
            }
            for (id, data) in std::mem::take(&mut self.nodes[node].new_acks) {
                if !self.nodes[node].checked.ids.contains(&id) {
                    self.fail(format!("node {node} lost its acknowledged event {id}"));
                }
                let reused = self.excused.contains_key(&id);
                if !reused && self.holders.get(&id).map(|h| &h.0) != Some(&data) {
                    self.fail(format!("node {node}: acknowledged event {id} changed"));
                }
            }
        }
    }

    /// One last session of the roaming consumer, on a random node after convergence: with
    /// its sessions on whatever nodes it visited, it has seen every event exactly once. (A
    /// power loss can erase an event it saw from every node, and its id can then be given to
    /// a new event, which its cursor covers: docs/clustering.md says consumers are not
    /// protected from that, so the exact check needs a run without such losses.)
    pub(crate) fn check_roamer(&mut self) {
        self.leave();
        let node = self.rng.below(self.nodes.len() as u64) as usize;
        self.roam_to(node);
        // A node may read as little as one record per turn (`records_per_turn_max`).
        for _ in 0..100_000 {
            if self.roamer.session.is_none() {
                break;
            }
            self.step(false);
        }
        if self.roamer.session.is_some() {
            self.fail("the roaming consumer's last session did not end".into());
        }
        let all: HashMap<EventId, Vec<u8>> = self
            .events_of(0)
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        self.stats.roaming_sessions += self.roamer.sessions;
        // A power loss that took durable records (acknowledged or, with replicas 2, still
        // waiting for their ack) can erase an event the roamer saw.
        let exact = self.lost_by_power_loss == 0 && self.records_lost_by_power_loss == 0;
        if exact {
            self.stats.roamer_exact_checks += 1;
        }
        // After a catch-up time-out, events their origin lost may be held by some nodes only,
        // and their ids may name two events: the exact check leaves them out.
        let all: HashMap<EventId, Vec<u8>> = all
            .into_iter()
            .filter(|(id, _)| !self.excused(id))
            .collect();
        let mut seen = std::mem::take(&mut self.roamer.seen);
        seen.retain(|id, _| !self.excused(id));
        self.roamer.seen = seen;
        if exact && all != self.roamer.seen {
            let missing = all
                .keys()
                .filter(|id| !self.roamer.seen.contains_key(id))
                .count();
            self.fail(format!(
                "the roaming consumer ({} sessions) saw {} events; the cluster holds {} ({missing} never delivered)",
                self.roamer.sessions,
                self.roamer.seen.len(),
                all.len()
            ));
        }
    }

    /// After convergence: every event acknowledged with replicas 2 is held (with its data),
    /// also when a node lost its whole data directory, which it must have received again.
    /// A power loss on an `interval` node may take an event it had credited (durable there
    /// means written, not fsynced), so it counts like a lost directory for the events it
    /// took: only an event that two crashes took from nodes holding it may be gone.
    pub(crate) fn check_survivors(&mut self) {
        if self.data_dir_losses > 0 {
            self.stats.survival_checks += 1;
        }
        let all: HashMap<EventId, Vec<u8>> = self
            .events_of(0)
            .into_iter()
            .map(|e| (e.id, e.data))
            .collect();
        for (id, (data, losses)) in &self.must_survive {
            if self.excused(id) {
                // Lost by its origin before a hold that timed out: a node that got its
                // origin's later events first never takes it ("Unclean restarts").
                continue;
            }
            let held = all.get(id) == Some(data);
            self.stats.survivors_recovered += u64::from(held && *losses > 0);
            if *losses < 2 && !held {
                self.fail(format!(
                    "event {id}, acknowledged with replicas 2, is lost after {} lost data directories and {} power losses ({losses} of them took it from a node)",
                    self.data_dir_losses, self.power_loss_crashes
                ));
            }
        }
    }

    pub(crate) fn converged(&mut self) -> bool {
        self.check();
        if self.excused.is_empty() {
            let first = &self.nodes[0].checked.ids;
            return self.nodes.iter().all(|n| n.checked.ids == *first);
        }
        let held = |n: &Node| -> std::collections::HashSet<EventId> {
            n.checked
                .ids
                .iter()
                .copied()
                .filter(|id| !self.excused(id))
                .collect()
        };
        let first = held(&self.nodes[0]);
        self.nodes.iter().all(|n| held(n) == first)
    }
}
