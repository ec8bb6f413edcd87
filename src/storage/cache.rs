//! A byte-bounded cache of the newest durable records, so consumers at the tail read from
//! memory. It always holds a suffix of the durable log: the records from `first_offset` up to
//! the durable end, with no hole.
//!
//! The records are kept encoded (their bodies, as the segment file holds them) in one ring of
//! `bytes_max` bytes, reserved once at start-up and filled as records arrive, and a table of where each
//! body starts. A new record overwrites the oldest ones; a body never wraps around the ring's
//! end (the space left there is skipped). So at steady state caching a record copies its bytes
//! and allocates nothing, and a read gives a view of the bytes in place (issue 13).
//!
//! The log encodes a turn's records straight into the ring (`stage`), whole (header and
//! body), in one contiguous run after the newest cached record; the segment is written from
//! that run (`staged`) and, once the records are durable, they become cached without a copy
//! (`commit_staged`). Staged records are not cached: `get` never returns one, so nothing
//! reaches a reader before it is durable. Staging a record overwrites the oldest cached ones
//! first (they are evicted at once, so the cache stays a suffix of the durable log); a failed
//! write discards the run (`discard_staged`).

use std::collections::VecDeque;

use super::record::RECORD_HEADER_SIZE;

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
    /// The staged records' run in `ring` (start, end), empty when `start == end`.
    staged: (usize, usize),
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
            staged: (0, 0),
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
        self.evict_in_the_way(start, end, skipped);
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

    /// Evicts the oldest records while they lie in the skipped space at the ring's end (from
    /// `skipped`) or overlap `start..end`. Records are laid out in ring order from the oldest,
    /// so the ones in the way are at the front.
    fn evict_in_the_way(&mut self, start: usize, end: usize, skipped: Option<usize>) {
        while let Some(&(front_start, front_size)) = self.entries.front() {
            let in_skipped = skipped.is_some_and(|skipped| front_start >= skipped);
            let overlaps = front_start < end && start < front_start + front_size;
            if !in_skipped && !overlaps {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Room for the next staged record of `size` bytes (header and body), after the staged
    /// ones, to be filled by the caller; `None` when the staged run would not fit in the
    /// ring (the caller then keeps this turn's records elsewhere: `staged` and
    /// `discard_staged`). When the run does not fit before the ring's end it moves to the
    /// ring's start (once per lap: one copy of the records staged so far).
    pub fn stage(&mut self, size: usize) -> Option<&mut [u8]> {
        let (mut start, mut end) = self.staged;
        if start == end {
            // Nothing staged: the run starts after the newest cached record.
            (start, end) = (self.write_at, self.write_at);
        }
        let run = end - start;
        if run + size > self.bytes_max {
            return None;
        }
        if end + size <= self.bytes_max {
            self.evict_in_the_way(end, end + size, None);
        } else {
            // The records from `start` to the ring's end are skipped; the run moves to 0.
            self.evict_in_the_way(0, run + size, Some(start));
            self.ring.copy_within(start..end, 0);
            (start, end) = (0, run);
        }
        let new_end = end + size;
        if self.ring.len() < new_end {
            // Within the capacity reserved by `new`: no reallocation, and only the pages the
            // records land on are touched.
            self.ring.resize(new_end, 0);
        }
        self.staged = (start, new_end);
        Some(&mut self.ring[end..new_end])
    }

    /// The staged records' bytes, in order (empty when none are staged).
    pub fn staged(&self) -> &[u8] {
        &self.ring[self.staged.0..self.staged.1]
    }

    /// Forgets the staged records (their write failed, or the caller moved them elsewhere).
    pub fn discard_staged(&mut self) {
        self.staged = (0, 0);
    }

    /// The staged records became durable, the first at `offset` (which must be
    /// `end_offset()`): they are cached where they are.
    pub fn commit_staged(&mut self, offset: u64) {
        assert_eq!(
            offset,
            self.end_offset(),
            "cache must stay a suffix of the log"
        );
        let (mut at, end) = self.staged;
        while at < end {
            let header: [u8; RECORD_HEADER_SIZE] = self.ring[at..at + RECORD_HEADER_SIZE]
                .try_into()
                .expect("a record's header");
            // Staged by the log: whole records, each starting with its body's size.
            let body_size = u32::from_le_bytes(header[..4].try_into().expect("four bytes"));
            let body_at = at + RECORD_HEADER_SIZE;
            let body_end = body_at + body_size as usize;
            assert!(body_end <= end, "staged records are whole");
            self.entries.push_back((body_at, body_size as usize));
            self.bytes += body_size as usize;
            at = body_end;
        }
        self.write_at = end;
        self.staged = (0, 0);
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

    /// A whole record of `body_size` bytes for staging: the body's size, a zero checksum (the
    /// cache does not check it) and the body, `offset`'s low byte repeated.
    fn record(offset: u64, body_size: usize) -> Vec<u8> {
        let mut bytes = (body_size as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&body(offset, body_size));
        bytes
    }

    /// Turns of 1-9 records of varied sizes staged in the ring and committed (or, every
    /// seventh turn, discarded as after a failed write): while staged a record is never
    /// returned by `get`, the staged bytes are the turn's records in order, every cached
    /// record reads back intact after every turn, the cache stays a suffix of the committed
    /// records and within its bytes, and a turn larger than the ring is refused (`None`).
    #[test]
    fn staged_records_are_cached_in_place_once_committed() {
        let mut cache = EventCache::new(1000, 0).expect("small cache");
        let mut sizes = Vec::new();
        let mut next = 0u64;
        for turn in 0..600u64 {
            let count = 1 + (turn as usize * 5) % 9;
            let mut expected = Vec::new();
            let mut fits = true;
            for i in 0..count as u64 {
                let offset = next + i;
                let size = 1 + (offset as usize * 37 + turn as usize) % 150;
                let bytes = record(offset, size);
                match cache.stage(bytes.len()) {
                    Some(room) => room.copy_from_slice(&bytes),
                    None => {
                        assert!(expected.len() + bytes.len() > 1000, "turn {turn}: refused");
                        fits = false;
                        break;
                    }
                }
                expected.extend_from_slice(&bytes);
                assert_eq!(cache.staged(), &expected[..], "turn {turn}");
                assert_eq!(cache.get(offset), None, "staged, not durable");
                assert_eq!(cache.end_offset(), next, "staged records are not cached");
            }
            if !fits || turn % 7 == 3 {
                cache.discard_staged();
                assert!(cache.staged().is_empty());
                assert!(cache.end_offset() <= next && cache.first_offset() <= next);
                // A discarded turn is never durable: the next turn's records take its offsets,
                // and the cache (what eviction left of it) is still a suffix ending at `next`.
                assert_eq!(cache.end_offset(), next);
                continue;
            }
            cache.commit_staged(next);
            for i in 0..count as u64 {
                sizes.push(1 + ((next + i) as usize * 37 + turn as usize) % 150);
            }
            next += count as u64;
            assert_eq!(cache.end_offset(), next, "turn {turn}");
            assert!(cache.bytes() <= 1000);
            assert!(cache.first_offset() < next, "the newest record is cached");
            for cached in cache.first_offset()..cache.end_offset() {
                assert_eq!(
                    cache.get(cached),
                    Some(&body(cached, sizes[cached as usize])[..]),
                    "offset {cached} after turn {turn}"
                );
            }
        }
        assert!(next > 2000, "the ring wrapped many times: {next} records");
    }

    /// Pushed bodies (the path of a turn that did not fit in the ring) and staged records mix.
    #[test]
    fn pushed_and_staged_records_mix() {
        let mut cache = EventCache::new(500, 0).expect("small cache");
        for offset in 0..300u64 {
            let size = 10 + (offset as usize * 13) % 90;
            if offset % 3 == 0 {
                cache.push(offset, &body(offset, size));
            } else {
                let bytes = record(offset, size);
                cache
                    .stage(bytes.len())
                    .expect("one record fits")
                    .copy_from_slice(&bytes);
                cache.commit_staged(offset);
            }
            assert_eq!(cache.end_offset(), offset + 1);
            assert_eq!(cache.get(offset), Some(&body(offset, size)[..]));
            assert!(cache.bytes() <= 500);
        }
    }
}
