#!/usr/bin/env bash
# Every check a submission must pass: formatting, lints, then all tests (unit, end-to-end
# against the BESClient simulator, CLI, and under a real systemd booted with systemd-nspawn).
# Needs root: tests mount a small tmpfs, boot a container, make network namespaces, and read
# /proc of other processes.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need mount || ! need dd || ! need kill || ! need readlink || ! need ip; then
    apt-get update -qq && apt-get install -y -qq util-linux coreutils procps iproute2
fi

# A bookworm root for the real-systemd tests (cached after the first run).
scripts/container-rootfs.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
