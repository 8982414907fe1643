#!/usr/bin/env bash
# Every check a submission must pass: formatting, lints, then all tests (unit, end-to-end
# against the BESClient simulator, CLI). Needs root: one test mounts a small tmpfs to fill a
# disk, and the agent reads /proc of processes it did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need mount || ! need dd || ! need kill || ! need readlink; then
    apt-get update -qq && apt-get install -y -qq util-linux coreutils procps
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
