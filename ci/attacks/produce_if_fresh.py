"""Attack: conditional produces (ProduceIf, expectation "no events") on ever new namespaces,
one at a time, over a log of EVENTS small events. Each asks for the newest event of a namespace
the server has not seen: with the namespace index (the default) an index lookup per segment,
with `--no-namespace-index` a read of every record. A bystander times its acks meanwhile.

usage: produce_if_fresh.py EVENTS SECONDS [flo flags...]"""
import statistics
import sys
import time

from common import Bystander, Conn, Server, fc, loadavg

events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 15
server = Server(extra=sys.argv[3:])
filler = Conn(server.port, "filler")
batch = [fc.NewEvent(f"/fill/{i % 1000}", b"y" * 20) for i in range(1000)]
frame = fc.encode_batch(1, batch)
for _ in range(events // 1000):
    filler.send(frame)
for _ in range(events // 1000):
    assert filler.recv(timeout=120)[0] == fc.ACK
filler.close()
bystander = Bystander(server.port)
time.sleep(1)
attacker = Conn(server.port, "conditional")
cpu_before = server.cpu_s()
started = time.monotonic()
took = []
op = 0
while time.monotonic() - started < seconds:
    op += 1
    sent = time.monotonic()
    attacker.send(fc.encode_produce_if(op, 1, None, [fc.NewEvent(f"/fresh/{op}", b"z")]))
    reply = attacker.recv(timeout=120)
    took.append(time.monotonic() - sent)
    if reply is None or reply[0] != fc.ACK:
        print("unexpected reply", reply)
        break
cpu = server.cpu_s() - cpu_before
bystander.stop()
ms = sorted(x * 1000 for x in bystander.latencies)
p99 = ms[int(len(ms) * 0.99)]
print(f"flags {sys.argv[3:]}: log {events} events; {op} ProduceIf on new namespaces in "
      f"{seconds:.0f} s, each median {statistics.median(took) * 1000:.1f} ms max "
      f"{max(took) * 1000:.1f} ms; server CPU {cpu:.1f} s, RSS {server.rss_mb():.0f} MB; "
      f"bystander {len(ms)} acks p50 {statistics.median(ms):.1f} ms p99 {p99:.1f} ms "
      f"max {ms[-1]:.1f} ms; load {loadavg()}")
attacker.close()
server.stop()
