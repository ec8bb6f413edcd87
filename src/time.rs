//! The two clocks' readings as distinct types, so that one cannot be used for the other.
//!
//! The reactor reads both clocks once per turn and hands them to the engine in `Now`; nothing
//! else reads a clock. Wall-clock time can jump forward and step back (NTP, an operator, a
//! virtual machine resumed), so it is used only where the calendar matters: event timestamps
//! and the age of events under retention. Every interval, time-out and deadline (the fsync
//! interval, handshake and idle time-outs, lingering, shutdown, peer dial back-off) is measured
//! on the monotonic clock, which never steps back.

/// Wall-clock milliseconds since the Unix epoch: event timestamps and retention ages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallClockMs(pub u64);

/// Monotonic milliseconds since an arbitrary start (the reactor's start): every interval,
/// time-out and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonotonicMs(pub u64);
