#!/bin/bash
# End-to-end latency at a fixed rate against the disk's own fdatasync (BENCHMARKS.md, issue 13
# session 10): [NEW=target/release/flo] [OLD=another flo] [REPEATS=5] [DURATION=5] [RATE=10000] \
#     [WINDOW=1024] [CLIENT=target/release/flo-client] [PEER=target/release/peer_bench] \
#     ci/bench_e2e.sh
# The end-to-end cell of ci/bench.sh on its own: one producer connection with a window of
# WINDOW at RATE events/s of 100 B, a consumer tailing the namespace (flo: `flo-client bench
# --consumers 1`; Redis: `peer_bench redis-e2e`, XREAD BLOCK), latency from when each event was
# due to its arrival at the consumer. Targets, interleaved in each repeat: flo --fsync always,
# Redis appendfsync always, flo --fsync interval:1000, Redis appendfsync everysec. Each target's
# run starts with the disk's own write + fdatasync latency (ci/fsync_latency.py, 1000 samples,
# in the same directory tree as the servers' data): the disk's speed changes within seconds
# (BENCHMARKS.md, issue 13 session 17), so the probe is taken just before the run it is compared
# with. With OLD, that binary's two servers (old-always, old-interval) run each repeat too,
# before or after NEW's by turns. Prints one JSON line per run (the bench result with the
# repeat, the server's CPU ticks and the probe before it); stops what it started by PID.
#
# WINDOW bounds the produces in flight; a produce due while the window is full is sent late,
# and its lateness counts in its latency. The default, 1024, holds 100 ms of events at 10,000/s:
# with 64 (6.4 ms at 10,000/s) the run stops being open loop whenever the mean acknowledgement
# takes over 6.4 ms, which a disk whose fdatasync takes 3-4 ms reaches (an event waits for the
# fdatasync in progress and then for its own), and then measures the load generator's queue.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${NEW:-$ROOT/target/release/flo}
CLIENT=${CLIENT:-$ROOT/target/release/flo-client}
PEER=${PEER:-$ROOT/target/release/peer_bench}
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
  if [[ -n ${OLD:-} ]] && (( r % 2 )); then
    TARGETS=(old-always flo-always redis-always old-interval flo-interval redis-everysec)
  elif [[ -n ${OLD:-} ]]; then
    TARGETS=(flo-always old-always redis-always flo-interval old-interval redis-everysec)
  fi
  for t in "${TARGETS[@]}"; do
    disk=$(python3 "$ROOT/ci/fsync_latency.py" "$WORK" 1000)
    common=(--size 100 --connections 1 --window "${WINDOW:-1024}" --rate "${RATE:-10000}" --duration "${DURATION:-5}" --label "$t" --json)
    ticks=$(cpu_ticks "${SERVER_PID[$t]}")
    if [[ $t == flo-* || $t == old-* ]]; then res=$("$CLIENT" bench --consumers 1 --addr "127.0.0.1:${PORT[$t]}" "${common[@]}")
    else res=$("$PEER" redis-e2e --addr "127.0.0.1:${PORT[$t]}" "${common[@]}"); fi
    ticks=$(( $(cpu_ticks "${SERVER_PID[$t]}") - ticks ))
    echo "{\"repeat\":$r,\"target\":\"$t\",\"server_cpu_ticks\":$ticks,\"disk\":$disk,\"result\":$res}"
  done
done
