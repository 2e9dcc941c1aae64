#!/bin/sh
# The official postgres image's start-up, in short: on an empty PGDATA, initdb (UTF8, a password for
# POSTGRES_USER, password authentication over TCP), create POSTGRES_DB, run the files of
# /docker-entrypoint-initdb.d; then run the server, listening on all addresses. Arguments are
# passed to the server (e.g. -c max_connections=200).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    # UTF8 whatever the container's locale: ad and campaign names are any Unicode text.
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$password_file" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # Initialisation on the local socket only: nothing connects over the network before it is done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$POSTGRES_DB" != postgres ]; then
        createdb -U "$POSTGRES_USER" -O "$POSTGRES_USER" "$POSTGRES_DB"
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
        *.sql) psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$file" ;;
        *.sh) . "$file" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
