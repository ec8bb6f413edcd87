"""Tests of flo_client.py against the real server binary.

Run with the package installed (ci/python-client.sh installs it into a fresh virtualenv), or
from clients/python without installing:  python3 -m unittest -v tests.test_flo_client
The server binary is $FLO_BIN, default target/release/flo under the repository root. With
FLO_CLIENT_INSTALLED=1 the tests refuse to run against the source tree's copy of the package.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))

import flo_client as flo  # noqa: E402
from flo_client import (  # noqa: E402
    CaughtUp,
    ConnectionClosed,
    Cursor,
    End,
    Event,
    EventId,
    FloClient,
    FloError,
    NewEvent,
    Start,
)

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
if os.environ.get("FLO_CLIENT_INSTALLED") == "1" and flo.__file__.startswith(os.path.dirname(HERE)):
    sys.exit(f"flo_client was imported from the source tree ({flo.__file__}), not the installed package")
FLO_BIN = os.environ.get("FLO_BIN", os.path.join(REPO, "target", "release", "flo"))
LISTEN_RE = re.compile(r" listening on 127\.0\.0\.1:(\d+),")
START_TIMEOUT = 20.0
STEP = 10.0  # seconds to wait for any one expected frame


class Server:
    """One flo server process on a free port with its own data directory."""

    def __init__(self, extra: "list[str] | None" = None, port: int = 0, data_dir: "str | None" = None) -> None:
        self.dir = data_dir or tempfile.mkdtemp(prefix="flo-py-")
        self.extra = extra or []
        self.proc = subprocess.Popen(
            [FLO_BIN, "-p", str(port), "-d", self.dir] + self.extra,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.log: list[str] = []
        found = threading.Event()
        self.port = 0

        def read_stderr() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.log.append(line)
                m = LISTEN_RE.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            found.set()  # the server exited (or closed stderr): stop waiting

        self.reader = threading.Thread(target=read_stderr, daemon=True)
        self.reader.start()
        if not found.wait(START_TIMEOUT) or self.port == 0:
            self.stop()
            raise RuntimeError("server did not log its address:\n" + "".join(self.log))

    def client(self, **kw) -> FloClient:
        return FloClient.connect("127.0.0.1", self.port, timeout=STEP, **kw)

    def kill9_and_restart(self) -> "Server":
        """kill -9 this server, then start another on the same port and data directory."""
        self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return Server(self.extra, port=self.port, data_dir=self.dir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def spec_examples() -> dict[str, bytes]:
    """Every ```hex block of protocol.md, by its first comment line."""
    with open(os.path.join(REPO, "protocol.md"), encoding="utf-8") as f:
        text = f.read()
    out = {}
    for block in re.findall(r"```hex\n(.*?)```", text, re.S):
        lines = block.splitlines()
        title = lines[0].lstrip("# ").strip()
        out[title] = bytes.fromhex("".join(line.split("#")[0] for line in lines[1:]))
    return out


class OfflineTests(unittest.TestCase):
    """No server: the codec against protocol.md's examples, and the id text form."""

    def test_encoders_match_spec_examples(self) -> None:
        ex = spec_examples()
        cur = Cursor(EventId(0, 0), {2: 3, 1: 7})
        cases = {
            'Hello: version 1, client name "py-flo 1.0", no auth token': flo.encode_hello("py-flo 1.0"),
            'Hello with the auth token "s3cret"': flo.encode_hello("go", b"s3cret"),
            'Produce: op id 1, namespace /food/eggs, no parent, data "hi"': flo.encode_produce(
                1, NewEvent("/food/eggs", b"hi")
            ),
            'Produce: op id 2, namespace /food/eggs/reply, parent 0000000000000000000500001, data "ok"':
                flo.encode_produce(2, NewEvent("/food/eggs/reply", b"ok", EventId.parse("0000000000000000000500001"))),
            "ProduceBatch: op id 3, two events": flo.encode_batch(3, [NewEvent("/a", b"x"), NewEvent("/b")]),
            "Subscribe 1 to /food/** from the beginning, tail, credit 100": flo.encode_subscribe(
                1, "/food/**", Start.beginning(), 0, True, 100
            ),
            "Subscribe 2 to /** from the end (new events only), tail, credit 10": flo.encode_subscribe(
                2, "/**", Start.end(), 0, True, 10
            ),
            "Subscribe 3 to /food/* after event 0000000000000000004200001, no tail, limit 10": flo.encode_subscribe(
                3, "/food/*", Start.after_id(EventId.parse("42.1")), 10, False, 100
            ),
            "Subscribe 4 to /food/** at the cursor floor none, vector {1: 7, 2: 3}": flo.encode_subscribe(
                4, "/food/**", Start.at_cursor(cur), 0, True, 100
            ),
            "Subscribe 5 to /food/** at the cursor floor 0000000000000000004200001, vector {3: 50}":
                flo.encode_subscribe(5, "/food/**", Start.at_cursor(Cursor(EventId(42, 1), {3: 50})), 0, True, 100),
            "Subscribe 6 to /food/** from 1700000000000 ms (2023-11-14T22:13:20Z)": flo.encode_subscribe(
                6, "/food/**", Start.at_timestamp(1700000000000), 0, True, 100
            ),
            "Subscribe 7 to /** from the beginning, tail, skipping damaged ranges, credit 100": flo.encode_subscribe(
                7, "/**", Start.beginning(), 0, True, 100, skip_damaged=True
            ),
            "Subscribe 8 to /** from the beginning, tail, in id order, credit 100": flo.encode_subscribe(
                8, "/**", Start.beginning(), 0, True, 100, id_order=True
            ),
            "Credit: 50 more events for subscription 1": flo.encode_credit(1, 50),
            "Unsubscribe subscription 1": flo.encode_unsubscribe(1),
            "Ping with token 7": flo.encode_ping(7),
            "SetReplicas: 2 members must hold each later produce": flo.encode_set_replicas(2),
            'JoinGroup 1 to group "workers", glob /jobs/**, from the beginning, credit 100,': flo.encode_join_group(
                1, "workers", "/jobs/**", Start.beginning(), 100, 30000, 10, 1000
            ),
            "GroupAck for membership 1: events 1.1 and 2.1 are done": flo.encode_group_ack(
                1, [EventId(1, 1), EventId(2, 1)]
            ),
            "GroupNack for membership 1: redeliver 3.1 after 5000 ms": flo.encode_group_nack(1, 5000, [EventId(3, 1)]),
            "GroupProgress for membership 1: still working on event 3.1": flo.encode_group_progress(
                1, [EventId(3, 1)]
            ),
            "LeaveGroup membership 1": flo.encode_leave_group(1),
            "GroupsRequest: every group, from the first": flo.encode_groups_request(),
            'GroupsRequest: the group "workers"': flo.encode_groups_request("workers"),
            'ParkedRequest: the parked events of "workers" from the first': flo.encode_parked_request("workers"),
            'GroupAdmin: replay the parked events of "workers"': flo.encode_group_admin(
                "workers", flo.ADMIN_REPLAY_PARKED
            ),
            'GroupAdmin: reset "workers" to just after event 0000000000000000004200001': flo.encode_group_admin(
                "workers", flo.ADMIN_RESET, Start.after_id(EventId(42, 1))
            ),
            'GroupAdmin: delete "workers"': flo.encode_group_admin("workers", flo.ADMIN_DELETE),
            'GroupAdmin: replay the parked events 0000000000000000000500001 and 0000000000000000000900002 of "workers"':
                flo.encode_group_admin("workers", flo.ADMIN_REPLAY_IDS, ids=[EventId(5, 1), EventId(9, 2)]),
            'GroupAdmin: replay the parked events of "workers" from 0000000000000000000500001 to 0000000000000000000700001':
                flo.encode_group_admin("workers", flo.ADMIN_REPLAY_RANGE, id_range=(EventId(5, 1), EventId(7, 1))),
            "ProduceIf: op id 4, append to /acct/42 only if its newest event is 0000000000000000000500001":
                flo.encode_produce_if(4, flo.EXPECT_LAST_IS, EventId.parse("5.1"), [NewEvent("/acct/42", b"+10")]),
            "ProduceIf: op id 5, create /acct/43: only if it has no events":
                flo.encode_produce_if(5, flo.EXPECT_NO_EVENTS, None, [NewEvent("/acct/43", b"open")]),
            "SetProducer: producer 42, the next produce is number 1": flo.encode_set_producer(42, 1),
            "NamespacesRequest: the namespaces directly under /acct/ (/acct/** for every depth), first page": flo.encode_namespaces_request("/acct/*"),
            "TraceRequest: the trace of 0000000000000000000900001": flo.encode_trace_request(EventId(9, 1)),
            "GroupAckRange for membership 1: everything delivered to it from 1.1 to 5.1":
                flo.encode_group_ack_range(1, EventId(1, 1), EventId(5, 1)),
            'GroupsDetailRequest: the group "workers" with its settings and members':
                flo.encode_groups_detail_request("workers"),
            'GroupAdmin: create "workers" on /jobs/** from the beginning, ack time-out 60 s, 5 deliveries, 500 in flight':
                flo.encode_group_admin("workers", flo.ADMIN_CREATE, Start.beginning(), glob="/jobs/**",
                                       settings=flo.GroupSettings(60000, 5, 500)),
            'GroupAdmin: set the ack time-out of "workers" to 120 s, the rest unchanged':
                flo.encode_group_admin("workers", flo.ADMIN_UPDATE_SETTINGS, settings=flo.GroupSettings(120000)),
        }
        for title, encoded in cases.items():
            with self.subTest(title):
                self.assertIn(title, ex)
                self.assertEqual(encoded.hex(" "), ex[title].hex(" "))

    def test_decoders_accept_every_server_example(self) -> None:
        server_kinds = 0
        for title, raw in spec_examples().items():
            kind = raw[4]
            if kind < 0x20 or 0x40 <= kind <= 0x5F:  # client frames; peer frames (section 15)
                continue
            server_kinds += 1
            with self.subTest(title):
                self.assertEqual(struct.unpack(">I", raw[:4])[0], len(raw) - 4)
                flo.decode(kind, raw[5:])
        self.assertGreaterEqual(server_kinds, 13)

    def test_groups_detail_is_decoded(self) -> None:
        raw = spec_examples()['GroupsDetail: "workers", 2 members holding 4 and 3 events']
        reply = flo.decode(raw[4], raw[5:])
        info = flo.GroupInfo("workers", "/jobs/**", 2, 7, 9, 1, 20, 30, 3, 10, 1500)
        members = [
            flo.GroupMemberInfo(1, "127.0.0.1:50412", 4, 1000, 96),
            flo.GroupMemberInfo(1, "127.0.0.1:50418", 3, 500, 97),
        ]
        self.assertEqual(
            reply,
            flo.GroupsDetailReply(40, False, [flo.GroupDetail(info, flo.GroupSettings(30000, 10, 1000), members)]),
        )

    def test_group_replies_are_decoded(self) -> None:
        ex = spec_examples()
        raw = ex['Groups: one group "workers", 2 members, 9 pending, 1 parked, lag at most 10']
        reply = flo.decode(raw[4], raw[5:])
        self.assertEqual(
            reply,
            flo.GroupsReply(40, False, [flo.GroupInfo("workers", "/jobs/**", 2, 7, 9, 1, 20, 30, 3, 10, 1500)]),
        )
        raw = ex['Parked: two parked events of "workers", more follow']
        self.assertEqual(
            flo.decode(raw[4], raw[5:]),
            flo.ParkedReply("workers", True, [(3, EventId(4, 1)), (7, EventId(8, 1))]),
        )
        raw = ex["Error, connection scope: NoSuchGroup (illustrative message)"]
        self.assertEqual(flo.decode(raw[4], raw[5:]).name, "NoSuchGroup")
    def test_status_members_say_since_when_they_are_disconnected(self) -> None:
        raw = spec_examples()[
            "Status of actor 1: connected to actor 2, backing off from actor 3 for 42 s, which holds id order back"
        ]
        _, status = flo.decode(raw[4], raw[5:])
        self.assertEqual([m["disconnected_ms"] for m in status["members"]], [0, 42000])
        self.assertEqual(
            status["order"],
            {
                "stable_clock": 2,
                "held_by": {"actor_id": 3, "addr": "127.0.0.1:3002", "clock": 2, "held_ms": 41000},
                "waiting_subscriptions": 1,
                "waiting_events": 3,
                "waiting_ms": 40000,
            },
        )
        self.assertIsNone(status["hold"], "no hold: the frame ends after the id-order fields")

    def test_status_says_whom_a_produce_hold_waits_for(self) -> None:
        raw = spec_examples()[
            "Status of actor 2 started on an empty data directory: produces held until member 3 is met"
        ]
        _, status = flo.decode(raw[4], raw[5:])
        self.assertEqual(
            status["hold"],
            {
                "actor_id": 3,
                "addr": "127.0.0.1:3002",
                "held_ms": 41000,
                "timeout_left_ms": 0,
                "waits_for": "member 3 at 127.0.0.1:3002, not met since the start",
            },
        )

    def test_skipped_is_decoded(self) -> None:
        raw = spec_examples()["Skipped: retention deleted 2000 records subscription 1 had not read"]
        self.assertEqual(flo.decode(raw[4], raw[5:]), flo.Skipped(1, 2000))

    def test_namespaces_are_decoded(self) -> None:
        ex = spec_examples()
        raw = ex["Namespaces: /acct/42 with 3 events, 0000000000000000000500001 .. 0000000000000000000900001"]
        self.assertEqual(
            flo.decode(raw[4], raw[5:]),
            flo.NamespacesReply(
                False, [flo.NamespaceInfo("/acct/42", 3, EventId(5, 1), 1700000000000, EventId(9, 1), 1700000000250)]
            ),
        )

    def test_trace_is_decoded(self) -> None:
        raw = spec_examples()["Trace: 0000000000000000000900001 and its parent 0000000000000000000500001, nothing more"]
        self.assertEqual(
            flo.decode(raw[4], raw[5:]),
            flo.TraceReply(False, False, [
                flo.TraceEntry(-1, EventId(5, 1), None, 1700000000000, "/acct/42"),
                flo.TraceEntry(0, EventId(9, 1), EventId(5, 1), 1700000000250, "/acct/42"),
            ]),
        )

    def test_info_is_decoded(self) -> None:
        raw = spec_examples()["Info: flo 0.1.0, up one hour, fsync always, 1000 events in 2 segments (1 MiB)"]
        kind, info = flo.decode(raw[4], raw[5:])
        self.assertEqual(kind, "info")
        self.assertEqual((info["version"], info["fsync_policy"], info["event_count"]), ("0.1.0", "always", 1000))
        self.assertEqual((info["client_connections"], info["group_count"]), (3, 1))

    def test_member_frames_match_spec_examples(self) -> None:
        ex = spec_examples()
        self.assertEqual(flo.encode_members_request(), ex["MembersRequest"])
        self.assertEqual(flo.encode_change_member(flo.MEMBER_REMOVE, 3), ex["ChangeMember: remove member 3"])
        self.assertEqual(flo.encode_change_member(flo.MEMBER_ADD, 3), ex["ChangeMember: add member 3 back"])
        raw = ex["Members: this node 1, member 2 connected, member 3 removed at version 1"]
        self.assertEqual(
            flo.decode(raw[4], raw[5:]),
            flo.MembersReply(
                [
                    flo.MemberEntry(1, "self", 0, "127.0.0.1:3000"),
                    flo.MemberEntry(2, "connected", 0, "127.0.0.1:3001"),
                    flo.MemberEntry(3, "removed", 1, "127.0.0.1:3002"),
                ]
            ),
        )

    def test_purge_frames_match_spec_examples(self) -> None:
        ex = spec_examples()
        self.assertEqual(
            flo.encode_purge("/metrics/**", before_id=EventId(42, 1)),
            ex["Purge: /metrics/** before event 0000000000000000004200001"],
        )
        self.assertEqual(
            flo.encode_purge("/logs/**", before_ms=1700000000000),
            ex["Purge: /logs/** before 2023-11-14T22:13:20Z"],
        )
        self.assertEqual(flo.encode_purges_request(), ex["PurgesRequest"])
        raw = ex["Purges: one purge, one retention rule (/metrics/** keep 7d)"]
        self.assertEqual(
            flo.decode(raw[4], raw[5:]),
            flo.PurgesReply(
                [flo.PurgeRule("/metrics/**", before_id=EventId(42, 1))],
                [flo.RetentionRule("/metrics/**", 604800000, 1699395200000)],
            ),
        )
        raw = ex["Error, connection scope: a Purge before a time in the future was refused"]
        self.assertEqual(flo.decode(raw[4], raw[5:]).name, "PurgeBoundAhead")

    def test_decoder_is_strict(self) -> None:
        caught_up = bytes.fromhex("00000001")
        with self.assertRaises(flo.ProtocolError):
            flo.decode(flo.CAUGHT_UP, caught_up + b"\x00")  # trailing byte
        with self.assertRaises(flo.ProtocolError):
            flo.decode(flo.END, caught_up + b"\x09")  # unknown end reason
        with self.assertRaises(flo.ProtocolError):
            flo.decode(0x08, b"")  # reserved kind

    def test_an_unknown_error_code_is_handled_by_its_scope(self) -> None:
        # protocol.md section 11: a newer server option may send a code this client does not
        # know; with scope connection the client closes, with scope produce one produce fails.
        message = b"\x00\x02hi"
        connection = flo.decode(flo.ERROR, b"\x00" + (999).to_bytes(2, "big") + message)
        self.assertEqual((connection.name, connection.closes_connection), ("Unknown999", True))
        produce = flo.decode(
            flo.ERROR, b"\x01" + (7).to_bytes(8, "big") + (999).to_bytes(2, "big") + message
        )
        self.assertEqual((produce.target, produce.closes_connection), (7, False))

    def test_id_text_form(self) -> None:
        self.assertEqual(EventId(1, 1).text(), "0000000000000000000100001")
        self.assertEqual(EventId(42, 3).text(), "0000000000000000004200003")
        self.assertEqual(EventId.parse("0000000000000000004200003"), EventId(42, 3))
        self.assertEqual(EventId.parse("42.3"), EventId(42, 3))
        ids = [EventId(6, 2), EventId(5, 2), EventId(6, 1)]
        self.assertEqual(sorted(ids), [EventId(5, 2), EventId(6, 1), EventId(6, 2)])
        self.assertEqual(sorted(i.text() for i in ids), [i.text() for i in sorted(ids)])
        for bad in ("1", "1.", "x.1", "0" * 24):
            with self.assertRaises(ValueError):
                EventId.parse(bad)

    def test_cursor_covers(self) -> None:
        cur = Cursor(EventId(42, 1), {3: 50})
        self.assertTrue(cur.covers(EventId(42, 1)))
        self.assertTrue(cur.covers(EventId(50, 3)))
        self.assertFalse(cur.covers(EventId(43, 1)))
        self.assertFalse(cur.covers(EventId(51, 3)))
        self.assertEqual(Cursor.from_text(cur.to_text()), cur)


class GroupAckQueueTests(unittest.TestCase):
    """No server: a GroupMember over a socket pair, this test playing the server. Acks are
    queued, acks of consecutive deliveries become one GroupAckRange, and the queue goes out
    before a blocking read, before any other frame, at `ack_batch`, on flush and on close."""

    def setUp(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.theirs.setblocking(False)
        self.client = FloClient(self.ours, timeout=STEP)

    def tearDown(self) -> None:
        self.client.close()
        self.theirs.close()

    def sent(self) -> bytes:
        """Everything the client has sent since the last call (sendall has returned, so the
        bytes are in the socket pair already)."""
        out = b""
        while True:
            try:
                chunk = self.theirs.recv(65536)
            except BlockingIOError:
                return out
            if not chunk:
                return out
            out += chunk

    def join(self, group: str = "g", **kw) -> "flo.GroupMember":
        member = self.client.join_group(group, "/jobs/**", **kw)
        self.assertEqual(self.sent()[4], flo.JOIN_GROUP)
        return member

    def deliver(self, member: "flo.GroupMember", *counters: int) -> List[EventId]:
        """Event frames for `member` with these id counters, read by the member."""
        ids = [EventId(n, 1) for n in counters]
        for i in ids:
            body = struct.pack(">I", member.id) + struct.pack(">QH", i.counter, i.actor) + b"\x00" * 10
            body += struct.pack(">Q", 1700000000000) + struct.pack(">H", 6) + b"/jobs/" + struct.pack(">I", 0)
            self.theirs.sendall(flo.frame(flo.EVENT, body))
        for i in ids:
            item = member.next()
            self.assertIsInstance(item, Event)
            self.assertEqual(item.id, i)
        return ids

    def test_consecutive_acks_go_as_one_range_and_the_rest_as_ids(self) -> None:
        member = self.join()
        # Ids need not be consecutive (other members take the ones between): deliveries are.
        e = self.deliver(member, 2, 5, 9, 11, 12, 20)
        member.ack(e[0], e[1], e[2])
        member.ack(e[4])  # skips e[3]: an id
        member.ack(e[3])  # delivered before e[4]: an id
        member.ack(e[5])  # after e[4], but e[3] came between in the acks: an id
        self.assertEqual(self.sent(), b"", "queued, not sent")
        self.assertEqual(member.queued_acks, 6)
        member.flush()
        self.assertEqual(
            self.sent(),
            flo.encode_group_ack_range(member.id, e[0], e[2]) + flo.encode_group_ack(member.id, [e[4], e[3], e[5]]),
        )
        self.assertEqual((member.range_frames_sent, member.ack_frames_sent, member.queued_acks), (1, 1, 0))

    def test_a_run_after_ids_is_a_range_and_ranges_keep_their_order(self) -> None:
        member = self.join()
        e = self.deliver(member, 1, 2, 3, 4, 5, 6)
        member.ack(e[2])
        member.ack(e[0], e[1])
        member.ack(e[4], e[5])
        member.flush()
        self.assertEqual(
            self.sent(),
            flo.encode_group_ack(member.id, [e[2]])
            + flo.encode_group_ack_range(member.id, e[0], e[1])
            + flo.encode_group_ack_range(member.id, e[4], e[5]),
        )

    def test_queued_acks_go_before_a_blocking_read_and_before_other_frames(self) -> None:
        member = self.join()
        e = self.deliver(member, 1, 2, 3)
        member.ack(e[0], e[1])
        with self.assertRaises(TimeoutError):
            member.next(timeout=0.05)
        self.assertEqual(self.sent(), flo.encode_group_ack_range(member.id, e[0], e[1]))
        member.ack(e[2])
        self.client._send(flo.encode_ping(7))
        self.assertEqual(self.sent(), flo.encode_group_ack(member.id, [e[2]]) + flo.encode_ping(7),
                         "the ack goes before the Ping: its Pong means the server has it")

    def test_a_full_batch_is_sent_at_once(self) -> None:
        member = self.join(ack_batch=3)
        e = self.deliver(member, 1, 2, 3, 4)
        member.ack(e[0], e[1])
        self.assertEqual(self.sent(), b"")
        member.ack(e[2])
        self.assertEqual(self.sent(), flo.encode_group_ack_range(member.id, e[0], e[2]))
        member.ack(e[3])  # the run starts again after a send
        member.leave()
        self.assertEqual(self.sent(), flo.encode_group_ack(member.id, [e[3]]) + flo.encode_leave_group(member.id))

    def test_without_ranges_every_ack_is_an_id(self) -> None:
        member = self.join(ack_ranges=False)
        e = self.deliver(member, 1, 2, 3)
        member.ack(*e)
        member.flush()
        self.assertEqual(self.sent(), flo.encode_group_ack(member.id, e))

    def test_nack_and_close_send_the_queued_acks_first(self) -> None:
        member = self.join()
        e = self.deliver(member, 1, 2, 3)
        member.ack(e[0])
        member.nack(e[1], delay_ms=5)
        self.assertEqual(self.sent(), flo.encode_group_ack(member.id, [e[0]]) + flo.encode_group_nack(member.id, 5, [e[1]]))
        member.ack(e[2])
        self.client.close()
        self.assertEqual(self.sent(), flo.encode_group_ack(member.id, [e[2]]))

    def test_two_members_on_one_client_count_their_own_deliveries(self) -> None:
        a = self.join("a")
        b = self.join("b")
        a1 = self.deliver(a, 1)
        b1 = self.deliver(b, 2)
        a2 = self.deliver(a, 3)
        b2 = self.deliver(b, 4)
        a.ack(a1[0], a2[0])
        b.ack(b1[0], b2[0])
        a.flush()
        self.assertEqual(
            self.sent(),
            flo.encode_group_ack_range(a.id, a1[0], a2[0]) + flo.encode_group_ack_range(b.id, b1[0], b2[0]),
        )

    def test_a_redelivered_event_is_numbered_by_its_newest_delivery(self) -> None:
        member = self.join()
        e = self.deliver(member, 1, 2)
        again = self.deliver(member, 1)  # redelivered after a time-out, as the third delivery
        member.ack(e[1], again[0])
        member.flush()
        self.assertEqual(self.sent(), flo.encode_group_ack_range(member.id, e[1], e[0]))


class ServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Server()
        self.clients: list[FloClient] = []

    def tearDown(self) -> None:
        for c in self.clients:
            c.close()
        self.server.stop()

    def connect(self, **kw) -> FloClient:
        c = self.server.client(**kw)
        self.clients.append(c)
        return c

    def raw_socket(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=STEP)
        self.addCleanup(s.close)
        return s

    def closing_error(self, c: FloClient) -> FloError:
        """Read (sending nothing more) until the server closes; return the closing Error."""
        with self.assertRaises(ConnectionClosed) as cm:
            deadline = c._deadline(None)
            while True:
                c._pump(deadline)
        self.assertIsNotNone(cm.exception.error, "closed without an Error frame")
        return cm.exception.error

    # -- handshake and ping ------------------------------------------------------------------

    def test_welcome_and_ping(self) -> None:
        c = self.connect()
        w = c.welcome
        self.assertEqual(w.protocol_version, 1)
        self.assertGreaterEqual(w.actor_id, 1)
        self.assertEqual(w.frame_size_max, 8454144)
        self.assertEqual(w.namespace_length_max, 1024)
        self.assertEqual(w.event_data_size_max, 8388608)
        self.assertGreater(w.subscriptions_max, 0)
        self.assertEqual(w.idle_timeout_ms, 300000)
        self.assertGreaterEqual(c.ping(), 0.0)
        self.assertGreaterEqual(c.ping(), 0.0)

    def test_unsupported_version_closes(self) -> None:
        s = self.raw_socket()
        s.sendall(flo.encode_hello("old", version=9))
        err = self.closing_error(FloClient(s, STEP))
        self.assertEqual((err.name, err.scope), ("UnsupportedVersion", "connection"))

    # -- producing ---------------------------------------------------------------------------

    def test_seed_walkthrough(self) -> None:
        c = self.connect()
        ack = c.produce("/food/breakfast/eggs", b"scrambled")
        self.assertEqual(ack.first_id.text(), "0000000000000000000100001")
        self.assertEqual(ack.count, 1)
        c.produce("/drinks/beer", b"stout")
        c.produce("/food/beer", b"bread")  # a namespace for the /*/beer glob

        sub = c.subscribe("/food/breakfast/eggs", Start.beginning(), tail=True)
        ev = sub.next()
        self.assertIsInstance(ev, Event)
        self.assertEqual(ev.id.text(), "0000000000000000000100001")
        self.assertEqual((ev.namespace, ev.data, ev.parent_id), ("/food/breakfast/eggs", b"scrambled", None))
        self.assertEqual(ev.timestamp_ms, ack.timestamp_ms)
        self.assertIsInstance(sub.next(), CaughtUp)

        # Live: a new event reaches the tailing subscription.
        ack2 = c.produce("/food/breakfast/eggs", b"fried", parent_id=ev.id)
        ev2 = sub.next()
        self.assertEqual((ev2.id, ev2.parent_id, ev2.data), (ack2.first_id, ev.id, b"fried"))

        food = c.subscribe("/food/**")
        self.assertEqual(
            [(e.namespace, e.data) for e in food.events()],
            [("/food/breakfast/eggs", b"scrambled"), ("/food/beer", b"bread"), ("/food/breakfast/eggs", b"fried")],
        )
        self.assertEqual(food.ended.reason, flo.END_OF_STREAM)

        beer = c.subscribe("/*/beer")
        self.assertEqual([e.data for e in beer.events()], [b"stout", b"bread"])
        self.assertEqual(beer.ended.reason, flo.END_OF_STREAM)

    def test_a_standalone_server_lists_itself_as_the_only_member(self) -> None:
        c = self.connect()
        members = c.members()
        self.assertEqual(len(members), 1, members)
        self.assertEqual(members[0].state, "self")
        with self.assertRaises(flo.FloError) as refused:
            c.change_member(flo.MEMBER_REMOVE, members[0].actor_id)
        self.assertEqual(refused.exception.code, 46)

    def test_purge_hides_events_and_is_listed(self) -> None:
        c = self.connect()
        first = c.produce("/purge/a", b"old").first_id
        kept = c.produce("/purge/a", b"new").first_id
        purged = c.purge("/purge/**", before_id=kept)
        self.assertTrue(purged.changed)
        self.assertEqual([e.data for e in c.subscribe("/purge/**").events()], [b"new"])
        self.assertFalse(c.purge("/purge/**", before_id=first).changed, "an earlier bound changes nothing")
        self.assertEqual(c.purges().purges, [flo.PurgeRule("/purge/**", before_id=kept)])

    def test_pipelined_produces_acked_in_order(self) -> None:
        c = self.connect()
        ops = [c.send_produce(f"/p/{i % 3}", str(i).encode()) for i in range(200)]
        # Errors are released in order with the Acks, too.
        bad = c.send_produce("bad", b"", check=False)
        ops.append(bad)
        last = c.send_produce("/q/last", b"")
        ops.append(last)
        # Read replies in arrival order, straight off the wire.
        order = []
        while c.pending_ops:
            c._pump(c._deadline(None))
            for op in list(c.replies):
                if op not in order:
                    order.append(op)
        self.assertEqual(order, ops)
        with self.assertRaises(FloError):
            c.wait_reply(bad)
        self.assertEqual(c.wait_reply(last).first_id.counter, 201)
        acks = [c.wait_reply(op) for op in ops[:200]]
        self.assertEqual([a.first_id.counter for a in acks], list(range(1, 201)))
        sub = c.subscribe("/p/**", credit=1000)
        self.assertEqual([e.data for e in sub.events()], [str(i).encode() for i in range(200)])

    def test_batch(self) -> None:
        c = self.connect()
        c.produce("/before", b"0")
        ack = c.produce_batch([NewEvent("/a", b"x"), NewEvent("/b"), NewEvent("/a/c", b"yz")])
        self.assertEqual(ack.count, 3)
        self.assertEqual(ack.first_id, EventId(2, c.welcome.actor_id))
        self.assertEqual(ack.ids, [EventId(n, c.welcome.actor_id) for n in (2, 3, 4)])
        evs = list(c.subscribe("/**").events())
        self.assertEqual([(e.id, e.namespace, e.data) for e in evs[1:]],
                         list(zip(ack.ids, ["/a", "/b", "/a/c"], [b"x", b"", b"yz"])))
        self.assertTrue(all(e.timestamp_ms == ack.timestamp_ms for e in evs[1:]))

    def test_conditional_produce(self) -> None:
        c = self.connect()
        opened = c.produce_if([NewEvent("/acct/1", b"open")], expect_empty=True)
        with self.assertRaises(FloError) as cm:
            c.produce_if([NewEvent("/acct/1", b"again")], expect_empty=True)
        self.assertEqual(cm.exception.name, "ExpectationFailed")
        self.assertEqual(cm.exception.actual_last_id, (opened.first_id,))
        c.produce_if([NewEvent("/acct/1", b"+1"), NewEvent("/audit", b"x")], expect_last=opened.first_id)
        self.assertEqual(len(list(c.subscribe("/acct/1").events())), 2)
        # "It exists" (expectation 3): refused on an empty namespace, appended on one with events.
        with self.assertRaises(FloError) as cm:
            c.produce_if([NewEvent("/acct/2", b"deposit")], expect_exists=True)
        self.assertEqual(cm.exception.name, "ExpectationFailed")
        self.assertEqual(cm.exception.actual_last_id, (None,))
        c.produce_if([NewEvent("/acct/1", b"+2")], expect_exists=True)
        self.assertEqual([e.data for e in c.subscribe("/acct/1").events()], [b"open", b"+1", b"+2"])
        self.assertEqual(list(c.subscribe("/acct/2").events()), [])
        with self.assertRaises(ValueError):
            c.produce_if([NewEvent("/acct/1", b"x")], expect_empty=True, expect_exists=True)

    def test_idempotent_retry_gets_the_original_ack(self) -> None:
        first = self.connect()
        first.set_producer(4242, 1)
        ack = first.produce("/orders", b"1")
        retry = self.connect()
        retry.set_producer(4242, 1)
        again = retry.produce("/orders", b"1")
        self.assertEqual((again.first_id, again.timestamp_ms), (ack.first_id, ack.timestamp_ms))
        self.assertEqual(len(list(retry.subscribe("/orders").events())), 1)

    def test_the_newest_set_producer_fences_the_older_connection(self) -> None:
        older = flo.IdempotentProducer("127.0.0.1", self.server.port, producer_id=5151,
                                       reconnect_attempts=1, reconnect_delay=0.0)
        self.addCleanup(older.close)
        older.produce("/fence", b"older 1")
        # A second process with the same producer id (it continues the numbering: one that
        # started at 1 again would have its first produce answered as a retry of "older 1").
        newer = flo.IdempotentProducer("127.0.0.1", self.server.port, producer_id=5151)
        self.addCleanup(newer.close)
        newer.resume_at(2)
        newer.produce("/fence", b"newer 2")
        with self.assertRaises(FloError) as cm:
            older.produce("/fence", b"older 2")
        self.assertEqual(cm.exception.name, "ProducerFenced")
        self.assertTrue(older.fenced is not None)
        with self.assertRaises(FloError) as cm:
            older.send("/fence", b"older 3")
        self.assertEqual(cm.exception.name, "ProducerFenced")
        newer.produce("/fence", b"newer 3")
        c = self.connect()
        stored = [e.data for e in c.subscribe("/fence").events()]
        self.assertEqual(stored, [b"older 1", b"newer 2", b"newer 3"])

    def test_namespaces_are_listed_with_counts(self) -> None:
        c = self.connect()
        acks = [c.produce(ns, b"x") for ns in ["/ns/b", "/ns/a", "/other", "/ns/b"]]
        listed = list(c.namespaces("/ns/*"))
        self.assertEqual([(n.name, n.event_count) for n in listed], [("/ns/a", 1), ("/ns/b", 2)])
        self.assertEqual((listed[1].first_id, listed[1].last_id), (acks[0].first_id, acks[3].first_id))
        self.assertGreaterEqual(len(list(c.namespaces())), 3)

    def test_trace_lists_ancestors_and_descendants(self) -> None:
        c = self.connect()
        root = c.produce("/tr/order", b"placed").first_id
        paid = c.produce("/tr/payment", b"paid", root).first_id
        shipped = c.produce("/tr/shipping", b"shipped", paid).first_id
        other = c.produce("/tr/payment", b"refund", root).first_id
        entries, truncated = c.trace(paid)
        self.assertFalse(truncated)
        self.assertEqual([(e.depth, e.id) for e in entries], [(-1, root), (0, paid), (1, shipped)])
        entries, _ = c.trace(root)
        self.assertEqual({e.id for e in entries}, {root, paid, shipped, other})
        with self.assertRaises(FloError) as cm:
            c.trace(EventId(10**12, 9))
        self.assertEqual(cm.exception.name, "NoSuchEvent")
        self.assertGreater(c.ping(), 0.0)

    def test_idempotent_producer_resends_after_a_dropped_connection_and_stores_once(self) -> None:
        producer = flo.IdempotentProducer("127.0.0.1", self.server.port, window=16,
                                          reconnect_delay=0.01, timeout=STEP)
        self.addCleanup(producer.close)
        for i in range(10):
            producer.send("/idem/drop", str(i).encode())
        # Wait until the server stored them all, then drop the connection before reading the acks.
        reader = self.connect()
        events = reader.subscribe("/idem/drop", tail=True)
        first = []
        while len(first) < 10:
            item = events.next()
            if isinstance(item, Event):
                first.append(item)
        producer.client.sock.close()
        acks = producer.flush()
        self.assertEqual(producer.reconnects, 1)
        self.assertEqual([a.first_id for a in acks], [e.id for e in first])
        self.assertEqual(producer.produce("/idem/drop", b"10").op_id > 0, True)
        self.assertEqual(len(list(self.connect().subscribe("/idem/drop").events())), 11)

    def test_invalid_batches(self) -> None:
        c = self.connect()
        empty = c.send_batch([], check=False)
        with self.assertRaises(FloError) as cm:
            c.wait_reply(empty)
        self.assertEqual((cm.exception.name, cm.exception.scope, cm.exception.target), ("InvalidBatch", "produce", empty))
        # One bad namespace: nothing of the batch is appended.
        bad = c.send_batch([NewEvent("/ok", b"1"), NewEvent("no-slash", b"2")], check=False)
        with self.assertRaises(FloError) as cm:
            c.wait_reply(bad)
        self.assertEqual((cm.exception.name, cm.exception.target), ("InvalidNamespace", bad))
        too_many = c.send_batch([NewEvent("/n")] * 10001, check=False)
        with self.assertRaises(FloError) as cm:
            c.wait_reply(too_many)
        self.assertEqual(cm.exception.name, "InvalidBatch")
        self.assertEqual(c.produce_batch([NewEvent("/n")] * 10000).count, 10000)
        self.assertEqual(c.produce("/last").first_id.counter, 10001)

    def test_invalid_namespace_keeps_connection(self) -> None:
        c = self.connect()
        with self.assertRaises(ValueError):
            c.send_produce("food")  # the client checks first
        op_good = c.send_produce("/good", b"1")
        for bad_ns in ("food", "", "/a\nb", "/nul\x00"):
            op = c.send_produce(bad_ns, b"x", check=False)
            with self.assertRaises(FloError) as cm:
                c.wait_reply(op)
            e = cm.exception
            self.assertEqual((e.name, e.code, e.scope, e.target), ("InvalidNamespace", 6, "produce", op))
            self.assertFalse(e.closes_connection)
        self.assertEqual(c.wait_reply(op_good).first_id.counter, 1)
        self.assertEqual(c.produce("/after", b"2").first_id.counter, 2)
        c.ping()

    def test_oversized_event_and_namespace(self) -> None:
        c = self.connect()
        w = c.welcome
        data = b"\x00" * (w.event_data_size_max + 1)
        self.assertLess(5 + 8 + 2 + 2 + 10 + 4 + len(data), w.frame_size_max)
        with self.assertRaises(ValueError):
            c.send_produce("/big", data)  # the client refuses it itself
        op = c.send_produce("/big", data, check=False)
        with self.assertRaises(FloError) as cm:
            c.wait_reply(op)
        self.assertEqual((cm.exception.name, cm.exception.scope, cm.exception.target), ("EventTooLarge", "produce", op))
        op = c.send_produce("/" + "n" * w.namespace_length_max, b"", check=False)
        with self.assertRaises(FloError) as cm:
            c.wait_reply(op)
        self.assertEqual((cm.exception.name, cm.exception.target), ("InvalidNamespace", op))
        # Exactly at the limits is fine, and the connection is still usable.
        ack = c.produce("/" + "n" * (w.namespace_length_max - 1), b"\x01" * w.event_data_size_max)
        self.assertEqual(ack.first_id.counter, 1)

    def test_frame_too_large_closes(self) -> None:
        c = self.connect()
        c.send_raw(struct.pack(">IB", c.welcome.frame_size_max, flo.PRODUCE))  # 4 + length > max
        err = self.closing_error(c)
        self.assertEqual((err.name, err.scope), ("FrameTooLarge", "connection"))

    # -- consuming ---------------------------------------------------------------------------

    def test_start_positions(self) -> None:
        c = self.connect()
        first = c.produce("/s/a", b"1")
        for _ in range(100000):  # produce elsewhere until the server's clock has moved on
            if c.produce("/t/tick").timestamp_ms > first.timestamp_ms:
                break
        second = c.produce("/s/b", b"2")
        third = c.produce("/s/c", b"3")
        self.assertGreater(second.timestamp_ms, first.timestamp_ms)

        def datas(start: Start) -> list[bytes]:
            sub = c.subscribe("/s/*", start)
            out = [e.data for e in sub.events()]
            self.assertEqual(sub.ended.reason, flo.END_OF_STREAM)
            return out

        self.assertEqual(datas(Start.beginning()), [b"1", b"2", b"3"])
        self.assertEqual(datas(Start.after_id(first.first_id)), [b"2", b"3"])
        self.assertEqual(datas(Start.after_id(EventId(0, 0))), [b"1", b"2", b"3"])
        self.assertEqual(datas(Start.at_timestamp(second.timestamp_ms)), [b"2", b"3"])
        self.assertEqual(datas(Start.at_cursor(Cursor(EventId(0, 0), {third.first_id.actor: second.first_id.counter}))), [b"3"])
        self.assertEqual(datas(Start.end()), [])

        live = c.subscribe("/s/*", Start.end(), tail=True)
        self.assertIsInstance(live.next(), CaughtUp)
        c.produce("/s/d", b"4")
        self.assertEqual(live.next().data, b"4")

    def test_glob_examples_table(self) -> None:
        """Every row of protocol.md's glob example table, against the server."""
        with open(os.path.join(REPO, "protocol.md"), encoding="utf-8") as f:
            text = f.read()
        table = text[text.index("| Glob | Matches | Does not match |"):]
        rows = []
        for line in table.splitlines()[2:]:
            if not line.startswith("|"):
                break
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.append([re.findall(r"`([^`]*)`", cell) for cell in cells])
        self.assertGreaterEqual(len(rows), 9)
        namespaces = sorted({ns for _, yes, no in rows for ns in yes + no})
        c = self.connect()
        c.produce_batch([NewEvent(ns, ns.encode()) for ns in namespaces])
        for (glob,), yes, no in rows:
            with self.subTest(glob):
                got = {e.namespace for e in c.subscribe(glob, credit=1000).events()}
                if not yes:  # "every namespace"
                    yes = namespaces
                self.assertTrue(set(yes) <= got, f"{glob} should match {set(yes) - got}")
                self.assertFalse(set(no) & got, f"{glob} should not match {set(no) & got}")

    def test_invalid_glob(self) -> None:
        c = self.connect()
        for glob in ("food", "", "/food**", "/***", "/[ab", "/{a,b}", "/[z-a]", "/[/]", "/" + "a" * 1024):
            sub = c.subscribe(glob)
            with self.assertRaises(FloError) as cm:
                sub.next()
            self.assertEqual((cm.exception.name, cm.exception.scope, cm.exception.target), ("InvalidGlob", "subscription", sub.id))
        c.ping()

    def test_credit_flow(self) -> None:
        c = self.connect()
        for i in range(5):
            c.produce("/c", str(i).encode())
        sub = c.subscribe("/c", tail=True, credit=2, auto_credit=False)
        self.assertEqual([sub.next().data, sub.next().data], [b"0", b"1"])
        # Out of credit: nothing more arrives (a Ping's Pong comes after all queued frames).
        c.ping()
        self.assertEqual(len(sub.queue), 0)
        sub.credit(2)
        self.assertEqual([sub.next().data, sub.next().data], [b"2", b"3"])
        c.ping()
        self.assertEqual(len(sub.queue), 0)
        sub.credit(10)
        self.assertEqual(sub.next().data, b"4")
        self.assertIsInstance(sub.next(), CaughtUp)
        # Live delivery uses the remaining credit; none is dropped when it runs out.
        for i in range(5, 20):
            c.produce("/c", str(i).encode())
        got = [sub.next().data for _ in range(9)]
        c.ping()
        self.assertEqual(len(sub.queue), 0)
        sub.credit(6)
        got += [sub.next().data for _ in range(6)]
        self.assertEqual(got, [str(i).encode() for i in range(5, 20)])

    def test_credit_zero_then_huge(self) -> None:
        c = self.connect()
        c.produce("/z", b"a")
        sub = c.subscribe("/z", tail=True, credit=0, auto_credit=False)
        c.ping()
        self.assertEqual(len(sub.queue), 0)
        # Two grants summing past 2^32 - 1: the server caps, nothing breaks.
        sub.credit(flo.U32_MAX)
        sub.credit(flo.U32_MAX)
        self.assertEqual(sub.next().data, b"a")
        self.assertIsInstance(sub.next(), CaughtUp)

    def test_auto_credit_replenishes(self) -> None:
        c = self.connect()
        c.produce_batch([NewEvent("/r", str(i).encode()) for i in range(100)])
        sub = c.subscribe("/r", credit=4)
        self.assertEqual([e.data for e in sub.events()], [str(i).encode() for i in range(100)])
        self.assertEqual(sub.ended.reason, flo.END_OF_STREAM)

    def test_limit(self) -> None:
        c = self.connect()
        c.produce_batch([NewEvent("/l", str(i).encode()) for i in range(5)])
        sub = c.subscribe("/l", limit=3)
        items = list(sub)
        self.assertEqual([e.data for e in items[:3]], [b"0", b"1", b"2"])
        self.assertEqual(items[3], End(sub.id, flo.LIMIT_REACHED))
        self.assertEqual(len(items), 4)
        # Limit equal to the stored count: LimitReached wins over EndOfStream.
        sub = c.subscribe("/l", limit=5)
        self.assertEqual(list(sub)[-1].reason, flo.LIMIT_REACHED)
        # Tail with a limit: ends in live mode.
        sub = c.subscribe("/l", Start.end(), limit=1, tail=True)
        self.assertIsInstance(sub.next(), CaughtUp)
        c.produce("/l", b"live")
        self.assertEqual(sub.next().data, b"live")
        self.assertEqual(sub.next(), End(sub.id, flo.LIMIT_REACHED))

    def test_id_order_with_skip_damaged(self) -> None:
        # Subscribe flags 0x06 (id order and skip_damaged) and 0x07 (with tail) are accepted
        # together; on a standalone server id order is log order.
        c = self.connect()
        c.produce_batch([NewEvent("/io", str(i).encode()) for i in range(4)])
        sub = c.subscribe("/io", id_order=True, skip_damaged=True)
        items = list(sub)
        self.assertEqual([e.data for e in items[:4]], [str(i).encode() for i in range(4)])
        self.assertEqual(items[4], End(sub.id, flo.END_OF_STREAM))
        sub = c.subscribe("/io", tail=True, id_order=True, skip_damaged=True)
        ids = [sub.next().id for _ in range(4)]
        self.assertEqual(ids, sorted(ids))
        self.assertIsInstance(sub.next(), CaughtUp)

    def test_resume_from_cursor(self) -> None:
        c = self.connect()
        c.produce_batch([NewEvent(f"/r/{i % 2}", str(i).encode()) for i in range(10)])
        sub = c.subscribe("/r/**", tail=True, credit=3)
        seen = [sub.next().data for _ in range(4)]
        saved = sub.cursor.to_text()
        c.close()

        c2 = self.connect()
        c2.produce("/r/0", b"10")
        resumed = c2.subscribe("/r/**", Start.at_cursor(Cursor.from_text(saved)), tail=True)
        for item in resumed:
            if isinstance(item, CaughtUp):
                break
            seen.append(item.data)
        self.assertEqual(seen, [str(i).encode() for i in range(11)])
        c2.produce("/r/1", b"11")
        self.assertEqual(resumed.next().data, b"11")
        # The cursor kept advancing; it covers everything seen.
        self.assertTrue(resumed.cursor.covers(EventId(12, c2.welcome.actor_id)))

    def test_resume_start_of_a_subscription_at_end(self) -> None:
        # protocol.md section 9: before its first Event a subscription at end has the empty
        # cursor, which would deliver every retained event; resume_start() is end until then.
        c = self.connect()
        c.produce("/e", b"old")
        sub = c.subscribe("/e", Start.end(), tail=True)
        self.assertIsInstance(sub.next(), CaughtUp)
        self.assertEqual(sub.resume_start(), Start.end())
        c.produce("/e", b"new")
        self.assertEqual(sub.next().data, b"new")
        resume = sub.resume_start()
        self.assertEqual(resume.kind, 3)
        c.produce("/e", b"newer")
        again = c.subscribe("/e", resume, tail=True)
        self.assertEqual(again.next().data, b"newer")

    def test_unsubscribe(self) -> None:
        c = self.connect()
        c.produce("/u", b"a")
        sub = c.subscribe("/u", tail=True)
        self.assertEqual(sub.next().data, b"a")
        self.assertIsInstance(sub.next(), CaughtUp)
        sub.unsubscribe()
        self.assertEqual(sub.next(), End(sub.id, flo.UNSUBSCRIBED))
        with self.assertRaises(StopIteration):
            sub.next()
        # A second Unsubscribe for the ended id: UnknownSubscription, ignored by the client.
        c.send_raw(flo.encode_unsubscribe(sub.id))
        c.send_raw(flo.encode_credit(sub.id, 5))
        c.ping()
        self.assertEqual([e.name for e in c.ignored_errors], ["UnknownSubscription"] * 2)
        # The id may be reused.
        again = c.subscribe("/u", sub_id=sub.id)
        self.assertEqual(again.next().data, b"a")

    def test_duplicate_and_too_many_subscriptions(self) -> None:
        s = self.raw_socket()
        c = FloClient(s, STEP)
        c.handshake("raw")
        c.subscribe("/x", tail=True, sub_id=7)
        c.send_raw(flo.encode_subscribe(7, "/y", Start.beginning(), 0, True, 1))
        c.ping()
        self.assertEqual([(e.name, e.target) for e in c.ignored_errors], [("DuplicateSubscription", 7)])
        self.assertIn(7, c.subs)
        for i in range(100, 100 + c.welcome.subscriptions_max - 1):
            c.subscribe("/x", tail=True, sub_id=i)
        extra = c.subscribe("/x", tail=True, sub_id=99)
        with self.assertRaises(FloError) as cm:
            extra.next()
        self.assertEqual(cm.exception.name, "TooManySubscriptions")

    # -- malformed input ---------------------------------------------------------------------

    def test_malformed_frame_errors_then_closes(self) -> None:
        cases = {
            "zero length": b"\x00\x00\x00\x00",
            "unknown kind": flo.frame(0x60, b""),
            "trailing byte": flo.frame(flo.PING, b"\x00" * 9),
            "undefined flag bit": flo.encode_subscribe(1, "/a", Start.beginning(), 0, True, 1)[:-5] + b"\x08" + b"\x00" * 4,
        }
        for n, (name, raw) in enumerate(cases.items(), start=1):
            with self.subTest(name):
                c = self.connect()
                op = c.send_produce("/fine", b"1")
                c.send_raw(raw)
                err = self.closing_error(c)
                # The produce before the bad frame was received first, so it is appended; its
                # Ack may be lost to the close (protocol.md section 4, Closing).
                self.assertIn(type(c.replies.get(op)), (flo.Ack, type(None)))
                self.assertEqual([e.data for e in self.connect().subscribe("/fine").events()], [b"1"] * n)
                self.assertEqual((err.name, err.scope), ("MalformedFrame", "connection"))

    def test_frame_before_hello(self) -> None:
        s = self.raw_socket()
        s.sendall(flo.encode_ping(1))
        self.assertEqual(self.closing_error(FloClient(s, STEP)).name, "HandshakeRequired")

    def test_second_hello_and_server_kind(self) -> None:
        for raw in (flo.encode_hello("again"), flo.frame(flo.PONG, b"\x00" * 8), flo.frame(0x40, b"")):
            with self.subTest(raw[4]):
                c = self.connect()
                c.send_raw(raw)
                self.assertEqual(self.closing_error(c).name, "UnexpectedFrame")


class IdempotentRestartTests(unittest.TestCase):
    """The idempotent producer against a server killed with -9 and started again."""

    def test_idempotent_producer_stores_each_event_once_across_a_kill9(self) -> None:
        server = Server(["--fsync", "always"])
        self.addCleanup(lambda: server.stop())
        producer = flo.IdempotentProducer("127.0.0.1", server.port, window=8,
                                          reconnect_delay=0.05, timeout=STEP)
        self.addCleanup(producer.close)
        acks = []
        for i in range(40):
            if producer.is_full():
                acks.append(producer.recv_ack())
            producer.send("/idem/kill", str(i).encode())
            if i == 20:
                server = server.kill9_and_restart()
        acks.extend(producer.flush())
        self.assertGreaterEqual(producer.reconnects, 1)
        c = FloClient.connect("127.0.0.1", server.port, timeout=STEP)
        self.addCleanup(c.close)
        stored = list(c.subscribe("/idem/kill").events())
        self.assertEqual([e.data for e in stored], [str(i).encode() for i in range(40)])
        self.assertEqual(sorted(a.first_id.text() for a in acks), sorted(e.id.text() for e in stored))


class GroupTests(unittest.TestCase):
    """Consumer groups against the real server: join, receive, ack, nack, leave, and the admin
    requests (protocol.md section 16)."""

    def setUp(self) -> None:
        self.server = Server()
        self.clients: list[FloClient] = []

    def tearDown(self) -> None:
        for c in self.clients:
            c.close()
        self.server.stop()

    def connect(self) -> FloClient:
        c = self.server.client()
        self.clients.append(c)
        return c

    def produce_jobs(self, count: int) -> list[EventId]:
        c = self.connect()
        ack = c.produce_batch([NewEvent(f"/jobs/{n}", f"job-{n}".encode()) for n in range(count)])
        return ack.ids

    def take(self, member: "flo.GroupMember") -> list[Event]:
        """Events until CaughtUp."""
        out = []
        for item in member:
            if isinstance(item, CaughtUp):
                return out
            self.assertIsInstance(item, Event)
            out.append(item)
        self.fail("the membership ended before CaughtUp")

    def test_two_members_split_the_events_and_acks_are_final(self) -> None:
        ids = self.produce_jobs(40)
        a, b = self.connect(), self.connect()
        first = a.join_group("py", "/jobs/**", credit=10)
        second = b.join_group("py", "/jobs/**", credit=10)
        seen: dict[EventId, str] = {}
        while len(seen) < 40:
            for name, member in (("a", first), ("b", second)):
                try:
                    item = member.next(timeout=0.2)
                except TimeoutError:
                    continue
                if isinstance(item, Event):
                    self.assertNotIn(item.id, seen, "delivered twice")
                    seen[item.id] = name
                    member.ack(item.id)
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertEqual(set(seen.values()), {"a", "b"}, "both members got work")
        first.leave()
        second.leave()
        for member in (first, second):
            items = [item for item in member]
            self.assertIsInstance(items[-1], End)
        # Everything was acknowledged: a new member gets nothing, then CaughtUp.
        late = self.connect().join_group("py", "/jobs/**")
        self.assertEqual(self.take(late), [])

    def test_a_left_members_unacknowledged_events_go_to_the_next_member(self) -> None:
        self.produce_jobs(5)
        c = self.connect()
        member = c.join_group("handover", "/jobs/**")
        got = self.take(member)
        self.assertEqual(len(got), 5)
        member.ack(got[0].id, got[1].id)
        member.leave()
        self.assertIsInstance([item for item in member][-1], End)
        again = self.take(self.connect().join_group("handover", "/jobs/**"))
        self.assertEqual([e.id for e in again], [e.id for e in got[2:]])

    def test_progress_keeps_an_event_past_its_ack_time_out(self) -> None:
        """GroupProgress restarts the ack time-out of an event the member holds (500 ms, its own
        cap): for 1.5 s the other member gets nothing; another member's progress for it is
        answered NotPending."""
        self.produce_jobs(1)
        a, b = self.connect(), self.connect()
        slow = a.join_group("progress", "/jobs/**", ack_timeout_ms=500)
        held = self.take(slow)
        self.assertEqual(len(held), 1)
        other = b.join_group("progress", "/jobs/**")
        other.progress(held[0].id)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            slow.progress(held[0].id)
            try:
                item = other.next(timeout=0.1)
            except TimeoutError:
                continue
            self.assertIsInstance(item, CaughtUp, "the held event went to the other member")
        self.assertEqual(other.not_pending, 1)
        slow.ack(held[0].id)
        slow.leave()
        self.assertEqual(self.take(self.connect().join_group("progress", "/jobs/**")), [])

    def test_nack_parks_after_max_deliveries_and_admin_replays_resets_deletes(self) -> None:
        ids = self.produce_jobs(3)
        c = self.connect()
        member = c.join_group("admin", "/jobs/**", max_deliveries=1)
        got = self.take(member)
        member.nack(got[1].id)
        member.ack(got[0].id, got[2].id)
        member.ack(got[0].id)  # already acknowledged: NotPending, counted
        member.flush()  # acks are queued until the member waits or sends: another connection looks
        admin = self.connect()
        info = admin.group_info("admin")
        self.assertEqual((info.parked, info.pending, info.floor, info.next, info.lag), (1, 0, 3, 3, 0))
        c.ping()  # reads the NotPending answer, which came before the Pong
        self.assertEqual(member.not_pending, 1)
        self.assertEqual([i.name for i in admin.groups()], ["admin"])
        self.assertEqual(admin.parked("admin"), [(1, ids[1])])
        with self.assertRaises(FloError) as cm:
            admin.reset_group("admin", Start.beginning())
        self.assertEqual(cm.exception.name, "GroupInUse")
        info = admin.replay_parked("admin")
        self.assertEqual((info.parked, info.pending), (0, 1))
        replayed = member.next()
        self.assertIsInstance(replayed, Event)
        self.assertEqual(replayed.id, ids[1])
        member.ack(replayed.id)
        member.leave()
        self.assertIsInstance([item for item in member][-1], End)
        info = admin.reset_group("admin", Start.beginning())
        self.assertEqual((info.floor, info.next), (0, 0))
        again = self.connect().join_group("admin", "/jobs/**", credit=10)
        got = self.take(again)
        self.assertEqual([e.id for e in got], ids, "all three again after the reset")
        again.ack(*[e.id for e in got])
        again.leave()
        self.assertIsInstance([item for item in again][-1], End)
        admin.delete_group("admin")
        with self.assertRaises(FloError) as cm:
            admin.group_info("admin")
        self.assertEqual(cm.exception.name, "NoSuchGroup")
        self.assertEqual(admin.ping() >= 0, True, "the connection stays open")

    def test_settings_create_update_members_and_range_acks(self) -> None:
        ids = self.produce_jobs(6)
        admin = self.connect()
        created = admin.create_group("ranged", "/jobs/**", settings=flo.GroupSettings(5000, 4, 3))
        self.assertEqual(created.settings, flo.GroupSettings(5000, 4, 3))
        with self.assertRaises(FloError) as cm:
            admin.create_group("ranged", "/jobs/**", settings=flo.GroupSettings(9000, 4, 3))
        self.assertEqual(cm.exception.name, "GroupSettingsMismatch")
        c = self.connect()
        member = c.join_group("ranged", "/jobs/**", credit=10)
        got = [member.next() for _ in range(3)]
        self.assertEqual([e.id for e in got], ids[:3], "the group's max in flight: 3")
        detail = admin.group_detail("ranged")
        self.assertEqual([(m.in_flight, m.max_in_flight) for m in detail.members], [(3, 3)])
        member.ack_range(got[0].id, got[2].id)
        rest = self.take(member)
        self.assertEqual([e.id for e in rest], ids[3:])
        member.ack_range(rest[0].id, rest[-1].id)
        c.ping()
        updated = admin.update_group_settings("ranged", flo.GroupSettings(ack_timeout_ms=7000))
        self.assertEqual(updated.settings, flo.GroupSettings(7000, 4, 3))
        self.assertEqual((updated.info.pending, updated.info.floor), (0, 6))

    def test_acks_of_consecutive_deliveries_go_as_ranges_and_are_final(self) -> None:
        a, b = self.connect(), self.connect()
        members = {"a": a.join_group("ranges", "/jobs/**", credit=300),
                   "b": b.join_group("ranges", "/jobs/**", credit=300)}
        a.ping()  # both joined before the events exist: the group splits them
        b.ping()
        ids = self.produce_jobs(300)
        got: dict[str, list[EventId]] = {"a": [], "b": []}
        deadline = time.monotonic() + 6 * STEP
        while sum(len(taken) for taken in got.values()) < 300:
            self.assertLess(time.monotonic(), deadline, f"only {sum(map(len, got.values()))} of 300 came")
            for name, member in members.items():
                try:
                    while True:  # what this member has, before the other member's turn
                        item = member.next(timeout=0.05)
                        if isinstance(item, Event):
                            got[name].append(item.id)
                except TimeoutError:
                    continue
        self.assertEqual(sorted(got["a"] + got["b"]), sorted(ids), "each event once")
        self.assertTrue(got["a"] and got["b"], "both members got work")
        # Ids interleave across the members; each acknowledges its own in delivery order.
        for name, member in members.items():
            member.ack(*got[name])
        a.ping()  # sends a's queued acks first: the Pong says the server has them
        b.ping()
        info = self.connect().group_info("ranges")
        self.assertEqual((info.pending, info.floor, info.next), (0, 300, 300), "every event acknowledged")
        for name, member in members.items():
            self.assertEqual(member.not_pending, 0)
            # One GroupAckRange of 25 bytes per full batch of acks (128) and one for the rest.
            batches = -(-len(got[name]) // flo.ACK_BATCH_DEFAULT)
            self.assertEqual((member.range_frames_sent, member.ack_frames_sent), (batches, 0),
                             f"{name}: {len(got[name])} acks")
            member.leave()
            self.assertIsInstance([item for item in member][-1], End)

    def test_a_replay_of_chosen_parked_events(self) -> None:
        ids = self.produce_jobs(4)
        c = self.connect()
        member = c.join_group("chosen", "/jobs/**", max_deliveries=1)
        got = self.take(member)
        member.nack(*[e.id for e in got])
        admin = self.connect()
        c.ping()
        self.assertEqual(admin.group_info("chosen").parked, 4)
        with self.assertRaises(FloError) as cm:
            admin.replay_parked_ids("chosen", [ids[0], EventId(ids[3].counter + 100, ids[3].actor)])
        self.assertEqual(cm.exception.name, "NotParked")
        self.assertEqual(admin.group_info("chosen").parked, 4, "nothing was replayed")
        info = admin.replay_parked_ids("chosen", [ids[2]])
        self.assertEqual((info.parked, info.pending), (3, 1))
        info = admin.replay_parked_range("chosen", ids[0], ids[1])
        self.assertEqual((info.parked, info.pending), (1, 3))
        again = [member.next() for _ in range(3)]
        self.assertEqual(sorted(e.id for e in again), sorted(ids[:3]))
        self.assertEqual([i for _, i in admin.parked("chosen")], [ids[3]])
        member.ack(*[e.id for e in again])
        member.leave()

    def test_join_errors_end_the_membership(self) -> None:
        c = self.connect()
        c.join_group("g", "/a/**")
        bad = c.join_group("g", "/b/**")
        with self.assertRaises(FloError) as cm:
            bad.next()
        self.assertEqual(cm.exception.name, "GroupGlobMismatch")
        with self.assertRaises(FloError) as cm:
            c.join_group("", "/a/**").next()
        self.assertEqual(cm.exception.name, "InvalidGroupName")


class TlsTests(unittest.TestCase):
    """The client over TLS against `flo --tls-cert`, with a self-signed certificate made by
    the openssl command of docs/security.md (skipped where openssl is not installed)."""

    def setUp(self) -> None:
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        self.certs = tempfile.mkdtemp(prefix="flo-py-tls-")
        self.addCleanup(shutil.rmtree, self.certs, True)
        self.cert = os.path.join(self.certs, "cert.pem")
        key = os.path.join(self.certs, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-keyout", key, "-out", self.cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.server = Server(["--tls-cert", self.cert, "--tls-key", key])
        self.addCleanup(self.server.stop)

    def test_produce_and_consume_over_tls(self) -> None:
        with FloClient.connect("127.0.0.1", self.server.port, tls=True, ca=self.cert) as c:
            ack = c.produce("/tls/py", b"over tls")
            events = [e for e in c.subscribe("/tls/**", tail=False) if isinstance(e, flo.Event)]
        self.assertEqual([e.data for e in events], [b"over tls"])
        self.assertEqual(events[0].id, ack.first_id)

    def test_plaintext_client_gets_tls_required(self) -> None:
        with self.assertRaises((FloError, ConnectionClosed)) as cm:
            FloClient.connect("127.0.0.1", self.server.port, timeout=STEP)
        error = cm.exception if isinstance(cm.exception, FloError) else cm.exception.error
        self.assertIsNotNone(error)
        self.assertEqual(error.code, 23)


if __name__ == "__main__":
    unittest.main()
