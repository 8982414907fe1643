# $1: 0 on erase. Like `apt remove`, erasing keeps the host's state in /var/lib/rollcall
# (credential, install id, spool): rpm has no purge, so delete it by hand for a clean slate.
systemctl daemon-reload >/dev/null 2>&1 || :
