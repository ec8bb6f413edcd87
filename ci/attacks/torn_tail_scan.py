"""Attack (a client's event data plus a torn write, no access to the data directory needed for
the data; the tear is simulated by truncating the newest segment as a power loss would leave
it): one large event whose data holds, every 8 bytes, a plausible record header (lengths that
agree, a body of half the torn tail). Start-up looks for whole records after the first bad
byte of the newest segment, trying every byte position; a full CRC32C of each candidate's
body made that quadratic in the torn length. Prints the start-up time for each size of torn
tail; a start-up still running at the deadline is killed by its PID.

usage: torn_tail_scan.py MIB..."""
import os
import struct
import subprocess
import sys
import time

from common import FLO, Conn, Server, fc

NAMESPACE = "/torn/large"
DEADLINE_S = 240


def crafted_data(data_size, tail_size):
    """Data whose every other 4-byte word is `a` and the rest `b`: at each position holding
    `a` the body size is `a`, the namespace size (36 bytes on) `b` and the data size (after
    the namespace) `b` again, and 36 + b + b == a."""
    b = tail_size // 4
    b += 4 - b % 8
    a = 36 + 2 * b
    return struct.pack("<II", a, b) * (data_size // 8)


def startup_seconds(data_dir):
    started = time.monotonic()
    proc = subprocess.Popen(
        [FLO, "-d", data_dir, "-p", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.set_blocking(proc.stderr.fileno(), False)
    lines = b""
    while time.monotonic() - started < DEADLINE_S:
        chunk = proc.stderr.read()
        if chunk:
            lines += chunk
        if b" listening on " in lines or proc.poll() is not None:
            break
        time.sleep(0.05)
    took = time.monotonic() - started
    started_ok = b" listening on " in lines
    proc.kill()
    proc.wait()
    cut = b"cut a torn tail" in lines
    return took, started_ok, cut


for mib in [int(a) for a in sys.argv[1:]] or [1, 2]:
    data_size = mib << 20
    tail_size = data_size * 3 // 4
    server = Server()
    conn = Conn(server.port, "tearer")
    data = crafted_data(data_size, tail_size)
    conn.send(fc.encode_produce(1, fc.NewEvent(NAMESPACE, data)))
    reply = conn.recv(timeout=60)
    assert reply is not None and reply[0] == fc.ACK, reply
    conn.close()
    server.stop()
    segments = sorted(n for n in os.listdir(server.dir) if n.endswith(".log"))
    path = os.path.join(server.dir, segments[-1])
    with open(path, "rb") as f:
        content = f.read()
    # The record starts 8 (header) + 28 (ids, timestamp) + 4 + namespace + 4 bytes before its data.
    record_at = content.index(data[:64]) - (8 + 28 + 4 + len(NAMESPACE) + 4)
    os.truncate(path, record_at + tail_size)
    took, started_ok, cut = startup_seconds(server.dir)
    state = "started" if started_ok else f"still scanning at the {DEADLINE_S} s deadline (killed)"
    print(f"torn tail {tail_size} bytes (event of {mib} MiB): {state} after {took:.1f} s; "
          f"torn tail cut: {cut}", flush=True)
