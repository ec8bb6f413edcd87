//! `flo-client bench`: argument checks, the progress line and the output, and flo as a target
//! of the load runner of the `flo-bench` crate, driven through the client library (`flo::client`).
//!
//! - Produce: one owned [`Producer`] per connection; the runner queues a window of produces and
//!   flushes them with one write (`Producer::queue`, `Producer::flush`), like the Redis and NATS
//!   drivers, so that the client's system calls do not dominate what is measured. The
//!   acknowledgement is the `Ack` of each produce, which flo sends only once the event is durable
//!   under the server's `--fsync` policy.
//! - Catch-up read: one subscription on the run's namespace, starting just after a marker event
//!   produced before the stored events, not tailing, with a large credit window, read until its
//!   end.
//! - End-to-end: a tailing subscription at the end of the log on the run's namespace, opened
//!   (and caught up) before the first produce.
//! - Group (`--members N`): a fresh group on the run's namespace, starting after a marker
//!   event, joined by N members on connections of their own; each member acks every event it
//!   receives (one GroupAck per batch received together) and leaves at the end, waiting for
//!   the server's End (which follows the handling of its acks); then the group must report
//!   nothing pending, and is deleted. See `flo_bench::group`.
//!
//! Every run uses a fresh namespace, so repeats on one server never see each other's events.
//! With `--namespaces N` (produce runs only) the events are spread round robin over N
//! namespaces under it, `<run namespace>/<i mod N>`, one shared counter over all connections.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::time::{SystemTime, UNIX_EPOCH};

use flo::client::{
    Client, ClientError, ClientOptions, ClientTls, Delivery, EndReason, GroupConsumer,
    GroupDelivery, NewEvent, Producer, Subscription,
};
use flo::event::{EventId, Order, StartPosition};
use flo_bench::{
    run_end_to_end_with_consumers, run_group, run_group_drain, run_produce, run_read, BenchResult,
    BenchSpec, Connection, GroupTarget, Member, ReadTarget, Reader, Stop, Tail, TailTarget, Target,
};

use super::BenchArgs;

/// Events a run produces when neither --count nor --duration is given.
const COUNT_DEFAULT: u64 = 100_000;
/// The most tailing consumers (or group members) one run opens (one thread and connection
/// each).
const CONSUMERS_MAX: usize = 64;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

fn spec(args: &BenchArgs) -> Result<BenchSpec, String> {
    let stop = match (args.count, args.duration) {
        (_, Some(seconds)) => match Duration::try_from_secs_f64(seconds) {
            Ok(duration) if !duration.is_zero() => Stop::Duration(duration),
            _ => {
                return Err(format!(
                    "invalid --duration {seconds}: expected a positive number of seconds"
                ))
            }
        },
        (Some(count), None) => Stop::Count(count),
        (None, None) => Stop::Count(COUNT_DEFAULT),
    };
    let spec = BenchSpec {
        connections: args.connections,
        window: args.window,
        event_size: args.size,
        stop,
        rate: args.rate,
    };
    spec.validate()?;
    if args.members > CONSUMERS_MAX {
        return Err(format!(
            "--members {}: at most {CONSUMERS_MAX}",
            args.members
        ));
    }
    if args.members > 0 && !args.drain && args.size < 8 {
        return Err(format!(
            "--size {}: a live group run needs events of at least 8 bytes (they carry their \
             send time)",
            args.size
        ));
    }
    if args.consumers > CONSUMERS_MAX {
        return Err(format!(
            "--consumers {}: at most {CONSUMERS_MAX}",
            args.consumers
        ));
    }
    Ok(spec)
}

pub(super) fn run(
    default_addr: &str,
    base_options: &ClientOptions,
    args: &BenchArgs,
) -> Result<(), String> {
    let spec = spec(args)?;
    let addr = args
        .addr
        .clone()
        .unwrap_or_else(|| default_addr.to_string());
    let mut target = FloTarget::new(addr, fresh_namespace(), args.label.clone());
    target.tls = base_options.tls.clone();
    target.replicas = args.replicas;
    target.namespaces = args.namespaces;
    target.group = args.group;
    target.order = match args.order {
        super::ConsumeOrder::Arrival => Order::Arrival,
        super::ConsumeOrder::Id => Order::Id,
    };
    let progress = Progress::start(&target.acknowledged);
    let results = measure(&mut target, args, &spec);
    progress.stop();
    let results = results?;
    let mut out = io::stdout().lock();
    let written = if args.json || args.format == super::Format::Json {
        // One object per run; with --read, the read is the run (the store only prepares
        // it), as for the peers in ci/bench.sh.
        results
            .last()
            .map(|result| writeln!(out, "{}", result.to_json()))
            .unwrap_or(Ok(()))
    } else {
        results
            .iter()
            .try_for_each(|result| write!(out, "{}", result.to_text()))
    };
    written
        .and_then(|()| out.flush())
        .map_err(|error| super::output_error(&error))
}

