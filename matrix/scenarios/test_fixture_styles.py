"""Fixture styles: the ways users write async fixtures and tests, each run in a nested pytest of its own.

Every inner test does explicit IO and implicit IO (a lazy load) in its fixtures and in the test, because making
that work in every style is what a greenlet plugin is for; without one, the lazy loads raise MissingGreenlet.
"""

from __future__ import annotations

import textwrap

import pytest

from matrix.scenarios.core import (
    NOT_DATABASE,
    PASS,
    current_axes,
    not_applicable,
    raises,
    scenario,
    version_matches,
    when,
)
from matrix.scenarios.nested import INNER_CONFTEST, NESTED_TIMEOUT, STRICT_LAYOUTS, has_loop_scope, ini_text, run_nested


def module(body: str) -> str:
    """An inner test module: the common imports, then ``body`` (each dedented on its own)."""
    return textwrap.dedent(_HEADER) + textwrap.dedent(body)


_HEADER = """
    import pytest
    import pytest_asyncio
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession
    from matrix.scenarios.support import make_engine
"""
# For layouts whose tests share one set of tables for the whole module (overrides the inner conftest's).
MODULE_MODELS = """
    import pytest
    from matrix.scenarios.support import create_tables, drop_tables, make_models, unique_prefix


    @pytest.fixture(scope="module")
    def models(db):
        found = make_models(unique_prefix())
        create_tables(db, found)
        yield found
        drop_tables(db, found)
"""
# The strict-mode layouts share one nested pytest per database (a fresh interpreter costs seconds); each scenario
# reads the results of its own inner module.
LAYOUTS = STRICT_LAYOUTS


_STRICT_MODE = LAYOUTS.add(
    "strict_mode",
    module("""
        @pytest_asyncio.fixture
        async def parent(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    parent = (await session.execute(select(models.Parent))).scalar_one()
                    assert len(parent.children) == 2  # implicit IO in the fixture
                    yield parent
                    parent.name = "renamed"
                    await session.commit()
                    assert parent.name == "renamed"  # implicit IO in async teardown: commit expired it
            finally:
                await engine.dispose()


        @pytest.mark.asyncio
        async def test_lazy(parent):
            assert [c.name for c in parent.children] == ["c1", "c2"]
    """),
)


