#!/bin/sh
# Entrypoint of greenlight's offline MariaDB image (Debian packages, no registry needed).
#
# It honours the official `mysql`/`mariadb` images' environment contract -- MYSQL_ROOT_PASSWORD (or
# MARIADB_ROOT_PASSWORD), MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD,
# /docker-entrypoint-initdb.d -- and, like them, initialises through a temporary server before starting the real
# one. Each server logs "ready for connections", and testcontainers' MySqlContainer waits for exactly two of them.
set -eu

case "${1:-mariadbd}" in
    mariadbd | mysqld) if [ "$#" -gt 0 ]; then shift; fi ;;
    *) exec "$@" ;;  # `docker run IMAGE sh` and friends, like the official image
esac

root_password="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
allow_empty="${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
datadir=/var/lib/mysql

if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
    echo "Error: MYSQL_ROOT_PASSWORD is not set (or set MYSQL_ALLOW_EMPTY_PASSWORD=yes), as for the official image" >&2
    exit 1
fi

# SQL string and identifier literals; sed doubles the quote characters, so any password works. The statements are
# written with printf: dash's echo would turn the doubled backslashes back into single ones.
sql_string() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"; }
# shellcheck disable=SC2016  # the backticks are MySQL's identifier quotes, not a command substitution
sql_name() { printf '`%s`' "$(printf '%s' "$1" | sed -e 's/`/``/g')"; }

mkdir -p "$datadir" /run/mysqld
chown -R mysql:mysql "$datadir" /run/mysqld

if [ ! -d "$datadir/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >/dev/null
    socket=/run/mysqld/init.sock
    # The temporary server takes no TCP connections, so nobody connects before the users exist.
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
    init_pid=$!
    tries=0
    until mariadb-admin --socket="$socket" --user=root ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 120 ]; then
            echo "Error: the temporary server did not answer within 60 s" >&2
            exit 1
        fi
        sleep 0.5
    done
    {
        printf '%s\n' "DROP USER IF EXISTS ''@'localhost', ''@'%';"
        printf '%s\n' "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_password");"
        printf '%s\n' "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$root_password");"
        printf '%s\n' "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "$database" ]; then
            printf '%s\n' "CREATE DATABASE IF NOT EXISTS $(sql_name "$database");"
        fi
        if [ -n "$user" ] && [ "$user" != "root" ]; then
            printf '%s\n' "CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$password");"
            if [ -n "$database" ]; then
                printf '%s\n' "GRANT ALL ON $(sql_name "$database").* TO $(sql_string "$user")@'%';"
            fi
        fi
        printf '%s\n' "FLUSH PRIVILEGES;"
    } | mariadb --socket="$socket" --user=root
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                echo "running $f"
                # shellcheck disable=SC1090  # the user's init scripts, sourced as the official image does
                . "$f"
                ;;
            *.sql) echo "running $f"; MYSQL_PWD="$root_password" mariadb --socket="$socket" --user=root ${database:+"$database"} <"$f" ;;
            *) ;;
        esac
    done
    # MYSQL_PWD, not --password: an empty --password= would prompt.
    MYSQL_PWD="$root_password" mariadb-admin --socket="$socket" --user=root shutdown
    wait "$init_pid" || true
    echo "MariaDB init process done. Ready for start up."
fi

# Debian's config binds to 127.0.0.1; clients come through Docker's port mapping. No DNS lookups: there is no DNS.
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --skip-name-resolve "$@"
