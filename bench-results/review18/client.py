#!/usr/bin/env python3
"""A minimal flo client written from protocol.md alone (review18, session 18).

Standard library only. Usage: python3 client.py HOST PORT   (runs the walkthrough below)
"""
import os
import socket
import struct
import sys
import time

# Frame kinds (protocol.md section 3).
HELLO, PRODUCE, PRODUCE_BATCH, SUBSCRIBE, CREDIT, UNSUBSCRIBE, PING, STATUS_REQ = 1, 2, 3, 4, 5, 6, 7, 8
JOIN_GROUP, GROUP_ACK, GROUP_NACK, LEAVE_GROUP = 0x09, 0x0A, 0x0B, 0x0C
PRODUCE_IF, INFO_REQ, GROUP_ACK_RANGE, GROUP_PROGRESS = 0x12, 0x18, 0x1B, 0x1C
WELCOME, ACK, ERROR, EVENT, CAUGHT_UP, END, PONG, STATUS, SKIPPED = 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29
INFO = 0x30

# Error codes that close the connection (section 11, "Closes the connection?" = yes).
CLOSING_CODES = {1, 2, 3, 4, 5, 12, 13, 14, 15, 18, 19, 21, 23, 40, 45}
ERROR_NAMES = {1: "MalformedFrame", 2: "UnsupportedVersion", 3: "FrameTooLarge", 4: "HandshakeRequired",
               5: "AuthFailed", 6: "InvalidNamespace", 7: "EventTooLarge", 8: "InvalidGlob",
               9: "StorageFailure", 10: "DuplicateSubscription", 11: "UnknownSubscription",
               13: "Timeout", 14: "ShuttingDown", 15: "UnexpectedFrame", 16: "TooManySubscriptions",
               17: "InvalidBatch", 20: "NotReady", 24: "PermissionDenied", 25: "UnknownGroup",
               26: "NotPending", 27: "InvalidGroupName", 28: "GroupGlobMismatch", 35: "ExpectationFailed"}
END_REASONS = {1: "LimitReached", 2: "EndOfStream", 3: "Unsubscribed"}
# Codes of the table of section 11; an Error with another code is handled by its scope, and one
# of scope connection closes the connection (the client cannot know whether it stays open).
KNOWN_CODES = set(range(1, 34)) | {35, 36, 37, 38, 40, 42} | set(range(44, 52))
NONE_ID = (0, 0)
# Not in protocol.md before review18: without TCP_NODELAY a frame written right after one that
# gets no reply (Credit, GroupAck, ...) waits ~40 ms for the server's delayed ACK (Nagle).
NODELAY = os.environ.get("NODELAY", "1") == "1"


class ProtocolError(Exception):
    pass


class FloError(Exception):
    def __init__(self, scope, ref, code, message):
        super().__init__(f"{ERROR_NAMES.get(code, f'code {code}')} ({code}): {message}")
        self.scope, self.ref, self.code, self.message = scope, ref, code, message


def id_text(eid):
    return f"{eid[0]:020d}{eid[1]:05d}"


# ---- encoding (section 2: big-endian, str16 = u16 byte length + UTF-8) ----
def str16(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("str16 too long")
    return struct.pack(">H", len(b)) + b


def event_id(eid):
    return struct.pack(">QH", eid[0], eid[1])


def new_event(namespace, data=b"", parent=None):
    return str16(namespace) + event_id(parent or NONE_ID) + struct.pack(">I", len(data)) + data


def frame(kind, body=b""):
    return struct.pack(">IB", 1 + len(body), kind) + body


def start_beginning():
    return b"\x00"


def start_end():
    return b"\x01"


def start_after(eid):
    return b"\x02" + event_id(eid)


# ---- decoding ----
class Reader:
    def __init__(self, buf):
        self.b, self.i = buf, 0

    def take(self, n):
        if self.i + n > len(self.b):
            raise ProtocolError("field does not fit")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self): return self.take(1)[0]
    def u16(self): return struct.unpack(">H", self.take(2))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def u64(self): return struct.unpack(">Q", self.take(8))[0]
    def str16(self): return self.take(self.u16()).decode("utf-8")
    def bytes32(self): return bytes(self.take(self.u32()))

    def boolean(self):
        v = self.u8()
        if v > 1:
            raise ProtocolError("bad bool")
        return v == 1

    def event_id(self, optional=False):
        c, a = struct.unpack(">QH", self.take(10))
        if c == 0 and (a != 0 or not optional):
            raise ProtocolError("bad id")
        return None if c == 0 else (c, a)

    def vector(self):
        return [(self.u16(), self.u64()) for _ in range(self.u16())]

    def done(self):
        if self.i != len(self.b):
            raise ProtocolError("trailing bytes")  # section 2, "Trailing bytes"


