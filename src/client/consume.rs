//! Consuming: a subscription builder and the iterator of delivered events, with automatic
//! credit and a version-vector cursor that can be saved and resumed from.

use crate::event::{Cursor, Event, StartPosition};
use crate::protocol::{EndReason, ErrorScope, Frame, NamespaceGlob, Subscribe};

use super::{server_error, unexpected, Client, ClientError};

/// The credit window when none is given: events the server may send ahead of the consumer.
pub const CREDIT_DEFAULT: u32 = 256;

/// Builds a subscription; see [`Client::consume`].
pub struct ConsumeBuilder<'a> {
    client: &'a mut Client,
    glob: String,
    start: StartPosition,
    limit: u64,
    tail: bool,
    credit: u32,
}

impl Client {
    /// Starts building a subscription. Defaults: every namespace (`/**`), from the beginning,
    /// no limit, not tailing, a credit window of [`CREDIT_DEFAULT`] events.
    pub fn consume(&mut self) -> ConsumeBuilder<'_> {
        ConsumeBuilder {
            client: self,
            glob: "/**".to_string(),
            start: StartPosition::Beginning,
            limit: 0,
            tail: false,
            credit: CREDIT_DEFAULT,
        }
    }
}

impl<'a> ConsumeBuilder<'a> {
    /// Only events whose namespace matches this glob (see protocol.md for the syntax).
    pub fn glob(mut self, glob: &str) -> Self {
        self.glob = glob.to_string();
        self
    }

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

    /// Events the server may send before the client grants more (at least 1). The client grants
    /// more each time half of the window has been delivered.
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit.max(1);
        self
    }

    /// Validates the glob, sends the subscription and returns its event iterator.
    pub fn subscribe(self) -> Result<Subscription<'a>, ClientError> {
        NamespaceGlob::new(&self.glob).map_err(|error| ClientError::InvalidGlob {
            glob: self.glob.clone(),
            message: error.to_string(),
        })?;
        let subscription_id = self.client.next_subscription_id;
        self.client.next_subscription_id = subscription_id.wrapping_add(1).max(1);
        let cursor = self.start.cursor().unwrap_or_default();
        self.client.connection.send(&Frame::Subscribe(Subscribe {
            subscription_id,
            glob: self.glob,
            start: self.start,
            limit: self.limit,
            tail: self.tail,
            credit: self.credit,
        }))?;
        Ok(Subscription {
            client: self.client,
            subscription_id,
            credit: self.credit,
            delivered_since_credit: 0,
            cursor,
            caught_up: false,
            ended: false,
        })
    }
}

/// What a subscription delivers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Event(Event),
    /// Every stored event matching the subscription has been delivered; a tailing
    /// subscription now waits for new ones.
    CaughtUp,
    /// The subscription is over; nothing more follows.
    End(EndReason),
}

/// An open subscription. As an iterator it yields events and ends after the server's End
/// frame (or after the first error). Dropping it unsubscribes.
pub struct Subscription<'a> {
    client: &'a mut Client,
    subscription_id: u32,
    credit: u32,
    delivered_since_credit: u32,
    cursor: Cursor,
    caught_up: bool,
    ended: bool,
}

impl Subscription<'_> {
    /// The position after every event delivered so far: the start cursor's floor, plus every
    /// delivered id. Resuming from it (`StartPosition::Cursor`) skips exactly what was seen.
    /// A subscription that started at `End` or at a timestamp starts from an empty cursor, so
    /// its cursor says nothing about events before its start until it has delivered one.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// True once the server said every stored event was delivered.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// True once the subscription ended (End frame, error or dropped connection).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn subscription_id(&self) -> u32 {
        self.subscription_id
    }

    /// True when the next delivery is already buffered, so asking for it will not wait for
    /// the network. A command-line consumer flushes its output when this is false.
    pub fn has_buffered(&mut self) -> Result<bool, ClientError> {
        self.client.connection.has_buffered_frame()
    }

    /// The next delivery, waiting for it; `Ok(None)` once the subscription has ended.
    pub fn next_delivery(&mut self) -> Result<Option<Delivery>, ClientError> {
        if self.ended {
            return Ok(None);
        }
        let result = self.receive_delivery();
        if result.is_err() {
            self.ended = true;
        }
        result.map(Some)
    }

    fn receive_delivery(&mut self) -> Result<Delivery, ClientError> {
        loop {
            let frame = self.client.connection.receive()?;
            if let Some(delivery) = self.on_frame(frame)? {
                return Ok(delivery);
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Delivery>, ClientError> {
        let own = self.subscription_id;
        match frame {
            Frame::Event {
                subscription_id,
                event,
            } if subscription_id == own => {
                self.on_event_delivered()?;
                self.cursor.observe(event.id);
                Ok(Some(Delivery::Event(event)))
            }
            Frame::CaughtUp { subscription_id } if subscription_id == own => {
                self.caught_up = true;
                Ok(Some(Delivery::CaughtUp))
            }
            Frame::End {
                subscription_id,
                reason,
            } if subscription_id == own => {
                self.ended = true;
                if reason == EndReason::EndOfStream {
                    self.caught_up = true;
                }
                Ok(Some(Delivery::End(reason)))
            }
            Frame::Error(error) if error.scope == ErrorScope::Subscription(own) => {
                Err(server_error(error))
            }
            Frame::Welcome(_) => Err(unexpected(&frame, "an Event")),
            other => self.client.skip_stale(other).map(|()| None),
        }
    }

    /// Grants more credit once half the window has been used.
    fn on_event_delivered(&mut self) -> Result<(), ClientError> {
        self.delivered_since_credit += 1;
        if self.delivered_since_credit >= (self.credit / 2).max(1) {
            self.client.connection.send(&Frame::Credit {
                subscription_id: self.subscription_id,
                count: self.delivered_since_credit,
            })?;
            self.delivered_since_credit = 0;
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
            let _ = self.client.connection.send(&Frame::Unsubscribe {
                subscription_id: self.subscription_id,
            });
        }
    }
}
