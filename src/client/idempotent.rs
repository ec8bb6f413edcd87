//! A producer that may lose its connection without storing an event twice: it numbers its
//! produces for a producer id (SetProducer, protocol.md section 6), keeps every event until its
//! ack arrives, and after a dropped connection or a server restart connects again and resends
//! the unacknowledged ones with their numbers. The server answers a number it already stored
//! with the original ack (the same ids), so each event is stored once.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::{Ack, ClientFrame, ErrorCode, NewEvent, Produce};

use super::{Client, ClientError, ClientOptions};

/// An event sent and not yet acknowledged.
struct Pending {
    sequence: u64,
    /// Its op id on the current connection (a resend gets a new one).
    op_id: u64,
    event: NewEvent,
}

/// Pipelined, idempotent producing with transparent reconnects.
///
/// ```no_run
/// use flo::client::{ClientOptions, IdempotentProducer, NewEvent};
/// let id = IdempotentProducer::random_id();
/// let mut producer = IdempotentProducer::connect("localhost:3000", ClientOptions::default(), id, 64)?;
/// let ack = producer.produce(NewEvent { namespace: "/orders".into(), parent_id: None, data: b"1".to_vec() })?;
/// println!("stored once as {}", ack.first_id);
/// # Ok::<(), flo::client::ClientError>(())
/// ```
///
/// The server keeps the acks of the last produces of each producer (`streams.producer_window`,
/// 256 by default), so the window here must not be larger. The guarantee holds against one server:
/// a retry sent to another cluster member is stored again (protocol.md).
pub struct IdempotentProducer {
    addr: String,
    options: ClientOptions,
    client: Option<Client>,
    /// SetProducer went out on the current connection (it is sent with the first produce).
    announced: bool,
    producer_id: u64,
    next_sequence: u64,
    window: usize,
    unacked: VecDeque<Pending>,
    reconnect_attempts_max: u32,
    reconnect_delay: Duration,
    reconnects: u64,
    /// SetReplicas for every connection (0: the server's default).
    replicas: u8,
    /// The server refused a produce with `ProducerFenced`: a newer connection speaks for this
    /// producer id. Kept to refuse every later send and reconnect, which would announce the
    /// id again and fence the newer one in turn (two producers fencing each other forever).
    fenced: Option<String>,
}

impl IdempotentProducer {
    /// Connects to `addr` as producer `producer_id` (not 0; [`IdempotentProducer::random_id`]
    /// gives a fresh one), with up to `window` produces in flight; numbering starts at 1.
    pub fn connect(
        addr: &str,
        options: ClientOptions,
        producer_id: u64,
        window: usize,
    ) -> Result<IdempotentProducer, ClientError> {
        let client = Client::connect(addr, options.clone())?;
        Ok(IdempotentProducer::with_client(
            client,
            addr,
            options,
            producer_id,
            window,
        ))
    }

    /// Like [`IdempotentProducer::connect`], on a connection already open to `addr`;
    /// `options` are for connecting again.
    pub fn with_client(
        client: Client,
        addr: &str,
        options: ClientOptions,
        producer_id: u64,
        window: usize,
    ) -> IdempotentProducer {
        assert!(producer_id != 0, "producer id 0 means no producer");
        IdempotentProducer {
            addr: addr.to_string(),
            options,
            client: Some(client),
            announced: false,
            producer_id,
            next_sequence: 1,
            window: window.max(1),
            unacked: VecDeque::new(),
            reconnect_attempts_max: 20,
            reconnect_delay: Duration::from_millis(250),
            reconnects: 0,
            replicas: 0,
            fenced: None,
        }
    }

    /// Each produce is acknowledged once `replicas` members hold it ([`Client::set_replicas`]),
    /// on this connection and every later one.
    pub fn set_replicas(&mut self, replicas: u8) -> Result<(), ClientError> {
        self.replicas = replicas;
        self.client()?.set_replicas(replicas)
    }

