#!/bin/bash
# A/B comparison of two flo binaries with Redis in the same run (BENCHMARKS.md, issue 13):
#   OLD=/path/to/flo-before [NEW=target/release/flo] [REPEATS=3] [DURATION=3] [CELLS=...] \
#       [OUT=ab.jsonl] ci/bench_ab.sh
# Starts flo OLD and NEW with --fsync interval:1000 and always, Redis everysec and always, each
# on a free loopback port with a fresh directory, then runs every cell (policy,size,conns,window)
# for OLD, NEW and the Redis of the same policy, interleaved, REPEATS times, appending one JSON
# line per run to OUT. Stops what it started by PID. Needs target/release/{flo-client,peer_bench}.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:?set OLD to the flo binary to compare against}
NEW=${NEW:-$ROOT/target/release/flo}
CLIENT=$ROOT/target/release/flo-client
PEER=$ROOT/target/release/peer_bench
WORK=$(mktemp -d)
OUT=${OUT:-ab.jsonl}
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-3}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
declare -A PORT
start_flo() { # name binary policy
  local port; port=$(free_port); mkdir -p "$WORK/$1"
  "$2" -d "$WORK/$1" -p "$port" --fsync "$3" >"$WORK/$1.log" 2>&1 & PIDS+=($!); wait_port "$port"; PORT[$1]=$port
  echo "$1 pid $! port $port" >&2
}
start_redis() { local port; port=$(free_port); mkdir -p "$WORK/$1"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$1" --save "" --appendonly yes --appendfsync "$2" --protected-mode no --daemonize no --logfile "$WORK/$1/redis.log" & PIDS+=($!); wait_port "$port"; PORT[$1]=$port; }
start_flo old-interval "$OLD" interval:1000
start_flo new-interval "$NEW" interval:1000
start_flo old-always "$OLD" always
start_flo new-always "$NEW" always
start_redis redis-everysec everysec
start_redis redis-always always
CELLS=${CELLS:-"interval,1024,1,64 interval,1024,4,64 interval,100,4,64 interval,100,1,1 always,100,4,64 always,1024,4,64 always,100,64,16"}
for r in $(seq "$REPEATS"); do
  for cell in $CELLS; do
    IFS=, read -r policy size conns window <<<"$cell"
    if [[ $policy == interval ]]; then peer=redis-everysec; else peer=redis-always; fi
    for t in old-$policy new-$policy $peer; do
      common=(--size "$size" --connections "$conns" --window "$window" --duration "$DURATION" --label "$t" --json)
      if [[ $t == redis-* ]]; then res=$("$PEER" redis --addr "127.0.0.1:${PORT[$t]}" "${common[@]}")
      else res=$("$CLIENT" bench --addr "127.0.0.1:${PORT[$t]}" "${common[@]}"); fi
      echo "{\"repeat\":$r,\"cell\":\"$cell\",\"result\":$res}" >>"$OUT"
    done
  done
done
