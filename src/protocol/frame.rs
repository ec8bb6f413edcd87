//! The frames of wire protocol v1, as Rust values. `protocol.md` is the normative description;
//! `codec/` turns these values into bytes and back, one decoder per direction.

use std::fmt;

pub use crate::event::Order;
use crate::event::{Event, EventId, PurgeRule, StartPosition, VersionVector};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Frame kinds. Client to server: 0x01-0x1F. Server to client: 0x20-0x3F. Peer (cluster)
/// frames: 0x40-0x5F, reserved for the clustering protocol.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const PRODUCE: u8 = 0x02;
    pub const PRODUCE_BATCH: u8 = 0x03;
    pub const SUBSCRIBE: u8 = 0x04;
    pub const CREDIT: u8 = 0x05;
    pub const UNSUBSCRIBE: u8 = 0x06;
    pub const PING: u8 = 0x07;
    pub const STATUS_REQUEST: u8 = 0x08;
    pub const JOIN_GROUP: u8 = 0x09;
    pub const GROUP_ACK: u8 = 0x0A;
    pub const GROUP_NACK: u8 = 0x0B;
    pub const LEAVE_GROUP: u8 = 0x0C;
    pub const SET_REPLICAS: u8 = 0x0D;
    pub const GROUPS_REQUEST: u8 = 0x0E;
    pub const PARKED_REQUEST: u8 = 0x0F;
    pub const GROUP_ADMIN: u8 = 0x10;
    pub const GROUPS_DETAIL_REQUEST: u8 = 0x11;
    pub const GROUP_ACK_RANGE: u8 = 0x1B;
    pub const GROUP_PROGRESS: u8 = 0x1C;
    pub const PRODUCE_IF: u8 = 0x12;
    pub const SET_PRODUCER: u8 = 0x13;
    pub const NAMESPACES_REQUEST: u8 = 0x16;
    pub const TRACE_REQUEST: u8 = 0x17;
    pub const MEMBERS_REQUEST: u8 = 0x14;
    pub const CHANGE_MEMBER: u8 = 0x15;
    pub const INFO_REQUEST: u8 = 0x18;
    pub const PURGE: u8 = 0x19;
    pub const PURGES_REQUEST: u8 = 0x1A;

    pub const WELCOME: u8 = 0x21;
    pub const ACK: u8 = 0x22;
    pub const ERROR: u8 = 0x23;
    pub const EVENT: u8 = 0x24;
    pub const CAUGHT_UP: u8 = 0x25;
    pub const END: u8 = 0x26;
    pub const PONG: u8 = 0x27;
    pub const STATUS: u8 = 0x28;
    pub const SKIPPED: u8 = 0x29;
    pub const GROUPS: u8 = 0x2A;
    pub const PARKED: u8 = 0x2B;
    pub const NAMESPACES: u8 = 0x2E;
    pub const TRACE: u8 = 0x2F;
    pub const MEMBERS: u8 = 0x2C;
    pub const INFO: u8 = 0x30;
    pub const PURGED: u8 = 0x31;
    pub const PURGES: u8 = 0x32;
    pub const GROUPS_DETAIL: u8 = 0x33;

    pub const PEER_FIRST: u8 = 0x40;
    pub const PEER_HELLO: u8 = 0x40;
    pub const PEER_WELCOME: u8 = 0x41;
    pub const PEER_EVENT: u8 = 0x42;
    pub const PEER_CREDIT: u8 = 0x43;
    pub const PEER_MEMBERS: u8 = 0x44;
    pub const PEER_PROOF: u8 = 0x45;
    pub const PEER_ACCEPT: u8 = 0x46;
    pub const PEER_CLOCK: u8 = 0x48;
    pub const PEER_MEMBERSHIP: u8 = 0x49;
    pub const PEER_PURGE: u8 = 0x4B;
    pub const PEER_LAST: u8 = 0x5F;
}

/// A cluster member as peers tell each other about it: its actor id and the address it
/// advertises for peer connections (`host:port` text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub actor_id: u16,
    pub addr: String,
}

/// The size of a handshake nonce and of a handshake proof (an HMAC-SHA256).
pub const PEER_NONCE_SIZE: usize = 32;

/// The most PeerEvent credit a peer may hold out at once (protocol.md section 15, "Replication"):
/// the largest first PeerCredit a side may grant, and the most credit it may ever have granted
/// beyond the PeerEvents it has received. A node's `peer_credit_window` is at most this.
pub const PEER_CREDIT_WINDOW_MAX: u32 = 65_536;

/// The first frame on a peer connection (PeerHello, from the dialer) and its answer
/// (PeerWelcome, from the acceptor): the same content both ways. Each side sends a fresh
/// random nonce; the proofs that follow (PeerProof, PeerAccept) are computed over both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHandshake {
    pub protocol_version: u16,
    pub actor_id: u16,
    /// Where other members can dial this node.
    pub advertised_addr: String,
    /// Fresh for every handshake, unpredictable: the challenge the other side must answer.
    pub nonce: [u8; PEER_NONCE_SIZE],
}

