//! Purges and per-namespace retention: which events are hidden from every reader.
//!
//! A purge (`flo-client purge -n GLOB --before ID|TIME`) is a rule "events whose namespace
//! `GLOB` matches and whose id is below ID (or whose timestamp is below TIME) are gone". A
//! per-namespace retention rule (`/metrics/** keep 7d` in the server config) is the same rule
//! with a moving time: below `now - 7d`. The rules do not rewrite the log: the engine checks
//! [`HideRules::hides`] wherever it would hand an event out (subscriptions, replication, groups,
//! id order), and the file log deletes the oldest sealed segment once every record in it is
//! hidden or past the global retention (`FileLog::reclaim`, bounded per call). So a purged
//! event is never delivered again; its bytes go when its whole segment can go.
//!
//! Purges are durable: the set is kept in `flo.purges` in the data directory, replaced
//! atomically (temporary file, fdatasync, rename, directory fsync) before a purge is
//! acknowledged. Rules are keyed by (glob, kind): a second purge of the same glob and kind
//! keeps the later bound, so the set only grows by distinct globs and is bounded by
//! `StorageConfig::purge_rules_max`. Hiding is monotone: a rule's bound never goes down, so an
//! event once hidden stays hidden (which the reclaimer relies on to resume where it stopped).
//! The file format is in docs/storage.md ("Purge file").

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::config::NamespaceRetention;
use crate::event::{ActorId, EventId, EventRef, PurgeBefore, PurgeRule};
use crate::protocol::NamespaceGlob;

use super::segment::fsync_dir;
use super::StorageError;

pub const PURGE_FILE_NAME: &str = "flo.purges";
pub const PURGE_TEMP_FILE_NAME: &str = "flo.purges.tmp";

/// `"FLOPRG"`, 0, format version 1.
const PURGE_MAGIC: &[u8; 8] = b"FLOPRG\x00\x01";

/// Why a purge could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeError {
    /// The glob does not compile.
    Glob(String),
    /// The set already holds `rules_max` rules and this one names a new (glob, kind).
    Full {
        /// `StorageConfig::purge_rules_max`.
        rules_max: usize,
    },
    /// The globs of the set and this new one would be longer than `glob_bytes_max` together.
    GlobBytesFull {
        /// `StorageConfig::purge_glob_bytes_max`.
        glob_bytes_max: usize,
    },
}

/// What hides an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenBy {
    /// A purge (`flo-client purge`).
    Purge,
    /// A per-namespace retention rule.
    Retention,
}

/// How many purge rules a set may hold (`StorageConfig::purge_rules_max`) and how many bytes
/// of globs all of them together (`StorageConfig::purge_glob_bytes_max`). The second bounds
/// what one event costs to check against every rule, whatever the globs: matching is linear
/// in the glob's length for each namespace byte (attack round 4: 256 rules of 1 KiB made one
/// event cost about 29 million matching steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeLimits {
    /// Rules at most (`StorageConfig::purge_rules_max`).
    pub rules_max: usize,
    /// Bytes of glob of all rules together (`StorageConfig::purge_glob_bytes_max`).
    pub glob_bytes_max: usize,
}

