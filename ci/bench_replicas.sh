#!/usr/bin/env bash
# Replicated acks (issue 17): produce throughput and ack latency with replicas 1, 2 and 3 on a
# local 3-node flo cluster (--fsync always), beside a 3-node NATS JetStream cluster with file
# storage and a stream of 1 or 3 replicas, in one run, repeats interleaved.
#
#   ci/bench_replicas.sh     # BENCH_DURATION seconds per run (default 3), BENCH_REPEATS (3)
#
# Two loads: "latency" (1 connection, 1 produce in flight) and "throughput" (4 connections, 64
# in flight each), 100-byte events. Prints one JSON line per run (flo_bench::BenchResult) and
# a table of medians. Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-3}
REPEATS=${BENCH_REPEATS:-3}
log() { echo "[bench-replicas $(date -u +%H:%M:%S)] $*" >&2; }

cargo build --release -p flo-bench --bin peer_bench >&2
cargo build --release --bin flo --bin flo-client >&2
PEER_BENCH=$ROOT/target/release/peer_bench
FLO=$ROOT/target/release/flo
FLO_CLIENT=$ROOT/target/release/flo-client

# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port.
source ci/processes.sh

# --- flo: three nodes, each with the others as --peer-addr ----------------------------------
FLO_PORTS=($(free_port) $(free_port) $(free_port))
for i in 0 1 2; do
    args=(-d "$WORK/flo$i" -p "${FLO_PORTS[$i]}" --actor-id $((i + 1)) --fsync always)
    for j in 0 1 2; do
        [[ $j == "$i" ]] || args+=(--peer-addr "127.0.0.1:${FLO_PORTS[$j]}")
    done
    "$FLO" "${args[@]}" >"$WORK/flo$i.log" 2>&1 &
    STARTED_PIDS+=($!)
done
for port in "${FLO_PORTS[@]}"; do wait_for_port "$port"; done
for attempt in $(seq 100); do
    connected=$("$FLO_CLIENT" -p "${FLO_PORTS[0]}" status | grep -c ": connected" || true)
    [[ $connected == 2 ]] && break
    sleep 0.1
done
log "flo cluster on ports ${FLO_PORTS[*]} ($connected peers connected to node 1)"

# --- NATS: a three-server JetStream cluster -------------------------------------------------
NATS_PORTS=($(free_port) $(free_port) $(free_port))
ROUTE_PORTS=($(free_port) $(free_port) $(free_port))
for i in 0 1 2; do
    routes=()
    for j in 0 1 2; do [[ $j == "$i" ]] || routes+=("nats://127.0.0.1:${ROUTE_PORTS[$j]}"); done
    mkdir -p "$WORK/nats$i"
    nats-server -a 127.0.0.1 -p "${NATS_PORTS[$i]}" -js -sd "$WORK/nats$i" -n "n$i" \
        --cluster_name bench --cluster "nats://127.0.0.1:${ROUTE_PORTS[$i]}" \
        --routes "$(IFS=,; echo "${routes[*]}")" -l "$WORK/nats$i/nats.log" &
    STARTED_PIDS+=($!)
done
for port in "${NATS_PORTS[@]}"; do wait_for_port "$port"; done
# JetStream elects its meta leader after the routes are up; a stream create fails until then.
sleep 5
log "nats cluster on ports ${NATS_PORTS[*]} ($(nats-server --version))"

run() { # target replicas connections window
    local target=$1 replicas=$2 connections=$3 window=$4 label
    label="$target-r$replicas-c$connections-w$window"
    local common=(--connections "$connections" --window "$window" --size 100
        --duration "$DURATION" --label "$label" --json)
    case $target in
        flo) "$FLO_CLIENT" -p "${FLO_PORTS[0]}" bench --replicas "$replicas" "${common[@]}" ;;
        nats) "$PEER_BENCH" nats --addr "127.0.0.1:${NATS_PORTS[0]}" --replicas "$replicas" "${common[@]}" ;;
    esac
}

OUT=$WORK/results.jsonl
for repeat in $(seq "$REPEATS"); do
    for load in "1 1" "4 64"; do
        for cell in "flo 1" "flo 2" "flo 3" "nats 1" "nats 3"; do
            # shellcheck disable=SC2086
            run $cell $load | tee -a "$OUT"
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
        runs.setdefault(r["target"], []).append(r)
med = lambda rs, key: statistics.median(r[key] for r in rs)
print(f"{'run':<22} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}  runs")
for label, rs in runs.items():
    print(f"{label:<22} {med(rs, 'events_per_s'):>10.0f} {med(rs, 'latency_p50_us') / 1000:>8.3f} "
          f"{med(rs, 'latency_p99_us') / 1000:>8.3f}  {len(rs)}")
PY
