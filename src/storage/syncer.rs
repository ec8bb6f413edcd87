//! The file log's helper thread for blocking disk calls that need not stop the reactor:
//! `interval`'s periodic fdatasync of the open segment, the fdatasync that covers most of a
//! full segment before it is sealed (under `interval` and `never`), the creation of `next.log`
//! and the seal itself (under `interval` and `never`: `SealInFlight`), the counter lease written
//! ahead of need, the open segment's growth ahead of need (under `interval` and `never`), and
//! the index file of a sealed segment. Jobs run one at a time, in the order they were handed over; their results
//! come back through a channel the log drains at its next `sync` (or waits on where an order
//! must hold: before retention deletes files, when the log is dropped).
//!
//! Nothing the log reports as durable depends on these jobs: under `interval` and `never` a
//! record counts as durable once it is written (an acknowledgement never waited for the
//! fdatasync), the seal (the last fdatasync of a segment, covering its final length) completes
//! before the next segment gets its name (docs/storage.md, "Segment rolling"), and a lease
//! written here counts only once it is reported durable. An index file is derived data: start-up rebuilds a missing one.
//!
//! The group journal has a sync thread of its own (`group_sync.rs`).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::index::SegmentIndex;
use super::segment::{fsync_dir, index_path, next_segment_path, segment_path, write_index};
use super::{io_error, StorageError};

/// A blocking disk call for the helper thread.
#[derive(Debug)]
pub(super) enum Job {
    /// fdatasync of the open segment (a clone of its handle), whose records ended at `size`
    /// bytes when the job was handed over.
    Sync {
        file: File,
        path: PathBuf,
        first_offset: u64,
        size: u64,
    },
    /// The index file of a sealed segment (already fdatasynced whole).
    Index { dir: PathBuf, index: SegmentIndex },
    /// Creates the empty `next.log` a later roll switches to (`FileLog::roll_to_prepared`).
    Prepare { dir: PathBuf },
    /// Completes a seal the caller began by switching to `next.log` (`SealInFlight::run`).
    Seal(SealInFlight),
    /// Writes the counter lease ahead of need (`FileLog::reserve_counters`).
    Lease { dir: PathBuf, lease: u64 },
    /// Extends the open segment (a clone of its handle) to `size` bytes ahead of need, with
    /// zeros (a hole), so the caller's writes stay inside the file's length
    /// (`FileLog::extend_ahead`), or to `floor` if that is more: a caller that needs the file
    /// longer than `size` before this ran raises `floor` and extends the file while it holds
    /// the lock, so this only ever grows the file.
    Extend {
        file: File,
        first_offset: u64,
        size: u64,
        floor: Arc<Mutex<u64>>,
    },
}

/// The blocking part of a seal, in the order the seal rule needs: the sealed segment is cut to
/// its last record and fdatasynced; only then does the next segment (written meanwhile as
/// `next.log`, whose header the caller wrote) get its name, after an fdatasync of its own
/// header, and the directory is fsynced. So a later *named* segment exists only once the sealed
/// one is whole on disk, as before (docs/storage.md, "Segment rolling").
#[derive(Debug)]
pub(super) struct SealInFlight {
    pub dir: PathBuf,
    /// The sealed segment (a handle of its own), its first offset and its records' end.
    pub sealed: File,
    pub sealed_first: u64,
    pub sealed_size: u64,
    /// The next segment's file (a handle of its own), still named `next.log`, and its first
    /// offset, which names it once the seal is done.
    pub next: File,
    pub next_first: u64,
}

impl SealInFlight {
    /// The same seal with handles of its own (one for the helper thread's job, one kept by
    /// the log to run it again if it fails there).
    pub fn try_clone(&self) -> io::Result<SealInFlight> {
        Ok(SealInFlight {
            dir: self.dir.clone(),
            sealed: self.sealed.try_clone()?,
            sealed_first: self.sealed_first,
            sealed_size: self.sealed_size,
            next: self.next.try_clone()?,
            next_first: self.next_first,
        })
    }

