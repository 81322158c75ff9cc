"""Whether an admin connection (matrix/provision/admin.py) uses TLS, and whether the driver's own default would:
the admin module keeps the drivers' policy (TLS when the server offers it, unverified) with one SSL context."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from matrix.provision import Server, admin


def session_uses_tls(server: Server, cursor: Any) -> bool:
    if server.kind == "postgresql":
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(cursor.fetchone()[0])
    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return bool(cursor.fetchone()[1])


@contextlib.contextmanager
def drivers_default(server: Server) -> Iterator[Any]:
    """A cursor of a connection made with the driver's defaults (no TLS argument at all)."""
    connection = admin._connect_once(server, tls=None)
    try:
        yield connection.cursor()
    finally:
        connection.close()


def tls_of_admin_and_default(server: Server) -> tuple[bool, bool]:
    with admin._cursor(server) as cursor:
        ours = session_uses_tls(server, cursor)
    with drivers_default(server) as cursor:
        default = session_uses_tls(server, cursor)
    return ours, default
