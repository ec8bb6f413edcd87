//! Compaction of the group journal, a few pieces a turn (docs/consumers.md, "Compaction").
//!
//! Once the journal has grown past `groups.journal_compact_bytes` and four times the last
//! snapshot, the engine writes a snapshot of every group into a new journal that storage
//! builds beside the old one, at most `groups.journal_compact_entries_per_turn` entries a
//! turn: per group its Create, Settings and Floor, then its acknowledged offsets above the
//! floor, delivery counts, parked events and replayed events below the floor, each walked
//! in offset order from where the last turn stopped. Meanwhile storage writes every record
//! of a group whose snapshot began to both journals (`storage::group_compaction` says why the
//! result loads as the old journal does). When the last group is written, storage's sync
//! thread syncs the new journal and renames it over the old one; the reactor never waits for
//! it (a whole snapshot written and synced in one turn had stalled every client for 38 ms
//! with 4 groups x 100,000 pending events, attack round 5 F2, and more with more state).

use std::ops::Bound;

use super::groups::{Group, Groups};
use super::Engine;
use crate::storage::groups::{GroupRecord, ACK_OFFSETS_PER_RECORD_MAX};
use crate::storage::{Log, Offset};

/// Where a compaction is: the group whose snapshot is being written and its part.
pub(super) struct Compaction {
    /// `None` before the first group.
    group: Option<String>,
    part: Part,
    /// Every group is written: storage is putting the new journal in place.
    finished: bool,
}

/// The part of a group's snapshot to write next, from the offset where the last turn stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Create, Settings and Floor.
    Head,
    Acked(Offset),
    /// Delivery counts of pending events.
    Deliveries(Offset),
    /// Delivery counts recovered at start-up for events not delivered since.
    Recovered(Offset),
    Parked(Offset),
    /// Replayed parked events pending below the floor.
    Replays(Offset),
    Done,
}

/// The records of a group's Create, Settings and Floor (the head of its snapshot).
const HEAD_ENTRIES: usize = 3;