/// The second half of the peer handshake (PeerProof, from the dialer, and PeerAccept, from
/// the acceptor): proof of the cluster secret, then what the sender holds and knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProof {
    /// HMAC-SHA256 keyed with the cluster secret over both nonces, both actor ids and the
    /// sender's role ([`PeerTranscript::proof`](crate::protocol::PeerTranscript::proof)).
    pub proof: [u8; PEER_NONCE_SIZE],
    /// For each actor, the highest counter this node holds: the other side replicates
    /// everything above it.
    pub vector: VersionVector,
    /// Every member this node knows, itself excluded.
    pub members: Vec<Member>,
}

/// What a ChangeMember frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOp {
    /// Remove the member from the cluster: its clock no longer holds id order back, it no
    /// longer counts as a replica, and its handshakes are refused until it is added back.
    Remove = 1,
    /// Lift an earlier removal: the member may connect again.
    Add = 2,
}

/// Remove a member, or add a removed one back (admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeMember {
    pub op: MemberOp,
    pub actor_id: u16,
}

/// One member's entry in the membership that peers replicate to each other (PeerMembership)
/// and persist: last writer wins by `version`, a removal winning a tie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub actor_id: u16,
    /// The address the member was last known at (`host:port`, may be empty).
    pub addr: String,
    pub removed: bool,
    /// Raised by one at every change of this member; 0 for a member never changed.
    pub version: u64,
}

impl MembershipRecord {
    /// True when `self` replaces `other` (a record of the same actor): a higher version, or
    /// the same version and a removal against an addition.
    pub fn supersedes(&self, other: &MembershipRecord) -> bool {
        (self.version, self.removed) > (other.version, other.removed)
    }
}

/// How a member looks in a Members reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipState {
    /// The node that answered.
    Itself = 0,
    /// A peer connection is up.
    Connected = 1,
    /// A dial or handshake is under way.
    Connecting = 2,
    /// Not connected; the next dial waits out its back-off.
    BackingOff = 3,
    /// Removed: refused until added back.
    Removed = 4,
}

/// One member in a Members reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// The member's actor id.
    pub actor_id: u16,
    /// Where it stands.
    pub state: MembershipState,
    /// The version of its membership record (0: never changed).
    pub version: u64,
    /// The address it is dialed at (for this node: the address it advertises).
    pub addr: String,
}

/// How a member looks from the node that answers a status request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// A peer connection is up.
    Connected = 1,
    /// A dial or handshake is under way.
    Connecting = 2,
    /// The last dial failed; the next waits out its back-off.
    BackingOff = 3,
}

/// One member in a [`Status`] reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's actor id.
    pub actor_id: u16,
    /// The address it is dialed at.
    pub addr: String,
    /// Whether it is connected.
    pub state: MemberState,
    /// The member's version vector as far as this node knows it (its handshake vector plus
    /// the events exchanged since).
    pub vector: VersionVector,
    /// Records of this node's log not yet sent to the member (0 when not connected).
    pub lag: u64,
    /// How long the member has been without a connection to this node, in milliseconds of
    /// the server's monotonic clock: since its connection ended, or, if it has not been
    /// connected since this node started, since this node learned of it (a configured
    /// address: since the start). 0 when connected.
    pub disconnected_ms: u64,
}

/// The answer to a status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The answering node's actor id.
    pub actor_id: u16,
    /// The Lamport counter.
    pub counter: u64,
    /// Events stored (retained) in the log.
    pub event_count: u64,
    /// One past the newest durable record (log offsets are local to a node).
    pub durable_end: u64,
    /// For each actor, the highest counter this node holds.
    pub vector: VersionVector,
    /// Every member this node knows.
    pub members: Vec<MemberStatus>,
    /// Where id-order delivery stands on this node.
    pub order: OrderStatus,
    /// Set while this node refuses produces (NotReady) until it has met its members: the
    /// catch-up hold after a start on an empty data directory or after an unclean one.
    pub hold: Option<ProduceHold>,
}

/// The catch-up hold in a [`Status`] reply: whom it waits for, since when, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceHold {
    /// The member it waits for; 0 when it waits for a configured address no handshake has
    /// identified yet, or for no member in particular.
    pub actor_id: u16,
    /// That member's address (empty when not known).
    pub addr: String,
    /// How long produces have been refused, in milliseconds of the server's monotonic clock.
    pub held_ms: u64,
    /// How long until a time-out takes produces anyway (`--catch-up-timeout`,
    /// `--empty-dir-catch-up-timeout`), in milliseconds; 0 when there is no time-out.
    pub timeout_left_ms: u64,
    /// What the hold waits for, in words (the server log's text), such as "member 3 at
    /// 127.0.0.1:3002, not met since the start".
    pub waits_for: String,
}

/// Id order in a [`Status`] reply: how far id-order subscriptions may deliver, what holds
/// them back and what waits (docs/clustering.md, "Id order").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderStatus {
    /// The stable clock: id-order subscriptions deliver events up to this counter.
    pub stable_clock: u64,
    /// The member whose clock keeps the stable clock below this node's own, if any.
    pub held_by: Option<OrderHolder>,
    /// Id-order subscriptions whose next event waits for the stable clock.
    pub waiting_subscriptions: u32,
    /// Events those subscriptions have read and hold in their reorder buffers.
    pub waiting_events: u64,
    /// How long the longest-waiting of them has waited, in milliseconds (it ends with
    /// OrderStalled at the order stall time-out); 0 when none waits.
    pub waiting_ms: u64,
}

