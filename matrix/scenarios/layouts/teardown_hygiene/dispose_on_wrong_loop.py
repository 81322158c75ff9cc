"""teardown-hygiene/dispose-on-wrong-loop: an engine used on one test's loop is disposed from the next test's."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from matrix.scenarios.support import Target, make_engine

LEFT: list[Any] = []


@pytest.mark.asyncio
async def test_uses_engine(db: Target, models: SimpleNamespace) -> None:
    engine = make_engine(db)
    async with engine.connect() as conn:
        assert (await conn.execute(select(1))).scalar() == 1
    LEFT.append(engine)


@pytest.mark.asyncio
async def test_disposes_it(db: Target, models: SimpleNamespace) -> None:
    engine = LEFT.pop()
    await engine.dispose()  # its pooled connection belongs to the previous test's (closed) loop
    gc.collect()
