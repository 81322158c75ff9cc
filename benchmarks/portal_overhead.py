"""Measure what the portal costs: per suspension on a bare loop, on a SQLite ORM workload, and per implicit IO.

Run with ``nox -s bench-portal``. Plain asyncio and the portal are measured in the same process, interleaved, and the
best of several rounds of *CPU time* is compared, so the ratio is not skewed by the machine warming up or by other
processes competing for the cores. The loop runs under a 60-frame Python stack, as it does under pytest.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import Column, Integer, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import declarative_base

try:
    from sqlalchemy.util import await_ as await_only
    from sqlalchemy.util import greenlet_spawn
except ImportError:  # SQLAlchemy < 2.1
    from sqlalchemy.util import await_only, greenlet_spawn  # type: ignore[no-redef,attr-defined,unused-ignore]

from pytest_greenlight.portal import install

SUSPENSIONS = 200_000
IO_CALLS = 20_000
ROUNDS = 7

Base = declarative_base()


class Item(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "items"
    id = Column(Integer, primary_key=True)
    name = Column(String(40))


async def sleep_loop() -> None:
    for _ in range(SUSPENSIONS):
        await asyncio.sleep(0)


async def orm_workload() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    for batch in range(20):
        async with sessions() as session:
            session.add_all(Item(name=f"item-{batch}-{i}") for i in range(50))
            await session.commit()
            rows = (await session.execute(select(Item).where(Item.name.like(f"item-{batch}-%")))).scalars().all()
            assert len(rows) == 50
    await engine.dispose()


def io_calls() -> None:
    for _ in range(IO_CALLS):
        await_only(asyncio.sleep(0))


async def io_through_greenlet_spawn() -> None:
    await greenlet_spawn(io_calls)  # what production code does: explicit, SQLAlchemy's own greenlet


async def io_implicit() -> None:
    io_calls()  # the same calls straight from a test's coroutine: each one parks and resumes the loop's greenlet


PYTEST_DEPTH = 60  # Python frames between the test runner's entry and the event loop under pytest


def run(workload: Callable[[], Awaitable[None]], portal: bool, depth: int = PYTEST_DEPTH) -> float:
    if depth:
        return run(workload, portal, depth - 1)

    loop = asyncio.new_event_loop()
    if portal:
        install(loop)  # at creation, as the plugin's event-loop policy does

    async def main() -> None:
        await loop.create_task(workload())  # type: ignore[arg-type]

    start = time.process_time()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return time.process_time() - start


def compare(
    name: str,
    workload: Callable[[], Awaitable[None]],
    per: int | None = None,
    portal_workload: Callable[[], Awaitable[None]] | None = None,
) -> float:
    plain, portal = [], []
    run(workload, False)  # warm-up: imports, caches
    for _ in range(ROUNDS):
        plain.append(run(workload, False))
        portal.append(run(portal_workload or workload, True))
    plain_s, portal_s = min(plain), min(portal)
    ratio = portal_s / plain_s
    unit = ""
    if per:
        unit = f"  ({plain_s / per * 1e9:.0f} ns vs {portal_s / per * 1e9:.0f} ns each)"
    print(f"{name:<34} plain {plain_s * 1000:8.1f} ms   portal {portal_s * 1000:8.1f} ms   ratio {ratio:.3f}x{unit}")
    return ratio


def main() -> int:
    version = sys.version.split()[0]
    print(f"Python {version}, best CPU time of {ROUNDS} interleaved rounds, loop {PYTEST_DEPTH} frames deep")
    micro = compare(f"await asyncio.sleep(0) x {SUSPENSIONS:,}", sleep_loop, per=SUSPENSIONS)
    orm = compare("SQLite ORM workload (aiosqlite)", orm_workload)
    compare(f"await_only x {IO_CALLS:,}: spawn vs implicit", io_through_greenlet_spawn, IO_CALLS, io_implicit)
    print(
        f"targets: micro <= 1.30x -> {'met' if micro <= 1.30 else 'MISSED'}; "
        f"ORM <= 1.05x -> {'met' if orm <= 1.05 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
