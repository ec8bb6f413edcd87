//! Which subscriptions a turn's new events can wake, found without visiting every one (attack
//! finding F4, session 10: `wake_tailing_consumers` matched the glob of every subscription of
//! every connection against the turn's namespaces, about 145 ns per idle subscription per
//! turn, so 100,000 idle subscriptions on `/idle/<n>/**` cost a bystander producing to
//! `/hot/x` 22.4 ms per produce).
//!
//! A subscription is filed under the literal part of its glob that every matching namespace
//! starts with (`consume::index_key`: the whole glob when it has no wildcard, else its text up
//! to the last `/` before the first wildcard); globs whose first segment holds a wildcard are
//! filed apart (below). A namespace `/a/b/c` can match only the globs
//! filed under `/a`, `/a/b` or `/a/b/c` (as a prefix), or under `/a/b/c` exactly: the lookup
//! hashes the namespace once, segment by segment, and probes the table only at depths
//! (segment counts) some filed key has, so it costs the namespace's length plus one probe per
//! such depth, whatever the number of subscriptions.
//!
//! A glob whose first segment holds a wildcard has no such prefix. Attack round 12: these
//! were all candidates in every turn, so 100,000 idle subscriptions on `/**/nomatch` (1,563
//! connections) held a bystander's produce->ack at 119 ms (p50, load 6.5). Now one whose
//! last segment is literal (`/**/orders`, `/*/x`) is filed under that segment, which every
//! namespace it matches ends with after a `/` (literal characters at the end of a glob match
//! the namespace's last characters, and the `/` before them is a literal one or ends what
//! `**/` matched): a namespace finds it with one probe of its own last segment. The others
//! (`/**`, `/*/x*`) are grouped by their text: a turn matches each distinct glob once, and
//! only the subscriptions of the groups that match are candidates. Their number is the
//! engine's `unindexed_globs_max` (`Config`).
//!
//! A subscription the index does not name is one whose glob matches none of the turn's
//! namespaces: the wake loop would only have moved its cursor to the new durable end. That
//! move is kept lazily ([`ReadPosition`]): a subscription that waited at the end of the log
//! when it was last touched reads as being at the durable end of the latest wake, so nothing
//! visits it until something (a match, credit, drained output) touches it again.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};

use super::connection::ConnId;
use super::consume::index_key;
use crate::storage::{NamespaceKey, Offset};

/// A subscription as the index files it. Ordered as the wake loop visits subscriptions: by
/// connection slot (one live connection per slot), then by subscription id.
pub type Entry = (ConnId, u32);

/// How many times tail subscriptions were woken, and the durable end the latest wake moved
/// the waiting ones to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailClock {
    wakes: u64,
    end: Offset,
}

/// Where a subscription reads next, and whether it is in the engine's ready queue; the two
/// together decide whether a wake it was not visited by moved it (see the module's comment).
///
/// The old wake loop moved every subscription that was not queued and was at or past the
/// previous wake's durable end (so at the end of the log) to the new durable end, unless one
/// of the turn's namespaces matched it. `parked_at` records, when the position was last
/// written or left the queue, that it was at or past the latest wake's end then: every wake
/// after that one moved it, and it reads as the latest wake's end. A position behind that
/// end (out of credit, or its output full) is not parked, as the loop never moved it either.
#[derive(Debug)]
pub struct ReadPosition {
    next: Offset,
    queued: bool,
    /// The wake count when `next` was written, if `next` was at or past that wake's end.
    parked_at: Option<u64>,
}

impl ReadPosition {
    pub fn new(next: Offset, clock: TailClock) -> ReadPosition {
        ReadPosition {
            next,
            queued: false,
            parked_at: (next >= clock.end).then_some(clock.wakes),
        }
    }

    /// The next log record to look at.
    pub fn next(&self, clock: TailClock) -> Offset {
        match self.parked_at {
            Some(wakes) if !self.queued && wakes < clock.wakes => clock.end,
            _ => self.next,
        }
    }

    pub fn set_next(&mut self, next: Offset, clock: TailClock) {
        self.next = next;
        self.parked_at = (!self.queued && next >= clock.end).then_some(clock.wakes);
    }

    /// True while the subscription is in the engine's ready queue.
    pub fn is_queued(&self) -> bool {
        self.queued
    }

