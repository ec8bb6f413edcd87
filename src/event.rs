//! The event model shared by storage, protocol, engine and client: ids, events, version
//! vectors, cursors and start positions.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The id of a flo server (an "actor"), unique within a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ActorId(pub u16);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The primary key of an event: a Lamport counter and the actor that created the event.
///
/// Ids are totally ordered by counter, then actor; every node agrees on that order. Counter 0
/// means "no id" (see [`EventId::NONE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    // Field order matters: the derived `Ord` compares `counter` first, then `actor`.
    /// The Lamport counter: above every id the appending node had seen.
    pub counter: u64,
    /// The node that first appended the event.
    pub actor: ActorId,
}

impl EventId {
    /// The "no id" value: counter 0.
    pub const NONE: EventId = EventId {
        counter: 0,
        actor: ActorId(0),
    };

    /// The highest counter an event may have. Counters never wrap: a produce that would pass
    /// it is refused, and so is a replicated event above it. `u64::MAX` stays free so that
    /// "the counter after this one" is always a `u64`.
    pub const COUNTER_MAX: u64 = u64::MAX - 1;

    /// The id with this counter and actor.
    pub fn new(counter: u64, actor: u16) -> EventId {
        EventId {
            counter,
            actor: ActorId(actor),
        }
    }

    /// True for [`EventId::NONE`].
    pub fn is_none(&self) -> bool {
        self.counter == 0
    }

    /// False for counter 0 with a non-zero actor: "no id" has one form, all zeros, and the
    /// protocol refuses any other (protocol.md, section 2).
    pub fn is_canonical(&self) -> bool {
        self.counter != 0 || self.actor.0 == 0
    }
}

/// The 25-digit text form: the counter zero-padded to 20 digits, then the actor zero-padded to
/// 5 digits. It sorts as text in id order.
impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}{:05}", self.counter, self.actor.0)
    }
}

/// Why a text is not an event id; the string says how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventIdError(pub String);

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid event id {:?}: expected 25 digits (20-digit counter, 5-digit actor) or COUNTER.ACTOR",
            self.0
        )
    }
}

impl std::error::Error for ParseEventIdError {}

/// Parses the 25-digit form or `counter.actor`.
impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(text: &str) -> Result<EventId, ParseEventIdError> {
        let error = || ParseEventIdError(text.to_string());
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some((counter, actor)) = text.split_once('.') {
            if !all_digits(counter) || !all_digits(actor) {
                return Err(error());
            }
            let counter = counter.parse::<u64>().map_err(|_| error())?;
            let actor = actor.parse::<u16>().map_err(|_| error())?;
            return Ok(EventId::new(counter, actor));
        }
        if text.len() != 25 || !all_digits(text) {
            return Err(error());
        }
        let counter = text[..20].parse::<u64>().map_err(|_| error())?;
        let actor = text[20..].parse::<u16>().map_err(|_| error())?;
        Ok(EventId::new(counter, actor))
    }
}

/// One event as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The id the first server to append it gave it.
    pub id: EventId,
    /// The event this one responds to, if any.
    pub parent_id: Option<EventId>,
    /// A UTF-8 path such as `/food/breakfast/eggs`; see [`validate_namespace`].
    pub namespace: String,
    /// Milliseconds since the Unix epoch, set by the server that first appended the event.
    pub timestamp_ms: u64,
    /// The payload, opaque to flo.
    pub data: Vec<u8>,
}

impl Event {
    /// The bytes this event takes in memory.
    pub fn size_in_memory(&self) -> usize {
        std::mem::size_of::<Event>() + self.namespace.len() + self.data.len()
    }

    /// A view of this event, as the log takes and gives events.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            id: self.id,
            parent_id: self.parent_id,
            namespace: &self.namespace,
            timestamp_ms: self.timestamp_ms,
            data: &self.data,
        }
    }
}

/// One event whose namespace and data are borrowed: from a stored record (the log's cache or
/// a segment reader's buffer) or from a received frame. The log takes appends and gives reads
/// in this form, so the produce and delivery paths copy bytes and allocate nothing per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The id the first server to append it gave it.
    pub id: EventId,
    /// The event this one responds to, if any.
    pub parent_id: Option<EventId>,
    /// See [`Event::namespace`].
    pub namespace: &'a str,
    /// Milliseconds since the Unix epoch, set by the server that first appended the event.
    pub timestamp_ms: u64,
    /// The payload, opaque to flo.
    pub data: &'a [u8],
}

