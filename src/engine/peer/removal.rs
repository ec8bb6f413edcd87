//! Persisted membership and member removal: the member list of the data directory, the
//! Members report, ChangeMember (remove a member, add a removed one back) and the
//! PeerMembership records that carry those changes to every member.
//!
//! Each node keeps one record per member it has shaken hands with and per removed member
//! (`Cluster::records`), persisted whole on every change (`Log::store_members`). A removal or
//! an addition raises the record's version by one; peers keep, per actor, the record that
//! supersedes the other (a higher version; at the same version a removal), so concurrent
//! changes on two nodes converge to the same outcome everywhere. A removed member is out of
//! `Cluster::members`: its clock no longer holds id order back, it no longer counts as a
//! replica, the catch-up hold no longer waits for it, and its handshakes are refused with
//! `MemberRemoved` until it is added back.

use std::net::SocketAddr;

use super::MemberInfo;
use crate::engine::{ConnId, Engine};
use crate::event::ActorId;
use crate::protocol::{
    ChangeMember, ErrorCode, ErrorScope, MemberEntry, MemberOp, MemberState, MembershipRecord,
    MembershipState, PeerFrame,
};
use crate::storage::{Log, MemberRecord, StorageError};

fn to_wire(record: &MemberRecord) -> MembershipRecord {
    MembershipRecord {
        actor_id: record.actor.0,
        addr: record.addr.clone(),
        removed: record.removed,
        version: record.version,
    }
}

fn from_wire(record: &MembershipRecord) -> MemberRecord {
    // An address a member list file could not hold is kept out (it is only informative:
    // members are dialed at the addresses their handshakes advertise).
    let addr = if record.addr.len() <= crate::storage::MEMBER_ADDR_LENGTH_MAX {
        record.addr.clone()
    } else {
        String::new()
    };
    MemberRecord {
        actor: ActorId(record.actor_id),
        addr,
        removed: record.removed,
        version: record.version,
    }
}

/// True when `new` replaces `old` for the same actor.
fn supersedes(new: &MemberRecord, old: Option<&MemberRecord>) -> bool {
    old.is_none_or(|old| (new.version, new.removed) > (old.version, old.removed))
}

impl<L: Log> Engine<L> {
    /// Start-up: the member list of the data directory. Members are waited for (id order,
    /// the catch-up hold) and dialed at their last address; removed members are refused.
    pub(in crate::engine) fn load_members(&mut self) {
        let own = self.config.actor_id;
        for record in self.log.stored_members() {
            if record.actor == own {
                continue;
            }
            self.cluster.records.insert(record.actor, record.clone());
            let addr = record.addr.parse::<SocketAddr>().ok();
            if record.removed {
                if let Some(addr) = addr {
                    self.cluster.targets.remove(&addr);
                    log::info!(
                        "member {} at {addr} was removed from the cluster: not dialing it",
                        record.actor
                    );
                }
            } else if let Some(addr) = addr {
                if self.cluster.members.len() < self.config.cluster.members_max {
                    self.cluster
                        .members
                        .insert(record.actor, MemberInfo::disconnected(addr, 0));
                    if !self.add_target(addr, Some(record.actor)) {
                        log::warn!(
                            "not dialing member {} at {addr}: the dial table is full",
                            record.actor
                        );
                    }
                }
            }
        }
    }

    /// True when `actor` was removed from the cluster and not added back.
    pub(in crate::engine) fn is_removed(&self, actor: ActorId) -> bool {
        self.cluster.records.get(&actor).is_some_and(|r| r.removed)
    }

    /// The refusal of a handshake from a removed member.
    pub(super) fn removed_refusal(&self, actor: ActorId) -> Option<String> {
        let record = self.cluster.records.get(&actor).filter(|r| r.removed)?;
        Some(format!(
            "member {actor} was removed from the cluster (membership version {}): a removed \
             member is refused until it is added back (flo-client cluster add {actor} on any \
             member); to join as a new member, start with a new --actor-id and an empty data \
             directory",
            record.version
        ))
    }

