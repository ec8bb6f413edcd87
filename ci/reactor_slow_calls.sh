#!/bin/bash
# The reactor thread's system calls over 1 ms during one `flo-client bench` run, grouped by call
# and by the file they were on (BENCHMARKS.md, "Issue 13 (session 13)", the seal):
#   BIN=/path/to/flo [CLIENT=target/release/flo-client] [DURATION=3] [FSYNC=interval:1000] \
#     ci/reactor_slow_calls.sh LABEL
# Starts BIN on a free loopback port with a fresh directory, traces it with
# `perf trace --duration 1` (low overhead: only slow calls are printed), runs the bench at
# 4 connections x 64 in flight, 100 B, and prints the ack p99.9, the load and, per call and file
# kind, the count, the count over 2 ms, the sum and the maximum. epoll_wait (idle) is left out.
# Stops what it started by PID.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:?set BIN to the flo binary}
CLIENT=${CLIENT:-$ROOT/target/release/flo-client}
LABEL=${1:-run}
WORK=$(mktemp -d)
SERVER=
TRACE=
cleanup() {
  [[ -n $TRACE ]] && kill -INT "$TRACE" 2>/dev/null
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" -d "$WORK/d" -p "$port" --fsync "${FSYNC:-interval:1000}" >"$WORK/log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
reactor=
for _ in $(seq 100); do
  reactor=$(grep -l flo-reactor /proc/"$SERVER"/task/*/comm 2>/dev/null | head -1 | xargs -r dirname | xargs -r basename)
  [[ -n $reactor ]] && break
  sleep 0.1
done
perf trace -p "$SERVER" --duration 1 -o "$WORK/trace" >/dev/null 2>&1 &
TRACE=$!
sleep 0.5
res=$("$CLIENT" bench --addr "127.0.0.1:$port" --connections 4 --window 64 --size 100 \
  --duration "${DURATION:-3}" --json)
kill -INT "$TRACE"; wait "$TRACE"; TRACE=
python3 - "$LABEL" "$reactor" "$WORK/trace" "$res" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import collections, json, re, sys
label, tid, path, res, load = sys.argv[1:]
r = json.loads(res)
print(f"{label}: {r['events']} events, ack p99.9 {r['latency_p999_us'] / 1000:.1f} ms, load {load}")
agg = collections.defaultdict(lambda: [0, 0, 0.0, 0.0])
for line in open(path):
    m = re.search(r'\(\s*([\d.]+) ms\): (\S+)/(\d+) (\w+)\((.*)', line)
    if not m or m.group(3) != tid or m.group(4) == 'epoll_wait':
        continue
    ms, call, rest = float(m.group(1)), m.group(4), m.group(5)
    f = re.search(r'fd: \d+<([^>]*)>', rest)
    kind = ''
    if f:
        name = f.group(1).rsplit('/', 1)[-1]
        if name.startswith('socket'):
            kind = 'socket'
        elif re.fullmatch(r'\d{20}\.log', name):
            kind = 'segment'
        elif '.' in name:
            kind = name
        else:
            kind = 'directory'
    a = agg[(call, kind)]
    a[0] += 1; a[1] += ms >= 2; a[2] += ms; a[3] = max(a[3], ms)
for (call, kind), (n, over, total, mx) in sorted(agg.items(), key=lambda x: -x[1][2]):
    print(f"  {call:10} {kind:16} n={n:3} over2ms={over:3} sum={total:7.1f}ms max={mx:6.1f}ms")
PY
