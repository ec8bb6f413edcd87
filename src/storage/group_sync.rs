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

use std::fs::File;
use std::io;
use std::path::PathBuf;
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
    stop: bool,
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

fn sync_error(path: &std::path::Path, message: String) -> StorageError {
    StorageError::Io {
        context: format!("{}: fdatasync", path.display()),
        source: io::Error::other(message),
    }
}
