"""context/engine-session-scopes: an engine and an AsyncSession made in async fixtures of each scope (function,
class, module, session) on one session-wide loop, then used in tests, explicitly and lazily.

Written the way the installed pytest-asyncio wants loop scopes expressed: ``loop_scope="session"`` from 0.24; in
0.23 each async fixture runs on the loop of its own scope, so the tests use the loop of their fixtures' scope; in
0.21/0.22 one loop for the session comes from overriding ``event_loop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any, Literal

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.core import current_axes, version_matches
from matrix.scenarios.support import Target, create_tables, drop_tables, make_engine, make_models, unique_prefix

VERSION = current_axes().pytest_asyncio
HAS_LOOP_SCOPE = version_matches(VERSION, ">=0.24")
HAS_SCOPED_LOOPS = version_matches(VERSION, ">=0.23")
Scope = Literal["function", "class", "module", "session"]


def fixture(scope: Scope) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An async fixture of ``scope`` on the session's loop (0.23: on the loop of its own scope)."""
    if HAS_LOOP_SCOPE:
        return pytest_asyncio.fixture(scope=scope, loop_scope="session")
    return pytest_asyncio.fixture(scope=scope)


def mark(scope: Scope) -> pytest.MarkDecorator:
    """The asyncio marker for a test whose fixtures are of ``scope``."""
    if HAS_LOOP_SCOPE:
        return pytest.mark.asyncio(loop_scope="session")
    if HAS_SCOPED_LOOPS:
        return pytest.mark.asyncio(scope=scope)
    return pytest.mark.asyncio


if not HAS_SCOPED_LOOPS:

    @pytest.fixture(scope="session")
    def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        yield loop
        loop.close()


@fixture("function")
async def engine_function(db: Target) -> AsyncIterator[Any]:
    engine = make_engine(db)
    yield engine
    await engine.dispose()


@fixture("function")
async def session_function(engine_function: Any, models_function: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine_function) as session:
        yield session


class TestScopeFunction:
    @mark("function")
    async def test_explicit(self, session_function: AsyncSession, models_function: SimpleNamespace) -> None:
        rows = (await session_function.execute(select(models_function.Child.name))).scalars().all()
        assert sorted(rows) == ["c1", "c2"]

    @mark("function")
    async def test_lazy(self, session_function: AsyncSession, models_function: SimpleNamespace) -> None:
        parent: Any = await session_function.get(models_function.Parent, 1)
        assert len(parent.children) == 2


@fixture("class")
async def engine_class(db: Target) -> AsyncIterator[Any]:
    engine = make_engine(db)
    yield engine
    await engine.dispose()


@fixture("class")
async def session_class(engine_class: Any, models_class: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine_class) as session:
        yield session


class TestScopeClass:
    @mark("class")
    async def test_explicit(self, session_class: AsyncSession, models_class: SimpleNamespace) -> None:
        rows = (await session_class.execute(select(models_class.Child.name))).scalars().all()
        assert sorted(rows) == ["c1", "c2"]

    @mark("class")
    async def test_lazy(self, session_class: AsyncSession, models_class: SimpleNamespace) -> None:
        parent: Any = await session_class.get(models_class.Parent, 1)
        assert len(parent.children) == 2


@fixture("module")
async def engine_module(db: Target) -> AsyncIterator[Any]:
    engine = make_engine(db)
    yield engine
    await engine.dispose()


@fixture("module")
async def session_module(engine_module: Any, models_module: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine_module) as session:
        yield session


class TestScopeModule:
    @mark("module")
    async def test_explicit(self, session_module: AsyncSession, models_module: SimpleNamespace) -> None:
        rows = (await session_module.execute(select(models_module.Child.name))).scalars().all()
        assert sorted(rows) == ["c1", "c2"]

    @mark("module")
    async def test_lazy(self, session_module: AsyncSession, models_module: SimpleNamespace) -> None:
        parent: Any = await session_module.get(models_module.Parent, 1)
        assert len(parent.children) == 2


@fixture("session")
async def engine_session(db: Target) -> AsyncIterator[Any]:
    engine = make_engine(db)
    yield engine
    await engine.dispose()


@fixture("session")
async def session_session(engine_session: Any, models_session: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine_session) as session:
        yield session


class TestScopeSession:
    @mark("session")
    async def test_explicit(self, session_session: AsyncSession, models_session: SimpleNamespace) -> None:
        rows = (await session_session.execute(select(models_session.Child.name))).scalars().all()
        assert sorted(rows) == ["c1", "c2"]

    @mark("session")
    async def test_lazy(self, session_session: AsyncSession, models_session: SimpleNamespace) -> None:
        parent: Any = await session_session.get(models_session.Parent, 1)
        assert len(parent.children) == 2


@pytest.fixture
def models_function(db: Target) -> Iterator[SimpleNamespace]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)


@pytest.fixture(scope="class")
def models_class(db: Target) -> Iterator[SimpleNamespace]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)


@pytest.fixture(scope="module")
def models_module(db: Target) -> Iterator[SimpleNamespace]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)


@pytest.fixture(scope="session")
def models_session(db: Target) -> Iterator[SimpleNamespace]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)
