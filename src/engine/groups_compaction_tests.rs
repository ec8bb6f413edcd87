//! Incremental compaction of the group journal (`groups_compaction.rs`): a turn writes at most
//! `groups.journal_compact_entries_per_turn` entries of the snapshot, and, whatever the groups
//! do while a compaction runs and wherever the server crashes, the journal loads as a journal
//! that was never compacted does (a model test against a reference store that gets every
//! record and no compaction).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::engine::groups::{default_settings, Groups};
use crate::protocol::{GroupAck, GroupAdmin, GroupAdminAction, JoinGroup};
use crate::random::SeededRng;
use crate::storage::groups::{GroupRecord, GroupStore, MemoryGroupStore};
use crate::storage::{Offset, StorageError};
use crate::time::MonotonicMs;

/// What the test store saw: snapshot entries per turn (per `sync`) and compactions.
#[derive(Debug, Default)]
struct Seen {
    /// Snapshot entries appended since the last sync.
    entries: usize,
    /// Per sync, the snapshot entries of its turn.
    per_turn: Vec<usize>,
    begun: usize,
    finished: usize,
}

/// The engine's store: a compacting `MemoryGroupStore`, and beside it a reference that gets
/// every record the engine appends and every sync, but never a compaction.
struct TeeStore {
    store: MemoryGroupStore,
    reference: MemoryGroupStore,
    seen: Arc<Mutex<Seen>>,
}

/// The entries a snapshot record counts for (`Group::snapshot_pieces`).
fn entries(record: &GroupRecord) -> usize {
    match record {
        GroupRecord::Ack { offsets, .. } => offsets.len(),
        _ => 1,
    }
}

impl TeeStore {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("not poisoned")
    }

    fn turn_done(&self) {
        let mut seen = self.seen();
        let entries = std::mem::take(&mut seen.entries);
        seen.per_turn.push(entries);
    }
}

impl GroupStore for TeeStore {
    fn load(
        &mut self,
        apply: &mut dyn FnMut(GroupRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.reference.load(&mut |_| Ok(()))?;
        self.store.load(apply)
    }
    fn append(&mut self, record: &GroupRecord) {
        self.store.append(record);
        self.reference.append(record);
    }
    fn start_sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.reference.start_sync(now)?;
        self.store.start_sync(now)
    }
    fn sync(&mut self, now: MonotonicMs) -> Result<(), StorageError> {
        self.turn_done();
        self.reference.sync(now)?;
        self.store.sync(now)
    }
    fn size_bytes(&self) -> u64 {
        self.store.size_bytes()
    }
    fn rewrite(&mut self, records: &[GroupRecord]) -> Result<(), StorageError> {
        self.seen().entries += records.iter().map(entries).sum::<usize>();
        self.store.rewrite(records)
    }
    fn compaction_begin(&mut self) -> Result<(), StorageError> {
        self.seen().begun += 1;
        self.store.compaction_begin()
    }
    fn compaction_covers(&self, group: &str) -> bool {
        self.store.compaction_covers(group)
    }
    fn compaction_append(&mut self, record: &GroupRecord) {
        self.seen().entries += entries(record);
        self.store.compaction_append(record);
    }
    fn compaction_finish(&mut self) {
        self.store.compaction_finish();
    }
    fn compaction_poll(&mut self) -> Option<Result<u64, StorageError>> {
        let outcome = self.store.compaction_poll();
        self.seen().finished += usize::from(outcome.is_some());
        outcome
    }
}

/// An engine on `log` whose group store is a `TeeStore` on what `store` and `reference`
/// synced; the compaction limits of the test.
fn harness_on_tee(
    log: MemoryLog,
    store: &MemoryGroupStore,
    reference: &MemoryGroupStore,
    seen: &Arc<Mutex<Seen>>,
    limits: impl FnOnce(&mut Config),
) -> Harness {
    let mut harness = Harness::with_log(log, limits);
    let tee = TeeStore {
        store: store.reopen(),
        reference: reference.reopen(),
        seen: Arc::clone(seen),
    };
    harness
        .engine
        .load_groups(Box::new(tee))
        .expect("memory stores load");
    harness
}

