"""Helpers for testing the plugin through pytester, in a subprocess, with plugin autoload disabled.

Each inner run names its plugins explicitly (``-p``), so "with the plugin" and "without it" differ by one flag —
which is how each test shows it can fail.
"""

from __future__ import annotations

import os
import textwrap
import uuid
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
        self, source: str, *args: str, plugin: bool = True, mode: str = "strict", ini: str = "", autoload: bool = False
    ) -> pytest.RunResult:
        """Run ``source`` as test_inner.py. ``autoload``: as a user has it, every installed plugin loads itself."""
        self.pytester.makepyfile(models=MODELS, test_inner=textwrap.dedent(source))
        self.pytester.makeconftest(INNER_CONFTEST)
        extra = ini
        if _asyncio_version() >= (0, 24):
            extra += "\nasyncio_default_fixture_loop_scope = function"
        self.pytester.makeini(INI.format(mode=mode, extra=extra))
        plugins = () if autoload else BASE_PLUGINS + (GREENLIGHT if plugin else ())
        return self.pytester.runpytest_subprocess(*plugins, "-p", "no:cacheprovider", *args)


def _asyncio_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("pytest-asyncio").split(".")[:2])


@pytest.fixture
def runner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("GL_SUFFIX", uuid.uuid4().hex[:8])
    url = DATABASES["sqlite"].format(tmp=pytester.path)
    monkeypatch.setenv("GL_URL", url)
    return Runner(pytester, url)


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
os.environ.setdefault("GL_SUFFIX", "unset")
