#!/bin/sh
# Entrypoint of greenlight's offline MySQL image (Debian packages, no registry needed).
#
# It honours the official `mysql` image's environment contract -- MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD,
# MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, /docker-entrypoint-initdb.d -- and, like it, initialises through a
# temporary server before starting the real one. Each server logs "mysqld: ready for connections" to stderr, and
# testcontainers' MySqlContainer waits for exactly two of them. (The X plugin, whose own "X Plugin ready for
# connections" line would count too, is off: nothing here speaks the X protocol.)
set -eu

case "${1:-mysqld}" in
    mysqld) if [ "$#" -gt 0 ]; then shift; fi ;;
    *) exec "$@" ;;  # `docker run IMAGE sh` and friends, like the official image
esac

root_password="${MYSQL_ROOT_PASSWORD:-}"
database="${MYSQL_DATABASE:-}"
user="${MYSQL_USER:-}"
password="${MYSQL_PASSWORD:-}"
allow_empty="${MYSQL_ALLOW_EMPTY_PASSWORD:-}"
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

# Debian's config logs to /var/log/mysql/error.log; without log_error, mysqld logs to stderr, where `docker logs`
# (and testcontainers) read it. (--log-error=/dev/stderr would not do: mysqld appends ".err" to a name without
# an extension.) No DNS lookups: there is no DNS.
sed -i '/^log_error[[:space:]]*=/d' /etc/mysql/mysql.conf.d/mysqld.cnf
common="--user=mysql --datadir=$datadir --mysqlx=OFF --skip-name-resolve"

mkdir -p "$datadir" /run/mysqld /var/lib/mysql-files
chown -R mysql:mysql "$datadir" /run/mysqld /var/lib/mysql-files

if [ ! -d "$datadir/mysql" ]; then
    # root@localhost with no password; the statements below give it the container's.
    # shellcheck disable=SC2086  # $common is a list of options
    mysqld $common --initialize-insecure
    socket=/run/mysqld/init.sock
    # The temporary server takes no TCP connections, so nobody connects before the users exist.
    # shellcheck disable=SC2086
    mysqld $common --skip-networking --socket="$socket" &
    init_pid=$!
    tries=0
    until mysqladmin --socket="$socket" --user=root ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 120 ]; then
            echo "Error: the temporary server did not answer within 60 s" >&2
            exit 1
        fi
        sleep 0.5
    done
    {
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
    } | mysql --socket="$socket" --user=root
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                echo "running $f"
                # shellcheck disable=SC1090  # the user's init scripts, sourced as the official image does
                . "$f"
                ;;
            *.sql) echo "running $f"; MYSQL_PWD="$root_password" mysql --socket="$socket" --user=root ${database:+"$database"} <"$f" ;;
            *) ;;
        esac
    done
    # MYSQL_PWD, not --password: an empty --password= would prompt.
    MYSQL_PWD="$root_password" mysqladmin --socket="$socket" --user=root shutdown
    wait "$init_pid" || true
    echo "MySQL init process done. Ready for start up."
fi

# Debian's config binds to 127.0.0.1; clients come through Docker's port mapping.
# shellcheck disable=SC2086
exec mysqld $common --bind-address=0.0.0.0 --port=3306 "$@"