fn measure(
    target: &mut FloTarget,
    args: &BenchArgs,
    spec: &BenchSpec,
) -> Result<Vec<BenchResult>, String> {
    let failed = |what: &'static str| move |error: io::Error| format!("bench {what}: {error}");
    if args.members > 0 {
        target.produce_marker().map_err(failed("group"))?;
        let group = FloGroup {
            target,
            name: format!("bench{}", target.namespace.replace('/', "-")),
            in_flight: args.in_flight.max(1),
        };
        let result = if args.drain {
            run_group_drain(target, &group, spec, args.members)
        } else {
            run_group(target, &group, spec, args.members)
        };
        Ok(vec![result.map_err(failed("group"))?])
    } else if args.read {
        target.produce_marker().map_err(failed("store"))?;
        let stored = run_produce(target, spec).map_err(failed("store"))?;
        let read = run_read(target, args.size).map_err(failed("read"))?;
        if read.events != stored.events {
            return Err(format!(
                "bench read: {} events stored but {} read back",
                stored.events, read.events
            ));
        }
        Ok(vec![stored, read])
    } else if args.consumers > 0 {
        let result = run_end_to_end_with_consumers(target, target, spec, args.consumers)
            .map_err(failed("end-to-end"))?;
        Ok(vec![result])
    } else {
        Ok(vec![run_produce(target, spec).map_err(failed("produce"))?])
    }
}

/// A line on standard error, redrawn while the run goes on, only when it is a terminal.
struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(acknowledged: &Arc<AtomicU64>) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        if !io::stderr().is_terminal() {
            return Progress { done, thread: None };
        }
        let acknowledged = Arc::clone(acknowledged);
        let drawing_done = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let done = drawing_done;
            let start = Instant::now();
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(PROGRESS_INTERVAL);
                let events = acknowledged.load(Ordering::Relaxed);
                let seconds = start.elapsed().as_secs_f64();
                eprint!(
                    "\r{events} events acknowledged in {seconds:.1} s ({:.0} events/s)  ",
                    events as f64 / seconds.max(1e-9)
                );
            }
            eprint!("\r\x1b[K");
        });
        Progress {
            done,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server that stops answering fails the run instead of hanging it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tailing consumer waits for new events before `next_batch` returns 0.
const TAIL_WAIT: Duration = Duration::from_millis(500);
/// Credit window of the catch-up reader and of the tailing consumer: large enough that the
/// server never waits for credit while the client keeps up; the client grants more as it goes.
const READ_CREDIT: u32 = 1 << 20;
/// Unacknowledged events of the `--read --group` reader: the server's default cap.
const GROUP_IN_FLIGHT: u32 = 100_000;
/// The producer's own window: the runner keeps the run's window (`--window`) itself.
const PRODUCER_WINDOW: usize = usize::MAX;

/// A flo server at `addr`, producing to (and reading) one namespace.
struct FloTarget {
    /// `host:port`; resolved on every connect.
    addr: String,
    /// The namespace this run produces to, e.g. `/bench/1234_5678`.
    namespace: String,
    /// With `--tls`, every connection speaks TLS.
    tls: Option<ClientTls>,
    /// Shown in reports, e.g. `flo-always`.
    label: String,
    /// Events acknowledged so far over all connections, for a progress line.
    acknowledged: Arc<AtomicU64>,
    /// The event the catch-up reader starts after; set by [`FloTarget::produce_marker`].
    marker: Option<EventId>,
    /// Sent as SetReplicas on every connection when not 0 (`--replicas`).
    replicas: u8,
    /// `--read --group`: read back through a consumer group, acknowledging every event.
    group: bool,
    /// `--order`: the order the tailing consumers (`--consumers`) subscribe in.
    order: Order,
    /// `--namespaces`: produced events go round robin to this many namespaces under
    /// `namespace` (1: to `namespace` itself).
    namespaces: u64,
    /// Events handed to producers so far over all connections: the round robin's position.
    produced: Arc<AtomicU64>,
}

impl FloTarget {
    fn new(addr: String, namespace: String, label: String) -> FloTarget {
        FloTarget {
            addr,
            namespace,
            tls: None,
            label,
            acknowledged: Arc::new(AtomicU64::new(0)),
            marker: None,
            replicas: 0,
            group: false,
            order: Order::Arrival,
            namespaces: 1,
            produced: Arc::new(AtomicU64::new(0)),
        }
    }

    fn connect(&self) -> io::Result<Client> {
        let options = ClientOptions {
            client_name: format!("flo-client bench {}", env!("CARGO_PKG_VERSION")),
            io_timeout: SOCKET_TIMEOUT,
            tls: self.tls.clone(),
            ..ClientOptions::default()
        };
        let mut client = Client::connect(&self.addr, options).map_err(io_error)?;
        if self.replicas > 0 {
            client.set_replicas(self.replicas).map_err(io_error)?;
        }
        Ok(client)
    }

    /// Produces one event to the namespace and remembers its id: the catch-up reader starts
    /// just after it, so it reads what is produced after this call and nothing before.
    fn produce_marker(&mut self) -> io::Result<EventId> {
        let ack = self
            .connect()?
            .produce(&self.namespace, b"marker")
            .map_err(io_error)?;
        self.marker = Some(ack.first_id);
        Ok(ack.first_id)
    }

    /// A subscription to the run's namespace on a connection of its own.
    fn subscribe(&self, start: StartPosition, tail: bool) -> io::Result<Subscription<'static>> {
        self.connect()?
            .into_consume()
            .glob(&self.namespace)
            .start(start)
            .tail(tail)
            .order(self.order)
            .credit(READ_CREDIT)
            .subscribe()
            .map_err(io_error)
    }
}

