#!/usr/bin/env python3
"""Server RSS with many connections (BENCHMARKS.md, issue 13 session 10).

Usage: rss_connections.py FLO_BINARY [CONNECTIONS] [EVENTS]

Starts flo (--fsync interval:1000, --max-connections CONNECTIONS + 16) and Redis (appendfsync
everysec, maxclients CONNECTIONS + 16) on free loopback ports with fresh data directories,
stores EVENTS (default 200,000) events of 100 B in each (flo: `flo-client bench`, Redis:
`peer_bench redis`, so that both hold a warm cache or dataset), then opens CONNECTIONS
connections to each, one after another, and reads the server's VmRSS and VmHWM from
/proc/PID/status at each stage:

  base        after the store, no client connected;
  handshakenN every connection handshaken (flo: Hello/Welcome; Redis: PING/PONG), idle;
  subscribedN every connection with one tailing subscription to its own namespace, caught up
              (flo: Subscribe from the end, credit 100, until CaughtUp; Redis: XREAD BLOCK 0
              on its own stream, the client's way to follow a stream);
  closedN     every connection closed again (flo: until `ss` shows no established connection
              to its port; Redis: until `INFO clients` says 1).

Two rounds (N = 1, 2) of the same connections: memory the first round's connections held and
gave back is reused by the second, so a second round that ends where the first did shows a
bound (per-connection memory returned, not leaked), whatever the allocator keeps mapped.

Prints one JSON line per server and stage. Loopback only; stops both servers by PID and
removes the directories. Needs the per-process file limit above CONNECTIONS (`ulimit -n`).
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])  # kB
    return fields


def frame(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def str16(text):
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def read_frame(sock):
    header = recv_exact(sock, 5)
    length, kind = struct.unpack(">IB", header)
    return kind, recv_exact(sock, length - 1)


def recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SystemExit("the server closed a connection")
        data += chunk
    return data


def flo_stages(binary, count, events, work):
    port = free_port()
    directory = os.path.join(work, "flo")
    os.mkdir(directory)
    server = subprocess.Popen(
        [binary, "-d", directory, "-p", str(port), "--fsync", "interval:1000",
         "--max-connections", str(count + 16)],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "flo.log"), "w"))
    try:
        wait_port(port)
        subprocess.run([os.path.join(ROOT, "target/release/flo-client"), "bench", "--addr",
                        f"127.0.0.1:{port}", "--connections", "4", "--window", "64",
                        "--size", "100", "--count", str(events), "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        yield "base", server.pid, rss(server.pid)
        hello = frame(0x01, struct.pack(">H", 1) + str16("rss") + struct.pack(">H", 0))
        for round_ in (1, 2):
            socks = []
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(hello)
                kind, _ = read_frame(sock)
                assert kind == 0x21, f"expected Welcome, got {kind:#x}"
                socks.append(sock)
            yield f"handshaken{round_}", server.pid, rss(server.pid)
            for i, sock in enumerate(socks):
                body = (struct.pack(">I", 1) + str16(f"/rss/c{i}") + bytes([1])
                        + struct.pack(">Q", 0) + bytes([1]) + struct.pack(">I", 100))
                sock.sendall(frame(0x04, body))
                while True:
                    kind, _ = read_frame(sock)
                    if kind == 0x25:  # CaughtUp
                        break
                    assert kind != 0x23, "Error frame"
            yield f"subscribed{round_}", server.pid, rss(server.pid)
            for sock in socks:
                sock.close()
            wait_closed(port)
            yield f"closed{round_}", server.pid, rss(server.pid)
    finally:
        server.terminate()
        server.wait()


def wait_closed(port):
    """Until no established connection to `port` is left (ss), at most 60 s."""
    for _ in range(600):
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.1)


def resp(*args):
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        out += f"${len(raw)}\r\n".encode() + raw + b"\r\n"
    return out


def redis_stages(count, events, work):
    port = free_port()
    directory = os.path.join(work, "redis")
    os.mkdir(directory)
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
         "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
         "--protected-mode", "no", "--maxclients", str(count + 16), "--daemonize", "no",
         "--logfile", os.path.join(directory, "redis.log")])
    try:
        wait_port(port)
        subprocess.run([os.path.join(ROOT, "target/release/peer_bench"), "redis", "--addr",
                        f"127.0.0.1:{port}", "--connections", "4", "--window", "64",
                        "--size", "100", "--count", str(events), "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        yield "base", server.pid, rss(server.pid)
        control = socket.create_connection(("127.0.0.1", port), timeout=30)

        def info_field(name):
            control.sendall(resp("INFO", "clients"))
            time.sleep(0.1)
            info = control.recv(65536).decode()
            found = [l for l in info.splitlines() if l.startswith(name + ":")]
            return int(found[0].split(":")[1]) if found else -1

        for round_ in (1, 2):
            socks = []
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(resp("PING"))
                assert recv_exact(sock, 7) == b"+PONG\r\n"
                socks.append(sock)
            yield f"handshaken{round_}", server.pid, rss(server.pid)
            for i, sock in enumerate(socks):
                sock.sendall(resp("XREAD", "BLOCK", "0", "STREAMS", f"rss:c{i}", "$"))
            # A blocked XREAD sends nothing back: wait until Redis counts them all as blocked.
            for _ in range(600):
                if info_field("blocked_clients") >= count:
                    break
            yield f"subscribed{round_}", server.pid, rss(server.pid)
            for sock in socks:
                sock.close()
            for _ in range(600):
                if info_field("connected_clients") <= 1:
                    break
            yield f"closed{round_}", server.pid, rss(server.pid)
        control.close()
    finally:
        server.terminate()
        server.wait()


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 200000
    work = tempfile.mkdtemp()
    try:
        for name, stages in (("flo", flo_stages(binary, count, events, work)),
                             ("redis", redis_stages(count, events, work))):
            base = None
            for stage, pid, mem in stages:
                base = base if base is not None else mem["VmRSS"]
                print(json.dumps({
                    "server": name, "stage": stage, "connections": count,
                    "rss_kib": mem["VmRSS"], "hwm_kib": mem["VmHWM"],
                    "over_base_per_connection_bytes":
                        round((mem["VmRSS"] - base) * 1024 / count) if stage != "base" else None,
                    "loadavg_1min": round(os.getloadavg()[0], 2),
                }), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
