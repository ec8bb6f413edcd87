#!/usr/bin/env bash
# Side-by-side benchmark of flo and its peers on this machine, in one run (issue 7).
#
#   ci/bench.sh            # the whole matrix, about 5-6 minutes on 2 cores
#
# Knobs (environment): BENCH_DURATION seconds per produce run (default 3), BENCH_REPEATS
# (default 3, at least 3 for a median), BENCH_READ_COUNT events stored before a catch-up read
# (default 200000), BENCH_OUT output directory (default bench-results).
#
# It installs redis-server and nats-server from Debian if missing, starts its own instances on
# free loopback ports with data in a fresh temporary directory (whatever the Debian services do
# is irrelevant: they are neither used nor touched), runs every cell of the matrix for every
# target, repeating the whole matrix BENCH_REPEATS times so that repeats are interleaved in time,
# and stops every process it started by its PID. ci/bench_report.py then writes the medians
# (medians.jsonl), a chart (chart.svg) and the generated section of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-3}
REPEATS=${BENCH_REPEATS:-3}
READ_COUNT=${BENCH_READ_COUNT:-200000}
OUT=${BENCH_OUT:-bench-results}
SIZES=(100 1024)
CONNECTIONS=(1 4)
WINDOWS=(1 64)
STARTED_AT=$(date +%s)

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# --- Peers from Debian; the processes we start, stopped by PID on every exit ----------------
source ci/processes.sh
need_peer_servers

log "building the load generator and flo"
cargo build --release -p flo-bench --bin peer_bench >&2
cargo build --release --bin flo --bin flo-client >&2
PEER_BENCH=$ROOT/target/release/peer_bench

start_redis() { # name appendfsync -> sets the port in REDIS_PORT_<name>
    local name=$1 policy=$2 port dir
    port=$(free_port)
    dir=$WORK/$name
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly yes \
        --appendfsync "$policy" --protected-mode no --daemonize no --logfile "$dir/redis.log" &
    STARTED_PIDS+=($!)
    wait_for_port "$port"
    printf -v "REDIS_PORT_$name" '%s' "$port"
    log "redis-server ($policy) pid $! on 127.0.0.1:$port, data in $dir"
}

start_redis always always
start_redis everysec everysec

NATS_PORT=$(free_port)
mkdir -p "$WORK/nats"
nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" -l "$WORK/nats/nats.log" &
STARTED_PIDS+=($!)
wait_for_port "$NATS_PORT"
log "nats-server (JetStream, file storage) pid $! on 127.0.0.1:$NATS_PORT"

# --- HOOK(flo): flo with --fsync always and --fsync interval:1000, driven by flo-client bench --
# flo runs only when both binaries are built and `flo-client bench` exists. The server flags
# follow the seed README (`-d DIR -p PORT`); adjust FLO_SERVER_ARGS here if they change.
# `flo-client bench` is expected to accept the flags of clients/bench/src/bin/peer_bench.rs (--addr,
# --connections, --window, --size, --duration, --count, --rate, --label, --json, --read for a
# catch-up read of --count stored events, --consumers 1 for end-to-end latency) and to print
# flo_bench::BenchResult::to_json() (clients/bench).
FLO_BIN=$ROOT/target/release/flo
FLO_CLIENT=$ROOT/target/release/flo-client
FLO_TARGETS=()
if [[ -x $FLO_BIN && -x $FLO_CLIENT ]] && "$FLO_CLIENT" bench --help >/dev/null 2>&1; then
    for policy in always interval:1000; do
        name=flo-${policy%%:*}
        port=$(free_port)
        mkdir -p "$WORK/$name"
        FLO_SERVER_ARGS=(-d "$WORK/$name" -p "$port" --fsync "$policy")
        "$FLO_BIN" "${FLO_SERVER_ARGS[@]}" >"$WORK/$name.log" 2>&1 &
        STARTED_PIDS+=($!)
        wait_for_port "$port"
        printf -v "FLO_PORT_${name#flo-}" '%s' "$port"
        FLO_TARGETS+=("$name")
        log "flo (--fsync $policy) pid $! on 127.0.0.1:$port"
    done
else
    log "flo skipped: target/release/flo or a 'flo-client bench' subcommand is missing (flo: not yet measured)"
fi

# --- Machine facts and the disk's own fdatasync latency ------------------------------------
mkdir -p "$OUT"
python3 - "$OUT/machine.json" <<'PY'
import json, os, platform, subprocess, sys
model = "unknown"
with open("/proc/cpuinfo") as cpuinfo:
    for line in cpuinfo:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
def version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "missing"
facts = {
    "nproc": os.cpu_count(),
    "cpu_model": model,
    "kernel": platform.release(),
    "redis": version(["redis-server", "--version"]),
    "nats": version(["nats-server", "--version"]),
}
with open(sys.argv[1], "w") as out:
    json.dump(facts, out)
    out.write("\n")
