//! A cursor as one line of text, so a consumer can save its position and resume later:
//! the floor id in its 25-digit form, then one `ACTOR:COUNTER` pair per actor, separated by
//! single spaces. For example `0000000000000000000500003 1:7 2:4`.

use std::fmt;
use std::io;
use std::path::Path;

use crate::event::{ActorId, Cursor, EventId, VersionVector};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorParseError(pub String);

impl fmt::Display for CursorParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cursor: {}", self.0)
    }
}

impl std::error::Error for CursorParseError {}

/// The cursor's one-line text form (no trailing newline).
pub fn format_cursor(cursor: &Cursor) -> String {
    let mut text = cursor.floor.to_string();
    for (actor, counter) in cursor.vector.iter() {
        text.push_str(&format!(" {actor}:{counter}"));
    }
    text
}

/// Parses what [`format_cursor`] wrote; surrounding white space is ignored.
pub fn parse_cursor(text: &str) -> Result<Cursor, CursorParseError> {
    let mut words = text.split_whitespace();
    let floor_text = words
        .next()
        .ok_or_else(|| CursorParseError("empty".to_string()))?;
    let floor: EventId = floor_text
        .parse()
        .map_err(|error| CursorParseError(format!("{error}")))?;
    if !floor.is_canonical() {
        return Err(CursorParseError(format!(
            "floor {floor_text} has counter 0 but an actor; no floor is all zeros"
        )));
    }
    let mut vector = VersionVector::new();
    for pair in words {
        let parsed = pair.split_once(':').and_then(|(actor, counter)| {
            Some((actor.parse::<u16>().ok()?, counter.parse::<u64>().ok()?))
        });
        let Some((actor, counter)) = parsed else {
            return Err(CursorParseError(format!("{pair:?} is not ACTOR:COUNTER")));
        };
        if vector.get(ActorId(actor)) != 0 {
            return Err(CursorParseError(format!("actor {actor} appears twice")));
        }
        vector.set(ActorId(actor), counter);
    }
    Ok(Cursor { floor, vector })
}

/// Writes the cursor to `path` atomically (a temporary file renamed over it), so a crash
/// leaves either the old cursor or the new one.
pub fn save_cursor(path: &Path, cursor: &Cursor) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    std::fs::write(temporary, format!("{}\n", format_cursor(cursor)))?;
    std::fs::rename(temporary, path)
}

/// Reads a cursor saved by [`save_cursor`]; `Ok(None)` when the file does not exist.
pub fn load_cursor(path: &Path) -> io::Result<Option<Cursor>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_cursor(&text)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trips() {
        let mut cursor = Cursor::after(EventId::new(5, 3));
        cursor.observe(EventId::new(7, 1));
        cursor.observe(EventId::new(4, 2));
        let text = format_cursor(&cursor);
        assert_eq!(text, "0000000000000000000500003 1:7 2:4");
        assert_eq!(parse_cursor(&text), Ok(cursor));
        assert_eq!(
            parse_cursor("0000000000000000000000000\n"),
            Ok(Cursor::default())
        );
    }

    #[test]
    fn bad_cursor_text_is_refused() {
        for bad in [
            "",
            "12",
            "0000000000000000000000000 1",
            "0000000000000000000000005 1:1",
            "0000000000000000000000000 x:1",
            "0000000000000000000000000 1:2 1:3",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn cursor_files_save_and_load() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("cursor");
        assert_eq!(load_cursor(&path).expect("missing file is fine"), None);
        let mut cursor = Cursor::default();
        cursor.observe(EventId::new(9, 2));
        save_cursor(&path, &cursor).expect("save");
        assert_eq!(load_cursor(&path).expect("load"), Some(cursor));
    }
}
