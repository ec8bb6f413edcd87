# Sourced (not run) by the scripts that start their own servers: ci/bench.sh,
# ci/bench_replicas.sh, ci/peer_drivers_test.sh, ci/bench_open_loop.sh. It gives them
# - WORK, a fresh temporary directory, removed on exit;
# - STARTED_PIDS, to which a script adds the PID of every process it starts: each is stopped by
#   its PID on exit (never by name), then waited for;
# - free_port: prints a free TCP port on 127.0.0.1;
# - wait_for_port PORT: waits (at most 10 s) until something accepts connections on
#   127.0.0.1:PORT, and fails after that;
# - need_peer_servers: installs redis-server and nats-server from Debian if either is missing.
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
