# $1: 0 on erase. The database, certificates and tokens in /var/lib/rollcall-collector are
# kept: a collector's history is not thrown away by a package removal; delete it by hand.
systemctl daemon-reload >/dev/null 2>&1 || :
