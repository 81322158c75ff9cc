"""Create and drop per-cell databases, and read the server version, with pure-Python sync drivers.

pg8000 and PyMySQL need no compiler and no client library, so they work in nox's own environment, on the
containers and on servers named by URL alike. Errors are re-raised with the password removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import ssl
from collections.abc import Iterator
from typing import Any, Optional

from matrix.provision.server import Server

CONNECT_TIMEOUT = 10
# PostgreSQL truncates identifiers at 63 bytes, MySQL refuses names over 64 characters.
_MAX_NAME = 63


class AdminError(RuntimeError):
    """A create/drop/version statement failed; the message holds no password."""


def database_name(server_name: str, cell_key: str) -> str:
    """A valid, stable database name for one cell on one server, e.g. ``gl_postgresql_17__py3_12_sa2_1_pa1``.

    The server name is part of it because two axes.toml databases may share one server (one
    GREENLIGHT_POSTGRES_URL, or one image given to both) and a cell uses both at once.
    """
    raw = f"gl_{server_name}__{cell_key}".lower()
    name = re.sub(r"[^a-z0-9_]", "_", raw)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}_{digest}"
    return name


def server_version(server: Server) -> str:
    """``15.10`` for PostgreSQL; ``10.11.6-MariaDB-0+deb12u1`` or ``8.4.3`` for MySQL-family servers."""
    with _cursor(server) as cursor:
        if server.kind == "postgresql":
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0]).split()[0]
        cursor.execute("SELECT VERSION()")
        return str(cursor.fetchone()[0])


def create_database(server: Server, name: str) -> None:
    with _cursor(server) as cursor:
        if server.kind == "postgresql":
            cursor.execute(f"CREATE DATABASE {_quote_pg(name)}")
        else:
            cursor.execute(f"CREATE DATABASE {_quote_mysql(name)} CHARACTER SET utf8mb4")


def drop_database(server: Server, name: str) -> None:
    """Drop ``name`` if it exists, even while a crashed scenario run still holds connections to it."""
    with _cursor(server) as cursor:
        if server.kind == "postgresql":
            # DROP ... WITH (FORCE) needs PostgreSQL 13; ending the sessions first works on every version.
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f"DROP DATABASE IF EXISTS {_quote_pg(name)}")
        else:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quote_mysql(name)}")


def list_databases(server: Server, prefix: str = "gl_") -> list[str]:
    """Databases whose name starts with ``prefix`` (what this package creates)."""
    with _cursor(server) as cursor:
        if server.kind == "postgresql":
            cursor.execute("SELECT datname FROM pg_database")
        else:
            cursor.execute("SHOW DATABASES")
        return sorted(str(row[0]) for row in cursor.fetchall() if str(row[0]).startswith(prefix))


@contextlib.contextmanager
def _cursor(server: Server) -> Iterator[Any]:
    try:
        connection = _connect(server)
    except Exception as exc:
        raise AdminError(
            f"cannot connect to {server.kind} server {server.name} at {server.host}:{server.port} as "
            f"{server.user!r}: {server.redact(f'{type(exc).__name__}: {exc}')}"
        ) from None
    try:
        cursor = connection.cursor()
        try:
            yield cursor
        except AdminError:
            raise
        except Exception as exc:
            raise AdminError(
                f"{server.kind} server {server.name}: {server.redact(f'{type(exc).__name__}: {exc}')}"
            ) from None
    finally:
        connection.close()


# Both drivers by default use TLS when the server offers it, unverified, and make a new SSL context for every
# connection, loading the system's CA certificates that the unverified connection never uses: 60% of a Docker
# cell's admin connections' CPU (py-spy: about 4 CPU-s of the cell's nox process). The same policy, one context.
_WITHOUT_TLS: set[tuple[str, int]] = set()  # servers that refused TLS: connected to without it from then on


@functools.cache
def _unverified_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect(server: Server) -> Any:
    tls = (server.host, server.port) not in _WITHOUT_TLS
    try:
        return _connect_once(server, tls)
    except Exception as exc:
        if not (tls and _refused_tls(exc)):
            raise
    _WITHOUT_TLS.add((server.host, server.port))
    return _connect_once(server, tls=False)


def _refused_tls(exc: Exception) -> bool:
    """pg8000's "Server refuses SSL"; PyMySQL's 2026 "SSL is required but the server doesn't support it"."""
    return "refuses SSL" in str(exc) or getattr(exc, "args", (None,))[0] == 2026


def _connect_once(server: Server, tls: Optional[bool]) -> Any:
    """``tls``: True requires it (with the shared context), False goes without, None leaves it to the driver's
    default (what the tests compare this module's policy with)."""
    if server.kind == "postgresql":
        import pg8000.dbapi

        connection = pg8000.dbapi.connect(
            user=server.user,
            password=server.password or None,
            host=server.host,
            port=server.port,
            database=server.admin_database or "postgres",
            timeout=CONNECT_TIMEOUT,
            **({} if tls is None else {"ssl_context": _unverified_tls() if tls else False}),
        )
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        connection.autocommit = True
        return connection
    import pymysql

    return pymysql.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        database=server.admin_database,
        connect_timeout=CONNECT_TIMEOUT,
        autocommit=True,
        **({} if tls is None else {"ssl": _unverified_tls()} if tls else {"ssl_disabled": True}),
    )


def _quote_pg(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_mysql(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