    /// The subscription enters the ready queue: its position holds still until it leaves.
    /// False if it was queued already.
    pub fn queue(&mut self, clock: TailClock) -> bool {
        if self.queued {
            return false;
        }
        self.next = self.next(clock);
        self.parked_at = None;
        self.queued = true;
        true
    }

    /// The subscription left the ready queue.
    pub fn unqueue(&mut self, clock: TailClock) {
        self.queued = false;
        self.set_next(self.next, clock);
    }

    /// The wake now running (the one after `clock`) looked at this subscription and will
    /// queue it, or found it behind its start: it stays at `next`, its value at `clock`,
    /// whatever later wakes do.
    pub fn hold(&mut self, next: Offset) {
        self.next = next;
        self.parked_at = None;
    }

    /// The wake now running (the one after `clock`) looked at this subscription and moved it
    /// to `end`, that wake's durable end.
    pub fn skip_to(&mut self, end: Offset, clock: TailClock) {
        self.next = end;
        self.parked_at = Some(clock.wakes + 1);
    }
}

/// The subscriptions filed by the literal part of their glob, and the wake clock.
#[derive(Debug)]
pub struct TailIndex {
    clock: TailClock,
    /// Keys the hashes below (a random key per process: a client cannot aim its globs at
    /// one slot of the table).
    hasher: RandomState,
    /// Buckets by the hash of their key, segment by segment (`segment_hashes`), and whether
    /// their globs match the key only (no wildcard) or also what lies below it (`key/...`).
    keyed: HashMap<(u64, bool), Bucket>,
    /// How many buckets have a key of each depth (its number of `/`-separated segments,
    /// the empty one before the leading `/` included).
    depths: Vec<u32>,
    /// Subscriptions whose glob has a wildcard in its first segment but none in its last, by
    /// that last segment.
    by_last_segment: HashMap<Box<str>, Entries>,
    /// Subscriptions whose glob has a wildcard in its first and its last segment, grouped by
    /// the glob's text: each group is matched once per turn.
    unkeyed: HashMap<Box<str>, Entries>,
    /// The id-order subscriptions, which a move of the stable clock may release events of
    /// (`Engine::wake_ordered`): in wake order, without a pass over every subscription.
    id_order: BTreeSet<Entry>,
    /// Subscriptions filed, for the engine's invariant check.
    count: usize,
    /// The buckets a lookup found, as their slot in `keyed` and their place in its chain
    /// (`Bucket::chain`); kept for its allocation.
    found: Vec<((u64, bool), usize)>,
    /// Tests compare wakes through the index with wakes that visit every subscription.
    #[cfg(test)]
    pub visit_all: bool,
    /// Tests keep only these bits of each hash, so that keys collide.
    #[cfg(test)]
    hash_mask: u64,
}

/// The subscriptions filed under one key. Small: most keys hold one subscription, without a
/// set of its own (with the table's slot and the key, about 160 bytes of RSS a subscription
/// with 100,000 of them on distinct keys: 241 MB against 225 MB before the index).
#[derive(Debug)]
struct Bucket {
    key: Box<str>,
    entries: Entries,
    /// Buckets of other keys whose hash is the same (a keyed 64-bit hash: in practice none).
    collided: Vec<Bucket>,
}

/// One subscription without an allocation, or a set of them.
#[derive(Debug)]
enum Entries {
    One(Entry),
    Many(BTreeSet<Entry>),
}

impl Entries {
    fn insert(&mut self, entry: Entry) {
        match self {
            Entries::One(one) if *one == entry => {}
            Entries::One(one) => *self = Entries::Many(BTreeSet::from([*one, entry])),
            Entries::Many(set) => {
                set.insert(entry);
            }
        }
    }

    fn remove(&mut self, entry: Entry) -> bool {
        match self {
            Entries::One(one) if *one == entry => {
                *self = Entries::Many(BTreeSet::new());
                true
            }
            Entries::One(_) => false,
            Entries::Many(set) => set.remove(&entry),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Entries::Many(set) if set.is_empty())
    }

    fn contains(&self, entry: Entry) -> bool {
        match self {
            Entries::One(one) => *one == entry,
            Entries::Many(set) => set.contains(&entry),
        }
    }

