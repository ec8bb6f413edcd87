//! Polling briefly before sleeping, after a turn that delivered events to group members
//! (`Config::reactor_spin`).
//!
//! A group member acks the event it was just sent within tens of microseconds. If the reactor is asleep
//! in `epoll_wait` by then, the peer's send has to wake it, and the kernel often wakes it on
//! the other core: the sender then pays a cross-CPU wake-up inside its `sendto` (17-40 us on
//! the 2-vCPU machine of BENCHMARKS.md, where an idle vCPU halts), which is in the peer's own
//! latency (issue 12, run U: the member's ack, "acked" minus "delivered", 11-16 us against
//! flo asleep, 5 us against flo polling). Polling for a short while first lets such an answer
//! find the reactor awake.
//!
//! The price is CPU while nothing comes, so it is bounded twice: at most `per_turn` after one
//! turn (never past the turn's own poll time-out), and at most `per_second_max` in total per
//! second of wall time, after which the reactor sleeps at once until the next second. At a high
//! rate the next readiness comes before the allowance runs out (the poll returns at once); at
//! a low rate with slow answers the second bound caps the cost at `per_second_max` a second.
//!
//! Only a turn that delivered to group members polls (the engine says so in its turn summary,
//! `Engine::take_member_deliveries`; the reactor does not guess from what it wrote). Session 17
//! polled after any turn that wrote, also one that wrote only producer acks: under a flood of
//! pipelined producers, whose next frames are already on their way or come when the clients
//! get a core, that cost 5% more server CPU an event for nothing (left18, session 18).
//!
//! **Why not yield.** A socket write wakes its reader with a "sync" wake-up, which the kernel
//! tends to queue on the writer's core, so a group member woken by the event just written can
//! wait behind this polling (traced by grp18, session 18: p90 101-105 us in about one turn in
//! ten). Yielding the core between polls (`sched_yield`) removed that wait in the traces, but the
//! lead's quiet A/B (BENCHMARKS.md, issue 12, run X) showed the group cell's acked p50 1.26-1.86x
//! higher with the yield (lower in 1 of 20 repeats) and its acked p99 not lower (0.95-1.08):
//! every woken client then ran on the reactor's core one after the other while the other core
//! idled. So the loop is a busy poll.

use std::time::{Duration, Instant};

/// The length of the window that `per_second_max` bounds.
const WINDOW: Duration = Duration::from_secs(1);

/// After this many polls in a row that ended without readiness, no more polling until the
/// next window: under a flood of pipelined clients the next input does not come within
/// `per_turn` of a turn's end (the clients need the cores), and polling there only takes CPU
/// from them (BENCHMARKS.md, run U: 4 x 64 producers, +5% server CPU an event without this).
const MISSES_MAX: u32 = 8;

/// How long the reactor may still poll without sleeping.
#[derive(Debug)]
pub(crate) struct Spin {
    per_turn: Duration,
    per_second_max: Duration,
    window_start: Instant,
    /// Polling time spent since `window_start`.
    spent: Duration,
    /// Polls in a row that ended without readiness.
    misses: u32,
}

impl Spin {
    pub(crate) fn new(per_turn: Duration, per_second_max: Duration, now: Instant) -> Spin {
        Spin {
            per_turn,
            per_second_max,
            window_start: now,
            spent: Duration::ZERO,
            misses: 0,
        }
    }

    /// How long to poll before sleeping now: zero unless the turn just ended `delivered` to
    /// group members; zero after `MISSES_MAX` fruitless polls in a row, until the next second;
    /// never more than `timeout` (the turn's time until its next deadline), `per_turn`, or
    /// what is left of this second's `per_second_max`.
    pub(crate) fn allowance(
        &mut self,
        now: Instant,
        delivered: bool,
        timeout: Duration,
    ) -> Duration {
        if !delivered || self.per_turn.is_zero() {
            return Duration::ZERO;
        }
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.spent = Duration::ZERO;
            self.misses = 0;
        }
        if self.misses >= MISSES_MAX {
            return Duration::ZERO;
        }
        let left = self.per_second_max.saturating_sub(self.spent);
        self.per_turn.min(left).min(timeout)
    }

    /// Records time spent polling, and whether readiness came (`caught`) before it ran out.
    pub(crate) fn record(&mut self, spent: Duration, caught: bool) {
        self.spent = self.spent.saturating_add(spent);
        self.misses = if caught { 0 } else { self.misses + 1 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn only_a_turn_that_delivered_polls_and_never_past_its_time_out() {
        let start = Instant::now();
        let mut spin = Spin::new(100 * US, 50_000 * US, start);
        assert_eq!(
            spin.allowance(start, false, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            spin.allowance(start, true, Duration::from_secs(1)),
            100 * US
        );
        assert_eq!(spin.allowance(start, true, 30 * US), 30 * US);
        assert_eq!(spin.allowance(start, true, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn zero_per_turn_turns_it_off() {
        let start = Instant::now();
        let mut spin = Spin::new(Duration::ZERO, 50_000 * US, start);
        assert_eq!(
            spin.allowance(start, true, Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_second_budget_caps_the_polling_until_the_next_second() {
        let start = Instant::now();
        let mut spin = Spin::new(100 * US, 250 * US, start);
        let timeout = Duration::from_secs(1);
        spin.record(100 * US, true);
        spin.record(100 * US, true);
        // 50 us of this second's 250 are left.
        assert_eq!(spin.allowance(start + 10 * US, true, timeout), 50 * US);
        spin.record(50 * US, true);
        assert_eq!(
            spin.allowance(start + 999_999 * US, true, timeout),
            Duration::ZERO
        );
        // A new second starts a new budget.
        assert_eq!(spin.allowance(start + WINDOW, true, timeout), 100 * US);
        spin.record(100 * US, true);
        assert_eq!(spin.allowance(start + WINDOW, true, timeout), 100 * US);
        spin.record(100 * US, true);
        assert_eq!(spin.allowance(start + WINDOW, true, timeout), 50 * US);
    }

    #[test]
    fn fruitless_polls_in_a_row_stop_the_polling_until_the_next_second() {
        let start = Instant::now();
        let mut spin = Spin::new(100 * US, 50_000 * US, start);
        let timeout = Duration::from_secs(1);
        // A catch in between starts the count again.
        for _ in 0..MISSES_MAX - 1 {
            spin.record(100 * US, false);
        }
        spin.record(10 * US, true);
        for _ in 0..MISSES_MAX {
            assert_eq!(spin.allowance(start, true, timeout), 100 * US);
            spin.record(100 * US, false);
        }
        assert_eq!(spin.allowance(start, true, timeout), Duration::ZERO);
        assert_eq!(
            spin.allowance(start + WINDOW - US, true, timeout),
            Duration::ZERO
        );
        assert_eq!(spin.allowance(start + WINDOW, true, timeout), 100 * US);
    }
}
