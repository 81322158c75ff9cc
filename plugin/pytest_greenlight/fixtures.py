"""Loop-aware engine fixtures: one AsyncEngine per event loop, disposed on the loop that made it.

An AsyncEngine's pooled connections belong to the loop they were opened on. A session-scoped engine used from
function-scoped loops fails with "attached to a different loop", and one disposed after its loop closed fails with
"Event loop is closed" or leaves "non-checked-in connection" warnings. ``greenlight_engine`` avoids all three.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal, Union

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from . import compat, portal

Url = Union[str, Callable[[], str]]
Scope = Literal["session", "package", "module", "class", "function"]


class LoopEngines:
    """Hands out the AsyncEngine of the running event loop, creating it on first use."""

    def __init__(self, url: str, engine_kwargs: dict[str, Any]) -> None:
        self.url = url
        self.engine_kwargs = engine_kwargs
        self._engines: dict[asyncio.AbstractEventLoop, AsyncEngine] = {}

    @property
    def engine(self) -> AsyncEngine:
        """The engine for the running loop (call from async code)."""
        loop = asyncio.get_running_loop()
        engine = self._engines.get(loop)
        if engine is None:
            engine = self._engines[loop] = create_async_engine(self.url, **self.engine_kwargs)
            if engine.dialect.name == "sqlite":
                _use_real_sqlite_transactions(engine)
            # Dispose while the loop can still run the pool's close callbacks.
            portal.add_close_callback(loop, lambda: self._dispose(loop))
        return engine

    async def _dispose(self, loop: asyncio.AbstractEventLoop) -> None:
        engine = self._engines.pop(loop, None)
        if engine is not None:
            await engine.dispose()

    def close(self) -> None:
        """Dispose every engine on its own loop (fixture teardown; no loop is running then)."""
        for loop in list(self._engines):
            if loop.is_closed():  # a loop whose close we could not hook: nothing can run there any more
                self._engines.pop(loop).sync_engine.dispose(close=False)
            elif not loop.is_running():
                loop.run_until_complete(self._dispose(loop))

    @asynccontextmanager
    async def session(self, **session_kwargs: Any) -> AsyncIterator[AsyncSession]:
        """An AsyncSession inside an outer transaction that is rolled back afterwards.

        Code under test may ``commit()`` freely: its commits release savepoints, and nothing reaches the database.
        """
        async with self.engine.connect() as connection:
            outer = await connection.begin()
            if compat.HAS_JOIN_TRANSACTION_MODE:
                session_kwargs.setdefault("join_transaction_mode", "create_savepoint")
                session = AsyncSession(bind=connection, **session_kwargs)
            else:  # SQLAlchemy 1.4: the documented savepoint-restarting recipe
                session = AsyncSession(bind=connection, **session_kwargs)
                await connection.begin_nested()

                @event.listens_for(session.sync_session, "after_transaction_end")
                def restart_savepoint(_session: Any, _transaction: Any) -> None:
                    sync_connection = connection.sync_connection
                    if sync_connection is not None and not sync_connection.in_nested_transaction():
                        sync_connection.begin_nested()

            try:
                yield session
            finally:
                await session.close()
                await outer.rollback()


def _use_real_sqlite_transactions(engine: AsyncEngine) -> None:
    """The SQLite driver defers BEGIN and ignores SAVEPOINT semantics, so a rolled-back outer transaction would
    keep what the test committed. SQLAlchemy's documented fix: let SQLAlchemy emit BEGIN itself."""

    @event.listens_for(engine.sync_engine, "connect")
    def driver_emits_no_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def emit_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def greenlight_engine(
    url: Url, *, name: str = "db", scope: Scope = "session", **engine_kwargs: Any
) -> Callable[..., Iterator[LoopEngines]]:
    """Make a fixture called ``name`` that yields a LoopEngines for ``url`` (a string or a callable returning one).

    In a conftest.py::

        db = greenlight_engine("postgresql+asyncpg://localhost/test", name="db")

        async def test_users(db):
            async with db.session() as session:   # rolled back afterwards
                session.add(User(name="a"))
                await session.commit()
    """

    @pytest.fixture(scope=scope, name=name)
    def engines_fixture() -> Iterator[LoopEngines]:
        engines = LoopEngines(url() if callable(url) else url, engine_kwargs)
        try:
            yield engines
        finally:
            engines.close()

    return engines_fixture
