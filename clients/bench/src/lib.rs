//! Load generation for benchmarks, reusable for any server: flo itself (`flo-client bench`,
//! whose flo driver lives in the flo crate's binary and uses the flo client library) and the
//! peers it is compared with (Redis Streams, NATS JetStream, driven by this crate's
//! `peer_bench` binary; see `ci/bench.sh`). This crate does not depend on flo.
//!
//! A [`Target`] opens [`Connection`]s. The produce runner ([`run_produce`]) starts one thread per
//! connection; each keeps up to `window` produces in flight, counts only acknowledged events and
//! records the acknowledgement latency of each (from the moment it was sent, or, at a fixed
//! rate, from the moment it was scheduled, so that a slow server cannot hide its stalls by
//! delaying the next send). The read runner ([`run_read`]) measures catch-up reading from the
//! beginning of a stored stream through a [`ReadTarget`].
//!
//! This is a client tool: it uses blocking `std::net` sockets and reads `Instant::now()`
//! directly, unlike flo's engine, whose clock is injected.

pub mod group;
pub mod latency;
pub mod nats;
pub mod redis;
pub mod report;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use group::{run_group, run_group_drain, GroupTarget, Member};
pub use latency::{Histogram, LatencySummary};
pub use report::BenchResult;

/// When a produce run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many events in total, split evenly between the connections.
    Count(u64),
    /// After this long; the events still in flight are then acknowledged and counted.
    Duration(Duration),
}

/// What a produce run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchSpec {
    /// Connections, one thread each.
    pub connections: usize,
    /// Produces in flight (sent, not yet acknowledged) per connection.
    pub window: usize,
    /// Payload bytes per event.
    pub event_size: usize,
    pub stop: Stop,
    /// Events per second over all connections; `None` sends as fast as acknowledgements allow.
    pub rate: Option<u64>,
}

impl BenchSpec {
    /// Checks the limits a run relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.window == 0 {
            return Err("connections and window must be at least 1".to_string());
        }
        if self.rate == Some(0) {
            return Err("rate must be at least 1 event/s".to_string());
        }
        if self.stop == Stop::Count(0) || self.stop == Stop::Duration(Duration::ZERO) {
            return Err("count or duration must be positive".to_string());
        }
        Ok(())
    }
}

/// A server under test, shared by the connection threads.
pub trait Target: Sync {
    /// A short name for reports, e.g. `redis`.
    fn name(&self) -> String;
    /// Opens one producing connection, ready to send.
    fn connect(&self) -> io::Result<Box<dyn Connection>>;
}

