//! A byte-bounded cache of the newest durable records, so consumers at the tail read from
//! memory. It always holds a suffix of the durable log: the records from `first_offset` up to
//! the durable end, with no hole.
//!
//! The records are kept encoded (their bodies, as the segment file holds them) in one ring of
//! `bytes_max` bytes, reserved once at start-up and filled as records arrive, and a table of where each
//! body starts. A new record overwrites the oldest ones; a body never wraps around the ring's
//! end (the space left there is skipped). So at steady state caching a record copies its bytes
//! and allocates nothing, and a read gives a view of the bytes in place (issue 13).

use std::collections::VecDeque;

#[derive(Debug)]
pub struct EventCache {
    /// `bytes_max` bytes once the first record was cached, empty before.
    ring: Vec<u8>,
    /// Where each cached body lies in `ring` (start, length), oldest first.
    entries: VecDeque<(usize, usize)>,
    /// Where the next body goes (unless it does not fit before the ring's end).
    write_at: usize,
    first_offset: u64,
    bytes: usize,
    bytes_max: usize,
}

impl EventCache {
    /// An empty cache whose next record will be `next_offset`. The ring's address space is
    /// reserved here, so a `bytes_max` the system cannot give is an error at start-up (attack
    /// round 5: `--max-cache-memory 100G` aborted the server at its first produce); its pages
    /// cost resident memory only as records fill them.
    pub fn new(
        bytes_max: usize,
        next_offset: u64,
    ) -> Result<EventCache, std::collections::TryReserveError> {
        let mut ring = Vec::new();
        ring.try_reserve_exact(bytes_max)?;
        Ok(EventCache {
            ring,
            entries: VecDeque::new(),
            write_at: 0,
            first_offset: next_offset,
            bytes: 0,
            bytes_max,
        })
    }

    /// The oldest cached offset (the durable end when empty).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.entries.len() as u64
    }

    /// The bytes the cached record bodies take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the body of the record that just became durable at `offset` (which must be
    /// `end_offset()`), overwriting the oldest ones where it goes. A body larger than the
    /// whole cache empties it and is not kept: it is served from disk.
    pub fn push(&mut self, offset: u64, body: &[u8]) {
        assert_eq!(
            offset,
            self.end_offset(),
            "cache must stay a suffix of the log"
        );
        let size = body.len();
        if size > self.bytes_max || size == 0 {
            self.entries.clear();
            self.bytes = 0;
            self.write_at = 0;
            self.first_offset = offset + 1;
            return;
        }
        // The body goes at `write_at`, or at the ring's start if it does not fit before the
        // end; the space it skips at the end holds only the oldest records.
        let (start, skipped) = if self.write_at + size <= self.bytes_max {
            (self.write_at, None)
        } else {
            (0, Some(self.write_at))
        };
        let end = start + size;
        // Records are laid out in ring order from the oldest, so the ones in the way are at
        // the front: those in the skipped space, then those overlapping the new body.
        while let Some(&(front_start, front_size)) = self.entries.front() {
            let in_skipped = skipped.is_some_and(|skipped| front_start >= skipped);
            let overlaps = front_start < end && start < front_start + front_size;
            if !in_skipped && !overlaps {
                break;
            }
            self.evict_oldest();
        }
        if self.ring.len() < end {
            // Within the capacity reserved by `new`: no reallocation, and only the pages the
            // body lands on are touched.
            self.ring.resize(end, 0);
        }
        self.ring[start..end].copy_from_slice(body);
        self.entries.push_back((start, size));
        self.bytes += size;
        self.write_at = end;
    }

    fn evict_oldest(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
            self.first_offset += 1;
        }
        if self.entries.is_empty() {
            self.write_at = 0;
        }
    }

    /// Forgets records below `offset` (after retention deleted them).
    pub fn drop_before(&mut self, offset: u64) {
        while self.first_offset < offset && !self.entries.is_empty() {
            self.evict_oldest();
        }
        self.first_offset = self.first_offset.max(offset);
    }

    /// The body of the record at `offset`, if cached.
    pub fn get(&self, offset: u64) -> Option<&[u8]> {
        let index = offset.checked_sub(self.first_offset)?;
        let &(start, size) = self.entries.get(usize::try_from(index).ok()?)?;
        Some(&self.ring[start..start + size])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(offset: u64, size: usize) -> Vec<u8> {
        vec![offset as u8; size]
    }

    #[test]
    fn cache_stays_under_its_byte_limit_and_skips_huge_records() {
        let mut cache = EventCache::new(300, 10).expect("small cache");
        for offset in 10..15 {
            cache.push(offset, &body(offset, 100));
        }
        assert_eq!((cache.first_offset(), cache.end_offset()), (12, 15));
        assert!(cache.bytes() <= 300);
        assert_eq!(cache.get(11), None);
        assert_eq!(cache.get(12), Some(&body(12, 100)[..]));
        assert_eq!(cache.get(14), Some(&body(14, 100)[..]));
        cache.push(15, &body(15, 400));
        assert_eq!((cache.first_offset(), cache.end_offset()), (16, 16));
        assert_eq!(cache.bytes(), 0);
        cache.push(16, &body(16, 100));
        cache.drop_before(20);
        assert_eq!((cache.first_offset(), cache.end_offset()), (20, 20));
    }

    /// Records of varied sizes wrap around the ring many times: every cached record reads
    /// back intact, the cache is always a suffix, and the bytes stay within the limit.
    #[test]
    fn records_wrapping_the_ring_read_back_intact() {
        let mut cache = EventCache::new(1000, 0).expect("small cache");
        let mut sizes = Vec::new();
        for offset in 0..2000u64 {
            let size = 1 + (offset as usize * 37) % 333;
            sizes.push(size);
            cache.push(offset, &body(offset, size));
            assert_eq!(cache.end_offset(), offset + 1);
            assert!(cache.bytes() <= 1000);
            assert!(
                cache.first_offset() <= offset,
                "the newest record is cached"
            );
            for cached in cache.first_offset()..cache.end_offset() {
                assert_eq!(
                    cache.get(cached),
                    Some(&body(cached, sizes[cached as usize])[..]),
                    "offset {cached} after pushing {offset}"
                );
            }
        }
    }
}