/// A fresh namespace for one run: `/bench/<pid>_<nanoseconds since the epoch>`.
fn fresh_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    format!("/bench/{}_{nanos}", std::process::id())
}

/// The runner speaks `io::Error`; the client's message says what failed.
fn io_error(error: ClientError) -> io::Error {
    match error {
        ClientError::Io(error) => error,
        ClientError::Timeout => io::Error::new(io::ErrorKind::TimedOut, error.to_string()),
        ClientError::TooLarge { .. } | ClientError::InvalidNamespace { .. } => {
            io::Error::new(io::ErrorKind::InvalidInput, error.to_string())
        }
        other => io::Error::other(other.to_string()),
    }
}

impl Target for FloTarget {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn connect(&self) -> io::Result<Box<dyn Connection>> {
        Ok(Box::new(FloProducer {
            producer: FloTarget::connect(self)?.into_producer(PRODUCER_WINDOW),
            namespace: self.namespace.clone(),
            namespaces: self.namespaces,
            produced: Arc::clone(&self.produced),
            acknowledged: Arc::clone(&self.acknowledged),
        }))
    }
}

/// Produces with pipelined `Produce` frames, a window's worth per write.
struct FloProducer {
    producer: Producer<'static>,
    namespace: String,
    /// As [`FloTarget::namespaces`], with the target's shared round-robin counter.
    namespaces: u64,
    produced: Arc<AtomicU64>,
    acknowledged: Arc<AtomicU64>,
}

impl FloProducer {
    fn next_namespace(&self) -> String {
        next_namespace(&self.namespace, self.namespaces, &self.produced)
    }
}

/// The namespace of the next produced event: `namespace` itself, or with `namespaces` N > 1
/// the next of `<namespace>/0` .. `<namespace>/<N - 1>` in turn (`produced` counts over all
/// connections).
fn next_namespace(namespace: &str, namespaces: u64, produced: &AtomicU64) -> String {
    if namespaces <= 1 {
        return namespace.to_string();
    }
    let index = produced.fetch_add(1, Ordering::Relaxed) % namespaces;
    format!("{namespace}/{index}")
}

impl Connection for FloProducer {
    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let event = NewEvent {
            namespace: self.next_namespace(),
            parent_id: None,
            data: payload.to_vec(),
        };
        self.producer.queue(event).map(drop).map_err(io_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.producer.flush().map_err(io_error)
    }

    fn ack_buffered(&self) -> bool {
        self.producer.has_buffered()
    }

