#!/usr/bin/env bash
# A bounded soak test of the example server, outside the normal suite (a few minutes):
#
#   ./scripts/soak.sh                      # SOAK_SECONDS=180 of flood by default
#
# The release example server, in memory, on a free 127.0.0.1 port, gets from wrk
# (scripts/soak.lua) a flood in which every request is a key it has never seen: X-API-Key
# values on /tiered (hourly windows: those keys stay the whole run) and /data (sliding log), and
# X-Forwarded-For addresses on /rate-limited when the server trusts 127.0.0.1 as a proxy
# (RATELIMIT_TRUSTED_PROXIES=127.0.0.1/32; probed, skipped where the server predates it). More
# distinct keys than the store's cap of 1,000,000, so the cap is exercised. Beside it two hot
# clients at a steady rate (scripts/soak.py): one address on /rate-limited (300 per 30-s fixed
# window) and one API key on /data (10 per 10 s, sliding log). The server's resident size is
# sampled every second with its /metrics (keys held, evictions, decisions).
#
# It fails (exit 1) if the hot keys are not admitted exactly their limits, if the flood sees
# anything but 200s, if the resident size still grows over the last third of the flood by
# SOAK_LEVEL_PCT (5) percent of its peak or more, or if the peak passes SOAK_MAX_RSS_MB.
# Everything goes to target/soak/: samples.csv (every second), rss.csv (the same against keys
# seen), hot_fixed.csv and hot_log.csv (every hot request), wrk.txt, server.log, summary.txt.
#
# Settings: SOAK_SECONDS (flood duration, 180), SOAK_CONNECTIONS (wrk connections, 64),
# SOAK_THREADS (wrk threads, 1), SOAK_MAX_RSS_MB (256), SOAK_LEVEL_PCT (5), SOAK_ROUTES (the
# flood's routes, comma-separated among tiered, data, rate-limited; all three by default).
# The RSS bound: at the cap of 1,000,000 keys, the largest entry (the sliding log's 40-byte
# slot, at the table's lowest load after it grows, 5/16: 128 bytes a key) and its log's heap
# block (48 bytes) make 176 MB, plus the idle server's 7 MB; 256 MB leaves room for the
# fixed-window tables beside them and the allocator's slack.
# Installs wrk with apt-get where it is missing. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
SOAK_SECONDS="${SOAK_SECONDS:-180}"
SOAK_CONNECTIONS="${SOAK_CONNECTIONS:-64}"
SOAK_THREADS="${SOAK_THREADS:-1}"
SOAK_MAX_RSS_MB="${SOAK_MAX_RSS_MB:-256}"
SOAK_LEVEL_PCT="${SOAK_LEVEL_PCT:-5}"
LEAD=3   # seconds sampled before the flood (the start figures) and after it
target="${CARGO_TARGET_DIR:-target}"
out="$target/soak"

step() { printf '\n==> %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! [[ "$SOAK_SECONDS" =~ ^[0-9]+$ ]] || [ "$SOAK_SECONDS" -lt 30 ] || [ "$SOAK_SECONDS" -gt 1800 ]; then
    echo "SOAK_SECONDS=$SOAK_SECONDS: expected whole seconds from 30 to 1800" >&2
    exit 2
fi
if ! command -v wrk >/dev/null; then
    step "installing wrk"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
command -v python3 >/dev/null || { echo "python3 is needed (scripts/soak.py)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

step "cargo build --release --example server"
cargo build --release --example server
server_bin="$target/release/examples/server"

rm -rf "$out"
mkdir -p "$out"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

server_pid=""
observer_pid=""
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    # Only the processes this script started, by their pids.
    if [ -n "$observer_pid" ] && kill -0 "$observer_pid" 2>/dev/null; then
        kill "$observer_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

step "starting the example server on 127.0.0.1:$port"
RATELIMIT_TRUSTED_PROXIES=127.0.0.1/32 BIND="127.0.0.1:$port" RUST_LOG=warn \
    "$server_bin" >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/" || { echo "the server did not answer" >&2; exit 1; }

# Does the server take X-Forwarded-For from 127.0.0.1? Two addresses on /search (a per-address
# limit the soak does not otherwise use): each with a budget of its own if so.
remaining() {
    curl -fs -o /dev/null -D - -H "X-Forwarded-For: $1" "http://127.0.0.1:$port/search" \
        | tr -d '\r' | awk -F': ' 'tolower($1) == "x-ratelimit-remaining" { print $2 }'
}
if [ "$(remaining 198.51.100.1)" = 9 ] && [ "$(remaining 198.51.100.2)" = 9 ]; then
    xff=1
    echo "the server trusts 127.0.0.1: distinct X-Forwarded-For addresses on /rate-limited too"
    routes="${SOAK_ROUTES:-tiered,data,rate-limited}"
else
    xff=0
    echo "the server ignores X-Forwarded-For from 127.0.0.1 (no RATELIMIT_TRUSTED_PROXIES):"
    echo "distinct keys on /tiered and /data only; the fixed-window hot key is 127.0.0.1"
    routes="${SOAK_ROUTES:-tiered,data}"
fi
IFS=, read -r -a route_list <<<"$routes"
for route in "${route_list[@]}"; do
    case "$route" in
        tiered | data) ;;
        rate-limited) [ "$xff" = 1 ] || { echo "SOAK_ROUTES: rate-limited needs a server that trusts 127.0.0.1" >&2; exit 2; } ;;
        *) echo "SOAK_ROUTES=$routes: expected a comma-separated list of tiered, data, rate-limited" >&2; exit 2 ;;
    esac
done
echo "flood routes: $routes"

step "soak: ${SOAK_SECONDS} s of flood (wrk, $SOAK_THREADS thread(s), $SOAK_CONNECTIONS connections), hot keys, memory sampled"
observer_args=(observe --port "$port" --pid "$server_pid" --seconds "$((SOAK_SECONDS + 2 * LEAD))" --out "$out")
[ "$xff" = 1 ] && observer_args+=(--xff)
python3 scripts/soak.py "${observer_args[@]}" &
observer_pid=$!
sleep "$LEAD"
kill -0 "$observer_pid" 2>/dev/null || { echo "the observer (scripts/soak.py) stopped" >&2; exit 1; }
echo "flood_start=$(date +%s.%N)" >"$out/phases.txt"
SOAK_ROUTES="$routes" SOAK_WRK_THREADS="$SOAK_THREADS" SOAK_WRK_RESULT="$out/wrk.txt" \
    wrk -t "$SOAK_THREADS" -c "$SOAK_CONNECTIONS" -d "${SOAK_SECONDS}s" --timeout 5s \
    -s scripts/soak.lua "http://127.0.0.1:$port/" | tee "$out/wrk-output.txt"
echo "flood_end=$(date +%s.%N)" >>"$out/phases.txt"
wait "$observer_pid" || { echo "the observer (scripts/soak.py) failed" >&2; exit 1; }
observer_pid=""
kill -0 "$server_pid" 2>/dev/null || { echo "the server exited during the soak" >&2; exit 1; }

step "summary (also $out/summary.txt)"
status=0
python3 scripts/soak.py report --out "$out" --max-rss-mb "$SOAK_MAX_RSS_MB" \
    --level-pct "$SOAK_LEVEL_PCT" || status=$?
exit "$status"
