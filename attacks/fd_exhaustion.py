"""Attack: more connections than the process may hold file descriptors (a careless `ulimit -n`
below --max-connections). What happens to accept (EMFILE), to a produce that needs a new
segment file, and to the server's CPU while the listener stays readable?

usage: fd_exhaustion.py NOFILE CONNECTIONS SECONDS"""
import resource
import socket
import sys
import time

from common import Bystander, Conn, Server, fc, report

nofile = int(sys.argv[1]) if len(sys.argv) > 1 else 128
conns_n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
server = Server(["--segment-size", "4096"])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
try:
    by = Bystander(server.port)
    time.sleep(2)
    base = by.summary()
    by.latencies.clear()
    cpu0 = server.cpu_s()
    socks = []
    refused = 0
    for n in range(conns_n):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            s.sendall(fc.encode_hello(f"fd{n}"))
            socks.append(s)
        except OSError:
            refused += 1
    time.sleep(seconds)
    cpu_spent = server.cpu_s() - cpu0
    # Produce enough to need new segment files (4 KiB segments) while the fds are gone.
    producer_ok = True
    try:
        p = Conn(server.port, "producer")
        p.send(b"".join(fc.encode_produce(i, fc.NewEvent("/fd/x", b"y" * 500)) for i in range(50)))
        acks = errors = 0
        while acks + errors < 50:
            frame = p.recv(timeout=10)
            if frame is None:
                break
            if frame[0] == fc.ACK:
                acks += 1
            elif frame[0] == fc.ERROR:
                errors += 1
    except Exception as e:  # noqa: BLE001
        producer_ok = f"failed: {e}"
        acks = errors = -1
    welcomed = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            if s.recv(64):
                welcomed += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    time.sleep(1)
    attack = by.stop()
    report(f"fd exhaustion: ulimit -n {nofile}, {conns_n} connections, {seconds}s",
           baseline=base, under_attack=attack, connect_failures=refused, welcomed=welcomed,
           server_cpu_s_while_held=f"{cpu_spent:.1f}", produce_acks=acks, produce_errors=errors,
           producer=producer_ok, rss_mb=f"{server.rss_mb():.0f}", alive=server.alive())
    print("   log tail:", "".join(server.lines[-5:])[:1500])
finally:
    server.stop()
