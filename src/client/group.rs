//! Consumer groups (docs/consumers.md): join a group, take its deliveries, acknowledge or
//! refuse each by id, leave. Acks are pipelined: they are queued and sent in batches (one
//! GroupAck frame for up to [`ACK_BATCH_DEFAULT`] ids), never waited for. Acks of deliveries
//! that came one after another, acknowledged in that order (a consumer that handles its events
//! one at a time), go as one GroupAckRange frame of 25 bytes: its first and last event.
//!
//! A server older than GroupAckRange closes the connection with MalformedFrame ("unknown
//! frame kind 0x1b") at the first range. Until a Pong shows that the server took a range (a
//! Ping follows the first one), the member remembers the ids it acknowledged; on that
//! refusal it connects again, joins again, acknowledges those ids one by one and from then on
//! sends GroupAck only (logged once, [`GroupConsumer::ack_ranges_refused`]).
//!
//! GroupProgress cannot be handled that way: a server older than it closes the connection,
//! and the events in flight to the member go back to the group at once, so the member that
//! was working on one loses it. With [`GroupBuilder::probe_progress`] the member finds out
//! before it holds anything: it sends a GroupProgress without ids for the subscription id it
//! is about to join, just before the JoinGroup. A server that knows the frame answers
//! `UnknownGroup` (not a membership yet) and then takes the join; an older one closes the
//! connection with MalformedFrame before it reads the join, and the member connects and joins
//! again and keeps its connection open with Pings instead
//! ([`GroupConsumer::progress_refused`]).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use crate::event::{Event, EventId, StartPosition};
use crate::protocol::{
    kind, ClientFrame, EndReason, ErrorCode, ErrorFrame, ErrorScope, GroupAck, GroupAckRange,
    JoinGroup, NamespaceGlob, ServerFrame,
};

use super::consume::{CreditWindow, CREDIT_DEFAULT};
use super::{server_error, unexpected, Client, ClientError, ClientHandle};

/// Acknowledgements queued before they are sent in one GroupAck frame.
pub const ACK_BATCH_DEFAULT: usize = 128;
/// Deliveries whose place in the membership's delivery order the consumer remembers, to
/// join acks of consecutive deliveries into one range (older ones are acked by id).
const RECENT_DELIVERIES_MAX: usize = 4096;

/// An ack waiting to be sent: one id, or a run of consecutive deliveries (a range).
#[derive(Debug, Clone, Copy)]
enum QueuedAck {
    Id(EventId),
    Range { first: EventId, last: EventId },
}

/// Whether the server takes GroupAckRange, as far as this membership has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeProbe {
    /// No range has been sent on this connection.
    NotSent,
    /// A range was sent, followed by a Ping with this token; its Pong proves the server
    /// handled the range.
    Sent { ping_token: u64 },
    /// The server answered that Ping: it knows GroupAckRange.
    Proven,
}

/// The longest [`GroupConsumer::progress_interval`]: a group's ack time-out may be as short
/// as an operator set it, and the member does not know it unless told
/// ([`GroupBuilder::group_ack_timeout`]).
pub const PROGRESS_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// The shortest [`GroupConsumer::progress_interval`]: a GroupProgress is a frame for the
/// server to handle, so a member does not send one more than 10 times a second, however short
/// the ack time-out (one of 300 ms or less gets fewer than three per time-out; one of 100 ms
/// or less cannot be covered).
pub const PROGRESS_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Whether the server takes GroupProgress, as far as this membership has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProgressProbe {
    /// Not probed: [`GroupConsumer::progress`] sends GroupProgress.
    Off,
    /// The probe went out before the JoinGroup; its answer is the first frame for this id.
    Sent,
    /// The server answered the probe with `UnknownGroup`: it knows the frame.
    Known,
    /// The server closed the connection at the probe: [`GroupConsumer::progress`] sends a
    /// Ping instead.
    Refused,
}

/// Unproven acks remembered at most; past this, acks go by id until ranges are proven.
const UNPROVEN_ACKS_MAX: usize = 65_536;

/// Builds a group membership; see [`Client::join_group`].
pub struct GroupBuilder<'a> {
    client: ClientHandle<'a>,
    group: String,
    glob: String,
    start: StartPosition,
    credit: u32,
    ack_timeout: Duration,
    max_deliveries: u16,
    max_in_flight: u32,
    ack_batch: usize,
    ack_ranges: bool,
    probe_progress: bool,
    group_ack_timeout: Duration,
}

impl Client {
    /// Starts building a membership of the consumer group `group`. Defaults: every namespace
    /// (`/**`), a new group starts at the beginning, a credit window of 256 events, and the
    /// server's defaults for the ack time-out, `max_deliveries` and `max_in_flight`.
    pub fn join_group(&mut self, group: &str) -> GroupBuilder<'_> {
        GroupBuilder::new(ClientHandle::Borrowed(self), group)
    }

    /// Like [`Client::join_group`], but the membership owns the connection, so it can be moved
    /// into a thread.
    pub fn into_join_group(self, group: &str) -> GroupBuilder<'static> {
        GroupBuilder::new(ClientHandle::Owned(Box::new(self)), group)
    }
}

