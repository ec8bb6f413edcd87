#!/bin/bash
# End-to-end latency at a fixed rate against the disk's own fdatasync (BENCHMARKS.md, issue 13
# session 10): [NEW=target/release/flo] [OLD=another flo] [REPEATS=5] [DURATION=5] [RATE=10000] \
#     ci/bench_e2e.sh
# The end-to-end cell of ci/bench.sh on its own: one producer connection with a window of 64 at
# RATE events/s of 100 B, a consumer tailing the namespace (flo: `flo-client bench --consumers
# 1`; Redis: `peer_bench redis-e2e`, XREAD BLOCK), latency from when each event was due to its
# arrival at the consumer. Targets, interleaved in each repeat: flo --fsync always, Redis
# appendfsync always, flo --fsync interval:1000, Redis appendfsync everysec. Each repeat starts
# with the disk's own write + fdatasync latency (ci/fsync_latency.py, 1000 samples, in the same
# directory tree as the servers' data). With OLD, that binary's two servers (old-always,
# old-interval) run each repeat too, before or after NEW's by turns. Prints one JSON line per run (the bench result with the
# repeat, the server's CPU ticks and the last disk probe); stops what it started by PID.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${NEW:-$ROOT/target/release/flo}
CLIENT=$ROOT/target/release/flo-client
PEER=$ROOT/target/release/peer_bench
# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port.
source "$ROOT/ci/processes.sh"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A PORT SERVER_PID
start_flo() { # name policy [binary]
  local port; port=$(free_port); mkdir -p "$WORK/$1"
  "${3:-$NEW}" -d "$WORK/$1" -p "$port" --fsync "$2" >"$WORK/$1.log" 2>&1 &
  STARTED_PIDS+=($!); SERVER_PID[$1]=$!; wait_for_port "$port"; PORT[$1]=$port
}
start_redis() { # name appendfsync
  local port; port=$(free_port); mkdir -p "$WORK/$1"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$1" --save "" --appendonly yes \
    --appendfsync "$2" --protected-mode no --daemonize no --logfile "$WORK/$1/redis.log" &
  STARTED_PIDS+=($!); SERVER_PID[$1]=$!; wait_for_port "$port"; PORT[$1]=$port
}
start_flo flo-always always
start_redis redis-always always
start_flo flo-interval interval:1000
start_redis redis-everysec everysec
TARGETS=(flo-always redis-always flo-interval redis-everysec)
if [[ -n ${OLD:-} ]]; then
  start_flo old-always always "$OLD"
  start_flo old-interval interval:1000 "$OLD"
fi
for r in $(seq "${REPEATS:-5}"); do
  disk=$(python3 "$ROOT/ci/fsync_latency.py" "$WORK" 1000)
  if [[ -n ${OLD:-} ]] && (( r % 2 )); then
    TARGETS=(old-always flo-always redis-always old-interval flo-interval redis-everysec)
  elif [[ -n ${OLD:-} ]]; then
    TARGETS=(flo-always old-always redis-always flo-interval old-interval redis-everysec)
  fi
  for t in "${TARGETS[@]}"; do
    common=(--size 100 --connections 1 --window 64 --rate "${RATE:-10000}" --duration "${DURATION:-5}" --label "$t" --json)
    ticks=$(cpu_ticks "${SERVER_PID[$t]}")
    if [[ $t == flo-* || $t == old-* ]]; then res=$("$CLIENT" bench --consumers 1 --addr "127.0.0.1:${PORT[$t]}" "${common[@]}")
    else res=$("$PEER" redis-e2e --addr "127.0.0.1:${PORT[$t]}" "${common[@]}"); fi
    ticks=$(( $(cpu_ticks "${SERVER_PID[$t]}") - ticks ))
    echo "{\"repeat\":$r,\"target\":\"$t\",\"server_cpu_ticks\":$ticks,\"disk\":$disk,\"result\":$res}"
  done
done
