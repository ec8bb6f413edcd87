//! Consumer groups (competing consumers with acknowledgements) as a benchmark: several members
//! share one durable group, each event goes to one of them, and each member acknowledges what it
//! received. Used for flo's groups, Redis Streams `XREADGROUP` + `XACK` and a NATS JetStream
//! durable consumer with explicit acks (`ci/bench_groups.sh`).
//!
//! Two runs:
//! - **live** ([`run_group`]): the members join, then producers send (best at a fixed rate);
//!   each payload carries its due time, so for every event the run records the *delivered*
//!   latency (due time to the moment a member received it) and the *acked* latency (due time to
//!   the moment that member's acknowledgement left for the server: processing done).
//! - **drain** ([`run_group_drain`]): `count` events are stored first, then the members join
//!   and work through the backlog; the figure is acknowledged deliveries per second.
//!
//! Either run ends only when the server confirms that nothing is left pending in the group
//! ([`GroupTarget::settled`]), so an ack that never reached the server fails the run.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    nanos_since, produce, BenchResult, BenchSpec, Histogram, Target, STAMP_SIZE,
    TAIL_IDLE_BATCHES_MAX,
};

/// A server with one consumer group for the run (its setup makes the group, or the first
/// join does).
pub trait GroupTarget: Sync {
    /// Opens one member's connection and joins the group; events may follow at once.
    fn join(&self) -> io::Result<Box<dyn Member>>;

    /// After every member finished: waits (a bounded time) until the server reports that the
    /// group holds no delivered-but-unacknowledged event, or fails. The default trusts the
    /// members' own confirmation ([`Member::finish`]).
    fn settled(&self) -> io::Result<()> {
        Ok(())
    }
}

/// One member of the group.
pub trait Member: Send {
    /// Waits (for a bounded time) for deliveries, calls `on_event` with the payload of each one
    /// received, sends the acknowledgement of every one of them (written to the socket, not
    /// necessarily answered yet) and returns how many there were; 0 when none arrived in time.
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64>;

    /// Ends the membership once the server has confirmed (answered after) every ack sent.
    fn finish(&mut self) -> io::Result<()>;
}

/// Live: `members` members join, then the producers of `spec` run; members receive and ack
/// until every produced event was acked. The result's `latency` is the produce
/// acknowledgement latency, `end_to_end` the delivered latency and `acked` the acked latency;
/// `events` counts acknowledged deliveries (a redelivered event counts again) and `elapsed`
/// runs from the first produce to the last ack sent.
pub fn run_group(
    producer: &dyn Target,
    group: &dyn GroupTarget,
    spec: &BenchSpec,
    members: usize,
) -> io::Result<BenchResult> {
    check(spec, members)?;
    if spec.event_size < STAMP_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("group latency needs events of at least {STAMP_SIZE} bytes"),
        ));
    }
    let joined = join(group, members)?;
    let epoch = Instant::now();
    let shared = Shared::new(Some(epoch));
    let (produced, outcomes) = std::thread::scope(|scope| {
        let shared = &shared;
        let handles: Vec<_> = joined
            .into_iter()
            .map(|mut member| scope.spawn(move || work(member.as_mut(), shared)))
            .collect();
        let produced = produce(producer, spec, Some(epoch));
        let acknowledged = produced
            .as_ref()
            .map_or(0, |produced| produced.latency.count());
        shared.expected.store(acknowledged, Ordering::Release);
        let outcomes: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
        (produced, outcomes)
    });
    let produced = produced?;
    let (delivered, acked) = merge(outcomes)?;
    group.settled()?;
    let elapsed = shared.last_ack_after(epoch);
    let mut result = BenchResult::group(
        producer.name(),
        "group",
        spec,
        members,
        shared.acked.load(Ordering::Acquire),
        produced.latency,
        elapsed,
    );
    result.end_to_end = Some(delivered.summary());
    result.acked = Some(acked.summary());
    result.send_late = Some(produced.late.summary());
    Ok(result)
}

/// Drain: the producers of `spec` store their events first (a count-limited spec), then
/// `members` members join and ack the backlog. `events` counts acknowledged deliveries and
/// `elapsed` runs from the first join to the last ack sent; `latency` is the produce
/// acknowledgement latency of the store.
pub fn run_group_drain(
    producer: &dyn Target,
    group: &dyn GroupTarget,
    spec: &BenchSpec,
    members: usize,
) -> io::Result<BenchResult> {
    check(spec, members)?;
    let produce_latency = produce(producer, spec, None)?.latency;
    let start = Instant::now();
    let joined = join(group, members)?;
    let shared = Shared::new(None);
    shared
        .expected
        .store(produce_latency.count(), Ordering::Release);
    let outcomes = std::thread::scope(|scope| {
        let shared = &shared;
        let handles: Vec<_> = joined
            .into_iter()
            .map(|mut member| scope.spawn(move || work(member.as_mut(), shared)))
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|handle| handle.join()).collect();
        outcomes
    });
    merge(outcomes)?;
    group.settled()?;
    let elapsed = shared.last_ack_after(start);
    Ok(BenchResult::group(
        producer.name(),
        "group-drain",
        spec,
        members,
        shared.acked.load(Ordering::Acquire),
        produce_latency,
        elapsed,
    ))
}

