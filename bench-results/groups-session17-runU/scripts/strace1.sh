#!/usr/bin/env bash
# strace -c -f the server (flo interval or redis everysec) during one 1-member 500/s 2 s run
set -euo pipefail
kind=$1; out=$2; members=${3:-1}
W=$(mktemp -d /tmp/lat17/s.XXXX); port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
case $kind in
  flo) ${FLO:-/work/wt/lat17/target/release/flo} -d $W -p $port --fsync interval:1000 > $W/log 2>&1 & ;;
  redis) redis-server --bind 127.0.0.1 --port $port --dir $W --save "" --appendonly yes --appendfsync everysec --protected-mode no --daemonize no --logfile $W/redis.log & ;;
esac
SP=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sleep 0.3
strace -c -f -o $out -p $SP &
ST=$!
sleep 0.5
case $kind in
  flo) /work/wt/lat17/target/release/flo-client bench --addr 127.0.0.1:$port --size 100 --members $members --json --connections 1 --window 64 --rate 500 --duration 2 --in-flight 256 > $out.json;;
  redis) /work/wt/lat17/target/release/peer_bench redis-members --addr 127.0.0.1:$port --size 100 --members $members --json --connections 1 --window 64 --rate 500 --duration 2 --in-flight 256 > $out.json;;
esac
sleep 0.2
kill -INT $ST; wait $ST || true
kill $SP; wait $SP || true
rm -rf $W