impl EventRef<'_> {
    /// An owned copy (two allocations: the namespace and the data).
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id,
            parent_id: self.parent_id,
            namespace: self.namespace.to_string(),
            timestamp_ms: self.timestamp_ms,
            data: self.data.to_vec(),
        }
    }
}

/// Why a namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceError {
    /// The namespace is empty.
    Empty,
    /// It does not start with `/`.
    MissingLeadingSlash,
    /// It is longer than the server's limit.
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit.
        length_max: usize,
    },
    /// It holds a control character.
    ControlCharacter {
        /// The byte position of the first one.
        position: usize,
    },
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceError::Empty => write!(f, "namespace is empty"),
            NamespaceError::MissingLeadingSlash => write!(f, "namespace must start with '/'"),
            NamespaceError::TooLong { length, length_max } => write!(
                f,
                "namespace is {length} bytes, over the limit of {length_max}"
            ),
            NamespaceError::ControlCharacter { position } => {
                write!(f, "namespace has a control character at byte {position}")
            }
        }
    }
}

/// A namespace is non-empty UTF-8 that starts with `/`, has no control characters and is at
/// most `length_max` bytes long.
pub fn validate_namespace(namespace: &str, length_max: usize) -> Result<(), NamespaceError> {
    if namespace.is_empty() {
        return Err(NamespaceError::Empty);
    }
    if !namespace.starts_with('/') {
        return Err(NamespaceError::MissingLeadingSlash);
    }
    if namespace.len() > length_max {
        return Err(NamespaceError::TooLong {
            length: namespace.len(),
            length_max,
        });
    }
    // The usual namespace is printable ASCII: one pass over the bytes, a word at a time (called
    // per produced event); any other byte takes the per-character check.
    if is_printable_ascii(namespace.as_bytes()) {
        return Ok(());
    }
    if let Some((position, _)) = namespace.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NamespaceError::ControlCharacter { position });
    }
    Ok(())
}

/// Whether every byte is printable ASCII (0x20 to 0x7e), eight bytes at a time with no early
/// exit. A byte-wise loop took 160 of the server's ~3,400 user-space instructions per produced
/// 100 B event (callgrind, BENCHMARKS.md issue 13 session 10); the compiler's vectorization of a
/// byte-wise fold came and went with unrelated changes (56 to 126 instructions, session 11).
fn is_printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    // The high bit of some byte of the result is set if and only if some byte of `word` is
    // 0x80 or more, below 0x20 or 0x7f (the "has less than" and "has zero byte" tricks: a
    // borrow only crosses from a byte that already counts, so the answer for the word is
    // exact).
    let outside = |word: u64| {
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let delete = word ^ (ONES * 0x7f);
        let is_delete = delete.wrapping_sub(ONES) & !delete;
        (word | below_space | is_delete) & HIGH_BITS
    };
    let word_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() < 8 {
        // Padded with spaces (printable): no call to copy a slice of variable length.
        let padded = (bytes.iter().rev()).fold(ONES * u64::from(b' '), |word, &byte| {
            (word << 8) | u64::from(byte)
        });
        return outside(padded) == 0;
    }
    let mut found = 0;
    for at in (0..bytes.len() - 7).step_by(8) {
        found |= outside(word_at(at));
    }
    // The last eight bytes, overlapping the words before when the length is no multiple of 8.
    found |= outside(word_at(bytes.len() - 8));
    found == 0
}

/// For each actor, the highest counter seen. Absent actors count as 0.
///
/// Actor 0 is no actor (ids with actor 0 mean "none"), so a vector never holds an entry for it:
/// it has at most 65,535 entries, which is what its `u16` count on the wire can say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionVector {
    entries: BTreeMap<ActorId, u64>,
}

impl VersionVector {
    /// The empty vector: nothing seen.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The highest counter seen for `actor`, 0 when absent.
    pub fn get(&self, actor: ActorId) -> u64 {
        self.entries.get(&actor).copied().unwrap_or(0)
    }

    /// Sets the entry for `actor`; a counter of 0 removes it. Actor 0 is ignored.
    pub fn set(&mut self, actor: ActorId, counter: u64) {
        if actor.0 == 0 {
            return;
        }
        if counter == 0 {
            self.entries.remove(&actor);
        } else {
            self.entries.insert(actor, counter);
        }
    }