impl<'a> GroupBuilder<'a> {
    fn new(client: ClientHandle<'a>, group: &str) -> GroupBuilder<'a> {
        GroupBuilder {
            client,
            group: group.to_string(),
            glob: "/**".to_string(),
            start: StartPosition::Beginning,
            credit: CREDIT_DEFAULT,
            ack_timeout: Duration::ZERO,
            max_deliveries: 0,
            max_in_flight: 0,
            ack_batch: ACK_BATCH_DEFAULT,
            ack_ranges: true,
            probe_progress: false,
            group_ack_timeout: Duration::ZERO,
        }
    }

    /// The group's namespace glob; must equal the glob of the group if it exists.
    pub fn glob(mut self, glob: &str) -> Self {
        self.glob = glob.to_string();
        self
    }

    /// Where the group starts if this join creates it; ignored for an existing group.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Events the server may send before the client grants more (at least 1).
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit.max(1);
        self
    }

    /// An event not acknowledged this long after its delivery goes to another member
    /// (millisecond resolution; zero: the server's default, 30 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Deliveries after which an unacknowledged event is parked (0: the server's default).
    pub fn max_deliveries(mut self, count: u16) -> Self {
        self.max_deliveries = count;
        self
    }

    /// Unacknowledged events this member may hold (0: the server's default).
    pub fn max_in_flight(mut self, count: u32) -> Self {
        self.max_in_flight = count;
        self
    }

    /// Acks queued before they are sent without waiting for a flush (at least 1; the most one
    /// frame carries is 65535).
    pub fn ack_batch(mut self, count: usize) -> Self {
        self.ack_batch = count.clamp(1, usize::from(u16::MAX));
        self
    }

    /// Whether acks of consecutive deliveries go as one GroupAckRange frame (on by default).
    /// A server older than that frame closes the connection on it; the consumer then
    /// connects and joins again and acknowledges by id (see the module documentation). Off:
    /// never a range, for a client that cannot reconnect ([`Client::from_stream`]).
    pub fn ack_ranges(mut self, on: bool) -> Self {
        self.ack_ranges = on;
        self
    }

    /// Whether to find out, with the join, if the server takes GroupProgress (off by default):
    /// a GroupProgress without ids for the subscription id being joined goes just before the
    /// JoinGroup (see the module documentation). A server older than the frame closes the
    /// connection at it, before it reads the join; the consumer then connects and joins again
    /// ([`Client::connect`] only), and [`GroupConsumer::progress`] sends Pings. On for a
    /// member that will call [`GroupConsumer::progress`]; it costs no round trip.
    pub fn probe_progress(mut self, on: bool) -> Self {
        self.probe_progress = on;
        self
    }

    /// The group's ack time-out, as the caller learned it (from [`Client::group_detail`]):
    /// the join does not say it, and [`GroupConsumer::progress_interval`] derives from it
    /// (zero: not known, the default).
    pub fn group_ack_timeout(mut self, timeout: Duration) -> Self {
        self.group_ack_timeout = timeout;
        self
    }

    /// Validates the glob and sends the JoinGroup. The server does not answer a join: a refused
    /// join shows as the error of the first [`GroupConsumer::next_delivery`].
    pub fn join(mut self) -> Result<GroupConsumer<'a>, ClientError> {
        NamespaceGlob::new(&self.glob).map_err(|error| ClientError::InvalidGlob {
            glob: self.glob.clone(),
            message: error.to_string(),
        })?;
        let subscription_id = self.client.next_subscription_id;
        self.client.next_subscription_id = subscription_id.wrapping_add(1).max(1);
        let ack_timeout_ms = u32::try_from(self.ack_timeout.as_millis()).unwrap_or(u32::MAX);
        let join = JoinGroup {
            subscription_id,
            group: self.group.clone(),
            glob: self.glob,
            start: self.start,
            credit: self.credit,
            ack_timeout_ms,
            max_deliveries: self.max_deliveries,
            max_in_flight: self.max_in_flight,
        };
        let probe = self.probe_progress && self.client.reconnect.is_some();
        if probe {
            self.client
                .connection
                .queue(&ClientFrame::GroupProgress(GroupAck {
                    subscription_id,
                    delay_ms: 0,
                    ids: Vec::new(),
                }))?;
        }
        self.client
            .connection
            .send(&ClientFrame::JoinGroup(join.clone()))?;
        let ack_ranges = self.ack_ranges && !self.client.ack_ranges_refused;
        Ok(GroupConsumer {
            client: self.client,
            group: self.group,
            subscription_id,
            join,
            credit: CreditWindow::new(self.credit),
            acks: Vec::new(),
            queued_count: 0,
            ack_ranges,
            range_probe: RangeProbe::NotSent,
            progress_probe: match probe {
                true => ProgressProbe::Sent,
                false => ProgressProbe::Off,
            },
            unproven_acks: Vec::new(),
            acked_before_rejoin: HashSet::new(),
            ranges_refused: false,
            leaving: false,
            recent: VecDeque::new(),
            delivered: 0,
            last_queued_sequence: None,
            ack_batch: self.ack_batch,
            group_ack_timeout: self.group_ack_timeout,
            not_pending: 0,
            caught_up: false,
            ended: false,
            buffered: VecDeque::new(),
            queued_ids: Vec::new(),
        })
    }
}

