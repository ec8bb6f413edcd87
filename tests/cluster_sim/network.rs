//! The simulated network: connections as ordered byte pipes between two engines, delivered
//! in random chunks with random delays; drops, partitions and dials.

use std::collections::VecDeque;
use std::net::SocketAddr;

use flo::engine::ConnId;

use super::*;

/// One direction of a simulated TCP connection: chunks in flight, in order.
#[derive(Default)]
pub(crate) struct Pipe {
    pub(crate) chunks: VecDeque<(u64, Vec<u8>)>,
}

/// A simulated TCP connection between two nodes.
pub(crate) struct Link {
    pub(crate) ends: [(usize, ConnId); 2],
    /// `pipes[i]` carries bytes towards `ends[i]`.
    pub(crate) pipes: [Pipe; 2],
    /// Set when one end's engine closed it: after the bytes towards the other end are
    /// delivered, the other end sees the close.
    pub(crate) closed_by: Option<usize>,
}

impl Sim {
    pub(crate) fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    /// Cuts a link: both ends that are up see the close now.
    pub(crate) fn cut(&mut self, id: u64) {
        let Some(link) = self.links.remove(&id) else {
            return;
        };
        for (node, conn) in link.ends {
            // An end whose engine closed it already is not in `ends` (its slot is free).
            if self.ends.remove(&(node, conn)).is_none() {
                continue;
            }
            self.close_end(node, conn);
        }
    }

    /// The socket of `conn` on `node` is closed under the engine. If the engine already
    /// forgot it, its Close action is pending and frees the slot.
    pub(crate) fn close_end(&mut self, node: usize, conn: ConnId) {
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            if engine.is_open(conn) {
                engine.handle_closed(conn);
                self.nodes[node].free(conn);
            }
        }
    }

    pub(crate) fn dial(&mut self, from: usize, addr: SocketAddr) {
        let now = self.now();
        let target = self.nodes.iter().position(|n| n.addr == addr);
        let reachable = target.filter(|&to| {
            to != from
                && self.nodes[to].engine.is_some()
                && !self.partitions.contains(&Sim::pair(from, to))
        });
        let Some(to) = reachable else {
            if let Some(engine) = self.nodes[from].engine.as_mut() {
                engine.handle_dial_failed(now, addr);
            }
            return;
        };
        let dialer_conn = self.nodes[from].new_conn();
        let acceptor_conn = self.nodes[to].new_conn();
        let id = self.next_link;
        self.next_link += 1;
        self.links.insert(
            id,
            Link {
                ends: [(from, dialer_conn), (to, acceptor_conn)],
                pipes: [Pipe::default(), Pipe::default()],
                closed_by: None,
            },
        );
        self.ends.insert((from, dialer_conn), id);
        self.ends.insert((to, acceptor_conn), id);
        // Checked above: `to` is up; `from` is up because it asked to dial.
        self.nodes[to]
            .engine
            .as_mut()
            .unwrap()
            .handle_connect(now, acceptor_conn);
        self.nodes[from]
            .engine
            .as_mut()
            .unwrap()
            .handle_dialed(now, dialer_conn, addr);
    }

    /// Queues bytes that `node` wrote on `conn` into the link, in random chunks.
    pub(crate) fn transmit(&mut self, node: usize, conn: ConnId, bytes: Vec<u8>) {
        let Some(&id) = self.ends.get(&(node, conn)) else {
            return;
        };
        let now_ms = self.now_ms;
        let rng = &mut self.rng;
        let link = self.links.get_mut(&id).unwrap();
        let towards = if link.ends[0] == (node, conn) { 1 } else { 0 };
        let pipe = &mut link.pipes[towards];
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let size = (1 + rng.below(rest.len() as u64 * 2)) as usize;
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            let last = pipe.chunks.back().map(|c| c.0).unwrap_or(0);
            let at = last.max(now_ms + rng.below(40));
            pipe.chunks.push_back((at, chunk.to_vec()));
            rest = tail;
        }
    }

    /// Delivers every chunk that is due, connection by connection in random order.
    pub(crate) fn deliver(&mut self) {
        let now = self.now();
        let mut ids: Vec<u64> = self.links.keys().copied().collect();
        for i in (1..ids.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        for id in ids {
            let frozen = self.links.get(&id).is_some_and(|l| {
                self.partitions
                    .contains(&Sim::pair(l.ends[0].0, l.ends[1].0))
            });
            if frozen {
                continue;
            }
            for side in 0..2 {
                while let Some(link) = self.links.get_mut(&id) {
                    let (node, conn) = link.ends[side];
                    if link.closed_by == Some(node) {
                        link.pipes[side].chunks.clear();
                        break;
                    }
                    let due = matches!(link.pipes[side].chunks.front(), Some((at, _)) if *at <= now.monotonic.0);
                    if !due {
                        if link.closed_by.is_some() && link.pipes[side].chunks.is_empty() {
                            self.links.remove(&id);
                            if self.ends.remove(&(node, conn)).is_none() {
                                break;
                            }
                            self.close_end(node, conn);
                        }
                        break;
                    }
                    let (_, bytes) = link.pipes[side].chunks.pop_front().unwrap();
                    if let Some(engine) = self.nodes[node].engine.as_mut() {
                        engine.handle_input(now, conn, &bytes);
                    }
                }
            }
        }
    }
}
