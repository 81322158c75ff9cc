"""Database helpers shared by the scenarios: targets from the environment, engines, per-test tables.

The servers' databases are shared by every scenario of a run (and the local servers by other runs too), so each
scenario works on tables with its own prefix and drops them afterwards; on SQLite each scenario has a file of its
own (:func:`own_database`).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

_PASSWORD = re.compile(r"(?P<head>[a-z0-9+]+://[^:/@\s]*:)(?P<password>[^@\s]+)@", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """One (database, driver) a scenario runs against. ``url`` never leaves the process except via env vars."""

    name: str
    kind: str
    driver: str
    url: str

    @property
    def id(self) -> str:
        return f"{self.name}-{self.driver}"

    def __repr__(self) -> str:  # pytest may print parameters; keep the URL (and its password) out of it
        return f"Target({self.id})"


def targets(environ: Mapping[str, str] = os.environ) -> list[Target]:
    """The databases of ``GREENLIGHT_DATABASES``; a private SQLite file when it is unset (a developer run)."""
    raw = environ.get("GREENLIGHT_DATABASES")
    if not raw:
        path = Path(tempfile.gettempdir()) / f"greenlight-scenarios-{os.getpid()}.db"
        return [Target("sqlite", "sqlite", "aiosqlite", f"sqlite+aiosqlite:///{path}")]
    return [Target(d["name"], d["kind"], d["driver"], d["url"]) for d in json.loads(raw)]


_SQLITE_FILE = re.compile(r"^(?P<head>sqlite(\+\w+)?:///)(?P<path>(?!:memory:).+)$")


def own_database(target: Target, name: str) -> Target:
    """``target`` with a SQLite file of its own for ``name`` (a scenario, a nested run); a server is returned as it is.

    A scenario that fails mid-transaction can leak an aiosqlite connection that holds SQLite's write lock on its
    file until the process ends. On one file per run every later scenario then waited out the busy timeout (5 s)
    and failed with "database is locked": seen in py3.12-sa1.4-pa0.21-pt8.4 under ``none`` (four scenarios recorded
    broken for another scenario's leak, and one of them reused by seven other cells). On a server each scenario has
    tables of its own (:func:`unique_prefix`), so one leaked transaction cannot lock another scenario's tables.
    """
    found = _SQLITE_FILE.match(target.url) if target.kind == "sqlite" else None
    if found is None:
        return target
    path = Path(found.group("path"))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    url = f"{found.group('head')}{path.with_name(f'{path.stem}.{slug}{path.suffix}')}"
    return Target(target.name, target.kind, target.driver, url)


def representative(found: list[Target]) -> Target | None:
    """The target a scenario that does not depend on the database runs on: the first of the cell's (axes.toml
    order: SQLite first) whose dialect this SQLAlchemy has."""
    return next((t for t in found if not missing_dialect(t)), None)


def redact(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace every database password (from the configured URLs, and any URL in ``text``) with ***."""
    secrets: set[str] = set()
    for target in targets(environ) if environ.get("GREENLIGHT_DATABASES") else []:
        match = _PASSWORD.search(target.url)
        if match:
            # URLs carry the password URL-quoted; messages may show it either way.
            secrets.update({match.group("password"), unquote(match.group("password"))})
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return _PASSWORD.sub(r"\g<head>***@", text)


def missing_dialect(target: Target) -> str | None:
    """Why this SQLAlchemy cannot use the target's driver at all (psycopg 3 needs SQLAlchemy 2.0), or None."""
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    try:
        make_url(target.url).get_dialect()
    except NoSuchModuleError:
        return f"SQLAlchemy {sqlalchemy.__version__} has no dialect for {target.kind}+{target.driver}"
    return None


_counter = itertools.count()


def unique_prefix() -> str:
    """A table-name prefix unique to this process and call: short enough for MySQL's 64-character limit."""
    return f"gl{os.getpid()}x{next(_counter)}_"


def run_in_thread(make: Callable[[], Awaitable[T]], deadline: float = 30.0) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Set-up helpers use this so that they neither need nor disturb the loop a scenario runs on (``asyncio.run`` in
    the main thread would reset the main thread's current event loop, which is itself a scenario). The main thread
    polls instead of blocking in ``join()``: pytest-timeout's SIGALRM may be delivered to another thread, and its
    handler only runs once the main thread wakes up.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(asyncio.run(make()))  # type: ignore[arg-type]
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=work, name="greenlight-setup", daemon=True)
    thread.start()
    waited = 0.0
    while thread.is_alive():
        thread.join(0.1)
        waited += 0.1
        if waited > deadline:
            raise TimeoutError(f"a set-up/tear-down helper did not finish within {deadline:.0f}s")
    if error:
        raise error[0]
    return result[0]


def engine_options(target: Target) -> dict[str, Any]:
    """Per-kind options every scenario engine gets (none change what a scenario checks)."""
    if target.kind == "mysql":
        # MariaDB closes idle connections eventually; recycling keeps long runs from flaking on that.
        return {"pool_recycle": 3600}
    return {}


