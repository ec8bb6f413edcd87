#!/usr/bin/env bash
# Runs the Python client's tests (clients/python) against the release server binary.
# Assumes `cargo build --release` has run. Needs only python3 (3.11+), no packages.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is required for the Python client tests"; exit 1; }
export FLO_BIN="${FLO_BIN:-$PWD/target/release/flo}"
[ -x "$FLO_BIN" ] || { echo "no server binary at $FLO_BIN: run cargo build --release first"; exit 1; }
cd clients/python
# unittest prints its summary (Ran N tests ... OK / FAILED) and exits non-zero on failure.
exec python3 -m unittest -v test_flo_client
