#!/bin/bash
# Which of flo's system calls are slow during the interval group cell (1 member, 500/s)?
set -u
cd /work/main
W=$(mktemp -d); OUT=/work/wt/notes/tail17; mkdir -p $OUT
port=47991
target/release/flo -d $W/d -p $port --fsync interval:1000 > $W/flo.log 2>&1 & FPID=$!
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
B=(target/release/flo-client bench --addr 127.0.0.1:$port --in-flight 256 --size 100 --members 1 --connections 1 --window 64 --rate 500 --duration 6 --json)
for r in 1 2; do
  "${B[@]}" --label plain > $OUT/plain$r.json
  perf trace -p $FPID --duration 0.08 -o $OUT/ptrace$r.txt & TP=$!
  sleep 0.5
  "${B[@]}" --label traced > $OUT/traced$r.json
  kill -INT $TP; wait $TP
done
kill $FPID; wait $FPID; rm -rf $W
for f in $OUT/*.json; do python3 -c "import json,sys; r=json.load(open('$f')); print('$f', 'delivered p50/p99', r.get('e2e_p50_us'), r.get('e2e_p99_us'), 'acked p50/p99', r['acked_p50_us'], r['acked_p99_us'])"; done
for f in $OUT/ptrace*.txt; do echo "== $f"; wc -l < $f; awk '{for(i=1;i<=NF;i++) if($i ~ /^[a-z_0-9]+\(/){split($i,a,"("); print a[1]}}' $f | sort | uniq -c | sort -rn | head; done
