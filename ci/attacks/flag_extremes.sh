#!/bin/bash
# Attack: every size, count and duration flag at 0, 1 and near or past u64::MAX. Each start is
# bounded (2 s, then SIGTERM); prints the exit code, whether it panicked and its last line.
# rc=124 means the server started and ran until the probe stopped it.
# usage: flag_extremes.sh   (FLO_BIN overrides target/release/flo)
BIN=${FLO_BIN:-$(dirname "$0")/../../target/release/flo}
probe() {
  local flag=$1; shift
  for v in "$@"; do
    local d; d=$(mktemp -d /tmp/flag-extremes.XXXX)
    timeout -s TERM 2 "$BIN" -d "$d/data" -p 0 "$flag" "$v" > /dev/null 2> "$d/err"
    local rc=$?
    echo "$flag $v -> rc=$rc panics=$(grep -c panicked "$d/err"): $(grep -v listening "$d/err" | tail -1 | cut -c1-160)"
    rm -rf "$d"
  done
}
for f in --max-cache-memory --max-events --max-bytes --segment-size --max-output-buffer \
         --max-connection-memory --max-clients-memory --order-buffer-size --max-metrics-request; do
  probe $f 0 1 18446744073709551615 18446744073709551616
done
for f in --frame-timeout --handshake-timeout --idle-timeout --linger-timeout --shutdown-timeout \
         --max-age --catch-up-timeout --replication-timeout --order-stall-timeout \
         --dial-backoff-initial --dial-backoff-max --connect-timeout --metrics-timeout; do
  probe $f 0s 1ms 365d 18446744073709551615ms
done
for f in --max-connections --max-auth-failures --max-purge-rules --max-purge-glob-bytes \
         --max-purged-namespaces --actor-id --min-replicas --peer-credit-window \
         --reactor-slice-us --reactor-spin-us --reactor-spin-per-second-ms --max-metrics-connections; do
  probe $f 0 1 4294967295 18446744073709551615
done
