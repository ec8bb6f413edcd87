#!/usr/bin/env bash
# grp18: the yield build against main where no consumer waits: issue 13's flood (server CPU per
# event, ci/cpu_per_event.sh) and the producer's ack (ci/bench_ab.sh, two interval cells),
# each under the bench lock. From the repository root.
set -euo pipefail
D=bench-results/groups-session18-order
uptime > $D/flood.load
OLD=/work/wt/bin-main/flo NEW=/tmp/grp18/bin-B/flo REPEATS=6 DURATION=3 flock /work/wt/bench.lock ci/cpu_per_event.sh > $D/cpu-per-event-4x64.txt 2>&1
uptime >> $D/flood.load
OLD=/work/wt/bin-main/flo NEW=/tmp/grp18/bin-B/flo REPEATS=5 DURATION=3 REDIS=0 CELLS="interval,100,4,64 interval,100,1,1" OUT=$D/ab-produce.jsonl \
  flock /work/wt/bench.lock ci/bench_ab.sh > $D/ab-produce.log 2>&1
uptime >> $D/flood.load
