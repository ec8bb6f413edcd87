//! Warnings that a client can cause once per event are written at most once a second each: a
//! consumer nacking events into the parked list (or past a full one) must not make the server
//! write its log at the rate it can send frames (attack round 5: 14 MB/s of log lines).

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
        if now_ms < self.next_ms {
            self.held_back += 1;
            return None;
        }
        self.next_ms = now_ms.saturating_add(Self::INTERVAL_MS);
        Some(std::mem::take(&mut self.held_back))
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