    /// Runs the seal's steps; each is idempotent, so a failed seal is run again whole.
    pub fn run(&self) -> Result<(), StorageError> {
        let sealed_path = segment_path(&self.dir, self.sealed_first);
        let context = |what: &str, path: &std::path::Path| format!("{what} {}", path.display());
        (self.sealed.set_len(self.sealed_size))
            .map_err(io_error(context("truncate", &sealed_path)))?;
        (self.sealed.sync_data()).map_err(io_error(context("fdatasync", &sealed_path)))?;
        let next_path = next_segment_path(&self.dir);
        let named = segment_path(&self.dir, self.next_first);
        (self.next.sync_data()).map_err(io_error(context("fdatasync", &next_path)))?;
        if next_path.exists() {
            std::fs::rename(&next_path, &named)
                .map_err(io_error(context("name the next segment", &named)))?;
        }
        fsync_dir(&self.dir).map_err(io_error(context("fsync", &self.dir)))
    }
}

/// What a finished job reports.
#[derive(Debug)]
pub(super) enum Done {
    /// The segment starting at `first_offset` is on disk up to `size` bytes.
    Synced { first_offset: u64, size: u64 },
    /// An index file was written (or its failure logged: start-up rebuilds it).
    Indexed,
    /// `next.log` was created (`None`: it could not be; the failure was logged and the next
    /// roll runs on the caller's thread).
    Prepared(Option<File>),
    /// The seal of the segment before `next_first` finished (with `Some`: failed there; the
    /// caller runs it again).
    Sealed {
        next_first: u64,
        error: Option<StorageError>,
    },
    /// The counter lease file holds `lease`, durably (with `Some`: it could not be written).
    Leased {
        lease: u64,
        error: Option<StorageError>,
    },
    /// The segment starting at `first_offset` was extended to `size` bytes (with `Some`: it
    /// could not be; the caller extends it itself when it needs to).
    Extended {
        first_offset: u64,
        size: u64,
        error: Option<io::Error>,
    },
}

/// The helper thread (started on the first job) and its two channels.
#[derive(Debug, Default)]
pub(super) struct Syncer {
    worker: Option<Worker>,
    /// Jobs handed over and not yet collected.
    in_flight: usize,
    /// `Sync` jobs among them (at most one: see `FileLog::start_background_fsync`).
    syncs_in_flight: usize,
    /// `Extend` jobs among them (at most one for each segment not yet sealed).
    extends_in_flight: usize,
}

#[derive(Debug)]
struct Worker {
    jobs: Sender<Job>,
    done: Receiver<Result<Done, StorageError>>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Jobs handed over whose result has not been collected, other than extensions (short
    /// jobs, at most one for each segment not yet sealed).
    pub fn in_flight_besides_extends(&self) -> usize {
        self.in_flight - self.extends_in_flight
    }

    /// True while an fdatasync handed over has not been collected.
    pub fn sync_in_flight(&self) -> bool {
        self.syncs_in_flight > 0
    }

    /// Hands a job to the helper thread (starting it if needed). If the thread cannot be
    /// started, the job runs here, on the caller's thread, and its result is returned.
    pub fn submit(&mut self, job: Job) -> Option<Result<Done, StorageError>> {
        if self.worker.is_none() {
            self.worker = start_worker();
        }
        let Some(worker) = &self.worker else {
            return Some(run(job));
        };
        let is_sync = matches!(job, Job::Sync { .. });
        let is_extend = matches!(job, Job::Extend { .. });
        match worker.jobs.send(job) {
            Ok(()) => {
                self.in_flight += 1;
                self.syncs_in_flight += usize::from(is_sync);
                self.extends_in_flight += usize::from(is_extend);
                None
            }
            // The thread is gone (it panicked): do the work here.
            Err(failed) => {
                self.worker = None;
                Some(run(failed.0))
            }
        }
    }

    /// Collects the finished jobs' results without waiting (`wait`: until none is in flight).
    pub fn collect(&mut self, wait: bool) -> Vec<Result<Done, StorageError>> {
        let mut results = Vec::new();
        while self.in_flight > 0 {
            let Some(worker) = &self.worker else { break };
            let received = if wait {
                worker.done.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                worker.done.try_recv()
            };
            match received {
                Ok(outcome) => {
                    self.in_flight -= 1;
                    if matches!(outcome, Ok(Done::Synced { .. }) | Err(_)) {
                        self.syncs_in_flight = self.syncs_in_flight.saturating_sub(1);
                    }
                    if matches!(outcome, Ok(Done::Extended { .. })) {
                        self.extends_in_flight = self.extends_in_flight.saturating_sub(1);
                    }
                    results.push(outcome);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The thread is gone (it panicked) with jobs unfinished: report it once and
                    // start a new one for the next job.
                    self.worker = None;
                    self.in_flight = 0;
                    self.syncs_in_flight = 0;
                    self.extends_in_flight = 0;
                    results.push(Err(stopped()));
                }
            }
        }
        results
    }
}

impl Drop for Syncer {
    /// Lets the helper finish the jobs it holds (an index file is written) and joins it.
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            drop(worker.jobs);
            let _ = worker.thread.join();
        }
    }
}