/// The member holding id order back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderHolder {
    /// Its actor id; 0 for a configured address no handshake has identified yet.
    pub actor_id: u16,
    /// Its address.
    pub addr: String,
    /// The counter it has promised (PeerClock): the stable clock.
    pub clock: u64,
    /// For how long, in milliseconds of the server's monotonic clock, its clock has held the
    /// stable clock back without moving: since its promise last moved, or since this node's
    /// own clock passed it, whichever is later (for an address never reached: since this node
    /// learned of it).
    pub held_ms: u64,
}

/// The answer to an info request: what the server is and holds (`flo-client info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The server's version, such as "0.1.0".
    pub version: String,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// The fsync policy as `flo --fsync` takes it: `always`, `interval:<ms>` or `never`.
    pub fsync_policy: String,
    /// The server's actor id.
    pub actor_id: u16,
    /// Bytes of segment files in the data directory.
    pub log_bytes: u64,
    /// Events retained in the log.
    pub event_count: u64,
    /// Segment files.
    pub segment_count: u64,
    /// Open client connections (after their handshake).
    pub client_connections: u32,
    /// Open connections to cluster peers.
    pub peer_connections: u32,
    /// Open client subscriptions.
    pub subscriptions: u32,
    /// Consumer groups.
    pub group_count: u32,
}

/// The first frame on every connection, from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u16,
    /// Free text for logs, such as "flo-client 0.1.0".
    pub client_name: String,
    /// Empty when the client has no token.
    pub auth_token: Vec<u8>,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub protocol_version: u16,
    pub server_version: String,
    pub actor_id: u16,
    pub frame_size_max: u32,
    pub namespace_length_max: u32,
    pub event_data_size_max: u32,
    /// Subscriptions one connection may have open at once.
    pub subscriptions_max: u32,
    /// The server closes a connection it has received nothing from for this long, so a
    /// client that may be quiet sends Ping at least every third of it. 0 means never.
    pub idle_timeout_ms: u32,
}

/// One event to append, as a producer sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Where the event goes, such as `/orders/created`.
    pub namespace: String,
    /// The event this one answers or follows, if any.
    pub parent_id: Option<EventId>,
    /// The payload.
    pub data: Vec<u8>,
}

/// A [`NewEvent`] whose namespace and data are borrowed from the received frame's bytes: the
/// server decodes a Produce this way and appends it without an owned copy (issue 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEventView<'a> {
    pub namespace: &'a str,
    pub parent_id: Option<EventId>,
    pub data: &'a [u8],
}

impl NewEventView<'_> {
    /// An owned copy of the viewed event.
    pub fn to_event(self) -> NewEvent {
        NewEvent {
            namespace: self.namespace.to_string(),
            parent_id: self.parent_id,
            data: self.data.to_vec(),
        }
    }
}

impl NewEvent {
    /// A view of this event.
    pub fn view(&self) -> NewEventView<'_> {
        NewEventView {
            namespace: &self.namespace,
            parent_id: self.parent_id,
            data: &self.data,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    /// Chosen by the client; echoed in the [`Ack`] or [`ErrorFrame`].
    pub op_id: u64,
    pub event: NewEvent,
}

/// Several events appended atomically: all or none, with one ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceBatch {
    pub op_id: u64,
    pub events: Vec<NewEvent>,
}

/// What a conditional produce (`ProduceIf`) expects of the namespace of its first event,
/// checked against this node's log (events of earlier produces of the same turn included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// No condition (KurrentDB's "any").
    Any,
    /// The namespace has no events.
    NoEvents,
    /// The namespace's newest event has this id.
    LastIs(EventId),
    /// The namespace has at least one event.
    HasEvents,
}

/// A batch appended only if the namespace of its first event meets `expect`: all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceIf {
    pub op_id: u64,
    pub expect: Expectation,
    pub events: Vec<NewEvent>,
}

/// Events appended; a batch of `count` events got consecutive counters starting at
/// `first_id`, all with the same actor and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The op id of the produce or batch.
    pub op_id: u64,
    /// The id of the first (or only) event.
    pub first_id: EventId,
    /// How many events were appended.
    pub count: u32,
    /// When they were appended: wall-clock milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Chosen by the client, unique among its open subscriptions on this connection.
    pub subscription_id: u32,
    /// A namespace glob; see protocol.md.
    pub glob: String,
    pub start: StartPosition,
    /// Stop after this many events; 0 means no limit.
    pub limit: u64,
    /// Keep delivering new events after the stored ones run out (flags bit 0).
    pub tail: bool,
    /// When a read meets a damaged, unreadable range of the server's log, skip it (the server
    /// sends [`ServerFrame::Skipped`] with the number of records lost and goes on) instead of
    /// ending the subscription with `StorageFailure` (flags bit 1).
    pub skip_damaged: bool,
    /// The order events are delivered in (flags bit 2 asks for [`Order::Id`]).
    pub order: Order,
    /// How many events the server may send before it needs more [`ClientFrame::Credit`].
    pub credit: u32,
}