def decode(kind, body):
    """Returns (name, dict). Raises ProtocolError for what section 13 step 9 says to close on."""
    r = Reader(body)
    if kind == WELCOME:
        f = dict(version=r.u16(), server=r.str16(), actor=r.u16(), frame_size_max=r.u32(),
                 namespace_length_max=r.u32(), event_data_size_max=r.u32(),
                 subscriptions_max=r.u32(), idle_timeout_ms=r.u32())
    elif kind == ACK:
        f = dict(op=r.u64(), first_id=r.event_id(), count=r.u32(), timestamp=r.u64())
    elif kind == ERROR:
        scope = r.u8()
        if scope not in (0, 1, 2):
            raise ProtocolError("bad error scope")
        ref = None if scope == 0 else (r.u64() if scope == 1 else r.u32())
        f = dict(scope=scope, ref=ref, code=r.u16(), message=r.str16())
    elif kind == EVENT:
        f = dict(sub=r.u32(), id=r.event_id(), parent=r.event_id(True), timestamp=r.u64(),
                 namespace=r.str16(), data=r.bytes32())
    elif kind == CAUGHT_UP:
        f = dict(sub=r.u32())
    elif kind == END:
        f = dict(sub=r.u32(), reason=r.u8())
        if f["reason"] not in END_REASONS:
            raise ProtocolError("bad end reason")
    elif kind == PONG:
        f = dict(token=r.u64())
    elif kind == SKIPPED:
        f = dict(sub=r.u32(), count=r.u64())
    elif kind == STATUS:
        f = dict(actor=r.u16(), counter=r.u64(), event_count=r.u64(), durable_end=r.u64(), vector=r.vector())
        members = []
        for _ in range(r.u16()):
            members.append(dict(actor=r.u16(), addr=r.str16(), state=r.u8(), vector=r.vector(),
                                lag=r.u64(), disconnected_ms=r.u64()))
        f["members"] = members
        f["stable_clock"] = r.u64()
        if r.boolean():
            f["holder"] = dict(actor=r.u16(), addr=r.str16(), clock=r.u64(), held_ms=r.u64())
        f.update(waiting_subscriptions=r.u32(), waiting_events=r.u64(), waiting_ms=r.u64())
    elif kind == INFO:
        f = dict(version=r.str16(), uptime_ms=r.u64(), fsync=r.str16(), actor=r.u16(),
                 log_bytes=r.u64(), event_count=r.u64(), segment_count=r.u64(),
                 client_connections=r.u32(), peer_connections=r.u32(), subscriptions=r.u32(),
                 group_count=r.u32())
    else:
        raise ProtocolError(f"frame kind 0x{kind:02x} not expected")  # unknown kind: close
    r.done()
    return kind, f


