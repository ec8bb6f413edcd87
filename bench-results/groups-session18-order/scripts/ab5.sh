#!/usr/bin/env bash
# grp18's paired run: flo-interval = the yield + order build, alt-interval = the yield build,
# alt2-interval = the order build without yield, base-interval = main e60605a, Redis everysec,
# interleaved per repeat, both orders, each run under the bench lock.
# usage: ab5.sh NAME   (writes bench-results/groups-session18-order/NAME-{fwd,rev}/)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1
for order in fwd rev; do
  if [[ $order == fwd ]]; then T="flo-interval alt-interval alt2-interval base-interval redis-everysec"; else T="redis-everysec base-interval alt2-interval alt-interval flo-interval"; fi
  uptime > $NAME-$order.load
  BENCH_FLO=/tmp/grp18/bin-ABfull/flo BENCH_FLO_ALT=/tmp/grp18/bin-B/flo BENCH_FLO_ALT2=/tmp/grp18/bin-A/flo \
    BENCH_OUT=bench-results/groups-session18-order/$NAME-$order BENCH_RATE=500 BENCH_CELLS=live BENCH_REPEATS=5 BENCH_DURATION=6 \
    BENCH_FLO_BASELINE=/work/wt/bin-main BENCH_TARGETS="$T" flock /work/wt/bench.lock scripts/bench_groups.sh > $NAME-$order.log 2>&1
  uptime >> $NAME-$order.load
done
