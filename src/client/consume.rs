//! Consuming: a subscription builder and the iterator of delivered events, with automatic
//! credit and a version-vector cursor that can be saved and resumed from.

use crate::event::{Cursor, Event, Order, StartPosition};
use crate::protocol::{ClientFrame, EndReason, ErrorScope, NamespaceGlob, ServerFrame, Subscribe};

use super::{server_error, unexpected, Client, ClientError, ClientHandle};

/// The credit window when none is given: events the server may send ahead of the consumer.
pub const CREDIT_DEFAULT: u32 = 256;

/// The consumer's side of a credit window: after each delivered event, says when to grant
/// more credit (once half the window is used) and how much, so the server never stalls on a
/// consumer that keeps up. Shared by subscriptions and group memberships.
pub(super) struct CreditWindow {
    window: u32,
    delivered_since_grant: u32,
}

impl CreditWindow {
    pub(super) fn new(window: u32) -> CreditWindow {
        CreditWindow {
            window,
            delivered_since_grant: 0,
        }
    }

    /// One event was delivered: the credit to grant now, if any.
    pub(super) fn on_delivered(&mut self) -> Option<u32> {
        self.delivered_since_grant += 1;
        if self.delivered_since_grant < (self.window / 2).max(1) {
            return None;
        }
        Some(std::mem::take(&mut self.delivered_since_grant))
    }
}

/// Builds a subscription; see [`Client::consume`].
pub struct ConsumeBuilder<'a> {
    client: ClientHandle<'a>,
    glob: String,
    start: StartPosition,
    limit: u64,
    tail: bool,
    order: Order,
    skip_damaged: bool,
    credit: u32,
}

impl Client {
    /// Starts building a subscription. Defaults: every namespace (`/**`), from the beginning,
    /// no limit, not tailing, a credit window of 256 events.
    pub fn consume(&mut self) -> ConsumeBuilder<'_> {
        ConsumeBuilder::new(ClientHandle::Borrowed(self))
    }

    /// Like [`Client::consume`], but the subscription owns the connection, so it can be moved
    /// into a thread or boxed.
    pub fn into_consume(self) -> ConsumeBuilder<'static> {
        ConsumeBuilder::new(ClientHandle::Owned(Box::new(self)))
    }
}

impl<'a> ConsumeBuilder<'a> {
    fn new(client: ClientHandle<'a>) -> ConsumeBuilder<'a> {
        ConsumeBuilder {
            client,
            glob: "/**".to_string(),
            start: StartPosition::Beginning,
            limit: 0,
            tail: false,
            skip_damaged: false,
            order: Order::Arrival,
            credit: CREDIT_DEFAULT,
        }
    }

    /// Only events whose namespace matches this glob (see protocol.md for the syntax).
    pub fn glob(mut self, glob: &str) -> Self {
        self.glob = glob.to_string();
        self
    }

    /// Where the subscription starts (default: the beginning).
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Stop after this many events; 0 means no limit.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Keep waiting for new events after the stored ones are delivered.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// The order of delivery (default: the server's arrival order). [`Order::Id`] delivers
    /// in the total order of ids, the same sequence on every node of a cluster, at the cost
    /// of waiting until no smaller id can still arrive (docs/clustering.md, "Id order").
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Skip damaged ranges of the server's log: when a read meets records the server cannot
    /// read (a damaged sealed segment), the subscription gets [`Delivery::Skipped`] with the
    /// number of records lost and goes on after them. Without it (the default) the
    /// subscription ends with a `StorageFailure` error there, and nothing is skipped.
    pub fn skip_damaged(mut self, skip: bool) -> Self {
        self.skip_damaged = skip;
        self
    }

    /// Events the server may send before the client grants more (at least 1). The client grants
    /// more each time half of the window has been delivered.
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit.max(1);
        self
    }

    /// Validates the glob, sends the subscription and returns its event iterator.
    pub fn subscribe(mut self) -> Result<Subscription<'a>, ClientError> {
        NamespaceGlob::new(&self.glob).map_err(|error| ClientError::InvalidGlob {
            glob: self.glob.clone(),
            message: error.to_string(),
        })?;
        let subscription_id = self.client.next_subscription_id;
        self.client.next_subscription_id = subscription_id.wrapping_add(1).max(1);
        let cursor = self.start.cursor().unwrap_or_default();
        // An End or timestamp start has the empty cursor, which covers nothing: until the
        // first event, the start itself is where to resume (protocol.md section 9).
        let start_until_first_event = match &self.start {
            StartPosition::End | StartPosition::Timestamp(_) => Some(self.start.clone()),
            StartPosition::Beginning | StartPosition::AfterId(_) | StartPosition::Cursor(_) => None,
        };
        self.client
            .connection
            .send(&ClientFrame::Subscribe(Subscribe {
                subscription_id,
                glob: self.glob,
                start: self.start,
                limit: self.limit,
                tail: self.tail,
                order: self.order,
                skip_damaged: self.skip_damaged,
                credit: self.credit,
            }))?;
        Ok(Subscription {
            client: self.client,
            subscription_id,
            credit: CreditWindow::new(self.credit),
            cursor,
            start_until_first_event,
            caught_up: false,
            ended: false,
            buffered: None,
        })
    }
}

