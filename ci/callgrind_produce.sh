#!/bin/bash
# Instructions per produced event, deterministic on a loaded machine (BENCHMARKS.md, issue 13
# session 10): [FSYNC=interval:1000] [NAMESPACES=1] [FLO_ARGS=...] ci/callgrind_produce.sh
# FLO_BINARY OUT_PREFIX [COUNT=100000]
# NAMESPACES spreads the events round robin over that many namespaces (`flo-client bench
# --namespaces`) and FLO_ARGS are more server flags (e.g. `--segment-size 4M`, so segments are
# sealed and their `.nsx` built during the run: BENCHMARKS.md, issue 14, session 14).
# Starts FLO_BINARY (--fsync $FSYNC) under `valgrind --tool=callgrind` on a free loopback
# port with a fresh directory, produces COUNT events of 100 B with `flo-client bench
# --connections 4 --window 64`, stops it with SIGTERM (callgrind writes OUT_PREFIX.cg.out when
# the process exits) and prints the total instructions per event. Read the functions with
# `callgrind_annotate OUT_PREFIX.cg.out` (add --inclusive=yes for the callers' totals). The
# counts are user space only (the kernel's send and pwrite are not in them) and depend only on
# the code and the turn structure, not on the machine's load. Needs valgrind.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$1; OUT=$2; COUNT=${3:-100000}
WORK=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$OUT.cg.out" "$BIN" -d "$WORK/d" -p "$port" \
  --fsync "${FSYNC:-interval:1000}" ${FLO_ARGS:-} >"$WORK/log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$ROOT/target/release/flo-client" bench --addr "127.0.0.1:$port" --connections 4 --window 64 \
  --size 100 --count "$COUNT" --namespaces "${NAMESPACES:-1}" --timeout 60s --json >"$OUT.bench.json"
kill -TERM "$PID"; wait "$PID"
total=$(callgrind_annotate "$OUT.cg.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$OUT: $total instructions for $COUNT events, $((total / COUNT)) per event"
