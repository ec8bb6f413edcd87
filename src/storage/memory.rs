//! An in-memory [`Log`] for tests and the cluster simulator.

use std::collections::VecDeque;

use super::{Log, LogStats, Offset, StorageError};
use crate::event::{Event, StartPosition, VersionVector};

/// Keeps every record in memory. `fail_next_sync` makes the next `sync` fail like a full disk.
#[derive(Debug, Default)]
pub struct MemoryLog {
    /// Records from `start` on.
    records: VecDeque<Event>,
    start: u64,
    durable_end: u64,
    vector: VersionVector,
    pub fail_next_sync: bool,
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    fn end_u64(&self) -> u64 {
        self.start + self.records.len() as u64
    }

    fn recompute_vector(&mut self) {
        let mut vector = VersionVector::new();
        for event in &self.records {
            vector.observe(event.id);
        }
        self.vector = vector;
    }
}

impl Log for MemoryLog {
    fn append(&mut self, event: Event) -> Result<Offset, StorageError> {
        let offset = Offset(self.end_u64());
        self.vector.observe(event.id);
        self.records.push_back(event);
        Ok(offset)
    }

    fn sync(&mut self, _now_ms: u64) -> Result<Offset, StorageError> {
        if self.fail_next_sync {
            self.fail_next_sync = false;
            let keep = (self.durable_end - self.start) as usize;
            self.records.truncate(keep);
            self.recompute_vector();
            return Err(StorageError::Io {
                context: "memory log sync".into(),
                source: std::io::Error::other("injected failure (disk full)"),
            });
        }
        self.durable_end = self.end_u64();
        Ok(Offset(self.durable_end))
    }

    fn start(&self) -> Offset {
        Offset(self.start)
    }

    fn end(&self) -> Offset {
        Offset(self.end_u64())
    }

    fn durable_end(&self) -> Offset {
        Offset(self.durable_end)
    }

    fn read(
        &mut self,
        from: Offset,
        visit: &mut dyn FnMut(Offset, &Event) -> bool,
    ) -> Result<Offset, StorageError> {
        let mut offset = from.0.max(self.start);
        while offset < self.durable_end {
            let event = &self.records[(offset - self.start) as usize];
            if !visit(Offset(offset), event) {
                break;
            }
            offset += 1;
        }
        Ok(Offset(offset))
    }

    fn find_start(&mut self, position: &StartPosition) -> Result<Offset, StorageError> {
        let durable = || {
            self.records
                .iter()
                .take((self.durable_end - self.start) as usize)
        };
        let found = match position {
            StartPosition::Beginning => None,
            StartPosition::End => Some(self.durable_end - self.start),
            StartPosition::AfterId(_) | StartPosition::Cursor(_) => {
                // Checked by the match arm: both kinds have a cursor.
                let cursor = position.cursor().expect("cursor position");
                durable()
                    .position(|e| !cursor.covers(e.id))
                    .map(|i| i as u64)
            }
            StartPosition::Timestamp(ms) => durable()
                .position(|e| e.timestamp_ms >= *ms)
                .map(|i| i as u64),
        };
        let relative = match position {
            StartPosition::Beginning => 0,
            _ => found.unwrap_or(self.durable_end - self.start),
        };
        Ok(Offset(self.start + relative))
    }

    fn version_vector(&self) -> &VersionVector {
        &self.vector
    }

    fn apply_retention(&mut self, _now_ms: u64) -> Result<u64, StorageError> {
        Ok(0)
    }

    fn stats(&self) -> LogStats {
        LogStats {
            event_count: self.records.len() as u64,
            byte_count: self.records.iter().map(|e| e.size_in_memory() as u64).sum(),
            segment_count: 1,
        }
    }
}
