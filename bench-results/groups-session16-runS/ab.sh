#!/bin/bash
# Interleaved A/B of flo `always` group-journal sync schedules (grp16), 1 member (or $MEMBERS), 500/s.
# Targets: i100 (main's schedule), i1000, idle, i0, and redis always; all under chrt -f 20.
set -u
REPEATS=${REPEATS:-5}; DURATION=${DURATION:-6}; MEMBERS=${MEMBERS:-1}; OUTF=$1
TARGETS=${TARGETS:-"i100 i1000 idle i0 redis"}
CLIENT=/work/wt/grp16/target/release/flo-client
PEER=/work/wt/grp16/target/release/peer_bench
W=$(mktemp -d /tmp/grp16/ab.XXXX)
declare -A PORT PID
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; wait; rm -rf $W' EXIT
for t in $TARGETS; do
  PORT[$t]=$((21000 + RANDOM % 20000)); mkdir -p $W/$t
  if [[ $t == redis ]]; then
    redis-server --bind 127.0.0.1 --port ${PORT[$t]} --dir $W/$t --save "" --appendonly yes --appendfsync always --protected-mode no --daemonize no --logfile $W/$t/redis.log &
  elif [[ $t == main ]]; then
    /work/wt/bin-main/flo -d $W/$t -p ${PORT[$t]} --fsync always > $W/$t.log 2>&1 &
  else
    /tmp/grp16/$t/flo -d $W/$t -p ${PORT[$t]} --fsync always > $W/$t.log 2>&1 &
  fi
  PID[$t]=$!; PIDS+=($!)
  for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/${PORT[$t]}) 2>/dev/null && break; sleep 0.1; done
  chrt -a -f -p 20 ${PID[$t]} >/dev/null
done
: > $OUTF
for r in $(seq $REPEATS); do
  for m in $MEMBERS; do
  for t in $TARGETS; do
    common=(--size 100 --members $m --label $t --json --connections 1 --window 64 --rate 500 --duration $DURATION --in-flight 256)
    if [[ $t == redis ]]; then res=$(chrt -f 20 $PEER redis-members --addr 127.0.0.1:${PORT[$t]} "${common[@]}")
    else res=$(chrt -f 20 $CLIENT bench --addr 127.0.0.1:${PORT[$t]} "${common[@]}"); fi
    echo "{\"repeat\":$r,\"target\":\"$t\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"result\":$res}" >> $OUTF
  done; done
  echo "repeat $r done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
grep -h EXPERIMENT $W/*.log | sort | uniq -c >&2
