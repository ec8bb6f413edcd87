"""Attack: idempotent producers (SetProducer) from one connection: PRODUCERS producer ids, each
numbering WINDOW produces (the window the server keeps acks of), so the server holds the most
acks it will (streams.producers_max x streams.producer_window) and its produced.journal is
compacted (rewritten whole, in the loop turn) as the flood goes on with new ids. A bystander
times its acks meanwhile. `plain` sends the same produces without SetProducer, for comparison.

usage: producer_flood.py idem|plain [PRODUCERS]"""
import os
import statistics
import sys
import time

from common import Bystander, Conn, Server, fc, loadavg

WINDOW = 256
mode = sys.argv[1] if len(sys.argv) > 1 else "idem"
producers = int(sys.argv[2]) if len(sys.argv) > 2 else 2200

server = Server()
bystander = Bystander(server.port)
time.sleep(0.5)
attacker = Conn(server.port, "producers")
attacker.drain_forever()
cpu_before = server.cpu_s()
started = time.monotonic()
event = fc.NewEvent("/flood/p", b"x" * 16)
op = 0
chunk = []
rss_max = 0
journal_max = 0
for producer in range(1, producers + 1):
    if mode == "idem":
        chunk.append(fc.encode_set_producer(producer, 1))
    for _ in range(WINDOW):
        op += 1
        chunk.append(fc.encode_produce(op, event))
    if len(chunk) >= 4096:
        attacker.send(b"".join(chunk))
        chunk = []
        rss_max = max(rss_max, server.rss_mb())
        try:
            journal_max = max(journal_max,
                              os.path.getsize(os.path.join(server.dir, "produced.journal")))
        except OSError:
            pass
attacker.send(b"".join(chunk))
# Every produce is acked with a frame of at least 35 bytes: wait for all of them.
deadline = time.monotonic() + 120
while attacker.read_bytes < op * 35 and time.monotonic() < deadline:
    time.sleep(0.05)
    rss_max = max(rss_max, server.rss_mb())
took = time.monotonic() - started
cpu = server.cpu_s() - cpu_before
summary = bystander.stop()
ms = sorted(x * 1000 for x in bystander.latencies)
p99 = ms[int(len(ms) * 0.99)] if ms else float("nan")
print(f"mode {mode}: {producers} producers x {WINDOW} produces = {op} in {took:.1f} s "
      f"(replies {attacker.read_bytes} bytes); server CPU {cpu:.1f} s, RSS max {rss_max:.0f} MB, "
      f"produced.journal max {journal_max} bytes; bystander {len(ms)} acks p50 "
      f"{statistics.median(ms):.1f} ms p99 {p99:.1f} ms max {ms[-1]:.1f} ms; load {loadavg()}")
compactions = [line for line in server.lines if "produced" in line]
print("".join(compactions[:5]), end="")
attacker.close()
server.stop()
