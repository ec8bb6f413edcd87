"""A small, dependency-free Python client for the flo wire protocol, version 1.

Written from protocol.md alone. Standard library only (socket, struct).

    from flo_client import FloClient, Start

    with FloClient.connect("127.0.0.1", 3000) as c:
        ack = c.produce("/food/breakfast/eggs", b"scrambled")
        print(ack.first_id.text())              # 0000000000000000000100001
        sub = c.subscribe("/food/**", Start.beginning(), tail=True, credit=100)
        for item in sub:                         # Event, then CaughtUp, ...
            ...

The client is synchronous and single-threaded: frames are read only while the caller waits for
something (a reply, the next item of a subscription, a Pong). Frames for other operations read
meanwhile are kept and handed out when asked for. One client must not be shared between threads
without a lock.
"""

from __future__ import annotations

import collections
import os
import logging
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

PROTOCOL_VERSION = 1
PRE_WELCOME_FRAME_MAX = 64 * 1024

# Frame kinds (protocol.md section 3).
HELLO, PRODUCE, PRODUCE_BATCH, SUBSCRIBE, CREDIT, UNSUBSCRIBE, PING = range(0x01, 0x08)
WELCOME, ACK, ERROR, EVENT, CAUGHT_UP, END, PONG = range(0x21, 0x28)
STATUS_REQUEST, STATUS = 0x08, 0x28  # section 14
INFO_REQUEST, INFO = 0x18, 0x30  # section 14: what the server is and holds
SET_REPLICAS = 0x0D  # section 6
PRODUCE_IF, SET_PRODUCER = 0x12, 0x13  # section 6: conditional and idempotent produce
NAMESPACES_REQUEST, NAMESPACES = 0x16, 0x2E  # section 6: listing namespaces
TRACE_REQUEST, TRACE = 0x17, 0x2F  # section 6: the trace of an event
SKIPPED = 0x29  # section 7: retention deleted records a subscription had not read
# Consumer groups (section 16).
JOIN_GROUP, GROUP_ACK, GROUP_NACK, LEAVE_GROUP = 0x09, 0x0A, 0x0B, 0x0C
GROUPS_REQUEST, PARKED_REQUEST, GROUP_ADMIN = 0x0E, 0x0F, 0x10
GROUPS, PARKED = 0x2A, 0x2B
ADMIN_REPLAY_PARKED, ADMIN_RESET, ADMIN_DELETE, ADMIN_REPLAY_IDS, ADMIN_REPLAY_RANGE = 1, 2, 3, 4, 5
ADMIN_CREATE, ADMIN_UPDATE_SETTINGS = 6, 7
GROUPS_DETAIL_REQUEST, GROUP_ACK_RANGE, GROUPS_DETAIL = 0x11, 0x1B, 0x33
GROUP_PROGRESS = 0x1C
# Purges and per-namespace retention (section 17).
PURGE, PURGES_REQUEST, PURGED, PURGES = 0x19, 0x1A, 0x31, 0x32
PURGE_BEFORE_ID, PURGE_BEFORE_TIME = 1, 2
# Cluster membership (section 14): MembersRequest, ChangeMember, Members.
MEMBERS_REQUEST, CHANGE_MEMBER, MEMBERS = 0x14, 0x15, 0x2C
MEMBER_REMOVE, MEMBER_ADD = 1, 2
MEMBER_STATES = {0: "self", 1: "connected", 2: "connecting", 3: "backing off", 4: "removed"}

log = logging.getLogger("flo_client")

# Error scopes (section 11).
SCOPE_CONNECTION, SCOPE_PRODUCE, SCOPE_SUBSCRIPTION = 0, 1, 2
SCOPE_NAMES = {0: "connection", 1: "produce", 2: "subscription"}

ERROR_CODES = {
    1: "MalformedFrame",
    2: "UnsupportedVersion",
    3: "FrameTooLarge",
    4: "HandshakeRequired",
    5: "AuthFailed",
    6: "InvalidNamespace",
    7: "EventTooLarge",
    8: "InvalidGlob",
    9: "StorageFailure",
    10: "DuplicateSubscription",
    11: "UnknownSubscription",
    12: "TooManyConnections",
    13: "Timeout",
    14: "ShuttingDown",
    15: "UnexpectedFrame",
    16: "TooManySubscriptions",
    17: "InvalidBatch",
    18: "ActorIdConflict",
    19: "DuplicatePeerConnection",
    20: "NotReady",
    21: "ResourceLimit",
    22: "CursorTooLarge",
    23: "TlsRequired",
    24: "PermissionDenied",
    25: "UnknownGroup",
    26: "NotPending",
    27: "InvalidGroupName",
    28: "GroupGlobMismatch",
    29: "TooManyGroups",
    30: "ReplicationTimeout",
    31: "NoSuchGroup",
    32: "GroupInUse",
    33: "GroupQuotaExceeded",
    35: "ExpectationFailed",
    36: "SequenceUnknown",
    37: "LookupBusy",
    38: "NoSuchEvent",
    42: "NotParked",
    44: "OrderStalled",
    45: "MemberRemoved",
    46: "InvalidMemberChange",
    47: "PurgeRulesFull",
    48: "PurgeBoundAhead",
    49: "InvalidGroupSettings",
    50: "GroupSettingsMismatch",
    51: "ProducerFenced",
}

# ProduceIf expectations (section 6).
EXPECT_ANY, EXPECT_NO_EVENTS, EXPECT_LAST_IS, EXPECT_HAS_EVENTS = 0, 1, 2, 3
CLOSING_CODES = {1, 2, 3, 4, 5, 12, 13, 14, 15, 18, 19, 21}
# A newer connection announced the same producer id (protocol.md, SetProducer).
PRODUCER_FENCED = 51

# End reasons (section 7).
END_REASONS = {1: "LimitReached", 2: "EndOfStream", 3: "Unsubscribed"}
LIMIT_REACHED, END_OF_STREAM, UNSUBSCRIBED = 1, 2, 3

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


# ---------------------------------------------------------------------------------------------
# Errors


class FloError(Exception):
    """An Error frame from the server.

    `code` is the numeric code, `name` its name, `scope` one of "connection", "produce",
    "subscription", and `target` the op id or subscription id (None for connection scope).
    """

    def __init__(self, scope: int, target: Optional[int], code: int, message: str):
        self.scope_code = scope
        self.scope = SCOPE_NAMES[scope]
        self.target = target
        self.code = code
        # An unknown code (a newer server option, protocol.md section 11) is handled by its
        # scope: with scope connection the connection is closed.
        self.name = ERROR_CODES.get(code, f"Unknown{code}")
        self.message = message
        where = self.scope if target is None else f"{self.scope} {target}"
        super().__init__(f"{self.name} ({code}) [{where}]: {message}")

    @property
    def closes_connection(self) -> bool:
        if self.code not in ERROR_CODES:
            return self.scope == "connection"
        return self.code in CLOSING_CODES

    @property
    def actual_last_id(self) -> Optional[Tuple[Optional["EventId"]]]:
        """For ExpectationFailed: a 1-tuple with the namespace's actual newest id (None when it
        has no events), parsed from the start of the message (protocol.md section 6); else None."""
        if self.code != 35:
            return None
        head = self.message.split(":", 1)[0]
        return (None,) if head == "none" else (EventId.parse(head),)


class ProtocolError(Exception):
    """The server sent bytes this client cannot decode or match; the connection is closed."""


class ConnectionClosed(Exception):
    """The connection closed (after a closing Error, if `error` is set)."""

    def __init__(self, message: str, error: Optional[FloError] = None):
        self.error = error
        super().__init__(message if error is None else f"{message}: {error}")


# ---------------------------------------------------------------------------------------------
# Ids and cursors


@dataclass(frozen=True, order=True)
class EventId:
    """An event id: ordered by counter, then actor. Counter 0 means "no id"."""

    counter: int
    actor: int

    def text(self) -> str:
        """The 25-digit text form: 20-digit counter, then 5-digit actor."""
        return f"{self.counter:020d}{self.actor:05d}"

    def __str__(self) -> str:
        return self.text()

    def is_none(self) -> bool:
        return self.counter == 0

    @staticmethod
    def parse(text: str) -> "EventId":
        """Parse the 25-digit form or `COUNTER.ACTOR`."""
        text = text.strip()
        if "." in text:
            c, _, a = text.partition(".")
            if not (c.isdigit() and a.isdigit()):
                raise ValueError(f"bad event id {text!r}")
            counter, actor = int(c), int(a)
        elif len(text) == 25 and text.isdigit():
            counter, actor = int(text[:20]), int(text[20:])
        else:
            raise ValueError(f"bad event id {text!r}: want 25 digits or COUNTER.ACTOR")
        if counter > U64_MAX or actor > 0xFFFF:
            raise ValueError(f"event id {text!r} out of range")
        return EventId(counter, actor)