    /// A member completed a handshake: remember it in the data directory (new, or at a new
    /// address). A write that fails is logged; the member is remembered in memory.
    pub(super) fn persist_member(&mut self, actor: ActorId, addr: SocketAddr) {
        let addr = addr.to_string();
        let record = self.cluster.records.get(&actor);
        if record.is_some_and(|r| r.addr == addr) {
            return;
        }
        let version = record.map_or(0, |r| r.version);
        let record = MemberRecord {
            actor,
            addr,
            removed: false,
            version,
        };
        self.cluster.records.insert(actor, record);
        if let Err(error) = self.store_records() {
            log::error!("cannot persist the member list: {error}");
        }
    }

    fn store_records(&mut self) -> Result<(), StorageError> {
        let records: Vec<MemberRecord> = self.cluster.records.values().cloned().collect();
        self.log.store_members(&records)
    }

    /// This node, its members and the removed ones, for a Members reply.
    pub(in crate::engine) fn member_entries(&self) -> Vec<MemberEntry> {
        let own_addr = self.config.advertised_addr.map(|a| a.to_string());
        let mut entries = vec![MemberEntry {
            actor_id: self.config.actor_id.0,
            state: MembershipState::Itself,
            version: 0,
            addr: own_addr.unwrap_or_default(),
        }];
        for (actor, member) in &self.cluster.members {
            let state = match member.conn {
                Some(_) => MembershipState::Connected,
                None => match self.target_state_of(member.addr) {
                    MemberState::Connected | MemberState::Connecting => MembershipState::Connecting,
                    MemberState::BackingOff => MembershipState::BackingOff,
                },
            };
            entries.push(MemberEntry {
                actor_id: actor.0,
                state,
                version: self.cluster.records.get(actor).map_or(0, |r| r.version),
                addr: member.addr.to_string(),
            });
        }
        for record in self.cluster.records.values().filter(|r| r.removed) {
            entries.push(MemberEntry {
                actor_id: record.actor.0,
                state: MembershipState::Removed,
                version: record.version,
                addr: record.addr.clone(),
            });
        }
        entries
    }

    /// ChangeMember from an admin client: validate, apply (durably) and tell every peer;
    /// answered with the Members report (held in order like Status).
    pub(in crate::engine) fn on_change_member(&mut self, conn: ConnId, change: ChangeMember) {
        let actor = ActorId(change.actor_id);
        let record = match self.member_change(actor, change.op) {
            Ok(record) => record,
            Err((code, message)) => {
                return self.send_error(conn, ErrorScope::Connection, code, &message);
            }
        };
        if let Some(record) = record {
            match self.apply_records(vec![record.clone()]) {
                Ok(_) => self.broadcast_membership(&[record], None),
                Err(error) => {
                    let message = format!("cannot persist the member list: {error}");
                    log::error!("{conn}: {message}");
                    let code = ErrorCode::StorageFailure;
                    return self.send_error(conn, ErrorScope::Connection, code, &message);
                }
            }
        }
        self.on_members_request(conn);
    }

