//! The new journal a compaction builds beside the old one (docs/consumers.md, "Compaction").
//!
//! The engine hands it the snapshot of the groups in pieces, a few per turn, group after
//! group (`GroupStore::compaction_append`); meanwhile every record the engine appends goes to
//! the old journal, and also to the new one when the new one already holds the Create of its
//! group (the group's snapshot began, or the group was created during the compaction). A
//! record of a group whose snapshot has not begun goes to the old journal only: the
//! snapshot, taken later from the engine's state, includes what it changed.
//!
//! Why loading the new journal gives the state loading the old one gives: a piece is the
//! state of its part of a group (one range of offsets) at the moment it is taken, so it
//! includes every change made before it; every change made after it is a record that follows
//! it in the new journal. A record written before a piece about the same offsets is applied
//! first and then set again by the piece, or, when the piece does not name the offset, is one
//! the old journal holds as well (the same record). Until the old journal is replaced it
//! stays the truth: a crash during a compaction loses nothing, and start-up removes the
//! unfinished new file.

use std::collections::HashSet;

use super::groups::{GroupRecord, Names};

/// The state of the new journal's bytes not yet written, its group numbers, and the groups it
/// holds.
#[derive(Debug, Default, Clone)]
pub(super) struct Rebuild {
    /// Encoded records not yet written to the new file.
    pub buffered: Vec<u8>,
    /// The group numbers of the new file (it numbers the groups afresh).
    pub names: Names,
    /// Groups whose Create the new file holds: their records go to both files.
    covered: HashSet<String>,
    pub stage: Stage,
}

/// How far a compaction is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Snapshot pieces are still coming.
    #[default]
    Writing,
    /// The snapshot is complete: the swap is asked for at the next write. Every record goes
    /// to both files from now on.
    Complete,
    /// The sync thread is putting the new file in place.
    Swapping,
}

impl Rebuild {
    /// A record the engine appended (it also goes to the old journal).
    pub fn live(&mut self, record: &GroupRecord) {
        let group = record.group();
        let covered = self.stage != Stage::Writing
            || self.covered.contains(group)
            || matches!(record, GroupRecord::Create { .. });
        if covered {
            self.piece(record);
        }
    }

    /// A piece of the snapshot (new journal only).
    pub fn piece(&mut self, record: &GroupRecord) {
        self.names.encode(record, &mut self.buffered);
        match record {
            GroupRecord::Create { group, .. } => {
                self.covered.insert(group.clone());
            }
            GroupRecord::Delete { group } => {
                self.covered.remove(group);
            }
            _ => {}
        }
    }

    /// Whether the new journal holds `group`'s Create.
    pub fn covers(&self, group: &str) -> bool {
        self.covered.contains(group)
    }
}
