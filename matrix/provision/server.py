"""What provisioning hands out: a reachable database server, or the exact reason there is none."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote

REDACTED = "***"


@dataclass(frozen=True)
class Server:
    """A running PostgreSQL or MySQL/MariaDB server the matrix may create databases on.

    ``password`` is the real one (the scenario runs need it to connect); it is left out of ``repr`` and of
    :meth:`redacted_url`, and nothing in this package logs it.
    """

    name: str  # the axes.toml database this server stands for, e.g. "postgresql-17"
    kind: str  # "postgresql" | "mysql"
    host: str = "127.0.0.1"
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    server_version: Optional[str] = None
    source: str = "container"  # "container" (started for this invocation) | "url" (GREENLIGHT_*_URL)
    admin_database: Optional[str] = None  # where create/drop statements connect (None: the driver's default)
    container_id: Optional[str] = None
    image: Optional[str] = None
    start_seconds: Optional[float] = None  # how long the container took to become ready

    def url(self, driver: str, database: str) -> str:
        """A SQLAlchemy URL with the real password, URL-quoted. Never log it: use :meth:`redacted_url`."""
        return self._url(driver, database, quote(self.password, safe=""))

    def redacted_url(self, driver: str, database: str) -> str:
        return self._url(driver, database, REDACTED if self.password else "")

    def _url(self, driver: str, database: str, password: str) -> str:
        credentials = quote(self.user, safe="") + (f":{password}" if password else "")
        return f"{self.kind}+{driver}://{credentials}@{self.host}:{self.port}/{quote(database, safe='')}"

    def redact(self, text: str) -> str:
        """``text`` with this server's password (raw and URL-quoted) replaced by ``***``."""
        return redact(text, [self.password])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Server:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True)
class Unavailable:
    """A database that cannot be had; ``reason`` is shown in the results and at the end of the run."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret, as written and as it appears URL-quoted, with ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret, safe=" +"), quote(secret)}:
            text = text.replace(form, REDACTED)
    return text
