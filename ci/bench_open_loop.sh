#!/bin/bash
# Open-loop produce under `--fsync always` against Redis `appendfsync always` (BENCHMARKS.md,
# issue 13 session 6): [NEW=target/release/flo] [REPEATS=3] [DURATION=5] [CELLS=...] \
#     ci/bench_open_loop.sh
# Each cell is CONNECTIONS,RATE: CONNECTIONS producers with a window of 1, at RATE events/s
# over all of them (0: closed loop, as fast as acknowledged), 100 B events; latency runs from
# when each event was due. flo and Redis run each cell in turn (interleaved), REPEATS times;
# each repeat starts with the disk's own fdatasync latency (ci/fsync_latency.py). For flo the
# script reads its metrics endpoint around each run: fdatasyncs, their time, turns and their
# time, to show how much of the reactor's time is spent outside fdatasync. Prints one line per
# run; stops what it started by PID. Needs target/release/{flo-client,peer_bench} and curl.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${NEW:-$ROOT/target/release/flo}
CLIENT=$ROOT/target/release/flo-client
PEER=$ROOT/target/release/peer_bench
# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port.
source "$ROOT/ci/processes.sh"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
flo_port=$(free_port); metrics_port=$(free_port); mkdir -p "$WORK/flo"
"$NEW" -d "$WORK/flo" -p "$flo_port" --fsync always --metrics-addr "127.0.0.1:$metrics_port" >"$WORK/flo.log" 2>&1 &
STARTED_PIDS+=($!); FLO_PID=$!; wait_for_port "$flo_port"
redis_port=$(free_port); mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$WORK/redis" --save "" --appendonly yes --appendfsync always --protected-mode no --daemonize no --logfile "$WORK/redis/redis.log" &
STARTED_PIDS+=($!); REDIS_PID=$!; wait_for_port "$redis_port"
# fdatasyncs, their seconds, turns, their seconds.
metrics() { curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^flo_fsyncs_total/{f=$2} /^flo_fsync_duration_seconds_sum/{s=$2} /^flo_turn_duration_seconds_count/{t=$2} /^flo_turn_duration_seconds_sum/{ts=$2} END{print f, s, t, ts}'; }
report() { # repeat target cell ticks metrics-before metrics-after json
  python3 -c '
import json, sys
repeat, target, cell, ticks, before, after, result = sys.argv[1:]
j = json.loads(result)
before = [float(x) for x in before.split()]
after = [float(x) for x in after.split()]
fsyncs, fsync_s, turns, turn_s = (a - b for a, b in zip(after, before))
events, elapsed = j["events"], j["elapsed_s"]
line = "%s %s %s events/s %.0f ack p50 %.0f p99 %.0f p99.9 %.0f us, server CPU %.2f us/event" % (
    repeat, target, cell, j["events_per_s"], j["latency_p50_us"], j["latency_p99_us"],
    j["latency_p999_us"], int(ticks) * 1e4 / max(events, 1))
if fsyncs > 0:
    line += ", %d fdatasyncs (%.1f events each, mean %.0f us), fsync busy %.0f%%, %d turns, turn busy %.0f%%" % (
        fsyncs, events / fsyncs, fsync_s / fsyncs * 1e6, fsync_s / elapsed * 100, turns, turn_s / elapsed * 100)
print(line)' "$@"
}
CELLS=${CELLS:-"64,0 64,4000 64,10000 256,10000 256,30000"}
for r in $(seq "${REPEATS:-3}"); do
  python3 "$ROOT/ci/fsync_latency.py" "$WORK" 200 | python3 -c "import json, sys; j = json.load(sys.stdin); print('$r disk fdatasync p50 %.0f us p99 %.0f us, load %.1f' % (j['p50_us'], j['p99_us'], j['loadavg_1min']))"
  for cell in $CELLS; do
    IFS=, read -r conns rate <<<"$cell"
    rate_args=(); [[ $rate != 0 ]] && rate_args=(--rate "$rate")
    common=(--connections "$conns" --window 1 --size 100 --duration "${DURATION:-5}" "${rate_args[@]}" --json)
    before=$(metrics); ticks=$(cpu_ticks "$FLO_PID")
    res=$("$CLIENT" bench --addr "127.0.0.1:$flo_port" "${common[@]}")
    ticks=$(( $(cpu_ticks "$FLO_PID") - ticks )); after=$(metrics)
    report "$r" flo "${conns}x1@$rate" "$ticks" "$before" "$after" "$res"
    ticks=$(cpu_ticks "$REDIS_PID")
    res=$("$PEER" redis --addr "127.0.0.1:$redis_port" "${common[@]}")
    ticks=$(( $(cpu_ticks "$REDIS_PID") - ticks ))
    report "$r" redis "${conns}x1@$rate" "$ticks" "0 0 0 0" "0 0 0 0" "$res"
  done
done
uptime