/// Join a consumer group (docs/consumers.md): events of the group are delivered to this
/// connection as Event frames with `subscription_id`, under Credit like a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// Chosen by the client, unique among its subscriptions and joins on this connection.
    pub subscription_id: u32,
    /// The group's name; the group is created on the first join.
    pub group: String,
    /// The group's namespace glob; must equal the existing group's.
    pub glob: String,
    /// Where a new group starts; ignored when the group exists.
    pub start: StartPosition,
    /// Events the server may send before it needs more Credit.
    pub credit: u32,
    /// An event not acknowledged this long after its delivery is redelivered; 0: the default.
    pub ack_timeout_ms: u32,
    /// Deliveries before an event is parked; 0: the default.
    pub max_deliveries: u16,
    /// Unacknowledged events this member may hold; 0: the default.
    pub max_in_flight: u32,
}

/// Acknowledge (GroupAck) or refuse (GroupNack, redelivered after `delay_ms`) group events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAck {
    pub subscription_id: u32,
    /// GroupNack only: how long to wait before the events are redelivered (0 in a GroupAck).
    pub delay_ms: u32,
    pub ids: Vec<EventId>,
}

/// Acknowledge (GroupAckRange) every event in flight to this membership that the server
/// delivered to it from the delivery of `first` to the delivery of `last`, both included, in
/// this membership's delivery order (protocol.md section 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAckRange {
    pub subscription_id: u32,
    pub first: EventId,
    pub last: EventId,
}

/// A group's settings (docs/consumers.md, "Settings"): kept with the group and journaled. In a
/// GroupAdmin create a 0 field means the server's default, in an update "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupSettings {
    /// An event not acknowledged this long after a delivery is delivered again.
    pub ack_timeout_ms: u32,
    /// Deliveries after which an event not acknowledged is parked.
    pub max_deliveries: u16,
    /// Unacknowledged events one member may hold.
    pub max_in_flight: u32,
}

/// Ask for the state of consumer groups (admin): one group by name, or every group whose
/// name sorts after `after` (empty: from the first), as many as fit one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsRequest {
    /// The group to describe; empty for a list.
    pub group: String,
    /// A list starts after this name (the last name of the previous reply); empty: the first.
    pub after: String,
}

/// Ask for a group's parked events at or above a log offset (admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRequest {
    pub group: String,
    /// The first log offset to list (0: from the first parked event).
    pub from_offset: u64,
}

/// What a [`GroupAdmin`] frame does to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAdminAction {
    /// Every parked event becomes pending again (waiting for delivery, delivery count 0).
    ReplayParked,
    /// The parked events with these ids become pending again, as with `ReplayParked`. Every
    /// id must be parked in the group and there may be at most `parked_list_max` of them;
    /// otherwise nothing is replayed (`NotParked`).
    ReplayIds(Vec<EventId>),
    /// The parked events whose ids lie from `from` to `to` (both included, in id order)
    /// become pending again, as with `ReplayParked`; none is not an error.
    ReplayRange { from: EventId, to: EventId },
    /// Move the group to a new start position: acknowledgements and pending events are
    /// forgotten, parked events stay parked. Refused while the group has members.
    Reset(StartPosition),
    /// Delete the group and all its state. Refused while the group has members.
    Delete,
    /// Create the group with this glob, start position and settings (0 fields: the server's
    /// defaults). Of an existing group with the same glob and settings: nothing changes.
    Create {
        glob: String,
        start: StartPosition,
        settings: GroupSettings,
    },
    /// Change the group's settings (0 fields: unchanged); allowed while members are joined.
    UpdateSettings(GroupSettings),
}

/// Change a group (admin); answered by [`ServerFrame::Groups`] with the group afterwards (no
/// group after a delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAdmin {
    pub group: String,
    pub action: GroupAdminAction,
}

/// One group as a Groups frame describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// The group's namespace glob.
    pub glob: String,
    /// Connections joined now.
    pub members: u16,
    /// Events delivered to members and not yet acknowledged, all members together.
    pub in_flight: u32,
    /// Events delivered and not acknowledged: in flight or waiting for redelivery.
    pub pending: u64,
    /// Parked events.
    pub parked: u64,
    /// The acknowledged position: every matching record below this log offset is
    /// acknowledged or parked.
    pub floor: u64,
    /// The delivered position: the next log offset the group looks at for new events.
    pub next: u64,
    /// Acknowledged records at or above the floor.
    pub acked_above_floor: u64,
    /// Records of the log the group has not looked at yet (durable end - next): an upper
    /// bound on the matching events not yet delivered, exact for a glob matching everything.
    pub lag: u64,
    /// Milliseconds since the first delivery of the oldest (lowest offset) pending event; 0
    /// when nothing is pending.
    pub oldest_pending_age_ms: u64,
}

/// One member of a group as a GroupsDetail frame lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberInfo {
    /// The subscription id of the member's JoinGroup.
    pub subscription_id: u32,
    /// The member's connection: its peer address, or the server's connection number.
    pub connection: String,
    /// Events delivered to this member and not acknowledged.
    pub in_flight: u32,
    /// The most it may hold: the group's `max_in_flight`, or the member's own lower cap.
    pub max_in_flight: u32,
    /// Event frames the server may still send it (its credit).
    pub credit: u64,
}

