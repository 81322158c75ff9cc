"""Teardown hygiene: engines and connections that outlive the loop they were made on.

Both scenarios run nested, with unraisable-exception and resource warnings turned into errors, so that what
would otherwise be noise at garbage collection ("Event loop is closed", "non-checked-in connection") becomes a
named, recorded outcome. They share one pytest process per database (a process costs more than both scenarios);
each inner module collects its own leftovers, so one module's leak cannot surface in the other's tests.
"""

from __future__ import annotations

import textwrap

import pytest

from matrix.scenarios.core import PASS, raises, scenario, when
from matrix.scenarios.nested import NESTED_TIMEOUT, NestedGroup

STRICT_WARNINGS = [
    "-W",
    "error::pytest.PytestUnraisableExceptionWarning",
    "-W",
    "error::ResourceWarning",
]

_HEADER = """
    import gc

    import pytest
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession
    from matrix.scenarios.support import make_engine

    LEFT = []
"""


def _module(body: str) -> str:
    return textwrap.dedent(_HEADER) + textwrap.dedent(body)


HYGIENE = NestedGroup("teardown-hygiene", args=STRICT_WARNINGS, isolated=True)
HYGIENE.add(
    "undisposed_engine",
    _module("""
        @pytest.mark.asyncio
        async def test_leaves_engine(db, models):
            engine = make_engine(db)
            async with AsyncSession(engine) as session:
                assert len((await session.execute(select(models.Child))).scalars().all()) == 2
            LEFT.append(engine)  # never disposed


        @pytest.mark.asyncio
        async def test_next(db, models):
            LEFT.clear()
            gc.collect()  # the engine and its pooled connection go now, after their loop has closed
            engine = make_engine(db)
            try:
                async with engine.connect() as conn:
                    assert (await conn.execute(select(1))).scalar() == 1
            finally:
                await engine.dispose()
    """),
)
HYGIENE.add(
    "dispose_on_wrong_loop",
    _module("""
        @pytest.mark.asyncio
        async def test_uses_engine(db, models):
            engine = make_engine(db)
            async with engine.connect() as conn:
                assert (await conn.execute(select(1))).scalar() == 1
            LEFT.append(engine)


        @pytest.mark.asyncio
        async def test_disposes_it(db, models):
            engine = LEFT.pop()
            await engine.dispose()  # its pooled connection belongs to the previous test's (closed) loop
            gc.collect()
    """),
)


# depends: everything (the default): what happens to connections when pytest-asyncio closes a test's loop (1.1
# cancels what is left) and how pytest reports unraisable exceptions is the point.
@scenario(
    "teardown-hygiene/undisposed-engine",
    checks="a test leaves its engine undisposed (pooled connection checked in); when it is collected after its "
    "loop closed, the leak surfaces as a named warning in the next test, never as a hang or crash",
    expect=raises("pytest.PytestUnraisableExceptionWarning"),
    # SQLAlchemy 1.4 gives file SQLite a NullPool: nothing stays pooled, so nothing leaks.
    unless=[when(database="sqlite", sqlalchemy="<2.0", expect=PASS)],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_undisposed_engine(db):
    HYGIENE.run("undisposed_engine", db).require(passed=2)


@scenario(
    "teardown-hygiene/dispose-on-wrong-loop",
    checks="an engine used on one test's loop is disposed from the next test's loop: its pooled connections "
    "are closed without unraisable errors or resource warnings",
    expect=PASS,
    # SQLAlchemy 1.4 cannot close an aiomysql connection whose loop is gone: aiomysql warns "Unclosed connection".
    unless=[when(driver="aiomysql", sqlalchemy="<2.0", expect=raises("pytest.PytestUnraisableExceptionWarning"))],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_dispose_on_wrong_loop(db):
    HYGIENE.run("dispose_on_wrong_loop", db).require(passed=2)