    fn wait_for_ack(&mut self, timeout: Duration) -> io::Result<bool> {
        self.producer.wait_for_ack(timeout).map_err(io_error)
    }

    fn recv_ack(&mut self) -> io::Result<()> {
        match self.producer.recv_ack().map_err(io_error)? {
            Some(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            None => Err(io::Error::other(
                "an acknowledgement awaited with none in flight",
            )),
        }
    }
}

impl ReadTarget for FloTarget {
    fn name(&self) -> String {
        if self.group {
            format!("{}-group", self.label)
        } else {
            format!("{}-read", self.label)
        }
    }

    /// Subscribes after the marker; the time the server takes to find that position counts in
    /// the first batch.
    fn open_reader(&self) -> io::Result<Box<dyn Reader>> {
        let marker = self.marker.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "produce_marker must run before the events to read are produced",
            )
        })?;
        if self.group {
            // A fresh group per run (the namespace is fresh); acks go out in batches of
            // ACK_BATCH_DEFAULT, pipelined, and the in-flight cap matches the credit.
            let consumer = self
                .connect()?
                .into_join_group(&format!("bench{}", self.namespace.replace('/', "-")))
                .glob(&self.namespace)
                .start(StartPosition::AfterId(marker))
                .credit(READ_CREDIT)
                .max_in_flight(GROUP_IN_FLIGHT)
                .join()
                .map_err(io_error)?;
            return Ok(Box::new(FloGroupReader {
                consumer,
                ended: false,
            }));
        }
        Ok(Box::new(FloReader {
            subscription: self.subscribe(StartPosition::AfterId(marker), false)?,
            ended: false,
        }))
    }
}

/// Reads a group until CaughtUp, acknowledging every event.
struct FloGroupReader {
    consumer: GroupConsumer<'static>,
    ended: bool,
}

impl Reader for FloGroupReader {
    /// One batch: the next delivery, waiting for it, and every one already received; each
    /// event is acknowledged (queued acks go out before the consumer waits again).
    fn read_batch(&mut self) -> io::Result<u64> {
        let mut count = 0u64;
        while !self.ended {
            if count > 0 && !self.consumer.has_buffered().map_err(io_error)? {
                break;
            }
            match self.consumer.next_delivery().map_err(io_error)? {
                Some(GroupDelivery::Event(event)) => {
                    self.consumer.ack(event.id).map_err(io_error)?;
                    count += 1;
                }
                Some(GroupDelivery::CaughtUp) => {
                    // Leaving waits for the server's End, which comes after it handled (and
                    // journaled, synced in the same turn) every ack sent before: the run
                    // counts acknowledged events, as the Redis driver counts XACK replies.
                    self.consumer.leave_and_wait().map_err(io_error)?;
                    self.ended = true;
                }
                Some(GroupDelivery::End(_)) | None => self.ended = true,
            }
        }
        Ok(count)
    }
}

/// How long a group member waits for deliveries before `next_batch` returns 0.
const MEMBER_WAIT: Duration = Duration::from_millis(100);

/// The run's group: members join it after the target's marker (the first join creates it).
struct FloGroup<'a> {
    target: &'a FloTarget,
    name: String,
    /// Each member's credit and max_in_flight.
    in_flight: u32,
}

impl GroupTarget for FloGroup<'_> {
    fn join(&self) -> io::Result<Box<dyn Member>> {
        let marker = self.target.marker.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no marker event was produced")
        })?;
        let consumer = self
            .target
            .connect()?
            .into_join_group(&self.name)
            .glob(&self.target.namespace)
            .start(StartPosition::AfterId(marker))
            .credit(self.in_flight)
            .max_in_flight(self.in_flight)
            .ack_batch(usize::from(u16::MAX))
            .join()
            .map_err(io_error)?;
        Ok(Box::new(FloMember(consumer)))
    }

    /// The group must have nothing pending; then it is deleted (its members have left).
    fn settled(&self) -> io::Result<()> {
        let mut admin = self.target.connect()?;
        let info = admin.group_info(&self.name).map_err(io_error)?;
        if info.pending != 0 {
            return Err(io::Error::other(format!(
                "group {} still has {} pending events",
                self.name, info.pending
            )));
        }
        admin.delete_group(&self.name).map_err(io_error)
    }
}