/// One group as a GroupsDetail frame describes it: a Groups entry, the group's settings, and
/// (for a request that names the group) its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    /// The group as a Groups frame describes it.
    pub info: GroupInfo,
    /// The group's ack time-out, max deliveries and max in flight (per member).
    pub settings: GroupSettings,
    /// At most `groups.members_listed_max` members, in join order (`info.members` counts
    /// all); empty in a list of groups.
    pub members: Vec<GroupMemberInfo>,
}

/// The answer to a GroupsDetailRequest, and to a GroupAdmin create or settings update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsDetailReply {
    pub durable_end: u64,
    pub more: bool,
    pub groups: Vec<GroupDetail>,
}

/// The answer to a `GroupsRequest` or `GroupAdmin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsReply {
    /// One past the newest durable record of the server's log.
    pub durable_end: u64,
    /// More groups follow a list: ask again with `after` = the last name.
    pub more: bool,
    /// The groups, in bytewise name order.
    pub groups: Vec<GroupInfo>,
}

/// Ask for a page of the namespaces a glob matches (protocol.md section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacesRequest {
    /// Which namespaces (a glob, section 8; `/**` for all).
    pub glob: String,
    /// The page starts after this name (the last name of the previous page); empty: the first.
    pub after: String,
}

/// One namespace of a `Namespaces` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace.
    pub name: String,
    /// Its records in the server's log.
    pub event_count: u64,
    /// Its oldest retained event (in log order), or none when retention deleted it while the
    /// listing ran.
    pub first_id: EventId,
    /// That event's timestamp (0 with no event).
    pub first_timestamp_ms: u64,
    /// Its newest event (in log order), or none as `first_id`.
    pub last_id: EventId,
    /// That event's timestamp (0 with no event).
    pub last_timestamp_ms: u64,
}

/// The answer to a `NamespacesRequest`: namespaces in bytewise name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacesReply {
    /// More namespaces follow: ask again with `after` = the last name.
    pub more: bool,
    /// The namespaces of the page.
    pub namespaces: Vec<NamespaceInfo>,
}

/// One event of a trace: where it stands relative to the traced event, and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// 0 for the traced event, -1 for its parent, -2 for the parent's parent, ...; 1 for its
    /// children, 2 for theirs, ...
    pub depth: i16,
    /// The event's id.
    pub id: EventId,
    /// Its parent's id.
    pub parent_id: Option<EventId>,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// Its namespace.
    pub namespace: String,
}

/// Part of the answer to a `TraceRequest`: entries in order (the ancestors from the oldest
/// down, the traced event, then the descendants level by level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceReply {
    /// More Trace frames of this trace follow.
    pub more: bool,
    /// The trace stopped at a limit (depth or events): events are missing from it.
    pub truncated: bool,
    /// The entries of this frame.
    pub entries: Vec<TraceEntry>,
}

/// One parked event: where it is in the log and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedEvent {
    /// Where the event is in the server's log.
    pub offset: u64,
    /// The event's id.
    pub id: EventId,
}

/// The answer to a `ParkedRequest`: parked events in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedReply {
    /// The group's name.
    pub group: String,
    /// More parked events follow: ask again from the last offset + 1.
    pub more: bool,
    /// The parked events, in log order.
    pub events: Vec<ParkedEvent>,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The subscription's limit was reached.
    LimitReached = 1,
    /// A non-tail subscription delivered every stored event.
    EndOfStream = 2,
    /// The client sent Unsubscribe.
    Unsubscribed = 3,
}

/// What an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorScope {
    /// The connection as a whole; the server closes it after sending the error.
    Connection,
    /// The produce or batch with this op id.
    Produce(u64),
    /// The subscription with this id; it is ended.
    Subscription(u32),
}