    /// One of the entries (the lowest of a set); never called on an empty set.
    fn first(&self) -> Entry {
        match self {
            Entries::One(one) => *one,
            // Empty sets are removed as they become empty (`unfile`, `remove_keyed`).
            Entries::Many(set) => *set.first().expect("a filed set is not empty"),
        }
    }

    fn extend_into(&self, out: &mut Vec<Entry>) {
        match self {
            Entries::One(one) => out.push(*one),
            Entries::Many(set) => out.extend(set.iter().copied()),
        }
    }
}

impl Bucket {
    fn new(key: &str, entry: Entry) -> Bucket {
        Bucket {
            key: key.into(),
            entries: Entries::One(entry),
            collided: Vec::new(),
        }
    }

    /// This bucket, then those that collided with it.
    fn chain(&self) -> impl Iterator<Item = &Bucket> {
        std::iter::once(self).chain(self.collided.iter())
    }
}

impl TailIndex {
    /// An empty index whose clock starts at `durable_end`, the log's end when the engine starts.
    pub fn new(durable_end: Offset) -> TailIndex {
        TailIndex {
            clock: TailClock {
                wakes: 0,
                end: durable_end,
            },
            hasher: RandomState::new(),
            keyed: HashMap::new(),
            depths: Vec::new(),
            by_last_segment: HashMap::new(),
            unkeyed: HashMap::new(),
            id_order: BTreeSet::new(),
            count: 0,
            found: Vec::new(),
            #[cfg(test)]
            visit_all: false,
            #[cfg(test)]
            hash_mask: u64::MAX,
        }
    }

    pub fn clock(&self) -> TailClock {
        self.clock
    }

    /// The durable end the latest wake moved waiting subscriptions to.
    pub fn end(&self) -> Offset {
        self.clock.end
    }

    /// A wake moved the waiting subscriptions it did not wake to `end` (lazily, see
    /// [`ReadPosition`]); returns the new clock.
    pub fn advance(&mut self, end: Offset) -> TailClock {
        self.clock = TailClock {
            wakes: self.clock.wakes + 1,
            end,
        };
        self.clock
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether a wake may visit only the candidates `candidates` names.
    pub fn may_skip(&self) -> bool {
        #[cfg(test)]
        if self.visit_all {
            return false;
        }
        true
    }

    /// The id-order subscriptions, in wake order.
    pub fn id_order(&self) -> impl Iterator<Item = Entry> + '_ {
        self.id_order.iter().copied()
    }

