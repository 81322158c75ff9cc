"""fixture-styles/loop-scope-module: a module-scoped engine fixture on a module-scoped loop, shared by two tests.

Only copied where pytest-asyncio has ``loop_scope`` (0.24+). The tests share one set of tables for the whole module
(this ``models`` overrides the inner conftest's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, create_tables, drop_tables, make_engine, make_models, unique_prefix


@pytest.fixture(scope="module")
def models(db: Target) -> Iterator[SimpleNamespace]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(db: Target, models: SimpleNamespace) -> AsyncIterator[Any]:
    engine = make_engine(db)
    yield engine
    await engine.dispose()


@pytest.mark.asyncio(loop_scope="module")
async def test_one(engine: Any, models: SimpleNamespace) -> None:
    async with AsyncSession(engine) as session:
        parent = (await session.execute(select(models.Parent))).scalar_one()
        assert len(parent.children) == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_two(engine: Any, models: SimpleNamespace) -> None:
    async with AsyncSession(engine) as session:
        child: Any = await session.get(models.Child, 2)
        assert child.parent.name == "p1"