/// A group member: acks each event it receives, one GroupAck per batch.
struct FloMember(GroupConsumer<'static>);

impl Member for FloMember {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let consumer = &mut self.0;
        if !consumer.wait_for_delivery(MEMBER_WAIT).map_err(io_error)? {
            return Ok(0);
        }
        let mut count = 0u64;
        loop {
            match consumer.next_delivery().map_err(io_error)? {
                Some(GroupDelivery::Event(event)) => {
                    on_event(&event.data);
                    consumer.ack(event.id).map_err(io_error)?;
                    count += 1;
                }
                Some(GroupDelivery::CaughtUp) => {}
                Some(GroupDelivery::End(_)) | None => {
                    return Err(io::Error::other("the group membership ended"))
                }
            }
            if !consumer.has_buffered().map_err(io_error)? {
                break;
            }
        }
        consumer.flush().map_err(io_error)?;
        Ok(count)
    }

    /// Leaves and waits for the End, which the server sends after it handled (and, with
    /// the journal synced in the same turn, made durable) every ack sent before.
    fn finish(&mut self) -> io::Result<()> {
        self.0.leave_and_wait().map_err(io_error)
    }
}

/// Reads one subscription until its end.
struct FloReader {
    subscription: Subscription<'static>,
    ended: bool,
}

impl Reader for FloReader {
    /// One batch: the next event, waiting for it, and every delivery already received.
    fn read_batch(&mut self) -> io::Result<u64> {
        let mut count = 0u64;
        while !self.ended {
            if count > 0 && !self.subscription.has_buffered().map_err(io_error)? {
                break;
            }
            match self.subscription.next_delivery().map_err(io_error)? {
                Some(Delivery::Event(_)) => count += 1,
                Some(Delivery::CaughtUp | Delivery::Skipped(_)) => {}
                Some(Delivery::End(EndReason::Unsubscribed)) => {
                    return Err(io::Error::other("the subscription was ended"))
                }
                Some(Delivery::End(_)) | None => self.ended = true,
            }
        }
        Ok(count)
    }
}

impl TailTarget for FloTarget {
    /// Subscribes at the end of the log and waits for the server's CaughtUp, so that every
    /// event produced after this returns is delivered.
    fn tail(&self) -> io::Result<Box<dyn Tail>> {
        let mut subscription = self.subscribe(StartPosition::End, true)?;
        loop {
            match subscription.next_delivery().map_err(io_error)? {
                Some(Delivery::CaughtUp) => break,
                Some(Delivery::Event(_) | Delivery::Skipped(_)) => {}
                Some(Delivery::End(_)) | None => {
                    return Err(io::Error::other("the tailing subscription ended"))
                }
            }
        }
        Ok(Box::new(FloTail(subscription)))
    }
}

/// A tailing consumer.
struct FloTail(Subscription<'static>);

impl Tail for FloTail {
    fn next_batch(&mut self, on_event: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        if !self.0.wait_for_delivery(TAIL_WAIT).map_err(io_error)? {
            return Ok(0);
        }
        let mut count = 0u64;
        loop {
            match self.0.next_delivery().map_err(io_error)? {
                Some(Delivery::Event(event)) => {
                    on_event(&event.data);
                    count += 1;
                }
                Some(Delivery::CaughtUp | Delivery::Skipped(_)) => {}
                Some(Delivery::End(_)) | None => {
                    return Err(io::Error::other("the tailing subscription ended"))
                }
            }
            if !self.0.has_buffered().map_err(io_error)? {
                return Ok(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_namespaces_are_valid_and_distinct() {
        let first = fresh_namespace();
        let second = fresh_namespace();
        assert_ne!(first, second);
        assert!(flo::event::validate_namespace(&first, 256).is_ok());
    }

    #[test]
    fn events_go_round_robin_over_the_namespaces() {
        let produced = AtomicU64::new(0);
        let names: Vec<String> = (0..5)
            .map(|_| next_namespace("/bench/1_2", 3, &produced))
            .collect();
        assert_eq!(
            names,
            [
                "/bench/1_2/0",
                "/bench/1_2/1",
                "/bench/1_2/2",
                "/bench/1_2/0",
                "/bench/1_2/1"
            ]
        );
        assert_eq!(next_namespace("/bench/1_2", 1, &produced), "/bench/1_2");
        assert!(flo::event::validate_namespace(
            &format!("{}/{}", fresh_namespace(), u64::MAX),
            256
        )
        .is_ok());
    }
}
