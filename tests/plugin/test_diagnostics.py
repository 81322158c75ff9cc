"""Explanations attached to failures caused by async plumbing, and the loop-aware engine fixture that avoids them."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import MissingGreenlet

from pytest_greenlight import diagnostics
from pytest_greenlight.implicit_io import ImplicitIOError

from .conftest import DATABASES, PYTEST_ASYNCIO_VERSION, Runner


@pytest.mark.parametrize(
    ("error", "portal_enabled", "expected"),
    [
        (
            MissingGreenlet("greenlet_spawn has not been called"),
            False,
            diagnostics.MISSING_GREENLET_PORTAL_OFF,
        ),
        (
            MissingGreenlet("greenlet_spawn has not been called"),
            True,
            diagnostics.MISSING_GREENLET_OUTSIDE_PORTAL,
        ),
        (
            RuntimeError("Task got Future <Future pending> attached to a different loop"),
            True,
            diagnostics.DIFFERENT_LOOP,
        ),
        (RuntimeError("Event loop is closed"), True, diagnostics.LOOP_CLOSED),
        (
            RuntimeError("cannot perform operation: another operation is in progress"),
            True,
            diagnostics.CONCURRENT_OPERATION,
        ),
        (
            RuntimeError(
                "ScopeMismatch: You tried to access the function scoped fixture event_loop with a module scoped "
                "request object, involved factories:"
            ),
            True,
            diagnostics.LOOP_SCOPE_MISMATCH.format(scope="module"),
        ),
        (ImplicitIOError("greenlight strict mode: ..."), True, None),
        (KeyError("unrelated"), True, None),
    ],
)
def test_each_message_is_chosen_for_its_cause(error: BaseException, portal_enabled: bool, expected: str | None) -> None:
    assert diagnostics.explain(error, portal_enabled=portal_enabled) == expected


def test_the_cause_is_found_down_the_chain() -> None:
    outer = ValueError("wrapper")
    outer.__cause__ = RuntimeError("Event loop is closed")
    assert diagnostics.explain(outer, portal_enabled=True) == diagnostics.LOOP_CLOSED


# A session-scoped engine whose pooled connection was opened on the first test's loop, reused on the second's.
WRONG_LOOP = """
import pytest
import pytest_asyncio
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
def test_engine_used_on_another_loop_is_explained(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GL_URL", DATABASES["postgresql"])
    result = runner.run(WRONG_LOOP)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*greenlight: why this failed*", "*pooled connection was used on another event loop than the one it was*"]
    )


LOOP_ENGINES = """
import pytest
from sqlalchemy import func, select, text
from models import URL, Base, User
from pytest_greenlight import greenlight_engine

db = greenlight_engine(URL, name="db", scope="session")

@pytest.fixture(scope="session", autouse=True)
def tables():
    import asyncio
    from sqlalchemy.ext.asyncio import create_async_engine
    async def create():
        engine = create_async_engine(URL)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        await engine.dispose()
    asyncio.run(create())

@pytest.mark.asyncio
async def test_commit_inside_the_test(db):
    async with db.session() as session:
        session.add(User(id=1, name="alice"))
        await session.commit()                       # code under test commits
        assert (await session.execute(select(func.count(User.id)))).scalar() == 1

@pytest.mark.asyncio
async def test_next_test_sees_nothing(db):
    async with db.session() as session:
        assert (await session.execute(select(func.count(User.id)))).scalar() == 0

@pytest.mark.asyncio
async def test_third_loop_same_engine_fixture(db):
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("select 1"))).scalar() == 1
"""


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.local_servers),
        pytest.param("mariadb", marks=pytest.mark.local_servers),
    ],
)
def test_loop_engines_across_function_loops(runner: Runner, monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    monkeypatch.setenv("GL_URL", DATABASES[database].format(tmp=runner.pytester.path))
    # -W error: a "non-checked-in connection" GC warning or an "Event loop is closed" teardown error fails the run.
    result = runner.run(LOOP_ENGINES, "-W", "error", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "Event loop is closed" not in result.stdout.str()
    assert "non-checked-in" not in result.stdout.str()


EVENT_LOOP_ARGUMENT = """
import pytest

@pytest.mark.asyncio
async def test_old_style(event_loop):
    assert event_loop.is_running()
"""


@pytest.mark.skipif(
    PYTEST_ASYNCIO_VERSION < (1, 0), reason="pytest-asyncio < 1.0 still provides the event_loop fixture"
)
def test_removed_event_loop_fixture_gets_the_migration(runner: Runner) -> None:
    bare = runner.run(EVENT_LOOP_ARGUMENT, plugin=False)
    bare.assert_outcomes(errors=1)
    bare.stdout.fnmatch_lines(["*fixture 'event_loop' not found*"])
    result = runner.run(EVENT_LOOP_ARGUMENT)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: why this failed*",
            "pytest-asyncio 1.0 removed the `event_loop` fixture. The migration, in two lines:",
            "    loop = asyncio.get_running_loop()  * instead of an event_loop argument",
            '    @pytest.mark.asyncio(loop_scope="session")  * instead of an event_loop fixture overridden *',
        ]
    )


SESSION_FIXTURE_FUNCTION_LOOPS = """
import asyncio
import pytest
import pytest_asyncio

@pytest_asyncio.fixture(scope="session")
async def engine():
    yield asyncio.get_running_loop()

@pytest.mark.asyncio
async def test_uses_it(engine):
    assert engine is asyncio.get_running_loop()
"""


def test_session_fixture_on_function_loops_gets_the_migration(runner: Runner) -> None:
    # pytest-asyncio 0.21: ScopeMismatch on event_loop; 1.x (fixture loop scope function): on its loop runner.
    bare = runner.run(SESSION_FIXTURE_FUNCTION_LOOPS, plugin=False)
    bare.assert_outcomes(errors=1)
    bare.stdout.fnmatch_lines(["*ScopeMismatch: You tried to access the function scoped fixture*"])
    result = runner.run(SESSION_FIXTURE_FUNCTION_LOOPS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: why this failed*",
            "A session-scoped async fixture was set up with function-scoped event loops*",
            '    @pytest_asyncio.fixture(scope="session", loop_scope="session")   # the fixture runs on a session*',
            '    @pytest.mark.asyncio(loop_scope="session")  * and so do the tests that use it',
        ]
    )
