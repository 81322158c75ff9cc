#!/bin/sh
# Entrypoint of greenlight's offline PostgreSQL image (Debian packages, no registry needed).
#
# It honours the official `postgres` image's environment contract -- POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# POSTGRES_HOST_AUTH_METHOD, PGDATA, /docker-entrypoint-initdb.d -- so testcontainers' PostgresContainer runs on it
# unchanged: it waits for `psql --host 127.0.0.1 -c 'select version();'` to answer from inside the container.
set -eu

if [ "${1:-postgres}" != "postgres" ]; then
    # `docker run IMAGE sh` and friends: run the command instead of the server, like the official image.
    exec "$@"
fi
if [ "$#" -gt 0 ]; then shift; fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != "trust" ]; then
    echo "Error: POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust, as for the official image)" >&2
    exit 1
fi

as_postgres() {
    # setpriv execs in place (no intermediate process), so the server is PID 1 and gets `docker stop`'s signal.
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
}

mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=""
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        # A file, not an argument or SQL: the password may hold any character and never shows in `ps`.
        pwfile=$(mktemp)
        printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
        chown postgres "$pwfile"
    fi
    # --no-sync and fsync=off: a throwaway test server; durability only costs start-up and CREATE DATABASE time.
    as_postgres initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} --no-sync \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD"
    rm -f "${pwfile:-/nonexistent}"
    # Clients come through Docker's port mapping, i.e. from outside the container's loopback.
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
    printf '%s\n' "listen_addresses = '*'" "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
        >>"$PGDATA/postgresql.conf"

    # A temporary server on the Unix socket only, so nobody connects before the database exists.
    as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" start
    if [ "$POSTGRES_DB" != "postgres" ]; then
        # psql variables quote the name, whatever it holds.
        echo 'CREATE DATABASE :"db";' |
            psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v db="$POSTGRES_DB" -q
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                echo "running $f"
                # shellcheck disable=SC1090  # the user's init scripts, sourced as the official image does
                . "$f"
                ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
            *) ;;
        esac
    done
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" "$@"
