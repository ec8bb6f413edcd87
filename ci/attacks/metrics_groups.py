"""Attack (round 18): the metrics answer with many consumer groups of long names. Every group
adds 5 series that each repeat its name (up to 255 bytes), so at `groups.groups_max` (1024)
the answer is over a megabyte, rendered by the reactor per request (the figures behind it are
gathered at most once a second, the text is not kept). GROUPS groups (64 per connection) with
NAME_BYTES-byte names, then FETCHERS threads fetch /metrics in a loop for SECONDS while a
bystander produces one event every 20 ms and times its acks.

usage: metrics_groups.py [GROUPS] [NAME_BYTES] [SECONDS] [FETCHERS]"""
import socket
import sys
import threading
import time

from common import Bystander, Conn, Server, fc, report

groups_n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
name_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 250
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8
fetchers = int(sys.argv[4]) if len(sys.argv) > 4 else 16
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
metrics_port = probe.getsockname()[1]
probe.close()
server = Server(["--metrics-addr", f"127.0.0.1:{metrics_port}"])
try:
    members = []
    for c in range((groups_n + 63) // 64):
        conn = Conn(server.port, f"member{c}")
        frames = []
        for i in range(min(64, groups_n - 64 * c)):
            name = f"{c}-{i}-".ljust(name_bytes, "g")
            frames.append(fc.encode_join_group(i + 1, name, "/**", fc.Start.end(), 1))
        conn.send(b"".join(frames))
        members.append(conn)
    for conn in members:
        while conn.recv(timeout=0.05) is not None:
            pass
    by = Bystander(server.port)
    time.sleep(seconds)
    base = by.summary()
    by.latencies.clear()
    cpu0 = server.cpu_s()
    stop = time.time() + seconds
    fetched = [0]
    sizes = []

    def fetch():
        while time.time() < stop:
            try:
                s = socket.create_connection(("127.0.0.1", metrics_port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                got = 0
                while True:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        break
                    got += len(chunk)
                s.close()
                fetched[0] += 1
                sizes.append(got)
            except OSError:
                time.sleep(0.001)
    threads = [threading.Thread(target=fetch, daemon=True) for _ in range(fetchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    attack = by.stop()
    report(f"metrics with {groups_n} groups of {name_bytes}-byte names, {fetchers} fetchers "
           f"for {seconds}s", baseline=base, under_attack=attack, fetched=fetched[0],
           response_bytes=max(sizes) if sizes else 0,
           server_cpu_s=f"{server.cpu_s() - cpu0:.1f}", rss_mb=f"{server.rss_mb():.0f}",
           alive=server.alive())
finally:
    server.stop()
