#!/usr/bin/env bash
# client-side trace: the bench client's syscalls and the wakeups it causes. ctrace.sh T M OUT
set -euo pipefail
T=$1; M=$2; OUT=$3
W=$(mktemp -d /tmp/lat17/t.XXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
case $T in
  flo) ${FLO:-/work/wt/lat17/target/release/flo} -d $W -p $PORT --fsync interval:1000 ${FLO_ARGS:-} >$W/log 2>&1 & ;;
  base) /work/wt/bin-main/flo -d $W -p $PORT --fsync interval:1000 >$W/log 2>&1 & ;;
  feed) /tmp/lat17/feedfirst/flo -d $W -p $PORT --fsync interval:1000 >$W/log 2>&1 & ;;
  redis) redis-server --bind 127.0.0.1 --port $PORT --dir $W --save "" --appendonly yes --appendfsync everysec --protected-mode no --daemonize no --logfile $W/redis.log & ;;
esac
SPID=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
COMMON=(--addr 127.0.0.1:$PORT --in-flight 256 --size 100 --members $M --label $T --json --connections 1 --window 64 --rate ${RATE:-500} --duration ${DUR:-2})
if [[ $T == redis ]]; then CMD=(/work/wt/lat17/target/release/peer_bench redis-members "${COMMON[@]}"); else CMD=(${FLO_CLIENT:-/work/wt/lat17/target/release/flo-client} bench "${COMMON[@]}"); fi
perf record -q -o $OUT.data -e raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_waking -- "${CMD[@]}" > $OUT.json 2>/dev/null
kill $SPID; wait $SPID 2>/dev/null || true
rm -rf $W
perf script -i $OUT.data -F tid,cpu,time,event,trace 2>/dev/null > $OUT.txt
rm -f $OUT.data
python3 /tmp/lat17/cstep.py $OUT.txt $OUT.json $SPID
