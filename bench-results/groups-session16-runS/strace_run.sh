#!/bin/bash
# usage: strace_run.sh FLO_BIN OUTNAME [extra flo args]
set -u
FLO=$1; OUT=$2; shift 2
CLIENT=/work/wt/grp16/target/release/flo-client
D=$(mktemp -d /tmp/grp16/data.XXXX)
PORT=$((20000 + RANDOM % 20000))
$FLO -d $D -p $PORT --fsync always "$@" > $D.log 2>&1 &
SPID=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
chrt -a -f -p 20 $SPID >/dev/null
strace --seccomp-bpf -f -T -tt -e trace=fdatasync,fsync,pwrite64 -p $SPID -o /tmp/grp16/$OUT.strace &
TPID=$!
sleep 1
chrt -f 20 $CLIENT bench --addr 127.0.0.1:$PORT --in-flight 256 --size 100 --members 1 --connections 1 --window 64 --rate 500 --duration 4 --json > /tmp/grp16/$OUT.json
sleep 0.5
kill $TPID; wait $TPID 2>/dev/null
kill $SPID; wait $SPID
rm -rf $D
echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/grp16/$OUT.json