/// Calls `each` for the entries of `entries` while `budget` lasts, one entry each; returns
/// the offset of the first entry left (`None`: all were taken).
fn walk<'a, V: 'a>(
    entries: impl Iterator<Item = (&'a Offset, V)>,
    budget: &mut usize,
    mut each: impl FnMut(Offset, V),
) -> Option<Offset> {
    for (&offset, value) in entries {
        if *budget == 0 {
            return Some(offset);
        }
        *budget -= 1;
        each(offset, value);
    }
    None
}

impl Group {
    /// Hands `out` the records of this group's snapshot from `part` on, at most `budget`
    /// entries (a record each; an Ack record one per offset; a pending event looked at counts
    /// whether it needs a record or not). Returns the part to go on from (`Done`: all of it).
    /// Each piece is the group's state now, so pieces taken turns apart add up to its state at
    /// the last one, given the records appended in between (`storage::group_compaction`).
    pub(super) fn snapshot_pieces(
        &self,
        name: &str,
        mut part: Part,
        budget: &mut usize,
        out: &mut dyn FnMut(GroupRecord),
    ) -> Part {
        let group = || name.to_string();
        loop {
            let left = match part {
                Part::Head => {
                    if *budget < HEAD_ENTRIES {
                        // The head does not fit: the turn's share ends here.
                        *budget = 0;
                        return part;
                    }
                    *budget -= HEAD_ENTRIES;
                    let floor = self.floor();
                    out(GroupRecord::Create {
                        group: group(),
                        glob: self.glob_text.clone(),
                        start: floor,
                        filter: self.filter.clone(),
                        owner: self.owner.clone(),
                    });
                    out(self.settings_record(name));
                    out(GroupRecord::Floor {
                        group: group(),
                        floor,
                    });
                    part = Part::Acked(floor);
                    continue;
                }
                Part::Acked(from) => {
                    let from = from.max(self.floor());
                    let mut offsets = Vec::new();
                    let mut room = (*budget).min(ACK_OFFSETS_PER_RECORD_MAX);
                    let left = walk(
                        self.acked.range(from..).map(|o| (o, ())),
                        &mut room,
                        |o, ()| offsets.push(o),
                    );
                    *budget -= offsets.len();
                    if !offsets.is_empty() {
                        out(GroupRecord::Ack {
                            group: group(),
                            offsets,
                        });
                    }
                    left.map(Part::Acked)
                }
                Part::Deliveries(from) => {
                    let entries = self.pending.range(from..);
                    walk(entries, budget, |offset, pending| {
                        if pending.deliveries > 1 {
                            out(GroupRecord::Deliveries {
                                group: group(),
                                offset,
                                count: pending.deliveries,
                            });
                        }
                    })
                    .map(Part::Deliveries)
                }
                Part::Recovered(from) => {
                    let entries = self.recovered_deliveries.range(from..);
                    walk(entries, budget, |offset, &count| {
                        out(GroupRecord::Deliveries {
                            group: group(),
                            offset,
                            count,
                        })
                    })
                    .map(Part::Recovered)
                }
                Part::Parked(from) => walk(self.parked.range(from..), budget, |offset, &id| {
                    out(GroupRecord::Park {
                        group: group(),
                        offset,
                        id,
                    })
                })
                .map(Part::Parked),
                Part::Replays(from) => {
                    // A reset may have moved the floor below where the last turn stopped.
                    let floor = self.floor();
                    let entries = self.pending.range(from.min(floor)..floor);
                    walk(entries, budget, |offset, pending| {
                        out(GroupRecord::Replay {
                            group: group(),
                            offset,
                            id: pending.id,
                        })
                    })
                    .map(Part::Replays)
                }
                Part::Done => return Part::Done,
            };
            part = match (left, part) {
                (Some(left), _) => return left,
                (None, Part::Acked(_)) => Part::Deliveries(Offset(0)),
                (None, Part::Deliveries(_)) => Part::Recovered(Offset(0)),
                (None, Part::Recovered(_)) => Part::Parked(Offset(0)),
                (None, Part::Parked(_)) => Part::Replays(Offset(0)),
                (None, Part::Replays(_) | Part::Head | Part::Done) => Part::Done,
            };
        }
    }
}

impl Groups {
    #[cfg(test)]
    pub(super) fn snapshot_for_tests(&self) -> Vec<GroupRecord> {
        self.snapshot()
    }

    /// The whole snapshot at once (a start-up rewrite).
    pub(super) fn snapshot(&self) -> Vec<GroupRecord> {
        let mut records = Vec::new();
        for (name, group) in &self.groups {
            let mut budget = usize::MAX;
            group.snapshot_pieces(name, Part::Head, &mut budget, &mut |r| records.push(r));
        }
        records
    }

    /// True while a compaction has pieces left to write (the reactor keeps turning for them).
    pub(super) fn compaction_has_work(&self) -> bool {
        self.compaction.as_ref().is_some_and(|c| !c.finished)
    }

    /// Writes the next pieces of the snapshot, at most `budget` entries; asks storage to put
    /// the new journal in place once every group is written.
    fn compaction_step(&mut self, mut budget: usize) {
        let Groups {
            store,
            groups,
            compaction,
            ..
        } = self;
        let Some(compaction) = compaction.as_mut().filter(|c| !c.finished) else {
            return;
        };
        while budget > 0 {
            let current = compaction.group.as_ref().and_then(|name| groups.get(name));
            if let (Some(group), Some(name)) = (current, &compaction.group) {
                if compaction.part != Part::Done {
                    compaction.part =
                        group.snapshot_pieces(name, compaction.part, &mut budget, &mut |record| {
                            store.compaction_append(&record)
                        });
                    continue;
                }
            }
            // The next group whose snapshot has not begun (one created since the compaction
            // began is in the new journal already, from its Create on).
            let from = match &compaction.group {
                Some(name) => Bound::Excluded(name.as_str()),
                None => Bound::Unbounded,
            };
            let next = groups
                .range::<str, _>((from, Bound::Unbounded))
                .map(|(name, _)| name)
                .find(|name| !store.compaction_covers(name));
            match next {
                Some(name) => {
                    compaction.group = Some(name.clone());
                    compaction.part = Part::Head;
                }
                None => {
                    store.compaction_finish();
                    compaction.finished = true;
                    return;
                }
            }
        }
    }
}

impl<L: Log> Engine<L> {
    /// Takes the outcome of a finished compaction; starts one once the journal has grown well
    /// past the last snapshot; writes the turn's share of a running one.
    pub(super) fn compact_group_journal(&mut self) {
        let groups = &mut self.groups;
        if let Some(outcome) = groups.store.compaction_poll() {
            groups.compaction = None;
            match outcome {
                Ok(size) => {
                    log::info!("group journal compacted to {size} bytes");
                    groups.snapshot_bytes = size;
                }
                Err(error) => {
                    // Tried again once the journal has grown four times more.
                    log::error!("could not compact the group journal: {error}");
                    groups.snapshot_bytes = groups.store.size_bytes();
                }
            }
        }
        if groups.compaction.is_none() {
            let size = groups.store.size_bytes();
            let threshold = self.config.groups.journal_compact_bytes;
            if size < threshold || size < groups.snapshot_bytes.saturating_mul(4) {
                return;
            }
            if let Err(error) = groups.store.compaction_begin() {
                log::error!("could not start a compaction of the group journal: {error}");
                groups.snapshot_bytes = size;
                return;
            }
            groups.compaction = Some(Compaction {
                group: None,
                part: Part::Done,
                finished: false,
            });
        }
        groups.compaction_step(self.config.groups.journal_compact_entries_per_turn);
    }
}
