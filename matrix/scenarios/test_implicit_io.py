"""Implicit IO: the places where sync SQLAlchemy code under an async API does IO without an ``await``."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from sqlalchemy import select

from matrix.scenarios.core import NOT_DATABASE, PASS, not_applicable, raises, scenario, when
from matrix.scenarios.nested import NESTED_TIMEOUT, own_run, run_nested
from matrix.scenarios.support import greenlight_marker, make_engine


def await_only(awaitable):
    """SQLAlchemy's bridge from sync code to the running loop: ``await_only`` up to 2.0, ``await_`` in 2.1."""
    from sqlalchemy import util

    bridge = getattr(util, "await_only", None) or util.await_
    return bridge(awaitable)


@pytest_asyncio.fixture
async def engine(db, models):
    engine = make_engine(db)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def children_count(engine, models):
    """A fixture that lazily loads: its value is computed through implicit IO."""
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as session:
        parent = (await session.execute(select(models.Parent))).scalar_one()
        return len(parent.children)


# depends: everything (the default): the engine comes from an async fixture, and implicit IO is served by the
# portal put on the loop pytest-asyncio makes (its loop factory, its scope); the implicit-IO report is pytest's
# terminal summary.
@scenario(
    "implicit-io/lazy-load-in-fixture",
    checks="an async fixture lazily loads a relationship while building its value",
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_lazy_load_in_fixture(children_count):
    assert children_count == 2


@scenario(
    "implicit-io/lazy-load-in-gathered-tasks",
    checks="five gathered child tasks, each with its own session, lazily load relationships (many-to-one too)",
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_lazy_load_in_gathered_tasks(engine, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    async def child_task(child_id: int) -> tuple[str, int]:
        async with AsyncSession(engine) as session:
            child = await session.get(models.Child, child_id)
            return child.parent.name, len(child.parent.children)  # two lazy loads in a child task

    results = await asyncio.gather(*(child_task(1 + i % 2) for i in range(5)))
    assert results == [("p1", 2)] * 5


@scenario(
    "implicit-io/sync-helper",
    checks="a sync helper (no async def) does IO through SQLAlchemy's await_only/await_, called from the test",
    implicit_io=True,
)
@pytest.mark.asyncio
async def test_sync_helper(engine, models):
    def count_children_sync(conn) -> int:  # the kind of helper legacy code has
        result = await_only(conn.execute(select(models.Child.id)))
        return len(result.all())

    async with engine.connect() as conn:
        assert count_children_sync(conn) == 2


@scenario(
    "implicit-io/strict-refuses",
    checks="@pytest.mark.greenlight(strict=True): a lazy load raises MissingGreenlet, as in production",
    expect=raises("sqlalchemy.exc.MissingGreenlet"),
)
@greenlight_marker(strict=True)
@pytest.mark.asyncio
async def test_strict_refuses(engine, models):
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as session:
        parent = (await session.execute(select(models.Parent))).scalar_one()
        assert len(parent.children) == 2


@scenario(
    "implicit-io/report-lists-sites",
    checks="without strict mode, the end-of-run report names each implicit-IO site (file:line) once",
    expect=not_applicable("the implicit-IO report is pytest-greenlight's own feature"),
    unless=[when(subject="greenlight", expect=PASS)],
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_report_lists_sites(db):
    files = own_run("report_lists_sites")
    result = run_nested("implicit-io/report-lists-sites", db, files, every_database=False)
    result.require(passed=1)
    lines = files["test_inner.py"].read_text(encoding="utf-8").splitlines()
    site_a = next(i for i, line in enumerate(lines, 1) if "SITE-A" in line)
    site_b = next(i for i, line in enumerate(lines, 1) if "SITE-B" in line)
    assert f"test_inner.py:{site_a}" in result.output, result.output[-3000:]
    assert f"test_inner.py:{site_b}" in result.output, result.output[-3000:]
