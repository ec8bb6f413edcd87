"""Shared harness of the attack scripts: start a release `flo` on loopback in a temporary
directory, raw connections built on the Python client's encoders, a bystander that produces
one event every 20 ms and times its ack, and the server's RSS and CPU time from /proc.

Every script is bounded in time and count and stops the server it started by its PID."""
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import flo_client as fc  # noqa: E402

FLO = os.environ.get("FLO_BIN", os.path.join(ROOT, "target", "release", "flo"))


class Server:
    def __init__(self, extra=(), data_dir=None):
        self.dir = data_dir or tempfile.mkdtemp(prefix="attack8-")
        self.proc = subprocess.Popen(
            [FLO, "-d", self.dir, "-p", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = []
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            self.lines.append(line)
            if " listening on " in line:
                addr = line.split(" listening on ")[1].split(",")[0].strip()
                self.port = int(addr.rsplit(":", 1)[1])
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("flo did not start: " + "".join(self.lines))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))

    def alive(self):
        return self.proc.poll() is None

    def rss_mb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except FileNotFoundError:
            return -1
        return -1

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Conn:
    def __init__(self, port, name="attack8", token=b""):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.send(fc.encode_hello(name, token))
        kind, _ = self.recv()
        assert kind == fc.WELCOME, kind

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=None):
        """(kind, body) of the next frame, or None at close/time-out."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if len(self.buf) >= 4:
                    (length,) = struct.unpack(">I", self.buf[:4])
                    if len(self.buf) >= 4 + length:
                        kind = self.buf[4]
                        body = self.buf[5:4 + length]
                        self.buf = self.buf[4 + length:]
                        return kind, body
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return None
                self.buf += chunk
        except socket.timeout:
            return None

    def drain_forever(self):
        """Reads and drops everything (a thread), counting bytes."""
        self.read_bytes = 0

        def run():
            try:
                while True:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        return
                    self.read_bytes += len(chunk)
            except OSError:
                return
        threading.Thread(target=run, daemon=True).start()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Bystander:
    """Produces one event every `period` seconds on its own connection and times each ack."""

    def __init__(self, port, period=0.02):
        self.conn = Conn(port, "bystander")
        self.period = period
        self.latencies = []
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        op = 0
        while not self.stopped:
            op += 1
            started = time.monotonic()
            self.conn.send(fc.encode_produce(op, fc.NewEvent("/bystander/x", b"x")))
            while True:
                frame = self.conn.recv(timeout=60)
                if frame is None:
                    self.latencies.append(float("inf"))
                    return
                if frame[0] == fc.ACK:
                    break
            self.latencies.append(time.monotonic() - started)
            time.sleep(self.period)

    def stop(self):
        self.stopped = True
        self.thread.join(70)
        self.conn.close()
        return self.summary()

    def summary(self):
        if not self.latencies:
            return "bystander: no acks"
        ms = [x * 1000 for x in self.latencies]
        return (f"bystander acks {len(ms)}: median {statistics.median(ms):.1f} ms, "
                f"max {max(ms):.1f} ms")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report(title, **figures):
    print(f"== {title} (load {loadavg()})")
    for key, value in figures.items():
        print(f"   {key}: {value}")
    sys.stdout.flush()