/// What a group membership delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupDelivery {
    /// An event for this member to process, then [`GroupConsumer::ack`] (or nack).
    Event(Event),
    /// The group has delivered every stored event and has none waiting for redelivery (sent
    /// once per membership).
    CaughtUp,
    /// The membership is over (after [`GroupConsumer::leave`]).
    End(EndReason),
}

/// A membership of a consumer group. As an iterator it yields events; each must be acked
/// (or nacked) by id, else the group gives it to a member again after the ack time-out.
/// Dropping it sends the queued acks and leaves the group.
pub struct GroupConsumer<'a> {
    client: ClientHandle<'a>,
    group: String,
    subscription_id: u32,
    /// The join as sent, to join again after a refused GroupAckRange.
    join: JoinGroup,
    credit: CreditWindow,
    /// Acks not yet sent, in the order they were made.
    acks: Vec<QueuedAck>,
    /// The events `acks` acknowledges.
    queued_count: usize,
    ack_ranges: bool,
    /// Whether the server is known to take GroupAckRange on this connection.
    range_probe: RangeProbe,
    /// Whether the server is known to take GroupProgress.
    progress_probe: ProgressProbe,
    /// While ranges are not proven: every id acknowledged (queued or sent), to acknowledge
    /// them again by id if the server turns out to be older than GroupAckRange.
    unproven_acks: Vec<EventId>,
    /// Ids acknowledged again after a rejoin: a delivery of one of them on the new membership
    /// (sent before the server read that ack) is already settled, and not handed out.
    acked_before_rejoin: HashSet<EventId>,
    /// The server refused a GroupAckRange and this member went over to single acks.
    ranges_refused: bool,
    /// A LeaveGroup was sent (to send it again after a rejoin).
    leaving: bool,
    /// The latest deliveries by their number in this membership's delivery order (the
    /// server numbers them the same way: one per Event frame), at most
    /// `RECENT_DELIVERIES_MAX`; an entry goes when its event is acked.
    recent: VecDeque<(u64, EventId)>,
    /// Deliveries received so far.
    delivered: u64,
    /// The delivery number the last queued ack ends at, if known: an ack of the next one
    /// extends it into a range.
    last_queued_sequence: Option<u64>,
    ack_batch: usize,
    /// The group's ack time-out if the caller knew it ([`GroupBuilder::group_ack_timeout`]).
    group_ack_timeout: Duration,
    /// NotPending errors the server sent (late acks of events already given to another
    /// member and acknowledged there, or parked).
    not_pending: u64,
    caught_up: bool,
    ended: bool,
    /// Deliveries read and not yet handed out: one while a command-line consumer checks
    /// whether the next one waits ([`GroupConsumer::has_buffered`]), at most the credit
    /// window while it reads ahead ([`GroupConsumer::progress_held`]). Credit is granted for
    /// an event when it is handed out, so the server never sends more than this can hold.
    buffered: VecDeque<GroupDelivery>,
    /// The ids whose acks are queued in `acks` (a range hides its inner ids).
    queued_ids: Vec<EventId>,
}

