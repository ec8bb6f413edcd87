#!/usr/bin/env bash
# One group run (1 member, 500/s, 100 B, 6 s) recorded by `perf record -a` with system calls and
# scheduler events, for the write order / member wake-up study (BENCHMARKS.md, grp18, session 18).
# usage: trace.sh TARGET(flo|base|redis) OUT [FLO_BIN]   (hold /work/wt/bench.lock around it)
# then: (for d in OUT.sys.data OUT.sched.data; do perf script -i $d -F pid,tid,cpu,time,event,trace; done) > OUT.txt; order.py OUT.txt SERVER_PID CLIENT_PID
# FLO_ARGS: extra server arguments (e.g. --reactor-spin-us 0)
set -euo pipefail
T=$1; OUT=$2; FLO=${3:-/work/wt/bin-main/flo}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
W=$(mktemp -d /tmp/flo-order.XXXX)
PORT=$((20000 + RANDOM % 20000))
case $T in
  flo|base) $FLO -d $W -p $PORT --fsync interval:1000 ${FLO_ARGS:-} >$W/log 2>&1 & ;;
  redis) redis-server --bind 127.0.0.1 --port $PORT --dir $W --save "" --appendonly yes --appendfsync everysec --protected-mode no --daemonize no --logfile $W/redis.log & ;;
esac
SPID=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
COMMON=(--addr 127.0.0.1:$PORT --in-flight 256 --size 100 --members 1 --label $T --json --connections 1 --window 64 --rate 500 --duration ${DUR:-6})
if [[ $T == redis ]]; then CMD=($ROOT/target/release/peer_bench redis-members "${COMMON[@]}"); else CMD=($ROOT/target/release/flo-client bench "${COMMON[@]}"); fi
"${CMD[@]}" > $OUT.json &
CPID=$!
sleep 0.5
# the system calls of the two processes only (a system-wide record of every call is itself
# a load on the other vCPU), the scheduler's events system-wide
perf record -q -p $SPID,$CPID -o $OUT.sys.data -e raw_syscalls:sys_enter,raw_syscalls:sys_exit 2>/dev/null & P1=$!
perf record -q -a -o $OUT.sched.data -e sched:sched_switch,sched:sched_wakeup,sched:sched_waking 2>/dev/null & P2=$!
sleep 4; kill -INT $P1 $P2; wait $P1 $P2 || true
wait $CPID
kill $SPID; wait $SPID 2>/dev/null || true
echo "$SPID $CPID" > $OUT.pid
rm -rf $W
