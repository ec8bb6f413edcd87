"""Attack: the metrics endpoint renders a full snapshot per request (connection counts, the
id-order block and the group figures visit every subscription of every connection), with no
charge against the turn. Many idle subscriptions + M threads that each fetch /metrics in a
loop (one request per connection: the endpoint answers `Connection: close`).

usage: metrics_flood.py CONNECTIONS SECONDS [FETCHERS]"""
import socket
import sys
import threading
import time

from common import Bystander, Conn, Server, fc, report

conns_n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8
fetchers = int(sys.argv[3]) if len(sys.argv) > 3 else 16
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
metrics_port = probe.getsockname()[1]
probe.close()
server = Server(["--max-connections", "4096", "--metrics-addr", f"127.0.0.1:{metrics_port}"])
try:
    idle = []
    for c in range(conns_n):
        conn = Conn(server.port, f"idle{c}")
        conn.send(b"".join(fc.encode_subscribe(s, "/idle/**", fc.Start.end(), 0, True, 1)
                           for s in range(1, 65)))
        idle.append(conn)
    for conn in idle:
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
    report(f"metrics flood: {conns_n} connections x 64 idle subscriptions, {fetchers} fetchers "
           f"for {seconds}s", baseline=base, under_attack=attack, fetched=fetched[0],
           response_bytes=max(sizes) if sizes else 0,
           server_cpu_s=f"{server.cpu_s() - cpu0:.1f}", rss_mb=f"{server.rss_mb():.0f}",
           alive=server.alive())
finally:
    server.stop()