/// Why the server refused something (protocol.md lists the codes and what each closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The bytes are not a valid frame. Closes the connection.
    MalformedFrame = 1,
    /// The client's protocol version is not supported. Closes the connection.
    UnsupportedVersion = 2,
    /// A frame's length is over `frame_size_max`. Closes the connection.
    FrameTooLarge = 3,
    /// A frame other than Hello came before the handshake. Closes the connection.
    HandshakeRequired = 4,
    /// The auth token was refused, or a peer's handshake proof does not match the cluster
    /// secret. Closes the connection.
    AuthFailed = 5,
    /// The namespace is not valid. The connection stays open.
    InvalidNamespace = 6,
    /// The event data is over `event_data_size_max`. The connection stays open.
    EventTooLarge = 7,
    /// The subscription's glob is not valid. The connection stays open.
    InvalidGlob = 8,
    /// The server could not make the events durable (disk full, I/O error); they were not
    /// appended. The connection stays open.
    StorageFailure = 9,
    /// The subscription id is already in use. The connection stays open.
    DuplicateSubscription = 10,
    /// Credit or Unsubscribe for a subscription that is not open. The connection stays open.
    UnknownSubscription = 11,
    /// The server is at its connection limit. Closes the connection.
    TooManyConnections = 12,
    /// The handshake or idle time-out passed. Closes the connection.
    Timeout = 13,
    /// The server is shutting down. Closes the connection.
    ShuttingDown = 14,
    /// A frame that this side of this connection may not send (for example a server frame from
    /// a client, or a peer frame on a client connection). Closes the connection.
    UnexpectedFrame = 15,
    /// The connection has as many subscriptions open as `subscriptions_max`. Stays open.
    TooManySubscriptions = 16,
    /// A batch with no events, or with more than the batch limit. Stays open.
    InvalidBatch = 17,
    /// A peer handshake named this server's own actor id (a node dialed itself, or two nodes
    /// share an id). Closes the connection.
    ActorIdConflict = 18,
    /// A second connection between the same two nodes; the one dialed by the lower actor id
    /// is kept. Closes the connection.
    DuplicatePeerConnection = 19,
    /// The server does not accept produces yet (after a restart with a non-`always` fsync
    /// policy it first catches up with its peers). Retry later. Stays open.
    NotReady = 20,
    /// The connection passed a per-connection memory limit (unsent output over
    /// `output_bytes_hard_max`, or input, output and subscriptions over
    /// `connection_memory_max`). Closes the connection.
    ResourceLimit = 21,
    /// A Subscribe's start cursor has more vector entries than `cursor_entries_max`. Stays
    /// open.
    CursorTooLarge = 22,
    /// The port speaks TLS and the client sent plaintext; sent in plaintext, then the
    /// connection closes (protocol.md, "Transport security").
    TlsRequired = 23,
    /// The connection's principal may not do this: a produce to a namespace, or a subscription
    /// to a glob, outside its permissions, or a StatusRequest without admin (docs/security.md).
    /// Only that operation is refused; the connection stays open.
    PermissionDenied = 24,
    /// GroupAck, GroupAckRange, GroupNack, GroupProgress or LeaveGroup for a subscription id
    /// that is not a group membership on this connection; the message names the frame. Stays
    /// open.
    UnknownGroup = 25,
    /// A GroupAck or GroupNack named an event that is not pending in the group (already
    /// acknowledged, parked, or never delivered), a GroupProgress one not in flight to the
    /// membership, or a GroupAckRange a bound that is not. The membership stays. Stays open.
    NotPending = 26,
    /// A JoinGroup's group name is empty, too long or has control characters. Stays open.
    InvalidGroupName = 27,
    /// A JoinGroup named an existing group with a different glob. Stays open.
    GroupGlobMismatch = 28,
    /// A JoinGroup would create a group beyond `groups_max`, or join one past its member
    /// limit. Stays open.
    TooManyGroups = 29,
    /// A produce asked for more replicas than held its events within the replication
    /// time-out; the events stay appended and keep replicating. Stays open.
    ReplicationTimeout = 30,
    /// A GroupsRequest, ParkedRequest or GroupAdmin named a group that does not exist. Stays
    /// open.
    NoSuchGroup = 31,
    /// A GroupAdmin reset or delete of a group that has members joined. Stays open.
    GroupInUse = 32,
    /// With an auth file: a JoinGroup would create a group beyond its principal's quota of
    /// created groups (`groups.per_principal_max`). Stays open.
    GroupQuotaExceeded = 33,
    /// A GroupAdmin replay of chosen parked events named an id that is not parked in the
    /// group, or more ids than `parked_list_max`; nothing was replayed. Stays open.
    NotParked = 42,
    /// A ProduceIf's expectation did not hold; nothing was appended. The message begins with
    /// the namespace's actual last id (25 digits) or `none`. Stays open.
    ExpectationFailed = 35,
    /// An idempotent produce repeated a sequence number the server has no ack for (older
    /// than its window, or the produce was refused). Nothing was appended. Stays open.
    SequenceUnknown = 36,
    /// A peer sent a PeerEvent of an actor it may not speak for: not itself, not this node,
    /// not a member this node knows, and not in the peer's handshake vector
    /// (docs/clustering.md, "Which actors a peer may send"). Closes the peer connection.
    ActorNotAllowed = 40,
    /// A NamespacesRequest or TraceRequest while the connection's previous one is still being
    /// answered.
    /// Stays open.
    LookupBusy = 37,
    /// A TraceRequest named an id the server's log does not hold. Stays open.
    NoSuchEvent = 38,
    /// An id-order subscription's next event waited longer than the order stall time-out
    /// for the cluster's clocks to pass it (a member is down or cut off). The subscription
    /// is ended; the connection stays open.
    OrderStalled = 44,
    /// The peer's actor was removed from the cluster (`flo-client cluster remove`) and has
    /// not been added back: its handshake is refused. Closes the connection.
    MemberRemoved = 45,
    /// A ChangeMember names this node itself, an actor that is not a member, or adds back a
    /// member that was not removed.
    InvalidMemberChange = 46,
    /// A Purge of a new glob and kind when the server already holds `purge_rules_max` purge
    /// rules; nothing changed. Scope connection.
    PurgeRulesFull = 47,
    /// A Purge whose bound lies ahead of the server: a time past its clock, or an id past the
    /// next one it would issue. Nothing changed. Scope connection.
    PurgeBoundAhead = 48,
    /// A GroupAdmin create or settings update asked for a setting beyond the server's limits
    /// (`groups.ack_timeout_max`, `groups.in_flight_max`). Nothing changed. Scope connection.
    InvalidGroupSettings = 49,
    /// A GroupAdmin create named an existing group (same glob) with other settings. Nothing
    /// changed; change settings with the update action. Scope connection.
    GroupSettingsMismatch = 50,
    /// After SetProducer, a produce of a connection whose producer id a newer connection took
    /// over with its own SetProducer (the newest wins). Nothing was appended. Stays open.
    ProducerFenced = 51,
    /// A code this build does not know, from a newer server (never sent: a decoder maps every
    /// unknown number to it and puts the number at the start of the message). protocol.md: a
    /// client handles such an error by its scope.
    Unknown = 0,
}

