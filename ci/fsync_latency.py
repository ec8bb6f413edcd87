#!/usr/bin/env python3
"""The disk's own durability cost: 1000 x (append 100 B + fdatasync) in a file under DIR.

Prints one JSON object with the latency of each (write + fdatasync) pair in microseconds. This is
the floor under any server that fsyncs before acknowledging, such as Redis with
`appendfsync always` or flo with `--fsync always`.

It also records what else the machine was doing (load average, and the share of time some task
waited for I/O over the last 10 s from /proc/pressure/io), because on a shared machine other
writers change the fsync latency, and with it every fsync-bound figure.

Usage: fsync_latency.py DIR [COUNT]
"""
import json
import os
import sys
import time


def percentile(sorted_values, quantile):
    """The smallest sample with at least `quantile` of the samples at or below it."""
    rank = max(1, -(-int(quantile * 1000 * len(sorted_values)) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def io_pressure():
    """The `some avg10` figure of /proc/pressure/io in percent, or None where PSI is absent."""
    try:
        with open("/proc/pressure/io") as pressure:
            for line in pressure:
                if line.startswith("some"):
                    return float(line.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return None


def main():
    directory = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    path = os.path.join(directory, "fsync-probe")
    record = b"x" * 100
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            start = time.perf_counter_ns()
            os.write(fd, record)
            os.fdatasync(fd)
            samples.append((time.perf_counter_ns() - start) / 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    print(json.dumps({
        "kind": "fdatasync",
        "count": count,
        "record_size": len(record),
        "p50_us": round(percentile(samples, 0.50), 1),
        "p99_us": round(percentile(samples, 0.99), 1),
        "max_us": round(samples[-1], 1),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "io_pressure_some_avg10": io_pressure(),
    }))


if __name__ == "__main__":
    main()
