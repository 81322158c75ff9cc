"""A @pytest.mark.anyio test (asyncio backend) with implicit IO, next to pytest-asyncio."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_anyio(db: Target, models: SimpleNamespace) -> None:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert [c.name for c in parent.children] == ["c1", "c2"]
    finally:
        await engine.dispose()
