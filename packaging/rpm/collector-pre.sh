# Its own system user, before the files and the unit arrive.
getent passwd rollcall-collector >/dev/null || \
    useradd --system --user-group --home-dir /var/lib/rollcall-collector --no-create-home \
        --shell /sbin/nologin --comment "rollcall collector" rollcall-collector
