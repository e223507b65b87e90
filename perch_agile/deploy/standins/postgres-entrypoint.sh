#!/bin/sh
# As the official postgres image's entrypoint, for what docker-compose.yml uses: on the
# first start initialise PGDATA with POSTGRES_USER / POSTGRES_PASSWORD as the superuser
# and create POSTGRES_DB; accept password logins (scram-sha-256) from other hosts; run
# the server as the postgres user with the command's arguments. Scripts in
# /docker-entrypoint-initdb.d/*.sh run once, after the database is created.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user=${POSTGRES_USER:-postgres}
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "${POSTGRES_DB:-$user}" != postgres ]; then
        createdb --username="$user" "${POSTGRES_DB:-$user}"
    fi
    for script in /docker-entrypoint-initdb.d/*.sh; do
        [ -e "$script" ] && POSTGRES_USER="$user" sh "$script"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$@"
