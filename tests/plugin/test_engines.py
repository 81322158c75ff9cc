"""Engines and loops: a connection used on another loop names both loops and the fixture; engines never disposed
before their loop closed are listed, and greenlight_dispose_engines = true disposes them."""

from __future__ import annotations

import pytest

from .conftest import DATABASES, PYTEST_ASYNCIO_VERSION, Runner

SESSION_ENGINE = """
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from models import URL

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine():
    engine = create_async_engine(URL)
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))
    yield engine
    await engine.dispose()

@pytest.mark.asyncio
async def test_on_a_function_loop(engine):
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))
"""


@pytest.mark.local_servers
@pytest.mark.skipif(PYTEST_ASYNCIO_VERSION < (0, 24), reason="pytest-asyncio < 0.24 has no fixture loop_scope")
def test_engine_on_another_loop_names_the_loops_and_the_fixture(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GL_URL", DATABASES["postgresql"])
    bare = runner.run(SESSION_ENGINE, plugin=False)
    bare.assert_outcomes(failed=1)
    bare.stdout.fnmatch_lines(["*attached to a different loop*"])
    result = runner.run(SESSION_ENGINE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: why this failed*",
            "An engine's pooled connection was used on another event loop than the one it was opened on:",
            "  opened on loop #1 (0x*), while fixture 'engine' (scope session) was set up for *test_on_a_function_loop "
            "at test_inner.py:10;",
            "  used on   loop #2 (0x*), in test_inner.py::test_on_a_function_loop at test_inner.py:17; this test's "
            'loop scope is "function".',
            '*@pytest_asyncio.fixture(scope="session",',
            '*loop_scope="session") and @pytest.mark.asyncio(loop_scope="session") on the tests*',
        ]
    )


MODULE_ENGINE = """
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from models import URL

ENGINE = create_async_engine(URL)

@pytest.mark.asyncio
async def test_first():
    async with ENGINE.connect() as conn:
        await conn.execute(text("select 1"))

@pytest.mark.asyncio
async def test_second():
    async with ENGINE.connect() as conn:
        await conn.execute(text("select 1"))
"""


@pytest.mark.local_servers
def test_a_module_level_engine_names_the_test_that_opened_it(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GL_URL", DATABASES["postgresql"])
    result = runner.run(MODULE_ENGINE, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "  opened on loop #1 (0x*), in test_inner.py::test_first at test_inner.py:10;",
            '  used on   loop #2 (0x*), in test_inner.py::test_second at test_inner.py:15; this test*"function".',
        ]
    )


UNDISPOSED = """
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from models import URL

ENGINES = []

@pytest_asyncio.fixture
async def leaky():
    engine = create_async_engine(URL, poolclass=AsyncAdaptedQueuePool)  # SQLAlchemy 1.4 gives SQLite files a NullPool
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))
    ENGINES.append(engine)
    yield engine                          # never disposed

@pytest.mark.asyncio
async def test_uses_it(leaky):
    pass

def test_its_loop_closed_with_the_connection_still_pooled():
    # The first test's loop has closed: a connection still in the pool can no longer be closed on it.
    try:
        assert ENGINES[0].sync_engine.pool.checkedin() == 0
    finally:
        import asyncio
        asyncio.run(ENGINES[0].dispose())  # old aiosqlite's thread would keep this process alive
"""


def test_undisposed_engines_are_listed(runner: Runner) -> None:
    result = runner.run(UNDISPOSED, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: 1 engine(s) not disposed before their event loop closed*",
            "  sqlite+aiosqlite:///*test.db: first connected on loop #1 (0x*), while fixture 'leaky' (scope "
            "function) was set up for test_inner.py::test_uses_it at test_inner.py:13",
            '*fails with "Event loop is closed"*',
            "*or set greenlight_dispose_engines = true.",
        ]
    )


def test_dispose_engines_option(runner: Runner) -> None:
    runner.run(UNDISPOSED, "-p", "no:randomly", plugin=False).assert_outcomes(passed=1, failed=1)
    result = runner.run(UNDISPOSED, "-p", "no:randomly", ini="greenlight_dispose_engines = true")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: 1 engine(s) not disposed before their event loop closed*",
            "greenlight_dispose_engines = true disposed them on their loop before it closed.",
        ]
    )