/// One producing connection. `send` may buffer; the runner calls `flush` before it waits for an
/// acknowledgement. Acknowledgements arrive in the order of the sends.
pub trait Connection: Send {
    fn send(&mut self, payload: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Blocks until the next acknowledgement; an error reply from the server is an error.
    fn recv_ack(&mut self) -> io::Result<()>;
    /// True when bytes of the next acknowledgement were already received, so `recv_ack` will
    /// not wait for the server. The runner then takes every such acknowledgement before it
    /// refills the window with one write, instead of one write per acknowledgement.
    fn ack_buffered(&self) -> bool {
        false
    }
    /// Waits at most `timeout` for bytes of the next acknowledgement; true when some arrived
    /// (or the connection ended: `recv_ack` then reports it), false when none came in time.
    /// A fixed-rate run waits here, not in `recv_ack`, while its next send is not yet due, so
    /// that the send goes out on time even when the server is slow to acknowledge (an open
    /// loop). The default blocks: it says an acknowledgement is ready.
    fn wait_for_ack(&mut self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }
}

/// `Connection::wait_for_ack` for a buffered TCP reader whose read time-out is normally
/// `restore`.
pub fn wait_for_bytes(
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    timeout: Duration,
    restore: Duration,
) -> io::Result<bool> {
    use std::io::BufRead;
    if !reader.buffer().is_empty() {
        return Ok(true);
    }
    reader
        .get_ref()
        .set_read_timeout(Some(timeout.max(Duration::from_micros(10))))?;
    let filled = reader.fill_buf().map(|bytes| bytes.len());
    reader.get_ref().set_read_timeout(Some(restore))?;
    match filled {
        Ok(_) => Ok(true),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// A server whose stream a consumer can follow as events are appended.
pub trait TailTarget: Sync {
    /// Subscribes at the current end of the stream; later events are delivered.
    fn tail(&self) -> io::Result<Box<dyn Tail>>;
}

/// A subscribed consumer.
pub trait Tail: Send {
    /// Waits (for a bounded time) for new events, calls `on_event` with each payload and returns
    /// how many there were; 0 when none arrived in time.
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64>;
}

/// A server whose stored stream can be read back from the beginning.
pub trait ReadTarget {
    fn name(&self) -> String;
    fn open_reader(&self) -> io::Result<Box<dyn Reader>>;
}

/// A reader positioned at the beginning of the stream.
pub trait Reader {
    /// Reads the next batch and returns how many events it held; 0 means the end was reached.
    fn read_batch(&mut self) -> io::Result<u64>;
}

/// Runs a produce benchmark and merges the connections' figures.
pub fn run_produce(target: &dyn Target, spec: &BenchSpec) -> io::Result<BenchResult> {
    spec.validate()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let produced = produce(target, spec, None)?;
    Ok(BenchResult::produce(
        target.name(),
        spec,
        produced.latency,
        produced.elapsed,
    ))
}

/// Runs a produce benchmark while a tailing consumer, subscribed before the first produce,
/// measures end-to-end latency: from the moment each event was sent (or due, at a fixed rate)
/// to the moment the consumer received it. Each payload carries that moment in its first 8
/// bytes, so `event_size` must be at least 8.
pub fn run_end_to_end(
    target: &dyn Target,
    tail_target: &dyn TailTarget,
    spec: &BenchSpec,
) -> io::Result<BenchResult> {
    run_end_to_end_with_consumers(target, tail_target, spec, 1)
}

/// Like [`run_end_to_end`] with `consumers` tailing consumers (at least 1), each on its own
/// connection and thread, each receiving every event; the end-to-end latency merges all of
/// their deliveries.
pub fn run_end_to_end_with_consumers(
    target: &dyn Target,
    tail_target: &dyn TailTarget,
    spec: &BenchSpec,
    consumers: usize,
) -> io::Result<BenchResult> {
    spec.validate()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    if spec.event_size < STAMP_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("end-to-end latency needs events of at least {STAMP_SIZE} bytes"),
        ));
    }
    if consumers == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "end-to-end latency needs at least one consumer",
        ));
    }
    let mut tails = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        tails.push(tail_target.tail()?);
    }
    let epoch = Instant::now();
    // The consumers stop once they have seen this many events; unknown until the producers end.
    let expected = AtomicU64::new(u64::MAX);
    let (produced, consumed) = std::thread::scope(|scope| {
        let expected = &expected;
        let handles: Vec<_> = tails
            .into_iter()
            .map(|mut tail| scope.spawn(move || consume(tail.as_mut(), epoch, expected)))
            .collect();
        let produced = produce(target, spec, Some(epoch));
        let acknowledged = produced
            .as_ref()
            .map_or(0, |produced| produced.latency.count());
        expected.store(acknowledged, Ordering::Release);
        let consumed: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
        (produced, consumed)
    });
    let produced = produced?;
    let mut end_to_end = Histogram::new();
    for outcome in consumed {
        let histogram = outcome.map_err(|_| io::Error::other("a consumer thread panicked"))??;
        end_to_end.merge(&histogram);
    }
    let mut result = BenchResult::produce(target.name(), spec, produced.latency, produced.elapsed);
    result.end_to_end = Some(end_to_end.summary());
    result.send_late = Some(produced.late.summary());
    Ok(result)
}