class Client:
    def __init__(self, host, port, name="review18-py", token=b"", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if NODELAY:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.frame_max = 64 * 1024  # section 4/13: until Welcome, accept frames up to 64 KiB
        self.next_op = 1
        self.closed = False
        self.send(frame(HELLO, struct.pack(">H", 1) + str16(name) + str16(token)))
        kind, f = self.recv()
        if kind == ERROR:
            raise FloError(**f)
        if kind != WELCOME:
            raise ProtocolError("expected Welcome")
        self.welcome = f
        self.frame_max = f["frame_size_max"]

    def send(self, data):
        if len(data) > getattr(self, "welcome", {}).get("frame_size_max", 4096):
            raise ValueError("frame over frame_size_max")
        self.sock.sendall(data)

    def recv(self):
        """One frame, decoded. A connection-closing Error marks the client closed."""
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack(">I", self.buf[:4])
                if length == 0 or 4 + length > self.frame_max:
                    raise ProtocolError(f"bad frame length {length}")
                if len(self.buf) >= 4 + length:
                    kind, body = self.buf[4], bytes(self.buf[5:4 + length])
                    del self.buf[:4 + length]
                    kind, f = decode(kind, body)
                    if kind == ERROR and (f["code"] in CLOSING_CODES or
                                          f["scope"] == 0 and f["code"] not in KNOWN_CODES):
                        self.closed = True
                    return kind, f
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def op(self):
        o, self.next_op = self.next_op, self.next_op + 1
        return o

    # ---- requests ----
    def produce(self, namespace, data=b"", parent=None):
        op = self.op()
        self.send(frame(PRODUCE, struct.pack(">Q", op) + new_event(namespace, data, parent)))
        return op

    def produce_if(self, expectation, expected, events):
        op = self.op()
        body = struct.pack(">QB", op, expectation) + event_id(expected or NONE_ID)
        body += struct.pack(">I", len(events)) + b"".join(new_event(*e) for e in events)
        self.send(frame(PRODUCE_IF, body))
        return op

    def subscribe(self, sub, glob, start, limit=0, tail=True, credit=100):
        self.send(frame(SUBSCRIBE, struct.pack(">I", sub) + str16(glob) + start +
                        struct.pack(">QBI", limit, 1 if tail else 0, credit)))

    def credit(self, sub, n):
        self.send(frame(CREDIT, struct.pack(">II", sub, n)))

    def unsubscribe(self, sub):
        self.send(frame(UNSUBSCRIBE, struct.pack(">I", sub)))

    def ping(self, token):
        self.send(frame(PING, struct.pack(">Q", token)))

    def join_group(self, sub, group, glob, start, credit=100, ack_timeout_ms=0, max_deliveries=0, max_in_flight=0):
        self.send(frame(JOIN_GROUP, struct.pack(">I", sub) + str16(group) + str16(glob) + start +
                        struct.pack(">IIHI", credit, ack_timeout_ms, max_deliveries, max_in_flight)))

    def _ids(self, kind, sub, ids, prefix=b""):
        self.send(frame(kind, struct.pack(">I", sub) + prefix + struct.pack(">H", len(ids)) +
                        b"".join(event_id(i) for i in ids)))

    def group_ack(self, sub, ids):
        self._ids(GROUP_ACK, sub, ids)

    def group_nack(self, sub, ids, delay_ms=0):
        self._ids(GROUP_NACK, sub, ids, struct.pack(">I", delay_ms))

    def group_progress(self, sub, ids):
        self._ids(GROUP_PROGRESS, sub, ids)

    def group_ack_range(self, sub, first, last):
        self.send(frame(GROUP_ACK_RANGE, struct.pack(">I", sub) + event_id(first) + event_id(last)))

    def leave_group(self, sub):
        self.send(frame(LEAVE_GROUP, struct.pack(">I", sub)))

    def status(self):
        self.send(frame(STATUS_REQ))

    def info(self):
        self.send(frame(INFO_REQ))

    def wait_for(self, pred, what, events=None):
        """Read frames until pred(kind, f) holds; Events on the way go to `events` if given."""
        while True:
            kind, f = self.recv()
            if pred(kind, f):
                return kind, f
            if kind in (EVENT, CAUGHT_UP) and events is not None:
                events.append(f if kind == EVENT else ("CaughtUp", f["sub"]))
                continue
            if kind == ERROR and self.closed:
                raise FloError(**f)
            raise ProtocolError(f"while waiting for {what}: unexpected {kind:#x} {f}")

    def close(self):
        self.sock.close()


def is_reply(op):
    return lambda k, f: (k == ACK and f["op"] == op) or (k == ERROR and f["scope"] == 1 and f["ref"] == op)


def main(host, port):
    c = Client(host, port)
    print("welcome:", c.welcome)
    run = str(int(time.time() * 1000))
    ns = f"/review18/{run}"

    # 1. produce, then a child with that parent
    _, ack = c.wait_for(is_reply(c.produce(ns + "/orders/1", b"created")), "ack")
    parent = ack["first_id"]
    print("produced", id_text(parent), "at", ack["timestamp"])
    _, ack2 = c.wait_for(is_reply(c.produce(ns + "/orders/1/paid", b"paid", parent)), "ack")
    print("child", id_text(ack2["first_id"]), "of", id_text(parent))

    # 2. optimistic concurrency: create-only succeeds once, stale expectation is refused
    agg = ns + "/accounts/42"
    k, f = c.wait_for(is_reply(c.produce_if(1, None, [(agg, b"opened")])), "ack")
    assert k == ACK, f
    opened = f["first_id"]
    k, f = c.wait_for(is_reply(c.produce_if(2, opened, [(agg, b"deposit 10")])), "ack")
    assert k == ACK, f
    deposit = f["first_id"]
    k, f = c.wait_for(is_reply(c.produce_if(2, opened, [(agg, b"withdraw 5")])), "refusal")
    assert k == ERROR and f["code"] == 35, f
    actual = f["message"].split(":", 1)[0]
    print("refused as expected:", f["message"], "-> newest", actual)
    assert actual == id_text(deposit), (actual, deposit)
    k, f = c.wait_for(is_reply(c.produce_if(1, None, [(agg, b"again")])), "refusal")
    assert k == ERROR and f["code"] == 35, f
    k, f = c.wait_for(is_reply(c.produce_if(3, None, [(ns + "/empty", b"x")])), "refusal")
    assert k == ERROR and f["code"] == 35 and f["message"].startswith("none:"), f

    # 3. consume from the beginning with a glob, small credit, tail
    glob = ns + "/orders/**"
    c.subscribe(1, glob, start_beginning(), tail=True, credit=1)
    _, first_ev = c.wait_for(lambda k, f: k == EVENT and f["sub"] == 1, "event")
    print("first event:", id_text(first_ev["id"]), first_ev["namespace"], "parent", first_ev["parent"])
    # credit is used up: nothing more until Credit; a Ping proves nothing else was queued
    c.ping(1)
    k, f = c.recv()
    assert k == PONG, (k, f)
    c.credit(1, 10)
    evs = []
    c.wait_for(lambda k, f: k == CAUGHT_UP and f["sub"] == 1, "caught up", evs)
    print("after Credit:", [(id_text(e["id"]), e["namespace"], e["parent"]) for e in evs], "then CaughtUp")
    assert [e["parent"] for e in evs] == [parent], evs
    # tail: produce a new one on the same connection, see Ack then Event
    op = c.produce(ns + "/orders/2", b"live")
    c.wait_for(is_reply(op), "ack")
    _, live = c.wait_for(lambda k, f: k == EVENT and f["sub"] == 1, "live event")
    print("live:", id_text(live["id"]), live["namespace"], live["data"])
    assert live["namespace"] == ns + "/orders/2" and live["data"] == b"live", live
    c.unsubscribe(1)
    c.wait_for(lambda k, f: k == END and f["sub"] == 1, "end")

    # 4. consumer group: join, ack, nack, progress (a membership always follows new events)
    jobs = ns + "/jobs/**"
    for i in range(3):
        c.wait_for(is_reply(c.produce(f"{ns}/jobs/{i}", b"job %d" % i)), "ack")
    c.join_group(7, "rv18-" + run, jobs, start_beginning(), credit=10, ack_timeout_ms=2000)
    frames = []  # Events and CaughtUp of the membership, in arrival order
    while len([e for e in frames if isinstance(e, dict)]) < 3:
        frames.append(c.recv()[1])
    delivered = [e["id"] for e in frames if "id" in e]
    print("group delivered:", [id_text(i) for i in delivered])
    c.group_ack(7, [delivered[0]])
    c.group_progress(7, [delivered[1]])  # still working on it: its ack time-out starts again
    c.group_nack(7, [delivered[1]], delay_ms=0)  # redeliver at once
    _, redelivered = c.wait_for(lambda k, f: k == EVENT and f["id"] == delivered[1], "redelivery", frames)
    print("redelivered after nack:", id_text(redelivered["id"]))
    c.group_ack(7, [delivered[0]])  # already acknowledged -> NotPending, membership goes on
    c.ping(3)
    k, f = c.wait_for(lambda k, f: k in (ERROR, PONG), "NotPending", frames)
    print("second ack of", id_text(delivered[0]), "->", f)
    assert k == ERROR and f["code"] == 26 and f["ref"] == 7, f
    c.wait_for(lambda k, f: k == PONG, "pong", frames)
    c.group_ack_range(7, delivered[1], delivered[2])  # the rest, as one range
    c.leave_group(7)
    c.wait_for(lambda k, f: k == END and f["sub"] == 7, "end", frames)

    # 5. status and info
    c.status()
    _, st = c.wait_for(lambda k, f: k == STATUS, "status")
    print("status:", st)
    c.info()
    _, inf = c.wait_for(lambda k, f: k == INFO, "info")
    print("info:", inf)
    c.close()
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
