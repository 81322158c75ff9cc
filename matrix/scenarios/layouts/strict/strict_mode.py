"""fixture-styles/strict-mode: @pytest_asyncio.fixture (yield, async teardown) and a @pytest.mark.asyncio test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


@pytest_asyncio.fixture
async def parent(db: Target, models: SimpleNamespace) -> AsyncIterator[Any]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert len(parent.children) == 2  # implicit IO in the fixture
            yield parent
            parent.name = "renamed"
            await session.commit()
            assert parent.name == "renamed"  # implicit IO in async teardown: commit expired it
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_lazy(parent: Any) -> None:
    assert [c.name for c in parent.children] == ["c1", "c2"]
