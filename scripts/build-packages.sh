#!/usr/bin/env bash
# Builds the .deb and .rpm packages of the agent and the collector (with the CLI, its
# completions and man page) from the workspace, into target/packages/.
#   ROLLCALL_PKG_VERSION=0.1.1 scripts/build-packages.sh   # another version, e.g. to test upgrades
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb:cargo-deb cargo-generate-rpm:cargo-generate-rpm; do
    bin=${tool%%:*} crate=${tool##*:}
    command -v "$bin" >/dev/null || cargo install --locked "$crate"
done

cargo build --release --locked -p rollcall-agent -p rollcall-collector
mkdir -p target/release/pkg target/packages
cli=target/release/rollcall
"$cli" completions bash >target/release/pkg/rollcall.bash
"$cli" completions zsh >target/release/pkg/rollcall.zsh
"$cli" completions fish >target/release/pkg/rollcall.fish
"$cli" manpage | gzip -9n >target/release/pkg/rollcall.1.gz

version=${ROLLCALL_PKG_VERSION:-}
for p in rollcall-agent rollcall-collector; do
    if [ -n "$version" ]; then
        cargo deb --no-build -p "$p" --deb-version "$version" -o target/packages/ >/dev/null
        cargo generate-rpm -p "${p#rollcall-}" -s "version = \"$version\"" -o target/packages/ >/dev/null
    else
        cargo deb --no-build -p "$p" -o target/packages/ >/dev/null
        cargo generate-rpm -p "${p#rollcall-}" -o target/packages/ >/dev/null
    fi
done
ls -1 target/packages/