fn check(spec: &BenchSpec, members: usize) -> io::Result<()> {
    spec.validate()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    if members == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a group run needs at least one member",
        ));
    }
    Ok(())
}

fn join(group: &dyn GroupTarget, members: usize) -> io::Result<Vec<Box<dyn Member>>> {
    (0..members).map(|_| group.join()).collect()
}

/// What the members share.
struct Shared {
    /// Stamps in payloads count from here; `None`: payloads carry no stamp (drain).
    epoch: Option<Instant>,
    /// Acknowledged deliveries to reach; `u64::MAX` until the producers ended.
    expected: AtomicU64,
    /// Acknowledged deliveries over all members.
    acked: AtomicU64,
    /// When the latest ack batch was sent.
    last_ack: Mutex<Option<Instant>>,
}

impl Shared {
    fn new(epoch: Option<Instant>) -> Shared {
        Shared {
            epoch,
            expected: AtomicU64::new(u64::MAX),
            acked: AtomicU64::new(0),
            last_ack: Mutex::new(None),
        }
    }

    fn done(&self) -> bool {
        self.acked.load(Ordering::Acquire) >= self.expected.load(Ordering::Acquire)
    }

    fn last_ack_after(&self, start: Instant) -> Duration {
        let last = *self
            .last_ack
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        last.map_or(Duration::ZERO, |last| last.saturating_duration_since(start))
    }
}

type Latencies = (Histogram, Histogram);

/// One member's loop: batches until the group's total reached the expected count, then
/// `finish`. Returns its delivered and acked latencies.
fn work(member: &mut dyn Member, shared: &Shared) -> io::Result<Latencies> {
    let mut delivered = Histogram::new();
    let mut acked = Histogram::new();
    let mut stamps: Vec<u64> = Vec::new();
    let mut idle_batches_after_end = 0u32;
    while !shared.done() {
        if shared.expected.load(Ordering::Acquire) != u64::MAX {
            idle_batches_after_end += 1;
            if idle_batches_after_end > TAIL_IDLE_BATCHES_MAX {
                return Err(io::Error::other(format!(
                    "the group acknowledged {} of {} events",
                    shared.acked.load(Ordering::Acquire),
                    shared.expected.load(Ordering::Acquire)
                )));
            }
        }
        stamps.clear();
        let mut on_event = |payload: &[u8]| {
            let Some(epoch) = shared.epoch else { return };
            let received = nanos_since(epoch);
            if let Some(stamp) = payload.get(..STAMP_SIZE) {
                let mut bytes = [0u8; STAMP_SIZE];
                bytes.copy_from_slice(stamp);
                let stamp = u64::from_le_bytes(bytes);
                delivered.record(received.saturating_sub(stamp));
                stamps.push(stamp);
            }
        };
        let count = member.next_batch(&mut on_event)?;
        if count == 0 {
            continue;
        }
        idle_batches_after_end = 0;
        if let Some(epoch) = shared.epoch {
            let now = nanos_since(epoch);
            for &stamp in &stamps {
                acked.record(now.saturating_sub(stamp));
            }
        }
        let now = Instant::now();
        {
            let mut last = shared
                .last_ack
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *last = Some(last.map_or(now, |last| last.max(now)));
        }
        shared.acked.fetch_add(count, Ordering::AcqRel);
    }
    member.finish()?;
    Ok((delivered, acked))
}