impl PurgeLimits {
    /// No limit: a set loaded from the disk is taken whole (purges are never dropped).
    pub const NONE: PurgeLimits = PurgeLimits {
        rules_max: usize::MAX,
        glob_bytes_max: usize::MAX,
    };
}

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PurgeError::Glob(message) => write!(f, "invalid glob: {message}"),
            PurgeError::Full { rules_max } => write!(
                f,
                "the server holds {rules_max} purge rules (--max-purge-rules); a purge of a glob \
                 already purged raises its bound, a new glob needs room"
            ),
            PurgeError::GlobBytesFull { glob_bytes_max } => write!(
                f,
                "the purge rules' globs would be longer than {glob_bytes_max} bytes together \
                 (--max-purge-glob-bytes); a purge of a glob already purged raises its bound, \
                 a new glob needs room"
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Hide {
    glob: NamespaceGlob,
    before: PurgeBefore,
}

/// The purges and per-namespace retention cutoffs in force. Cheap to ask when empty.
#[derive(Debug, Clone, Default)]
pub struct HideRules {
    purges: Vec<Hide>,
    /// One per configured retention rule, in config order; `Time(0)` until the first
    /// `apply_retention`.
    retention: Vec<(NamespaceRetention, Hide)>,
}

impl HideRules {
    /// Whether no rule hides anything.
    pub fn is_empty(&self) -> bool {
        self.purges.is_empty() && self.retention.is_empty()
    }

    /// Whether any per-namespace retention rule is configured.
    pub fn has_retention(&self) -> bool {
        !self.retention.is_empty()
    }

    /// Whether a purge or a retention rule hides `event`. Costs one comparison per rule, and
    /// a glob match (linear in the namespace) only for the rules whose bound covers it.
    pub fn hides(&self, event: EventRef<'_>) -> bool {
        self.hides_with_cost(event).0
    }

    /// [`HideRules::hides`] and what it cost in glob matching steps
    /// (`NamespaceGlob::matches_with_cost`, and one step per rule looked at), for the readers
    /// that charge it to a per-turn budget: with `purge_rules_max` rules of long globs, this
    /// check costs far more than reading the record (attack round 3, F1: 256 rules of 1 KiB
    /// over namespaces of 1000 bytes made a catch-up of 4,000 events take 67 s in one turn).
    pub fn hides_with_cost(&self, event: EventRef<'_>) -> (bool, u64) {
        let (by, cost) = self.hidden_by_with_cost(event);
        (by.is_some(), cost)
    }

    /// [`HideRules::hides_with_cost`], and whether a purge or a retention rule hides the
    /// event (purges are checked first): the reclaimer remembers the newest id of the
    /// namespaces of events hidden by a purge (`PurgedNewest`).
    pub fn hidden_by_with_cost(&self, event: EventRef<'_>) -> (Option<HiddenBy>, u64) {
        let mut cost = 0u64;
        let mut check = |hide: &Hide| {
            cost = cost.saturating_add(1);
            if !hide.before.covers(event) {
                return false;
            }
            let (matched, steps) = hide.glob.matches_with_cost(event.namespace);
            cost = cost.saturating_add(steps);
            matched
        };
        let by = if self.purges.iter().any(&mut check) {
            Some(HiddenBy::Purge)
        } else if self.retention.iter().any(|(_, hide)| check(hide)) {
            Some(HiddenBy::Retention)
        } else {
            None
        };
        (by, cost)
    }

    /// The purges, oldest (glob, kind) first.
    pub fn purges(&self) -> Vec<PurgeRule> {
        self.purges
            .iter()
            .map(|hide| PurgeRule {
                glob: hide.glob.as_str().to_string(),
                before: hide.before,
            })
            .collect()
    }

    /// The per-namespace retention rules and the cutoff each has now (milliseconds since the
    /// epoch; 0 before the first `apply_retention`).
    pub fn retention(&self) -> Vec<(NamespaceRetention, u64)> {
        let cutoff = |hide: &Hide| match hide.before {
            PurgeBefore::Time(ms) => ms,
            PurgeBefore::Id(_) => 0,
        };
        self.retention
            .iter()
            .map(|(rule, hide)| (rule.clone(), cutoff(hide)))
            .collect()
    }

    /// Adds `rule` (or raises the bound of the rule with its glob and kind). Returns whether
    /// anything changed: a purge at or below the bound in force is a no-op.
    pub fn merge(&mut self, rule: &PurgeRule, limits: PurgeLimits) -> Result<bool, PurgeError> {
        let existing = self
            .purges
            .iter_mut()
            .find(|hide| hide.glob.as_str() == rule.glob && hide.before.same_kind(&rule.before));
        if let Some(hide) = existing {
            if hide.before.at_least(&rule.before) {
                return Ok(false);
            }
            hide.before = rule.before;
            return Ok(true);
        }
        if self.purges.len() >= limits.rules_max {
            return Err(PurgeError::Full {
                rules_max: limits.rules_max,
            });
        }
        let glob_bytes: usize = self
            .purges
            .iter()
            .map(|hide| hide.glob.as_str().len())
            .sum();
        if glob_bytes.saturating_add(rule.glob.len()) > limits.glob_bytes_max {
            return Err(PurgeError::GlobBytesFull {
                glob_bytes_max: limits.glob_bytes_max,
            });
        }
        let glob = NamespaceGlob::new(&rule.glob).map_err(|e| PurgeError::Glob(e.to_string()))?;
        self.purges.push(Hide {
            glob,
            before: rule.before,
        });
        Ok(true)
    }

    /// Sets the retention rules (compiled at start-up; a rule whose glob does not compile is
    /// refused by `Config::validate` first, and skipped here).
    pub fn set_retention_rules(&mut self, rules: &[NamespaceRetention]) {
        self.retention = rules
            .iter()
            .filter_map(|rule| {
                let glob = NamespaceGlob::new(&rule.glob).ok()?;
                let before = PurgeBefore::Time(0);
                Some((rule.clone(), Hide { glob, before }))
            })
            .collect();
    }

    /// Moves every retention cutoff to `now_ms - keep`, never back (a wall clock that steps
    /// back does not bring events back). Returns whether a cutoff moved.
    pub fn advance_retention(&mut self, now_ms: u64) -> bool {
        let mut moved = false;
        for (rule, hide) in &mut self.retention {
            let cutoff = now_ms.saturating_sub(rule.keep_ms);
            if let PurgeBefore::Time(old) = hide.before {
                if cutoff > old {
                    hide.before = PurgeBefore::Time(cutoff);
                    moved = true;
                }
            }
        }
        moved
    }
}

/// What one `Log::add_purges` did with each rule: `Ok(true)` added or raised, `Ok(false)`
/// already covered, `Err` refused.
pub type PurgeOutcomes = Vec<Result<bool, PurgeError>>;

/// `current` with `rules` merged into it, what happened to each rule, and whether anything
/// changed (so the set must be written again).
pub fn merge_all(
    current: &HideRules,
    rules: &[PurgeRule],
    limits: PurgeLimits,
) -> (HideRules, PurgeOutcomes, bool) {
    let mut next = current.clone();
    let outcomes: PurgeOutcomes = rules.iter().map(|rule| next.merge(rule, limits)).collect();
    let changed = outcomes.contains(&Ok(true));
    (next, outcomes, changed)
}

pub const PURGED_NEWEST_FILE_NAME: &str = "flo.purged-newest";
pub const PURGED_NEWEST_TEMP_FILE_NAME: &str = "flo.purged-newest.tmp";

/// `"FLOPNW"`, 0, format version 1.
const PURGED_NEWEST_MAGIC: &[u8; 8] = b"FLOPNW\x00\x01";

/// The newest id of every namespace whose purged events the reclaimer deleted with their
/// segment, so that a conditional produce (ProduceIf) still sees that id once the events are
/// gone from the disk, also after a restart: protocol.md section 17 promises that a
/// namespace's newest id does not go back when events are purged. Kept per namespace, not per
/// purge rule, since a glob's rule cannot tell a namespace that had events from a new one that
/// never had any (which must still be creatable with "no events"). Bounded by
/// `StorageConfig::purged_namespaces_max`: the reclaimer does not delete a segment that would
/// pass it (the segment stays, and with it the answer). The file `flo.purged-newest` is
/// replaced atomically before a segment is deleted; its format is in docs/storage.md.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgedNewest {
    ids: std::collections::HashMap<String, EventId>,
}