impl ErrorCode {
    /// The code with this number, if it is one.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        let all = [
            MalformedFrame,
            UnsupportedVersion,
            FrameTooLarge,
            HandshakeRequired,
            AuthFailed,
            InvalidNamespace,
            EventTooLarge,
            InvalidGlob,
            StorageFailure,
            DuplicateSubscription,
            UnknownSubscription,
            TooManyConnections,
            Timeout,
            ShuttingDown,
            UnexpectedFrame,
            TooManySubscriptions,
            InvalidBatch,
            ActorIdConflict,
            DuplicatePeerConnection,
            NotReady,
            ResourceLimit,
            CursorTooLarge,
            TlsRequired,
            PermissionDenied,
            UnknownGroup,
            NotPending,
            InvalidGroupName,
            GroupGlobMismatch,
            TooManyGroups,
            ReplicationTimeout,
            NoSuchGroup,
            GroupInUse,
            GroupQuotaExceeded,
            NotParked,
            ExpectationFailed,
            SequenceUnknown,
            LookupBusy,
            NoSuchEvent,
            ActorNotAllowed,
            OrderStalled,
            MemberRemoved,
            InvalidMemberChange,
            PurgeRulesFull,
            PurgeBoundAhead,
            InvalidGroupSettings,
            GroupSettingsMismatch,
            ProducerFenced,
        ];
        all.into_iter().find(|c| *c as u16 == code)
    }

    /// True when the server closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        use ErrorCode::*;
        match self {
            MalformedFrame
            | UnsupportedVersion
            | FrameTooLarge
            | HandshakeRequired
            | AuthFailed
            | TooManyConnections
            | Timeout
            | ShuttingDown
            | UnexpectedFrame
            | ActorIdConflict
            | DuplicatePeerConnection
            | ResourceLimit
            | TlsRequired
            | ActorNotAllowed
            | MemberRemoved => true,
            InvalidNamespace
            | EventTooLarge
            | InvalidGlob
            | StorageFailure
            | DuplicateSubscription
            | UnknownSubscription
            | TooManySubscriptions
            | InvalidBatch
            | NotReady
            | CursorTooLarge
            | PermissionDenied
            | UnknownGroup
            | NotPending
            | InvalidGroupName
            | GroupGlobMismatch
            | TooManyGroups
            | ReplicationTimeout
            | NoSuchGroup
            | GroupInUse
            | GroupQuotaExceeded
            | NotParked
            | ExpectationFailed
            | SequenceUnknown
            | LookupBusy
            | NoSuchEvent
            | OrderStalled
            | InvalidMemberChange
            | PurgeRulesFull
            | PurgeBoundAhead
            | InvalidGroupSettings
            | GroupSettingsMismatch
            | ProducerFenced
            | Unknown => false,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, *self as u16)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    pub scope: ErrorScope,
    pub code: ErrorCode,
    /// Human-readable detail, for logs and users.
    pub message: String,
}

/// A frame a client sends to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Hello(Hello),
    Produce(Produce),
    ProduceBatch(ProduceBatch),
    Subscribe(Subscribe),
    Credit {
        subscription_id: u32,
        count: u32,
    },
    Unsubscribe {
        subscription_id: u32,
    },
    Ping {
        token: u64,
    },
    /// Ask for [`ServerFrame::Status`].
    StatusRequest {
        /// Option bit 0: the client reads the produce hold fields, so the server sends them
        /// while it holds produces ([`Status::hold`]). Without it the Status has the layout
        /// of the first version, which every client reads (protocol.md section 14).
        hold: bool,
    },
    /// Join a consumer group.
    JoinGroup(JoinGroup),
    /// These group events are done.
    GroupAck(GroupAck),
    /// Redeliver these group events after a delay.
    GroupNack(GroupAck),
    /// Leave the group; its unacknowledged events are redelivered.
    LeaveGroup {
        subscription_id: u32,
    },
    /// How many members must hold each later produce of this connection durably before its
    /// ack (0: the server's `--min-replicas`). No reply.
    SetReplicas {
        replicas: u8,
    },
    /// Ask for [`ServerFrame::Groups`] (admin).
    GroupsRequest(GroupsRequest),
    /// Ask for [`ServerFrame::Parked`] (admin).
    ParkedRequest(ParkedRequest),
    /// Replay parked events, reset or delete a group (admin).
    GroupAdmin(GroupAdmin),
    /// Ask for [`ServerFrame::GroupsDetail`] (admin).
    GroupsDetailRequest(GroupsRequest),
    /// These group events, a run of one membership's deliveries, are done.
    GroupAckRange(GroupAckRange),
    /// These group events, in flight to this membership, are still being worked on: their
    /// ack time-outs start again (`delay_ms` is unused, 0).
    GroupProgress(GroupAck),
    /// A batch appended only if its first event's namespace meets an expectation.
    ProduceIf(ProduceIf),
    /// Later produces of this connection are numbered `next_sequence`, `next_sequence + 1`,
    /// ... for producer `producer_id` (0: not idempotent), so a retried one is stored once.
    /// No reply.
    SetProducer {
        producer_id: u64,
        next_sequence: u64,
    },
    /// Ask for [`ServerFrame::Info`].
    InfoRequest,
    /// Ask for [`ServerFrame::Namespaces`].
    NamespacesRequest(NamespacesRequest),
    /// Ask for the trace of an event: [`ServerFrame::Trace`] frames.
    TraceRequest {
        id: EventId,
    },
    /// Ask for [`ServerFrame::Members`] (admin).
    MembersRequest,
    /// Remove a member or add one back (admin); answered with [`ServerFrame::Members`].
    ChangeMember(ChangeMember),
    /// Purge the namespaces a glob matches below a bound (admin); answered with
    /// [`ServerFrame::Purged`] once the purge is durable.
    Purge(PurgeRule),
    /// Ask for [`ServerFrame::Purges`] (admin).
    PurgesRequest,
}

