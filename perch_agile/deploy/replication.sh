#!/bin/sh
# Run once by the postgres image when it initialises the database (mounted into
# /docker-entrypoint-initdb.d): lets the standby service (docker-compose.yml, profile
# "standby") stream the WAL with the database user's password.
set -eu
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