impl PurgedNewest {
    /// The remembered newest id of `namespace`, if its purged events were deleted.
    pub fn get(&self, namespace: &str) -> Option<EventId> {
        self.ids.get(namespace).copied()
    }

    /// Namespaces remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no namespace is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `namespace` is remembered.
    pub fn contains(&self, namespace: &str) -> bool {
        self.ids.contains_key(namespace)
    }

    /// Sets the newest id of `namespace` (the caller walks the log in order, so a later
    /// record is newer).
    pub fn set(&mut self, namespace: &str, id: EventId) {
        match self.ids.get_mut(namespace) {
            Some(known) => *known = id,
            None => {
                self.ids.insert(namespace.to_string(), id);
            }
        }
    }

    /// `self` with `newer` laid over it.
    pub fn merged(&self, newer: &PurgedNewest) -> PurgedNewest {
        let mut next = self.clone();
        for (namespace, id) in &newer.ids {
            next.set(namespace, *id);
        }
        next
    }

    /// Forgets everything (a new segment's scan starts).
    pub fn clear(&mut self) {
        self.ids.clear();
    }

    /// The file's bytes: magic, `u32` count, per namespace `u16` length, the namespace, `u64`
    /// counter, `u16` actor; then a CRC32C of everything before it (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<(&String, &EventId)> = self.ids.iter().collect();
        entries.sort();
        let mut out = Vec::with_capacity(16 + entries.len() * 40);
        out.extend_from_slice(PURGED_NEWEST_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (namespace, id) in entries {
            // Namespaces are at most `namespace_length_max` (a u16) bytes: checked on produce.
            out.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
            out.extend_from_slice(namespace.as_bytes());
            out.extend_from_slice(&id.counter.to_le_bytes());
            out.extend_from_slice(&id.actor.0.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The ids in `bytes`, or what is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<PurgedNewest, String> {
        let body = checked_body(bytes, PURGED_NEWEST_MAGIC, "FLOPNW")?;
        let mut at = 8;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let piece = body
                .get(at..at + n)
                .ok_or_else(|| "it ends inside an entry".to_string())?;
            at += n;
            Ok(piece)
        };
        let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "count")?);
        let mut newest = PurgedNewest::default();
        for _ in 0..count {
            let length = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "length")?);
            let namespace = std::str::from_utf8(take(usize::from(length))?)
                .map_err(|_| "a namespace is not UTF-8".to_string())?
                .to_string();
            let counter = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "counter")?);
            let actor = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "actor")?);
            let id = EventId {
                counter,
                actor: ActorId(actor),
            };
            newest.ids.insert(namespace, id);
        }
        if at != body.len() {
            return Err("bytes follow the last entry".into());
        }
        Ok(newest)
    }

    /// Reads the file of `dir` (at most `size_max` bytes): empty when there is none. A
    /// damaged file is `Corrupt`: without it a purged namespace's newest id would go back.
    pub fn read(dir: &Path, size_max: u64) -> Result<PurgedNewest, StorageError> {
        let path = dir.join(PURGED_NEWEST_FILE_NAME);
        let Some(bytes) = read_capped(&path, size_max)? else {
            return Ok(PurgedNewest::default());
        };
        let problem = if bytes.len() as u64 > size_max {
            Err(format!(
                "it is longer than {size_max} bytes (raise --max-purged-namespaces)"
            ))
        } else {
            PurgedNewest::decode(&bytes)
        };
        problem.map_err(|problem| StorageError::Corrupt {
            context: format!(
                "file {} is damaged: {problem}; restore it from a backup or a replica's data \
                 directory (or move it away: conditional produces then see purged and deleted \
                 namespaces as empty)",
                path.display()
            ),
        })
    }

    /// The largest file `namespaces_max` namespaces of up to `namespace_length_max` bytes make.
    pub fn file_size_max(namespaces_max: usize, namespace_length_max: usize) -> u64 {
        let entry = 2 + namespace_length_max as u64 + 10;
        16u64.saturating_add((namespaces_max as u64).saturating_mul(entry))
    }

    /// Replaces the file of `dir` with `self`, durably (as `write` does for purges).
    pub fn write(&self, dir: &Path) -> Result<(), StorageError> {
        let path = dir.join(PURGED_NEWEST_FILE_NAME);
        replace(dir, PURGED_NEWEST_TEMP_FILE_NAME, &path, &self.encode())
            .map_err(super::io_error(format!("write {}", path.display())))
    }
}