/// What a start-up on `store`'s synced bytes recovers, per group, as text: everything a
/// group's behaviour after a restart depends on. Delivery counts of events that cannot be
/// delivered again (acknowledged, parked, below the floor or replayed: a replay restarts the
/// count) are left out: a snapshot does not carry them, the journal it replaces may.
fn recovered(store: &MemoryGroupStore, limits: &crate::config::GroupLimits) -> Vec<String> {
    let groups = Groups::load(Box::new(store.reopen()), 4096, default_settings(limits))
        .expect("the journal loads");
    groups
        .groups
        .iter()
        .map(|(name, group)| {
            let floor = group.floor_written;
            let counts: Vec<(Offset, u32)> = (group.recovered_deliveries.iter())
                .filter(|(offset, _)| {
                    **offset >= floor
                        && !group.acked.contains(offset)
                        && !group.parked.contains_key(offset)
                        && !group.pending.contains_key(offset)
                })
                .map(|(offset, count)| (*offset, *count))
                .collect();
            let pending: Vec<(Offset, EventId, u32)> = (group.pending.iter())
                .map(|(offset, p)| (*offset, p.id, p.deliveries))
                .collect();
            format!(
                "{name}: glob {} owner {:?} {:?} filter {:?} floor {floor} next {} acked {:?} \
                 parked {:?} pending {pending:?} deliveries {counts:?}",
                group.glob_text,
                group.owner,
                group.settings,
                group.filter,
                group.next,
                group.acked,
                group.parked,
            )
        })
        .collect()
}

fn join(id: u32, group: &str, credit: u32) -> ClientFrame {
    ClientFrame::JoinGroup(JoinGroup {
        subscription_id: id,
        group: group.into(),
        glob: "/jobs/**".into(),
        start: StartPosition::Beginning,
        credit,
        ack_timeout_ms: 100,
        max_deliveries: 2,
        max_in_flight: 40,
    })
}

fn group_ack(ids: Vec<EventId>, nack: bool, delay_ms: u32) -> ClientFrame {
    let ack = GroupAck {
        subscription_id: 1,
        delay_ms,
        ids,
    };
    match nack {
        true => ClientFrame::GroupNack(ack),
        false => ClientFrame::GroupAck(ack),
    }
}

fn admin(group: &str, action: GroupAdminAction) -> ClientFrame {
    ClientFrame::GroupAdmin(GroupAdmin {
        group: group.into(),
        action,
    })
}

/// Produces `count` events on `/jobs/<n>` (and one on `/other`, which no group matches).
fn produce_batch(harness: &mut Harness, producer: ConnId, op_id: u64, count: usize) {
    let mut events: Vec<NewEvent> = (0..count)
        .map(|n| NewEvent {
            namespace: format!("/jobs/{n}"),
            parent_id: None,
            data: vec![b'x'; 10],
        })
        .collect();
    events.push(NewEvent {
        namespace: "/other".into(),
        parent_id: None,
        data: vec![b'y'],
    });
    harness.send(
        producer,
        ClientFrame::ProduceBatch(ProduceBatch { op_id, events }),
    );
}

/// attack round 5 F2: a compaction wrote and synced the whole snapshot in one turn (a stall
/// of 38 ms with 4 groups x 100,000 pending events). Now no turn writes more than
/// `groups.journal_compact_entries_per_turn` entries of it, and the result loads as the
/// journal it replaced.
#[test]
fn a_turn_writes_at_most_its_share_of_a_compaction() {
    let store = MemoryGroupStore::new();
    let reference = MemoryGroupStore::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let share = 100;
    let mut harness = harness_on_tee(MemoryLog::new(), &store, &reference, &seen, |c| {
        c.groups.journal_compact_entries_per_turn = share;
        c.groups.journal_compact_bytes = 1;
    });
    // No compaction until the state is built (four times the last snapshot: never).
    harness.engine.groups.snapshot_bytes = u64::MAX / 8;
    let producer = harness.client();
    produce_batch(&mut harness, producer, 1, 3000);
    harness.turn();
    // 2000 events parked (each delivered twice and refused twice), 40 in flight.
    let member = harness.client();
    harness.send(member, join(1, "workers", 100_000));
    let mut turns = 0;
    while harness.engine.groups.groups["workers"].parked.len() < 2000 {
        turns += 1;
        assert!(turns < 1000, "no progress");
        harness.turn();
        let ids = ids_of(&harness.received(member), 1);
        harness.send(member, group_ack(ids, true, 0));
    }
    harness.turn();
    seen.lock().expect("lock").per_turn.clear();
    // Compact now.
    harness.engine.groups.snapshot_bytes = 0;
    let mut turns = 0;
    while seen.lock().expect("lock").finished == 0 {
        turns += 1;
        assert!(turns < 1000, "the compaction does not finish");
        harness.turn();
    }
    // Entries are counted at the sync that ends their turn.
    harness.turn();
    let seen = seen.lock().expect("lock");
    let most = seen.per_turn.iter().copied().max().unwrap_or(0);
    let total: usize = seen.per_turn.iter().sum();
    assert!(
        most <= share,
        "a turn wrote {most} snapshot entries; the limit is {share} (entries per turn: {:?})",
        seen.per_turn
    );
    assert!(total >= 2000, "the snapshot had {total} entries");
    assert_eq!(
        recovered(&store, &harness.engine.config.groups),
        recovered(&reference, &harness.engine.config.groups),
        "the compacted journal loads as the journal it replaced"
    );
}