impl GroupConsumer<'_> {
    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The id the server knows this membership by (in its error frames).
    pub fn subscription_id(&self) -> u32 {
        self.subscription_id
    }

    /// True once the server said the group has delivered every stored event.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// True once the membership ended (End frame, error or dropped connection).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// How many NotPending answers came back: acks (or nacks) of events that were no longer
    /// pending, typically acknowledged by another member after this one's time-out.
    pub fn not_pending_count(&self) -> u64 {
        self.not_pending
    }

    /// Acks queued and not yet sent.
    pub fn queued_acks(&self) -> usize {
        self.queued_count
    }

    /// True once the server refused a GroupAckRange (it is older than that frame) and this
    /// member connected and joined again to acknowledge by id from then on.
    pub fn ack_ranges_refused(&self) -> bool {
        self.ranges_refused
    }

    /// True once the server turned out to be older than GroupProgress
    /// ([`GroupBuilder::probe_progress`]): [`GroupConsumer::progress`] sends a Ping instead, so
    /// the connection stays open but the ack time-outs of the events it holds are not
    /// extended.
    pub fn progress_refused(&self) -> bool {
        self.progress_probe == ProgressProbe::Refused
    }

    /// Marks the event done. Queued; sent once `ack_batch` acks are queued, before the
    /// consumer waits for the network, and by [`GroupConsumer::flush`] and `leave`. Acks of
    /// deliveries that came one after another, made in that order, go as one range.
    pub fn ack(&mut self, id: EventId) -> Result<(), ClientError> {
        let sequence = self.take_sequence(id);
        let remember = self.ack_ranges
            && self.range_probe != RangeProbe::Proven
            && self.unproven_acks.len() < UNPROVEN_ACKS_MAX;
        if remember {
            self.unproven_acks.push(id);
        }
        let extends = self.ack_ranges
            && (remember || self.range_probe == RangeProbe::Proven)
            && sequence.is_some()
            && self
                .last_queued_sequence
                .zip(sequence)
                .is_some_and(|(l, s)| s == l + 1);
        match self.acks.last_mut() {
            Some(queued) if extends => {
                let (QueuedAck::Id(first) | QueuedAck::Range { first, .. }) = *queued;
                *queued = QueuedAck::Range { first, last: id };
            }
            _ => self.acks.push(QueuedAck::Id(id)),
        }
        self.last_queued_sequence = sequence;
        self.queued_count += 1;
        self.queued_ids.push(id);
        if self.queued_count >= self.ack_batch {
            self.flush()?;
        }
        Ok(())
    }

    /// The delivery number of `id` among the recent deliveries (the newest delivery of it),
    /// forgetting it.
    fn take_sequence(&mut self, id: EventId) -> Option<u64> {
        let index = self
            .recent
            .iter()
            .rposition(|(_, delivered)| *delivered == id)?;
        self.recent.remove(index).map(|(sequence, _)| sequence)
    }

    /// Refuses events: the group delivers them again (perhaps to another member) after
    /// `delay`, or parks them if they reached `max_deliveries`. Sent at once, after the
    /// queued acks.
    pub fn nack(&mut self, ids: &[EventId], delay: Duration) -> Result<(), ClientError> {
        self.flush()?;
        let delay_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        for chunk in ids.chunks(usize::from(u16::MAX)) {
            self.client
                .connection
                .queue(&ClientFrame::GroupNack(GroupAck {
                    subscription_id: self.subscription_id,
                    delay_ms,
                    ids: chunk.to_vec(),
                }))?;
        }
        self.client.connection.flush()
    }

    /// How often a member busy with an event, reading nothing, should call
    /// [`GroupConsumer::keep_alive`]: a third of the server's idle time-out (Welcome's
    /// `idle_timeout_ms`), or `None` when the server has none.
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        match self.client.welcome().idle_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms).div_ceil(3))),
        }
    }

    /// Sends a Ping at once, waiting for nothing (its Pong is skipped when it is read), so
    /// that the server's idle time-out does not close the connection of a member that reads
    /// nothing while it works on an event for longer than that time-out (the reads that wait
    /// for deliveries ping by themselves).
    pub fn keep_alive(&mut self) -> Result<(), ClientError> {
        if self.ended {
            return Ok(());
        }
        let token = self.client.connection.take_ping_token();
        self.client.connection.queue(&ClientFrame::Ping { token })?;
        self.client.connection.flush()
    }

    /// How often a member working on an event should call [`GroupConsumer::progress`] for it:
    /// a third of the shorter of the ack time-out this member asked for in its join and the
    /// group's ([`GroupBuilder::group_ack_timeout`], when the caller knew it), at least
    /// [`PROGRESS_INTERVAL_MIN`] (100 ms) and at most [`PROGRESS_INTERVAL_MAX`] (1 s): the
    /// join does not tell a member its group's ack time-out (30 s by default, but a GroupAdmin
    /// create or update may set less, also after the join), and a GroupProgress is 17 bytes
    /// for the server to handle. Never longer than [`GroupConsumer::keep_alive_interval`], as
    /// a GroupProgress also keeps the connection from the idle time-out.
    pub fn progress_interval(&self) -> Duration {
        let own = Duration::from_millis(u64::from(self.join.ack_timeout_ms));
        let interval = progress_interval_for(own, self.group_ack_timeout);
        match self.keep_alive_interval() {
            Some(keep_alive) => interval.min(keep_alive),
            None => interval,
        }
    }

    /// Says that this member is still working on these events (delivered to it and not yet
    /// acknowledged): the server restarts their ack time-outs, so that they are not delivered
    /// to another member while the work goes on (GroupProgress, protocol.md section 16). Sent
    /// at once, waiting for nothing; it also keeps the connection from the idle time-out, as
    /// [`GroupConsumer::keep_alive`] does. An id no longer in flight to this member (it timed
    /// out before, or was never delivered to it) gets a `NotPending` answer, counted in
    /// [`GroupConsumer::not_pending_count`] when it is read. A server older than the frame
    /// closes the connection (`MalformedFrame`), unless the join probed it
    /// ([`GroupBuilder::probe_progress`]): then this sends a Ping
    /// ([`GroupConsumer::progress_refused`]).
    pub fn progress(&mut self, ids: &[EventId]) -> Result<(), ClientError> {
        if self.ended {
            return Ok(());
        }
        if self.progress_probe == ProgressProbe::Refused {
            return self.keep_alive();
        }
        for chunk in ids.chunks(usize::from(u16::MAX)) {
            self.client
                .connection
                .queue(&ClientFrame::GroupProgress(GroupAck {
                    subscription_id: self.subscription_id,
                    delay_ms: 0,
                    ids: chunk.to_vec(),
                }))?;
        }
        self.client.connection.flush()
    }

    /// Sends every queued ack now (pipelined: nothing waits for an answer).
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let sent = self
            .queue_acks()
            .and_then(|()| self.client.connection.flush());
        match sent {
            Err(error) => self.after_send_error(error),
            ok => ok,
        }
    }

    fn queue_acks(&mut self) -> Result<(), ClientError> {
        self.queued_ids.clear();
        if self.acks.is_empty() || self.ended {
            self.acks.clear();
            self.queued_count = 0;
            self.last_queued_sequence = None;
            return Ok(());
        }
        let acks = std::mem::take(&mut self.acks);
        self.queued_count = 0;
        self.last_queued_sequence = None;
        let mut ids = Vec::new();
        let mut sent_range = false;
        for ack in acks {
            match ack {
                QueuedAck::Id(id) => ids.push(id),
                QueuedAck::Range { first, last } => {
                    self.queue_ids(&mut ids)?;
                    self.client
                        .connection
                        .queue(&ClientFrame::GroupAckRange(GroupAckRange {
                            subscription_id: self.subscription_id,
                            first,
                            last,
                        }))?;
                    sent_range = true;
                }
            }
        }
        self.queue_ids(&mut ids)?;
        match self.range_probe {
            RangeProbe::NotSent if sent_range => {
                // The Pong to this Ping shows the server handled the range before it.
                let token = self.client.connection.take_ping_token();
                self.client.connection.queue(&ClientFrame::Ping { token })?;
                self.range_probe = RangeProbe::Sent { ping_token: token };
            }
            // Acks by id only, which every server takes: nothing to remember.
            RangeProbe::NotSent => self.unproven_acks.clear(),
            RangeProbe::Sent { .. } | RangeProbe::Proven => {}
        }
        Ok(())
    }

    /// Before a last flush on a server not yet known to take ranges (leave, drop): the queued
    /// acks go by id, so that a server older than GroupAckRange gets them all.
    fn acks_by_id_unless_proven(&mut self) {
        if self.ack_ranges && self.range_probe == RangeProbe::NotSent {
            let ids = std::mem::take(&mut self.unproven_acks);
            if ids.len() == self.queued_count {
                self.acks = ids.into_iter().map(QueuedAck::Id).collect();
            }
        }
    }

    /// A refusal of GroupAckRange by a server older than it: MalformedFrame naming the
    /// frame's kind, after this member sent a range not yet proven.
    fn is_range_refusal(&self, error: &ErrorFrame) -> bool {
        matches!(self.range_probe, RangeProbe::Sent { .. })
            && error.scope == ErrorScope::Connection
            && error.code == ErrorCode::MalformedFrame
            && error
                .message
                .contains(&format!("{:#04x}", kind::GROUP_ACK_RANGE))
    }

    /// The answer of a server older than GroupProgress to the probe sent before the join:
    /// MalformedFrame naming the frame's kind.
    fn is_progress_refusal(&self, error: &ErrorFrame) -> bool {
        self.progress_probe == ProgressProbe::Sent
            && error.scope == ErrorScope::Connection
            && error.code == ErrorCode::MalformedFrame
            && error
                .message
                .contains(&format!("{:#04x}", kind::GROUP_PROGRESS))
    }

    /// The server is older than GroupProgress and closed the connection at the probe, before
    /// it read the join (nothing was delivered or acknowledged): connect and join again, and
    /// send Pings instead of GroupProgress from now on.
    fn rejoin_without_progress(&mut self, refusal: ErrorFrame) -> Result<(), ClientError> {
        // Only sent on a client that can reconnect (`GroupBuilder::join`).
        let Some((addr, options)) = self.client.reconnect.clone() else {
            return Err(server_error(refusal));
        };
        log::warn!(
            "group {}: the server does not know GroupProgress ({}); joining again",
            self.group,
            refusal.message
        );
        let mut client = Client::connect(&addr, options)?;
        client.next_subscription_id = self.client.next_subscription_id;
        client.ack_ranges_refused = self.client.ack_ranges_refused;
        let slot: &mut Client = &mut self.client;
        *slot = client;
        self.progress_probe = ProgressProbe::Refused;
        self.credit = CreditWindow::new(self.join.credit);
        self.client
            .connection
            .queue(&ClientFrame::JoinGroup(self.join.clone()))?;
        if self.leaving {
            self.client.connection.queue(&ClientFrame::LeaveGroup {
                subscription_id: self.subscription_id,
            })?;
        }
        self.client.connection.flush()
    }

    /// Sending failed. If a range went out unproven, the server may have closed the connection
    /// because it does not know the frame: read what it sent before closing, and if that is
    /// the refusal, join again with single acks (then the send counts as done).
    fn after_send_error(&mut self, error: ClientError) -> Result<(), ClientError> {
        if !matches!(self.range_probe, RangeProbe::Sent { .. })
            || !matches!(error, ClientError::ConnectionClosed | ClientError::Io(_))
        {
            return Err(error);
        }
        // Events read here were delivered to the membership that is ending: the server gives
        // them to a member again (this one after the rejoin, or another).
        while let Ok(frame) = self.client.connection.receive() {
            match frame {
                ServerFrame::Error(refusal) if self.is_range_refusal(&refusal) => {
                    return self.rejoin_with_single_acks(refusal);
                }
                ServerFrame::Error(other) if other.scope == ErrorScope::Connection => break,
                _ => {}
            }
        }
        Err(error)
    }

    /// The server is older than GroupAckRange and closed the connection at the first range:
    /// connect and join again, acknowledge by id what was acknowledged since that range (lost
    /// with the connection), and send only GroupAck from now on.
    fn rejoin_with_single_acks(&mut self, refusal: ErrorFrame) -> Result<(), ClientError> {
        let Some((addr, options)) = self.client.reconnect.clone() else {
            let mut error = server_error(refusal);
            if let ClientError::Server { message, .. } = &mut error {
                message.push_str(
                    " (the server is older than GroupAckRange: join with ack_ranges(false))",
                );
            }
            return Err(error);
        };
        log::warn!(
            "group {}: the server does not know GroupAckRange ({}); joining again and \
             acknowledging by id from now on",
            self.group,
            refusal.message
        );
        let mut client = Client::connect(&addr, options)?;
        client.next_subscription_id = self.client.next_subscription_id;
        client.ack_ranges_refused = true;
        let slot: &mut Client = &mut self.client;
        *slot = client;
        let mut ids = std::mem::take(&mut self.unproven_acks);
        ids.extend(self.acks.drain(..).filter_map(|ack| match ack {
            QueuedAck::Id(id) => Some(id),
            QueuedAck::Range { .. } => None,
        }));
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(*id));
        self.ack_ranges = false;
        self.ranges_refused = true;
        self.range_probe = RangeProbe::NotSent;
        self.queued_count = 0;
        self.queued_ids.clear();
        self.last_queued_sequence = None;
        self.recent.clear();
        self.delivered = 0;
        self.credit = CreditWindow::new(self.join.credit);
        self.client
            .connection
            .queue(&ClientFrame::JoinGroup(self.join.clone()))?;
        self.queue_ids(&mut ids.clone())?;
        self.acked_before_rejoin.extend(ids);
        if self.leaving {
            self.client.connection.queue(&ClientFrame::LeaveGroup {
                subscription_id: self.subscription_id,
            })?;
        }
        self.client.connection.flush()
    }

    /// Queues GroupAck frames for `ids` (emptied).
    fn queue_ids(&mut self, ids: &mut Vec<EventId>) -> Result<(), ClientError> {
        for chunk in ids.chunks(usize::from(u16::MAX)) {
            self.client
                .connection
                .queue(&ClientFrame::GroupAck(GroupAck {
                    subscription_id: self.subscription_id,
                    delay_ms: 0,
                    ids: chunk.to_vec(),
                }))?;
        }
        ids.clear();
        Ok(())
    }

    /// Sends the queued acks and leaves the group, waiting for the server's End. Events that
    /// were delivered and not acknowledged go to the other members at once; any that arrive
    /// here after the leave are dropped.
    pub fn leave(mut self) -> Result<(), ClientError> {
        self.leave_now()
    }

    /// [`GroupConsumer::leave`] without giving the consumer up (it is ended afterwards).
    pub fn leave_and_wait(&mut self) -> Result<(), ClientError> {
        self.leave_now()
    }

    fn leave_now(&mut self) -> Result<(), ClientError> {
        if self.ended {
            return Ok(());
        }
        self.acks_by_id_unless_proven();
        self.leaving = true;
        let sent = self.queue_acks().and_then(|()| {
            self.client.connection.queue(&ClientFrame::LeaveGroup {
                subscription_id: self.subscription_id,
            })?;
            self.client.connection.flush()
        });
        if let Err(error) = sent {
            self.after_send_error(error)?;
        }
        self.buffered.clear();
        while !self.ended {
            let frame = self
                .client
                .connection
                .receive()
                .map_err(|error| self.end_with(error))?;
            self.on_frame(frame).map_err(|error| self.end_with(error))?;
        }
        Ok(())
    }

    /// True when the next delivery is already buffered, so asking for it will not wait for
    /// the network (a command-line consumer flushes its output when this is false).
    pub fn has_buffered(&mut self) -> Result<bool, ClientError> {
        if !self.buffered.is_empty() || self.ended {
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
                    self.buffered.push_back(delivery);
                    return Ok(true);
                }
                Ok(None) => {}
                Err(error) => return Err(self.end_with(error)),
            }
        }
    }

    /// Waits at most `wait` for the next delivery (sending queued acks first); true when one
    /// is buffered or the membership ended, false when nothing came in time.
    pub fn wait_for_delivery(&mut self, wait: Duration) -> Result<bool, ClientError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if self.has_buffered()? {
                return Ok(true);
            }
            self.flush().map_err(|error| self.end_with(error))?;
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

    /// The next delivery, waiting for it (queued acks are sent before waiting); `Ok(None)`
    /// once the membership has ended.
    pub fn next_delivery(&mut self) -> Result<Option<GroupDelivery>, ClientError> {
        let delivery = self.take_delivery()?;
        if let Some(GroupDelivery::Event(_)) = delivery {
            self.on_event_handed_out()
                .map_err(|error| self.end_with(error))?;
        }
        Ok(delivery)
    }

    fn take_delivery(&mut self) -> Result<Option<GroupDelivery>, ClientError> {
        if let Some(delivery) = self.buffered.pop_front() {
            return Ok(Some(delivery));
        }
        if self.ended {
            return Ok(None);
        }
        if !self.has_buffered()? {
            self.flush().map_err(|error| self.end_with(error))?;
        }
        if let Some(delivery) = self.buffered.pop_front() {
            return Ok(Some(delivery));
        }
        loop {
            let frame = self
                .client
                .connection
                .receive()
                .map_err(|error| self.end_with(error))?;
            if let Some(delivery) = self.on_frame(frame).map_err(|error| self.end_with(error))? {
                return Ok(Some(delivery));
            }
        }
    }

    /// Keeps every event this member holds from its ack time-out while the caller cannot
    /// take deliveries (a command-line consumer whose standard output does not drain): reads
    /// the frames that already arrived, without waiting, into the deliveries not yet handed
    /// out (at most the credit window: credit is granted only as events are handed out, so
    /// the server sends no more), then sends one GroupProgress for every event delivered to
    /// this membership and not acknowledged to the server: those not handed out yet, those
    /// handed out and not acknowledged (the newest 4096), and those whose acks are queued
    /// (a range's inner ids excepted). With nothing held it sends a Ping. Call it at most
    /// every [`GroupConsumer::progress_interval`].
    pub fn progress_held(&mut self) -> Result<(), ClientError> {
        if self.ended {
            return Ok(());
        }
        self.read_ahead().map_err(|error| self.end_with(error))?;
        let mut ids: Vec<EventId> = self.recent.iter().map(|(_, id)| *id).collect();
        ids.extend_from_slice(&self.queued_ids);
        ids.sort_unstable();
        ids.dedup();
        match ids.is_empty() {
            true => self.keep_alive(),
            false => self.progress(&ids),
        }
    }

    /// Reads what already arrived, waiting for nothing, until the credit window's worth of
    /// deliveries waits to be handed out.
    fn read_ahead(&mut self) -> Result<(), ClientError> {
        let held_max = usize::try_from(self.join.credit).unwrap_or(usize::MAX);
        while self.buffered.len() < held_max && !self.ended {
            let frame = match self.client.connection.receive_buffered()? {
                Some(frame) => frame,
                None if self.client.connection.poll_bytes(Duration::ZERO)? => continue,
                None => return Ok(()),
            };
            if let Some(delivery) = self.on_frame(frame)? {
                self.buffered.push_back(delivery);
            }
        }
        Ok(())
    }

    fn end_with(&mut self, error: ClientError) -> ClientError {
        self.ended = true;
        error
    }

    fn on_frame(&mut self, frame: ServerFrame) -> Result<Option<GroupDelivery>, ClientError> {
        let own = self.subscription_id;
        match frame {
            ServerFrame::Event {
                subscription_id,
                event,
            } if subscription_id == own => {
                if self.acked_before_rejoin.remove(&event.id) {
                    // Delivered again before the server read this member's ack of it, which
                    // settles it: the consumer had it already.
                    self.on_event_handed_out()?;
                    self.delivered += 1;
                    return Ok(None);
                }
                if self.recent.len() == RECENT_DELIVERIES_MAX {
                    self.recent.pop_front();
                }
                self.recent.push_back((self.delivered, event.id));
                self.delivered += 1;
                Ok(Some(GroupDelivery::Event(event)))
            }
            ServerFrame::CaughtUp { subscription_id } if subscription_id == own => {
                self.caught_up = true;
                Ok(Some(GroupDelivery::CaughtUp))
            }
            ServerFrame::End {
                subscription_id,
                reason,
            } if subscription_id == own => {
                self.ended = true;
                Ok(Some(GroupDelivery::End(reason)))
            }
            ServerFrame::Error(error)
                if self.progress_probe == ProgressProbe::Sent
                    && error.scope == ErrorScope::Subscription(own)
                    && error.code == ErrorCode::UnknownGroup =>
            {
                // The probe's answer, before the join was read: the server knows the frame.
                self.progress_probe = ProgressProbe::Known;
                Ok(None)
            }
            ServerFrame::Error(refusal) if self.is_progress_refusal(&refusal) => {
                self.rejoin_without_progress(refusal).map(|()| None)
            }
            ServerFrame::Error(error) if error.scope == ErrorScope::Subscription(own) => {
                if error.code == ErrorCode::NotPending {
                    // A late ack: the event was acknowledged elsewhere or parked. The
                    // membership goes on.
                    self.not_pending += 1;
                    log::debug!("group {}: {}", self.group, error.message);
                    return Ok(None);
                }
                self.ended = true;
                Err(server_error(error))
            }
            ServerFrame::Pong { token }
                if self.range_probe == (RangeProbe::Sent { ping_token: token }) =>
            {
                self.range_probe = RangeProbe::Proven;
                self.unproven_acks = Vec::new();
                Ok(None)
            }
            ServerFrame::Error(refusal) if self.is_range_refusal(&refusal) => {
                self.rejoin_with_single_acks(refusal).map(|()| None)
            }
            ServerFrame::Welcome(_) => Err(unexpected(&frame, "an Event")),
            other => self.client.skip_stale(other).map(|()| None),
        }
    }

    /// Grants more credit once half the window has been handed out.
    fn on_event_handed_out(&mut self) -> Result<(), ClientError> {
        if let Some(count) = self.credit.on_delivered() {
            self.client.connection.queue(&ClientFrame::Credit {
                subscription_id: self.subscription_id,
                count,
            })?;
        }
        Ok(())
    }
}

