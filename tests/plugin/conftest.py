"""Helpers for testing the plugin through pytester, in this process, with plugin autoload disabled.

Each inner run names its plugins explicitly (``-p``), so "with the plugin" and "without it" differ by one flag —
which is how each test shows it can fail.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BASE_PLUGINS = ("-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin")
GREENLIGHT = ("-p", "pytest_greenlight.hooks")

DATABASES = {
    "sqlite": "sqlite+aiosqlite:///{tmp}/test.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+aiomysql://root@127.0.0.1:3306/test",
}

# Models shared by the inner test files. Table names carry a per-run suffix: the local servers are shared.
MODELS = """
import os
from sqlalchemy import Column, ForeignKey, Integer, String
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()
SUFFIX = os.environ["GL_SUFFIX"]
URL = os.environ["GL_URL"]

class User(Base):
    __tablename__ = "gl_users_" + SUFFIX
    id = Column(Integer, primary_key=True)
    name = Column(String(50))
    addresses = relationship("Address")

class Address(Base):
    __tablename__ = "gl_addresses_" + SUFFIX
    id = Column(Integer, primary_key=True)
    user_id = Column(ForeignKey("gl_users_" + SUFFIX + ".id"))
    email = Column(String(50), default="a@example.invalid")

async def fresh_tables(engine):
    # Recreate the tables with one user who has one address: every inner fixture starts from this.
    from sqlalchemy.ext.asyncio import AsyncSession
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session:
        session.add(User(id=1, name="alice", addresses=[Address()]))
        await session.commit()
"""

# A conftest for the inner runs: `session` is an AsyncSession on fresh tables, with one user who has one address.
INNER_CONFTEST = """
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from models import URL, Base, fresh_tables

@pytest_asyncio.fixture
async def engine():
    engine = create_async_engine(URL)
    await fresh_tables(engine)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()

@pytest_asyncio.fixture
async def session(engine):
    async with AsyncSession(engine) as session:
        yield session
"""

INI = """
[pytest]
asyncio_mode = {mode}
{extra}
"""


@dataclass
class Runner:
    pytester: pytest.Pytester
    url: str

    def run(
        self,
        source: str,
        *args: str,
        plugin: bool = True,
        mode: str = "strict",
        ini: str = "",
        autoload: bool = False,
        subprocess: bool = False,
    ) -> pytest.RunResult:
        """Run ``source`` as test_inner.py. ``autoload``: as a user has it, every installed plugin loads itself.

        In this process by default: a subprocess costs ~1 CPU-second of imports per run, and the plugin undoes what
        it patches at unconfigure (the class-level ``create_task`` wrapper, its SQLAlchemy listeners, its settings),
        while pytester restores ``sys.modules``, ``sys.path`` and the working directory after each run. Pass
        ``subprocess=True`` where the run must start from a fresh interpreter (what it imports first, a
        sitecustomize, signals, process exit)."""
        self.pytester.makepyfile(models=MODELS, test_inner=textwrap.dedent(source))
        self.pytester.makeconftest(INNER_CONFTEST)
        extra = ini
        if _asyncio_version() >= (0, 24):
            extra += "\nasyncio_default_fixture_loop_scope = function"
        self.pytester.makeini(INI.format(mode=mode, extra=extra))
        plugins = () if autoload else BASE_PLUGINS + (GREENLIGHT if plugin else ())
        if subprocess:
            return self.pytester.runpytest_subprocess(*plugins, "-p", "no:cacheprovider", *args)
        return run_inprocess(self.pytester, *plugins, "-p", "no:cacheprovider", *args)


def run_inprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytester.runpytest_inprocess``, then the inner run's garbage collected with its warnings and unraisable
    exceptions dropped: the inner run had its own hooks for them, and a subprocess would have taken them away with
    it instead of leaving them to fail whichever outer test the garbage collector happens to run in."""
    result = pytester.runpytest_inprocess(*args)
    _drop_inner_garbage()
    return result


def _drop_inner_garbage() -> None:
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
    finally:
        sys.unraisablehook = hook


def _asyncio_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("pytest-asyncio").split(".")[:2])


@pytest.fixture(autouse=True)
def _no_garbage_from_earlier_tests() -> None:
    """Each test starts with the garbage of the earlier ones (inner runs in this process) collected and dropped."""
    _drop_inner_garbage()


@pytest.fixture
def runner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("GL_SUFFIX", uuid.uuid4().hex[:8])
    url = DATABASES["sqlite"].format(tmp=pytester.path)
    monkeypatch.setenv("GL_URL", url)
    # As `python -m pytest` in the subprocess runs did: the inner project's directory is on sys.path (its
    # `-p conftest_factories`, its `app` package). pytester takes it off again after the test.
    pytester.syspathinsert()
    yield Runner(pytester, url)
    _drop_inner_garbage()  # and what the test's own references (its RunResults) kept alive until now


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.local_servers),
        pytest.param("mariadb", marks=pytest.mark.local_servers),
    ]
)
def db_runner(request: pytest.FixtureRequest, runner: Runner, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """A runner whose inner tests use each database: SQLite, and the local PostgreSQL and MariaDB servers."""
    runner.url = DATABASES[request.param].format(tmp=runner.pytester.path)
    monkeypatch.setenv("GL_URL", runner.url)
    return runner


PYTEST_ASYNCIO_VERSION = _asyncio_version()

# What the inner runs import, imported once here. pytester removes from sys.modules what a run imported first, and
# a library imported afresh by the next run in the same process does not mix with the objects left from the first
# copy (SQLAlchemy keys its mappers' state by enum members of its modules; greenlet is a C extension).
for _module in (
    "greenlet",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.mysql.aiomysql",
    "sqlalchemy.dialects.mysql.asyncmy",
    "aiosqlite",
    "asyncpg",
    "aiomysql",
    "asyncmy",
    "pytest_asyncio.plugin",
    "anyio.pytest_plugin",
    "trio",
    "pytest_timeout",
    "xdist.plugin",
    "pytest_greenlight.hooks",
    "pytest_greenlight.fixtures",
    "pytest_greenlight.baseline",
    "pytest_greenlight.engines",
    "pytest_greenlight.concurrent_use",
    "pytest_greenlight.diagnostics",
    "pytest_greenlight.implicit_io",
    "pytest_greenlight.local",
    "pytest_greenlight.portal",
    "pytest_greenlight.verified",
):
    with contextlib.suppress(ImportError):  # a driver or plugin this stack does not install: its tests skip
        importlib.import_module(_module)
os.environ.setdefault("GL_SUFFIX", "unset")
