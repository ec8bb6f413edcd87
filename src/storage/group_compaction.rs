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

#[cfg(test)]
mod tests {
    use super::super::groups::{FileGroupStore, GroupStore, COMPACTION_FILE, GROUP_JOURNAL_FILE};
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::event::{ActorId, Cursor, EventId};
    use crate::storage::Offset;
    use crate::time::MonotonicMs;

    fn create(group: &str) -> GroupRecord {
        GroupRecord::Create {
            group: group.into(),
            glob: "/jobs/**".into(),
            start: Offset(0),
            filter: Cursor::default(),
            owner: None,
        }
    }

    fn park(group: &str, offset: u64) -> GroupRecord {
        GroupRecord::Park {
            group: group.into(),
            offset: Offset(offset),
            id: EventId {
                counter: offset,
                actor: ActorId(1),
            },
        }
    }

    /// On files: a compaction interrupted before its swap (the store dropped, then opened
    /// again as after a crash) leaves the old journal the journal and its `.tmp` removed; a
    /// finished one is synced and renamed by the sync thread (no fdatasync on the caller's
    /// thread), and from then on the new file is the journal, with the records appended
    /// while the swap ran.
    #[test]
    fn the_sync_thread_swaps_a_finished_compaction_and_a_crash_before_keeps_the_old_journal() {
        let dir = std::env::temp_dir().join(format!("flo-groups-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tmp = dir.join(COMPACTION_FILE);
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("open");
        let mut old = vec![create("a"), create("b")];
        old.extend((0..50).map(|n| park("a", n)));
        for record in &old {
            store.append(record);
        }
        store.sync(MonotonicMs(1)).expect("sync");
        // A compaction that does not finish: a crash (the store goes, the .tmp stays).
        store.compaction_begin().expect("begin");
        store.compaction_append(&create("a"));
        store.append(&park("a", 60));
        store.append(&park("b", 61));
        store.sync(MonotonicMs(2)).expect("sync");
        assert!(tmp.exists());
        drop(store);
        old.extend([park("a", 60), park("b", 61)]);
        let mut store = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert!(
            !tmp.exists(),
            "start-up removes an unfinished compaction's file"
        );
        assert_eq!(store.load_all().expect("load"), old);
        // A compaction that finishes: "a" in two pieces, "b" (its records before its
        // snapshot go to the old journal only), records during the swap.
        store.compaction_begin().expect("begin");
        store.compaction_append(&create("a"));
        store.compaction_append(&park("a", 3));
        store.append(&park("a", 70));
        store.append(&park("b", 71));
        store.start_sync(MonotonicMs(3)).expect("write");
        store.compaction_append(&park("a", 4));
        assert!(store.compaction_covers("a") && !store.compaction_covers("b"));
        store.compaction_append(&create("b"));
        store.compaction_append(&park("b", 71));
        store.compaction_finish();
        store.append(&park("b", 80));
        store
            .sync(MonotonicMs(4))
            .expect("write and hand over the swap");
        store
            .wait_for_syncs()
            .expect("the swap syncs what was written");
        store.append(&park("a", 90));
        let size = match store.compaction_poll() {
            Some(Ok(size)) => size,
            other => panic!("the swap is done: {other:?}"),
        };
        store.sync(MonotonicMs(5)).expect("sync");
        assert_eq!(
            store.caller_fsync_count(),
            0,
            "the swap ran on the sync thread"
        );
        assert!(!tmp.exists());
        let journal = std::fs::metadata(dir.join(GROUP_JOURNAL_FILE)).expect("stat");
        assert!(
            journal.len() > size && size > 0,
            "{} after {size}",
            journal.len()
        );
        let compacted = vec![
            create("a"),
            park("a", 3),
            park("a", 70),
            park("a", 4),
            create("b"),
            park("b", 71),
            park("b", 80),
            park("a", 90),
        ];
        let mut reopened = FileGroupStore::open(&dir, FsyncPolicy::Always).expect("reopen");
        assert_eq!(reopened.load_all().expect("load"), compacted);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