pub fn purge_path(dir: &Path) -> PathBuf {
    dir.join(PURGE_FILE_NAME)
}

const KIND_ID: u8 = 1;
const KIND_TIME: u8 = 2;

/// The file's bytes: magic, `u32` count, per rule `u8` kind (1 id, 2 time), `u64` counter or
/// milliseconds, `u16` actor (0 for time), `u16` glob length, the glob; then a CRC32C of
/// everything before it. Integers little-endian, like every storage file.
pub fn encode(rules: &[PurgeRule]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + rules.len() * 32);
    out.extend_from_slice(PURGE_MAGIC);
    out.extend_from_slice(&(rules.len() as u32).to_le_bytes());
    for rule in rules {
        let (kind, value, actor) = match rule.before {
            PurgeBefore::Id(id) => (KIND_ID, id.counter, id.actor.0),
            PurgeBefore::Time(ms) => (KIND_TIME, ms, 0),
        };
        out.push(kind);
        out.extend_from_slice(&value.to_le_bytes());
        out.extend_from_slice(&actor.to_le_bytes());
        // Globs are at most `glob_length_max` (a u16) bytes long: checked before a merge.
        out.extend_from_slice(&(rule.glob.len() as u16).to_le_bytes());
        out.extend_from_slice(rule.glob.as_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The rules in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Vec<PurgeRule>, String> {
    let body = checked_body(bytes, PURGE_MAGIC, "FLOPRG")?;
    let mut at = 8;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let piece = body
            .get(at..at + n)
            .ok_or_else(|| "it ends inside a rule".to_string())?;
        at += n;
        Ok(piece)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "count")?);
    let mut rules = Vec::new();
    for _ in 0..count {
        let kind = take(1)?[0];
        let value = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "value")?);
        let actor = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "actor")?);
        let length = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "length")?);
        let glob = std::str::from_utf8(take(usize::from(length))?)
            .map_err(|_| "a glob is not UTF-8".to_string())?
            .to_string();
        let before = match kind {
            KIND_ID => PurgeBefore::Id(EventId {
                counter: value,
                actor: ActorId(actor),
            }),
            KIND_TIME => PurgeBefore::Time(value),
            other => return Err(format!("unknown rule kind {other}")),
        };
        rules.push(PurgeRule { glob, before });
    }
    if at != body.len() {
        return Err("bytes follow the last rule".into());
    }
    Ok(rules)
}

