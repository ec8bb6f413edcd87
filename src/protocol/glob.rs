//! Namespace globs, as a Subscribe frame carries them. `protocol.md` ("Namespace globs")
//! describes the same rules for client writers.
//!
//! A glob is matched against every namespace a subscription reads, on the reactor thread, so
//! its cost must not depend on how cleverly the pattern is written. A backtracking matcher
//! (what the `glob` crate does) is exponential in the number of `*`: a 17-byte glob froze the
//! server for 46 seconds on one 83-byte namespace. Here a glob is compiled once, at Subscribe,
//! into a position automaton (one state per pattern piece), and matching simulates all states
//! at once with bit sets: per namespace character it does a fixed amount of work per 64
//! pattern pieces, so a match costs at most O(glob length x namespace length / 64) word
//! operations and never backtracks. That holds for every character, not only ASCII: the
//! pieces a non-ASCII character advances are found from tables built at compile time (a bit
//! set of the pieces that take any non-ASCII character, the literal non-ASCII characters
//! sorted, and each bracket expression's non-ASCII ranges sorted and merged), never by
//! scanning the pattern; [`NamespaceGlob::match_cost`] states the bound a caller can budget.
//!
//! The syntax and meaning are those of the `glob` crate with `*` and `?` never matching `/`,
//! which flo used before; the tests compare the two on random globs. A few patterns that the
//! crate accepted but that could never match what they seem to say are refused instead (see
//! [`GlobError`]).

use std::fmt;

/// A compiled namespace glob such as `/food/*/eggs` or `/food/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceGlob {
    pattern: String,
    tokens: Vec<Token>,
    automaton: Automaton,
    /// The literal characters the glob starts with and ends with (before its first and after
    /// its last piece that is not a literal character): every namespace it matches starts
    /// and ends with them, so most of those it cannot match are refused by comparing a few
    /// bytes, before the automaton runs (which costs the glob's length for every character).
    literal_prefix: String,
    literal_suffix: String,
    /// The pattern has no wildcard, so it matches exactly the namespace spelled like it:
    /// `matches` compares bytes instead of running the automaton (a catch-up read of one
    /// namespace matches every record it looks at).
    literal: bool,
}

impl NamespaceGlob {
    /// The heap memory this glob holds (its text, its tokens and its compiled automaton), for
    /// the per-connection memory budget.
    pub fn memory_bytes(&self) -> usize {
        let automaton = &self.automaton;
        let words = automaton.ascii.len()
            + automaton.sequences.len()
            + automaton.segments.len()
            + automaton.nullable.len()
            + automaton.inside_accepting.len()
            + automaton.non_ascii.base.len();
        let non_ascii = &automaton.non_ascii;
        let ranges: usize = non_ascii
            .range_sets
            .iter()
            .map(|set| set.ranges.len())
            .sum();
        self.pattern.len()
            + self.literal_prefix.len()
            + self.literal_suffix.len()
            + self.tokens.len() * std::mem::size_of::<Token>()
            + words * std::mem::size_of::<u64>()
            + non_ascii.chars.len() * std::mem::size_of::<CharEntry>()
            + non_ascii.range_sets.len() * std::mem::size_of::<RangeSet>()
            + ranges * std::mem::size_of::<(char, char)>()
    }
}

/// Why a glob was refused. On the wire it is [`ErrorCode::InvalidGlob`].
///
/// [`ErrorCode::InvalidGlob`]: super::ErrorCode::InvalidGlob
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    Empty,
    MissingLeadingSlash,
    /// Longer than the server's `glob_length_max`, in bytes.
    TooLong {
        length: usize,
        length_max: usize,
    },
    /// The pattern syntax is invalid, for example `/a**`, `/***`, an unclosed `[`, a reversed
    /// range `[z-a]`, a `/` inside brackets or a `{`.
    Syntax {
        /// The character index (not byte index) where the problem is.
        position: usize,
        message: String,
    },
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => write!(f, "glob is empty"),
            GlobError::MissingLeadingSlash => {
                write!(
                    f,
                    "glob must start with '/' (use /** to match every namespace)"
                )
            }
            GlobError::TooLong { length, length_max } => {
                write!(
                    f,
                    "glob is {length} bytes long, the limit is {length_max} bytes"
                )
            }
            GlobError::Syntax { position, message } => {
                write!(f, "invalid glob near position {position}: {message}")
            }
        }
    }
}

