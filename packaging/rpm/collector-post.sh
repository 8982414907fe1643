# $1: 1 on install, 2 or more on upgrade.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl enable --now rollcall-collector.service >/dev/null 2>&1 || :
else
    systemctl try-restart rollcall-collector.service >/dev/null 2>&1 || :
fi
