#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, unit, integration, ui (trybuild)
# and doc tests. Works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "unit, integration and ui tests"
cargo test --workspace --all-targets

step "doc tests"
cargo test --workspace --doc

step "all tests passed"