def make_engine(target: Target, **options: Any) -> Any:
    """An AsyncEngine for ``target`` (call on the loop that will use it)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(target.url, **{**engine_options(target), **options})


def pooled_engine(target: Target, **options: Any) -> Any:
    """An AsyncEngine with a counting queue pool, whatever the dialect's default (SQLAlchemy 1.4 gives file
    SQLite a NullPool, whose checked-out count would always read 0 and prove nothing)."""
    from sqlalchemy.pool import AsyncAdaptedQueuePool

    return make_engine(target, poolclass=AsyncAdaptedQueuePool, **options)


def greenlight_marker(**kwargs: Any) -> Callable[[T], T]:
    """``@pytest.mark.greenlight(**kwargs)``, applied at collection by the suite's conftest.

    The marker is registered in the suite's pytest.ini, but not where the catalogue is rendered or where the
    project's own tests import the scenario modules (with --strict-markers there, the decorator would fail).
    """

    def mark(function: T) -> T:
        function.greenlight_marker = kwargs  # type: ignore[attr-defined]
        return function

    return mark


def make_models(prefix: str) -> SimpleNamespace:
    """Parent/Child ORM classes on their own registry, tables named with ``prefix``.

    Classic ``Column`` declarations so the same code maps on SQLAlchemy 1.4, 2.0 and 2.1. ``Parent.children`` and
    ``Child.parent`` are plain lazy ("select") relationships: touching them after load is implicit IO.
    """
    from sqlalchemy import Column, ForeignKey, Integer, String
    from sqlalchemy.orm import registry, relationship

    reg = registry()
    base: Any = reg.generate_base()

    class Parent(base):
        __tablename__ = f"{prefix}parent"
        id = Column(Integer, primary_key=True, autoincrement=False)
        name = Column(String(50), nullable=False)
        children = relationship("Child", back_populates="parent", order_by="Child.id")

    class Child(base):
        __tablename__ = f"{prefix}child"
        id = Column(Integer, primary_key=True, autoincrement=False)
        parent_id = Column(Integer, ForeignKey(f"{prefix}parent.id"), nullable=False)
        name = Column(String(50), nullable=False)
        parent = relationship("Parent", back_populates="children")

    return SimpleNamespace(Parent=Parent, Child=Child, metadata=base.metadata, prefix=prefix)


async def _create(target: Target, models: SimpleNamespace, seed: bool) -> None:
    from sqlalchemy.pool import NullPool

    engine = make_engine(target, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(models.metadata.drop_all)
            await conn.run_sync(models.metadata.create_all)
            if seed:
                await conn.execute(models.Parent.__table__.insert(), [{"id": 1, "name": "p1"}])
                await conn.execute(
                    models.Child.__table__.insert(),
                    [{"id": 1, "parent_id": 1, "name": "c1"}, {"id": 2, "parent_id": 1, "name": "c2"}],
                )
    finally:
        await engine.dispose()


# A scenario that failed mid-IO (MissingGreenlet under subject "none") can leave a connection inside an open
# transaction until its process exits; its locks would make DROP TABLE wait forever (on SQLite, the driver's 5 s
# busy timeout: 5 s of every such scenario's run). A short bounded wait, then the tables are left behind (their
# prefix is unique; a cell's database is dropped as a whole afterwards, and on SQLite the file is the scenario's).
_LOCK_TIMEOUT = {
    "postgresql": "SET lock_timeout = '1s'",
    "mysql": "SET SESSION lock_wait_timeout = 1",
    "sqlite": "PRAGMA busy_timeout = 1000",
}


async def _drop(target: Target, models: SimpleNamespace) -> None:
    from sqlalchemy import text
    from sqlalchemy.pool import NullPool

    engine = make_engine(target, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            if target.kind in _LOCK_TIMEOUT:
                await conn.execute(text(_LOCK_TIMEOUT[target.kind]))
            await conn.run_sync(models.metadata.drop_all)
    finally:
        await engine.dispose()


def create_tables(target: Target, models: SimpleNamespace, *, seed: bool = True) -> None:
    """Create (and seed: parent 1 with children 1 and 2) the tables of ``models``, off the scenario's loop."""
    run_in_thread(lambda: _create(target, models, seed))


def drop_tables(target: Target, models: SimpleNamespace) -> None:
    """Drop the tables of ``models``. Connections leaked by a failed scenario are released first: pytest keeps the
    last failure's traceback (``sys.last_traceback``, for post-mortem debugging), and its frames hold them."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    gc.collect()
    from sqlalchemy.exc import DBAPIError

    try:
        run_in_thread(lambda: _drop(target, models))
    except DBAPIError as error:  # a lock held by a leaked connection: see _LOCK_TIMEOUT
        warnings.warn(f"left tables {models.prefix}* behind: {type(error.orig).__name__}", RuntimeWarning, 2)


async def checked_out(engine: Any) -> int:
    """Connections the engine's (queue) pool has handed out and not got back."""
    return int(engine.sync_engine.pool.checkedout())
