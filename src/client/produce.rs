//! Producing: one event and wait, a batch, or a window of many in flight.

use std::collections::{HashMap, VecDeque};

use crate::event::{Event, EventId};
use crate::protocol::{
    Ack, ClientFrame, ErrorScope, Expectation, NewEvent, Produce, ProduceBatch, ProduceIf,
    ServerFrame,
};

use super::{server_error, unexpected, Client, ClientError, ClientHandle};

impl Client {
    /// From now on, each produce of this connection is acknowledged only once `replicas`
    /// cluster members (the server itself counts) hold its events durably; 0 means the
    /// server's `--min-replicas`, which is also a floor. A produce that does not get them
    /// within the server's replication time-out fails with `ErrorCode::ReplicationTimeout`
    /// (its message begins "reached K of N replicas"); its events stay appended and keep
    /// replicating. The server sends no reply to this setting (protocol.md, SetReplicas).
    pub fn set_replicas(&mut self, replicas: u8) -> Result<(), ClientError> {
        self.connection
            .send(&ClientFrame::SetReplicas { replicas })?;
        Ok(())
    }

    /// Appends one event and waits for its acknowledgement.
    pub fn produce(&mut self, namespace: &str, data: &[u8]) -> Result<Ack, ClientError> {
        self.produce_event(new_event(namespace, None, data))
    }

    /// Appends one event that responds to `parent_id` and waits for its acknowledgement.
    pub fn produce_with_parent(
        &mut self,
        namespace: &str,
        parent_id: EventId,
        data: &[u8],
    ) -> Result<Ack, ClientError> {
        self.produce_event(new_event(namespace, Some(parent_id), data))
    }

    /// Appends a response to `event`: its parent id is set to `event.id`.
    pub fn respond(
        &mut self,
        event: &Event,
        namespace: &str,
        data: &[u8],
    ) -> Result<Ack, ClientError> {
        self.produce_with_parent(namespace, event.id, data)
    }

    /// Appends one event and waits for its acknowledgement.
    pub fn produce_event(&mut self, event: NewEvent) -> Result<Ack, ClientError> {
        self.check_event(&event)?;
        let op_id = self.take_op_id();
        self.connection
            .send(&ClientFrame::Produce(Produce { op_id, event }))?;
        self.wait_for_ack(op_id)
    }

    /// Appends all `events` atomically (all or none) and waits for the one acknowledgement;
    /// the events get consecutive ids starting at `first_id`.
    pub fn produce_batch(&mut self, events: &[NewEvent]) -> Result<Ack, ClientError> {
        for event in events {
            self.check_event(event)?;
        }
        let op_id = self.take_op_id();
        let frame = ClientFrame::ProduceBatch(ProduceBatch {
            op_id,
            events: events.to_vec(),
        });
        let bytes = self.connection.encode_checked(&frame)?;
        self.connection.send_bytes(&bytes)?;
        self.wait_for_ack(op_id)
    }

    /// Appends `events` atomically only if the namespace of the first one meets `expect`
    /// (optimistic concurrency, protocol.md section 6): its newest event is the one the
    /// caller last read ([`Expectation::LastIs`]), it has none ([`Expectation::NoEvents`]),
    /// or it has some. If not, nothing is appended and the error is
    /// `ErrorCode::ExpectationFailed`; [`ClientError::actual_last_id`] tells the namespace's
    /// actual newest id, so the caller can reload and try again.
    pub fn produce_if(
        &mut self,
        expect: Expectation,
        events: &[NewEvent],
    ) -> Result<Ack, ClientError> {
        for event in events {
            self.check_event(event)?;
        }
        let op_id = self.take_op_id();
        let frame = ClientFrame::ProduceIf(ProduceIf {
            op_id,
            expect,
            events: events.to_vec(),
        });
        let bytes = self.connection.encode_checked(&frame)?;
        self.connection.send_bytes(&bytes)?;
        self.wait_for_ack(op_id)
    }