/// Bytes at the start of a payload that carry its send time, for end-to-end latency.
const STAMP_SIZE: usize = 8;
/// Empty batches in a row, after the producers ended, before the consumer gives up on events
/// that never arrive (each waits a bounded time, e.g. 500 ms for Redis).
const TAIL_IDLE_BATCHES_MAX: u32 = 20;

/// Receives events until `expected` of them arrived; records each one's latency.
fn consume(tail: &mut dyn Tail, epoch: Instant, expected: &AtomicU64) -> io::Result<Histogram> {
    let mut latency = Histogram::new();
    let mut seen = 0u64;
    let mut idle_batches_after_end = 0u32;
    while seen < expected.load(Ordering::Acquire) {
        if expected.load(Ordering::Acquire) != u64::MAX {
            idle_batches_after_end += 1;
            if idle_batches_after_end > TAIL_IDLE_BATCHES_MAX {
                return Err(io::Error::other(format!(
                    "the consumer saw {seen} of {} acknowledged events",
                    expected.load(Ordering::Acquire)
                )));
            }
        }
        let mut on_event = |payload: &[u8]| {
            let received = nanos_since(epoch);
            if let Some(stamp) = payload.get(..STAMP_SIZE) {
                let mut bytes = [0u8; STAMP_SIZE];
                bytes.copy_from_slice(stamp);
                latency.record(received.saturating_sub(u64::from_le_bytes(bytes)));
            }
        };
        let count = tail.next_batch(&mut on_event)?;
        if count > 0 {
            idle_batches_after_end = 0;
        }
        seen += count;
    }
    Ok(latency)
}

/// What the producers of a run measured.
struct Produced {
    /// Acknowledgement latency, merged over the connections.
    latency: Histogram,
    /// From the barrier to the last acknowledgement.
    elapsed: Duration,
    /// How late each produce was written after its due time: the load generator's own delay,
    /// part of every latency that counts from the due time (end-to-end, acked).
    late: Histogram,
}

/// Opens the connections, runs them from one barrier and returns what they measured. With
/// `stamp_epoch`, each payload starts with its due time in nanoseconds since that instant,
/// little-endian.
fn produce(
    target: &dyn Target,
    spec: &BenchSpec,
    stamp_epoch: Option<Instant>,
) -> io::Result<Produced> {
    let mut connections = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        connections.push(target.connect()?);
    }
    // One start instant for every connection and for the elapsed time, so that a schedule
    // at a fixed rate and the measured duration share their origin whatever the threads'
    // scheduling.
    let start = Instant::now();
    let outcomes = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(spec.connections);
        for (index, connection) in connections.into_iter().enumerate() {
            handles.push(scope.spawn(move || {
                let plan = ConnectionPlan::new(spec, index, start, stamp_epoch);
                drive_connection(connection, plan, vec![b'x'; spec.event_size])
            }));
        }
        let outcomes: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
        outcomes
    });
    let mut latency = Histogram::new();
    let mut late = Histogram::new();
    let mut finished = start;
    for outcome in outcomes {
        let outcome = outcome.map_err(|_| io::Error::other("a connection thread panicked"))??;
        latency.merge(&outcome.latency);
        late.merge(&outcome.late);
        finished = finished.max(outcome.finished);
    }
    Ok(Produced {
        latency,
        elapsed: finished.saturating_duration_since(start),
        late,
    })
}

/// Reads a stored stream from the beginning to the end on one connection.
pub fn run_read(target: &dyn ReadTarget, event_size: usize) -> io::Result<BenchResult> {
    let mut reader = target.open_reader()?;
    let mut batch_latency = Histogram::new();
    let mut events = 0u64;
    let start = Instant::now();
    loop {
        let batch_start = Instant::now();
        let count = reader.read_batch()?;
        if count == 0 {
            break;
        }
        batch_latency.record(nanos_since(batch_start));
        events += count;
    }
    Ok(BenchResult::read(
        target.name(),
        event_size,
        events,
        batch_latency,
        start.elapsed(),
    ))
}

