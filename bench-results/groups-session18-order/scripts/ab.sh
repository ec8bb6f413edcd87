#!/usr/bin/env bash
# grp18's A/B chain (BENCHMARKS.md, grp18 session 18): each variant's flo as flo-interval against
# main's binary (base-interval) and Redis everysec, both orders, each run under the bench lock.
# usage: ab.sh NAME FLO_DIR   (writes bench-results/groups-session18-order/NAME-{fwd,rev}/)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=$1; DIR=$2
for order in fwd rev; do
  if [[ $order == fwd ]]; then T="flo-interval base-interval redis-everysec"; else T="redis-everysec base-interval flo-interval"; fi
  uptime > $NAME-$order.load
  BENCH_FLO=$DIR/flo BENCH_OUT=bench-results/groups-session18-order/$NAME-$order BENCH_RATE=500 BENCH_CELLS=live BENCH_REPEATS=5 BENCH_DURATION=6 \
    BENCH_FLO_BASELINE=/work/wt/bin-main BENCH_TARGETS="$T" flock /work/wt/bench.lock scripts/bench_groups.sh > $NAME-$order.log 2>&1
  uptime >> $NAME-$order.load
done
