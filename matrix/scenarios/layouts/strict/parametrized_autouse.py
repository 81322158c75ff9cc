"""fixture-styles/parametrized-autouse: a parametrized async fixture and an autouse async fixture, both doing IO,
around one async test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine

SEEN: list[int] = []


@pytest_asyncio.fixture(autouse=True)
async def audit(db: Target, models: SimpleNamespace) -> AsyncIterator[None]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            SEEN.append(len(parent.children))  # implicit IO in an autouse fixture
            yield
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(params=[1, 2])
async def child(request: pytest.FixtureRequest, db: Target, models: SimpleNamespace) -> AsyncIterator[Any]:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            yield await session.get(models.Child, request.param)
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_child(child: Any) -> None:
    assert child.parent.name == "p1"  # many-to-one lazy load
    assert SEEN
    assert SEEN[-1] == 2
