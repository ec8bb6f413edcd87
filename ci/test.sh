#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. README.md shows this command.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (install Rust with rustup)"; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The library as a user builds it: without the `testing` feature the tests turn on, so every
# public item must be documented (`missing_docs`) and nothing only tests use is public; without
# default features it builds without the benchmark crate; its docs show only the public surface.
cargo clippy --workspace -- -D warnings
cargo clippy --no-default-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib
# promtool (Debian package prometheus) checks a real scrape of the metrics endpoint in
# tests/metrics_e2e.rs; with FLO_REQUIRE_PROMTOOL set its absence fails the test. Where apt-get is
# not available (a developer machine), the test runs without the promtool check and says so.
if ! command -v promtool >/dev/null && command -v apt-get >/dev/null; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } >/dev/null \
        || echo "note: could not install prometheus (promtool); the metrics check runs without it"
fi
if command -v promtool >/dev/null; then export FLO_REQUIRE_PROMTOOL=1; fi
cargo test --release
# The benchmark crate (load runner, report, Redis and NATS parsers on canned bytes).
cargo test --release -p flo-bench
# The optional JSON codec of the typed client layer and its example.
cargo clippy --all-targets --features json -- -D warnings
cargo test --release --features json --lib client::
# The Python client written from protocol.md alone, against the release server binary that
# `cargo test --release` just built: the spec is good enough for a stranger.
bash ci/python-client.sh
# The Dockerfile's steps without docker: build, install to a prefix, start with the image's
# command, its healthcheck passes, stop by PID.
bash ci/dockerfile_steps.sh
# The benchmark's Redis and NATS drivers against real servers (installed with apt-get if missing).
ci/peer_drivers_test.sh