    /// From now on the produces of this connection are numbered `next_sequence`,
    /// `next_sequence + 1`, ... for the idempotent producer `producer_id` (0 ends it): a
    /// produce whose number the server already stored is answered with its original ack
    /// instead of being stored again (protocol.md, SetProducer). No reply.
    /// [`IdempotentProducer`](super::IdempotentProducer) does the bookkeeping and the retries.
    pub fn set_producer(
        &mut self,
        producer_id: u64,
        next_sequence: u64,
    ) -> Result<(), ClientError> {
        self.connection.send(&ClientFrame::SetProducer {
            producer_id,
            next_sequence,
        })?;
        Ok(())
    }

    /// A window that keeps up to `window` produces in flight on this connection.
    pub fn producer(&mut self, window: usize) -> Producer<'_> {
        Producer::new(ClientHandle::Borrowed(self), window)
    }

    /// Like [`Client::producer`], but the producer owns the connection, so it can be moved into
    /// a thread or boxed (a load generator keeps one per connection).
    pub fn into_producer(self, window: usize) -> Producer<'static> {
        Producer::new(ClientHandle::Owned(Box::new(self)), window)
    }

    fn wait_for_ack(&mut self, op_id: u64) -> Result<Ack, ClientError> {
        loop {
            match self.receive_completion()? {
                Some((completed, result)) if completed == op_id => return result,
                _ => {}
            }
        }
    }

    /// Receives one frame; returns the op it completes, if any, with its outcome.
    pub(super) fn receive_completion(&mut self) -> Result<Option<Completion>, ClientError> {
        match self.connection.receive()? {
            ServerFrame::Ack(ack) => Ok(Some((ack.op_id, Ok(ack)))),
            ServerFrame::Error(error) => match error.scope {
                ErrorScope::Produce(op_id) => Ok(Some((op_id, Err(server_error(error))))),
                ErrorScope::Connection => Err(server_error(error)),
                ErrorScope::Subscription(_) => Ok(None),
            },
            frame @ (ServerFrame::Welcome(_)
            | ServerFrame::Status(_)
            | ServerFrame::Groups(_)
            | ServerFrame::GroupsDetail(_)
            | ServerFrame::Parked(_)
            | ServerFrame::Namespaces(_)
            | ServerFrame::Trace(_)
            | ServerFrame::Info(_)
            | ServerFrame::Members(_)
            | ServerFrame::Purged(_)
            | ServerFrame::Purges(_)) => Err(unexpected(&frame, "an Ack")),
            ServerFrame::Event { .. }
            | ServerFrame::CaughtUp { .. }
            | ServerFrame::Skipped { .. }
            | ServerFrame::End { .. }
            | ServerFrame::Pong { .. } => Ok(None),
        }
    }
}

/// An op id and the outcome the server gave it.
pub(super) type Completion = (u64, Result<Ack, ClientError>);

fn new_event(namespace: &str, parent_id: Option<EventId>, data: &[u8]) -> NewEvent {
    NewEvent {
        namespace: namespace.to_string(),
        parent_id,
        data: data.to_vec(),
    }
}

/// Pipelined producing: [`Producer::send`] does not wait for the acknowledgement, so up to
/// `window` produces are in flight at once; [`Producer::recv_ack`] yields the outcomes in the
/// order the events were sent, even when the server answers some of them out of order (an
/// error can overtake acks that wait for the disk).
///
/// [`Producer::send`] writes each produce at once. To send several with one write (one system
/// call for a whole window, as a load generator wants), [`Producer::queue`] them and then
/// [`Producer::flush`]; `recv_ack` flushes what is still queued before it waits.
///
/// ```no_run
/// # let mut client = flo::client::Client::connect("localhost:3000", Default::default())?;
/// let mut producer = client.producer(256);
/// for line in ["a", "b", "c"] {
///     if producer.is_full() {
///         let ack = producer.recv_ack()?;
///     }
///     producer.send(flo::client::NewEvent {
///         namespace: "/lines".into(),
///         parent_id: None,
///         data: line.into(),
///     })?;
/// }
/// while let Some(ack) = producer.recv_ack()? {
///     println!("{}", ack.first_id);
/// }
/// # Ok::<(), flo::client::ClientError>(())
/// ```
pub struct Producer<'a> {
    client: ClientHandle<'a>,
    window: usize,
    /// Op ids sent and not yet handed out by `recv_ack`, oldest first.
    in_flight: VecDeque<u64>,
    /// Outcomes that arrived before the ops ahead of them; at most `window` entries.
    completed: HashMap<u64, Result<Ack, ClientError>>,
}

