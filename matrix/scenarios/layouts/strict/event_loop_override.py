"""fixture-styles/event-loop-override: a user-defined event_loop fixture (the pre-1.0 way to pick a loop) runs the
test on that loop. Only copied where pytest-asyncio is older than 1.0 (1.0 removed the fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine

MINE: list[asyncio.AbstractEventLoop] = []


@pytest.fixture
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    MINE.append(loop)
    yield loop
    loop.close()


@pytest.mark.asyncio
async def test_on_my_loop(db: Target, models: SimpleNamespace) -> None:
    assert asyncio.get_running_loop() is MINE[-1]
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert len(parent.children) == 2
    finally:
        await engine.dispose()
