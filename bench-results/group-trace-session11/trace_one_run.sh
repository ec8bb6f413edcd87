#!/usr/bin/env bash
# One 2 s group run (500/s, 100 B, interval / everysec) recorded by `perf record -a` with
# system calls and scheduler events (BENCHMARKS.md, run N, session 11). Then:
#   perf script -i OUT.data -F pid,tid,cpu,time,event,trace | awk '$1 ~ "^(SERVER|CLIENT)/"' > OUT.txt
#   python3 stages.py OUT.txt SERVER_PID CLIENT_PID PRODUCER_TID MEMBER_TID
# (the thread ids: `perf script -F pid,tid,comm`; the producer's sends are the produces).
# usage: trace_one_run.sh TARGET(flo|base|redis) MEMBERS OUT [RT=1: chrt -f 20]
# BASE_FLO: the baseline build's flo for TARGET base (default /work/wt/bin-main/flo).
set -euo pipefail
T=$1; M=$2; OUT=$3; RT=${4:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/flo-trace.XXXX)
PORT=$((20000 + RANDOM % 20000))
case $T in
  flo) $ROOT/target/release/flo -d $W -p $PORT --fsync interval:1000 >$W/log 2>&1 & ;;
  base) ${BASE_FLO:-/work/wt/bin-main/flo} -d $W -p $PORT --fsync interval:1000 >$W/log 2>&1 & ;;
  redis) redis-server --bind 127.0.0.1 --port $PORT --dir $W --save "" --appendonly yes --appendfsync everysec --protected-mode no --daemonize no --logfile $W/redis.log & ;;
esac
SPID=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
CH=()
if [[ $RT == 1 ]]; then chrt -a -f -p 20 $SPID >/dev/null; CH=(chrt -f 20); fi
COMMON=(--addr 127.0.0.1:$PORT --in-flight 256 --size 100 --members $M --label $T --json --connections 1 --window 64 --rate 500 --duration 2)
if [[ $T == redis ]]; then CMD=("${CH[@]}" $ROOT/target/release/peer_bench redis-members "${COMMON[@]}"); else CMD=("${CH[@]}" $ROOT/target/release/flo-client bench "${COMMON[@]}"); fi
perf record -q -a -o $OUT.data -e raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,sched:sched_wakeup,sched:sched_waking -- "${CMD[@]}" > $OUT.json 2>/dev/null
kill $SPID; wait $SPID 2>/dev/null || true
echo "server pid $SPID" > $OUT.pid
rm -rf $W
cat $OUT.json
