#!/usr/bin/env bash
# Tests the benchmark's peer drivers (clients/bench/src/redis.rs, clients/bench/src/nats.rs) against real
# redis-server and nats-server processes; cargo test covers their parsers with canned bytes.
#
# Proves: every XADD of a counted run is acknowledged and counted exactly once, at both window
# sizes and with several connections; XREAD from the start reads back exactly the stored events;
# a consumer following with XREAD BLOCK sees every event and measures its end-to-end latency;
# every JetStream publish gets its PubAck; a fixed-rate run is paced; a server that is not there
# is an error, not a hang; a consumer group shared by 3 members (XREADGROUP + XACK, a JetStream
# durable consumer with explicit acks) acks every event, live and draining a backlog, and ends
# with nothing pending (ci/bench_groups.sh); nats-server 2.10+ with `sync_interval: always` is
# what it claims to be (its /varz) and serves the group driver. Starts its own servers on free
# loopback ports with data in a temporary directory and stops them by PID. Takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# WORK, STARTED_PIDS (stopped by PID on exit), free_port, wait_for_port, need_peer_servers.
source ci/processes.sh
need_peer_servers
cargo build --release -p flo-bench --bin peer_bench
PEER_BENCH=target/release/peer_bench

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" --save "" --appendonly yes \
    --appendfsync always --daemonize no --logfile "$WORK/redis.log" &
STARTED_PIDS+=($!)
NATS_PORT=$(free_port)
nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" -l "$WORK/nats.log" &
STARTED_PIDS+=($!)
wait_for_port "$REDIS_PORT"
wait_for_port "$NATS_PORT"

failures=0
# expect_field JSON FIELD VALUE: the run's JSON must have FIELD equal to VALUE.
expect_field() {
    local got
    got=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2")
    if [[ $got != "$3" ]]; then
        echo "FAIL: $2 is $got, expected $3 in $1" >&2
        failures=$((failures + 1))
    fi
}

for args in "1 1 100" "4 64 1024" "3 7 0"; do
    read -r connections window size <<<"$args"
    for peer in redis nats; do
        port=$REDIS_PORT
        [[ $peer == nats ]] && port=$NATS_PORT
        json=$("$PEER_BENCH" "$peer" --addr "127.0.0.1:$port" --connections "$connections" \
            --window "$window" --size "$size" --count 3001 --json)
        expect_field "$json" events 3001
        expect_field "$json" bytes $((3001 * size))
        echo "ok: $peer $connections x $window, $size B: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_per_s"])' "$json") events/s"
    done
done

json=$("$PEER_BENCH" redis-read --addr "127.0.0.1:$REDIS_PORT" --connections 2 --window 32 \
    --size 200 --count 4321 --json)
expect_field "$json" kind read
expect_field "$json" events 4321
echo "ok: redis XREAD read back 4321 events"

json=$("$PEER_BENCH" redis-e2e --addr "127.0.0.1:$REDIS_PORT" --connections 2 --window 8 \
    --size 64 --count 2000 --rate 20000 --json)
expect_field "$json" events 2000
python3 -c 'import json, sys; e = json.loads(sys.argv[1]); sys.exit(0 if 0 < e["e2e_min_us"] <= e["e2e_p99_us"] < 10e6 else 1)' "$json" \
    || { echo "FAIL: no sane end-to-end latency: $json" >&2; failures=$((failures + 1)); }
echo "ok: a consumer following with XREAD BLOCK saw all 2000 events"

# 200 events at 2,000/s over 2 connections: each sends 100, 1 ms apart, the last 99 ms in.
json=$("$PEER_BENCH" redis --addr "127.0.0.1:$REDIS_PORT" --connections 2 --window 4 \
    --size 10 --count 200 --rate 2000 --json)
expect_field "$json" events 200
python3 -c 'import json, sys; e = json.loads(sys.argv[1])["elapsed_s"]; sys.exit(0 if e >= 0.099 else 1)' "$json" \
    || { echo "FAIL: fixed-rate run was not paced: $json" >&2; failures=$((failures + 1)); }
echo "ok: fixed rate is paced"

for peer in redis nats; do
    port=$REDIS_PORT
    [[ $peer == nats ]] && port=$NATS_PORT
    json=$("$PEER_BENCH" "$peer-members" --addr "127.0.0.1:$port" --members 3 --in-flight 16 \
        --connections 1 --window 16 --size 100 --count 1500 --rate 15000 --json)
    expect_field "$json" kind group
    expect_field "$json" events 1500
    python3 -c 'import json, sys; e = json.loads(sys.argv[1]); sys.exit(0 if 0 < e["e2e_min_us"] <= e["acked_min_us"] <= e["acked_p99_us"] < 10e6 else 1)' "$json" \
        || { echo "FAIL: no sane delivered/acked latency: $json" >&2; failures=$((failures + 1)); }
    json=$("$PEER_BENCH" "$peer-members" --addr "127.0.0.1:$port" --members 3 --drain \
        --connections 2 --window 32 --size 100 --count 3001 --json)
    expect_field "$json" kind group-drain
    expect_field "$json" events 3001
    echo "ok: $peer group of 3 members acked 1500 live and 3001 stored events"
done

# JetStream at the durability of flo always (ci/bench_groups.sh's nats-js-always): with
# `sync_interval: always` the server reports sync_always in its /varz (with the default 2m it
# does not), and the group driver acks every event against it, live and draining.
need_nats_sync
for sync in 2m always; do
    port=$(free_port)
    monitor=$(free_port)
    start_nats_sync "nats-sync-$sync" "$port" "$monitor" "$sync"
    wait_for_port "$port"
    wait_for_port "$monitor"
    want=false
    [[ $sync == always ]] && want=true
    got=$(nats_sync_always "$monitor")
    if [[ $got != "$want" ]]; then
        echo "FAIL: nats-server with sync_interval $sync reports sync_always $got" >&2
        failures=$((failures + 1))
    fi
done
json=$("$PEER_BENCH" nats-members --addr "127.0.0.1:$port" --members 3 --in-flight 16 \
    --connections 1 --window 16 --size 100 --count 300 --rate 500 --json)
expect_field "$json" events 300
json=$("$PEER_BENCH" nats-members --addr "127.0.0.1:$port" --members 3 --drain \
    --connections 2 --window 32 --size 100 --count 301 --json)
expect_field "$json" events 301
echo "ok: $("$NATS_SYNC_SERVER" --version) with sync_interval always: sync_always true, a group of 3 members acked 300 live and 301 stored events"

dead_port=$(free_port)
if "$PEER_BENCH" redis --addr "127.0.0.1:$dead_port" --count 10 2>"$WORK/dead.err"; then
    echo "FAIL: a run against a closed port succeeded" >&2
    failures=$((failures + 1))
else
    echo "ok: closed port is an error ($(cat "$WORK/dead.err"))"
fi

if ((failures > 0)); then
    echo "$failures peer driver checks failed" >&2
    exit 1
fi
echo "peer drivers: all checks passed"