PY
# The probe runs again before every repeat and at the end: other writers on a shared machine
# change fsync latency, and every fsync-bound figure with it.
FSYNC=$OUT/fsync.jsonl
probe_disk() {
    python3 ci/fsync_latency.py "$WORK" >>"$FSYNC"
    log "disk: $(tail -1 "$FSYNC")"
}
: >"$FSYNC"
log "machine: $(cat "$OUT/machine.json")"

# --- The matrix -----------------------------------------------------------------------------
RUNS=$OUT/runs.jsonl
: >"$RUNS"

produce() { # target size connections window
    local target=$1 common
    common=(--size "$2" --connections "$3" --window "$4" --duration "$DURATION" --label "$target" --json)
    case $target in
        redis-always) "$PEER_BENCH" redis --addr "127.0.0.1:$REDIS_PORT_always" "${common[@]}" ;;
        redis-everysec) "$PEER_BENCH" redis --addr "127.0.0.1:$REDIS_PORT_everysec" "${common[@]}" ;;
        nats-js-file) "$PEER_BENCH" nats --addr "127.0.0.1:$NATS_PORT" "${common[@]}" ;;
        # HOOK(flo): produce through flo-client bench.
        flo-always) "$FLO_CLIENT" bench --addr "127.0.0.1:$FLO_PORT_always" "${common[@]}" ;;
        flo-interval) "$FLO_CLIENT" bench --addr "127.0.0.1:$FLO_PORT_interval" "${common[@]}" ;;
    esac
}

catch_up_read() { # target size
    local target=$1 common
    common=(--size "$2" --connections 4 --window 64 --count "$READ_COUNT" --label "$target" --json)
    case $target in
        redis-everysec) "$PEER_BENCH" redis-read --addr "127.0.0.1:$REDIS_PORT_everysec" "${common[@]}" ;;
        # HOOK(flo): catch-up read through flo-client bench.
        flo-interval) "$FLO_CLIENT" bench --read --addr "127.0.0.1:$FLO_PORT_interval" "${common[@]}" ;;
    esac
}

# The window holds 100 ms of events at 10,000/s, so the cell stays open loop while an
# acknowledgement takes up to that (with 64, a mean over 6.4 ms, which a disk with 3-4 ms
# fdatasyncs reaches under `always`, left produces queued in the load generator: ci/bench_e2e.sh).
E2E_WINDOW=1024

end_to_end() { # target: 100 B events at 10,000/s from 1 connection, a consumer following
    local target=$1 common
    common=(--size 100 --connections 1 --window "$E2E_WINDOW" --rate 10000 --duration "$DURATION" --label "$target-e2e" --json)
    case $target in
        redis-always) "$PEER_BENCH" redis-e2e --addr "127.0.0.1:$REDIS_PORT_always" "${common[@]}" ;;
        redis-everysec) "$PEER_BENCH" redis-e2e --addr "127.0.0.1:$REDIS_PORT_everysec" "${common[@]}" ;;
        # HOOK(flo): end-to-end latency through flo-client bench with a tailing consumer.
        flo-always) "$FLO_CLIENT" bench --consumers 1 --addr "127.0.0.1:$FLO_PORT_always" "${common[@]}" ;;
        flo-interval) "$FLO_CLIENT" bench --consumers 1 --addr "127.0.0.1:$FLO_PORT_interval" "${common[@]}" ;;
    esac
}

PRODUCE_TARGETS=(redis-always redis-everysec nats-js-file "${FLO_TARGETS[@]}")
READ_TARGETS=(redis-everysec)
[[ " ${FLO_TARGETS[*]} " == *" flo-interval "* ]] && READ_TARGETS+=(flo-interval)

for repeat in $(seq "$REPEATS"); do
    log "repeat $repeat of $REPEATS"
    probe_disk
    for size in "${SIZES[@]}"; do
        for connections in "${CONNECTIONS[@]}"; do
            for window in "${WINDOWS[@]}"; do
                for target in "${PRODUCE_TARGETS[@]}"; do
                    produce "$target" "$size" "$connections" "$window" >>"$RUNS"
                done
            done
        done
        for target in "${READ_TARGETS[@]}"; do
            catch_up_read "$target" "$size" >>"$RUNS"
        done
    done
    for target in redis-always redis-everysec "${FLO_TARGETS[@]}"; do
        end_to_end "$target" >>"$RUNS"
    done
    log "$(wc -l <"$RUNS") runs so far"
done

probe_disk
ELAPSED=$(($(date +%s) - STARTED_AT))
log "matrix done in ${ELAPSED} s"
python3 ci/bench_report.py "$OUT" BENCHMARKS.md "$ELAPSED" "ci/bench.sh (BENCH_DURATION=$DURATION BENCH_REPEATS=$REPEATS BENCH_READ_COUNT=$READ_COUNT)"
log "wrote $OUT/medians.jsonl, $OUT/chart.svg and the generated section of BENCHMARKS.md"
