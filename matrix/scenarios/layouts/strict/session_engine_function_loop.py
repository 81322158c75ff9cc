"""fixture-styles/session-engine-function-loop: an engine from a session-scoped fixture (session loop) used in
tests on their own function loops. Only copied where pytest-asyncio has ``loop_scope`` (0.24+)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from matrix.scenarios.support import Target, make_engine


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(db: Target) -> AsyncIterator[Any]:
    engine = make_engine(db)
    async with engine.connect() as conn:  # a pooled connection now belongs to the session loop
        await conn.execute(select(1))
    yield engine
    await engine.dispose()


@pytest.mark.asyncio
async def test_first(engine: Any, models: SimpleNamespace) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(select(models.Child.id))).scalars().all() == [1, 2]


@pytest.mark.asyncio
async def test_second(engine: Any, models: SimpleNamespace) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(select(models.Child.id))).scalars().all() == [1, 2]
