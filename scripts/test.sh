#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, unit, integration, ui (trybuild)
# and doc tests. Works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# The Redis tests start their own redis-server and redis-sentinel processes (standalone,
# cluster, a master with a replica and three sentinels) on free ports: install them where
# missing.
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null \
    || ! command -v redis-sentinel >/dev/null; then
    step "installing redis-server and redis-sentinel"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        redis-server redis-tools redis-sentinel
fi

# tests/metrics_exposition.rs reads /metrics with the Prometheus client's own parser.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
    step "installing the Python prometheus_client (the metrics test's parser)"
    python3 -m pip install --quiet prometheus_client \
        || sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-prometheus-client
fi

# tests/browser.rs drives Debian's chromium (headless, through the DevTools protocol) on the
# example server's /demo, and runs ratelimit.js's unit tests with node.
if ! command -v chromium >/dev/null; then
    step "installing chromium (the browser test)"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! command -v node >/dev/null && ! command -v nodejs >/dev/null; then
    step "installing nodejs (ratelimit.js's unit tests)"
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
fi

# tests/prometheus.rs runs promtool on deploy/prometheus/ and a real Prometheus scraping the
# example server (Debian's prometheus package holds both).
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    step "installing prometheus and promtool (the dashboard and alerts test)"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "building the examples and binaries (tests run the example server and hungryclient)"
cargo build --workspace --examples --bins --all-features

step "unit, integration and ui tests"
cargo test --workspace --all-targets

step "doc tests"
cargo test --workspace --doc

# The runtime's optional parts are Cargo features. Without any, it builds, its own tests pass
# (including the compile errors that name a feature that is off), and its dependency tree holds
# neither the Redis client nor the file watcher; each feature builds alone, and so do all but
# each one.
step "ratelimit-runtime without default features, each feature alone, all but each one"
cargo clippy -p ratelimit-runtime --no-default-features --all-targets -- -D warnings
cargo test -p ratelimit-runtime --no-default-features --all-targets
cargo test -p ratelimit-runtime --no-default-features --doc
if cargo tree -p ratelimit-runtime --no-default-features -e normal --prefix none | grep -E '^(redis|notify|notify-debouncer-mini) '; then
    echo "ratelimit-runtime --no-default-features depends on the crates above" >&2
    exit 1
fi
features=(redis metrics overrides-file ietf-headers)
for feature in "${features[@]}"; do
    all_but_one=$(printf '%s\n' "${features[@]}" | grep -vx "$feature" | paste -sd, -)
    for set in "$feature" "$all_but_one"; do
        cargo clippy -p ratelimit-runtime --no-default-features --features "$set" --all-targets -- -D warnings
    done
done

step "API documentation (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ratelimit-runtime -p ratelimit-client --all-features

# Each crate builds from its own packaged form (versions pinned between them, nothing read from
# outside its directory). `--allow-dirty`: the script also runs on work not committed yet.
step "cargo package (every published crate builds from its tarball)"
cargo package --allow-dirty -p ratelimit-rate -p ratelimit-macros -p ratelimit-runtime -p ratelimit-client

step "all tests passed"