    /// Raises the entry of `id.actor` to `id.counter` if that is higher. Actor 0 is ignored.
    pub fn observe(&mut self, id: EventId) {
        if id.actor.0 == 0 {
            return;
        }
        // One lookup for the usual case, an actor already seen (called per appended event).
        match self.entries.get_mut(&id.actor) {
            Some(counter) => *counter = (*counter).max(id.counter),
            None if id.counter > 0 => {
                self.entries.insert(id.actor, id.counter);
            }
            None => {}
        }
    }

    /// True when the vector says `id` was already seen.
    pub fn covers(&self, id: EventId) -> bool {
        id.counter <= self.get(id.actor)
    }

    /// Raises every entry to at least the other vector's.
    pub fn merge(&mut self, other: &VersionVector) {
        for (&actor, &counter) in &other.entries {
            self.observe(EventId { counter, actor });
        }
    }

    /// The highest counter of any actor.
    pub fn counter_max(&self) -> u64 {
        self.entries.values().copied().max().unwrap_or(0)
    }

    /// True when no actor has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of actors with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.entries
            .iter()
            .map(|(&actor, &counter)| (actor, counter))
    }
}

impl FromIterator<(ActorId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ActorId, u64)>>(iter: I) -> VersionVector {
        let mut vector = VersionVector::new();
        for (actor, counter) in iter {
            vector.observe(EventId { counter, actor });
        }
        vector
    }
}

/// A consumer's position: everything at or below `floor` in the total id order, plus, per
/// actor, every counter at or below the vector's entry, has been seen.
///
/// A plain version vector has `floor == EventId::NONE`. "After event id X" is the cursor with
/// floor X and an empty vector; the floor covers actors nobody has heard of yet. A consumer
/// updates the vector with every id it receives and keeps the floor it started with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Everything at or below this id in the total order has been seen.
    pub floor: EventId,
    /// Per actor, everything at or below its counter has been seen.
    pub vector: VersionVector,
}

impl Cursor {
    /// The cursor "after event id `floor`".
    pub fn after(floor: EventId) -> Cursor {
        Cursor {
            floor,
            vector: VersionVector::new(),
        }
    }

    /// The cursor that has seen what `vector` covers.
    pub fn from_vector(vector: VersionVector) -> Cursor {
        Cursor {
            floor: EventId::NONE,
            vector,
        }
    }

    /// True when an event with this id was already seen by a consumer at this cursor.
    pub fn covers(&self, id: EventId) -> bool {
        id <= self.floor || self.vector.covers(id)
    }

    /// Records that `id` was delivered.
    pub fn observe(&mut self, id: EventId) {
        self.vector.observe(id);
    }
}

/// Where a consumer starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained event.
    Beginning,
    /// Only events appended after the subscription was made.
    End,
    /// Every event whose id is above this one in the total order: the same as the cursor
    /// `Cursor::after(id)`. Kept as its own variant because it has its own wire encoding.
    AfterId(EventId),
    /// Every event not covered by the cursor, starting at the earliest record the cursor does
    /// not cover.
    Cursor(Cursor),
    /// The first record, in log order, whose timestamp is at or after this many milliseconds
    /// since the epoch, and every record after it.
    Timestamp(u64),
}

impl StartPosition {
    /// The cursor this position stands for, if it is one of the cursor kinds.
    pub fn cursor(&self) -> Option<Cursor> {
        match self {
            StartPosition::AfterId(id) => Some(Cursor::after(*id)),
            StartPosition::Cursor(cursor) => Some(cursor.clone()),
            StartPosition::Beginning | StartPosition::End | StartPosition::Timestamp(_) => None,
        }
    }
}

/// The order a subscription delivers events in (protocol.md, section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The server's log order (its arrival order): every event as soon as it is durable.
    #[default]
    Arrival,
    /// The total order of ids (counter, actor), the same on every node of a cluster: an
    /// event is delivered only once no event with a smaller id can still reach the node.
    Id,
}

/// What a purge removes: events below an id, or older than a wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurgeBefore {
    /// Every event whose id is below this one (ids are ordered by counter, then actor).
    Id(EventId),
    /// Every event whose timestamp (milliseconds since the Unix epoch) is below this.
    Time(u64),
}

impl PurgeBefore {
    pub(crate) fn same_kind(&self, other: &PurgeBefore) -> bool {
        matches!(
            (self, other),
            (PurgeBefore::Id(_), PurgeBefore::Id(_)) | (PurgeBefore::Time(_), PurgeBefore::Time(_))
        )
    }

