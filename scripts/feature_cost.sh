#!/usr/bin/env bash
# What each Cargo feature of ratelimit-runtime costs a user: the crates of its dependency tree
# and the wall time of a clean dev build of the crate, each configuration built alone in an
# empty target directory of its own (so each pays for its whole tree, as a new user does).
# Prints a Markdown table; BENCHMARKS.md keeps the figures. Runs for some minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

configs=(
    "--no-default-features"
    "--no-default-features --features redis"
    "--no-default-features --features metrics"
    "--no-default-features --features overrides-file"
    "--no-default-features --features ietf-headers"
    ""
    "--all-features"
)
names=(
    "none (--no-default-features)"
    "redis only"
    "metrics only"
    "overrides-file only"
    "ietf-headers only"
    "default (redis, metrics)"
    "all four"
)

cargo fetch --quiet
echo "| features | crates | clean build |"
echo "|---|---:|---:|"
for i in "${!configs[@]}"; do
    # shellcheck disable=SC2086 # the flags are words
    crates=$(cargo tree -p ratelimit-runtime ${configs[$i]} -e normal --prefix none \
        | sed 's/ (\*)$//' | sort -u | wc -l)
    target=$(mktemp -d)
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    CARGO_TARGET_DIR="$target" cargo build --quiet -p ratelimit-runtime ${configs[$i]}
    end=$(date +%s.%N)
    rm -rf "$target"
    printf '| %s | %d | %.0f s |\n' "${names[$i]}" "$crates" "$(echo "$end - $start" | bc)"
done