/// A frame a server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    Welcome(Welcome),
    Ack(Ack),
    Error(ErrorFrame),
    Event {
        subscription_id: u32,
        event: Event,
    },
    CaughtUp {
        subscription_id: u32,
    },
    End {
        subscription_id: u32,
        reason: EndReason,
    },
    Pong {
        token: u64,
    },
    Status(Status),
    /// Retention deleted `count` records this subscription had not read yet; delivery goes on
    /// after them. Does not use credit.
    Skipped {
        subscription_id: u32,
        count: u64,
    },
    /// Consumer groups and their lag.
    Groups(GroupsReply),
    /// A group's parked events.
    Parked(ParkedReply),
    /// The answer to [`ClientFrame::InfoRequest`].
    Info(Info),
    /// The answer to [`ClientFrame::NamespacesRequest`].
    Namespaces(NamespacesReply),
    /// Part of the answer to [`ClientFrame::TraceRequest`].
    Trace(TraceReply),
    /// The answer to [`ClientFrame::MembersRequest`] and [`ClientFrame::ChangeMember`]: this
    /// node, every member it knows and every removed one.
    Members(Vec<MemberEntry>),
    /// The answer to [`ClientFrame::Purge`]: the purge is durable on this node.
    Purged(Purged),
    /// The answer to [`ClientFrame::PurgesRequest`].
    Purges(PurgesReply),
    /// Consumer groups with their settings and members.
    GroupsDetail(GroupsDetailReply),
}

/// The answer to a Purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The purge as asked.
    pub rule: PurgeRule,
    /// False when a purge of the same glob and kind with an equal or later bound was already
    /// in force (nothing changed).
    pub changed: bool,
}

/// A per-namespace retention rule as the Purges frame reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionInfo {
    /// The namespaces the rule applies to.
    pub glob: String,
    /// How long their events are kept, in milliseconds.
    pub keep_ms: u64,
    /// Events of the glob older than this (milliseconds since the epoch) are hidden now; 0
    /// before the server first applied the rule.
    pub cutoff_ms: u64,
}

/// The purges and per-namespace retention rules in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgesReply {
    /// The purges, oldest (glob, kind) first.
    pub purges: Vec<PurgeRule>,
    /// The per-namespace retention rules, in configuration order.
    pub retention: Vec<RetentionInfo>,
}

/// A frame between two cluster peers (the established ones only after the PeerHello,
/// PeerWelcome, PeerProof, PeerAccept handshake).
///
/// The Error frame (kind 0x23) is shared with [`ServerFrame`]: a peer that refuses a handshake
/// or closes a peer connection sends the same Error frame a server sends a client, so it is a
/// variant of both enums with one kind byte and one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFrame {
    PeerHello(PeerHandshake),
    PeerWelcome(PeerHandshake),
    /// The dialer's proof of the secret, its vector and members (after PeerWelcome).
    PeerProof(PeerProof),
    /// The acceptor's proof of the secret, its vector and members (after a valid PeerProof).
    PeerAccept(PeerProof),
    /// One replicated event, in the sender's log order.
    PeerEvent(Event),
    /// The receiver may be sent `count` more PeerEvent frames; 0 is a keep-alive.
    PeerCredit {
        count: u32,
    },
    /// The sender's member list changed; this is all of it.
    PeerMembers(Vec<Member>),
    /// The sender's stable clock: every event with a counter at or below `counter` that the
    /// sender holds or will ever hold has been sent to the receiver before this frame (or
    /// the receiver holds it). Id-order subscriptions wait for it (protocol.md, section 15).
    PeerClock {
        counter: u64,
    },
    /// Membership records the sender holds (removals and additions, protocol.md section
    /// 15): the receiver keeps, per actor, the one that supersedes the other.
    PeerMembership(Vec<MembershipRecord>),
    /// A purge the sender holds (a tombstone): the receiver merges it into its own purges
    /// (docs/operations.md, "Purges in a cluster").
    PeerPurge(PurgeRule),
    /// The sender refuses the handshake or closes the connection.
    Error(ErrorFrame),
}

/// The first frame a server accepts on a new connection: Hello from a client, or PeerHello
/// from a cluster peer that dialed it. Decoding decides which role the connection has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpeningFrame {
    Hello(Hello),
    PeerHello(PeerHandshake),
}