fn merge(outcomes: Vec<std::thread::Result<io::Result<Latencies>>>) -> io::Result<Latencies> {
    let mut delivered = Histogram::new();
    let mut acked = Histogram::new();
    for outcome in outcomes {
        let (member_delivered, member_acked) =
            outcome.map_err(|_| io::Error::other("a member thread panicked"))??;
        delivered.merge(&member_delivered);
        acked.merge(&member_acked);
    }
    Ok((delivered, acked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Connection, Stop};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Arc;

    /// A group in memory: produced payloads go to a shared queue; members take from it.
    struct Queue {
        sender: Mutex<Sender<Vec<u8>>>,
        receiver: Arc<Mutex<Receiver<Vec<u8>>>>,
        acks: Arc<AtomicU64>,
        finished: Arc<AtomicU64>,
    }

    struct QueueProducer(Sender<Vec<u8>>);

    struct QueueMember {
        receiver: Arc<Mutex<Receiver<Vec<u8>>>>,
        acks: Arc<AtomicU64>,
        finished: Arc<AtomicU64>,
    }

    impl Target for Queue {
        fn name(&self) -> String {
            "queue".to_string()
        }
        fn connect(&self) -> io::Result<Box<dyn Connection>> {
            let sender = self.sender.lock().expect("not poisoned").clone();
            Ok(Box::new(QueueProducer(sender)))
        }
    }

    impl Connection for QueueProducer {
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

    impl GroupTarget for Queue {
        fn join(&self) -> io::Result<Box<dyn Member>> {
            Ok(Box::new(QueueMember {
                receiver: Arc::clone(&self.receiver),
                acks: Arc::clone(&self.acks),
                finished: Arc::clone(&self.finished),
            }))
        }
    }

    impl Member for QueueMember {
        fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
            let receiver = self.receiver.lock().expect("not poisoned");
            match receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(payload) => {
                    on_event(&payload);
                    self.acks.fetch_add(1, Ordering::Relaxed);
                    Ok(1)
                }
                Err(_) => Ok(0),
            }
        }
        fn finish(&mut self) -> io::Result<()> {
            self.finished.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn queue() -> Queue {
        let (sender, receiver) = channel();
        Queue {
            sender: Mutex::new(sender),
            receiver: Arc::new(Mutex::new(receiver)),
            acks: Arc::new(AtomicU64::new(0)),
            finished: Arc::new(AtomicU64::new(0)),
        }
    }

    fn spec(rate: Option<u64>) -> BenchSpec {
        BenchSpec {
            connections: 2,
            window: 4,
            event_size: 16,
            stop: Stop::Count(600),
            rate,
        }
    }

    #[test]
    fn a_live_run_acks_every_event_once_and_measures_both_latencies() {
        let target = queue();
        let result = run_group(&target, &target, &spec(Some(60_000)), 3).expect("in memory");
        assert_eq!(result.events, 600);
        assert_eq!(target.acks.load(Ordering::Relaxed), 600);
        assert_eq!(target.finished.load(Ordering::Relaxed), 3);
        assert_eq!(result.kind, "group");
        assert_eq!(result.members, 3);
        // 300 sends per connection, 33 us apart: the last is due 9.97 ms after the start.
        assert!(
            result.elapsed >= Duration::from_micros(9_900),
            "{:?}",
            result.elapsed
        );
        let delivered = result.end_to_end.expect("measured");
        let acked = result.acked.expect("measured");
        assert_eq!((delivered.count, acked.count), (600, 600));
        assert!(
            delivered.min > 0 && acked.min >= delivered.min,
            "{delivered:?} {acked:?}"
        );
        assert!(acked.max < 5_000_000_000, "{acked:?}");
        let json = result.to_json();
        assert!(json.contains("\"members\":3"), "{json}");
        assert!(json.contains("\"acked_p999_us\":"), "{json}");
    }

    #[test]
    fn a_drain_run_counts_the_backlog() {
        let target = queue();
        let result = run_group_drain(&target, &target, &spec(None), 2).expect("in memory");
        assert_eq!(result.events, 600);
        assert_eq!(result.kind, "group-drain");
        assert!(result.acked.is_none());
        assert!(result.elapsed > Duration::ZERO);
        assert_eq!(target.finished.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_group_that_loses_events_fails_instead_of_hanging() {
        /// Acknowledges only every other event.
        struct Lossy(QueueMember);
        impl Member for Lossy {
            fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
                let count = self.0.next_batch(on_event)?;
                Ok(count * u64::from(self.0.acks.load(Ordering::Relaxed).is_multiple_of(2)))
            }
            fn finish(&mut self) -> io::Result<()> {
                self.0.finish()
            }
        }
        struct LossyQueue(Queue);
        impl GroupTarget for LossyQueue {
            fn join(&self) -> io::Result<Box<dyn Member>> {
                Ok(Box::new(Lossy(QueueMember {
                    receiver: Arc::clone(&self.0.receiver),
                    acks: Arc::clone(&self.0.acks),
                    finished: Arc::clone(&self.0.finished),
                })))
            }
        }
        let target = LossyQueue(queue());
        let error = run_group_drain(&target.0, &target, &spec(None), 1).unwrap_err();
        assert!(error.to_string().contains("of 600 events"), "{error}");
    }
}
