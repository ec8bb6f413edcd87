"""Attack: COUNT connections to a TLS server (a throw-away self-signed certificate) that each
send either the first bytes of a TLS ClientHello record or a garbage handshake record, and then
stall. Reports the server's RSS and CPU, the time of fresh TLS handshakes meanwhile, and how
long until the server closed every stalled connection (the handshake time-out).

usage: tls_stall.py COUNT [flo flags, default --handshake-timeout 3s]"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from common import Server, loadavg

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
extra = sys.argv[2:] or ["--handshake-timeout", "3s"]
certs = tempfile.mkdtemp(prefix="attack11-tls-")
cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
               check=True, capture_output=True)
server = Server(extra=["--tls-cert", cert, "--tls-key", key, *extra])
rss_before, cpu_before = server.rss_mb(), server.cpu_s()
# A TLS 1.2 record header announcing a 512-byte handshake message, then 10 of its bytes.
partial = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + bytes([0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + b"\0" * 4
garbage = bytes([0x16, 0x03, 0x03, 0x40, 0x00]) + os.urandom(1000)
stalled = []
for i in range(count):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(partial if i % 2 == 0 else garbage)
    stalled.append(sock)
time.sleep(0.5)
rss_peak = server.rss_mb()


def fresh_handshake_ms():
    context = ssl.create_default_context(cafile=cert)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost"):
            return (time.monotonic() - started) * 1000


during = [fresh_handshake_ms() for _ in range(5)]
started = time.monotonic()
open_left = len(stalled)
while open_left and time.monotonic() - started < 60:
    open_left = 0
    for sock in stalled:
        sock.setblocking(False)
        try:
            if sock.recv(4096) == b"":
                continue
        except BlockingIOError:
            open_left += 1
            continue
        except OSError:
            continue
    time.sleep(0.2)
closed_after = time.monotonic() - started
print(f"{count} stalled TLS connections (half a partial ClientHello, half garbage records), "
      f"flags {extra}: server RSS {rss_before:.0f} -> {rss_peak:.0f} MB, CPU "
      f"{server.cpu_s() - cpu_before:.2f} s; fresh TLS handshakes meanwhile "
      f"{', '.join(f'{x:.1f}' for x in during)} ms; stalled ones all closed by the server "
      f"{closed_after:.1f} s after (still open: {open_left}); alive {server.alive()}; "
      f"load {loadavg()}")
for sock in stalled:
    sock.close()
server.stop()
