//! The files an index-driven read keeps open: a sealed segment's `.nsx` and its `.log`, at
//! most `storage.open_files_max` of them, the least recently used closed first, so a query
//! of one namespace costs no `open` per segment. A segment's handles are dropped with the
//! segment (retention, reclaim) and a `.nsx` handle when its file is written again.
//!
//! A file that is not open yet is most likely not in the page cache either (the first query
//! of its segment since the start, or since it was closed): `will_need` lets a query ask the
//! kernel for all the pieces it is about to read from such files at once, so their disk
//! reads overlap instead of following one another.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Which file of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum HandleKind {
    /// The segment's records (`.log`).
    Segment,
    /// Its namespace index (`.nsx`).
    NamespaceIndex,
}

/// Open files by segment and kind, with the turn each was last used.
#[derive(Debug)]
pub(super) struct Handles {
    files: HashMap<(u64, HandleKind), (Arc<File>, u64)>,
    /// Counts uses, for the least recently used.
    clock: u64,
    max: usize,
    /// Files opened since the log was opened (tests and the benchmark count them).
    pub(super) opened: u64,
}

impl Handles {
    pub(super) fn new(max: usize) -> Handles {
        Handles {
            files: HashMap::new(),
            clock: 0,
            max,
            opened: 0,
        }
    }

    /// The open file of segment `first_offset`'s `kind` at `path`, opened (and kept, closing
    /// the least recently used one past the limit) if it is not open. With a limit of 0
    /// nothing is kept: every call opens the file.
    pub(super) fn get(
        &mut self,
        first_offset: u64,
        kind: HandleKind,
        path: &Path,
    ) -> io::Result<Arc<File>> {
        self.clock += 1;
        if let Some((file, used)) = self.files.get_mut(&(first_offset, kind)) {
            *used = self.clock;
            return Ok(Arc::clone(file));
        }
        let file = File::open(path)?;
        // Every read of these files is a positioned read of a piece the caller knows the
        // size of (a record, a block of the index, its fences): the kernel's readahead would
        // read around each one from the disk for nothing, so a cold read of a record costs
        // one small disk read (about 50 us here) instead of a readahead window (about 120
        // us). A hint: if it fails, reads are the same, only slower when cold.
        // SAFETY: posix_fadvise only reads its arguments; the descriptor is open (`file`).
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        let file = Arc::new(file);
        self.opened += 1;
        if self.max == 0 {
            return Ok(file);
        }
        if self.files.len() >= self.max {
            // A linear pass, only when a file is opened past the limit: at most `max` entries.
            let oldest = self.files.iter().min_by_key(|(_, &(_, used))| used);
            if let Some((&key, _)) = oldest {
                self.files.remove(&key);
            }
        }
        let entry = (Arc::clone(&file), self.clock);
        self.files.insert((first_offset, kind), entry);
        Ok(file)
    }

    /// Whether the file of segment `first_offset`'s `kind` is open (kept).
    pub(super) fn is_open(&self, first_offset: u64, kind: HandleKind) -> bool {
        self.files.contains_key(&(first_offset, kind))
    }

    /// Closes the file of segment `first_offset`'s `kind` (it was replaced or deleted).
    pub(super) fn forget(&mut self, first_offset: u64, kind: HandleKind) {
        self.files.remove(&(first_offset, kind));
    }

    /// Closes every file of segment `first_offset` (it is being deleted).
    pub(super) fn forget_segment(&mut self, first_offset: u64) {
        self.forget(first_offset, HandleKind::Segment);
        self.forget(first_offset, HandleKind::NamespaceIndex);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.files.len()
    }
}

/// Asks the kernel to start reading `length` bytes of `file` from `position` into the page
/// cache (`POSIX_FADV_WILLNEED`) without waiting for them. A hint: if it fails, the read that
/// follows reads them itself.
pub(super) fn will_need(file: &File, position: u64, length: u64) {
    let (Ok(position), Ok(length)) = (i64::try_from(position), i64::try_from(length)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads its arguments; the descriptor is open (`file`).
    let _ = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            position,
            length,
            libc::POSIX_FADV_WILLNEED,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_files_stay_open_and_the_least_recently_used_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = |i: u64| dir.path().join(format!("{i}"));
        for i in 0..4 {
            std::fs::write(path(i), b"x").unwrap();
        }
        let mut handles = Handles::new(2);
        handles.get(0, HandleKind::Segment, &path(0)).unwrap();
        handles.get(1, HandleKind::Segment, &path(1)).unwrap();
        handles.get(0, HandleKind::Segment, &path(0)).unwrap();
        assert_eq!(handles.opened, 2);
        // 1 is the least recently used: it is closed for 2.
        handles.get(2, HandleKind::Segment, &path(2)).unwrap();
        assert_eq!(handles.len(), 2);
        handles.get(0, HandleKind::Segment, &path(0)).unwrap();
        assert_eq!(handles.opened, 3);
        handles.get(1, HandleKind::Segment, &path(1)).unwrap();
        assert_eq!(handles.opened, 4);
        handles.forget_segment(1);
        assert_eq!(handles.len(), 1);
        let mut none = Handles::new(0);
        none.get(3, HandleKind::NamespaceIndex, &path(3)).unwrap();
        none.get(3, HandleKind::NamespaceIndex, &path(3)).unwrap();
        assert_eq!((none.opened, none.len()), (2, 0));
    }
}
