//! The group journal's fdatasync thread: a group commit of its own, beside the reactor.
//!
//! The reactor writes journal records (write(2): from then on they survive kill -9) and asks
//! for an fdatasync covering everything written so far by raising the *requested* generation;
//! the thread runs one fdatasync for every batch of requests that arrived while the last one
//! ran, and raises the *synced* generation to what that fdatasync covered. Nothing queues up:
//! however many requests come in while the disk is slow, the next fdatasync covers them all,
//! so the work is bounded by the disk, not by the request rate. A request is never left
//! without an fdatasync: the thread keeps going until synced reaches requested, without
//! another call from the reactor (an idle server still syncs its last acks).
//!
//! Whoever must know that its records are on disk (a turn that journaled a record an answer
//! depends on: docs/consumers.md, "Storage") waits for the synced generation to reach its
//! own; nobody else waits. A failed fdatasync is reported to the next waiter of a
//! generation it covered, and logged by the reactor; the next request tries again.
//!
//! The thread also ends a compaction (docs/consumers.md, "Compaction"): once the new journal
//! (`groups.journal.tmp`, which every record since the compaction began was also written to)
//! is complete, the reactor hands it a *swap*: the thread fdatasyncs the new file, renames it
//! over the journal and fsyncs the directory, and from then on syncs the new file. The
//! reactor never waits for it; it learns the outcome at a later turn (`take_swapped`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::StorageError;

#[derive(Debug)]
struct State {
    /// The file the next fdatasync covers (a compaction replaces it).
    file: Arc<File>,
    path: PathBuf,
    requested: u64,
    synced: u64,
    /// The highest generation whose fdatasync failed, and the error (until it is reported).
    failed: u64,
    error: Option<String>,
    /// fdatasyncs run by the thread since it started.
    fsyncs: u64,
    /// A compaction's new journal to put in place, and the outcome of the last one (until
    /// the reactor takes it).
    swap: Option<Swap>,
    swapped: Option<Result<(), String>>,
    stop: bool,
}

/// A compaction's new journal, complete: to be synced and renamed over the journal.
#[derive(Debug)]
pub(super) struct Swap {
    pub file: Arc<File>,
    /// `groups.journal.tmp`, the journal, and their directory.
    pub from: PathBuf,
    pub to: PathBuf,
    pub dir: PathBuf,
}

impl Swap {
    /// fdatasyncs the new file, renames it over the journal and fsyncs the directory. Returns
    /// whether the rename happened (from then on the new file is the journal, even if the
    /// directory's fsync failed) and the error, if any. A new file that could not be put in
    /// place is removed (the old journal stays the truth).
    fn run(&self) -> (bool, Result<(), String>) {
        let context =
            |what: &str, error: io::Error| format!("{}: {what}: {error}", self.from.display());
        let renamed = self
            .file
            .sync_data()
            .map_err(|error| context("fdatasync", error))
            .and_then(|()| {
                std::fs::rename(&self.from, &self.to).map_err(|error| context("rename", error))
            });
        if let Err(error) = renamed {
            let _ = std::fs::remove_file(&self.from);
            return (false, Err(error));
        }
        let synced = File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| context("fsync the directory", error));
        (true, synced)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The thread waits here for requests (or the stop).
    requests: Condvar,
    /// Waiters wait here for the synced generation to move (or a failure).
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The thread does not panic while it holds the lock; the state is plain numbers.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The journal's fdatasync thread (started on the first request; if it cannot be started, the
/// fdatasync runs on the caller's thread).
#[derive(Debug)]
pub(super) struct GroupSyncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// fdatasyncs run on the caller's thread (no helper thread).
    caller_fsyncs: u64,
}

