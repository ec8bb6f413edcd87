#!/usr/bin/env python3
"""Medians and ratios of a ci/bench_ab.sh run: one row per cell with OLD, NEW and Redis.

Usage: bench_ab_report.py AB_JSONL

For every cell and target, the median over the repeats of events/s, ack p99 and p99.9 (ms) and
server CPU per event (microseconds of utime + stime of the server process over the run, divided
by the events the run counted: for a read cell that includes storing the events). Prints a
Markdown table with NEW/OLD and NEW/Redis throughput ratios. Standard library only.
"""
import json
import os
import statistics
import sys

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def main(path):
    runs = {}
    order = []
    with open(path) as lines:
        for line in lines:
            if not line.strip():
                continue
            run = json.loads(line)
            result = run["result"]
            kind = result["target"].split("-")[0]
            key = (run["cell"], kind if kind in ("old", "new") else "redis")
            if run["cell"] not in order:
                order.append(run["cell"])
            events = max(result["events"], 1)
            if result["kind"] == "read":
                # Stored, then read back: CPU per event counts both halves.
                events *= 2
            runs.setdefault(key, []).append({
                "events_per_s": result["events_per_s"],
                "p99_ms": result["latency_p99_us"] / 1000,
                "p999_ms": result["latency_p999_us"] / 1000,
                "cpu_us": run.get("server_cpu_ticks", 0) * TICK_US / events,
            })
    median = lambda key, metric: statistics.median(r[metric] for r in runs[key])
    print("| cell | main: events/s, ack p99 / p99.9, CPU/event | this branch | Redis | branch / main | branch / Redis |")
    print("|---|---|---|---|---|---|")
    for cell in order:
        cols = []
        for target in ("old", "new", "redis"):
            key = (cell, target)
            if key not in runs:
                cols.append("-")
                continue
            cols.append("%.0fk, %.1f / %.1f ms, %.2f us" % (
                median(key, "events_per_s") / 1000, median(key, "p99_ms"),
                median(key, "p999_ms"), median(key, "cpu_us")))
        def ratio(a, b):
            if (cell, a) not in runs or (cell, b) not in runs:
                return "-"
            return "%.2fx" % (median((cell, a), "events_per_s") / median((cell, b), "events_per_s"))
        print("| `%s` | %s | %s | %s | %s | %s |" % (cell, *cols, ratio("new", "old"), ratio("new", "redis")))
        counts = {t: len(runs.get((cell, t), [])) for t in ("old", "new", "redis")}
        if len(set(counts.values())) != 1:
            print("<!-- uneven repeats in %s: %s -->" % (cell, counts))


if __name__ == "__main__":
    main(sys.argv[1])
