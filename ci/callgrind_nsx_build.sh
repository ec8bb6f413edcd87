#!/bin/bash
# Instructions a record of one `.nsx` build (`SegmentNames::write_to`, the `flo-nsx` thread's
# work at a seal), deterministic on a loaded machine (BENCHMARKS.md, issue 14, "Index build at
# seal"): ci/callgrind_nsx_build.sh RECORDS NAMESPACES [OUT_PREFIX=/tmp/nsx_build]
# Runs examples/nsx_build (build it first: cargo build --release --example nsx_build) under
# `valgrind --tool=callgrind` with collection on only inside `write_to`, for one build of a
# segment of RECORDS records named round robin over NAMESPACES names (0: every name distinct)
# as `flo-client bench --namespaces N` names them, and prints the instructions a record. The
# counts are user space only (the file's write system calls are not in them). Needs valgrind.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=$1; NAMESPACES=$2; OUT=${3:-/tmp/nsx_build}
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$OUT.cg.out" \
  --toggle-collect='flo::storage::namespace::SegmentNames::write_to' \
  "$ROOT/target/release/examples/nsx_build" "$RECORDS" 1 "$NAMESPACES" >/dev/null 2>"$OUT.log"
total=$(callgrind_annotate "$OUT.cg.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$RECORDS records, $NAMESPACES namespaces: $total instructions, $((total / RECORDS)) a record"
