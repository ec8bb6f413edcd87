#!/usr/bin/env bash
# Checks the Dockerfile without docker (not available in CI) by running its own steps in a
# temporary directory: the build stage's RUN commands (with /out as a prefix in the temporary
# directory and this checkout as /src), then the image's CMD with the data volume in the
# temporary directory, then its HEALTHCHECK command until it passes; the server is stopped by
# its PID with SIGTERM and must exit 0. The address is changed to 127.0.0.1 and a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -9 "$server_pid"; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "dockerfile_steps: $*" >&2; exit 1; }

# The runtime stage must not run as root.
user="$(awk '/^USER /{u=$2} END{print u}' Dockerfile)"
[ -n "$user" ] && [ "$user" != "root" ] && [ "$user" != "0" ] || fail "the image runs as root"
grep -q '^VOLUME /var/lib/flo' Dockerfile || fail "no data volume"

# Build stage: every RUN of the stage named build, joined across its continuation lines.
build_steps="$(awk '
    /^FROM .* AS build/ {in_build=1; next}
    /^FROM / {in_build=0}
    in_build && /^RUN / {cmd=substr($0, 5); cont=/\\$/; if (!cont) print cmd; next}
    in_build && cont {cmd=cmd "\n" $0; cont=/\\$/; if (!cont) print cmd}
' Dockerfile)"
[ -n "$build_steps" ] || fail "no RUN steps in the build stage"
prefix="$work/out"
echo "dockerfile_steps: build stage, installing to $prefix"
(cd "$repo" && bash -euo pipefail -c "${build_steps//\/out/$prefix}")
for file in usr/local/bin/flo usr/local/bin/flo-client usr/share/man/man1/flo.1 \
    usr/share/bash-completion/completions/flo; do
    [ -s "$prefix/$file" ] || fail "the build stage did not install $file"
done

# The CMD and HEALTHCHECK exec forms, as JSON arrays.
json_array() { sed -n "s/^$1.*\(\[.*\]\)\s*$/\1/p" Dockerfile | head -1; }
cmd_json="$(json_array 'CMD')"
health_json="$(sed -n '/^HEALTHCHECK/,/CMD/p' Dockerfile | sed -n 's/.*CMD \(\[.*\]\).*/\1/p')"
[ -n "$cmd_json" ] && [ -n "$health_json" ] || fail "no CMD or HEALTHCHECK exec form"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$work/data"
localize() {
    python3 -c '
import json, sys
args = json.loads(sys.argv[1])
swap = {"/var/lib/flo": sys.argv[2], "0.0.0.0": "127.0.0.1", "3000": sys.argv[3],
        "127.0.0.1:3000": "127.0.0.1:" + sys.argv[3]}
print("\0".join(swap.get(a, a) for a in args), end="")' "$1" "$work/data" "$port"
}
mapfile -d '' cmd < <(localize "$cmd_json")
mapfile -d '' health < <(localize "$health_json")
export PATH="$prefix/usr/local/bin:$PATH"
# The CMD exactly as the image runs it (on 0.0.0.0), checked with --check-config, which refuses
# what a start refuses without binding (a non-loopback address without authentication: the run
# below, moved to 127.0.0.1, cannot see that).
mapfile -d '' image_cmd < <(python3 -c '
import json, sys
print("\0".join(json.loads(sys.argv[1])), end="")' "$cmd_json")
"${image_cmd[@]}" --check-config >/dev/null 2>"$work/check.err" \
    || { cat "$work/check.err" >&2; fail "the image's CMD is refused: ${image_cmd[*]}"; }
echo "dockerfile_steps: starting ${cmd[*]}"
"${cmd[@]}" 2>"$work/server.log" &
server_pid=$!
healthy=""
for _ in $(seq 1 50); do
    if "${health[@]}" >/dev/null 2>"$work/health.err"; then healthy=yes; break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server exited"; }
    sleep 0.1
done
[ -n "$healthy" ] || { cat "$work/health.err" "$work/server.log" >&2; fail "the healthcheck never passed"; }
echo "dockerfile_steps: healthcheck passed: ${health[*]}"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" -eq 0 ] || { cat "$work/server.log" >&2; fail "the server exited with $status after SIGTERM"; }
grep -q "shutting down" "$work/server.log" || fail "no graceful shutdown in the log"
echo "dockerfile_steps: 1 passed, 0 failed"
