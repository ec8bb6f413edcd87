#!/usr/bin/env bash
# Installs the Python client package (clients/python) into a fresh virtualenv with pip, then runs
# its tests with that virtualenv's Python against the release server binary, from a directory
# outside the source tree so that the installed package is the one tested.
# Assumes `cargo build --release` has run. Needs python3 (3.11+) with venv and pip; the build
# backend (setuptools) comes from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "python3 is required for the Python client tests"; exit 1; }
export FLO_BIN="${FLO_BIN:-$PWD/target/release/flo}"
[ -x "$FLO_BIN" ] || { echo "no server binary at $FLO_BIN: run cargo build --release first"; exit 1; }
repo="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repo/clients/python"
cd "$work"
export FLO_CLIENT_INSTALLED=1
# unittest prints its summary (Ran N tests ... OK / FAILED) and exits non-zero on failure.
exec "$work/venv/bin/python" -m unittest discover -v -s "$repo/clients/python/tests" -t "$repo/clients/python/tests"
