#!/usr/bin/env bash
# grp18: traced runs (trace.sh) of main, the yield build and the yield + order build, interleaved,
# then order.py on each. usage: traces.sh ROUNDS   (from bench-results/groups-session18-order)
set -euo pipefail
for r in $(seq ${1:-2}); do
  for v in main:/work/wt/bin-main/flo yield:/tmp/grp18/bin-B/flo order:/tmp/grp18/bin-ABfull/flo; do
    n=${v%%:*}; b=${v#*:}
    flock /work/wt/bench.lock scripts/trace.sh flo tr-$n-$r $b
    uptime >> tr-$n-$r.pid
    mv tr-$n-$r.*.data /tmp/grp18/
  done
done
