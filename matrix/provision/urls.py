"""``GREENLIGHT_POSTGRES_URL`` / ``GREENLIGHT_MYSQL_URL``: a running server instead of a container."""

from __future__ import annotations

from typing import Optional
from urllib.parse import unquote, urlsplit

from matrix.provision.server import Server

URL_ENV = {"postgresql": "GREENLIGHT_POSTGRES_URL", "mysql": "GREENLIGHT_MYSQL_URL"}
_SCHEMES = {"postgresql": ("postgresql", "postgres"), "mysql": ("mysql", "mariadb")}
_DEFAULT_PORT = {"postgresql": 5432, "mysql": 3306}
_DEFAULT_USER = {"postgresql": "postgres", "mysql": "root"}


class BadServerUrl(ValueError):
    """The URL in the environment cannot be used; the message names the variable, never the password."""


def server_from_url(name: str, kind: str, url: str) -> Server:
    """``postgresql://user:pass@host:port/db`` (a ``+driver`` suffix is ignored) as a :class:`Server`.

    The database in the URL is where create/drop statements connect; each cell's own database is created
    beside it. User and password are URL-unquoted, as SQLAlchemy does.
    """
    variable = URL_ENV[kind]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # e.g. a non-numeric port
        raise BadServerUrl(f"{variable} is not a valid URL: {exc}") from None
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _SCHEMES[kind]:
        raise BadServerUrl(f"{variable} must start with {_SCHEMES[kind][0]}://, not {scheme or '(nothing)'}://")
    if not parts.hostname:
        raise BadServerUrl(f"{variable} names no host")
    database: Optional[str] = unquote(parts.path.lstrip("/")) or None
    return Server(
        name=name,
        kind=kind,
        host=parts.hostname,
        port=port or _DEFAULT_PORT[kind],
        user=unquote(parts.username) if parts.username else _DEFAULT_USER[kind],
        password=unquote(parts.password or ""),
        source="url",
        admin_database=database or ("postgres" if kind == "postgresql" else None),
    )
