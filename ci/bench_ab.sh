#!/bin/bash
# A/B comparison of two flo binaries with Redis in the same run (BENCHMARKS.md, issue 13):
#   OLD=/path/to/flo-before [NEW=target/release/flo] [REPEATS=3] [DURATION=3] [CELLS=...] \
#       [OUT=ab.jsonl] [INTERVAL=interval:1000] [FLO_ARGS="--segment-size 4M"] [SYNC=1] \
#       [OLD_ARGS=...] [NEW_ARGS=...] [REDIS=0] ci/bench_ab.sh
# OLD_ARGS / NEW_ARGS are given to that binary only, after FLO_ARGS: one binary against itself
# with a setting on and off, e.g. OLD=target/release/flo OLD_ARGS=--no-namespace-index.
# Starts flo OLD and NEW with --fsync $INTERVAL (the "interval" cells; `never` too) and always
# (both with $FLO_ARGS), Redis everysec and always, each
# on a free loopback port with a fresh directory, then runs every cell (policy,size,conns,window)
# for OLD, NEW and the Redis of the same policy, interleaved (OLD first in odd repeats, NEW
# first in even ones; SYNC=1 runs `sync` before each run), REPEATS times, appending one JSON
# line per run to OUT. Stops what it started by PID. Needs target/release/{flo-client,peer_bench}.
# A cell `read,SIZE,COUNT` stores COUNT events and reads them back from the start on one
# connection (flo-client bench --read against peer_bench redis-read, on the interval servers).
# A produce cell may have a fifth field, `policy,size,conns,window,NAMESPACES`: flo's events
# are spread round robin over that many namespaces (flo-client bench --namespaces; Redis still
# writes one stream); without it, one namespace as before. REDIS=0 leaves Redis out of the run.
# Each line carries the server's CPU time over the run (`server_cpu_ticks`, utime + stime from
# /proc/PID/stat, in clock ticks of `getconf CLK_TCK`), so CPU per event can be compared.
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
declare -A PORT SERVER_PID
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
start_flo() { # name binary policy
  local port; port=$(free_port); mkdir -p "$WORK/$1"
  # shellcheck disable=SC2086 # FLO_ARGS is split on purpose
  local own=${NEW_ARGS:-}; [[ $1 == old-* ]] && own=${OLD_ARGS:-}
  # shellcheck disable=SC2086 # FLO_ARGS and the binary's own arguments are split on purpose
  "$2" -d "$WORK/$1" -p "$port" --fsync "$3" ${FLO_ARGS:-} $own >"$WORK/$1.log" 2>&1 & PIDS+=($!); SERVER_PID[$1]=$!; wait_port "$port"; PORT[$1]=$port
  echo "$1 pid $! port $port" >&2
}
start_redis() { local port; port=$(free_port); mkdir -p "$WORK/$1"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$1" --save "" --appendonly yes --appendfsync "$2" --protected-mode no --daemonize no --logfile "$WORK/$1/redis.log" & PIDS+=($!); SERVER_PID[$1]=$!; wait_port "$port"; PORT[$1]=$port; }
start_flo old-interval "$OLD" "${INTERVAL:-interval:1000}"
start_flo new-interval "$NEW" "${INTERVAL:-interval:1000}"
start_flo old-always "$OLD" always
start_flo new-always "$NEW" always
if [[ ${REDIS:-1} != 0 ]]; then
  start_redis redis-everysec everysec
  start_redis redis-always always
fi
CELLS=${CELLS:-"interval,1024,1,64 interval,1024,4,64 interval,100,4,64 interval,100,1,1 always,100,4,64 always,1024,4,64 always,100,64,16"}
for r in $(seq "$REPEATS"); do
  for cell in $CELLS; do
    IFS=, read -r policy size conns window namespaces <<<"$cell"
    if [[ $policy == always ]]; then peer=redis-always; else peer=redis-everysec; fi
    server_policy=$policy; [[ $policy == read ]] && server_policy=interval
    # The order of the two flo binaries alternates by repeat: a run leaves dirty pages that
    # the kernel writes back during the next one (under `never`, a few hundred MB), which
    # slowed whichever binary always ran second.
    if (( r % 2 )); then order=(old-$server_policy new-$server_policy)
    else order=(new-$server_policy old-$server_policy); fi
    [[ ${REDIS:-1} != 0 ]] && order+=("$peer")
    for t in "${order[@]}"; do
      # SYNC=1: write back every dirty page before each run, so no run pays for the last.
      [[ ${SYNC:-0} == 1 ]] && sync
      if [[ $policy == read ]]; then
        # `conns` is the event count of a read cell.
        common=(--size "$size" --count "$conns" --label "$t" --json)
        redis_mode=redis-read; flo_mode=(--read)
      else
        common=(--size "$size" --connections "$conns" --window "$window" --duration "$DURATION" --label "$t" --json)
        redis_mode=redis; flo_mode=()
        [[ -n ${namespaces:-} ]] && flo_mode=(--namespaces "$namespaces")
      fi
      before=$(cpu_ticks "${SERVER_PID[$t]}")
      if [[ $t == redis-* ]]; then res=$("$PEER" "$redis_mode" --addr "127.0.0.1:${PORT[$t]}" "${common[@]}")
      else res=$("$CLIENT" bench "${flo_mode[@]}" --addr "127.0.0.1:${PORT[$t]}" "${common[@]}"); fi
      ticks=$(( $(cpu_ticks "${SERVER_PID[$t]}") - before ))
      echo "{\"repeat\":$r,\"cell\":\"$cell\",\"server_cpu_ticks\":$ticks,\"result\":$res}" >>"$OUT"
    done
  done
done
