"""fixture-styles/class-based: async test methods in a class, with an async fixture defined on the class."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from matrix.scenarios.support import Target, make_engine


class TestParents:
    @pytest_asyncio.fixture
    async def parent(self, db: Target, models: SimpleNamespace) -> AsyncIterator[Any]:
        engine = make_engine(db)
        try:
            async with AsyncSession(engine) as session:
                yield (await session.execute(select(models.Parent))).scalar_one()
        finally:
            await engine.dispose()

    @pytest.mark.asyncio
    async def test_children(self, parent: Any) -> None:
        assert [c.name for c in parent.children] == ["c1", "c2"]

    @pytest.mark.asyncio
    async def test_child_parent(self, parent: Any) -> None:
        assert parent.children[0].parent is parent