/// A member of the model test: its connection and the events it holds.
struct ModelMember {
    conn: ConnId,
    held: Vec<EventId>,
}

/// One seed of the model test: random group traffic and administration over `steps` turns,
/// compactions started and finished by the journal's growth at any turn (a few entries a
/// turn, so that traffic runs inside them), crashes at random turns. After every turn the
/// journal of the compacting store must load as the reference's does (a crash there).
fn model_run(seed: u64, steps: usize) -> (usize, usize, usize) {
    let mut rng = SeededRng::new(seed);
    let store = MemoryGroupStore::new();
    let reference = MemoryGroupStore::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let limits = |c: &mut Config| {
        c.groups.journal_compact_bytes = 2048;
        c.groups.journal_compact_entries_per_turn = 16;
        c.groups.parked_max = 200;
    };
    let mut harness = harness_on_tee(MemoryLog::new(), &store, &reference, &seen, limits);
    let mut producer = harness.client();
    let mut members: BTreeMap<String, Vec<ModelMember>> = BTreeMap::new();
    let names = ["alpha", "beta", "gamma"];
    let mut op_id = 0;
    let mut crashes_in_compaction = 0;
    for step in 0..steps {
        let name = names[rng.index(names.len())];
        match rng.below(12) {
            0 | 1 => {
                op_id += 1;
                let count = 1 + rng.index(30);
                produce_batch(&mut harness, producer, op_id, count);
            }
            2 => {
                let conn = harness.client();
                let credit = 1 + rng.below(30) as u32;
                harness.send(conn, join(1, name, credit));
                members.entry(name.into()).or_default().push(ModelMember {
                    conn,
                    held: Vec::new(),
                });
            }
            3..=5 => {
                // A member acknowledges or refuses some of what it holds, and asks for more.
                if let Some(list) = members.get_mut(name).filter(|l| !l.is_empty()) {
                    let index = rng.index(list.len());
                    let member = &mut list[index];
                    let held = &mut member.held;
                    let taken = rng.index(held.len() + 1);
                    let ids: Vec<EventId> = held.drain(..taken).collect();
                    let nack = rng.chance(300);
                    let delay = if rng.chance(500) { 0 } else { 50 };
                    let conn = member.conn;
                    if !ids.is_empty() {
                        harness.send(conn, group_ack(ids, nack, delay));
                    }
                    let count = 1 + rng.below(20) as u32;
                    harness.send(
                        conn,
                        ClientFrame::Credit {
                            subscription_id: 1,
                            count,
                        },
                    );
                }
            }
            6 => {
                // A member goes: its connection closes.
                if let Some(list) = members.get_mut(name).filter(|l| !l.is_empty()) {
                    let member = list.remove(rng.index(list.len()));
                    harness.engine.handle_closed(member.conn);
                }
            }
            7 | 8 => harness.now.monotonic.0 += 20 + rng.below(200),
            9 => {
                let admin_conn = harness.client();
                harness.send(admin_conn, admin(name, GroupAdminAction::ReplayParked));
            }
            10 => {
                let admin_conn = harness.client();
                let action = match rng.below(3) {
                    0 => GroupAdminAction::Reset(StartPosition::Beginning),
                    1 => GroupAdminAction::Reset(StartPosition::End),
                    _ => GroupAdminAction::Delete,
                };
                // Refused while the group has members (or does not exist): that is fine.
                harness.send(admin_conn, admin(name, action));
            }
            _ => {
                let admin_conn = harness.client();
                let settings = crate::protocol::GroupSettings {
                    ack_timeout_ms: 50 + rng.below(200) as u32,
                    max_deliveries: 1 + rng.below(3) as u16,
                    max_in_flight: 0,
                };
                harness.send(
                    admin_conn,
                    admin(name, GroupAdminAction::UpdateSettings(settings)),
                );
            }
        }
        harness.turn();
        harness.engine.check_invariants();
        for list in members.values_mut() {
            for member in list.iter_mut() {
                let frames = harness.received(member.conn);
                member.held.extend(ids_of(&frames, 1));
            }
        }
        let config = harness.engine.config.groups.clone();
        assert_eq!(
            recovered(&store, &config),
            recovered(&reference, &config),
            "seed {seed}, turn {step}: the compacted journal loads otherwise than the \
             journal without compaction"
        );
        if rng.chance(20) {
            // A compaction starts now if the journal has its minimum size (2 KiB), rather
            // than only at four times the last snapshot.
            harness.engine.groups.snapshot_bytes = 0;
        }
        if rng.chance(30) {
            crashes_in_compaction += usize::from(harness.engine.groups.compaction.is_some());
            let log = harness.engine.into_log();
            harness = harness_on_tee(log, &store, &reference, &seen, limits);
            producer = harness.client();
            members.clear();
        }
    }
    let seen = seen.lock().expect("lock");
    (seen.begun, seen.finished, crashes_in_compaction)
}