fn stopped() -> StorageError {
    StorageError::Io {
        context: "the storage helper thread".into(),
        source: io::Error::other("it stopped before finishing its jobs"),
    }
}

fn start_worker() -> Option<Worker> {
    let (jobs, inbox) = channel::<Job>();
    let (outbox, done) = channel();
    let thread = std::thread::Builder::new()
        .name("flo-sync".into())
        .spawn(move || {
            for job in inbox {
                if outbox.send(run(job)).is_err() {
                    break;
                }
            }
        });
    match thread {
        Ok(thread) => Some(Worker { jobs, done, thread }),
        Err(error) => {
            log::warn!("cannot start the storage helper thread ({error}); syncing inline");
            None
        }
    }
}

fn run(job: Job) -> Result<Done, StorageError> {
    match job {
        Job::Sync {
            file,
            path,
            first_offset,
            size,
        } => match file.sync_data() {
            Ok(()) => Ok(Done::Synced { first_offset, size }),
            Err(source) => Err(StorageError::Io {
                context: format!("fdatasync {}", path.display()),
                source,
            }),
        },
        Job::Index { dir, index } => {
            if let Err(error) = write_index(&dir, &index) {
                log::warn!(
                    "cannot write index file {} ({error}); it will be rebuilt at start-up",
                    index_path(&dir, index.first_offset).display()
                );
            }
            Ok(Done::Indexed)
        }
        Job::Prepare { dir } => {
            let path = next_segment_path(&dir);
            let created = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path);
            match created {
                Ok(file) => Ok(Done::Prepared(Some(file))),
                Err(error) => {
                    log::warn!(
                        "cannot create {} ahead of the next seal ({error}); the seal runs on \
                         the reactor's thread",
                        path.display()
                    );
                    Ok(Done::Prepared(None))
                }
            }
        }
        Job::Lease { dir, lease } => Ok(Done::Leased {
            lease,
            error: super::lease::write(&dir, lease).err(),
        }),
        Job::Extend {
            file,
            first_offset,
            size,
            floor,
        } => {
            let floor = floor.lock().unwrap_or_else(PoisonError::into_inner);
            let error = file.set_len(size.max(*floor)).err();
            drop(floor);
            Ok(Done::Extended {
                first_offset,
                size,
                error,
            })
        }
        Job::Seal(seal) => Ok(Done::Sealed {
            next_first: seal.next_first,
            error: seal.run().err(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An extension ahead of need only grows the file: a caller that extended it further
    /// while the job waited raised its floor, and the job sets that length, not its own.
    #[test]
    fn an_extension_sets_the_floor_a_caller_raised_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.log");
        let file = File::create(&path).unwrap();
        let floor = Arc::new(Mutex::new(0));
        // The caller passed the helper: it extended the file to 5000 and raised the floor.
        *floor.lock().unwrap() = 5000;
        file.set_len(5000).unwrap();
        let job = Job::Extend {
            file: file.try_clone().unwrap(),
            first_offset: 7,
            size: 4096,
            floor,
        };
        let done = run(job).unwrap();
        assert!(matches!(
            done,
            Done::Extended {
                first_offset: 7,
                size: 4096,
                error: None
            }
        ));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5000);
        // Not passed: its own length.
        let job = Job::Extend {
            file,
            first_offset: 7,
            size: 8192,
            floor: Arc::new(Mutex::new(0)),
        };
        run(job).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    }
}
