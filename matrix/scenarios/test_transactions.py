"""Transactions: rolling back what a test (or the application code it calls) committed."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from matrix.scenarios.core import NOT_RUNNER, not_applicable, scenario, when
from matrix.scenarios.support import Target, make_engine


def real_savepoints(engine, db: Target) -> None:
    """pysqlite/aiosqlite emit no BEGIN and so break SAVEPOINT; SQLAlchemy's documented recipe fixes that.
    Users of SQLite need it for these patterns, so the scenarios apply it as a user would."""
    if db.kind != "sqlite":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _explicit_begin(conn):
        conn.exec_driver_sql("BEGIN")


async def _count(db: Target, models) -> int:
    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(models.Child.__table__))).scalar_one()
    finally:
        await engine.dispose()


# depends=NOT_RUNNER for savepoint and commit-in-app-code-rolled-back: one function-scoped async test with sync
# fixtures, explicit IO only, engine disposed before it returns; what it checks is SQLAlchemy's and the database's
# transaction handling. rollback-per-test relies on implicit IO (a lazy load), so on the portal being put on the
# loop pytest-asyncio makes: it depends on everything.


@scenario(
    "transactions/rollback-per-test",
    checks='application code commits through a session joined with join_transaction_mode="create_savepoint"; '
    "rolling back the outer transaction afterwards removes the rows",
    unless=[when(sqlalchemy="<2.0", expect=not_applicable("join_transaction_mode is new in SQLAlchemy 2.0"))],
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_rollback_per_test(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    real_savepoints(engine, db)
    try:
        async with engine.connect() as conn:
            outer = await conn.begin()  # what a per-test fixture opens
            session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
            parent = await session.get(models.Parent, 1)
            parent.children.append(models.Child(id=3, name="c3"))  # lazy load, then the app code's commit:
            await session.commit()
            assert len(parent.children) == 3  # expired by the commit: reloaded inside the outer transaction
            await session.close()
            await outer.rollback()  # what the fixture does at teardown
        assert await _count(db, models) == 2
    finally:
        await engine.dispose()


@scenario(
    "transactions/savepoint",
    checks="begin_nested(): a rolled-back savepoint discards its rows, a released one keeps them",
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_savepoint(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    real_savepoints(engine, db)
    try:
        async with AsyncSession(engine) as session, session.begin():
            nested = await session.begin_nested()
            session.add(models.Child(id=3, parent_id=1, name="dropped"))
            await session.flush()  # the row must reach the database: only then is ROLLBACK TO SAVEPOINT tested
            await nested.rollback()
            async with session.begin_nested():
                session.add(models.Child(id=4, parent_id=1, name="kept"))
        async with engine.connect() as conn:
            ids = (await conn.execute(select(models.Child.id).order_by(models.Child.id))).scalars().all()
        assert ids == [1, 2, 4]
    finally:
        await engine.dispose()


@scenario(
    "transactions/commit-in-app-code-rolled-back",
    checks="a fixture wraps the test in a connection-level transaction; the app's session.commit() inside the "
    "test only releases a savepoint, and the fixture's rollback leaves the table as it was",
    unless=[when(sqlalchemy="<2.0", expect=not_applicable("join_transaction_mode is new in SQLAlchemy 2.0"))],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_commit_in_app_code_rolled_back(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    async def app_code(session) -> None:  # knows nothing about tests: it commits
        session.add(models.Child(id=5, parent_id=1, name="app"))
        await session.commit()

    engine = make_engine(db)
    real_savepoints(engine, db)
    try:
        async with engine.connect() as conn:
            outer = await conn.begin()
            async with AsyncSession(bind=conn, join_transaction_mode="create_savepoint") as session:
                await app_code(session)
                await app_code_check(session, models)
            await outer.rollback()
        assert await _count(db, models) == 2
    finally:
        await engine.dispose()


async def app_code_check(session, models) -> None:
    """Inside the test the committed row is visible."""
    assert (await session.execute(select(func.count()).select_from(models.Child.__table__))).scalar_one() == 3