/// The model test: seeds of random group traffic, administration, compactions and crashes.
#[test]
fn a_compacted_journal_loads_as_the_journal_without_compaction() {
    let mut totals = (0, 0, 0);
    for seed in 1..=12 {
        let (begun, finished, crashes) = model_run(seed, 600);
        totals = (totals.0 + begun, totals.1 + finished, totals.2 + crashes);
    }
    let (begun, finished, crashes) = totals;
    assert!(
        finished >= 10 && crashes >= 3 && begun >= finished,
        "the model test must see compactions finish and crashes during them: {begun} begun, \
         {finished} finished, {crashes} crashes during one"
    );
}

/// The engine keeps turning while a compaction has pieces left (`has_pending_work`), and
/// not once they are all written (the swap runs on storage's sync thread).
#[test]
fn a_running_compaction_keeps_the_reactor_turning() {
    let store = MemoryGroupStore::new();
    let reference = MemoryGroupStore::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut harness = harness_on_tee(MemoryLog::new(), &store, &reference, &seen, |c| {
        c.groups.journal_compact_entries_per_turn = 16;
        c.groups.journal_compact_bytes = 1;
    });
    harness.engine.groups.snapshot_bytes = u64::MAX / 8;
    let producer = harness.client();
    produce_batch(&mut harness, producer, 1, 200);
    let member = harness.client();
    harness.send(member, join(1, "workers", 100));
    harness.turn();
    let ids = ids_of(&harness.received(member), 1);
    // Acknowledge every other one: acked offsets above the floor for the snapshot.
    let every_other: Vec<EventId> = ids.iter().copied().step_by(2).skip(1).collect();
    harness.send(member, group_ack(every_other, false, 0));
    harness.turn();
    harness.engine.handle_closed(member);
    harness.turn();
    assert!(!harness.engine.has_pending_work());
    harness.engine.groups.snapshot_bytes = 0;
    harness.turn();
    let mut turns = 1;
    while harness.engine.groups.compaction_has_work() {
        assert!(harness.engine.has_pending_work(), "turn {turns}");
        harness.turn();
        turns += 1;
    }
    assert!(turns >= 2, "{turns} turns");
    assert!(!harness.engine.has_pending_work());
    let config = harness.engine.config.groups.clone();
    // The swap is storage's: the memory store does it at the second sync after the finish.
    for _ in 0..2 {
        harness.turn();
    }
    assert_eq!(seen.lock().expect("lock").finished, 1);
    assert_eq!(recovered(&store, &config), recovered(&reference, &config));
}
