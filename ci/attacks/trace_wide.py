"""Attack: traces of a root with CHILDREN children (wide) and of the end of a chain of DEPTH
events (deep), repeated for SECONDS from one connection, one at a time, while a bystander times
its acks. The server bounds a trace at streams.trace_events_max events (10,000) and
streams.trace_depth_max generations (1,000), spread over turns under records_per_turn_max.

usage: trace_wide.py CHILDREN DEPTH SECONDS"""
import statistics
import struct
import sys
import time

from common import Bystander, Conn, Server, fc, loadavg

children = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
depth = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
server = Server()
filler = Conn(server.port, "filler")
filler.send(fc.encode_produce(1, fc.NewEvent("/trace/root", b"r")))
kind, body = filler.recv(timeout=60)
root = fc.EventId(*struct.unpack(">QH", body[8:18]))
batch = fc.encode_batch(2, [fc.NewEvent("/trace/child", b"c", root)] * 1000)
for _ in range(children // 1000):
    filler.send(batch)
for _ in range(children // 1000):
    assert filler.recv(timeout=120)[0] == fc.ACK
# The chain: each produce names the previous event as its parent (one at a time).
parent = root
for op in range(depth):
    filler.send(fc.encode_produce(10 + op, fc.NewEvent("/trace/chain", b"d", parent)))
    kind, body = filler.recv(timeout=60)
    parent = fc.EventId(*struct.unpack(">QH", body[8:18]))
tip = parent
filler.close()
bystander = Bystander(server.port)
time.sleep(1)
tracer = Conn(server.port, "tracer")
results = {}
for name, target in (("wide root", root), ("deep tip", tip)):
    took, frames, entries, truncated = [], 0, 0, False
    started = time.monotonic()
    cpu_before = server.cpu_s()
    while time.monotonic() - started < seconds / 2:
        sent = time.monotonic()
        tracer.send(fc.encode_trace_request(target))
        while True:
            kind, body = tracer.recv(timeout=120)
            assert kind == fc.TRACE, (kind, body[:80])
            frames += 1
            entries += struct.unpack(">H", body[1:3])[0]
            if not body[0] & 1:
                truncated = bool(body[0] & 2)
                break
        took.append(time.monotonic() - sent)
    results[name] = (f"{len(took)} traces, each median {statistics.median(took) * 1000:.0f} ms "
                     f"max {max(took) * 1000:.0f} ms, {entries // len(took)} entries in "
                     f"{frames // len(took)} frames, truncated {truncated}, server CPU "
                     f"{server.cpu_s() - cpu_before:.1f} s")
bystander.stop()
ms = sorted(x * 1000 for x in bystander.latencies)
print(f"log: a root with {children} children and a chain of {depth}; RSS {server.rss_mb():.0f} MB")
for name, text in results.items():
    print(f"  {name}: {text}")
print(f"  bystander {len(ms)} acks p50 {statistics.median(ms):.1f} ms "
      f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms max {ms[-1]:.1f} ms; load {loadavg()}")
tracer.close()
server.stop()