/// Reads the purge file of `dir`, at most `size_max` bytes: `Ok(empty)` when there is none. A
/// damaged file is `Corrupt`: flo does not start without the purges it acknowledged, since
/// purged events would be delivered again.
pub fn read(dir: &Path, size_max: u64) -> Result<Vec<PurgeRule>, StorageError> {
    let path = purge_path(dir);
    let Some(bytes) = read_capped(&path, size_max)? else {
        return Ok(Vec::new());
    };
    let problem = if bytes.len() as u64 > size_max {
        Err(format!("it is longer than {size_max} bytes"))
    } else {
        decode(&bytes)
    };
    problem.map_err(|problem| StorageError::Corrupt {
        context: format!(
            "purge file {} is damaged: {problem}; restore it from a backup or a replica's data \
             directory (or move it away to forget every purge: purged events come back)",
            path.display()
        ),
    })
}

/// The largest purge file `rules_max` rules of globs up to `glob_length_max` bytes make.
pub fn file_size_max(rules_max: usize, glob_length_max: usize) -> u64 {
    let rule = 1 + 8 + 2 + 2 + glob_length_max as u64;
    (PURGE_MAGIC.len() as u64 + 4 + 4).saturating_add((rules_max as u64).saturating_mul(rule))
}

/// Replaces the purge file of `dir` with `rules`, durably: written to a temporary file,
/// fdatasync'd, renamed over the old one, and the directory fsync'd. A crash at any point
/// leaves either the old set or the new one.
pub fn write(dir: &Path, rules: &[PurgeRule]) -> Result<(), StorageError> {
    let path = purge_path(dir);
    replace(dir, PURGE_TEMP_FILE_NAME, &path, &encode(rules))
        .map_err(super::io_error(format!("write purges {}", path.display())))
}

/// `bytes` of a state file once its length, its checksum (CRC32C of all but the last 4
/// bytes, stored there) and its 8-byte magic (`name`, format version 1) are checked: the
/// body, magic included, without the checksum.
fn checked_body<'a>(bytes: &'a [u8], magic: &[u8; 8], name: &str) -> Result<&'a [u8], String> {
    if bytes.len() < magic.len() + 8 {
        return Err(format!("it is {} bytes long, too short", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err("its checksum does not match".into());
    }
    if &body[..8] != magic {
        return Err(format!("its magic is not {name} version 1"));
    }
    Ok(body)
}

/// The bytes of `path`, at most `size_max` + 1 (so that a longer file is told apart), or
/// `None` when there is no such file.
fn read_capped(path: &Path, size_max: u64) -> Result<Option<Vec<u8>>, StorageError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let context = format!("open {}", path.display());
            return Err(StorageError::Io { context, source });
        }
    };
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(size_max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(super::io_error(format!("read {}", path.display())))?;
    Ok(Some(bytes))
}

