"""fixture-styles/sync-test-async-fixture: a plain (sync) test requests an @pytest_asyncio.fixture that does IO."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


@pytest_asyncio.fixture
async def names(db: Target, models: SimpleNamespace) -> Sequence[str]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            return (await session.execute(select(models.Child.name))).scalars().all()
    finally:
        await engine.dispose()


def test_sync(names: Sequence[str]) -> None:
    assert sorted(names) == ["c1", "c2"]
