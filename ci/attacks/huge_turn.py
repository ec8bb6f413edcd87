"""Memory a huge turn leaves behind (attack round 15's doubt, settled in session 16).

N connections each send all but the last byte of a Produce of an 8 MiB event, then all send
their last byte at once, so one turn appends N x 8 MiB. Prints the server's RSS while the frames
are buffered, after every ack, and after every connection closed; with `--capacities` the
server must be a build that logs its buffers' capacities (not needed for the RSS figures).

Usage: python3 ci/attacks/huge_turn.py [--connections 60] [--fsync interval:100] [flo flags...]
Loopback only; the server is stopped by its PID."""
import argparse
import time

from common import Conn, Server, fc, report


def wait_rss_settled(server, seconds=3.0):
    """RSS after it stopped changing for a while (the server frees at its own pace)."""
    last = server.rss_mb()
    stable_since = time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = server.rss_mb()
        if abs(now - last) > 1:
            last = now
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            break
    return last


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=60)
    parser.add_argument("--data-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--fsync", default="interval:100")
    args, extra = parser.parse_known_args()
    server = Server(["--fsync", args.fsync, *extra])
    try:
        idle = wait_rss_settled(server, 1.0)
        conns = [Conn(server.port, f"huge{i}") for i in range(args.connections)]
        frames = [fc.encode_produce(i + 1, fc.NewEvent(f"/huge/{i}", bytes([i % 251]) * args.data_bytes))
                  for i in range(args.connections)]
        for conn, frame in zip(conns, frames):
            conn.send(frame[:-1])
        buffered = wait_rss_settled(server)
        for conn, frame in zip(conns, frames):
            conn.send(frame[-1:])
        acked = 0
        for conn in conns:
            reply = conn.recv(timeout=120)
            if reply is not None and reply[0] == fc.ACK:
                acked += 1
        after_acks = wait_rss_settled(server)
        for conn in conns:
            conn.close()
        time.sleep(0.5)
        after_close = wait_rss_settled(server)
        # One more normal turn: the server frees what a turn may shrink.
        probe = Conn(server.port, "probe")
        probe.send(fc.encode_produce(1, fc.NewEvent("/probe", b"x")))
        probe.recv(timeout=30)
        probe.close()
        after_probe = wait_rss_settled(server)
        report(f"huge turn: {args.connections} x {args.data_bytes} bytes, --fsync {args.fsync}",
               acked=acked, rss_idle_mb=round(idle), rss_buffered_mb=round(buffered),
               rss_after_acks_mb=round(after_acks), rss_after_close_mb=round(after_close),
               rss_after_one_more_produce_mb=round(after_probe),
               alive=server.alive())
        for line in server.lines:
            if "capacit" in line:
                print("   server:", line.rstrip())
    finally:
        server.stop()


if __name__ == "__main__":
    main()