/// Replaces `path` (in `dir`) with `bytes`, durably: written to `temp_name` in `dir`,
/// fdatasync'd, renamed over `path`, and the directory fsync'd.
fn replace(dir: &Path, temp_name: &str, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(temp_name);
    write_file(&temp, bytes)
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| fsync_dir(dir))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn event(namespace: &str, counter: u64, timestamp_ms: u64) -> Event {
        Event {
            id: EventId {
                counter,
                actor: ActorId(1),
            },
            parent_id: None,
            namespace: namespace.into(),
            timestamp_ms,
            data: Vec::new(),
        }
    }

    #[test]
    fn purges_hide_by_glob_and_bound_and_only_raise() {
        let mut rules = HideRules::default();
        let id = |counter| {
            PurgeBefore::Id(EventId {
                counter,
                actor: ActorId(1),
            })
        };
        let rule = |glob: &str, before| PurgeRule {
            glob: glob.into(),
            before,
        };
        let two = PurgeLimits {
            rules_max: 2,
            glob_bytes_max: 1024,
        };
        assert_eq!(rules.merge(&rule("/m/**", id(10)), two), Ok(true));
        assert!(rules.hides(event("/m/a", 9, 0).view()));
        assert!(!rules.hides(event("/m/a", 10, 0).view()));
        assert!(!rules.hides(event("/n/a", 1, 0).view()));
        // A lower bound for the same glob and kind changes nothing; a higher one raises it.
        assert_eq!(rules.merge(&rule("/m/**", id(5)), two), Ok(false));
        assert_eq!(rules.merge(&rule("/m/**", id(20)), two), Ok(true));
        assert!(rules.hides(event("/m/a", 19, 0).view()));
        assert_eq!(
            rules.merge(&rule("/t", PurgeBefore::Time(100)), two),
            Ok(true)
        );
        assert!(rules.hides(event("/t", 50, 99).view()));
        assert_eq!(
            rules.merge(&rule("/u", PurgeBefore::Time(100)), two),
            Err(PurgeError::Full { rules_max: 2 })
        );
        // Raising a rule in a full set is allowed.
        assert_eq!(
            rules.merge(&rule("/t", PurgeBefore::Time(200)), two),
            Ok(true)
        );
        let bytes = encode(&rules.purges());
        assert_eq!(decode(&bytes), Ok(rules.purges()));
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
    }

    /// The globs of all purge rules together are bounded (`purge_glob_bytes_max`), so one
    /// event's check against every rule costs bounded matching whatever the globs: a new glob
    /// that would pass it is refused, raising a held rule's bound is not.
    #[test]
    fn the_rules_globs_are_bounded_in_bytes_together() {
        let limits = PurgeLimits {
            rules_max: 256,
            glob_bytes_max: 100,
        };
        let rule = |glob: String, counter| PurgeRule {
            glob,
            before: PurgeBefore::Id(EventId {
                counter,
                actor: ActorId(1),
            }),
        };
        let mut rules = HideRules::default();
        let long = |letter: char| format!("/{}", letter.to_string().repeat(49));
        assert_eq!(rules.merge(&rule(long('a'), 5), limits), Ok(true));
        assert_eq!(rules.merge(&rule(long('b'), 5), limits), Ok(true));
        assert_eq!(
            rules.merge(&rule("/c".into(), 5), limits),
            Err(PurgeError::GlobBytesFull {
                glob_bytes_max: 100
            })
        );
        assert_eq!(rules.merge(&rule(long('a'), 9), limits), Ok(true));
        assert_eq!(rules.purges().len(), 2);
        // A set loaded from the disk is taken whole, whatever the limit is now.
        let (loaded, outcomes, _) =
            merge_all(&HideRules::default(), &rules.purges(), PurgeLimits::NONE);
        assert!(outcomes.iter().all(|outcome| *outcome == Ok(true)));
        assert_eq!(loaded.purges(), rules.purges());
    }

    #[test]
    fn retention_cutoffs_move_forward_only() {
        let mut rules = HideRules::default();
        let keep = NamespaceRetention {
            glob: "/metrics/**".into(),
            keep_ms: 1000,
        };
        rules.set_retention_rules(&[keep]);
        assert!(!rules.hides(event("/metrics/cpu", 1, 0).view()));
        assert!(rules.advance_retention(5000));
        assert!(rules.hides(event("/metrics/cpu", 1, 3999).view()));
        assert!(!rules.hides(event("/metrics/cpu", 1, 4000).view()));
        assert!(!rules.hides(event("/orders/1", 1, 0).view()));
        // The clock stepping back leaves the cutoff where it was.
        assert!(!rules.advance_retention(2000));
        assert!(rules.hides(event("/metrics/cpu", 1, 3999).view()));
    }
}
