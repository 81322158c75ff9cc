"""Two implicit-IO sites, each marked by a comment the scenario looks for in the end-of-run report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


@pytest.mark.asyncio
async def test_two_sites(db: Target, models: SimpleNamespace) -> None:
    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert len(parent.children) == 2  # SITE-A
            child = parent.children[0]
            await session.commit()
            assert child.name == "c1"  # SITE-B
    finally:
        await engine.dispose()
