"""A million GroupProgress frames for a held event vs a million empty GroupAck frames (prog17,
both answer nothing) on one connection, then a Ping: prints the seconds until its Pong.
Usage: python3 ci/group_progress_flood.py PORT progress|ack (a flo server on 127.0.0.1:PORT)."""
import socket, struct, sys, time
import os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
import flo_client as flo
from flo_client import EventId

port, kind = int(sys.argv[1]), sys.argv[2]
c = flo.FloClient.connect("127.0.0.1", port, timeout=60)
c.produce_batch([flo.NewEvent("/jobs/1", b"x")])
m = c.join_group("g" + kind + str(time.time_ns()), "/jobs/**", credit=1)
ev = m.next(timeout=5)
assert isinstance(ev, flo.Event), ev
one = flo.encode_group_progress(m.id, [ev.id]) if kind == "progress" else flo.encode_group_ack(m.id, [])
blob = one * 100_000
sock = c.sock
t0 = time.perf_counter()
for _ in range(10):
    sock.sendall(blob)
sock.sendall(flo.encode_ping(4242))
buf = b""
while True:
    data = sock.recv(65536)
    assert data
    buf += data
    if b"\x00\x00\x00\x09\x27" + struct.pack(">Q", 4242) in buf:
        break
print(f"{kind} {time.perf_counter() - t0:.3f}")
