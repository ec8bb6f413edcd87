//! Warnings that a client can cause once per event are written at most once a second each: a
//! consumer nacking events into the parked list (or past a full one) must not make the server
//! write its log at the rate it can send frames (attack round 5: 14 MB/s of log lines).

use crate::storage::StorageError;

/// One kind of warning of one owner (a group): at most one line per `INTERVAL_MS`; the lines
/// held back are counted and the next line written says how many there were.
#[derive(Debug, Default)]
pub(super) struct LogLimit {
    /// When the next line may be written (0: at once).
    next_ms: u64,
    /// Lines held back since the last one written.
    held_back: u64,
}

impl LogLimit {
    pub(super) const INTERVAL_MS: u64 = 1_000;

    /// `Some(held back)` when a line may be written now (the caller writes it and mentions the
    /// count if it is not zero), `None` when this one is held back (and counted).
    pub(super) fn allow(&mut self, now_ms: u64) -> Option<u64> {
        self.allow_every(now_ms, Self::INTERVAL_MS)
    }

    /// `allow` with another interval.
    pub(super) fn allow_every(&mut self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        if now_ms < self.next_ms {
            self.held_back += 1;
            return None;
        }
        self.next_ms = now_ms.saturating_add(interval_ms);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// Failed writes to the data directory (a full disk fails every produce, every counter lease,
/// every replicated event and every group-journal write: walk9 saw 16 ERROR lines a second,
/// and a producer pipelining lines makes it hundreds). One ERROR line per
/// `STORAGE_FAILURE_INTERVAL_MS` over all of them; the first of a run of failures says what
/// to do, the later ones how many were held back; the first write that succeeds after them
/// says so at INFO.
#[derive(Debug, Default)]
pub(super) struct StorageFailureLog {
    limit: LogLimit,
    /// Failures since the last successful write (0: writes work).
    failures: u64,
}

/// How often a failing disk is logged.
pub(super) const STORAGE_FAILURE_INTERVAL_MS: u64 = 10_000;

impl StorageFailureLog {
    /// Logs (or counts) one failed write: `what` failed with `error`.
    pub(super) fn failed(&mut self, now_ms: u64, what: &str, error: &StorageError) {
        self.failures += 1;
        let Some(held_back) = self.limit.allow_every(now_ms, STORAGE_FAILURE_INTERVAL_MS) else {
            return;
        };
        if self.failures == 1 {
            log::error!(
                "{what}: {error}. {} (further failures are logged at most once every {} s)",
                storage_failure_advice(error),
                STORAGE_FAILURE_INTERVAL_MS / 1000
            );
        } else {
            log::error!(
                "{what}: {error}; writes have failed {} times since the last one that worked{}",
                self.failures,
                held_back_suffix(held_back)
            );
        }
    }

    /// A write reached the disk: if writes were failing, says that they work again.
    pub(super) fn succeeded(&mut self) {
        if self.failures > 0 {
            log::info!(
                "writes to the data directory work again, after {} failed",
                self.failures
            );
            self.failures = 0;
            self.limit = LogLimit::default();
        }
    }
}

/// What an operator should do about a failed write.
pub(super) fn storage_failure_advice(error: &StorageError) -> &'static str {
    let full = matches!(
        error,
        StorageError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    );
    if full {
        "The disk holding the data directory is full: every produce is refused with \
         StorageFailure (nothing is lost that was acknowledged). Free space on that disk, or \
         bound the log with --max-bytes or --max-age; flo takes produces again as soon as a \
         write succeeds, without a restart"
    } else {
        "Produces are refused with StorageFailure while writes fail (nothing is lost that was \
         acknowledged); check the disk holding the data directory (permissions, the kernel \
         log); flo takes produces again as soon as a write succeeds"
    }
}

/// " (N more like it since the last such message)" when lines were held back.
pub(super) fn held_back_suffix(held_back: u64) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!(" ({held_back} more like it since the last such message)")
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimit;

    #[test]
    fn one_line_a_second_and_the_held_back_ones_are_counted() {
        let mut limit = LogLimit::default();
        assert_eq!(limit.allow(5_000), Some(0));
        let allowed = (0..100_000u64)
            .filter(|i| limit.allow(5_000 + i / 100).is_some())
            .count();
        assert_eq!(
            allowed, 0,
            "within the second after a line, nothing more is written"
        );
        assert_eq!(limit.allow(6_000), Some(100_000));
        assert_eq!(limit.allow(7_000), Some(0));
    }
}