    /// Files a new subscription with glob `pattern`; `id_order` for one in id order.
    pub fn insert(&mut self, entry: Entry, pattern: &str, id_order: bool) {
        self.count += 1;
        if id_order {
            self.id_order.insert(entry);
        }
        let (key, exact) = match filing(pattern) {
            Filing::Keyed(key, exact) => (key, exact),
            Filing::LastSegment(segment) => {
                return file(&mut self.by_last_segment, segment, entry);
            }
            Filing::Unkeyed => return file(&mut self.unkeyed, pattern, entry),
        };
        let (depth, hash) = self.key_hash(key);
        let head = match self.keyed.entry((hash, exact)) {
            std::collections::hash_map::Entry::Occupied(head) => head.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Bucket::new(key, entry));
                return self.count_bucket(depth, 1);
            }
        };
        if *head.key == *key {
            return head.entries.insert(entry);
        }
        match head.collided.iter_mut().find(|b| *b.key == *key) {
            Some(bucket) => bucket.entries.insert(entry),
            None => {
                head.collided.push(Bucket::new(key, entry));
                self.count_bucket(depth, 1);
            }
        }
    }

    fn count_bucket(&mut self, depth: usize, change: i32) {
        if self.depths.len() <= depth {
            self.depths.resize(depth + 1, 0);
        }
        self.depths[depth] = self.depths[depth].wrapping_add_signed(change);
    }

    /// Forgets a subscription filed with glob `pattern`; a bucket left empty goes, so the
    /// index holds only what open subscriptions need.
    pub fn remove(&mut self, entry: Entry, pattern: &str) {
        let removed = match filing(pattern) {
            Filing::Keyed(key, exact) => self.remove_keyed(entry, key, exact),
            Filing::LastSegment(segment) => unfile(&mut self.by_last_segment, segment, entry),
            Filing::Unkeyed => unfile(&mut self.unkeyed, pattern, entry),
        };
        assert!(
            removed,
            "{}: subscription {} was not filed",
            entry.0, entry.1
        );
        self.id_order.remove(&entry);
        self.count -= 1;
    }

    fn remove_keyed(&mut self, entry: Entry, key: &str, exact: bool) -> bool {
        let (depth, hash) = self.key_hash(key);
        let Some(head) = self.keyed.get_mut(&(hash, exact)) else {
            return false;
        };
        let (removed, emptied) = if *head.key == *key {
            let removed = head.entries.remove(entry);
            let emptied = head.entries.is_empty();
            if emptied {
                // A bucket that collided with it takes its place in the slot.
                match head.collided.pop() {
                    Some(next) => {
                        let collided = std::mem::take(&mut head.collided);
                        *head = Bucket { collided, ..next };
                    }
                    None => {
                        self.keyed.remove(&(hash, exact));
                    }
                }
            }
            (removed, emptied)
        } else {
            let Some(position) = head.collided.iter().position(|b| *b.key == *key) else {
                return false;
            };
            let removed = head.collided[position].entries.remove(entry);
            let emptied = head.collided[position].entries.is_empty();
            if emptied {
                head.collided.swap_remove(position);
            }
            (removed, emptied)
        };
        if emptied {
            self.count_bucket(depth, -1);
        }
        removed
    }

    /// Whether `entry` is filed as a subscription with glob `pattern`, and among the id-order
    /// ones if and only if `id_order` (invariant checks).
    pub fn contains(&self, entry: Entry, pattern: &str, id_order: bool) -> bool {
        self.id_order.contains(&entry) == id_order && self.contains_keyed(entry, pattern)
    }

    fn contains_keyed(&self, entry: Entry, pattern: &str) -> bool {
        let (key, exact) = match filing(pattern) {
            Filing::Keyed(key, exact) => (key, exact),
            Filing::LastSegment(segment) => {
                return (self.by_last_segment.get(segment)).is_some_and(|e| e.contains(entry));
            }
            Filing::Unkeyed => return self.unkeyed.get(pattern).is_some_and(|e| e.contains(entry)),
        };
        let (_, hash) = self.key_hash(key);
        self.keyed.get(&(hash, exact)).is_some_and(|head| {
            head.chain()
                .any(|b| *b.key == *key && b.entries.contains(entry))
        })
    }

    /// Whether a subscription with glob `pattern` may be filed while at most `unkeyed_max`
    /// distinct globs are grouped apart (`Config::unindexed_globs_max`): always, unless its
    /// glob is one of those (a wildcard in its first and last segments) and not held yet.
    pub fn admits(&self, pattern: &str, unkeyed_max: usize) -> bool {
        !matches!(filing(pattern), Filing::Unkeyed)
            || self.unkeyed.contains_key(pattern)
            || self.unkeyed.len() < unkeyed_max
    }

    /// Every subscription whose glob may match one of `namespaces`, in wake order (sorted),
    /// into `candidates`. Those left out match none of them. `group_matches(entry)` says
    /// whether the glob of `entry`'s subscription may match one of the namespaces; it is
    /// asked once per distinct glob with a wildcard in its first and last segments.
    pub fn candidates<'a>(
        &mut self,
        namespaces: impl Iterator<Item = &'a str>,
        candidates: &mut Vec<Entry>,
        mut group_matches: impl FnMut(Entry) -> bool,
    ) {
        let mut found = std::mem::take(&mut self.found);
        candidates.clear();
        for namespace in namespaces {
            self.find_buckets(namespace, &mut found);
            let last = namespace
                .rsplit_once('/')
                .map_or(namespace, |(_, last)| last);
            if let Some(entries) = self.by_last_segment.get(last) {
                entries.extend_into(candidates);
            }
        }
        // A bucket found through several namespaces is listed once.
        found.sort_unstable();
        found.dedup();
        for &(slot, place) in &found {
            // Found just above, and the index has not changed since.
            let bucket = self.keyed[&slot].chain().nth(place).expect("found");
            bucket.entries.extend_into(candidates);
        }
        for entries in self.unkeyed.values() {
            if group_matches(entries.first()) {
                entries.extend_into(candidates);
            }
        }
        // Each subscription is filed once, in one place; one filed by its last segment is
        // found once per namespace ending in it, hence the dedup.
        candidates.sort_unstable();
        candidates.dedup();
        found.clear();
        self.found = found;
    }

    /// The buckets whose globs may match `namespace`: those keyed by one of its leading
    /// segment runs as a prefix, and the exact ones keyed by the whole namespace.
    fn find_buckets(&self, namespace: &str, found: &mut Vec<((u64, bool), usize)>) {
        segment_hashes(&self.hasher, namespace, |depth, end, hash| {
            let hash = self.masked(hash);
            if self.depths.get(depth).is_none_or(|&count| count == 0) {
                return;
            }
            let (prefix, whole) = (&namespace[..end], end == namespace.len());
            for exact in [false, true] {
                if exact && !whole {
                    continue;
                }
                let Some(head) = self.keyed.get(&(hash, exact)) else {
                    continue;
                };
                for (place, bucket) in head.chain().enumerate() {
                    if *bucket.key == *prefix {
                        found.push(((hash, exact), place));
                    }
                }
            }
        });
    }

    /// The depth and hash of a key, as `find_buckets` computes them for a namespace.
    fn key_hash(&self, key: &str) -> (usize, u64) {
        let mut last = (0, 0);
        segment_hashes(&self.hasher, key, |depth, _, hash| last = (depth, hash));
        (last.0, self.masked(last.1))
    }

    fn masked(&self, hash: u64) -> u64 {
        #[cfg(test)]
        return hash & self.hash_mask;
        #[cfg(not(test))]
        hash
    }
}