@dataclass
class Cursor:
    """A version-vector cursor (section 9): a floor id plus actor -> highest counter seen."""

    floor: EventId = EventId(0, 0)
    vector: Dict[int, int] = field(default_factory=dict)

    def observe(self, event_id: EventId) -> None:
        if event_id.counter > self.vector.get(event_id.actor, 0):
            self.vector[event_id.actor] = event_id.counter

    def covers(self, event_id: EventId) -> bool:
        return event_id <= self.floor or event_id.counter <= self.vector.get(event_id.actor, 0)

    def copy(self) -> "Cursor":
        return Cursor(self.floor, dict(self.vector))

    def to_text(self) -> str:
        """A simple saveable form: `floor;actor=counter,...`."""
        entries = ",".join(f"{a}={c}" for a, c in sorted(self.vector.items()) if c)
        return f"{self.floor.text()};{entries}"

    @staticmethod
    def from_text(text: str) -> "Cursor":
        floor, _, entries = text.partition(";")
        vector = {}
        for entry in filter(None, entries.split(",")):
            a, _, c = entry.partition("=")
            vector[int(a)] = int(c)
        return Cursor(EventId.parse(floor), vector)


# ---------------------------------------------------------------------------------------------
# Start positions


@dataclass(frozen=True)
class Start:
    """Where a subscription starts (section 7, StartPosition)."""

    kind: int
    after: EventId = EventId(0, 0)
    cursor: Optional[Cursor] = None
    timestamp_ms: int = 0

    @staticmethod
    def beginning() -> "Start":
        return Start(0)

    @staticmethod
    def end() -> "Start":
        return Start(1)

    @staticmethod
    def after_id(event_id: EventId) -> "Start":
        return Start(2, after=event_id)

    @staticmethod
    def at_cursor(cursor: Cursor) -> "Start":
        return Start(3, cursor=cursor.copy())

    @staticmethod
    def at_timestamp(ms: int) -> "Start":
        return Start(4, timestamp_ms=ms)

    def initial_cursor(self) -> Cursor:
        if self.kind == 2:
            return Cursor(self.after, {})
        if self.kind == 3 and self.cursor is not None:
            return self.cursor.copy()
        return Cursor()

    def encode(self) -> bytes:
        out = struct.pack(">B", self.kind)
        if self.kind in (0, 1):
            return out
        if self.kind == 2:
            return out + _event_id(self.after)
        if self.kind == 3:
            cur = self.cursor or Cursor()
            entries = sorted((a, c) for a, c in cur.vector.items() if c)
            out += _event_id(cur.floor) + struct.pack(">H", len(entries))
            for actor, counter in entries:
                out += struct.pack(">HQ", actor, counter)
            return out
        if self.kind == 4:
            return out + struct.pack(">Q", self.timestamp_ms)
        raise ValueError(f"unknown start kind {self.kind}")


# ---------------------------------------------------------------------------------------------
# Server frames


@dataclass(frozen=True)
class Welcome:
    protocol_version: int
    server_version: str
    actor_id: int
    frame_size_max: int
    namespace_length_max: int
    event_data_size_max: int
    subscriptions_max: int
    idle_timeout_ms: int


@dataclass(frozen=True)
class Ack:
    op_id: int
    first_id: EventId
    count: int
    timestamp_ms: int

    @property
    def ids(self) -> List[EventId]:
        return [EventId(self.first_id.counter + i, self.first_id.actor) for i in range(self.count)]


@dataclass(frozen=True)
class Event:
    subscription_id: int
    id: EventId
    parent_id: Optional[EventId]
    timestamp_ms: int
    namespace: str
    data: bytes


@dataclass(frozen=True)
class CaughtUp:
    subscription_id: int


@dataclass(frozen=True)
class Skipped:
    """The server's retention deleted `count` records the subscription had not read yet (an
    upper bound on the events it lost); delivery goes on after them."""

    subscription_id: int
    count: int


@dataclass(frozen=True)
class End:
    subscription_id: int
    reason: int

    @property
    def reason_name(self) -> str:
        return END_REASONS[self.reason]


@dataclass(frozen=True)
class NewEvent:
    namespace: str
    data: bytes = b""
    parent_id: Optional[EventId] = None


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _event_id(eid: Optional[EventId]) -> bytes:
    if eid is None:
        return b"\x00" * 10
    return struct.pack(">QH", eid.counter, eid.actor)


