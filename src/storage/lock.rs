//! The data directory lock: one server per directory. Two servers appending to the same
//! segment files overwrite each other's acknowledged records, so the log takes an exclusive
//! lock (`flock`, through std's `File::try_lock`) on `flo.lock` in the data directory when it
//! opens and holds it until it is dropped. The kernel releases it when the process exits, also
//! after a kill -9, so a stale lock file never keeps a restarted server out. The holder writes
//! its process id into the file so that the refused server can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::segment::LOCK_FILE_NAME;
use super::StorageError;

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` without waiting. Another holder gives `StorageError::Locked`
    /// with its process id when the lock file names one.
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(LOCK_FILE_NAME);
        let io_error = |what: &str| {
            let context = format!("{what} {}", path.display());
            move |source| StorageError::Io { context, source }
        };
        // Not truncated on open: until the lock is ours the file holds the holder's pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    dir: dir.to_path_buf(),
                    holder_pid: read_pid(&mut file),
                })
            }
            Err(TryLockError::Error(source)) => return Err(io_error("lock")(source)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io_error("write"))?;
        Ok(DirLock { _file: file })
    }
}

/// The process id in the lock file, if it holds one (it is empty for a moment while the
/// holder writes it).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    // A pid is a few digits; a larger file is not ours to believe.
    Read::by_ref(file).take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