impl<'a> Producer<'a> {
    fn new(client: ClientHandle<'a>, window: usize) -> Producer<'a> {
        Producer {
            client,
            window: window.max(1),
            in_flight: VecDeque::new(),
            completed: HashMap::new(),
        }
    }

    /// The most produces this window keeps in flight.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Produces sent whose outcome `recv_ack` has not yet returned.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// True when `send` would go over the window: call `recv_ack` first.
    pub fn is_full(&self) -> bool {
        self.in_flight.len() >= self.window
    }

    /// Sends one event without waiting; returns its op id. Refused with
    /// [`ClientError::WindowFull`] when the window is full: call `recv_ack` first.
    pub fn send(&mut self, event: NewEvent) -> Result<u64, ClientError> {
        let op_id = self.queue(event)?;
        self.flush()?;
        Ok(op_id)
    }

    /// Like [`Producer::send`], but only encodes the produce behind those already queued;
    /// nothing is written until [`Producer::flush`] (or `send`, or `recv_ack`). It counts in
    /// the window from now on. Returns its op id.
    pub fn queue(&mut self, event: NewEvent) -> Result<u64, ClientError> {
        if self.is_full() {
            return Err(ClientError::WindowFull {
                window: self.window,
            });
        }
        self.client.check_event(&event)?;
        let op_id = self.client.take_op_id();
        self.client
            .connection
            .queue(&ClientFrame::Produce(Produce { op_id, event }))?;
        self.in_flight.push_back(op_id);
        Ok(op_id)
    }

    /// Writes every queued produce with one write.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.client.connection.flush()
    }

    /// True when bytes from the server are already received but not yet handed out, so the
    /// next `recv_ack` will probably not wait for the network. A caller that refills the window
    /// takes such acknowledgements first and then writes once.
    pub fn has_buffered(&self) -> bool {
        self.client.connection.has_received_bytes()
    }

    /// Waits at most `wait` for an acknowledgement (queued produces are written first); true
    /// when bytes of one are already received (`recv_ack` will probably not wait) or nothing
    /// is in flight, false when none came in time. A caller that sends on a schedule waits
    /// here until its next send is due, instead of in `recv_ack`.
    pub fn wait_for_ack(&mut self, wait: std::time::Duration) -> Result<bool, ClientError> {
        if self.client.connection.has_queued() {
            self.flush()?;
        }
        let ready = match self.in_flight.front() {
            Some(oldest) => self.completed.contains_key(oldest) || self.has_buffered(),
            None => true,
        };
        if ready {
            return Ok(true);
        }
        self.client.connection.poll_bytes(wait)
    }

    /// The outcome of the oldest produce in flight, waiting for it if needed; `Ok(None)` when
    /// nothing is in flight. An `Err` that is not [`ClientError::is_fatal`] is that one
    /// produce's refusal (its op id is in the error's scope); the window stays usable.
    pub fn recv_ack(&mut self) -> Result<Option<Ack>, ClientError> {
        let Some(&oldest) = self.in_flight.front() else {
            return Ok(None);
        };
        if self.client.connection.has_queued() {
            self.flush()?;
        }
        loop {
            if let Some(outcome) = self.completed.remove(&oldest) {
                self.in_flight.pop_front();
                return outcome.map(Some);
            }
            if let Some((op_id, outcome)) = self.client.receive_completion()? {
                // Only ops of this window are kept; stale answers are dropped.
                if self.in_flight.contains(&op_id) {
                    self.completed.insert(op_id, outcome);
                }
            }
        }
    }
}
