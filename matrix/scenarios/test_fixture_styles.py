"""Fixture styles: the ways users write async fixtures and tests, each run in a nested pytest of its own.

Every inner test does explicit IO and implicit IO (a lazy load) in its fixtures and in the test, because making
that work in every style is what a greenlet plugin is for; without one, the lazy loads raise MissingGreenlet.
"""

from __future__ import annotations

from matrix.scenarios.core import scenario
from matrix.scenarios.nested import ini_text, run_nested

# Shared by the inner modules: tables for the outer scenario's database, dropped when the inner module ends.
INNER_CONFTEST = '''
import pytest
from matrix.scenarios.nested import inner_targets
from matrix.scenarios.support import create_tables, drop_tables, make_models, unique_prefix

TARGETS = inner_targets()


@pytest.fixture(params=[t for _, t in TARGETS], ids=[i for i, _ in TARGETS])
def db(request):
    return request.param


@pytest.fixture
def models(db):
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)
'''


@scenario(
    "fixture-styles/strict-mode",
    checks="asyncio_mode=strict: @pytest_asyncio.fixture (yield, async teardown) and @pytest.mark.asyncio tests",
)
def test_strict_mode(db):
    test_module = """
        import pytest
        import pytest_asyncio
        from sqlalchemy import select
        from sqlalchemy.ext.asyncio import AsyncSession
        from matrix.scenarios.support import make_engine


        @pytest_asyncio.fixture
        async def parent(db, models):
            engine = make_engine(db)
            async with AsyncSession(engine) as session:
                parent = (await session.execute(select(models.Parent))).scalar_one()
                assert len(parent.children) == 2  # implicit IO in the fixture
                yield parent
                parent.name = "renamed"
                await session.commit()
                assert parent.name == "renamed"  # implicit IO in async teardown: commit expired it
            await engine.dispose()


        @pytest.mark.asyncio
        async def test_lazy(parent):
            assert [c.name for c in parent.children] == ["c1", "c2"]
    """
    files = {"conftest.py": INNER_CONFTEST, "test_inner.py": test_module}
    run_nested("fixture-styles/strict-mode", db, files).require(passed=1)


@scenario(
    "fixture-styles/auto-mode",
    checks="asyncio_mode=auto: plain @pytest.fixture async fixtures and unmarked async tests",
)
def test_auto_mode(db):
    test_module = """
        import pytest
        from sqlalchemy import select
        from sqlalchemy.ext.asyncio import AsyncSession
        from matrix.scenarios.support import make_engine


        @pytest.fixture
        async def session(db, models):
            engine = make_engine(db)
            async with AsyncSession(engine) as session:
                yield session
            await engine.dispose()


        async def test_lazy(session, models):
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert [c.name for c in parent.children] == ["c1", "c2"]
    """
    files = {"conftest.py": INNER_CONFTEST, "test_inner.py": test_module}
    run_nested("fixture-styles/auto-mode", db, files, ini=ini_text(mode="auto")).require(passed=1)
