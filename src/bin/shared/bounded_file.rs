//! Reading a small text file named by a flag (the auth file, the config file) without letting
//! what is at that path block or exhaust the process.
//!
//! `std::fs::read_to_string` after a `metadata().len()` check is not enough: a FIFO, a
//! character device such as `/dev/zero` or a directory reports a length of 0 (or none), so the
//! check passes; opening a FIFO then blocks until a writer appears (on the SIGHUP path that
//! froze the signal thread, and shutdown with it), and `/dev/zero` reads until memory runs out.
//! So: open without blocking (`O_NONBLOCK` on Linux, which only matters for a FIFO), refuse
//! anything that is not a regular file by the opened file's own metadata (no race with a
//! rename in between), and read at most `size_max + 1` bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Opens `path` for reading without blocking on a FIFO.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK on Linux (every architecture flo builds for); std does not name it.
        const O_NONBLOCK: i32 = 0o4000;
        options.custom_flags(O_NONBLOCK);
    }
    options.open(path)
}

/// The text of the regular file at `path`, at most `size_max` bytes; otherwise a one-line
/// error naming `what` and the path.
pub fn read_text_file(path: &Path, size_max: u64, what: &str) -> Result<String, String> {
    let shown = path.display();
    let failed = |error: std::io::Error| format!("could not read {what} {shown}: {error}");
    let file = open_nonblocking(path).map_err(failed)?;
    let metadata = file.metadata().map_err(failed)?;
    if !metadata.is_file() {
        return Err(format!(
            "{what} {shown} is not a regular file (a directory, FIFO, socket or device)"
        ));
    }
    let mut bytes = Vec::new();
    file.take(size_max + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > size_max {
        return Err(format!(
            "{what} {shown} is more than the {size_max} bytes allowed"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{what} {shown} is not valid UTF-8"))
}