impl std::error::Error for GlobError {}

/// One piece of a glob. All but the two wildcards consume exactly one character.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: any character but `/`.
    AnyChar,
    /// `[...]` or `[!...]`: one character (never `/`) in, or not in, the set.
    Set {
        negated: bool,
        items: Vec<SetItem>,
    },
    /// `*`: any run of characters without `/`, possibly empty.
    AnySequence,
    /// `**` as a whole segment, with the `/` after it if there is one: nothing, or any run of
    /// characters ending in `/`; at the end of the glob, any run of characters at all.
    AnySegments,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetItem {
    Single(char),
    Range(char, char),
}

impl Token {
    /// Whether this piece consumes `c` (wildcards consume through their own transitions).
    fn consumes(&self, c: char) -> bool {
        match self {
            Token::Char(expected) => *expected == c,
            Token::AnyChar => c != '/',
            Token::Set { negated, items } => {
                let within = items.iter().any(|item| match *item {
                    SetItem::Single(single) => single == c,
                    SetItem::Range(low, high) => low <= c && c <= high,
                });
                c != '/' && within != *negated
            }
            Token::AnySequence | Token::AnySegments => false,
        }
    }
}

const ERROR_WILDCARDS: &str = "wildcards are either regular `*` or recursive `**`";
const ERROR_RECURSIVE_WILDCARDS: &str = "recursive wildcards must form a single path component";

fn syntax(position: usize, message: &str) -> GlobError {
    GlobError::Syntax {
        position,
        message: message.to_string(),
    }
}