/// A third of the shorter known ack time-out (zero: not known), within
/// [`PROGRESS_INTERVAL_MIN`] and [`PROGRESS_INTERVAL_MAX`].
fn progress_interval_for(own: Duration, group: Duration) -> Duration {
    let known = [own, group].into_iter().filter(|t| !t.is_zero()).min();
    match known {
        None => PROGRESS_INTERVAL_MAX,
        Some(timeout) => {
            let third = Duration::from_millis((timeout.as_millis() as u64).div_ceil(3));
            third.clamp(PROGRESS_INTERVAL_MIN, PROGRESS_INTERVAL_MAX)
        }
    }
}

impl Iterator for GroupConsumer<'_> {
    type Item = Result<Event, ClientError>;

    /// The next event; ends after the membership ended. Waits for new events when caught up.
    fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            match self.next_delivery() {
                Ok(Some(GroupDelivery::Event(event))) => return Some(Ok(event)),
                Ok(Some(GroupDelivery::CaughtUp)) => continue,
                Ok(Some(GroupDelivery::End(_))) | Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl Drop for GroupConsumer<'_> {
    fn drop(&mut self) {
        if !self.ended {
            // Best effort: send what was acknowledged and leave, without waiting for the End
            // (later calls on this client skip it).
            self.acks_by_id_unless_proven();
            let _ = self.queue_acks();
            let _ = self.client.connection.send(&ClientFrame::LeaveGroup {
                subscription_id: self.subscription_id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_progress_interval_is_a_third_of_the_shorter_known_ack_timeout_within_its_bounds() {
        let zero = Duration::ZERO;
        assert_eq!(progress_interval_for(zero, zero), PROGRESS_INTERVAL_MAX);
        // The group's default (30 s) and anything over 3 s: once a second.
        assert_eq!(
            progress_interval_for(zero, 30_000 * MS),
            PROGRESS_INTERVAL_MAX
        );
        // A group ack time-out of 1 s or less, which once a second could not cover.
        assert_eq!(progress_interval_for(zero, 900 * MS), 300 * MS);
        assert_eq!(progress_interval_for(zero, 1000 * MS), 334 * MS);
        // The member's own, lower one wins, and so does the group's when it is lower.
        assert_eq!(progress_interval_for(600 * MS, 30_000 * MS), 200 * MS);
        assert_eq!(progress_interval_for(30_000 * MS, 600 * MS), 200 * MS);
        // Never more often than 10 times a second.
        assert_eq!(progress_interval_for(zero, 150 * MS), PROGRESS_INTERVAL_MIN);
        assert_eq!(progress_interval_for(1 * MS, zero), PROGRESS_INTERVAL_MIN);
    }
}