    /// The record a ChangeMember writes (`None`: nothing to change, the member is already
    /// in the asked state), or why it is refused.
    fn member_change(
        &self,
        actor: ActorId,
        op: MemberOp,
    ) -> Result<Option<MemberRecord>, (ErrorCode, String)> {
        let invalid = |message: String| Err((ErrorCode::InvalidMemberChange, message));
        if actor == self.config.actor_id {
            return invalid(format!(
                "actor {actor} is this node: a node cannot {} itself; run the command on \
                 another member",
                if op == MemberOp::Remove {
                    "remove"
                } else {
                    "add"
                }
            ));
        }
        let record = self.cluster.records.get(&actor);
        let member = self.cluster.members.get(&actor);
        // Versions from peers are bounded relative to the known one
        // (`membership_version_ahead_max`), so only a members file damaged by hand or written
        // before that bound can hold one at the end of the range.
        let Some(version) = record.map_or(0, |r| r.version).checked_add(1) else {
            return invalid(format!(
                "the membership record of actor {actor} is at the highest version; no change \
                 can supersede it (it can only have been written before peers' versions were bounded: \
                 delete the members file of the data directory of every member holding it, \
                 members are learned again from their peers)"
            ));
        };
        let addr = member
            .map(|m| m.addr.to_string())
            .or_else(|| record.map(|r| r.addr.clone()))
            .unwrap_or_default();
        match op {
            MemberOp::Remove if record.is_some_and(|r| r.removed) => Ok(None),
            MemberOp::Remove if member.is_none() && record.is_none() => invalid(format!(
                "actor {actor} is not a member this node knows (flo-client cluster members \
                 lists them)"
            )),
            MemberOp::Remove => {
                let removed = self.cluster.records.values().filter(|r| r.removed).count();
                if removed + 1 >= self.config.cluster.actors_max {
                    return invalid(format!(
                        "this node already remembers {removed} removed members; the limit is \
                         actors_max ({})",
                        self.config.cluster.actors_max
                    ));
                }
                Ok(Some(MemberRecord {
                    actor,
                    addr,
                    removed: true,
                    version,
                }))
            }
            MemberOp::Add if record.is_some_and(|r| r.removed) => Ok(Some(MemberRecord {
                actor,
                addr,
                removed: false,
                version,
            })),
            MemberOp::Add if member.is_some() => Ok(None),
            MemberOp::Add => invalid(format!(
                "actor {actor} was never removed; a new member joins by being started with \
                 --peer-addr of a running member"
            )),
        }
    }

    /// PeerMembership from a peer: keep the records that supersede this node's, and pass
    /// those on to the other peers.
    pub(super) fn on_peer_membership(
        &mut self,
        conn: ConnId,
        from: ActorId,
        records: Vec<MembershipRecord>,
    ) -> bool {
        let own = self.config.actor_id;
        let mut incoming = Vec::new();
        for record in records.iter().map(from_wire) {
            if record.actor == own {
                if record.removed {
                    log::error!(
                        "{conn}: peer {from} says this node ({own}) was removed from the \
                         cluster (version {}); its members refuse it until it is added back",
                        record.version
                    );
                }
                continue;
            }
            let known = self.cluster.records.get(&record.actor);
            let known_version = known.map_or(0, |r| r.version);
            let ahead_max = self.config.cluster.membership_version_ahead_max;
            if record.version > known_version.saturating_add(ahead_max) {
                // A version far beyond any this node knows cannot come from `cluster remove`
                // or `cluster add` (each raises it by one); accepted, it could reach the end
                // of the range, where no later change supersedes it (attack round 3, F6).
                log::warn!(
                    "{conn}: ignoring the membership record of actor {} from peer {from}: its \
                     version {} is more than {ahead_max} above the version {known_version} this \
                     node holds",
                    record.actor,
                    record.version
                );
                continue;
            }
            if supersedes(&record, known) {
                incoming.push(record);
            }
        }
        if incoming.is_empty() {
            return true;
        }
        match self.apply_records(incoming) {
            Ok(applied) => {
                self.broadcast_membership(&applied, Some(conn));
                true
            }
            Err(error) => {
                let message = format!("cannot persist the member list: {error}");
                log::error!("{conn}: {message}");
                self.close_with_error(conn, ErrorCode::StorageFailure, &message)
            }
        }
    }

