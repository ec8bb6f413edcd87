"""Attack: more connections than the process may hold file descriptors (a careless `ulimit -n`
below --max-connections). Holds CONNECTIONS idle connections, reports the server's CPU while
they are held (does accept spin on EMFILE?), then what 50 produces get, then whether the
server stores again once they are gone.

usage: fd_exhaustion.py NOFILE CONNECTIONS"""
import os
import resource
import socket
import sys
import time

from common import Conn, Server, fc, report

nofile = int(sys.argv[1]) if len(sys.argv) > 1 else 128
conns_n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
server = Server(["--segment-size", "4096"])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
try:
    c = Conn(server.port, "producer")
    socks = []
    for n in range(conns_n):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        s.sendall(fc.encode_hello(f"fd{n}"))
        socks.append(s)
    time.sleep(1)
    cpu0 = server.cpu_s()
    time.sleep(3)
    cpu = server.cpu_s() - cpu0
    fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    c.send(b"".join(fc.encode_produce(i, fc.NewEvent("/fd/x", b"y" * 500)) for i in range(50)))
    kinds = {}
    first_error = None
    while kinds.get(fc.ACK, 0) + kinds.get(fc.ERROR, 0) < 50:
        frame = c.recv(timeout=10)
        if frame is None:
            break
        kinds[frame[0]] = kinds.get(frame[0], 0) + 1
        if frame[0] == fc.ERROR and first_error is None:
            first_error = fc.decode(*frame)
    for s in socks:
        s.close()
    time.sleep(2)
    c2 = Conn(server.port, "after")
    c2.send(fc.encode_produce(1, fc.NewEvent("/fd/x", b"after")))
    after = c2.recv(timeout=5)
    report(f"fd exhaustion: ulimit -n {nofile}, {conns_n} idle connections",
           server_fds=fds, server_cpu_s_in_3s=f"{cpu:.1f}",
           produce_acks=kinds.get(fc.ACK, 0), produce_errors=kinds.get(fc.ERROR, 0),
           first_error=first_error, produce_after_close_ack=(after is not None and after[0] == fc.ACK),
           accept_failed_lines=sum("accept failed" in line for line in server.lines),
           lowered_warning=any("--max-connections lowered" in line for line in server.lines),
           alive=server.alive())
finally:
    server.stop()
