"""Attack: NAMESPACES distinct namespaces, then one connection lists them all page by page
(NamespacesRequest, `/**`, 100 per page) for at most SECONDS, while a bystander times its acks.
Reports pages per second, the largest reply, server CPU and RSS.

usage: namespaces_listing.py NAMESPACES SECONDS"""
import statistics
import struct
import sys
import time

from common import Bystander, Conn, Server, fc, loadavg

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
server = Server()
filler = Conn(server.port, "filler")
for start in range(0, count, 1000):
    filler.send(fc.encode_batch(start + 1, [fc.NewEvent(f"/ns/{i:08d}", b"n")
                                            for i in range(start, start + 1000)]))
for _ in range(0, count, 1000):
    assert filler.recv(timeout=120)[0] == fc.ACK
filler.close()
rss_filled = server.rss_mb()
bystander = Bystander(server.port)
time.sleep(1)
lister = Conn(server.port, "lister")
cpu_before = server.cpu_s()
started = time.monotonic()
after, pages, listed, largest, took = "", 0, 0, 0, []
while time.monotonic() - started < seconds:
    sent = time.monotonic()
    lister.send(fc.encode_namespaces_request("/**", after))
    kind, body = lister.recv(timeout=120)
    took.append(time.monotonic() - sent)
    assert kind == fc.NAMESPACES, (kind, body[:80])
    largest = max(largest, len(body) + 5)
    more = body[0]
    (entries,) = struct.unpack(">H", body[1:3])
    pages += 1
    listed += entries
    # The last entry's name: walk the entries (str16 name, then 8 + 10 + 8 + 10 + 8 bytes).
    at = 3
    for _ in range(entries):
        (length,) = struct.unpack(">H", body[at:at + 2])
        after = body[at + 2:at + 2 + length].decode()
        at += 2 + length + 44
    if not more:
        break
elapsed = time.monotonic() - started
cpu = server.cpu_s() - cpu_before
bystander.stop()
ms = sorted(x * 1000 for x in bystander.latencies)
print(f"{count} namespaces (RSS after filling {rss_filled:.0f} MB): listed {listed} in {pages} "
      f"pages in {elapsed:.1f} s (page median {statistics.median(took) * 1000:.2f} ms, max "
      f"{max(took) * 1000:.1f} ms, largest reply {largest} bytes); server CPU {cpu:.1f} s, RSS "
      f"{server.rss_mb():.0f} MB; bystander {len(ms)} acks p50 {statistics.median(ms):.1f} ms "
      f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms max {ms[-1]:.1f} ms; load {loadavg()}")
lister.close()
server.stop()
