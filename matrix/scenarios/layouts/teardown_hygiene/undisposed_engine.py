"""teardown-hygiene/undisposed-engine: a test leaves its engine undisposed; the next test collects it after its
loop closed."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine

LEFT: list[Any] = []


@pytest.mark.asyncio
async def test_leaves_engine(db: Target, models: SimpleNamespace) -> None:
    engine = make_engine(db)
    async with AsyncSession(engine) as session:
        assert len((await session.execute(select(models.Child))).scalars().all()) == 2
    LEFT.append(engine)  # never disposed


@pytest.mark.asyncio
async def test_next(db: Target, models: SimpleNamespace) -> None:
    LEFT.clear()
    gc.collect()  # the engine and its pooled connection go now, after their loop has closed
    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(1))).scalar() == 1
    finally:
        await engine.dispose()