/// What a subscription delivers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An event matching the subscription.
    Event(Event),
    /// Every stored event matching the subscription has been delivered; a tailing
    /// subscription now waits for new ones.
    CaughtUp,
    /// This many records of the server's log the subscription had not read yet are gone:
    /// deleted by retention, or unreadable on disk and skipped because the subscription asked
    /// for it ([`ConsumeBuilder::skip_damaged`]); some may not have matched its glob. Delivery
    /// goes on after them.
    Skipped(u64),
    /// The subscription is over; nothing more follows.
    End(EndReason),
}

/// An open subscription. As an iterator it yields events and ends after the server's End
/// frame (or after the first error). Dropping it unsubscribes.
pub struct Subscription<'a> {
    client: ClientHandle<'a>,
    subscription_id: u32,
    credit: CreditWindow,
    cursor: Cursor,
    /// The End or timestamp start, until the first event is handed out.
    start_until_first_event: Option<StartPosition>,
    caught_up: bool,
    ended: bool,
    /// A delivery taken from the connection's buffer by `has_buffered`, not yet handed out.
    buffered: Option<Delivery>,
}

impl Subscription<'_> {
    /// The position after every event delivered so far: the start cursor's floor, plus every
    /// delivered id. Resuming from it (`StartPosition::Cursor`) skips exactly what was seen.
    /// A subscription that started at `End` or at a timestamp starts from an empty cursor, so
    /// its cursor says nothing about events before its start until it has delivered one.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Where to resume this subscription (in a later `start`) so that nothing it delivered
    /// is delivered again and nothing it has not delivered yet is skipped: its start
    /// position itself while it has delivered nothing and started at `End` or at a
    /// timestamp (the empty cursor it has then would deliver every retained event: the trap of
    /// protocol.md section 9), otherwise its cursor. One limit stays (protocol.md section 9,
    /// "Several actors"): on a server holding the events of several actors, a subscription
    /// started at `End` or at a timestamp and resumed from its cursor also gets the other
    /// actors' events stored before its start; it never misses one.
    pub fn resume_position(&self) -> StartPosition {
        match &self.start_until_first_event {
            Some(start) => start.clone(),
            None => StartPosition::Cursor(self.cursor.clone()),
        }
    }

    /// True once the server said every stored event was delivered.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// True once the subscription ended (End frame, error or dropped connection).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The id the server knows this subscription by (in its error frames).
    pub fn subscription_id(&self) -> u32 {
        self.subscription_id
    }

    /// True when the next delivery is already buffered, so asking for it will not wait for
    /// the network. A command-line consumer flushes its output when this is false. Buffered
    /// frames that are not deliveries (keep-alive Pongs, leftovers of ended subscriptions)
    /// are handled on the way, so `false` really means the next call waits.
    pub fn has_buffered(&mut self) -> Result<bool, ClientError> {
        if self.buffered.is_some() || self.ended {
            return Ok(true);
        }
        loop {
            let frame = match self.client.connection.receive_buffered() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(false),
                Err(error) => return Err(self.end_with(error)),
            };
            match self.on_frame(frame) {
                Ok(Some(delivery)) => {
                    self.buffered = Some(delivery);
                    return Ok(true);
                }
                Ok(None) => {}
                Err(error) => return Err(self.end_with(error)),
            }
        }
    }

    /// Waits at most `wait` for the next delivery; true when one is buffered (so
    /// `next_delivery` will not wait for the network) or the subscription has ended, false
    /// when nothing arrived in time. A consumer that must look up now and then (to give up on
    /// events that never come) waits with this instead of blocking in `next_delivery`.
    pub fn wait_for_delivery(&mut self, wait: std::time::Duration) -> Result<bool, ClientError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if self.has_buffered()? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let received = self.client.connection.wait_for_bytes(left);
            if !received.map_err(|error| self.end_with(error))? {
                return Ok(false);
            }
        }
    }

    fn end_with(&mut self, error: ClientError) -> ClientError {
        self.ended = true;
        error
    }

    /// The next delivery, waiting for it; `Ok(None)` once the subscription has ended.
    pub fn next_delivery(&mut self) -> Result<Option<Delivery>, ClientError> {
        let delivery = match self.buffered.take() {
            Some(delivery) => delivery,
            None if self.ended => return Ok(None),
            None => self
                .receive_delivery()
                .map_err(|error| self.end_with(error))?,
        };
        if let Delivery::Event(event) = &delivery {
            // Observed when handed out, so `cursor()` never runs ahead of the caller.
            self.cursor.observe(event.id);
            self.start_until_first_event = None;
        }
        Ok(Some(delivery))
    }

    fn receive_delivery(&mut self) -> Result<Delivery, ClientError> {
        loop {
            let frame = self.client.connection.receive()?;
            if let Some(delivery) = self.on_frame(frame)? {
                return Ok(delivery);
            }
        }
    }

    fn on_frame(&mut self, frame: ServerFrame) -> Result<Option<Delivery>, ClientError> {
        let own = self.subscription_id;
        match frame {
            ServerFrame::Event {
                subscription_id,
                event,
            } if subscription_id == own => {
                self.on_event_delivered()?;
                Ok(Some(Delivery::Event(event)))
            }
            ServerFrame::Skipped {
                subscription_id,
                count,
            } if subscription_id == own => Ok(Some(Delivery::Skipped(count))),
            ServerFrame::CaughtUp { subscription_id } if subscription_id == own => {
                self.caught_up = true;
                Ok(Some(Delivery::CaughtUp))
            }
            ServerFrame::End {
                subscription_id,
                reason,
            } if subscription_id == own => {
                self.ended = true;
                if reason == EndReason::EndOfStream {
                    self.caught_up = true;
                }
                Ok(Some(Delivery::End(reason)))
            }
            ServerFrame::Error(error) if error.scope == ErrorScope::Subscription(own) => {
                Err(server_error(error))
            }
            ServerFrame::Welcome(_) => Err(unexpected(&frame, "an Event")),
            other => self.client.skip_stale(other).map(|()| None),
        }
    }

    /// Grants more credit once half the window has been used.
    fn on_event_delivered(&mut self) -> Result<(), ClientError> {
        if let Some(count) = self.credit.on_delivered() {
            self.client.connection.send(&ClientFrame::Credit {
                subscription_id: self.subscription_id,
                count,
            })?;
        }
        Ok(())
    }
}

