#!/usr/bin/env bash
# Every check a submission must pass: formatting, lints, then all tests (unit, end-to-end
# against the BESClient simulator, CLI, fleets in network namespaces, BMC simulators, and
# the packages under a real systemd booted with systemd-nspawn). Installs what it needs
# (apt-get: iproute2, rpm, openipmi, freeipmi-tools, ipmitool, prometheus-alertmanager, chromium,
# chromium-driver, postgresql-15 (its server binaries: the tests run their own throwaway clusters as
# the postgres user), debootstrap; cargo install:
# cargo-deb, cargo-generate-rpm, cargo-deny). Needs root: tests mount a small tmpfs, boot a container,
# make network namespaces, bind UDP 623 and read /proc of other processes.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need mount || ! need dd || ! need kill || ! need readlink || ! need ip || ! need rpm \
    || ! need ipmi_sim || ! need rmcpping || ! need prometheus-alertmanager \
    || ! need chromium || ! need chromedriver || ! need setpriv \
    || ! test -x /usr/lib/postgresql/15/bin/initdb; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux coreutils procps iproute2 rpm \
        openipmi freeipmi-tools ipmitool prometheus-alertmanager chromium chromium-driver \
        postgresql-15
fi

# A bookworm root for the real-systemd tests (cached after the first run).
scripts/container-rootfs.sh

# The .deb and .rpm packages, and a second build with a higher version for the upgrade
# test (tests/tests/packages.rs installs them in the container).
scripts/build-packages.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ROLLCALL_PKG_VERSION="$version+upgrade1" scripts/build-packages.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Licenses, banned crates and sources of every dependency (deny.toml), offline.
command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
# Every platform's dependencies (cargo deny reads them all; a build fetches only this one's).
cargo fetch --locked
cargo deny --offline check licenses bans sources
cargo test --workspace