/// Splits a pattern into tokens, with the `glob` crate's rules plus flo's refusals.
fn parse(chars: &[char]) -> Result<Vec<Token>, GlobError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '?' => {
                tokens.push(Token::AnyChar);
                i += 1;
            }
            '*' => i = parse_stars(chars, i, &mut tokens)?,
            '[' => i = parse_set(chars, i, &mut tokens)?,
            '{' | '}' => {
                let message = "`{` and `}` are reserved (alternatives are not supported); \
                               write `[{]` or `[}]` to match them literally";
                return Err(syntax(i, message));
            }
            c => {
                tokens.push(Token::Char(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// Parses the run of `*` at `start`; returns the index after it.
fn parse_stars(chars: &[char], start: usize, tokens: &mut Vec<Token>) -> Result<usize, GlobError> {
    let mut i = start;
    while i < chars.len() && chars[i] == '*' {
        i += 1;
    }
    match i - start {
        1 => tokens.push(Token::AnySequence),
        2 => {
            if start > 0 && chars[start - 1] != '/' {
                return Err(syntax(start - 1, ERROR_RECURSIVE_WILDCARDS));
            }
            if i < chars.len() && chars[i] != '/' {
                return Err(syntax(i, ERROR_RECURSIVE_WILDCARDS));
            }
            // The `/` after `**` belongs to it: `/a/**/b` also matches `/a/b`.
            if i < chars.len() {
                i += 1;
            }
            // `/**/**/` is the same as `/**/`.
            if tokens.last() != Some(&Token::AnySegments) {
                tokens.push(Token::AnySegments);
            }
        }
        _ => return Err(syntax(start + 2, ERROR_WILDCARDS)),
    }
    Ok(i)
}

/// Parses the bracket expression at `start`; returns the index after its `]`. A `]` right
/// after `[` or `[!` belongs to the set.
fn parse_set(chars: &[char], start: usize, tokens: &mut Vec<Token>) -> Result<usize, GlobError> {
    let negated = chars.get(start + 1) == Some(&'!');
    let first = if negated { start + 2 } else { start + 1 };
    let close = chars
        .get(first + 1..)
        .and_then(|rest| rest.iter().position(|&c| c == ']'))
        .map(|offset| first + 1 + offset);
    let Some(close) = close else {
        return Err(syntax(start, "unclosed `[`"));
    };
    let body = &chars[first..close];
    let mut items = Vec::new();
    let mut j = 0;
    while j < body.len() {
        let position = first + j;
        let item = if j + 2 < body.len() && body[j + 1] == '-' {
            let (low, high) = (body[j], body[j + 2]);
            if low > high {
                return Err(syntax(position, "reversed range in `[...]`, write `[a-z]`"));
            }
            j += 3;
            SetItem::Range(low, high)
        } else {
            j += 1;
            SetItem::Single(body[j - 1])
        };
        let slash = match item {
            SetItem::Single(c) => c == '/',
            SetItem::Range(low, high) => low == '/' || high == '/',
        };
        if slash {
            let message = "`/` inside `[...]` can never match (a set matches one character \
                           within a segment)";
            return Err(syntax(position, message));
        }
        items.push(item);
    }
    tokens.push(Token::Set { negated, items });
    Ok(close + 1)
}

/// Globs of up to this many 64-piece words are matched with memory on the stack.
const STACK_WORDS: usize = 4;

/// The compiled form: for every position (the index of the next token to match; position
/// `tokens.len()` means "all matched") a bit, in sets of `words` u64 words.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Automaton {
    words: usize,
    /// For each ASCII character, the positions whose token consumes it (`words` per character).
    ascii: Vec<u64>,
    /// Positions holding `*`.
    sequences: Vec<u64>,
    /// Positions holding `**`.
    segments: Vec<u64>,
    /// Positions holding a wildcard, which may also match nothing.
    nullable: Vec<u64>,
    /// Positions holding a `**` after which only wildcards follow: being inside such a `**`
    /// at the end of the namespace is a match (`/a/**` matches `/a/b`).
    inside_accepting: Vec<u64>,
    /// What a non-ASCII character consumes.
    non_ascii: NonAscii,
}

/// The positions a non-ASCII character `c` consumes, found without scanning the pattern:
/// `base`, plus the `set_bits` of `c`'s entries in `chars` and of the positive range sets
/// holding `c`, minus the `clear_bits` of its entries and the negated range sets holding it.
/// A position is either positive (a literal or `[...]`) or in `base` (`?` or `[!...]`), so
/// the order of adding and removing does not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NonAscii {
    /// Positions that consume every non-ASCII character unless an entry excludes it: `?`
    /// and negated sets.
    base: Vec<u64>,
    /// Non-ASCII literals and single characters listed in sets, sorted by character then
    /// word, one entry per (character, word): at most `words` entries per character.
    chars: Vec<CharEntry>,
    /// Sets listing a range that reaches past ASCII, with the non-ASCII part of their ranges.
    range_sets: Vec<RangeSet>,
    /// The steps one lookup in every range set costs (a binary search each).
    range_steps: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CharEntry {
    c: char,
    word: u32,
    set_bits: u64,
    clear_bits: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RangeSet {
    position: usize,
    negated: bool,
    /// Sorted, disjoint and not adjacent, all above ASCII.
    ranges: Vec<(char, char)>,
}

impl RangeSet {
    fn contains(&self, c: char) -> bool {
        let index = self.ranges.partition_point(|&(_, high)| high < c);
        self.ranges.get(index).is_some_and(|&(low, _)| low <= c)
    }

    /// Steps of one binary search over the ranges.
    fn search_steps(&self) -> usize {
        self.ranges.len().ilog2() as usize + 1
    }
}

/// The first character above ASCII.
const NON_ASCII_MIN: char = '\u{80}';

impl NonAscii {
    fn compile(tokens: &[Token], words: usize) -> NonAscii {
        let mut base = vec![0; words];
        let mut entries: Vec<CharEntry> = Vec::new();
        let mut range_sets = Vec::new();
        let mut entry = |c: char, position: usize, clear: bool| {
            let bit = 1 << (position % 64);
            entries.push(CharEntry {
                c,
                word: (position / 64) as u32,
                set_bits: if clear { 0 } else { bit },
                clear_bits: if clear { bit } else { 0 },
            });
        };
        for (position, token) in tokens.iter().enumerate() {
            match token {
                Token::Char(c) if !c.is_ascii() => entry(*c, position, false),
                Token::AnyChar => set_bit(&mut base, position),
                Token::Set { negated, items } => {
                    if *negated {
                        set_bit(&mut base, position);
                    }
                    let mut ranges = Vec::new();
                    for item in items {
                        match *item {
                            SetItem::Single(c) if !c.is_ascii() => entry(c, position, *negated),
                            SetItem::Range(low, high) if !high.is_ascii() => {
                                ranges.push((low.max(NON_ASCII_MIN), high));
                            }
                            SetItem::Single(_) | SetItem::Range(..) => {}
                        }
                    }
                    if !ranges.is_empty() {
                        range_sets.push(RangeSet {
                            position,
                            negated: *negated,
                            ranges: merge_ranges(ranges),
                        });
                    }
                }
                Token::Char(_) | Token::AnySequence | Token::AnySegments => {}
            }
        }
        entries.sort_by_key(|entry| (entry.c, entry.word));
        let mut chars: Vec<CharEntry> = Vec::with_capacity(entries.len());
        for entry in entries {
            match chars.last_mut() {
                Some(last) if (last.c, last.word) == (entry.c, entry.word) => {
                    last.set_bits |= entry.set_bits;
                    last.clear_bits |= entry.clear_bits;
                }
                _ => chars.push(entry),
            }
        }
        let range_steps = range_sets.iter().map(RangeSet::search_steps).sum();
        NonAscii {
            base,
            chars,
            range_sets,
            range_steps,
        }
    }

    /// Writes the positions `c` consumes into `mask`; returns the steps it took.
    fn consumes(&self, c: char, mask: &mut [u64]) -> usize {
        mask.copy_from_slice(&self.base);
        let start = self.chars.partition_point(|entry| entry.c < c);
        let mut steps = mask.len() + self.chars.len().max(1).ilog2() as usize + 1;
        for entry in self.chars[start..].iter().take_while(|entry| entry.c == c) {
            let word = &mut mask[entry.word as usize];
            *word = (*word | entry.set_bits) & !entry.clear_bits;
            steps += 1;
        }
        for set in &self.range_sets {
            if set.contains(c) {
                if set.negated {
                    mask[set.position / 64] &= !(1 << (set.position % 64));
                } else {
                    set_bit(mask, set.position);
                }
            }
        }
        steps + self.range_steps
    }
}

/// Sorts ranges and joins the ones that overlap or touch.
fn merge_ranges(mut ranges: Vec<(char, char)>) -> Vec<(char, char)> {
    ranges.sort_unstable();
    let mut merged: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(low) <= u32::from(last.1) + 1 => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

fn set_bit(set: &mut [u64], position: usize) {
    set[position / 64] |= 1 << (position % 64);
}

fn has_bit(set: &[u64], position: usize) -> bool {
    set[position / 64] & (1 << (position % 64)) != 0
}

/// `set |= (set & mask) << 1` over the whole multi-word set; returns whether it changed.
fn advance_through(set: &mut [u64], mask: &[u64]) -> bool {
    let mut carry = 0;
    let mut changed = false;
    for (word, mask) in set.iter_mut().zip(mask) {
        let moved = *word & mask;
        let grown = *word | (moved << 1) | carry;
        carry = moved >> 63;
        changed |= grown != *word;
        *word = grown;
    }
    changed
}

#[cfg(test)]
thread_local! {
    /// Word operations done by matching on this thread, so tests can bound the cost.
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn count_steps(count: usize) {
    STEPS.with(|steps| steps.set(steps.get() + count as u64));
}

#[cfg(not(test))]
fn count_steps(_count: usize) {}

/// The word operations matching has done on this thread so far.
#[cfg(test)]
pub(crate) fn steps_taken() -> u64 {
    STEPS.with(|steps| steps.get())
}

impl Automaton {
    fn compile(tokens: &[Token]) -> Automaton {
        let words = (tokens.len() + 1).div_ceil(64);
        let mut automaton = Automaton {
            words,
            ascii: vec![0; 128 * words],
            sequences: vec![0; words],
            segments: vec![0; words],
            nullable: vec![0; words],
            inside_accepting: vec![0; words],
            non_ascii: NonAscii::compile(tokens, words),
        };
        for (position, token) in tokens.iter().enumerate() {
            match token {
                Token::AnySequence => set_bit(&mut automaton.sequences, position),
                Token::AnySegments => {
                    set_bit(&mut automaton.segments, position);
                    let rest = &tokens[position + 1..];
                    let only_wildcards = rest
                        .iter()
                        .all(|t| matches!(t, Token::AnySequence | Token::AnySegments));
                    if only_wildcards {
                        set_bit(&mut automaton.inside_accepting, position);
                    }
                }
                Token::Char(_) | Token::AnyChar | Token::Set { .. } => {
                    for c in 0..128u8 {
                        if token.consumes(char::from(c)) {
                            let start = usize::from(c) * words;
                            set_bit(&mut automaton.ascii[start..start + words], position);
                        }
                    }
                }
            }
            if matches!(token, Token::AnySequence | Token::AnySegments) {
                set_bit(&mut automaton.nullable, position);
            }
        }
        automaton
    }

    /// Adds the positions reachable by letting wildcards match nothing. Wildcards can follow
    /// each other at most as `**` then `*`, so this loops at most three times.
    fn close(&self, set: &mut [u64]) {
        while advance_through(set, &self.nullable) {
            count_steps(self.words);
        }
        count_steps(self.words);
    }

    /// The most steps matching costs per namespace character (and once more for the start):
    /// a pass over the words, at most four closure passes, and for a non-ASCII character its
    /// mask (a copy of the words, a binary search over the literals, at most one entry per
    /// word, and a binary search in every range set).
    fn steps_per_char_max(&self) -> usize {
        let chars_search = self.non_ascii.chars.len().max(1).ilog2() as usize + 1;
        7 * self.words + chars_search + self.non_ascii.range_steps
    }

    /// Whether the glob matches the whole of `namespace`.
    fn matches(&self, tokens: &[Token], namespace: &str) -> bool {
        let words = self.words;
        // current, inside (within a `**`, not right after a `/`), next, next inside, and the
        // consume mask of a non-ASCII character.
        // On the stack for globs of up to `STACK_WORDS` x 64 pieces (every glob a client is
        // likely to send), so that matching, done per record a consumer reads, allocates
        // nothing; a longer glob takes its memory from the heap.
        let mut stack = [0u64; 5 * STACK_WORDS];
        let mut heap = Vec::new();
        let memory: &mut [u64] = if words <= STACK_WORDS {
            &mut stack[..5 * words]
        } else {
            heap.resize(5 * words, 0);
            &mut heap
        };
        let (current, rest) = memory.split_at_mut(words);
        let (inside, rest) = rest.split_at_mut(words);
        let (next, rest) = rest.split_at_mut(words);
        let (next_inside, scratch) = rest.split_at_mut(words);
        set_bit(current, 0);
        self.close(current);
        for c in namespace.chars() {
            let consumes: &[u64] = if c.is_ascii() {
                let start = c as usize * words;
                &self.ascii[start..start + words]
            } else {
                count_steps(self.non_ascii.consumes(c, scratch));
                scratch
            };
            let slash = c == '/';
            let mut carry = 0;
            let mut alive = 0;
            for k in 0..words {
                let moved = current[k] & consumes[k];
                next[k] = (moved << 1) | carry;
                carry = moved >> 63;
                let in_segments = (current[k] | inside[k]) & self.segments[k];
                if slash {
                    next[k] |= in_segments;
                    next_inside[k] = 0;
                } else {
                    next[k] |= current[k] & self.sequences[k];
                    next_inside[k] = in_segments;
                }
                alive |= next[k] | next_inside[k];
            }
            count_steps(words);
            if alive == 0 {
                return false;
            }
            self.close(next);
            current.copy_from_slice(next);
            inside.copy_from_slice(next_inside);
        }
        let inside_accepted = inside
            .iter()
            .zip(&self.inside_accepting)
            .any(|(inside, accepting)| inside & accepting != 0);
        has_bit(current, tokens.len()) || inside_accepted
    }
}

impl NamespaceGlob {
    /// Compiles `pattern`: it must be non-empty, start with `/`, hold no control character and
    /// be valid glob syntax.
    /// Compiling costs time linear in the pattern and about 16 bytes of memory per pattern
    /// character (the server bounds the length with `glob_length_max` first).
    pub fn new(pattern: &str) -> Result<NamespaceGlob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if !pattern.starts_with('/') {
            return Err(GlobError::MissingLeadingSlash);
        }
        let chars: Vec<char> = pattern.chars().collect();
        // A namespace never holds a control character, so a glob with one (even in brackets)
        // is a mistake: refused rather than silently matching less, or nothing.
        if let Some(position) = chars.iter().position(|c| c.is_control()) {
            let message = format!(
                "control character U+{:04X}; namespaces never contain one",
                u32::from(chars[position])
            );
            return Err(syntax(position, &message));
        }
        let tokens = parse(&chars)?;
        let automaton = Automaton::compile(&tokens);
        let literal = |token: &Token| match token {
            Token::Char(c) => Some(*c),
            _ => None,
        };
        let literal_prefix = tokens.iter().map_while(literal).collect();
        let mut literal_suffix: Vec<char> = tokens.iter().rev().map_while(literal).collect();
        literal_suffix.reverse();
        let literal = tokens.iter().all(|token| matches!(token, Token::Char(_)));
        Ok(NamespaceGlob {
            pattern: pattern.to_string(),
            tokens,
            automaton,
            literal_prefix,
            literal_suffix: literal_suffix.into_iter().collect(),
            literal,
        })
    }

    /// Like [`NamespaceGlob::new`], but first refuses a pattern longer than `length_max` bytes.
    pub fn with_length_max(pattern: &str, length_max: usize) -> Result<NamespaceGlob, GlobError> {
        if pattern.len() > length_max {
            return Err(GlobError::TooLong {
                length: pattern.len(),
                length_max,
            });
        }
        NamespaceGlob::new(pattern)
    }

    /// Whether the glob matches the whole of `namespace`, in time linear in the namespace
    /// (times the glob length over 64), whatever the pattern and whatever the characters.
    pub fn matches(&self, namespace: &str) -> bool {
        if self.literal {
            // The whole pattern is its literal prefix.
            return namespace == self.literal_prefix;
        }
        self.may_match(namespace) && self.automaton.matches(&self.tokens, namespace)
    }

    /// Whether `namespace` starts with the glob's literal prefix and ends with its literal
    /// suffix, which every namespace it matches does.
    fn may_match(&self, namespace: &str) -> bool {
        namespace.starts_with(self.literal_prefix.as_str())
            && namespace.ends_with(self.literal_suffix.as_str())
    }

    /// [`NamespaceGlob::matches`] and what it cost, in the unit every per-turn matching
    /// budget counts (`match_steps_per_turn_max`): the comparison of the literal prefix and
    /// suffix (a step per 8 bytes, at least one), and when that does not refuse the
    /// namespace, [`NamespaceGlob::match_cost`] besides.
    pub fn matches_with_cost(&self, namespace: &str) -> (bool, u64) {
        let compared = self.literal_prefix.len() + self.literal_suffix.len();
        let cost = (compared / 8 + 1) as u64;
        if self.literal {
            return (namespace == self.literal_prefix, cost);
        }
        if !self.may_match(namespace) {
            return (false, cost);
        }
        let matched = self.automaton.matches(&self.tokens, namespace);
        (matched, cost.saturating_add(self.match_cost(namespace)))
    }

    /// An upper bound on the word operations [`NamespaceGlob::matches`] does on `namespace`,
    /// known without matching, so the engine can charge matching against a per-turn budget:
    /// (namespace bytes + 1) x (7 x (glob pieces / 64 rounded up) + one binary search over the
    /// glob's non-ASCII literals + one per bracket expression with a non-ASCII range). The
    /// last term is at most the glob's bytes / 7 (`[à-ÿ]` is 7 bytes); it is 0 for a glob
    /// without non-ASCII ranges.
    pub fn match_cost(&self, namespace: &str) -> u64 {
        let per_char = self.automaton.steps_per_char_max() as u64;
        (namespace.len() as u64 + 1).saturating_mul(per_char)
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests;
