"""Gather: concurrency inside one test, on one engine, session or connection; pools and cancellation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import literal, select, text

from matrix.scenarios.core import NOT_RUNNER, PASS, not_applicable, pass_or_raises, raises, scenario, when
from matrix.scenarios.support import checked_out, make_engine, pooled_engine, targets

# A wait far longer than any of these scenarios needs: hitting it means a hang, recorded as TimeoutError.
HANG = 20.0
# Statements that keep a connection busy for a while, per database kind.
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
    "SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(3)",
    "mysql": "SELECT SLEEP(3)",
}
# Made at import, outside any running loop, like the lock inside `databases`' Database object (its force-rollback
# bug): Python < 3.10 binds a lock to the loop current at creation, 3.10+ to the first loop that waits on it.
LOCKS = {target.id: asyncio.Lock() for target in targets()}


# depends=NOT_RUNNER (every scenario below): each is one function-scoped async test with sync fixtures (set-up DDL
# runs on a loop of its own) that awaits every task it starts and disposes its engine before it returns. The loop
# pytest-asyncio hands it (0.21's event_loop fixture, 1.x's runner, 1.4's loop factory), that loop's end (1.1 cancels
# what is left: nothing is) and pytest's warning handling do not reach what it checks: the pool, the driver and the
# database under concurrency. The lock of gather/lock-outside-loop binds to the first loop that waits on it (Python
# >= 3.10), whichever loop that is. Where the portal is in place on pytest-asyncio's loops is checked, per
# pytest-asyncio version, by the context and implicit-io scenarios, which depend on it.


async def gather_all(*awaitables):
    """Like gather, but every task finishes before the first error is raised, so no task is still using a
    connection when the scenario disposes the engine (that would only add "Event loop is closed" noise)."""
    results = await asyncio.wait_for(asyncio.gather(*awaitables, return_exceptions=True), HANG)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _values(session_or_conn, count: int) -> list[int]:
    results = await gather_all(*(session_or_conn.execute(select(literal(i))) for i in range(count)))
    return [r.scalar() for r in results]


@scenario(
    "gather/concurrent-sessions",
    checks="ten gathered tasks, each with its own AsyncSession from one engine: right rows, no connection left out",
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_concurrent_sessions(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = pooled_engine(db)

    async def read(i: int) -> tuple[int, list[str]]:
        async with AsyncSession(engine) as session:
            names = (await session.execute(select(models.Child.name).order_by(models.Child.id))).scalars().all()
            return i, list(names)

    try:
        results = await gather_all(*(read(i) for i in range(10)))
        assert results == [(i, ["c1", "c2"]) for i in range(10)]
        assert await checked_out(engine) == 0
    finally:
        await engine.dispose()


@scenario(
    "gather/one-session",
    checks="gather over one AsyncSession: SQLAlchemy's clean error (2.0+), or right results, never a hang",
    # A race: 2.0+ raises when a second task enters the session while the first is still inside it, which is most
    # runs; when the first is out before the second comes in, the statements share the connection and the results
    # are right (SQLAlchemy 2.0.0: with and without the plugin, on PostgreSQL and MariaDB/MySQL drivers alike, in the
    # full run of 3 December 2026). Both are clean; a hang or wrong values are not.
    expect=pass_or_raises("sqlalchemy.exc.InvalidRequestError"),
    unless=[when(sqlalchemy="<2.0", expect=PASS)],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_one_session(db):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    try:
        async with AsyncSession(engine) as session:
            assert await _values(session, 5) == [0, 1, 2, 3, 4]
    finally:
        await engine.dispose()


@scenario(
    "gather/one-connection",
    checks="gather over one AsyncConnection: statements serialised, each task gets its own result, never a hang",
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_one_connection(db):
    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            assert await _values(conn, 5) == [0, 1, 2, 3, 4]
    finally:
        await engine.dispose()


@scenario(
    "gather/lock-outside-loop",
    checks="an asyncio.Lock made at import (no running loop), contended by gathered sessions in the test's loop",
    expect=PASS,
    unless=[when(python="<3.10", expect=raises("RuntimeError"))],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_lock_outside_loop(db):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = make_engine(db)
    lock = LOCKS[db.id]

    async def guarded(i: int) -> int:
        # The lock is held across IO, so the others must wait on it: that is where its loop matters.
        async with lock, AsyncSession(engine) as session:
            return (await session.execute(select(literal(i)))).scalar_one()

    try:
        assert await gather_all(*(guarded(i) for i in range(3))) == [0, 1, 2]
    finally:
        await engine.dispose()


@scenario(
    "gather/cancel-one",
    checks="cancelling one gathered task mid-query: the others finish and no connection stays checked out",
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_cancel_one(db):
    engine = pooled_engine(db)

    async def slow() -> None:
        async with engine.connect() as conn:
            await conn.execute(text(SLOW[db.kind]))

    async def fast(i: int) -> int:
        async with engine.connect() as conn:
            return (await conn.execute(select(literal(i)))).scalar_one()

    try:
        tasks = [asyncio.ensure_future(slow()), asyncio.ensure_future(fast(1)), asyncio.ensure_future(fast(2))]
        await asyncio.sleep(0.3)  # the slow statement is running on the server by now
        tasks[0].cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [1, 2]
        assert await checked_out(engine) == 0
    finally:
        await engine.dispose()


@scenario(
    "gather/task-group",
    checks="asyncio.TaskGroup of sessions from one engine: right rows, no connection left out",
    unless=[when(python="<3.11", expect=not_applicable("asyncio.TaskGroup is new in Python 3.11"))],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_task_group(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = pooled_engine(db)

    async def read(i: int) -> int:
        async with AsyncSession(engine) as session:
            return (await session.execute(select(models.Parent.id))).scalar_one() + i

    try:
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            tasks = [group.create_task(read(i)) for i in range(5)]
        assert [t.result() for t in tasks] == [1, 2, 3, 4, 5]
        assert await checked_out(engine) == 0
    finally:
        await engine.dispose()


async def _hold_all(engine, count: int, hold: float) -> list[int]:
    from sqlalchemy.ext.asyncio import AsyncSession

    async def hold_one(i: int) -> int:
        async with AsyncSession(engine) as session:
            value = (await session.execute(select(literal(i)))).scalar_one()
            await asyncio.sleep(hold)  # keeps the connection checked out
            return value

    return await gather_all(*(hold_one(i) for i in range(count)))


@scenario(
    "gather/pool-overflow-waits",
    checks="four sessions gathered on pool_size=1, max_overflow=1: the extra ones wait for a connection, all succeed",
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_pool_overflow_waits(db):
    engine = pooled_engine(db, pool_size=1, max_overflow=1, pool_timeout=10)
    try:
        assert await _hold_all(engine, 4, 0.1) == [0, 1, 2, 3]
        assert await checked_out(engine) == 0
    finally:
        await engine.dispose()


@scenario(
    "gather/pool-timeout",
    checks="four sessions gathered on pool_size=1, max_overflow=1 holding longer than pool_timeout: a clean timeout",
    expect=raises("sqlalchemy.exc.TimeoutError"),
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_pool_timeout(db):
    # The hold is four times the timeout: the third session must time out, never get a returned connection. (As
    # short as the behaviour allows: the scenario runs on every database of every cell.)
    engine = pooled_engine(db, pool_size=1, max_overflow=1, pool_timeout=0.1)
    try:
        await _hold_all(engine, 4, 0.4)
    finally:
        await engine.dispose()
