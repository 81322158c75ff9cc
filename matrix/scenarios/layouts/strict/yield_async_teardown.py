"""fixture-styles/yield-async-teardown: a yield fixture whose async teardown does IO; the next test sees it ran.

The tests share one set of tables for the whole module (this ``models`` overrides the inner conftest's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

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


@pytest_asyncio.fixture
async def session(db: Target, models: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            yield session
            parent = (await session.execute(select(models.Parent))).scalar_one()
            for child in list(parent.children):  # lazy load during teardown
                await session.delete(child)
            await session.commit()
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_first(session: AsyncSession, models: SimpleNamespace) -> None:
    assert len((await session.execute(select(models.Child))).scalars().all()) == 2


@pytest.mark.asyncio
async def test_second_sees_teardown(db: Target, models: SimpleNamespace) -> None:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            assert (await session.execute(select(models.Child))).scalars().all() == []
    finally:
        await engine.dispose()