/// One connection's share of a run.
struct ConnectionPlan {
    window: usize,
    /// Events this connection may send, for a count-limited run.
    count: Option<u64>,
    deadline: Option<Instant>,
    /// Time between two sends at a fixed rate.
    interval: Option<Duration>,
    start: Instant,
    /// Stamp each payload with its due time relative to this instant.
    stamp_epoch: Option<Instant>,
}

impl ConnectionPlan {
    fn new(
        spec: &BenchSpec,
        index: usize,
        start: Instant,
        stamp_epoch: Option<Instant>,
    ) -> ConnectionPlan {
        let connections = spec.connections as u64;
        let (count, deadline) = match spec.stop {
            Stop::Count(total) => {
                let share = total / connections + u64::from((index as u64) < total % connections);
                (Some(share), None)
            }
            // A duration too long for an Instant never ends, like no deadline.
            Stop::Duration(duration) => (None, start.checked_add(duration)),
        };
        let interval = spec
            .rate
            .map(|rate| Duration::from_secs_f64(connections as f64 / rate as f64));
        ConnectionPlan {
            window: spec.window,
            count,
            deadline,
            interval,
            start,
            stamp_epoch,
        }
    }

    /// When send number `sent` is due: now, or its slot in a fixed-rate schedule.
    fn due(&self, sent: u64, now: Instant) -> Instant {
        match self.interval {
            Some(interval) => self.start + interval.mul_f64(sent as f64),
            None => now,
        }
    }

    fn may_send(&self, sent: u64, now: Instant) -> bool {
        let under_count = self.count.is_none_or(|count| sent < count);
        let before_deadline = self.deadline.is_none_or(|deadline| now < deadline);
        under_count && before_deadline
    }
}

struct ConnectionOutcome {
    latency: Histogram,
    finished: Instant,
    /// Time from each produce's due time to the start of the write that sent it.
    late: Histogram,
}

fn drive_connection(
    mut connection: Box<dyn Connection>,
    plan: ConnectionPlan,
    mut payload: Vec<u8>,
) -> io::Result<ConnectionOutcome> {
    let mut latency = Histogram::new();
    let mut late = Histogram::new();
    // Send (or scheduled) times of the produces in flight, oldest first.
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(plan.window);
    let mut sent = 0u64;
    loop {
        let mut now = Instant::now();
        // Produces queued since the last write: the newest entries of `in_flight`.
        let mut sent_now = 0usize;
        while in_flight.len() < plan.window && plan.may_send(sent, now) {
            let due = plan.due(sent, now);
            if due > now {
                if in_flight.is_empty() {
                    wait_until(due);
                    now = Instant::now();
                } else {
                    // Collect an acknowledgement while the next send is not yet due, but send
                    // it when it is due, acknowledged or not: waiting for the acknowledgement
                    // would send it late by the server's acknowledgement latency (a closed
                    // loop measuring itself).
                    if sent_now > 0 {
                        record_late(&mut late, &in_flight, sent_now);
                        connection.flush()?;
                        sent_now = 0;
                    }
                    if connection.wait_for_ack(due - now)? {
                        break;
                    }
                    now = Instant::now();
                    continue;
                }
            }
            if let (Some(epoch), Some(stamp)) = (plan.stamp_epoch, payload.get_mut(..STAMP_SIZE)) {
                let nanos = u64::try_from(due.saturating_duration_since(epoch).as_nanos());
                stamp.copy_from_slice(&nanos.unwrap_or(u64::MAX).to_le_bytes());
            }
            connection.send(&payload)?;
            in_flight.push_back(due);
            sent += 1;
            sent_now += 1;
        }
        if sent_now > 0 {
            record_late(&mut late, &in_flight, sent_now);
            connection.flush()?;
        }
        // The sending loop above always sends while allowed and nothing is in flight, so an
        // empty window here means the run is over.
        let Some(sent_at) = in_flight.pop_front() else {
            break;
        };
        connection.recv_ack()?;
        latency.record(nanos_since(sent_at));
        // Acknowledgements that arrived together are taken together, so the window is refilled
        // with one write (a load generator that writes once per acknowledgement measures its
        // own system calls more than the server).
        while connection.ack_buffered() {
            let Some(sent_at) = in_flight.pop_front() else {
                break;
            };
            connection.recv_ack()?;
            latency.record(nanos_since(sent_at));
        }
    }
    Ok(ConnectionOutcome {
        latency,
        finished: Instant::now(),
        late,
    })
}