impl Iterator for Subscription<'_> {
    type Item = Result<Event, ClientError>;

    fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            match self.next_delivery() {
                Ok(Some(Delivery::Event(event))) => return Some(Ok(event)),
                Ok(Some(Delivery::CaughtUp)) => continue,
                // The iterator yields events only; `next_delivery` shows the gap.
                Ok(Some(Delivery::Skipped(count))) => {
                    log::warn!(
                        "subscription {}: {count} unread records were deleted by retention",
                        self.subscription_id
                    );
                    continue;
                }
                Ok(Some(Delivery::End(_))) | Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if !self.ended {
            // Best effort: if the connection is gone there is nothing to unsubscribe from, and
            // events already in flight are skipped by later calls on this client.
            let _ = self.client.connection.send(&ClientFrame::Unsubscribe {
                subscription_id: self.subscription_id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;
    use crate::event::EventId;
    use crate::protocol::{self, Welcome, PROTOCOL_VERSION};

    fn event(counter: u64) -> Event {
        Event {
            id: EventId::new(counter, 1),
            parent_id: None,
            namespace: "/a".into(),
            timestamp_ms: 1,
            data: Vec::new(),
        }
    }

    /// A Pong buffered behind an event must not make `has_buffered` say "no wait ahead": the
    /// CLI would then skip its flush and block with the event unprinted.
    #[test]
    fn has_buffered_looks_past_frames_that_are_not_deliveries() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (release_server, server_may_finish) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut hello = [0u8; 256];
            let _ = stream.read(&mut hello).expect("read the Hello");
            let mut bytes = Vec::new();
            protocol::encode(
                &ServerFrame::Welcome(Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: "test".into(),
                    actor_id: 1,
                    frame_size_max: 1 << 20,
                    namespace_length_max: 64,
                    event_data_size_max: 1024,
                    subscriptions_max: 1,
                    idle_timeout_ms: 0,
                }),
                &mut bytes,
            );
            // The event, then an unsolicited Pong, in one write.
            protocol::encode(
                &ServerFrame::Event {
                    subscription_id: 1,
                    event: event(1),
                },
                &mut bytes,
            );
            protocol::encode(&ServerFrame::Pong { token: 99 }, &mut bytes);
            stream.write_all(&bytes).expect("write");
            let _ = server_may_finish.recv_timeout(Duration::from_secs(10));
        });
        let options = crate::client::ClientOptions {
            io_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let mut client = Client::connect(&addr, options).expect("connect");
        let mut subscription = client.consume().subscribe().expect("subscribe");
        assert_eq!(subscription.has_buffered().ok(), Some(true));
        assert_eq!(subscription.cursor().vector.len(), 0, "not handed out yet");
        match subscription.next() {
            Some(Ok(delivered)) => assert_eq!(delivered.id, EventId::new(1, 1)),
            other => panic!("expected the event, got {other:?}"),
        }
        assert!(subscription.cursor().covers(EventId::new(1, 1)));
        // Only the Pong is left: the next delivery needs the network.
        assert_eq!(subscription.has_buffered().ok(), Some(false));
        drop(subscription);
        drop(client);
        let _ = release_server.send(());
        server.join().expect("server thread");
    }
}
