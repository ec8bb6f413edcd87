#!/bin/bash
# Server CPU per produced event, old and new binary interleaved, a fresh server per run
# (BENCHMARKS.md, issue 13 session 11):
#   OLD=/path/to/flo-before [NEW=target/release/flo] [REPEATS=6] [DURATION=3] [CONNECTIONS=4] \
#     [WINDOW=64] [SIZE=100] [FSYNC=interval:1000] [PERF=stat|record] ci/cpu_per_event.sh
# Each run starts the binary on a free loopback port with a fresh directory, runs `flo-client
# bench` against it and prints one line: events, events/s, utime + stime of the server process
# over the run per event (and each part), the reactor thread's voluntary and involuntary
# context switches, the ack p99.9 and the load average. OLD runs first in odd repeats, NEW in
# even ones. PERF=stat adds the server's system calls of the run (`perf stat`), PERF=record a
# `perf record -g -e cpu-clock` profile (perf.<label>.<repeat>.data in the current directory).
# Unlike ci/bench_ab.sh, whose servers live through every repeat, no run inherits a longer log,
# a filled cache or the last run's dirty pages. Stops what it started by PID.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:?set OLD to the flo binary to compare against}
NEW=${NEW:-$ROOT/target/release/flo}
CLIENT=$ROOT/target/release/flo-client
WORK=$(mktemp -d)
SERVER=
PERF_PID=
cleanup() {
  [[ -n $PERF_PID ]] && kill -INT "$PERF_PID" 2>/dev/null
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# utime stime of a process, or voluntary and involuntary context switches of a thread.
cpu_of() { awk '{print $14, $15}' "/proc/$1/stat"; }
switches_of() { awk '/ctxt_switches/ {printf "%s ", $2}' "$1/status"; }

run_one() { # label binary repeat
  local label=$1 binary=$2 repeat=$3 port reactor before after res
  port=$(free_port)
  rm -rf "$WORK/d"
  "$binary" -d "$WORK/d" -p "$port" --fsync "${FSYNC:-interval:1000}" >"$WORK/log" 2>&1 &
  SERVER=$!
  wait_port "$port" || { echo "$label: server did not start" >&2; return 1; }
  reactor=$(grep -l flo-reactor /proc/"$SERVER"/task/*/comm | head -1 | xargs dirname)
  case ${PERF:-} in
    stat) perf stat -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_pwrite64,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_fdatasync,raw_syscalls:sys_enter' \
            -p "$SERVER" -o "$WORK/perf" >/dev/null 2>&1 & PERF_PID=$! ;;
    record) perf record -F 1999 -g -e cpu-clock -o "perf.$label.$repeat.data" -p "$SERVER" \
            >/dev/null 2>&1 & PERF_PID=$! ;;
  esac
  before="$(cpu_of "$SERVER") $(switches_of "$reactor")"
  res=$("$CLIENT" bench --addr "127.0.0.1:$port" --connections "${CONNECTIONS:-4}" \
    --window "${WINDOW:-64}" --size "${SIZE:-100}" --duration "${DURATION:-3}" --json)
  after="$(cpu_of "$SERVER") $(switches_of "$reactor")"
  if [[ -n $PERF_PID ]]; then kill -INT "$PERF_PID"; wait "$PERF_PID"; PERF_PID=; fi
  kill "$SERVER"; wait "$SERVER" 2>/dev/null; SERVER=
  python3 - "$label" "$repeat" "$before" "$after" "$res" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, os, sys
label, repeat, before, after, res, load = sys.argv[1:]
b, a = [list(map(int, x.split())) for x in (before, after)]
d = [y - x for x, y in zip(b, a)]
r = json.loads(res)
events, us = r["events"], 1e6 / os.sysconf("SC_CLK_TCK")
print(f"{label} repeat {repeat}: {events} events, {events / r['elapsed_s'] / 1e3:.0f}k/s, "
      f"CPU per event {(d[0] + d[1]) * us / events:.3f} us (user {d[0] * us / events:.3f}, "
      f"system {d[1] * us / events:.3f}), reactor switches {d[2]} voluntary {d[3]} involuntary, "
      f"ack p99.9 {r['latency_p999_us'] / 1000:.1f} ms, load {load}")
PY
  [[ ${PERF:-} == stat ]] && grep -E 'sys_enter' "$WORK/perf"
  return 0
}

for repeat in $(seq "${REPEATS:-6}"); do
  if (( repeat % 2 )); then order=("old $OLD" "new $NEW"); else order=("new $NEW" "old $OLD"); fi
  for entry in "${order[@]}"; do
    # shellcheck disable=SC2086 # "label binary" is split on purpose
    run_one $entry "$repeat"
  done
done