/// Records how late the `count` newest produces of `in_flight` are, now that the write that
/// sends them begins.
fn record_late(late: &mut Histogram, in_flight: &VecDeque<Instant>, count: usize) {
    let now = Instant::now();
    for due in in_flight.iter().rev().take(count) {
        late.record(
            u64::try_from(now.saturating_duration_since(*due).as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

/// Sleeps most of the way, then spins, because a sleep can overshoot by tens of microseconds.
fn wait_until(due: Instant) {
    let spin = Duration::from_micros(200);
    let now = Instant::now();
    if due > now + spin {
        std::thread::sleep(due - now - spin);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

fn nanos_since(earlier: Instant) -> u64 {
    u64::try_from(earlier.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A target that acknowledges every send at once and counts what it saw.
    struct Echo {
        sends: Arc<AtomicU64>,
        window_max: Arc<AtomicU64>,
    }

    struct EchoConnection {
        sends: Arc<AtomicU64>,
        window_max: Arc<AtomicU64>,
        pending: u64,
    }

    impl Target for Echo {
        fn name(&self) -> String {
            "echo".to_string()
        }
        fn connect(&self) -> io::Result<Box<dyn Connection>> {
            Ok(Box::new(EchoConnection {
                sends: Arc::clone(&self.sends),
                window_max: Arc::clone(&self.window_max),
                pending: 0,
            }))
        }
    }

    impl Connection for EchoConnection {
        fn send(&mut self, payload: &[u8]) -> io::Result<()> {
            assert_eq!(payload.len(), 10);
            self.pending += 1;
            self.window_max.fetch_max(self.pending, Ordering::Relaxed);
            self.sends.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn recv_ack(&mut self) -> io::Result<()> {
            if self.pending == 0 {
                return Err(io::Error::other("ack without a send"));
            }
            self.pending -= 1;
            Ok(())
        }
    }

    fn echo() -> Echo {
        Echo {
            sends: Arc::new(AtomicU64::new(0)),
            window_max: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A target that acknowledges each send only `delay` after it, and records per send how
    /// many acknowledgements the runner had taken by then.
    struct Slow {
        delay: Duration,
        taken_at_send: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    struct SlowConnection {
        delay: Duration,
        sent_at: VecDeque<Instant>,
        taken: u64,
        taken_at_send: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    impl Target for Slow {
        fn name(&self) -> String {
            "slow".to_string()
        }
        fn connect(&self) -> io::Result<Box<dyn Connection>> {
            Ok(Box::new(SlowConnection {
                delay: self.delay,
                sent_at: VecDeque::new(),
                taken: 0,
                taken_at_send: Arc::clone(&self.taken_at_send),
            }))
        }
    }

    impl Connection for SlowConnection {
        fn send(&mut self, _payload: &[u8]) -> io::Result<()> {
            self.sent_at.push_back(Instant::now());
            self.taken_at_send.lock().unwrap().push(self.taken);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn recv_ack(&mut self) -> io::Result<()> {
            let sent = self
                .sent_at
                .pop_front()
                .ok_or_else(|| io::Error::other("no send"))?;
            wait_until(sent + self.delay);
            self.taken += 1;
            Ok(())
        }
        fn wait_for_ack(&mut self, timeout: Duration) -> io::Result<bool> {
            let Some(&sent) = self.sent_at.front() else {
                std::thread::sleep(timeout);
                return Ok(false);
            };
            let ready = sent + self.delay;
            let deadline = Instant::now() + timeout;
            wait_until(ready.min(deadline));
            Ok(ready <= deadline)
        }
    }

    /// A fixed-rate run sends each event when it is due even while the server has not yet
    /// acknowledged the earlier ones (an open loop): with acknowledgements 30 ms late and a
    /// send due every millisecond, the first ten sends all go out before the first
    /// acknowledgement is taken. (Blocking for an acknowledgement while the next send was not
    /// yet due sent every event after the acknowledgement of the one before it.)
    #[test]
    fn a_fixed_rate_run_does_not_wait_for_acknowledgements_to_send() {
        let target = Slow {
            delay: Duration::from_millis(30),
            taken_at_send: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let spec = BenchSpec {
            connections: 1,
            window: 64,
            event_size: 10,
            stop: Stop::Count(40),
            rate: Some(1_000),
        };
        let result = run_produce(&target, &spec).expect("slow never fails");
        assert_eq!(result.events, 40);
        let taken = target.taken_at_send.lock().unwrap().clone();
        assert_eq!(
            taken[..10],
            [0; 10],
            "acknowledgements taken before each of the first sends: {taken:?}"
        );
    }

    /// The producer's own delay is measured from each produce's due time: with a window of
    /// one and acknowledgements 5 ms late, a send due every millisecond waits for the
    /// acknowledgement before it, so the tenth goes out about 36 ms after it was due; with
    /// acknowledgements at once every send is counted and none waits for one.
    #[test]
    fn a_stamped_run_measures_how_late_each_produce_was_written() {
        let slow = Slow {
            delay: Duration::from_millis(5),
            taken_at_send: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let spec = BenchSpec {
            connections: 1,
            window: 1,
            event_size: 10,
            stop: Stop::Count(10),
            rate: Some(1_000),
        };
        let produced = produce(&slow, &spec, Some(Instant::now())).expect("slow never fails");
        let late = produced.late.summary();
        assert_eq!(late.count, 10);
        // Send k (from 0) is due at k ms and written after k acknowledgements of 5 ms each.
        assert!(late.p50 >= 10_000_000, "p50 {} ns", late.p50);
        assert!(late.max >= 30_000_000, "max {} ns", late.max);
        let echo = echo();
        let produced = produce(&echo, &spec, Some(Instant::now())).expect("echo never fails");
        assert_eq!(produced.late.count(), 10);
    }

    #[test]
    fn a_counted_run_sends_exactly_the_count_within_the_window() {
        let target = echo();
        let spec = BenchSpec {
            connections: 3,
            window: 8,
            event_size: 10,
            stop: Stop::Count(1_001),
            rate: None,
        };
        let result = run_produce(&target, &spec).expect("echo never fails");
        assert_eq!(target.sends.load(Ordering::Relaxed), 1_001);
        assert_eq!(result.events, 1_001);
        assert_eq!(result.bytes, 10_010);
        assert_eq!(result.latency.count, 1_001);
        assert_eq!(target.window_max.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn a_fixed_rate_run_is_paced() {
        let target = echo();
        let spec = BenchSpec {
            connections: 2,
            window: 4,
            event_size: 10,
            stop: Stop::Count(200),
            rate: Some(10_000),
        };
        let result = run_produce(&target, &spec).expect("echo never fails");
        assert_eq!(result.events, 200);
        // 100 sends per connection, 200 us apart: the last is due 19.8 ms after the start.
        assert!(
            result.elapsed >= Duration::from_micros(19_800),
            "{:?}",
            result.elapsed
        );
    }

    #[test]
    fn a_timed_run_stops_after_its_duration() {
        let target = echo();
        let spec = BenchSpec {
            connections: 1,
            window: 1,
            event_size: 10,
            stop: Stop::Duration(Duration::from_millis(20)),
            rate: Some(1_000),
        };
        let result = run_produce(&target, &spec).expect("echo never fails");
        // 1 ms apart for 20 ms: sends at 0, 1, .. 19 ms, perhaps one at 20 ms; fewer if this
        // thread was descheduled past the deadline, but never more.
        assert!((1..=21).contains(&result.events), "{}", result.events);
        assert!(result.elapsed >= Duration::from_millis(19));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let spec = BenchSpec {
            connections: 0,
            window: 1,
            event_size: 10,
            stop: Stop::Count(1),
            rate: None,
        };
        assert!(run_produce(&echo(), &spec).is_err());
        let spec = BenchSpec {
            connections: 1,
            rate: Some(0),
            ..spec
        };
        assert!(spec.validate().is_err());
    }

    /// Acknowledges at once and hands every payload to the tail through a channel.
    struct Relay {
        sender: std::sync::Mutex<std::sync::mpsc::Sender<Vec<u8>>>,
        receiver: std::sync::Mutex<Option<std::sync::mpsc::Receiver<Vec<u8>>>>,
    }

    struct RelayConnection(std::sync::mpsc::Sender<Vec<u8>>);

    struct RelayTail(std::sync::mpsc::Receiver<Vec<u8>>);

    impl Target for Relay {
        fn name(&self) -> String {
            "relay".to_string()
        }
        fn connect(&self) -> io::Result<Box<dyn Connection>> {
            let sender = self.sender.lock().expect("not poisoned").clone();
            Ok(Box::new(RelayConnection(sender)))
        }
    }

    impl Connection for RelayConnection {
        fn send(&mut self, payload: &[u8]) -> io::Result<()> {
            self.0.send(payload.to_vec()).map_err(io::Error::other)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn recv_ack(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TailTarget for Relay {
        fn tail(&self) -> io::Result<Box<dyn Tail>> {
            let receiver = self.receiver.lock().expect("not poisoned").take();
            let receiver = receiver.ok_or_else(|| io::Error::other("one tail only"))?;
            Ok(Box::new(RelayTail(receiver)))
        }
    }

    impl Tail for RelayTail {
        fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
            match self.0.recv_timeout(Duration::from_millis(50)) {
                Ok(payload) => {
                    on_event(&payload);
                    Ok(1)
                }
                Err(_) => Ok(0),
            }
        }
    }

    fn relay() -> Relay {
        let (sender, receiver) = std::sync::mpsc::channel();
        Relay {
            sender: std::sync::Mutex::new(sender),
            receiver: std::sync::Mutex::new(Some(receiver)),
        }
    }

    #[test]
    fn end_to_end_latency_is_measured_for_every_event() {
        let target = relay();
        let spec = BenchSpec {
            connections: 2,
            window: 4,
            event_size: 16,
            stop: Stop::Count(500),
            rate: Some(50_000),
        };
        let result = run_end_to_end(&target, &target, &spec).expect("the relay never fails");
        assert_eq!(result.events, 500);
        let e2e = result.end_to_end.expect("measured");
        assert_eq!(e2e.count, 500);
        // A stamp that was not decoded would give 0 (saturated) or an absurd latency.
        assert!(e2e.min > 0, "{e2e:?}");
        assert!(e2e.max < 5_000_000_000, "{e2e:?}");
        assert!(result.to_json().contains("\"e2e_p99_us\":"));
    }

    #[test]
    fn end_to_end_needs_room_for_the_stamp() {
        let target = relay();
        let spec = BenchSpec {
            connections: 1,
            window: 1,
            event_size: 7,
            stop: Stop::Count(1),
            rate: None,
        };
        let error = run_end_to_end(&target, &target, &spec).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    struct Batches(Vec<u64>);

    impl Reader for Batches {
        fn read_batch(&mut self) -> io::Result<u64> {
            Ok(self.0.pop().unwrap_or(0))
        }
    }

    struct Stored;

    impl ReadTarget for Stored {
        fn name(&self) -> String {
            "stored".to_string()
        }
        fn open_reader(&self) -> io::Result<Box<dyn Reader>> {
            Ok(Box::new(Batches(vec![5, 1_000, 1_000])))
        }
    }

    #[test]
    fn a_read_run_counts_every_batch() {
        let result = run_read(&Stored, 100).expect("canned batches");
        assert_eq!(result.events, 2_005);
        assert_eq!(result.bytes, 200_500);
        assert_eq!(result.latency.count, 3);
    }
}
