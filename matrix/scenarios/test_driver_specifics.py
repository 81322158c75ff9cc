"""Driver specifics: behaviour that differs by driver and that async test suites run into."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, literal, select, text

from matrix.scenarios.core import NOT_RUNNER, PASS, not_applicable, raises, scenario, when
from matrix.scenarios.support import checked_out, make_engine, pooled_engine, unique_prefix

# depends=NOT_RUNNER (every scenario below): one function-scoped async test with sync fixtures that disposes its
# engine before it returns, about a driver's or a database's own behaviour (statement cache, autocommit, in-memory
# SQLite, abandoned streams: warnings caught by the test itself): pytest-asyncio's loop handling and pytest cannot
# change it.


@scenario(
    "driver-specifics/asyncpg-statement-cache-after-ddl",
    checks="asyncpg caches a prepared SELECT *; another connection changes the table; the next run of the "
    "same statement fails cleanly, and the one after that works again",
    expect=not_applicable("asyncpg's prepared-statement cache"),
    unless=[when(driver="asyncpg", expect=raises("sqlalchemy.exc.NotSupportedError"))],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_asyncpg_statement_cache(db):
    name = f"{unique_prefix()}cache"
    engine = make_engine(db)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {name} (id integer primary key, v text)"))
            await conn.execute(text(f"INSERT INTO {name} VALUES (1, 'a')"))
        statement = text(f"SELECT * FROM {name}")
        async with engine.connect() as conn:
            await conn.execute(statement)  # prepared and cached on this connection
            await conn.commit()  # an open transaction would hold a lock that makes the ALTER below wait forever
            other = make_engine(db)
            try:
                async with other.begin() as ddl:
                    await ddl.execute(text(f"ALTER TABLE {name} ALTER COLUMN v TYPE varchar(10)"))
            finally:
                await other.dispose()
            try:
                await conn.execute(statement)
            finally:
                await conn.rollback()
                assert (await conn.execute(statement)).all() == [(1, "a")]  # the cache was invalidated
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        await engine.dispose()


@scenario(
    "driver-specifics/mysql-autocommit-off",
    checks="aiomysql/asyncmy connections run statements in a transaction (autocommit off): an uncommitted "
    "insert is invisible to another connection and gone after rollback",
    expect=not_applicable("MySQL drivers' autocommit default"),
    unless=[when(database="mysql", expect=PASS)],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_mysql_autocommit_off(db, models):
    engine = pooled_engine(db)
    table = models.Child.__table__
    try:
        async with engine.connect() as writer, engine.connect() as reader:
            await writer.execute(table.insert().values(id=9, parent_id=1, name="uncommitted"))
            assert (await reader.execute(select(table.c.id).where(table.c.id == 9))).all() == []
            await writer.rollback()
        async with engine.connect() as conn:
            assert (await conn.execute(select(table.c.id).where(table.c.id == 9))).all() == []
    finally:
        await engine.dispose()


@scenario(
    "driver-specifics/aiosqlite-memory-across-connections",
    checks="sqlite+aiosqlite:// (in-memory): a table created on one connection exists on the next one",
    expect=not_applicable("SQLite only"),
    unless=[when(database="sqlite", expect=PASS)],
    depends=NOT_RUNNER,
)
@pytest.mark.asyncio
async def test_aiosqlite_memory(db):
    engine = make_engine(db.__class__(db.name, db.kind, db.driver, "sqlite+aiosqlite://"))
    table = Table("memory_t", MetaData(), Column("id", Integer, primary_key=True), Column("v", String(10)))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(table.insert().values(id=1, v="x"))
        async with engine.connect() as conn:
            assert (await conn.execute(select(table.c.v))).scalars().all() == ["x"]
    finally:
        await engine.dispose()


@scenario(
    "driver-specifics/stream-left-early",
    checks="session.stream() and stream_scalars() abandoned after the first row and closed: the session keeps "
    "working, the driver is left no unread rows to warn about, and no connection stays checked out",
    depends=NOT_RUNNER,
    # AsyncResult.close() calls Result.close(), which SQLAlchemy added in 1.4.27 (1.4.24-1.4.26 raise
    # "'ChunkedIteratorResult' object has no attribute 'close'" whatever the driver): nothing to check there.
    unless=[when(sqlalchemy="<1.4.27", expect=not_applicable("AsyncResult.close() needs SQLAlchemy >= 1.4.27"))],
)
@pytest.mark.asyncio
async def test_stream_left_early(db, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = pooled_engine(db)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with AsyncSession(engine) as session, session.begin():
                # yield_per makes the ORM really stream: without it, it reads every row before returning the first,
                # and nothing would be left behind on the connection to abandon.
                result = await session.stream(
                    select(models.Child.name).order_by(models.Child.id).execution_options(yield_per=1)
                )
                async for row in result:
                    assert row == ("c1",)
                    break
                await result.close()
                scalars = await session.stream_scalars(
                    select(models.Child.id).order_by(models.Child.id).execution_options(yield_per=1)
                )
                async for first in scalars:
                    assert first == 1
                    break
                await scalars.close()
                assert (await session.execute(select(literal(7)))).scalar_one() == 7
        # A stream that close() left open goes unnoticed by the next statement: MySQL drivers read its rows away and
        # only warn "Previous unbuffered result was left incomplete" (a UserWarning). That warning is the tell.
        assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
        assert await checked_out(engine) == 0
    finally:
        await engine.dispose()