/// How the index files a glob.
enum Filing<'a> {
    /// Under its literal start: the key, and whether the key is the whole glob.
    Keyed(&'a str, bool),
    /// A wildcard in its first segment, none in its last: under that last segment.
    LastSegment(&'a str),
    /// A wildcard in its first and its last segment: with the subscriptions of the same glob.
    Unkeyed,
}

fn filing(pattern: &str) -> Filing<'_> {
    // `index_key` gives an owned key; the key is a prefix of the pattern, so it is borrowed
    // back from it.
    match index_key(pattern) {
        Some(NamespaceKey::Exact(_)) => Filing::Keyed(pattern, true),
        Some(NamespaceKey::Prefix(prefix)) => Filing::Keyed(&pattern[..prefix.len()], false),
        None => match pattern.rsplit_once('/') {
            // A `]` too, in case a `/` stood in a bracket expression (`NamespaceGlob` refuses one).
            // Not an empty one: `**/` at the end matches any run of characters (`/**/`).
            Some((_, last)) if !last.is_empty() && !last.contains(['*', '?', '[', ']']) => {
                Filing::LastSegment(last)
            }
            _ => Filing::Unkeyed,
        },
    }
}

/// Files `entry` under `key` of `table`.
fn file(table: &mut HashMap<Box<str>, Entries>, key: &str, entry: Entry) {
    match table.get_mut(key) {
        Some(entries) => entries.insert(entry),
        None => {
            table.insert(key.into(), Entries::One(entry));
        }
    }
}

/// Takes `entry` from under `key` of `table` (a key left empty goes); false if not filed.
fn unfile(table: &mut HashMap<Box<str>, Entries>, key: &str, entry: Entry) -> bool {
    let Some(entries) = table.get_mut(key) else {
        return false;
    };
    let removed = entries.remove(entry);
    if entries.is_empty() {
        table.remove(key);
    }
    removed
}

