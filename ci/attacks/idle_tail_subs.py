"""Attack F4 (session 10): many idle tail subscriptions whose globs match nothing that is
produced, beside a bystander producing to /hot/x one event at a time. Before the tail index,
every turn matched every subscription's glob against the turn's namespaces (about 145 ns per
subscription per turn), so the bystander's produce->ack grew with the idle subscriptions.

For each binary given (interleaved, `--repeats` times): starts it on loopback, opens
ceil(SUBS / 64) connections of 64 tail subscriptions on /idle/<n>/** from the end, waits for
a Pong on each (so every Subscribe is handled), then times SAMPLES produce->ack round trips
of the bystander and prints p50/p99/max. Stops each server by its PID.

`--glob` (attack round 12) sets the idle globs, `{n}` standing for the subscription's number:
`/**/nomatch` puts every subscription among those whose first segment holds a wildcard, which
the tail index cannot file by a literal prefix.

usage: idle_tail_subs.py [--subs N] [--samples K] [--repeats R] [--fsync POLICY]
                         [--glob PATTERN] FLO_BIN ..."""
import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Conn, fc  # noqa: E402

PER_CONNECTION = 64  # the server's default --max-subscriptions-per-connection


def subscribe_idle(port, count, glob="/idle/{n}/**"):
    """Opens the idle connections, each with up to 64 subscriptions; returns them."""
    conns = []
    for first in range(0, count, PER_CONNECTION):
        conn = Conn(port, "idle")
        frames = b"".join(
            fc.encode_subscribe(i, glob.format(n=first + i), fc.Start.end(), 0, True, 10)
            for i in range(min(PER_CONNECTION, count - first)))
        conn.send(frames + fc.encode_ping(first))
        conns.append(conn)
    for conn in conns:
        while True:
            frame = conn.recv(timeout=60)
            assert frame is not None, "an idle connection closed or stalled"
            assert frame[0] != fc.ERROR, frame
            if frame[0] == fc.PONG:
                break
    return conns


def time_produces(port, samples):
    conn = Conn(port, "bystander")
    latencies = []
    for op in range(1, samples + 1):
        started = time.perf_counter()
        conn.send(fc.encode_produce(op, fc.NewEvent("/hot/x", b"x")))
        while True:
            frame = conn.recv(timeout=60)
            assert frame is not None, "no ack within 60 s"
            if frame[0] == fc.ACK:
                break
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)
    conn.close()
    return latencies


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--subs", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    # `never`: the ack waits for the turn's write, not for the shared disk's fdatasync, so
    # the figure is the server's own work per produce.
    parser.add_argument("--fsync", default="never")
    parser.add_argument("--glob", default="/idle/{n}/**")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    medians = {binary: [] for binary in args.binaries}
    for repeat in range(args.repeats):
        for binary in args.binaries:
            common.FLO = binary
            server = common.Server(["--max-connections", "4096", "--fsync", args.fsync])
            try:
                started = time.monotonic()
                idle = subscribe_idle(server.port, args.subs, args.glob)
                setup_s = time.monotonic() - started
                ms = time_produces(server.port, args.samples)
                medians[binary].append(statistics.median(ms))
                print(f"repeat {repeat} {binary}: {args.subs} idle subscriptions on "
                      f"{len(idle)} connections (set up in {setup_s:.1f} s, RSS "
                      f"{server.rss_mb():.0f} MB); produce->ack over {len(ms)}: "
                      f"p50 {statistics.median(ms):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, "
                      f"max {max(ms):.2f} ms; load {common.loadavg()}", flush=True)
                for conn in idle:
                    conn.close()
            finally:
                server.stop()
                shutil.rmtree(server.dir, ignore_errors=True)
                assert not any("panicked" in line for line in server.lines), server.lines[-5:]
    for binary, values in medians.items():
        print(f"{binary}: median of p50s {statistics.median(values):.2f} ms "
              f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