# depends on pytest-asyncio and pytest, every scenario here: fixture styles, modes, loop scopes and markers are
# exactly what they implement.
@scenario(
    "fixture-styles/strict-mode",
    checks="asyncio_mode=strict: @pytest_asyncio.fixture (yield, async teardown) and @pytest.mark.asyncio tests",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_strict_mode(db):
    LAYOUTS.run("strict_mode", db).require(passed=1)


@scenario(
    "fixture-styles/auto-mode",
    checks="asyncio_mode=auto: plain @pytest.fixture async fixtures and unmarked async tests",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_auto_mode(db):
    test_module = """
        import pytest
        from sqlalchemy import select
        from sqlalchemy.ext.asyncio import AsyncSession
        from matrix.scenarios.support import make_engine


        @pytest.fixture
        async def session(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    yield session
            finally:
                await engine.dispose()


        async def test_lazy(session, models):
            parent = (await session.execute(select(models.Parent))).scalar_one()
            assert [c.name for c in parent.children] == ["c1", "c2"]
    """
    files = {"conftest.py": INNER_CONFTEST, "test_inner.py": test_module}
    run_nested("fixture-styles/auto-mode", db, files, ini=ini_text(mode="auto"), every_database=False).require(passed=1)


_YIELD_ASYNC_TEARDOWN = LAYOUTS.add(
    "yield_async_teardown",
    textwrap.dedent(MODULE_MODELS)
    + module("""
        @pytest_asyncio.fixture
        async def session(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    yield session
                    parent = (await session.execute(select(models.Parent))).scalar_one()
                    for child in list(parent.children):  # lazy load during teardown
                        await session.delete(child)
                    await session.commit()
            finally:
                await engine.dispose()


        @pytest.mark.asyncio
        async def test_first(session, models):
            assert len((await session.execute(select(models.Child))).scalars().all()) == 2


        @pytest.mark.asyncio
        async def test_second_sees_teardown(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    assert (await session.execute(select(models.Child))).scalars().all() == []
            finally:
                await engine.dispose()
    """),
)


@scenario(
    "fixture-styles/yield-async-teardown",
    checks="a yield fixture whose async teardown does IO (lazy load, delete, commit); the next test sees it ran",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_yield_async_teardown(db):
    LAYOUTS.run("yield_async_teardown", db).require(passed=2)


_CLASS_BASED = LAYOUTS.add(
    "class_based",
    module("""
        class TestParents:
            @pytest_asyncio.fixture
            async def parent(self, db, models):
                engine = make_engine(db)
                try:
                    async with AsyncSession(engine) as session:
                        yield (await session.execute(select(models.Parent))).scalar_one()
                finally:
                    await engine.dispose()

            @pytest.mark.asyncio
            async def test_children(self, parent):
                assert [c.name for c in parent.children] == ["c1", "c2"]

            @pytest.mark.asyncio
            async def test_child_parent(self, parent):
                assert parent.children[0].parent is parent
    """),
)


@scenario(
    "fixture-styles/class-based",
    checks="async test methods in a class, with an async fixture defined on the class",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_class_based(db):
    LAYOUTS.run("class_based", db).require(passed=2)


_PARAMETRIZED_AUTOUSE = LAYOUTS.add(
    "parametrized_autouse",
    module("""
        SEEN = []


        @pytest_asyncio.fixture(autouse=True)
        async def audit(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    parent = (await session.execute(select(models.Parent))).scalar_one()
                    SEEN.append(len(parent.children))  # implicit IO in an autouse fixture
                    yield
            finally:
                await engine.dispose()


        @pytest_asyncio.fixture(params=[1, 2])
        async def child(request, db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    yield await session.get(models.Child, request.param)
            finally:
                await engine.dispose()


        @pytest.mark.asyncio
        async def test_child(child):
            assert child.parent.name == "p1"  # many-to-one lazy load
            assert SEEN and SEEN[-1] == 2
    """),
)


@scenario(
    "fixture-styles/parametrized-autouse",
    checks="a parametrized async fixture and an autouse async fixture, both doing IO, around one async test",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_parametrized_autouse(db):
    LAYOUTS.run("parametrized_autouse", db).require(passed=2)


_SYNC_TEST_ASYNC_FIXTURE = LAYOUTS.add(
    "sync_test_async_fixture",
    module("""
        @pytest_asyncio.fixture
        async def names(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    return (await session.execute(select(models.Child.name))).scalars().all()
            finally:
                await engine.dispose()


        def test_sync(names):
            assert sorted(names) == ["c1", "c2"]
    """),
)


@scenario(
    "fixture-styles/sync-test-async-fixture",
    checks="a plain (sync) test requests an @pytest_asyncio.fixture that does IO",
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_sync_test_async_fixture(db):
    LAYOUTS.run("sync_test_async_fixture", db).require(passed=1)


_LOOP_SCOPE_MODULE = LAYOUTS.add(
    "loop_scope_module",
    textwrap.dedent(MODULE_MODELS)
    + module("""
        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def engine(db, models):
            engine = make_engine(db)
            yield engine
            await engine.dispose()


        @pytest.mark.asyncio(loop_scope="module")
        async def test_one(engine, models):
            async with AsyncSession(engine) as session:
                parent = (await session.execute(select(models.Parent))).scalar_one()
                assert len(parent.children) == 2


        @pytest.mark.asyncio(loop_scope="module")
        async def test_two(engine, models):
            async with AsyncSession(engine) as session:
                child = await session.get(models.Child, 2)
                assert child.parent.name == "p1"
    """),
    applies=has_loop_scope(),
)


@scenario(
    "fixture-styles/loop-scope-module",
    checks="a module-scoped engine fixture on a module-scoped loop (loop_scope), shared by two tests",
    expect=PASS,
    unless=[when(pytest_asyncio="<0.24", expect=not_applicable("loop_scope is new in pytest-asyncio 0.24"))],
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_loop_scope_module(db):
    LAYOUTS.run("loop_scope_module", db).require(passed=2)


_SESSION_ENGINE_FUNCTION_LOOP = LAYOUTS.add(
    "session_engine_function_loop",
    module("""
        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def engine(db):
            engine = make_engine(db)
            async with engine.connect() as conn:  # a pooled connection now belongs to the session loop
                await conn.execute(select(1))
            yield engine
            await engine.dispose()


        @pytest.mark.asyncio
        async def test_first(engine, models):
            async with engine.connect() as conn:
                assert (await conn.execute(select(models.Child.id))).scalars().all() == [1, 2]


        @pytest.mark.asyncio
        async def test_second(engine, models):
            async with engine.connect() as conn:
                assert (await conn.execute(select(models.Child.id))).scalars().all() == [1, 2]
    """),
    applies=has_loop_scope(),
    every_database=True,  # its expectation depends on the driver
)


@scenario(
    "fixture-styles/session-engine-function-loop",
    checks="an engine from a session-scoped fixture (session loop) used in tests on their own function loops: "
    "drivers whose connections belong to a loop fail cleanly with asyncio's cross-loop RuntimeError",
    expect=PASS,
    unless=[
        when(pytest_asyncio="<0.24", expect=not_applicable("loop_scope is new in pytest-asyncio 0.24")),
        # asyncio's cross-loop RuntimeError; asyncpg may report the rollback that follows it instead.
        when(driver="asyncpg", expect=raises("RuntimeError", "sqlalchemy.exc.InterfaceError")),
        when(driver=("aiomysql", "asyncmy"), expect=raises("RuntimeError")),
    ],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_session_engine_function_loop(db):
    LAYOUTS.run("session_engine_function_loop", db).require(passed=2)


_EVENT_LOOP_OVERRIDE = LAYOUTS.add(
    "event_loop_override",
    module("""
        import asyncio
        import warnings

        MINE = []


        @pytest.fixture
        def event_loop():
            loop = asyncio.new_event_loop()
            MINE.append(loop)
            yield loop
            loop.close()


        @pytest.mark.asyncio
        async def test_on_my_loop(db, models):
            assert asyncio.get_running_loop() is MINE[-1]
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    parent = (await session.execute(select(models.Parent))).scalar_one()
                    assert len(parent.children) == 2
            finally:
                await engine.dispose()
    """),
    applies=version_matches(current_axes().pytest_asyncio, "<1.0"),
)


@scenario(
    "fixture-styles/event-loop-override",
    checks="a user-defined event_loop fixture (the pre-1.0 way to pick a loop) runs the test on that loop",
    expect=PASS,
    unless=[when(pytest_asyncio=">=1.0", expect=not_applicable("pytest-asyncio 1.0 removed the event_loop fixture"))],
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_event_loop_override(db):
    LAYOUTS.run("event_loop_override", db).require(passed=1)


@scenario(
    "fixture-styles/anyio-marker",
    checks="@pytest.mark.anyio test (asyncio backend) with implicit IO, next to pytest-asyncio (run in a process of "
    "its own: a runner left in a bad state would break every later scenario)",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_anyio_marker(db):
    test_module = module("""
        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        @pytest.mark.anyio
        async def test_anyio(db, models):
            engine = make_engine(db)
            try:
                async with AsyncSession(engine) as session:
                    parent = (await session.execute(select(models.Parent))).scalar_one()
                    assert [c.name for c in parent.children] == ["c1", "c2"]
            finally:
                await engine.dispose()
    """)
    files = {"conftest.py": INNER_CONFTEST, "test_inner.py": test_module}
    run_nested("fixture-styles/anyio-marker", db, files, every_database=False).require(passed=1)
