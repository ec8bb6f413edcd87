#!/usr/bin/env bash
# grp18: traced runs (trace.sh) of main and the yield build, interleaved, ROUNDS times: does
# yielding delay the reactor's reads on a busy machine? (from bench-results/groups-session18-order)
set -euo pipefail
for r in $(seq ${1:-3}); do
  for v in main:/work/wt/bin-main/flo yield:/tmp/grp18/bin-B/flo; do
    n=${v%%:*}; b=${v#*:}
    flock /work/wt/bench.lock scripts/trace.sh flo tb-$n-$r $b
    uptime >> tb-$n-$r.pid
    mv tb-$n-$r.*.data /tmp/grp18/
  done
done