    /// Keeps `records` (each supersedes this node's record of its actor), persists the list
    /// once, then acts on them. Records past `actors_max` are ignored (logged). Returns the
    /// records applied; on a write failure nothing changes.
    fn apply_records(
        &mut self,
        records: Vec<MemberRecord>,
    ) -> Result<Vec<MemberRecord>, StorageError> {
        let before = self.cluster.records.clone();
        let mut applied = Vec::new();
        for record in records {
            let known = self.cluster.records.contains_key(&record.actor);
            if !known && self.cluster.records.len() + 1 >= self.config.cluster.actors_max {
                log::warn!(
                    "ignoring the membership record of actor {}: this node keeps at most {} records",
                    record.actor,
                    self.config.cluster.actors_max
                );
                continue;
            }
            self.cluster.records.insert(record.actor, record.clone());
            applied.push(record);
        }
        if let Err(error) = self.store_records() {
            self.cluster.records = before;
            return Err(error);
        }
        for record in &applied {
            if record.removed {
                self.drop_removed_member(record);
            } else {
                self.readmit_member(record);
            }
        }
        Ok(applied)
    }

    /// A member was removed: forget it as a member (clock, replica count, catch-up hold),
    /// stop dialing it and close its connection.
    fn drop_removed_member(&mut self, record: &MemberRecord) {
        let actor = record.actor;
        log::warn!(
            "member {actor} ({}) is removed from the cluster (membership version {}): it no \
             longer holds id order back or counts as a replica, and its handshakes are refused",
            record.addr,
            record.version
        );
        let member = self.cluster.members.remove(&actor);
        let addrs: Vec<SocketAddr> = self
            .cluster
            .targets
            .iter()
            .filter(|(addr, t)| {
                t.actor == Some(actor) || Some(**addr) == member.as_ref().map(|m| m.addr)
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in addrs {
            self.cluster.targets.remove(&addr);
        }
        if let Some(conn) = member.and_then(|m| m.conn) {
            let message = self.removed_refusal(actor).unwrap_or_default();
            self.close_with_error(conn, ErrorCode::MemberRemoved, &message);
        }
        // The stable clock may have moved past events the removed member held back.
        self.wake_ordered();
        let members = self.cluster.members.len() + 1;
        if usize::from(self.config.cluster.min_replicas) > members {
            log::warn!(
                "--min-replicas {} is above the {members} members left: every produce is refused (NotReady) until a member joins",
                self.config.cluster.min_replicas
            );
        }
    }

    /// A removed member was added back: it is a member again, waited for and dialed.
    fn readmit_member(&mut self, record: &MemberRecord) {
        log::info!(
            "member {} ({}) is added back to the cluster (membership version {})",
            record.actor,
            record.addr,
            record.version
        );
        let Ok(addr) = record.addr.parse::<SocketAddr>() else {
            return;
        };
        let members = &self.cluster.members;
        if !members.contains_key(&record.actor) && members.len() < self.config.cluster.members_max {
            let member = MemberInfo::disconnected(addr, self.now_ms);
            self.cluster.members.insert(record.actor, member);
        }
        if !self.add_target(addr, Some(record.actor)) {
            log::warn!(
                "not dialing member {} at {addr}: the dial table is full",
                record.actor
            );
        }
    }

    /// Sends `records` to every connected peer but `except`.
    fn broadcast_membership(&mut self, records: &[MemberRecord], except: Option<ConnId>) {
        if records.is_empty() {
            return;
        }
        let frame = PeerFrame::PeerMembership(records.iter().map(to_wire).collect());
        let conns: Vec<ConnId> = self
            .cluster
            .members
            .values()
            .filter_map(|m| m.conn)
            .filter(|c| Some(*c) != except)
            .collect();
        for conn in conns {
            self.send(conn, &frame);
        }
    }

    /// After a handshake: every removal and addition this node holds, so a member that was
    /// away learns them.
    pub(super) fn send_membership(&mut self, conn: ConnId) {
        let changed: Vec<MembershipRecord> = self
            .cluster
            .records
            .values()
            .filter(|r| r.version > 0)
            .map(to_wire)
            .collect();
        if !changed.is_empty() {
            self.send(conn, &PeerFrame::PeerMembership(changed));
        }
    }
}