    /// A random producer id (never 0), from the standard library's per-process random keys
    /// and the clock.
    pub fn random_id() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        hasher.finish().max(1)
    }

    /// Continues the numbering of an earlier run of this producer id at `next_sequence`
    /// (a producer that saved its id and position across its own restart). Before the first
    /// send only.
    pub fn resume_at(&mut self, next_sequence: u64) {
        assert!(
            !self.announced && self.unacked.is_empty(),
            "resume_at before the first send"
        );
        self.next_sequence = next_sequence;
    }

    /// How many times to try to connect again after a lost connection (0: never; the loss is
    /// then an error), and the pause before each try (it grows by this much each time).
    pub fn set_reconnect(&mut self, attempts_max: u32, delay: Duration) {
        self.reconnect_attempts_max = attempts_max;
        self.reconnect_delay = delay;
    }

    /// The producer id.
    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// The sequence number the next event gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Connections made again after a loss.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Events sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// True when `send` would go over the window: call `recv_ack` first.
    pub fn is_full(&self) -> bool {
        self.unacked.len() >= self.window
    }

    /// True once the server refused a produce with `ErrorCode::ProducerFenced`: another
    /// connection (another process with the same producer id, or a newer instance of this
    /// one) announced the producer id after this one. Every later send is refused with that
    /// error and nothing is sent or reconnected: this producer is done.
    pub fn is_fenced(&self) -> bool {
        self.fenced.is_some()
    }

    /// Sends one event without waiting. Refused with [`ClientError::WindowFull`] when the
    /// window is full, and with `ErrorCode::ProducerFenced` once fenced
    /// ([`IdempotentProducer::is_fenced`]). A lost connection is not an error here: the event
    /// is resent.
    pub fn send(&mut self, event: NewEvent) -> Result<(), ClientError> {
        self.check_fenced()?;
        if self.is_full() {
            return Err(ClientError::WindowFull {
                window: self.window,
            });
        }
        let (producer_id, next_sequence, announced) =
            (self.producer_id, self.next_sequence, self.announced);
        let client = self.client()?;
        client.check_event(&event)?;
        if !announced {
            client.connection.queue(&ClientFrame::SetProducer {
                producer_id,
                next_sequence,
            })?;
        }
        let op_id = client.take_op_id();
        let frame = ClientFrame::Produce(Produce {
            op_id,
            event: event.clone(),
        });
        let sent = client
            .connection
            .queue(&frame)
            .and_then(|()| client.connection.flush());
        self.announced = true;
        self.unacked.push_back(Pending {
            sequence: self.next_sequence,
            op_id,
            event,
        });
        self.next_sequence += 1;
        match sent {
            Err(error) if error.is_fatal() => self.reconnect(),
            other => other,
        }
    }

    /// The outcome of the oldest event in flight (`Ok(None)` when none is): its ack, the
    /// original one if it was stored before a reconnect. An error that is not fatal refuses
    /// that one event; a fatal one means the reconnect attempts ran out.
    pub fn recv_ack(&mut self) -> Result<Option<Ack>, ClientError> {
        loop {
            let Some(oldest) = self.unacked.front().map(|pending| pending.op_id) else {
                return Ok(None);
            };
            let received = self.client()?.receive_completion();
            match received {
                Ok(Some((op_id, outcome))) if op_id == oldest => match outcome {
                    Err(error) if error.is_fatal() => self.reconnect()?,
                    Err(error) if is_fencing(&error) => {
                        self.unacked.pop_front();
                        self.fenced = Some(error.to_string());
                        return Err(error);
                    }
                    outcome => {
                        self.unacked.pop_front();
                        return outcome.map(Some);
                    }
                },
                Ok(_) => {}
                Err(error) if error.is_fatal() => self.reconnect()?,
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends one event and waits for its ack (and those of every event sent before it).
    pub fn produce(&mut self, event: NewEvent) -> Result<Ack, ClientError> {
        while self.is_full() {
            self.recv_ack()?;
        }
        self.send(event)?;
        loop {
            let last = self.unacked.len() == 1;
            match self.recv_ack()? {
                Some(ack) if last => return Ok(ack),
                Some(_) => {}
                None => unreachable!("the event just sent is in flight"),
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() {
            self.reconnect()?;
        }
        // Just set by `reconnect` when it was missing.
        Ok(self.client.as_mut().expect("connected"))
    }

    /// The error every call gets once the producer is fenced.
    fn check_fenced(&self) -> Result<(), ClientError> {
        match &self.fenced {
            None => Ok(()),
            Some(first) => Err(ClientError::Server {
                scope: crate::protocol::ErrorScope::Connection,
                code: ErrorCode::ProducerFenced,
                message: format!(
                    "producer {} is fenced; nothing more is sent (the first refusal: {first})",
                    self.producer_id
                ),
            }),
        }
    }

    /// Connects again and resends every unacknowledged event, numbered as before. Never
    /// once fenced: the SetProducer would take the id back from the newer connection.
    fn reconnect(&mut self) -> Result<(), ClientError> {
        self.check_fenced()?;
        self.client = None;
        self.announced = false;
        let mut last_error = ClientError::ConnectionClosed;
        for attempt in 0..self.reconnect_attempts_max {
            std::thread::sleep(self.reconnect_delay * attempt);
            match self.resend() {
                Ok(client) => {
                    self.client = Some(client);
                    self.announced = true;
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(error) if error.is_fatal() => last_error = error,
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    fn resend(&mut self) -> Result<Client, ClientError> {
        let first = self
            .unacked
            .front()
            .map_or(self.next_sequence, |pending| pending.sequence);
        let mut client = Client::connect(&self.addr, self.options.clone())?;
        if self.replicas > 0 {
            client.set_replicas(self.replicas)?;
        }
        client.set_producer(self.producer_id, first)?;
        for pending in &mut self.unacked {
            pending.op_id = client.take_op_id();
            let frame = ClientFrame::Produce(Produce {
                op_id: pending.op_id,
                event: pending.event.clone(),
            });
            client.connection.queue(&frame)?;
        }
        client.connection.flush()?;
        Ok(client)
    }
}

/// A produce refused because a newer connection took the producer id over.
fn is_fencing(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Server {
            code: ErrorCode::ProducerFenced,
            ..
        }
    )
}
