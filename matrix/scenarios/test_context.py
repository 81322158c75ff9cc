"""Context persistence: engines, sessions and objects made in fixtures, then used in the test."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
import pytest_asyncio
from sqlalchemy import select

from matrix.scenarios.core import NOT_DATABASE, PASS, not_applicable, raises, scenario, when
from matrix.scenarios.nested import NESTED_TIMEOUT, STRICT_LAYOUTS
from matrix.scenarios.support import make_engine


@pytest_asyncio.fixture
async def session(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            yield session
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def loaded_parent(session, models):
    """Parent 1, loaded in the fixture with its lazy relationships untouched."""
    return (await session.execute(select(models.Parent).where(models.Parent.id == 1))).scalar_one()


# depends: everything (the default), for every scenario here: async fixtures (pytest-asyncio runs them, on the
# loop of their scope), contextvars copied from fixture to test (0.25), loop scopes (0.23/0.24), a sync fixture's
# asyncio.run against the loop pytest-asyncio manages, and implicit IO through the portal put on that loop.
@scenario(
    "context/lazy-load-in-test",
    checks="an object loaded in an async fixture, then its lazy relationship loaded in the test",
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_lazy_load_in_test(loaded_parent):
    assert [child.name for child in loaded_parent.children] == ["c1", "c2"]


@scenario(
    "context/expired-after-commit",
    checks="an attribute expired by commit (expire_on_commit=True) refreshed on access in the test",
    implicit_io=True,
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


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@pytest_asyncio.fixture
async def request_id():
    token = REQUEST_ID.set("from-fixture")
    yield "from-fixture"
    REQUEST_ID.reset(token)


@scenario(
    "context/contextvar-fixture-to-test",
    checks="a ContextVar set in an async fixture is visible in the test (LookupError when it is not)",
    expect=PASS,
    # Seen: LookupError with 0.21 (3.11), 0.23 (3.9), 0.24 (3.12), 0.26 (3.10); a pass with 1.x (3.11). On
    # Python 3.10 pytest-asyncio 1.0 still loses it (LookupError, with and without the plugin, full SQLite run of
    # 2 December 2026) and 1.1 onwards carries it.
    unless=[
        when(pytest_asyncio="<0.25", expect=raises("LookupError")),
        when(python="<3.11", pytest_asyncio="<1.1", expect=raises("LookupError")),
    ],
    depends=NOT_DATABASE,
)
@pytest.mark.asyncio
async def test_contextvar_fixture_to_test(db, request_id):
    assert REQUEST_ID.get() == request_id


@scenario(
    "context/contextvar-in-implicit-io",
    checks="a ContextVar set in the test is seen by an ORM event hook that runs during a lazy load",
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_contextvar_in_implicit_io(loaded_parent, session):
    from sqlalchemy import event

    seen: list[str] = []

    def hook(orm_execute_state):
        seen.append(REQUEST_ID.get("unset"))

    event.listen(session.sync_session, "do_orm_execute", hook)
    REQUEST_ID.set("from-test")
    assert len(loaded_parent.children) == 2  # the lazy load runs the hook in the portal's greenlet
    assert seen == ["from-test"]


@scenario(
    "context/green-thread-local",
    checks="pytest_greenlight.GreenThreadLocal keeps one value per gathered task across IO and implicit IO",
    expect=not_applicable("GreenThreadLocal is pytest-greenlight's own API"),
    unless=[when(subject="greenlight", expect=PASS)],
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_green_thread_local(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    from pytest_greenlight.local import GreenThreadLocal

    local = GreenThreadLocal()
    engine = make_engine(db)

    async def task(i: int) -> tuple[int, int]:
        local.value = i
        async with AsyncSession(engine) as session:
            parent = (await session.execute(select(models.Parent))).scalar_one()
            await asyncio.sleep(0.01 * (3 - i))  # interleave the tasks
            assert len(parent.children) == 2  # implicit IO between the write and the read of the local
            return i, local.value

    try:
        assert await asyncio.gather(*(task(i) for i in range(3))) == [(0, 0), (1, 1), (2, 2)]
    finally:
        await engine.dispose()


@pytest.fixture
def seeded_with_asyncio_run(db, models):
    """A sync fixture seeding through asyncio.run, as many projects do: its own loop, closed again."""

    async def seed() -> None:
        engine = make_engine(db)
        try:
            async with engine.begin() as conn:
                await conn.execute(models.Child.__table__.insert(), [{"id": 3, "parent_id": 1, "name": "c3"}])
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return models


@scenario(
    "context/sync-fixture-asyncio-run",
    checks="a sync fixture seeds with asyncio.run (a loop of its own), then an async test reads the rows",
)
@pytest.mark.asyncio
async def test_sync_fixture_asyncio_run(db, seeded_with_asyncio_run):
    models = seeded_with_asyncio_run
    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            names = (await conn.execute(select(models.Child.name).order_by(models.Child.id))).scalars().all()
        assert names == ["c1", "c2", "c3"]
    finally:
        await engine.dispose()


# The layout (matrix/scenarios/layouts/strict/engine_session_scopes.py) writes its fixtures and tests the way the
# installed pytest-asyncio wants loop scopes expressed.
STRICT_LAYOUTS.add("engine_session_scopes")


@scenario(
    "context/engine-session-scopes",
    checks="an engine and an AsyncSession made in async fixtures of each scope (function, class, module, "
    "session) on one session-wide loop, then used in tests, explicitly and lazily",
    expect=PASS,
    # 0.23 ties each async fixture to a loop of its own scope, looked up where the fixture is defined: a
    # class-scoped fixture defined in a module finds no class loop.
    unless=[when(pytest_asyncio=">=0.23,<0.24", expect=raises("_pytest.fixtures.FixtureLookupError"))],
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_engine_session_scopes(db):
    STRICT_LAYOUTS.run("engine_session_scopes", db).require(passed=8)
