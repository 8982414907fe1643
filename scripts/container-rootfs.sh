#!/usr/bin/env bash
# A Debian bookworm root with systemd, for booting with systemd-nspawn in tests.
# Cached: built once (about 40 s) into $ROLLCALL_ROOTFS, reused after.
set -euo pipefail
ROOTFS=${ROLLCALL_ROOTFS:-/var/cache/rollcall/bookworm}

if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null || ! command -v nsenter >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container util-linux >/dev/null
fi
if [ -x "$ROOTFS/lib/systemd/systemd" ]; then
    exit 0
fi
mkdir -p "$(dirname "$ROOTFS")"
tmp="$ROOTFS.tmp.$$"
rm -rf "$tmp"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm "$tmp" http://deb.debian.org/debian >/dev/null
mv "$tmp" "$ROOTFS"
echo "container rootfs ready in $ROOTFS"
