#!/usr/bin/env bash
# server task-clock per acked event, main vs this build, flo interval, 1 member, 500/s, 6 s; pairs interleaved
set -euo pipefail
OUT=$1; PAIRS=${2:-3}
: > $OUT
for i in $(seq $PAIRS); do
 for T in base new; do
  W=$(mktemp -d /tmp/lat17/cpu.XXXX); PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [[ $T == base ]]; then B=/work/wt/bin-main/flo; else B=/work/wt/lat17/target/release/flo; fi
  $B -d $W -p $PORT --fsync interval:1000 > $W/log 2>&1 & SP=$!
  for k in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  perf stat -x, -e task-clock -p $SP -o $W/stat &
  PS=$!
  res=$(/work/wt/lat17/target/release/flo-client bench --addr 127.0.0.1:$PORT --in-flight 256 --size 100 --members 1 --json --connections 1 --window 64 --rate 500 --duration 6)
  kill -INT $PS; wait $PS || true
  ms=$(grep task-clock $W/stat | cut -d, -f1)
  echo "{\"pair\":$i,\"target\":\"$T\",\"task_clock_ms\":$ms,\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"acked_p50_us\":$(echo $res | python3 -c 'import json,sys; x=json.load(sys.stdin); print(x["acked_p50_us"])'),\"events\":$(echo $res | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')}" >> $OUT
  kill $SP; wait $SP 2>/dev/null || true; rm -rf $W
 done
done
cat $OUT
