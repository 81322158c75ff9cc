"""Context persistence: engines, sessions and objects made in fixtures, then used in the test."""

from __future__ import annotations

import pytest
import pytest_asyncio
from sqlalchemy import select

from matrix.scenarios.core import scenario
from matrix.scenarios.support import make_engine


@pytest_asyncio.fixture
async def session(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()


@pytest_asyncio.fixture
async def loaded_parent(session, models):
    """Parent 1, loaded in the fixture with its lazy relationships untouched."""
    return (await session.execute(select(models.Parent).where(models.Parent.id == 1))).scalar_one()


@scenario(
    "context/lazy-load-in-test",
    checks="an object loaded in an async fixture, then its lazy relationship loaded in the test",
)
@pytest.mark.asyncio
async def test_lazy_load_in_test(loaded_parent):
    assert [child.name for child in loaded_parent.children] == ["c1", "c2"]


@scenario(
    "context/expired-after-commit",
    checks="an attribute expired by commit (expire_on_commit=True) refreshed on access in the test",
)
@pytest.mark.asyncio
async def test_expired_after_commit(session, models):
    parent = (await session.execute(select(models.Parent))).scalar_one()
    parent.name = "renamed"
    await session.commit()
    assert parent.name == "renamed"  # the commit expired it: this access reloads the row


@scenario(
    "context/engine-session-in-fixture",
    checks="an engine and AsyncSession made in a function-scoped async fixture, queried in the test",
)
@pytest.mark.asyncio
async def test_engine_session_in_fixture(session, models):
    rows = (await session.execute(select(models.Child.name).order_by(models.Child.id))).scalars().all()
    assert rows == ["c1", "c2"]