    /// Whether this bound takes `event` (its namespace aside).
    pub fn covers(&self, event: EventRef<'_>) -> bool {
        match *self {
            PurgeBefore::Id(id) => event.id < id,
            PurgeBefore::Time(ms) => event.timestamp_ms < ms,
        }
    }

    /// Whether `self` hides at least what `other` hides (same kind assumed).
    pub(crate) fn at_least(&self, other: &PurgeBefore) -> bool {
        match (self, other) {
            (PurgeBefore::Id(a), PurgeBefore::Id(b)) => a >= b,
            (PurgeBefore::Time(a), PurgeBefore::Time(b)) => a >= b,
            _ => false,
        }
    }
}

/// One purge: a namespace glob and a bound.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PurgeRule {
    /// The namespaces it applies to.
    pub glob: String,
    /// What it removes from them.
    pub before: PurgeBefore,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of names of 1 to 20 bytes (one word, two, and the
    /// partial last word), among printable neighbours: the word-wise check agrees with the
    /// byte-wise definition.
    #[test]
    fn the_printable_ascii_check_agrees_with_a_byte_by_byte_check_for_every_byte() {
        for length in 1..=20 {
            for position in 0..length {
                for byte in 0..=255u8 {
                    let mut name = vec![b'a'; length];
                    name[position] = byte;
                    let expected = name.iter().all(|b| (0x20..0x7f).contains(b));
                    assert_eq!(
                        is_printable_ascii(&name),
                        expected,
                        "byte {byte:#04x} at {position} of {length}"
                    );
                }
            }
        }
        assert!(is_printable_ascii(b""));
        assert!(is_printable_ascii(b" ~/bench/x_1"));
        assert!(!is_printable_ascii("/caf\u{e9}".as_bytes()));
    }

    #[test]
    fn event_id_text_form_matches_the_seed_readme() {
        let id = EventId::new(1, 1);
        assert_eq!(id.to_string(), "0000000000000000000100001");
        assert_eq!("0000000000000000000100001".parse::<EventId>(), Ok(id));
        assert_eq!("1.1".parse::<EventId>(), Ok(id));
        assert_eq!(
            EventId::new(u64::MAX, u16::MAX).to_string().parse(),
            Ok(EventId::new(u64::MAX, u16::MAX))
        );
    }

    #[test]
    fn event_id_rejects_bad_text() {
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.70000",
            "x.1",
            "000000000000000000010000",
            "00000000000000000001000011",
            "0000000000000000000199999",
            "+1.1",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn event_id_text_sorts_like_ids() {
        let ids = [
            EventId::new(1, 2),
            EventId::new(2, 1),
            EventId::new(10, 0),
            EventId::new(9, 65535),
        ];
        for a in ids {
            for b in ids {
                assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
            }
        }
    }

    #[test]
    fn namespaces_are_validated() {
        assert_eq!(validate_namespace("/food/eggs", 1024), Ok(()));
        assert_eq!(validate_namespace("", 1024), Err(NamespaceError::Empty));
        assert_eq!(
            validate_namespace("food", 1024),
            Err(NamespaceError::MissingLeadingSlash)
        );
        assert_eq!(
            validate_namespace("/a\nb", 1024),
            Err(NamespaceError::ControlCharacter { position: 2 })
        );
        assert!(matches!(
            validate_namespace("/abc", 3),
            Err(NamespaceError::TooLong { .. })
        ));
    }

    #[test]
    fn cursor_after_id_covers_unknown_actors_below_the_floor() {
        let cursor = Cursor::after(EventId::new(5, 3));
        assert!(cursor.covers(EventId::new(5, 3)));
        assert!(cursor.covers(EventId::new(5, 2)));
        assert!(!cursor.covers(EventId::new(5, 4)));
        assert!(cursor.covers(EventId::new(4, 999)));
        assert!(!cursor.covers(EventId::new(6, 0)));
    }

    #[test]
    fn version_vector_treats_absent_actors_as_zero() {
        let mut vector = VersionVector::new();
        vector.observe(EventId::new(7, 1));
        vector.observe(EventId::new(3, 1));
        assert_eq!(vector.get(ActorId(1)), 7);
        assert!(vector.covers(EventId::new(7, 1)));
        assert!(!vector.covers(EventId::new(1, 2)));
        let mut other = VersionVector::new();
        other.observe(EventId::new(4, 2));
        vector.merge(&other);
        assert_eq!(vector.get(ActorId(2)), 4);
        assert_eq!(vector.counter_max(), 7);
    }
}