def _str16(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes of UTF-8")
    return struct.pack(">H", len(b)) + b


def _bytes16(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("bytes16 longer than 65535 bytes")
    return struct.pack(">H", len(b)) + b


def _new_event(ev: NewEvent) -> bytes:
    return _str16(ev.namespace) + _event_id(ev.parent_id) + struct.pack(">I", len(ev.data)) + ev.data


def frame(kind: int, body: bytes = b"") -> bytes:
    """A whole frame: u32 length (kind + body), kind, body."""
    return struct.pack(">IB", 1 + len(body), kind) + body


def encode_hello(client_name: str, auth_token: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    return frame(HELLO, struct.pack(">H", version) + _str16(client_name) + _bytes16(auth_token))


def encode_produce(op_id: int, ev: NewEvent) -> bytes:
    return frame(PRODUCE, struct.pack(">Q", op_id) + _new_event(ev))


def encode_batch(op_id: int, events: List[NewEvent]) -> bytes:
    body = struct.pack(">QI", op_id, len(events)) + b"".join(_new_event(e) for e in events)
    return frame(PRODUCE_BATCH, body)


def encode_produce_if(op_id: int, expectation: int, expected_id: Optional[EventId],
                      events: List[NewEvent]) -> bytes:
    body = struct.pack(">QB", op_id, expectation) + _event_id(expected_id)
    body += struct.pack(">I", len(events)) + b"".join(_new_event(e) for e in events)
    return frame(PRODUCE_IF, body)


def encode_set_producer(producer_id: int, next_sequence: int) -> bytes:
    return frame(SET_PRODUCER, struct.pack(">QQ", producer_id, next_sequence))


SUBSCRIBE_TAIL = 0x01
SUBSCRIBE_SKIP_DAMAGED = 0x02
SUBSCRIBE_ID_ORDER = 0x04


def encode_subscribe(
    sub_id: int,
    glob: str,
    start: Start,
    limit: int,
    tail: bool,
    credit: int,
    skip_damaged: bool = False,
    id_order: bool = False,
) -> bytes:
    """`skip_damaged`: the server skips a damaged range of its log with a Skipped frame instead
    of ending the subscription with StorageFailure; `id_order`: events come in the total order
    of ids, the same sequence on every node of a cluster (protocol.md section 7, Subscribe
    flags)."""
    flags = (SUBSCRIBE_TAIL if tail else 0) | (SUBSCRIBE_SKIP_DAMAGED if skip_damaged else 0)
    flags |= SUBSCRIBE_ID_ORDER if id_order else 0
    body = struct.pack(">I", sub_id) + _str16(glob) + start.encode()
    body += struct.pack(">QBI", limit, flags, credit)
    return frame(SUBSCRIBE, body)


def encode_credit(sub_id: int, count: int) -> bytes:
    return frame(CREDIT, struct.pack(">II", sub_id, count))


def encode_unsubscribe(sub_id: int) -> bytes:
    return frame(UNSUBSCRIBE, struct.pack(">I", sub_id))


def encode_set_replicas(replicas: int) -> bytes:
    return frame(SET_REPLICAS, struct.pack(">B", replicas))


def encode_ping(token: int) -> bytes:
    return frame(PING, struct.pack(">Q", token))


def encode_join_group(sub_id: int, group: str, glob: str, start: Start, credit: int,
                      ack_timeout_ms: int = 0, max_deliveries: int = 0, max_in_flight: int = 0) -> bytes:
    body = struct.pack(">I", sub_id) + _str16(group) + _str16(glob) + start.encode()
    body += struct.pack(">IIHI", credit, ack_timeout_ms, max_deliveries, max_in_flight)
    return frame(JOIN_GROUP, body)


def _ids(ids: List[EventId]) -> bytes:
    if len(ids) > 0xFFFF:
        raise ValueError("at most 65535 ids per frame")
    return struct.pack(">H", len(ids)) + b"".join(_event_id(i) for i in ids)


def encode_group_ack(sub_id: int, ids: List[EventId]) -> bytes:
    return frame(GROUP_ACK, struct.pack(">I", sub_id) + _ids(ids))


def encode_group_nack(sub_id: int, delay_ms: int, ids: List[EventId]) -> bytes:
    return frame(GROUP_NACK, struct.pack(">II", sub_id, delay_ms) + _ids(ids))


def encode_leave_group(sub_id: int) -> bytes:
    return frame(LEAVE_GROUP, struct.pack(">I", sub_id))


def encode_groups_request(group: str = "", after: str = "") -> bytes:
    return frame(GROUPS_REQUEST, _str16(group) + _str16(after))


def encode_namespaces_request(glob: str = "/**", after: str = "") -> bytes:
    return frame(NAMESPACES_REQUEST, _str16(glob) + _str16(after))


def encode_trace_request(event_id: EventId) -> bytes:
    return frame(TRACE_REQUEST, _event_id(event_id))


def encode_parked_request(group: str, from_offset: int = 0) -> bytes:
    return frame(PARKED_REQUEST, _str16(group) + struct.pack(">Q", from_offset))


def encode_purge(glob: str, before_id: Optional[EventId] = None, before_ms: Optional[int] = None) -> bytes:
    """Purge: exactly one of `before_id` (events with smaller ids go) and `before_ms` (events
    stored before this time, in ms since the epoch, go)."""
    if (before_id is None) == (before_ms is None):
        raise ValueError("give exactly one of before_id and before_ms")
    if before_id is not None:
        bound = struct.pack(">BQH", PURGE_BEFORE_ID, before_id.counter, before_id.actor)
    else:
        bound = struct.pack(">BQ", PURGE_BEFORE_TIME, before_ms)
    return frame(PURGE, _str16(glob) + bound)


def encode_purges_request() -> bytes:
    return frame(PURGES_REQUEST, b"")


def encode_members_request() -> bytes:
    return frame(MEMBERS_REQUEST, b"")


def encode_change_member(operation: int, actor_id: int) -> bytes:
    """ChangeMember: MEMBER_REMOVE or MEMBER_ADD for `actor_id` (protocol.md section 14)."""
    return frame(CHANGE_MEMBER, struct.pack(">BH", operation, actor_id))


def encode_group_ack_range(sub_id: int, first: EventId, last: EventId) -> bytes:
    """GroupAckRange: every event in flight to the membership delivered from `first` to `last`."""
    return frame(GROUP_ACK_RANGE, struct.pack(">I", sub_id) + _event_id(first) + _event_id(last))


def encode_group_progress(sub_id: int, ids: List[EventId]) -> bytes:
    """GroupProgress: this member still works on these events (in flight to it); the server
    restarts their ack time-outs."""
    return frame(GROUP_PROGRESS, struct.pack(">I", sub_id) + _ids(ids))


def encode_groups_detail_request(group: str = "", after: str = "") -> bytes:
    return frame(GROUPS_DETAIL_REQUEST, _str16(group) + _str16(after))


def _settings(settings: "GroupSettings") -> bytes:
    return struct.pack(">IHI", settings.ack_timeout_ms, settings.max_deliveries, settings.max_in_flight)


def encode_group_admin(
    group: str,
    action: int,
    start: Optional[Start] = None,
    ids: Sequence[EventId] = (),
    id_range: Optional[Tuple[EventId, EventId]] = None,
    glob: str = "",
    settings: Optional["GroupSettings"] = None,
) -> bytes:
    body = _str16(group) + struct.pack(">B", action)
    if action == ADMIN_CREATE:
        body += _str16(glob) + (start or Start.beginning()).encode() + _settings(settings or GroupSettings())
    elif action == ADMIN_UPDATE_SETTINGS:
        body += _settings(settings or GroupSettings())
    elif action == ADMIN_RESET:
        if start is None:
            raise ValueError("a reset needs a start position")
        body += start.encode()
    elif action == ADMIN_REPLAY_IDS:
        if len(ids) > 0xFFFF:
            raise ValueError("at most 65535 ids in one frame")
        body += struct.pack(">H", len(ids)) + b"".join(_event_id(i) for i in ids)
    elif action == ADMIN_REPLAY_RANGE:
        if id_range is None:
            raise ValueError("a range replay needs (from, to)")
        body += _event_id(id_range[0]) + _event_id(id_range[1])
    return frame(GROUP_ADMIN, body)


# ---------------------------------------------------------------------------------------------
# Decoding (strict: trailing bytes, bad enums and bad UTF-8 are protocol errors)


class _Reader:
    def __init__(self, body: bytes):
        self.b = body
        self.i = 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise ProtocolError("truncated frame")
        out = self.b[self.i : self.i + n]
        self.i += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def str16(self) -> str:
        raw = self.take(self.u16())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"invalid UTF-8: {e}") from None

    def bytes32(self) -> bytes:
        return self.take(self.u32())

    def event_id(self) -> EventId:
        counter, actor = self.u64(), self.u16()
        if counter == 0:
            raise ProtocolError("event id with counter 0 where an event is meant")
        return EventId(counter, actor)

    def optional_event_id(self) -> Optional[EventId]:
        counter, actor = self.u64(), self.u16()
        if counter == 0:
            if actor != 0:
                raise ProtocolError("absent id with non-zero actor")
            return None
        return EventId(counter, actor)

    def boolean(self) -> bool:
        value = self.u8()
        if value > 1:
            raise ProtocolError(f"boolean {value}")
        return value == 1

    def done(self) -> None:
        if self.i != len(self.b):
            raise ProtocolError(f"{len(self.b) - self.i} trailing bytes")


@dataclass(frozen=True)
class PurgeRule:
    """A purge: `before_id` or `before_ms` is set (section 17)."""

    glob: str
    before_id: Optional[EventId] = None
    before_ms: Optional[int] = None


@dataclass(frozen=True)
class Purged:
    rule: PurgeRule
    changed: bool


@dataclass(frozen=True)
class RetentionRule:
    glob: str
    keep_ms: int
    cutoff_ms: int


@dataclass(frozen=True)
class PurgesReply:
    purges: List[PurgeRule]
    retention: List[RetentionRule]


def _read_purge_rule(r: "_Reader") -> PurgeRule:
    glob, kind = r.str16(), r.u8()
    if kind == PURGE_BEFORE_ID:
        return PurgeRule(glob, before_id=r.event_id())
    if kind == PURGE_BEFORE_TIME:
        return PurgeRule(glob, before_ms=r.u64())
    raise ProtocolError(f"unknown purge kind {kind}")


@dataclass(frozen=True)
class GroupInfo:
    """One group of a Groups frame (protocol.md section 16): positions are log offsets; `lag` is
    an upper bound on matching events not yet delivered."""

    name: str
    glob: str
    members: int
    in_flight: int
    pending: int
    parked: int
    floor: int
    next: int
    acked_above_floor: int
    lag: int
    oldest_pending_age_ms: int


@dataclass(frozen=True)
class GroupSettings:
    """A group's settings; 0 means the server's default (create) or unchanged (update)."""

    ack_timeout_ms: int = 0
    max_deliveries: int = 0
    max_in_flight: int = 0


@dataclass(frozen=True)
class GroupMemberInfo:
    subscription_id: int
    connection: str
    in_flight: int
    max_in_flight: int
    credit: int


@dataclass(frozen=True)
class GroupDetail:
    info: GroupInfo
    settings: GroupSettings
    members: List[GroupMemberInfo]


@dataclass(frozen=True)
class GroupsDetailReply:
    durable_end: int
    more: bool
    groups: List[GroupDetail]


@dataclass(frozen=True)
class GroupsReply:
    durable_end: int
    more: bool
    groups: List[GroupInfo]


@dataclass(frozen=True)
class ParkedReply:
    group: str
    more: bool
    events: List[Tuple[int, EventId]]  # (log offset, id), in log order


@dataclass(frozen=True)
class NamespaceInfo:
    """One namespace of a Namespaces frame (protocol.md section 6): its event count and its
    first and last event in log order (None when retention deleted it meanwhile)."""

    name: str
    event_count: int
    first_id: Optional[EventId]
    first_timestamp_ms: int
    last_id: Optional[EventId]
    last_timestamp_ms: int


@dataclass(frozen=True)
class MemberEntry:
    """One member of a Members frame (protocol.md section 14); `state` is one of
    MEMBER_STATES' names."""

    actor_id: int
    state: str
    version: int
    addr: str


@dataclass(frozen=True)
class MembersReply:
    members: List[MemberEntry]


@dataclass(frozen=True)
class NamespacesReply:
    more: bool
    namespaces: List[NamespaceInfo]


@dataclass(frozen=True)
class TraceEntry:
    """One event of a trace (protocol.md, Trace): depth 0 is the traced event, negative depths
    its ancestors, positive its descendants."""

    depth: int
    id: EventId
    parent_id: Optional[EventId]
    timestamp_ms: int
    namespace: str


@dataclass(frozen=True)
class TraceReply:
    more: bool
    truncated: bool
    entries: List[TraceEntry]


ServerFrame = Union[Welcome, Ack, FloError, Event, CaughtUp, Skipped, End, GroupsReply, GroupsDetailReply, ParkedReply, Purged, PurgesReply, MembersReply,
                    NamespacesReply, TraceReply, Tuple[str, int], Tuple[str, dict]]


def _read_group_info(r: "_Reader") -> GroupInfo:
    name, glob, members, in_flight = r.str16(), r.str16(), r.u16(), r.u32()
    figures = [r.u64() for _ in range(7)]
    return GroupInfo(name, glob, members, in_flight, *figures)


def _read_vector(r: "_Reader") -> Dict[int, int]:
    vector = {}
    for _ in range(r.u16()):
        actor, counter = r.u16(), r.u64()
        vector[actor] = counter
    return vector


def decode(kind: int, body: bytes) -> ServerFrame:
    """Decode one server frame's body. Pong decodes to ("pong", token)."""
    r = _Reader(body)
    out: ServerFrame
    if kind == WELCOME:
        out = Welcome(r.u16(), r.str16(), r.u16(), r.u32(), r.u32(), r.u32(), r.u32(), r.u32())
    elif kind == ACK:
        out = Ack(r.u64(), r.event_id(), r.u32(), r.u64())
    elif kind == ERROR:
        scope = r.u8()
        if scope == SCOPE_CONNECTION:
            target = None
        elif scope == SCOPE_PRODUCE:
            target = r.u64()
        elif scope == SCOPE_SUBSCRIPTION:
            target = r.u32()
        else:
            raise ProtocolError(f"unknown error scope {scope}")
        code = r.u16()
        out = FloError(scope, target, code, r.str16())
    elif kind == EVENT:
        out = Event(r.u32(), r.event_id(), r.optional_event_id(), r.u64(), r.str16(), r.bytes32())
    elif kind == CAUGHT_UP:
        out = CaughtUp(r.u32())
    elif kind == SKIPPED:
        out = Skipped(r.u32(), r.u64())
    elif kind == END:
        sub_id, reason = r.u32(), r.u8()
        if reason not in END_REASONS:
            raise ProtocolError(f"unknown end reason {reason}")
        out = End(sub_id, reason)
    elif kind == PONG:
        out = ("pong", r.u64())
    elif kind == STATUS:
        status = {"actor_id": r.u16(), "counter": r.u64(), "event_count": r.u64(), "durable_end": r.u64()}
        status["vector"] = _read_vector(r)
        members = []
        for _ in range(r.u16()):
            members.append(
                {
                    "actor_id": r.u16(),
                    "addr": r.str16(),
                    "state": r.u8(),
                    "vector": _read_vector(r),
                    "lag": r.u64(),
                    # 0 when connected; else ms without a connection (protocol.md section 14).
                    "disconnected_ms": r.u64(),
                }
            )
        status["members"] = members
        # Id order (protocol.md section 14): how far it delivers, who holds it back, what waits.
        order = {"stable_clock": r.u64(), "held_by": None}
        if r.boolean():
            order["held_by"] = {"actor_id": r.u16(), "addr": r.str16(), "clock": r.u64(), "held_ms": r.u64()}
        order["waiting_subscriptions"] = r.u32()
        order["waiting_events"] = r.u64()
        order["waiting_ms"] = r.u64()
        status["order"] = order
        # Only while the server refuses produces until it has met its members (section 14);
        # absent otherwise, and from servers before the field.
        status["hold"] = None
        if r.i < len(r.b):
            status["hold"] = {
                "actor_id": r.u16(),
                "addr": r.str16(),
                "held_ms": r.u64(),
                "timeout_left_ms": r.u64(),
                "waits_for": r.str16(),
            }
        out = ("status", status)
    elif kind == GROUPS:
        durable_end, more = r.u64(), r.boolean()
        groups = [_read_group_info(r) for _ in range(r.u16())]
        out = GroupsReply(durable_end, more, groups)
    elif kind == GROUPS_DETAIL:
        durable_end, more = r.u64(), r.boolean()
        details = []
        for _ in range(r.u16()):
            info = _read_group_info(r)
            settings = GroupSettings(r.u32(), r.u16(), r.u32())
            members = []
            for _ in range(r.u16()):
                members.append(GroupMemberInfo(r.u32(), r.str16(), r.u32(), r.u32(), r.u64()))
            details.append(GroupDetail(info, settings, members))
        out = GroupsDetailReply(durable_end, more, details)
    elif kind == PARKED:
        group, more = r.str16(), r.boolean()
        events = []
        for _ in range(r.u16()):
            offset = r.u64()
            events.append((offset, r.event_id()))
        out = ParkedReply(group, more, events)
    elif kind == MEMBERS:
        members = []
        for _ in range(r.u16()):
            actor, state, version, addr = r.u16(), r.u8(), r.u64(), r.str16()
            if state not in MEMBER_STATES:
                raise ProtocolError(f"unknown member state {state}")
            members.append(MemberEntry(actor, MEMBER_STATES[state], version, addr))
        out = MembersReply(members)
    elif kind == NAMESPACES:
        more = r.boolean()
        namespaces = []
        for _ in range(r.u16()):
            name, count = r.str16(), r.u64()
            first_id, first_ms = r.optional_event_id(), r.u64()
            last_id, last_ms = r.optional_event_id(), r.u64()
            namespaces.append(NamespaceInfo(name, count, first_id, first_ms, last_id, last_ms))
        out = NamespacesReply(more, namespaces)
    elif kind == TRACE:
        flags = r.u8()
        if flags & ~0x03:
            raise ProtocolError(f"unknown trace flags 0x{flags:02x}")
        entries = []
        for _ in range(r.u16()):
            depth = struct.unpack(">h", r.take(2))[0]
            event_id, parent = r.event_id(), r.optional_event_id()
            entries.append(TraceEntry(depth, event_id, parent, r.u64(), r.str16()))
        out = TraceReply(bool(flags & 1), bool(flags & 2), entries)
    elif kind == INFO:
        info = {"version": r.str16(), "uptime_ms": r.u64(), "fsync_policy": r.str16(), "actor_id": r.u16()}
        for name in ("log_bytes", "event_count", "segment_count"):
            info[name] = r.u64()
        for name in ("client_connections", "peer_connections", "subscriptions", "group_count"):
            info[name] = r.u32()
        out = ("info", info)
    elif kind == PURGED:
        out = Purged(_read_purge_rule(r), r.boolean())
    elif kind == PURGES:
        purges = [_read_purge_rule(r) for _ in range(r.u16())]
        retention = [RetentionRule(r.str16(), r.u64(), r.u64()) for _ in range(r.u16())]
        out = PurgesReply(purges, retention)
    else:
        raise ProtocolError(f"frame kind 0x{kind:02x} is not one a server sends")
    r.done()
    return out


# ---------------------------------------------------------------------------------------------
# Subscriptions


class Subscription:
    """One subscription. Iterate it (or call `next`) to get Event, CaughtUp and finally End.

    With `auto_credit` (the default) the client grants credit back as events are taken, keeping
    the window at the initial credit. The `cursor` is updated for every Event handed out. To
    resume later, save `resume_start()`: the start itself while a subscription started at end
    or at a timestamp has delivered nothing (its empty cursor would deliver every retained
    event, protocol.md section 9), else `Start.at_cursor(cursor)`.
    """

    def __init__(self, client: "FloClient", sub_id: int, start: Start, credit: int, auto_credit: bool):
        self.client = client
        self.id = sub_id
        self.cursor = start.initial_cursor()
        # An end (1) or timestamp (4) start, until the first Event is handed out.
        self._start_until_first_event: Optional[Start] = start if start.kind in (1, 4) else None
        self.window = credit
        self.auto_credit = auto_credit and credit > 0
        self._processed_since_credit = 0
        self.queue: Deque[Union[Event, CaughtUp, Skipped, End, FloError]] = collections.deque()
        self.skipped = 0  # records retention deleted before this subscription read them
        self.caught_up = False
        self.ended: Optional[Union[End, FloError]] = None
        self.finished = False  # the End/Error has been handed to the caller
        self.unsubscribing = False

    def resume_start(self) -> Start:
        """Where to resume so that nothing delivered comes again and nothing not yet delivered
        is skipped (protocol.md section 9): the end or timestamp start itself until the first
        Event, then the cursor. On a server holding several actors' events, a subscription
        started at end or at a timestamp and resumed from its cursor also gets the other
        actors' events stored before its start (it never misses one)."""
        if self._start_until_first_event is not None:
            return self._start_until_first_event
        return Start.at_cursor(self.cursor)

    def credit(self, count: int) -> None:
        """Grant `count` more events (a Credit frame)."""
        self.client._send(encode_credit(self.id, count))

    def unsubscribe(self) -> None:
        self.unsubscribing = True
        self.client._send(encode_unsubscribe(self.id))

    def next(self, timeout: Optional[float] = None) -> Union[Event, CaughtUp, Skipped, End]:
        """The next item. Raises FloError for a subscription-scope error, StopIteration after End,
        TimeoutError if nothing arrives in `timeout` seconds (None: the client's default)."""
        if self.finished:
            raise StopIteration
        deadline = self.client._deadline(timeout)
        while not self.queue:
            self.client._pump(deadline)
        item = self.queue.popleft()
        if isinstance(item, Event):
            self.cursor.observe(item.id)
            self._start_until_first_event = None
            if self.auto_credit and self.ended is None:
                self._processed_since_credit += 1
                if self._processed_since_credit * 2 >= self.window:
                    self.credit(self._processed_since_credit)
                    self._processed_since_credit = 0
        elif isinstance(item, CaughtUp):
            self.caught_up = True
        elif isinstance(item, Skipped):
            self.skipped += item.count
            log.warning("subscription %d: retention deleted %d unread records", self.id, item.count)
        elif isinstance(item, End):
            self.finished = True
        elif isinstance(item, FloError):
            self.finished = True
            raise item
        return item

    def __iter__(self) -> Iterator[Union[Event, CaughtUp, Skipped, End]]:
        while True:
            try:
                yield self.next()
            except StopIteration:
                return

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Only the Events, until End (or, for a tail subscription, until CaughtUp)."""
        while not self.finished:
            item = self.next(timeout)
            if isinstance(item, Event):
                yield item
            elif isinstance(item, CaughtUp) or isinstance(item, End):
                return


# Acks a GroupMember queues before it sends them without waiting for a blocking read (the Rust
# client's ACK_BATCH_DEFAULT).
ACK_BATCH_DEFAULT = 128
# Deliveries whose place in the membership's delivery order a GroupMember remembers, to join
# acks of consecutive deliveries into one range (older ones are acknowledged by id).
RECENT_DELIVERIES_MAX = 4096


class GroupMember(Subscription):
    """A membership of a consumer group (protocol.md section 16): iterate it (or call `next`)
    for Event and CaughtUp like a subscription, `ack` each event when it is done, `nack` to have
    it delivered again, `leave` at the end (then End arrives). An error refusing the join
    (InvalidGroupName, GroupGlobMismatch, ...) is raised by `next`.

    Acks are pipelined, never waited for: `ack` queues them, and they are sent once
    `ack_batch` are queued, before the client waits for the network (a `next` with nothing
    buffered, a Ping, any request), before any other frame this client sends (so a Pong
    after them means the server has them), by `flush`, `nack`, `leave`, and by
    `FloClient.close`. Acks of deliveries that came one after another, made in that order (a
    consumer that handles its events one at a time), go as one GroupAckRange frame of 25
    bytes, its first and last event (protocol.md, GroupAckRange); the others go as ids in
    GroupAck frames. `ack_ranges=False` sends only GroupAck (for a server older than
    GroupAckRange). A process that exits without `close` (or `flush`) loses the queued acks:
    their events are delivered again. `NotPending` answers (a late ack) are counted in
    `not_pending`, not raised."""

    def __init__(self, client: "FloClient", sub_id: int, group: str, credit: int, auto_credit: bool,
                 ack_batch: int = ACK_BATCH_DEFAULT, ack_ranges: bool = True):
        super().__init__(client, sub_id, Start.beginning(), credit, auto_credit)
        self.group = group
        self.not_pending = 0
        self.ack_batch = max(1, min(ack_batch, 0xFFFF))
        self.ack_ranges = ack_ranges
        # Acks not yet sent, in the order they were made: [first, last, count] (count 1: one
        # id; more: a run of consecutive deliveries).
        self._acks: List[list] = []
        self._queued = 0  # the events `_acks` acknowledges
        # The latest deliveries in this membership's delivery order (the server numbers them
        # the same way: one per Event frame): id -> delivery numbers, oldest first, at most
        # RECENT_DELIVERIES_MAX in `_recent_order`; an entry goes when its event is acked.
        self._recent: Dict[EventId, List[int]] = {}
        self._recent_order: Deque[Tuple[int, EventId]] = collections.deque()
        self._delivered = 0
        # The delivery number the last queued ack ends at, if known: an ack of the next one
        # extends it into a range.
        self._last_queued: Optional[int] = None
        self.ack_frames_sent = 0  # GroupAck frames sent by the queue
        self.range_frames_sent = 0  # GroupAckRange frames sent by the queue

    @property
    def queued_acks(self) -> int:
        """Acks queued and not yet sent."""
        return self._queued

    def _on_delivered(self, event_id: EventId) -> None:
        """An Event frame for this membership arrived (called in arrival order)."""
        if len(self._recent_order) == RECENT_DELIVERIES_MAX:
            number, old = self._recent_order.popleft()
            numbers = self._recent.get(old)
            if numbers and numbers[0] == number:
                numbers.pop(0)
                if not numbers:
                    del self._recent[old]
        self._recent_order.append((self._delivered, event_id))
        self._recent.setdefault(event_id, []).append(self._delivered)
        self._delivered += 1

    def _take_sequence(self, event_id: EventId) -> Optional[int]:
        """The delivery number of `event_id` among the recent deliveries (its newest
        delivery), forgetting it."""
        numbers = self._recent.get(event_id)
        if not numbers:
            return None
        number = numbers.pop()
        if not numbers:
            del self._recent[event_id]
        return number

    def ack(self, *ids: EventId) -> None:
        """Mark these events done (queued; see the class)."""
        for event_id in ids:
            number = self._take_sequence(event_id)
            extends = (self.ack_ranges and number is not None and self._acks
                       and self._last_queued is not None and number == self._last_queued + 1)
            if extends:
                self._acks[-1][1] = event_id
                self._acks[-1][2] += 1
            else:
                self._acks.append([event_id, event_id, 1])
            self._last_queued = number
            self._queued += 1
            self.client._acks_waiting[self.id] = self
            if self._queued >= self.ack_batch:
                self.flush()

    def ack_range(self, first: EventId, last: EventId) -> None:
        """Acknowledge every event delivered to this member from `first` to `last` (both still
        in flight to it; the ones between already acknowledged are skipped). Sent at once,
        after the queued acks."""
        self.client._send(encode_group_ack_range(self.id, first, last))

    def nack(self, *ids: EventId, delay_ms: int = 0) -> None:
        """Refuse these events (delivered again after `delay_ms`, or parked at
        `max_deliveries`). Sent at once, after the queued acks."""
        for i in range(0, len(ids), 0xFFFF):
            self.client._send(encode_group_nack(self.id, delay_ms, list(ids[i : i + 0xFFFF])))

    def progress(self, *ids: EventId) -> None:
        """Still working on these events (delivered to this member, not yet acknowledged): the
        server restarts their ack time-outs, so they are not delivered to another member while
        the work goes on. Send it more often than the group's ack time-out (30 s by default).
        Sent at once, after the queued acks; an id no longer in flight to this member is
        answered NotPending (counted like a late ack). A server older than the frame closes
        the connection."""
        for i in range(0, len(ids), 0xFFFF):
            self.client._send(encode_group_progress(self.id, list(ids[i : i + 0xFFFF])))

    def flush(self) -> None:
        """Send every queued ack now (of every membership of this client; nothing waits for an
        answer)."""
        self.client._send(b"")

    def _take_ack_frames(self) -> bytes:
        """The queued acks as frames (emptying the queue): a GroupAckRange per run, ids in
        GroupAck frames between them. Nothing once the membership ended."""
        acks, self._acks = self._acks, []
        self._queued = 0
        self._last_queued = None
        if self.ended is not None:
            return b""
        out = []
        ids: List[EventId] = []

        def ids_out() -> None:
            for i in range(0, len(ids), 0xFFFF):
                out.append(encode_group_ack(self.id, ids[i : i + 0xFFFF]))
                self.ack_frames_sent += 1
            ids.clear()

        for first, last, count in acks:
            if count == 1:
                ids.append(first)
                continue
            ids_out()
            out.append(encode_group_ack_range(self.id, first, last))
            self.range_frames_sent += 1
        ids_out()
        return b"".join(out)

    def leave(self) -> None:
        """Leave the group (after sending the queued acks); events still unacknowledged go to
        other members. End follows."""
        self.unsubscribing = True
        self.client._send(encode_leave_group(self.id))


# ---------------------------------------------------------------------------------------------
# The client


class FloClient:
    """A connection to a flo server. Use `FloClient.connect(host, port)`."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.welcome: Optional[Welcome] = None
        self.frame_max = PRE_WELCOME_FRAME_MAX
        self.next_op = 1
        self.next_sub = 1
        self.next_ping = 1
        self.replies: Dict[int, Union[Ack, FloError]] = {}
        self.pending_ops: set = set()
        self.subs: Dict[int, Subscription] = {}
        self.ended_subs: set = set()
        self.pongs: set = set()
        self.closed: Optional[ConnectionClosed] = None
        self.fatal: Optional[FloError] = None
        self.ignored_errors: List[FloError] = []
        # Answers to group inspection and admin requests, in request order (section 16).
        self.admin_outstanding = 0
        self.admin_replies: Deque[Union[GroupsReply, ParkedReply, Purged, PurgesReply, FloError]] = collections.deque()
        # Group memberships with acks queued (GroupMember.ack), sent before the next frame or
        # blocking read of this client.
        self._acks_waiting: Dict[int, "GroupMember"] = {}

    # -- connection --------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        client_name: str = "py-flo 1.0",
        auth_token: bytes = b"",
        timeout: float = 10.0,
        tls: bool = False,
        ca: Optional[str] = None,
    ) -> "FloClient":
        """With `tls=True`, speaks TLS (for a server started with --tls-cert; protocol.md,
        "Transport security"), trusting the PEM file `ca` (or the system's store without it)
        and checking the certificate against `host`."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            context = ssl.create_default_context(cafile=ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            sock = context.wrap_socket(sock, server_hostname=host)
        client = cls(sock, timeout)
        client.handshake(client_name, auth_token)
        return client

    def handshake(self, client_name: str, auth_token: bytes = b"") -> Welcome:
        self._send(encode_hello(client_name, auth_token))
        deadline = self._deadline(None)
        while self.welcome is None:
            self._pump(deadline)
        return self.welcome

    def close(self) -> None:
        """Sends the queued group acks (best effort), then closes the connection."""
        if self.closed is None:
            try:
                self._send(b"")
            except (ConnectionClosed, OSError):
                pass
        if self.closed is None:
            self.closed = ConnectionClosed("closed by the client")
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "FloClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- producing ---------------------------------------------------------------------------

    def _check_event(self, ev: NewEvent) -> None:
        ns = ev.namespace
        if not ns or not ns.startswith("/"):
            raise ValueError(f"namespace {ns!r} must start with '/'")
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in ns):
            raise ValueError(f"namespace {ns!r} has a control character")
        w = self.welcome
        if w is not None:
            if len(ns.encode("utf-8")) > w.namespace_length_max:
                raise ValueError(f"namespace longer than {w.namespace_length_max} bytes")
            if len(ev.data) > w.event_data_size_max:
                raise ValueError(f"data larger than {w.event_data_size_max} bytes")

    def send_produce(self, namespace: str, data: bytes = b"", parent_id: Optional[EventId] = None,
                     check: bool = True) -> int:
        """Send one Produce without waiting; returns its op id (see `wait_reply`).
        `check=False` skips the client-side validation (to test the server)."""
        ev = NewEvent(namespace, data, parent_id)
        if check:
            self._check_event(ev)
        op = self._new_op()
        self._send(encode_produce(op, ev))
        return op

    def send_batch(self, events: Iterable[NewEvent], check: bool = True) -> int:
        """Send one ProduceBatch without waiting; returns its op id."""
        events = list(events)
        if check:
            if not events:
                raise ValueError("a batch needs at least one event")
            for ev in events:
                self._check_event(ev)
        op = self._new_op()
        self._send(encode_batch(op, events))
        return op

    def produce(self, namespace: str, data: bytes = b"", parent_id: Optional[EventId] = None) -> Ack:
        """Append one event and wait for its Ack (raises FloError on an Error)."""
        return self.wait_reply(self.send_produce(namespace, data, parent_id))

    def produce_batch(self, events: Iterable[NewEvent]) -> Ack:
        return self.wait_reply(self.send_batch(events))

    def produce_if(self, events: Iterable[NewEvent], expect_last: Optional[EventId] = None,
                   expect_empty: bool = False, expect_exists: bool = False) -> Ack:
        """Append `events` atomically only if the namespace of the first one has `expect_last` as
        its newest event (or, with `expect_empty`, has no events; with `expect_exists`, has at
        least one). Raises FloError ExpectationFailed otherwise; its `actual_last_id` tells the
        actual newest id."""
        events = list(events)
        if not events:
            raise ValueError("a batch needs at least one event")
        for ev in events:
            self._check_event(ev)
        if [expect_empty, expect_exists, expect_last is not None].count(True) > 1:
            raise ValueError("at most one of expect_last, expect_empty and expect_exists")
        if expect_empty:
            expectation, expected = EXPECT_NO_EVENTS, None
        elif expect_exists:
            expectation, expected = EXPECT_HAS_EVENTS, None
        elif expect_last is not None:
            expectation, expected = EXPECT_LAST_IS, expect_last
        else:
            expectation, expected = EXPECT_ANY, None
        op = self._new_op()
        self._send(encode_produce_if(op, expectation, expected, events))
        return self.wait_reply(op)

    def set_producer(self, producer_id: int, next_sequence: int) -> None:
        """Number later produces for `producer_id` from `next_sequence`: a retried number is
        answered with its original Ack instead of being stored again (protocol.md, SetProducer).
        To retry after a lost connection, send this again with the number of the oldest
        unanswered produce and resend those produces in order. No reply."""
        self._send(encode_set_producer(producer_id, next_sequence))

    def wait_reply(self, op_id: int, timeout: Optional[float] = None) -> Ack:
        """Wait for the reply to `op_id`: returns the Ack or raises its FloError."""
        if op_id not in self.pending_ops and op_id not in self.replies:
            raise KeyError(f"no operation {op_id} pending")
        deadline = self._deadline(timeout)
        while op_id not in self.replies:
            self._pump(deadline)
        reply = self.replies.pop(op_id)
        if isinstance(reply, FloError):
            raise reply
        return reply

    def _new_op(self) -> int:
        op = self.next_op
        self.next_op += 1
        self.pending_ops.add(op)
        return op

    # -- consuming ---------------------------------------------------------------------------

    def subscribe(
        self,
        glob: str,
        start: Start = Start.beginning(),
        limit: int = 0,
        tail: bool = False,
        credit: int = 100,
        auto_credit: bool = True,
        sub_id: Optional[int] = None,
        skip_damaged: bool = False,
        id_order: bool = False,
    ) -> Subscription:
        """Open a subscription. Errors for it (InvalidGlob, ...) come from `Subscription.next`.
        With `skip_damaged`, a damaged range of the server's log comes as a Skipped item
        instead of a StorageFailure error that ends the subscription. With `id_order`, events
        come in id order (an OrderStalled error ends it if a cluster member stays away)."""
        if sub_id is None:
            sub_id = self.next_sub
            while sub_id in self.subs:
                sub_id += 1
            self.next_sub = sub_id + 1
        elif sub_id in self.subs:
            raise ValueError(f"subscription {sub_id} is still open")
        if not 0 <= credit <= U32_MAX:
            raise ValueError("credit is a u32")
        sub = Subscription(self, sub_id, start, credit, auto_credit)
        self.subs[sub_id] = sub
        self.ended_subs.discard(sub_id)
        self._send(encode_subscribe(sub_id, glob, start, limit, tail, credit, skip_damaged, id_order))
        return sub

    # -- consumer groups ---------------------------------------------------------------------

    def join_group(
        self,
        group: str,
        glob: str,
        start: Start = Start.beginning(),
        credit: int = 100,
        ack_timeout_ms: int = 0,
        max_deliveries: int = 0,
        max_in_flight: int = 0,
        auto_credit: bool = True,
        ack_batch: int = ACK_BATCH_DEFAULT,
        ack_ranges: bool = True,
    ) -> GroupMember:
        """Join (and on the first join create, at `start`) the consumer group `group`. The
        settings are this member's own caps (0: the group's); a group this join creates gets
        the server's defaults (30 s, 10 deliveries, 1000 in flight), or these where higher.
        Acks are queued and sent `ack_batch` at a time or before the client waits, consecutive
        ones as ranges unless `ack_ranges=False` (see GroupMember)."""
        sub_id = self.next_sub
        while sub_id in self.subs:
            sub_id += 1
        self.next_sub = sub_id + 1
        if not 0 <= credit <= U32_MAX:
            raise ValueError("credit is a u32")
        member = GroupMember(self, sub_id, group, credit, auto_credit, ack_batch, ack_ranges)
        self.subs[sub_id] = member
        self.ended_subs.discard(sub_id)
        self._send(encode_join_group(sub_id, group, glob, start, credit, ack_timeout_ms,
                                     max_deliveries, max_in_flight))
        return member

    def _admin(
        self, request: bytes, timeout: Optional[float] = None
    ) -> Union[GroupsReply, ParkedReply, Purged, PurgesReply]:
        self._send(request)
        self.admin_outstanding += 1
        deadline = self._deadline(timeout)
        while not self.admin_replies:
            self._pump(deadline)
        reply = self.admin_replies.popleft()
        if isinstance(reply, FloError):
            raise reply
        return reply

    def groups(self) -> List[GroupInfo]:
        """Every group with its lag figures, page by page (needs admin on a server with auth)."""
        out: List[GroupInfo] = []
        while True:
            after = out[-1].name if out else ""
            page = self._admin(encode_groups_request("", after))
            assert isinstance(page, GroupsReply)
            out.extend(page.groups)
            if not page.more or not page.groups:
                return out

    def group_info(self, group: str) -> GroupInfo:
        reply = self._admin(encode_groups_request(group))
        assert isinstance(reply, GroupsReply) and len(reply.groups) == 1
        return reply.groups[0]

    def parked(self, group: str) -> List[Tuple[int, EventId]]:
        """Every parked event of the group as (log offset, id), page by page."""
        out: List[Tuple[int, EventId]] = []
        from_offset = 0
        while True:
            page = self._admin(encode_parked_request(group, from_offset))
            assert isinstance(page, ParkedReply)
            out.extend(page.events)
            if not page.more or not page.events:
                return out
            from_offset = page.events[-1][0] + 1

    def replay_parked(self, group: str) -> GroupInfo:
        reply = self._admin(encode_group_admin(group, ADMIN_REPLAY_PARKED))
        assert isinstance(reply, GroupsReply)
        return reply.groups[0]

    def replay_parked_ids(self, group: str, ids: Sequence[EventId]) -> GroupInfo:
        """Replay only the parked events with these ids (at most the server's parked_list_max,
        1000 by default). FloError NotParked when one of them is not parked: then nothing was
        replayed."""
        reply = self._admin(encode_group_admin(group, ADMIN_REPLAY_IDS, ids=ids))
        assert isinstance(reply, GroupsReply)
        return reply.groups[0]

    def replay_parked_range(self, group: str, first: EventId, last: EventId) -> GroupInfo:
        """Replay the parked events whose ids lie from `first` to `last`, both included."""
        reply = self._admin(encode_group_admin(group, ADMIN_REPLAY_RANGE, id_range=(first, last)))
        assert isinstance(reply, GroupsReply)
        return reply.groups[0]

    def reset_group(self, group: str, start: Start) -> GroupInfo:
        """Move a group without members to `start` (GroupInUse while members are joined)."""
        reply = self._admin(encode_group_admin(group, ADMIN_RESET, start))
        assert isinstance(reply, GroupsReply)
        return reply.groups[0]

    def group_detail(self, group: str) -> GroupDetail:
        """One group with its settings and members (at most the server's members_listed_max)."""
        reply = self._admin(encode_groups_detail_request(group))
        assert isinstance(reply, GroupsDetailReply) and len(reply.groups) == 1
        return reply.groups[0]

    def create_group(self, group: str, glob: str, start: Optional[Start] = None,
                     settings: Optional[GroupSettings] = None) -> GroupDetail:
        """Create a group (an existing one with the same glob and settings is returned as is)."""
        reply = self._admin(encode_group_admin(group, ADMIN_CREATE, start, glob=glob, settings=settings))
        assert isinstance(reply, GroupsDetailReply)
        return reply.groups[0]

    def update_group_settings(self, group: str, settings: GroupSettings) -> GroupDetail:
        """Change a group's settings (0 fields stay), also while members are joined."""
        reply = self._admin(encode_group_admin(group, ADMIN_UPDATE_SETTINGS, settings=settings))
        assert isinstance(reply, GroupsDetailReply)
        return reply.groups[0]

    def delete_group(self, group: str) -> None:
        self._admin(encode_group_admin(group, ADMIN_DELETE))

    def namespaces(self, glob: str = "/**") -> Iterator[NamespaceInfo]:
        """Every namespace `glob` matches, in name order, with its event count and first and
        last event, fetched page by page as the iteration goes (protocol.md,
        NamespacesRequest). With auth, only namespaces the principal may consume."""
        after = ""
        while True:
            page = self._admin(encode_namespaces_request(glob, after))
            assert isinstance(page, NamespacesReply)
            yield from page.namespaces
            if not page.more or not page.namespaces:
                return
            after = page.namespaces[-1].name

    def trace(self, event_id: EventId) -> Tuple[List[TraceEntry], bool]:
        """The trace of `event_id` (protocol.md, TraceRequest): its ancestors (oldest first),
        the event (depth 0) and its descendants level by level, and whether a server limit cut
        it short. Raises FloError NoSuchEvent for an id the server does not hold."""
        self._send(encode_trace_request(event_id))
        self.admin_outstanding += 1
        entries: List[TraceEntry] = []
        deadline = self._deadline(None)
        while True:
            while not self.admin_replies:
                self._pump(deadline)
            reply = self.admin_replies.popleft()
            if isinstance(reply, FloError):
                raise reply
            assert isinstance(reply, TraceReply)
            entries.extend(reply.entries)
            if not reply.more:
                return entries, reply.truncated
            self.admin_outstanding += 1  # the next frame of the same answer

    def purge(self, glob: str, before_id: Optional[EventId] = None, before_ms: Optional[int] = None) -> Purged:
        """Purge the namespaces `glob` matches before an id or a time (admin). Returns once the
        purge is durable on the server; its events are never delivered again (section 17)."""
        reply = self._admin(encode_purge(glob, before_id, before_ms))
        assert isinstance(reply, Purged)
        return reply

    def members(self) -> List[MemberEntry]:
        """This node, the members it knows and the removed ones (admin; protocol.md section
        14, MembersRequest)."""
        reply = self._admin(encode_members_request())
        assert isinstance(reply, MembersReply)
        return reply.members

    def change_member(self, operation: int, actor_id: int) -> List[MemberEntry]:
        """Remove a member (MEMBER_REMOVE) or add a removed one back (MEMBER_ADD); returns the
        member list after the change (admin; protocol.md section 14, ChangeMember)."""
        reply = self._admin(encode_change_member(operation, actor_id))
        assert isinstance(reply, MembersReply)
        return reply.members

    def purges(self) -> PurgesReply:
        """The purges and per-namespace retention rules in force (admin)."""
        reply = self._admin(encode_purges_request())
        assert isinstance(reply, PurgesReply)
        return reply

    # -- keep-alive --------------------------------------------------------------------------

    def set_replicas(self, replicas: int) -> None:
        """Later produces are acked only once `replicas` members hold them durably (0: the
        server's --min-replicas). No reply; a produce that misses them gets FloError
        ReplicationTimeout, whose events were appended anyway (protocol.md, SetReplicas)."""
        self._send(encode_set_replicas(replicas))

    def ping(self, timeout: Optional[float] = None) -> float:
        """Send a Ping and wait for its Pong; returns the round trip in seconds."""
        token = self.next_ping
        self.next_ping += 1
        t0 = time.monotonic()
        self._send(encode_ping(token))
        deadline = self._deadline(timeout)
        while token not in self.pongs:
            self._pump(deadline)
        self.pongs.discard(token)
        return time.monotonic() - t0

    # -- I/O ---------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (for tests of the server's error handling)."""
        self._send(data)

    def _send(self, data: bytes) -> None:
        """Sends `data` (one frame, or nothing), after the queued group acks."""
        if self.closed is not None:
            raise self.closed
        if len(data) > (self.welcome.frame_size_max if self.welcome else U32_MAX):
            raise ValueError("frame over the server's frame_size_max")
        data = self._take_acks() + data
        if not data:
            return
        try:
            self.sock.sendall(data)
        except OSError as e:
            self._close(ConnectionClosed(f"send failed: {e}", self.fatal))
            raise self.closed from e  # type: ignore[misc]

    def _take_acks(self) -> bytes:
        """The frames of every queued group ack (emptying the queues)."""
        if not self._acks_waiting:
            return b""
        members = list(self._acks_waiting.values())
        self._acks_waiting.clear()
        return b"".join(member._take_ack_frames() for member in members)

    def _deadline(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _close(self, reason: ConnectionClosed) -> None:
        if self.closed is None:
            self.closed = reason
        try:
            self.sock.close()
        except OSError:
            pass

    def read_frame(self, deadline: float) -> Optional[Tuple[int, bytes]]:
        """Read one raw frame (kind, body); None at a clean end of stream."""
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack_from(">I", self.buf)
                if length == 0:
                    raise ProtocolError("frame length 0")
                if 4 + length > self.frame_max:
                    raise ProtocolError(f"frame of {4 + length} bytes is over {self.frame_max}")
                if len(self.buf) >= 4 + length:
                    kind = self.buf[4]
                    body = bytes(self.buf[5 : 4 + length])
                    del self.buf[: 4 + length]
                    return kind, body
            if self._acks_waiting:
                self._send(b"")  # the queued group acks, before waiting for the network
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no frame from the server in time") from None
            except OSError as e:
                if isinstance(e, ConnectionResetError):
                    return None
                raise
            if not chunk:
                if self.buf:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None
            self.buf += chunk

    def _pump(self, deadline: float) -> None:
        """Read and dispatch one frame."""
        if self.closed is not None:
            raise self.closed
        try:
            got = self.read_frame(deadline)
            if got is None:
                self._fail_all(ConnectionClosed("connection closed by the server", self.fatal))
                raise self.closed  # type: ignore[misc]
            self._dispatch(decode(*got))
        except ProtocolError as e:
            self._fail_all(ConnectionClosed(f"protocol error: {e}"))
            raise

    def _fail_all(self, reason: ConnectionClosed) -> None:
        self._close(reason)

    def _dispatch(self, f: ServerFrame) -> None:
        if isinstance(f, Welcome):
            if self.welcome is not None:
                raise ProtocolError("second Welcome")
            if f.protocol_version != PROTOCOL_VERSION:
                raise ProtocolError(f"server speaks version {f.protocol_version}")
            self.welcome = f
            self.frame_max = f.frame_size_max
        elif isinstance(f, Ack):
            if f.op_id not in self.pending_ops:
                raise ProtocolError(f"Ack for unknown op {f.op_id}")
            self.pending_ops.discard(f.op_id)
            self.replies[f.op_id] = f
        elif isinstance(f, FloError):
            self._dispatch_error(f)
        elif isinstance(f, (Event, CaughtUp, Skipped, End)):
            sub = self.subs.get(f.subscription_id)
            if sub is None or sub.ended is not None:
                raise ProtocolError(f"{type(f).__name__} for unknown subscription {f.subscription_id}")
            if isinstance(f, End):
                self._end_sub(sub, f)
            elif isinstance(f, Event) and isinstance(sub, GroupMember):
                sub._on_delivered(f.id)
            sub.queue.append(f)
        elif isinstance(f, (GroupsReply, GroupsDetailReply, ParkedReply, Purged, PurgesReply, NamespacesReply, TraceReply,
                            MembersReply)):
            if self.admin_outstanding == 0:
                raise ProtocolError(f"{type(f).__name__} nobody asked for")
            self.admin_outstanding -= 1
            self.admin_replies.append(f)
        elif isinstance(f, tuple) and f[0] == "pong":
            self.pongs.add(f[1])
        else:  # pragma: no cover - decode returns only the types above
            raise ProtocolError(f"unexpected frame {f!r}")

    def _end_sub(self, sub: Subscription, how: Union[End, FloError]) -> None:
        sub.ended = how
        del self.subs[sub.id]
        self.ended_subs.add(sub.id)

    def _dispatch_error(self, e: FloError) -> None:
        if e.scope_code == SCOPE_CONNECTION and not e.closes_connection and self.admin_outstanding > 0:
            # The answer to the oldest group inspection or admin request (NoSuchGroup,
            # GroupInUse, PermissionDenied, ...); the connection stays open.
            self.admin_outstanding -= 1
            self.admin_replies.append(e)
            return
        if e.scope_code == SCOPE_CONNECTION or e.closes_connection:
            self.fatal = e
            if not e.closes_connection:
                # A connection-scope error with a non-closing code: nothing to attach it to.
                self.ignored_errors.append(e)
                return
            # The server closes after this; report it to every waiter.
            self._close(ConnectionClosed("connection closed by the server", e))
            raise self.closed  # type: ignore[misc]
        if e.scope_code == SCOPE_PRODUCE:
            if e.target not in self.pending_ops:
                raise ProtocolError(f"Error for unknown op {e.target}")
            self.pending_ops.discard(e.target)
            self.replies[e.target] = e  # type: ignore[index]
            return
        sub = self.subs.get(e.target)  # type: ignore[arg-type]
        if sub is None:
            if e.name == "UnknownSubscription" and e.target in self.ended_subs:
                self.ignored_errors.append(e)  # a Credit or Unsubscribe crossed the End
                return
            raise ProtocolError(f"Error for unknown subscription {e.target}: {e}")
        if e.name == "NotPending" and isinstance(sub, GroupMember):
            sub.not_pending += 1  # a late ack or nack; the membership goes on
            self.ignored_errors.append(e)
            return
        if e.name in ("UnknownSubscription", "DuplicateSubscription", "UnknownGroup"):
            # UnknownSubscription answers a Credit/Unsubscribe; DuplicateSubscription refuses a
            # second Subscribe with an open id. Neither ends the open subscription.
            self.ignored_errors.append(e)
            return
        self._end_sub(sub, e)
        sub.queue.append(e)


# ---------------------------------------------------------------------------------------------
# Idempotent producer


def random_producer_id() -> int:
    """A random producer id (64 bits, never 0)."""
    return int.from_bytes(os.urandom(8), "big") or 1


class IdempotentProducer:
    """Pipelined produces that survive a lost connection or a server restart without storing an
    event twice (protocol.md, SetProducer; the Rust client's `IdempotentProducer`).

    Every produce gets the next sequence number of `producer_id`. Each event is kept until its
    Ack arrives; after a lost connection (a server restart, kill -9, a cut network) the producer
    connects again, sends SetProducer with the number of the oldest unacknowledged event and
    resends every unacknowledged event in order. The server answers a number it already stored
    with the original Ack (the same ids), so each event is stored once.

    At most `window` events are in flight (at most the server's `streams.producer_window`, 256
    by default). The guarantee holds against one server: a retry sent to another cluster member
    is stored again there. Reuse `producer_id` (and `resume_at`) to continue after a restart of
    this process; otherwise leave it to be chosen at random.
    """

    def __init__(self, host: str, port: int, producer_id: Optional[int] = None, window: int = 64,
                 reconnect_attempts: int = 20, reconnect_delay: float = 0.25, **connect_args) -> None:
        if producer_id == 0:
            raise ValueError("producer id 0 means no producer")
        self.producer_id = producer_id if producer_id is not None else random_producer_id()
        self.window = max(1, window)
        self.next_sequence = 1
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self.reconnects = 0
        self._address = (host, port)
        self._connect_args = connect_args
        # [sequence, op id on the current connection, event], oldest first.
        self._unacked: Deque[list] = collections.deque()
        self._announced = False
        # The ProducerFenced error that ended this producer: a newer connection speaks for the id.
        self.fenced: Optional[FloError] = None
        self.client: Optional[FloClient] = FloClient.connect(host, port, **connect_args)

    def resume_at(self, next_sequence: int) -> None:
        """Continue the numbering of an earlier run of this producer id. Before the first send."""
        if self._announced or self._unacked:
            raise RuntimeError("resume_at before the first send")
        self.next_sequence = next_sequence

    @property
    def in_flight(self) -> int:
        return len(self._unacked)

    def is_full(self) -> bool:
        return len(self._unacked) >= self.window

    def send(self, namespace: str, data: bytes = b"", parent_id: Optional[EventId] = None) -> None:
        """Send one event without waiting (raises ValueError when the window is full: call
        `recv_ack` first). A lost connection is not an error here: the event is resent."""
        self._check_fenced()
        if self.is_full():
            raise ValueError(f"{self.window} produces are in flight already")
        event = NewEvent(namespace, data, parent_id)
        client = self._client()
        client._check_event(event)
        pending = [self.next_sequence, 0, event]
        self._unacked.append(pending)
        self.next_sequence += 1
        try:
            if not self._announced:
                client.set_producer(self.producer_id, pending[0])
                self._announced = True
            pending[1] = client.send_produce(event.namespace, event.data, event.parent_id)
        except (ConnectionClosed, OSError):
            self._reconnect()

    def recv_ack(self) -> Optional[Ack]:
        """The Ack of the oldest event in flight (None when none is): the original one if it was
        stored before a reconnect. Raises the FloError that refused that one event, or
        ConnectionClosed when the reconnect attempts ran out."""
        while self._unacked:
            oldest = self._unacked[0]
            try:
                ack = self._client().wait_reply(oldest[1])
            except FloError as error:
                if error.closes_connection:
                    self._reconnect()
                    continue
                self._unacked.popleft()
                if error.code == PRODUCER_FENCED:
                    # A newer connection announced this producer id: never announce it again
                    # (a reconnect would fence the newer one in turn).
                    self.fenced = error
                raise
            except (ConnectionClosed, OSError, TimeoutError, ProtocolError):
                self._reconnect()
                continue
            self._unacked.popleft()
            return ack
        return None

    def produce(self, namespace: str, data: bytes = b"", parent_id: Optional[EventId] = None) -> Ack:
        """Send one event and wait for its Ack (and those of every event sent before it)."""
        while self.is_full():
            self.recv_ack()
        self.send(namespace, data, parent_id)
        ack = None
        while self._unacked:
            ack = self.recv_ack()
        assert ack is not None
        return ack

    def flush(self) -> List[Ack]:
        """Wait for the Ack of every event in flight, oldest first."""
        acks = []
        while self._unacked:
            ack = self.recv_ack()
            assert ack is not None
            acks.append(ack)
        return acks

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> "IdempotentProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _client(self) -> FloClient:
        if self.client is None:
            self._reconnect()
        assert self.client is not None
        return self.client

    def _check_fenced(self) -> None:
        if self.fenced is not None:
            raise FloError(self.fenced.scope_code, self.fenced.target, PRODUCER_FENCED,
                           f"producer {self.producer_id} is fenced; nothing more is sent "
                           f"(the first refusal: {self.fenced.message})")

    def _reconnect(self) -> None:
        """Connect again and resend every unacknowledged event with its number (never once
        fenced: the SetProducer would take the id back from the newer connection)."""
        self._check_fenced()
        self.close()
        last_error: Optional[BaseException] = None
        for attempt in range(1, self.reconnect_attempts + 1):
            time.sleep(self.reconnect_delay * attempt)
            try:
                client = FloClient.connect(*self._address, **self._connect_args)
                first = self._unacked[0][0] if self._unacked else self.next_sequence
                client.set_producer(self.producer_id, first)
                for pending in self._unacked:
                    event = pending[2]
                    pending[1] = client.send_produce(event.namespace, event.data, event.parent_id)
            except (ConnectionClosed, OSError, TimeoutError, ProtocolError) as error:
                last_error = error
                continue
            self.client = client
            self._announced = True
            self.reconnects += 1
            log.info("producer %d connected again (attempt %d), resent %d events",
                     self.producer_id, attempt, len(self._unacked))
            return
        raise ConnectionClosed(f"could not connect again after {self.reconnect_attempts} attempts: {last_error}")
