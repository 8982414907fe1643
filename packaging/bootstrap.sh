#!/bin/sh
# rollcall bootstrap: what a provisioning job runs on each host.
#
#   bootstrap.sh --package ./rollcall-agent_0.1.0-1_amd64.deb \
#       --url https://rollcall.internal:8443 --ca /path/to/ca.pem \
#       --secret-file /path/to/enroll.secret \
#       --label env=prod --label region=us-south --label zone=dal10 --label role=worker
#
# Several collectors sharing a database: --url once for each (ROLLCALL_URL: separated by
# commas); the agent reports to one at a time and moves on when one fails.
# Every option may come from the environment instead: ROLLCALL_PACKAGE, ROLLCALL_URL,
# ROLLCALL_CA, ROLLCALL_ENROLL_SECRET (the secret itself) or ROLLCALL_ENROLL_SECRET_FILE,
# ROLLCALL_LABELS ("env=prod,region=us-south"), ROLLCALL_NAME, ROLLCALL_INTERVAL.
# --package is a .deb or .rpm file, or a package name for apt-get/dnf/yum.
#
# Installs the agent, writes its config (a block at the end of /etc/rollcall/agent.toml),
# the collector's CA and the enrollment secret, starts it, waits until it has enrolled, and
# prints one line. Idempotent: a re-run with the same inputs changes nothing. On failure it
# says why and puts back what it changed (a package it installed is purged; files it
# replaced are restored). Exit 0 done, 1 failed (host as it was), 2 bad arguments.
set -u

ETC=/etc/rollcall
CONF=$ETC/agent.toml
STATE=/var/lib/rollcall
UNIT=rollcall-agent.service
BEGIN='# >>> written by rollcall bootstrap.sh; re-run it to change this block'
END='# <<< end of rollcall bootstrap block'

package=${ROLLCALL_PACKAGE:-}
urls=$(printf '%s' "${ROLLCALL_URL:-}" | tr ',' ' ')
ca=${ROLLCALL_CA:-}
secret=${ROLLCALL_ENROLL_SECRET:-}
secret_file=${ROLLCALL_ENROLL_SECRET_FILE:-}
labels=$(printf '%s' "${ROLLCALL_LABELS:-}" | tr ',' ' ')
name=${ROLLCALL_NAME:-}
interval=${ROLLCALL_INTERVAL:-}
timeout=${ROLLCALL_ENROLL_TIMEOUT:-60}
host=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)

usage() {
    echo "rollcall bootstrap: $1" >&2
    echo "usage: bootstrap.sh --package FILE|NAME --url https://HOST:PORT [--url ...] --ca FILE (--secret-file FILE | ROLLCALL_ENROLL_SECRET) [--label KEY=VALUE]... [--name NAME] [--interval 60s]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage "$1 needs a value"
    case $1 in
        --package) package=$2 ;;
        --url) cli_urls="${cli_urls:-} $2" ;;
        --ca) ca=$2 ;;
        --secret-file) secret_file=$2 ;;
        --label) labels="$labels $2" ;;
        --name) name=$2 ;;
        --interval) interval=$2 ;;
        *) usage "unknown option $1" ;;
    esac
    shift 2
done

[ -n "$package" ] || usage "no package: --package FILE|NAME or ROLLCALL_PACKAGE"
[ -n "${cli_urls:-}" ] && urls=$cli_urls
set -f
set -- $urls
set +f
[ $# -gt 0 ] || usage "no collector URL: --url or ROLLCALL_URL"
url_toml=
for u in "$@"; do
    case $u in
        https://?*) ;;
        *) usage "collector URL $u must start with https:// (the agent speaks TLS only)" ;;
    esac
    url_toml="${url_toml:+$url_toml, }\"$u\""
done
[ $# -gt 1 ] && url_toml="[$url_toml]"
url=$(echo $urls | sed 's/ /, /g')
[ -n "$ca" ] || usage "no CA: --ca FILE (the collector's ca.pem) or ROLLCALL_CA"
[ -r "$ca" ] || usage "cannot read the CA file $ca"
grep -q "BEGIN CERTIFICATE" "$ca" || usage "$ca holds no PEM certificate; give the collector's ca.pem"
if [ -z "$secret" ] && [ -n "$secret_file" ]; then
    [ -r "$secret_file" ] || usage "cannot read the enrollment secret file $secret_file"
    secret=$(tr -d ' \n\r\t' <"$secret_file")
fi
[ -n "$secret" ] || usage "no enrollment secret: --secret-file FILE, ROLLCALL_ENROLL_SECRET or ROLLCALL_ENROLL_SECRET_FILE"
label_toml=""
for kv in $labels; do
    k=${kv%%=*} v=${kv#*=}
    case $kv in *=*) ;; *) usage "label $kv is not KEY=VALUE" ;; esac
    printf '%s' "$k" | grep -Eq '^[a-z][a-z0-9_]*$' || usage "label key $k: use lowercase letters, digits and _"
    printf '%s' "$v" | grep -Eq '^[A-Za-z0-9._:/-]+$' || usage "label $k value $v: use letters, digits and . _ : / -"
    label_toml="$label_toml${label_toml:+, }$k = \"$v\""
done
[ "$(id -u)" -eq 0 ] || usage "run as root"

# What was here before, to put back on failure.
backup=$(mktemp -d /tmp/rollcall-bootstrap.XXXXXX) || exit 1
trap 'rm -rf "$backup"' EXIT
for f in agent.toml ca.pem enroll.secret; do
    [ -e "$ETC/$f" ] && cp -p "$ETC/$f" "$backup/$f"
done
installed_before=""
changes=""

