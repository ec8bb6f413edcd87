#!/usr/bin/env bash
# Id-order delivery latency (issue 17) against arrival-order delivery on a local 3-node flo
# cluster (loopback, --fsync always, each node with the others as --peer-addr): in each run a
# `flo-client bench` runs against every node at once, each producing at --rate to that node
# (so producers write to all three nodes concurrently) with one tailing consumer on the same
# node, subscribed in arrival order or in id order; the latency is from the produce's send
# to the consumer's delivery (end-to-end, `e2e` in the JSON). Id order releases an event once
# every member's promised clock (PeerClock, sent at the end of every turn in which a node's
# counter moved, and with each keep-alive: every 1 s, the housekeeping interval) has passed
# it, so it adds the wait for the other two nodes' promises.
#
#   ci/bench_id_order.sh   # BENCH_DURATION seconds per run (default 5), BENCH_REPEATS (3),
#                          # BENCH_RATES events/s per node (default "100 1000"),
#                          # BENCH_FSYNC the nodes' --fsync (default always)
#
# Orders and rates are interleaved within each repeat. Prints one JSON line per node and run
# and a table of medians over nodes and repeats. Every process it starts is stopped by its
# PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-5}
REPEATS=${BENCH_REPEATS:-3}
RATES=${BENCH_RATES:-100 1000}
FSYNC=${BENCH_FSYNC:-always}
log() { echo "[bench-id-order $(date -u +%H:%M:%S)] $*" >&2; }

cargo build --release --bin flo --bin flo-client >&2
FLO=$ROOT/target/release/flo
FLO_CLIENT=$ROOT/target/release/flo-client

# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port.
source ci/processes.sh

PORTS=($(free_port) $(free_port) $(free_port))
for i in 0 1 2; do
    args=(-d "$WORK/flo$i" -p "${PORTS[$i]}" --actor-id $((i + 1)) --fsync "$FSYNC")
    for j in 0 1 2; do
        [[ $j == "$i" ]] || args+=(--peer-addr "127.0.0.1:${PORTS[$j]}")
    done
    "$FLO" "${args[@]}" >"$WORK/flo$i.log" 2>&1 &
    STARTED_PIDS+=($!)
done
for port in "${PORTS[@]}"; do wait_for_port "$port"; done
for port in "${PORTS[@]}"; do
    for attempt in $(seq 200); do
        connected=$("$FLO_CLIENT" -p "$port" status | grep -c ": connected" || true)
        [[ $connected == 2 ]] && break
        sleep 0.1
    done
    [[ $connected == 2 ]] || { echo "FAIL: node on port $port has $connected peers" >&2; exit 1; }
done
# A fresh node refuses produces (NotReady) until it has met its peers: wait until one goes in.
for port in "${PORTS[@]}"; do
    for attempt in $(seq 200); do
        "$FLO_CLIENT" -p "$port" produce -n /warmup -d x >/dev/null 2>&1 && break
        sleep 0.1
    done
done
log "flo cluster on ports ${PORTS[*]}, every node connected to both others"

OUT=$WORK/results.jsonl
for repeat in $(seq "$REPEATS"); do
    for rate in $RATES; do
        for order in arrival id; do
            pids=()
            for i in 0 1 2; do
                "$FLO_CLIENT" -p "${PORTS[$i]}" bench --rate "$rate" --connections 1 --window 64 \
                    --size 100 --duration "$DURATION" --consumers 1 --order "$order" \
                    --label "$order-$rate-node$((i + 1))" --json >"$WORK/run$i.json" &
                pids+=($!)
            done
            for pid in "${pids[@]}"; do wait "$pid"; done
            cat "$WORK"/run[012].json | tee -a "$OUT"
        done
    done
    log "repeat $repeat done; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        order, rate, _ = r["target"].split("-")
        runs.setdefault((int(rate), order), []).append(r)
med = lambda rs, key: statistics.median(r[key] for r in rs)
print(f"{'events/s per node':>17} {'order':<8} {'e2e p50 ms':>10} {'e2e p99 ms':>10} {'ack p50 ms':>10}  runs")
for (rate, order), rs in sorted(runs.items()):
    print(f"{rate:>17} {order:<8} {med(rs, 'e2e_p50_us') / 1000:>10.3f} {med(rs, 'e2e_p99_us') / 1000:>10.3f} "
          f"{med(rs, 'latency_p50_us') / 1000:>10.3f}  {len(rs)}")
PY
