//! A byte-bounded cache of the newest durable records, so consumers at the tail read from
//! memory. It always holds a suffix of the durable log: the records from `first_offset` up to
//! the durable end, with no hole.

use std::collections::VecDeque;

use crate::event::Event;

#[derive(Debug)]
pub struct EventCache {
    events: VecDeque<Event>,
    first_offset: u64,
    bytes: usize,
    bytes_max: usize,
}

impl EventCache {
    /// An empty cache whose next record will be `next_offset`.
    pub fn new(bytes_max: usize, next_offset: u64) -> EventCache {
        EventCache {
            events: VecDeque::new(),
            first_offset: next_offset,
            bytes: 0,
            bytes_max,
        }
    }

    /// The oldest cached offset (the durable end when empty).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.events.len() as u64
    }

    /// The bytes the cached events take, as counted against the limit.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the record that just became durable at `offset` (which must be `end_offset()`),
    /// evicting the oldest ones to stay under the limit. A record larger than the whole cache
    /// empties it and is not kept: it is served from disk.
    pub fn push(&mut self, offset: u64, event: Event) {
        assert_eq!(
            offset,
            self.end_offset(),
            "cache must stay a suffix of the log"
        );
        let size = event.size_in_memory();
        if size > self.bytes_max {
            self.events.clear();
            self.bytes = 0;
            self.first_offset = offset + 1;
            return;
        }
        self.bytes += size;
        self.events.push_back(event);
        while self.bytes > self.bytes_max {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.bytes -= event.size_in_memory();
            self.first_offset += 1;
        }
    }

    /// Forgets records below `offset` (after retention deleted them).
    pub fn drop_before(&mut self, offset: u64) {
        while self.first_offset < offset && !self.events.is_empty() {
            self.evict_oldest();
        }
        self.first_offset = self.first_offset.max(offset);
    }

    pub fn get(&self, offset: u64) -> Option<&Event> {
        let index = offset.checked_sub(self.first_offset)?;
        self.events.get(usize::try_from(index).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::tests::event;

    #[test]
    fn cache_stays_under_its_byte_limit_and_skips_huge_events() {
        let one = event(1, 1, 0, 100).size_in_memory();
        let mut cache = EventCache::new(one * 3, 10);
        for offset in 10..15 {
            cache.push(offset, event(offset, 1, 0, 100));
        }
        assert_eq!((cache.first_offset(), cache.end_offset()), (12, 15));
        assert!(cache.bytes() <= one * 3);
        assert_eq!(cache.get(11), None);
        assert_eq!(cache.get(12).map(|e| e.id.counter), Some(12));
        cache.push(15, event(15, 1, 0, one * 4));
        assert_eq!((cache.first_offset(), cache.end_offset()), (16, 16));
        assert_eq!(cache.bytes(), 0);
        cache.push(16, event(16, 1, 0, 100));
        cache.drop_before(20);
        assert_eq!((cache.first_offset(), cache.end_offset()), (20, 20));
    }
}
