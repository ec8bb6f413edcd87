//! Proves that the file log and the memory log behave the same: both run one seeded random
//! sequence of appends, syncs (some failing), reads with a budget, start-position lookups and
//! restarts (a process crash: the file log is reopened, the memory log keeps what a process
//! crash keeps), and every result and every position is compared after each step. A failure
//! names the seed and the step.

mod common;

use std::path::Path;

use common::SeededRng;
use flo::config::{FsyncPolicy, StorageConfig};
use flo::event::{ActorId, Cursor, Event, EventId, StartPosition, VersionVector};
use flo::storage::{FileLog, InjectedFault, Log, MemoryLog, Offset, StorageError};
use flo::time::MonotonicMs;

struct Model {
    random: SeededRng,
    file: FileLog,
    memory: MemoryLog,
    config: StorageConfig,
    /// The Lamport counter of the simulated node.
    counter: u64,
    now_ms: u64,
}

fn open(config: &StorageConfig) -> FileLog {
    FileLog::open(config).unwrap().0
}

impl Model {
    fn new(dir: &Path, seed: u64, fsync: FsyncPolicy) -> Model {
        let mut config = StorageConfig::new(dir.to_path_buf());
        config.segment_size_max = 4096;
        config.cache_bytes_max = 1500;
        config.fsync = fsync;
        Model {
            random: SeededRng::new(seed),
            file: open(&config),
            memory: MemoryLog::with_fsync(fsync),
            config,
            counter: 0,
            now_ms: 1_000_000,
        }
    }

    fn random_event(&mut self) -> Event {
        self.counter += 1 + self.random.below(3);
        let data_size = match self.random.below(20) {
            0 => 2000, // larger than the whole cache
            _ => self.random.below(200) as usize,
        };
        Event {
            id: EventId::new(self.counter, 1 + self.random.below(4) as u16),
            parent_id: None,
            namespace: format!("/model/{}", self.random.below(5)),
            timestamp_ms: self.now_ms - self.random.below(50),
            data: vec![self.counter as u8; data_size],
        }
    }

    fn random_position(&mut self) -> StartPosition {
        let counter = self.random.below(self.counter + 5);
        let actor = self.random.below(6) as u16;
        match self.random.below(5) {
            0 => StartPosition::Beginning,
            1 => StartPosition::End,
            2 => StartPosition::AfterId(EventId::new(counter, actor)),
            3 => StartPosition::Timestamp(1_000_000 + self.random.below(self.now_ms - 999_000)),
            _ => {
                // Some actors are left out of the vector on purpose.
                let mut vector = VersionVector::new();
                for actor in 1..=4 {
                    if self.random.below(3) > 0 {
                        let counter = self.random.below(self.counter + 2);
                        vector.observe(EventId {
                            counter,
                            actor: ActorId(actor),
                        });
                    }
                }
                // Half of the cursors also carry a floor (a consumer that started "after id X").
                let floor = match self.random.below(2) {
                    0 => EventId::NONE,
                    _ => EventId::new(self.random.below(self.counter + 2), actor),
                };
                StartPosition::Cursor(Cursor { floor, vector })
            }
        }
    }

    fn step(&mut self) -> String {
        self.now_ms += self.random.below(30);
        match self.random.below(21) {
            0..=8 => {
                let event = self.random_event();
                let file = self.file.append(event.clone()).unwrap();
                let memory = self.memory.append(event).unwrap();
                assert_eq!(file, memory);
                "append".into()
            }
            9..=12 => self.sync(),
            13..=15 => {
                let from = Offset(self.random.below(self.file.end().0 + 3));
                let budget = 1 + self.random.below(40);
                let file = read(&mut self.file, from, budget);
                let memory = read(&mut self.memory, from, budget);
                assert_eq!(file, memory, "read from {from} budget {budget}");
                format!("read from {from}")
            }
            16..=18 => {
                let position = self.random_position();
                let file = self.file.find_start(&position).unwrap();
                let memory = self.memory.find_start(&position).unwrap();
                assert_eq!(file, memory, "{position:?}");
                format!("find_start {position:?}")
            }
            19 => {
                // The helper thread's fdatasyncs and index files (in flight after most syncs
                // under `interval` and `never` and after every seal) finish: what the file log
                // reports must not change, since it never depended on them.
                self.file.wait_for_syncs().unwrap();
                "syncs in flight finish".into()
            }
            _ => {
                // The old log must be gone (its directory lock released) before the new one
                // opens, as when a process exits: a placeholder in a scratch directory holds
                // its place meanwhile.
                let scratch = tempfile::tempdir().unwrap();
                let placeholder = open(&StorageConfig::new(scratch.path().to_path_buf()));
                drop(std::mem::replace(&mut self.file, placeholder));
                self.file = open(&self.config);
                // A process crash keeps every record written to the kernel.
                self.memory.crash(u64::MAX);
                "restart".into()
            }
        }
    }

    fn sync(&mut self) -> String {
        // A fault is injected only when records are buffered: with nothing to write, the file
        // log does no I/O that could fail.
        if self.random.below(8) == 0 && self.file.end() > self.file.durable_end() {
            // A failing fdatasync fails a sync only when the policy runs one on every sync.
            let always = self.config.fsync == FsyncPolicy::Always;
            let fault = match self.random.below(3) {
                0 if always => InjectedFault::FsyncFails,
                _ => InjectedFault::WriteFails {
                    bytes_written: self.random.below(300) as usize,
                },
            };
            self.file.inject_fault(fault);
            self.memory.fail_next_sync = true;
            let file = self.file.sync(MonotonicMs(self.now_ms));
            let memory = self.memory.sync(MonotonicMs(self.now_ms));
            assert!(file.is_err() && memory.is_err());
            return format!("failing sync {fault:?}");
        }
        let file = self.file.sync(MonotonicMs(self.now_ms)).unwrap();
        let memory = self.memory.sync(MonotonicMs(self.now_ms)).unwrap();
        assert_eq!(file, memory);
        "sync".into()
    }

    fn check(&self) {
        assert_eq!(self.file.start(), self.memory.start());
        assert_eq!(self.file.end(), self.memory.end());
        assert_eq!(self.file.durable_end(), self.memory.durable_end());
        assert_eq!(self.file.version_vector(), self.memory.version_vector());
    }
}

fn read(log: &mut dyn Log, from: Offset, budget: u64) -> Result<(Offset, Vec<Event>), String> {
    let mut events = Vec::new();
    let mut left = budget;
    let end = log
        .read(from, &mut |_, event| {
            if left == 0 {
                return false;
            }
            left -= 1;
            events.push(event.to_event());
            true
        })
        .map_err(|e: StorageError| e.to_string())?;
    Ok((end, events))
}

fn run(seed: u64, fsync: FsyncPolicy, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new(dir.path(), seed, fsync);
    for step in 0..steps {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let what = model.step();
            model.check();
            what
        }));
        if let Err(panic) = result {
            eprintln!("model test failed: seed {seed}, fsync {fsync}, step {step}");
            std::panic::resume_unwind(panic);
        }
    }
    // The sequence must have exercised several segments and the cache/disk boundary.
    assert!(model.file.segment_paths().len() > 2, "seed {seed}");
}

#[test]
fn file_log_and_memory_log_agree_on_seeded_sequences() {
    for seed in 1..=9u64 {
        let fsync = match seed % 3 {
            0 => FsyncPolicy::Always,
            1 => FsyncPolicy::IntervalMs(40),
            _ => FsyncPolicy::Never,
        };
        run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), fsync, 1200);
    }
}