impl GroupSyncer {
    pub fn new(file: Arc<File>, path: PathBuf) -> GroupSyncer {
        let state = State {
            file,
            path,
            requested: 0,
            synced: 0,
            failed: 0,
            error: None,
            fsyncs: 0,
            swap: None,
            swapped: None,
            stop: false,
        };
        GroupSyncer {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                requests: Condvar::new(),
                progress: Condvar::new(),
            }),
            thread: None,
            caller_fsyncs: 0,
        }
    }

    /// Asks for an fdatasync covering `generation` (everything written before this call).
    pub fn request(&mut self, generation: u64) -> Result<(), StorageError> {
        if self.thread.is_none() {
            self.thread = self.start_thread();
        }
        if self.thread.is_none() {
            return self.sync_here(generation);
        }
        let mut state = self.shared.lock();
        if generation > state.requested {
            state.requested = generation;
            self.shared.requests.notify_one();
        }
        Ok(())
    }

    /// Waits until `generation` is on disk (it must have been requested).
    pub fn wait_for(&mut self, generation: u64) -> Result<(), StorageError> {
        let mut state = self.shared.lock();
        loop {
            if state.synced >= generation {
                return Ok(());
            }
            if state.failed >= generation || self.thread.is_none() {
                let message = state.error.take().unwrap_or_else(|| "not synced".into());
                return Err(sync_error(&state.path, message));
            }
            state = self
                .shared
                .progress
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The error of a failed fdatasync not yet reported, if any.
    pub fn take_error(&mut self) -> Option<StorageError> {
        let mut state = self.shared.lock();
        let message = state.error.take()?;
        Some(sync_error(&state.path, message))
    }

    /// Replaces the file (after a compaction wrote and synced a new one) and counts
    /// everything up to `generation` as synced.
    pub fn replace_file(&mut self, file: Arc<File>, generation: u64) {
        let mut state = self.shared.lock();
        state.file = file;
        state.requested = state.requested.max(generation);
        state.synced = state.synced.max(generation);
        self.shared.progress.notify_all();
    }

    /// Hands the thread a compaction's complete new journal, written up to `generation`:
    /// synced, renamed over the journal, the directory synced, and counted as syncing
    /// `generation` (every record written so far is in it). Without a thread it runs here.
    pub fn swap(&mut self, swap: Swap, generation: u64) {
        if self.thread.is_none() {
            self.thread = self.start_thread();
        }
        let mut state = self.shared.lock();
        state.requested = state.requested.max(generation);
        if self.thread.is_some() {
            state.swap = Some(swap);
            self.shared.requests.notify_one();
            return;
        }
        drop(state);
        self.caller_fsyncs += 1;
        let outcome = swap.run();
        swapped(&mut self.shared.lock(), &swap, outcome, generation);
    }

    /// The outcome of the last swap, once it is done: Ok when the new file is the journal
    /// (also when only the directory's fsync failed: logged), Err when the old one still is.
    pub fn take_swapped(&mut self) -> Option<Result<(), String>> {
        self.shared.lock().swapped.take()
    }

    /// fdatasyncs run since open (by the thread and on the caller's thread).
    #[cfg(any(test, feature = "testing"))]
    pub fn fsyncs(&self) -> u64 {
        self.shared.lock().fsyncs + self.caller_fsyncs
    }

    /// Those run on the caller's thread.
    #[cfg(any(test, feature = "testing"))]
    pub fn caller_fsyncs(&self) -> u64 {
        self.caller_fsyncs
    }

    fn sync_here(&mut self, generation: u64) -> Result<(), StorageError> {
        let (file, path) = {
            let state = self.shared.lock();
            (Arc::clone(&state.file), state.path.clone())
        };
        self.caller_fsyncs += 1;
        file.sync_data()
            .map_err(|error| sync_error(&path, error.to_string()))?;
        let mut state = self.shared.lock();
        state.requested = state.requested.max(generation);
        state.synced = state.synced.max(generation);
        Ok(())
    }

    fn start_thread(&self) -> Option<JoinHandle<()>> {
        let shared = Arc::clone(&self.shared);
        let started = std::thread::Builder::new()
            .name("flo-group-sync".into())
            .spawn(move || run(&shared));
        match started {
            Ok(thread) => Some(thread),
            Err(error) => {
                log::warn!(
                    "cannot start the group journal's sync thread ({error}); syncing inline"
                );
                None
            }
        }
    }
}

impl Drop for GroupSyncer {
    /// Lets the thread finish what was requested (a clean stop leaves the journal synced),
    /// then joins it.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.lock().stop = true;
            self.shared.requests.notify_one();
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if let Some(swap) = state.swap.take() {
            // Everything requested so far was written to the new file before it was asked
            // for: once the new file is synced and in place, it is on disk.
            let generation = state.requested;
            drop(state);
            let outcome = swap.run();
            state = shared.lock();
            state.fsyncs += 1;
            swapped(&mut state, &swap, outcome, generation);
            shared.progress.notify_all();
            continue;
        }
        if state.requested > state.synced && state.requested > state.failed {
            let generation = state.requested;
            let file = Arc::clone(&state.file);
            drop(state);
            let result = file.sync_data();
            state = shared.lock();
            state.fsyncs += 1;
            match result {
                Ok(()) => state.synced = state.synced.max(generation),
                Err(error) => {
                    state.failed = generation;
                    state.error = Some(error.to_string());
                }
            }
            shared.progress.notify_all();
            continue;
        }
        if state.stop {
            return;
        }
        state = shared
            .requests
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// Records the outcome of a swap: once renamed, the new file is the journal and holds
/// everything up to `generation`, synced.
fn swapped(
    state: &mut State,
    swap: &Swap,
    (renamed, result): (bool, Result<(), String>),
    generation: u64,
) {
    if !renamed {
        state.swapped = Some(result);
        return;
    }
    if let Err(error) = result {
        log::warn!("group journal compaction: {error}");
    }
    state.file = Arc::clone(&swap.file);
    state.synced = state.synced.max(generation);
    state.swapped = Some(Ok(()));
}

fn sync_error(path: &Path, message: String) -> StorageError {
    StorageError::Io {
        context: format!("{}: fdatasync", path.display()),
        source: io::Error::other(message),
    }
}
