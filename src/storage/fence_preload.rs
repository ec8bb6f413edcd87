//! The fences of the sealed segments' `.nsx` files, read at start-up by a storage helper
//! thread (`flo-nsx-fences`) while the reactor's thread recovers the open segment, so that
//! the first lookup of a namespace after a start finds them in memory (three small reads a
//! segment) instead of reading each segment's whole fence section itself (about 160 KiB a
//! segment of 500,000 namespaces; 19 such reads were most of the first load of an aggregate
//! after a restart). The newest segments first, while their bytes stay within
//! `namespace_fences_bytes_max`; the log takes what has arrived at each lookup and never
//! waits for the rest (a segment not read yet is read by its lookup as before).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::namespace::{Fences, NamespaceHeader};
use super::segment::namespace_index_path;

/// The fences read for one segment: its first offset, the header they were read under (the
/// log keeps them only if the segment's file is still the one this header describes).
pub(super) type Preloaded = (u64, NamespaceHeader, Fences);

#[derive(Debug)]
pub(super) struct FencePreload {
    receiver: Receiver<Preloaded>,
    stop: Arc<AtomicBool>,
    job: Option<JoinHandle<()>>,
}

/// What `FencePreload::take` found.
pub(super) enum Taken {
    One(Preloaded),
    /// Nothing more now; the thread is still reading.
    NotYet,
    /// The thread is done and everything it read was taken.
    Done,
}

impl FencePreload {
    /// Starts the thread over `headers` (by first offset; read newest first), or returns
    /// `None` when there is nothing to read or the thread cannot start (lookups then read
    /// their fences themselves).
    pub(super) fn start(
        dir: &Path,
        headers: &[(u64, NamespaceHeader)],
        bytes_max: usize,
    ) -> Option<FencePreload> {
        let mut wanted: Vec<(u64, NamespaceHeader)> = Vec::new();
        let mut total = 0usize;
        for &(first, header) in headers.iter().rev() {
            let size = header.fences_size();
            if size > 0 && total.saturating_add(size) <= bytes_max {
                total += size;
                wanted.push((first, header));
            }
        }
        if wanted.is_empty() {
            return None;
        }
        let (sender, receiver) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("flo-nsx-fences".into())
            .spawn(move || {
                for (first, header) in wanted {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(file) = File::open(namespace_index_path(&dir, first)) else {
                        continue;
                    };
                    // A file that fails its checks is left to the lookup, which rebuilds it.
                    if let Ok(Some(fences)) = header.read_fences(&file, &mut u64::MAX.clone()) {
                        if sender.send((first, header, fences)).is_err() {
                            return;
                        }
                    }
                }
            });
        match spawned {
            Ok(job) => Some(FencePreload {
                receiver,
                stop,
                job: Some(job),
            }),
            Err(error) => {
                log::warn!("cannot start a thread to read namespace index fences ({error})");
                None
            }
        }
    }

    /// The next fences read, without waiting unless `wait`.
    pub(super) fn take(&self, wait: bool) -> Taken {
        let next = if wait {
            self.receiver.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.receiver.try_recv()
        };
        match next {
            Ok(preloaded) => Taken::One(preloaded),
            Err(TryRecvError::Empty) => Taken::NotYet,
            Err(TryRecvError::Disconnected) => Taken::Done,
        }
    }
}

impl Drop for FencePreload {
    /// Stops the thread after the file it is reading (if any) and waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(job) = self.job.take() {
            let _ = job.join();
        }
    }
}