/// Calls `visit(depth, end, hash)` for each leading run of `text`'s `/`-separated segments:
/// `text[..end]` is the run of `depth` segments, `hash` its hash. One pass over `text`.
fn segment_hashes(hasher: &RandomState, text: &str, mut visit: impl FnMut(usize, usize, u64)) {
    let mut state = hasher.build_hasher();
    let mut start = 0;
    for (index, segment) in text.split('/').enumerate() {
        state.write(segment.as_bytes());
        // A separator after each segment: `/ab` and `/a/b` hash apart.
        state.write_u8(b'/');
        let end = start + segment.len();
        visit(index + 1, end, state.finish());
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NamespaceGlob;

    fn entry(slot: u32, id: u32) -> Entry {
        (
            ConnId {
                slot,
                generation: 0,
            },
            id,
        )
    }

    /// The candidates of `namespaces`, every group of globs with wildcards at both ends taken
    /// as matching.
    fn candidates(index: &mut TailIndex, namespaces: &[&str]) -> Vec<Entry> {
        let mut found = Vec::new();
        index.candidates(namespaces.iter().copied(), &mut found, |_| true);
        found
    }

    #[test]
    fn a_namespace_finds_the_globs_filed_under_its_leading_segments_in_wake_order() {
        let mut index = TailIndex::new(Offset(0));
        let globs = [
            (entry(3, 1), "/idle/1/**"),
            (entry(1, 2), "/idle/2/**"),
            (entry(2, 1), "/hot/**"),
            (entry(0, 7), "/hot/x"),
            (entry(0, 5), "/hot/xy"),
            (entry(1, 1), "/*/x"),
            (entry(4, 1), "/hot/x/**"),
            (entry(4, 2), "/hot"),
        ];
        for (entry, glob) in globs {
            index.insert(entry, glob, false);
        }
        assert_eq!(index.len(), globs.len());
        let expected = vec![entry(0, 7), entry(1, 1), entry(2, 1), entry(4, 1)];
        assert_eq!(candidates(&mut index, &["/hot/x"]), expected);
        // Two namespaces under one key find its bucket once.
        // `/*/x` is filed under its last segment, which these do not end with.
        let expected = vec![entry(2, 1)];
        assert_eq!(candidates(&mut index, &["/hot/a", "/hot/b"]), expected);
        let expected = vec![entry(1, 2), entry(2, 1), entry(4, 2)];
        assert_eq!(candidates(&mut index, &["/idle/2/z", "/hot"]), expected);
        remove_all(&mut index, globs.iter().copied());
    }

    /// Removes every `(entry, glob)` (each filed before, found, and gone after), then checks
    /// that nothing of the index is left.
    fn remove_all<'a>(index: &mut TailIndex, filed: impl Iterator<Item = (Entry, &'a str)>) {
        for (entry, glob) in filed {
            assert!(index.contains(entry, glob, false), "{glob:?} was not filed");
            index.remove(entry, glob);
            assert!(!index.contains(entry, glob, false));
        }
        assert_eq!(index.len(), 0);
        assert!(index.keyed.is_empty() && index.unkeyed.is_empty());
        assert!(index.by_last_segment.is_empty());
        assert!(index.depths.iter().all(|&count| count == 0));
    }

    /// Every glob that matches a namespace is among its candidates, on random globs and
    /// namespaces over a small alphabet (so that they often match).
    #[test]
    fn no_glob_that_matches_is_left_out() {
        no_glob_that_matches_is_left_out_with(u64::MAX);
    }

    /// The same with hashes cut to 2 bits: most keys share their slot with others.
    #[test]
    fn colliding_keys_are_told_apart() {
        no_glob_that_matches_is_left_out_with(3);
    }

    fn no_glob_that_matches_is_left_out_with(hash_mask: u64) {
        let mut random = crate::random::SeededRng::new(11);
        let pieces = ["a", "b", "/", "*", "?", "**", "[ab]", "/**", "/**/"];
        let mut index = TailIndex::new(Offset(0));
        index.hash_mask = hash_mask;
        let mut globs = Vec::new();
        while globs.len() < 400 {
            let mut pattern = String::from("/");
            for _ in 0..random.below(6) {
                pattern.push_str(pieces[random.index(pieces.len())]);
            }
            if let Ok(glob) = NamespaceGlob::new(&pattern) {
                index.insert(entry(globs.len() as u32, 1), &pattern, false);
                globs.push(glob);
            }
        }
        let mut matched = 0;
        for _ in 0..2000 {
            let mut namespace = String::from("/");
            for _ in 0..random.below(7) {
                namespace.push_str(["a", "b", "/"][random.index(3)]);
            }
            let mut found = Vec::new();
            let matches = |entry: Entry| globs[entry.0.slot as usize].matches(&namespace);
            index.candidates([namespace.as_str()].into_iter(), &mut found, matches);
            for (slot, glob) in globs.iter().enumerate() {
                if glob.matches(&namespace) {
                    matched += 1;
                    assert!(
                        found.contains(&entry(slot as u32, 1)),
                        "{namespace:?} matches {:?} but did not find it",
                        glob.as_str()
                    );
                }
            }
        }
        assert!(
            matched > 1000,
            "only {matched} matches: the test tests little"
        );
        let collided = index.keyed.values().any(|head| !head.collided.is_empty());
        assert_eq!(
            collided,
            hash_mask == 3,
            "keys collide only with cut hashes"
        );
        // Removed in another order than filed, each subscription is found and goes.
        let order = (0..globs.len())
            .rev()
            .step_by(2)
            .chain((0..globs.len()).step_by(2));
        remove_all(
            &mut index,
            order.map(|slot| (entry(slot as u32, 1), globs[slot].as_str())),
        );
    }

    /// Attack round 12: globs with a wildcard in their first segment are found by their
    /// literal last segment, or else matched once per distinct glob, not once per subscription.
    #[test]
    fn wildcard_first_globs_are_found_by_their_last_segment_or_matched_once_per_glob() {
        let mut index = TailIndex::new(Offset(0));
        let mut filed = Vec::new();
        for slot in 0..1000 {
            filed.push((entry(slot, 1), "/**/nomatch"));
            filed.push((entry(slot, 2), "/**"));
            filed.push((entry(slot, 3), "/*/x*"));
        }
        filed.push((entry(5, 4), "/**/x"));
        // A bracket expression in the last segment: not literal.
        filed.push((entry(6, 5), "/*/[ab]x"));
        for &(entry, glob) in &filed {
            index.insert(entry, glob, false);
        }
        assert_eq!((index.unkeyed.len(), index.by_last_segment.len()), (3, 2));
        let globs: Vec<NamespaceGlob> = ["/**/nomatch", "/**", "/*/x*", "/**/x", "/*/[ab]x"]
            .iter()
            .map(|glob| NamespaceGlob::new(glob).unwrap())
            .collect();
        let mut asked = 0;
        let mut found = Vec::new();
        index.candidates(["/hot/y"].into_iter(), &mut found, |entry| {
            asked += 1;
            globs[entry.1 as usize - 1].matches("/hot/y")
        });
        // `/**` matched, `/*/x*` and `/*/[ab]x` did not: each asked once; `/**/nomatch` and
        // `/**/x` not at all.
        assert_eq!(asked, 3);
        let expected: Vec<Entry> = (0..1000).map(|slot| entry(slot, 2)).collect();
        assert_eq!(found, expected);
        let mut found = Vec::new();
        index.candidates(["/a/b/x", "/hot/x"].into_iter(), &mut found, |_| false);
        assert_eq!(found, [entry(5, 4)]);
        assert!(index.admits("/**", 3) && index.admits("/a/*", 3));
        assert!(index.admits("/**/other", 3) && !index.admits("/*/y*", 3));
        assert!(index.admits("/*/y*", 4));
        remove_all(&mut index, filed.into_iter());
    }

    #[test]
    fn a_parked_position_follows_the_wakes_it_was_not_visited_by() {
        let mut index = TailIndex::new(Offset(10));
        let at_end = ReadPosition::new(Offset(10), index.clock());
        let behind = ReadPosition::new(Offset(4), index.clock());
        let mut queued = ReadPosition::new(Offset(10), index.clock());
        assert!(queued.queue(index.clock()));
        index.advance(Offset(15));
        let clock = index.advance(Offset(20));
        assert_eq!(at_end.next(clock), Offset(20));
        assert_eq!(behind.next(clock), Offset(4));
        assert_eq!(queued.next(clock), Offset(10));
        queued.unqueue(clock);
        assert_eq!(queued.next(clock), Offset(10));
        let clock = index.advance(Offset(25));
        // Left the queue behind the end: not moved by later wakes.
        assert_eq!(queued.next(clock), Offset(10));
        let (mut woken, mut skipped) = (at_end, ReadPosition::new(Offset(25), clock));
        woken.hold(woken.next(clock));
        skipped.skip_to(Offset(30), clock);
        let clock = index.advance(Offset(30));
        assert_eq!(woken.next(clock), Offset(25), "woken: holds until queued");
        assert_eq!(skipped.next(clock), Offset(30));
        assert!(woken.queue(clock));
        let clock = index.advance(Offset(35));
        assert_eq!(woken.next(clock), Offset(25));
        assert_eq!(skipped.next(clock), Offset(35));
    }
}