fail() {
    reason=$1
    for f in agent.toml ca.pem enroll.secret; do
        if [ -e "$backup/$f" ]; then
            cp -p "$backup/$f" "$ETC/$f"
        elif [ -e "$ETC/$f" ] && [ "$f" != agent.toml ]; then
            rm -f "$ETC/$f"
        fi
    done
    [ -e "$backup/credential" ] && [ ! -e "$STATE/credential" ] && cp -p "$backup/credential" "$STATE/credential"
    if [ -z "$installed_before" ] && installed_version >/dev/null; then
        remove_package >/dev/null 2>&1
    elif [ -n "$changes" ]; then
        systemctl try-restart "$UNIT" >/dev/null 2>&1
    fi
    echo "rollcall bootstrap FAILED on $host: $reason; host left as it was" >&2
    exit 1
}

# --- the package ---
kind=name
case $package in
    *.deb) kind=deb ;;
    *.rpm) kind=rpm ;;
esac
installed_version() {
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${db:Status-Status} ${Version}\n' rollcall-agent 2>/dev/null \
            | awk '$1 == "installed" { print $2; found = 1 } END { exit !found }'
    else
        rpm -q --qf '%{VERSION}-%{RELEASE}\n' rollcall-agent 2>/dev/null
    fi
}
remove_package() {
    if command -v dpkg >/dev/null 2>&1; then dpkg --purge rollcall-agent; else rpm -e rollcall-agent; fi
}
installed_before=$(installed_version || true)
case $kind in
    deb)
        [ -r "$package" ] || usage "cannot read the package $package"
        want=$(dpkg-deb -f "$package" Version) || usage "$package is not a .deb"
        ;;
    rpm)
        [ -r "$package" ] || usage "cannot read the package $package"
        want=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$package") || usage "$package is not an .rpm"
        ;;
    name) want="" ;;
esac
if [ -n "$installed_before" ] && { [ -z "$want" ] || [ "$want" = "$installed_before" ]; }; then
    pkg_note="rollcall-agent $installed_before already installed"
else
    out=$(
        case $kind in
            deb) DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$package" ;;
            rpm) rpm -U --replacepkgs "$package" ;;
            name)
                if command -v apt-get >/dev/null 2>&1; then
                    DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold "$package"
                elif command -v dnf >/dev/null 2>&1; then
                    dnf install -y "$package"
                else
                    yum install -y "$package"
                fi
                ;;
        esac 2>&1
    ) || fail "installing $package failed: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
    now=$(installed_version) || fail "installing $package left rollcall-agent not installed"
    pkg_note="rollcall-agent ${installed_before:+$installed_before -> }$now installed"
    changes="$changes package"
fi

# --- the files ---
mkdir -p "$ETC"
put() { # put FILE MODE < content: replace only when different
    tmp="$1.bootstrap.$$"
    cat >"$tmp" && chmod "$2" "$tmp" || { rm -f "$tmp"; fail "cannot write $1"; }
    if [ -e "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$1" || fail "cannot write $1"
    return 0
}
put "$ETC/ca.pem" 0644 <"$ca" && changes="$changes ca"
put "$ETC/enroll.secret" 0600 <<EOF_SECRET && changes="$changes secret"
$secret
EOF_SECRET

[ -e "$CONF" ] || fail "$CONF is missing after installing the package; reinstall it"
new="$CONF.bootstrap.$$"
{
    sed "/^$BEGIN\$/,/^$END\$/d" "$CONF" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    echo
    echo "$BEGIN"
    echo "[host]"
    [ -n "$name" ] && echo "name = \"$name\""
    echo "labels = { $label_toml }"
    echo
    echo "[collector]"
    echo "url = $url_toml"
    echo "ca_file = \"$ETC/ca.pem\""
    echo "enroll_secret_file = \"$ETC/enroll.secret\""
    [ -n "$interval" ] && echo "interval = \"$interval\""
    echo "$END"
} >"$new" || fail "cannot write $new"
chmod 0644 "$new"
if cmp -s "$new" "$CONF"; then
    rm -f "$new"
else
    if ! check=$(rollcall-agent check-config --config "$new" 2>&1); then
        rm -f "$new"
        fail "the config would be invalid: $check"
    fi
    mv -f "$new" "$CONF" || fail "cannot write $CONF"
    changes="$changes config"
fi

# --- running and enrolled ---
systemctl enable "$UNIT" >/dev/null 2>&1 || fail "systemctl enable $UNIT failed"
case $changes in
    *config* | *ca* | *secret*)
        # Enroll again under what was just written, so that "enrolled" below is true of it.
        [ -e "$STATE/credential" ] && cp -p "$STATE/credential" "$backup/credential"
        rm -f "$STATE/credential"
        ;;
esac
started=$(date +%s)
if [ -n "$changes" ] || ! systemctl is-active --quiet "$UNIT"; then
    systemctl restart "$UNIT" 2>/dev/null || fail "$UNIT did not start: $(journalctl -u "$UNIT" -n 3 -o cat 2>/dev/null | tr '\n' ' ')"
fi
waited=0
while [ ! -s "$STATE/credential" ]; do
    if [ "$waited" -ge "$timeout" ]; then
        said=$(journalctl -u "$UNIT" -o cat --since "@$started" 2>/dev/null | grep -i -e collector -e enroll | tail -n 1)
        fail "the agent did not enroll with $url within ${timeout}s${said:+ (it says: $said)}"
    fi
    sleep 1
    waited=$((waited + 1))
done
systemctl is-active --quiet "$UNIT" || fail "$UNIT is not running"
echo "rollcall bootstrap ok on $host: $pkg_note; ${changes:+changed:$changes}${changes:-nothing to change}; enrolled with $url; agent running"
exit 0
