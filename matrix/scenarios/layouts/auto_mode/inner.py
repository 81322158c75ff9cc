"""asyncio_mode=auto: a plain @pytest.fixture async fixture and an unmarked async test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


@pytest.fixture
async def session(db: Target, models: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            yield session
    finally:
        await engine.dispose()


async def test_lazy(session: AsyncSession, models: SimpleNamespace) -> None:
    parent = (await session.execute(select(models.Parent))).scalar_one()
    assert [c.name for c in parent.children] == ["c1", "c2"]
