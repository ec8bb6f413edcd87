"""review18: a frame that gets no reply (Credit 0), then a Ping written with a second send call; wait for
the Pong. With and without TCP_NODELAY. Usage: NODELAY=0|1 python3 nodelay.py PORT N"""
import sys, time, statistics
from client import *
c = Client("127.0.0.1", int(sys.argv[1]))
c.wait_for(is_reply(c.produce("/nodelay/x", b"x")), "ack")
c.subscribe(1, "/nodelay/*", start_beginning(), tail=True, credit=0)  # no reply: credit 0
lat = []
for i in range(int(sys.argv[2])):
    t = time.perf_counter()
    c.credit(1, 0)   # no reply
    c.ping(i)        # reply: Pong
    c.wait_for(lambda k, f: k == PONG and f["token"] == i, "pong")
    lat.append((time.perf_counter() - t) * 1000)
print(f"NODELAY={int(NODELAY)} ms per Credit+Ping round trip: median {statistics.median(lat):.2f} min {min(lat):.2f} max {max(lat):.2f} (n={len(lat)})")
