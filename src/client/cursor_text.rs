//! A cursor as one line of text, so a consumer can save its position and resume later:
//! the floor id in its 25-digit form, then one `ACTOR:COUNTER` pair per actor, separated by
//! single spaces. For example `0000000000000000000500003 1:7 2:4`.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use crate::event::{ActorId, Cursor, EventId, VersionVector};

/// Why a cursor's text form did not parse; the string says where.
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

/// Writes the cursor to `path` so that it survives a crash or a power loss: the text goes to a
/// fresh temporary file in the same directory, which is fsynced, renamed over `path`
/// (`NamedTempFile::persist`), and then the directory is fsynced so that the rename itself is
/// durable. A crash at any point leaves either the old cursor or the new one, never a mix, and
/// once this returns the new one is on the disk. The temporary file is removed on failure.
pub fn save_cursor(path: &Path, cursor: &Cursor) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".cursor")
        .tempfile_in(directory)?;
    temporary.write_all(format!("{}\n", format_cursor(cursor)).as_bytes())?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    sync_directory(directory)
}

/// Makes a rename in `directory` durable (on Unix a directory can be opened and fsynced; other
/// systems have no such call and make renames durable by their own means).
fn sync_directory(directory: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(directory)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = directory;
    Ok(())
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

    /// The save goes through a fresh temporary file, persisted by a rename, and leaves nothing
    /// else behind: not a fixed `<name>.tmp` that a second saver (or a stale file from a crash)
    /// would share, and not a partial file under the real name.
    #[test]
    fn a_save_replaces_the_cursor_and_leaves_no_temporary_file() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("cursor");
        // A stale temporary file of the old scheme, such as a crash would leave, and made
        // unwritable: a save must not depend on it.
        let stale = directory.path().join("cursor.tmp");
        std::fs::create_dir(&stale).expect("a directory where the old scheme wrote");
        let mut cursor = Cursor::default();
        for counter in 1..=3 {
            cursor.observe(EventId::new(counter, 1));
            save_cursor(&path, &cursor).expect("save");
            assert_eq!(load_cursor(&path).expect("load"), Some(cursor.clone()));
        }
        let mut names: Vec<String> = std::fs::read_dir(directory.path())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert_eq!(names, ["cursor", "cursor.tmp"]);
    }
}
