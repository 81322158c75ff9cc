"""The portal under each runner and mode: pytest-asyncio strict/auto and loop scopes, anyio; trio left alone."""

from __future__ import annotations

import pytest

from .conftest import PYTEST_ASYNCIO_VERSION, Runner

AUTO_MODE = """
from sqlalchemy import select
from models import User

async def test_auto_mode(session):
    user = (await session.execute(select(User))).scalar_one()
    assert user.addresses[0].email == "a@example.invalid"

class TestClassBased:
    async def test_in_class(self, session):
        user = (await session.execute(select(User))).scalar_one()
        assert len(user.addresses) == 1
"""


def test_auto_mode_and_class_based_tests(runner: Runner) -> None:
    runner.run(AUTO_MODE, mode="auto").assert_outcomes(passed=2)
    runner.run(AUTO_MODE, mode="auto", plugin=False).assert_outcomes(failed=2)


LOOP_SCOPE = """
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from models import URL, User, fresh_tables

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_session():
    engine = create_async_engine(URL)
    await fresh_tables(engine)
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()

@pytest.mark.asyncio(loop_scope="module")
async def test_one(module_session):
    user = await module_session.get(User, 1)
    assert len(user.addresses) == 1

@pytest.mark.asyncio(loop_scope="module")
async def test_two(module_session):
    user = await module_session.get(User, 1)
    await module_session.commit()
    assert user.name == "alice"
"""


@pytest.mark.skipif(PYTEST_ASYNCIO_VERSION < (0, 24), reason="loop_scope arrived in pytest-asyncio 0.24")
def test_module_loop_scope(runner: Runner) -> None:
    runner.run(LOOP_SCOPE).assert_outcomes(passed=2)
    runner.run(LOOP_SCOPE, plugin=False).assert_outcomes(failed=2)


ANYIO = """
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from models import URL, User, fresh_tables

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.fixture
async def anyio_session(anyio_backend):
    engine = create_async_engine(URL)
    await fresh_tables(engine)
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()

@pytest.mark.anyio
async def test_anyio(anyio_session):
    user = (await anyio_session.execute(select(User))).scalar_one()
    assert len(user.addresses) == 1
"""


def test_anyio_asyncio_backend(runner: Runner) -> None:
    runner.run(ANYIO).assert_outcomes(passed=1)
    runner.run(ANYIO, plugin=False).assert_outcomes(failed=1)


SYNC_AND_PLAIN = """
import asyncio
import pytest

def test_sync():
    assert asyncio.get_event_loop_policy() is not None

@pytest.mark.asyncio
async def test_plain_async():
    await asyncio.sleep(0)

@pytest.mark.asyncio
async def test_plain_failure():
    raise KeyError("boom")
"""


def test_tests_without_sqlalchemy_behave_the_same(runner: Runner) -> None:
    with_plugin = runner.run(SYNC_AND_PLAIN)
    without = runner.run(SYNC_AND_PLAIN, plugin=False)
    with_plugin.assert_outcomes(passed=2, failed=1)
    without.assert_outcomes(passed=2, failed=1)
    # The failure points at the user's line, not at portal internals.
    with_plugin.stdout.fnmatch_lines(["*raise KeyError*", "E       KeyError: 'boom'", "test_inner.py:*: KeyError"])
    assert "portal.py" not in with_plugin.stdout.str()


def test_header_and_help(runner: Runner) -> None:
    header = runner.run(SYNC_AND_PLAIN, "--greenlight-strict")
    header.stdout.fnmatch_lines(["greenlight 0.1.0: portal on, mode strict*sqlalchemy *"])
    helptext = runner.pytester.runpytest_subprocess("-p", "pytest_greenlight.hooks", "--help")
    helptext.stdout.fnmatch_lines(["*--greenlight-strict*", "*greenlight_strict*"])


def test_missing_greenlet_is_a_clear_usage_error(runner: Runner) -> None:
    # The real situation is "SQLAlchemy 2.1 installed without its [asyncio] extra". Building such an environment in
    # a test is slow, so a sitecustomize hides greenlet from the inner interpreter instead (a stand-in, said here).
    runner.pytester.makepyfile(
        sitecustomize="import sys\nsys.modules['greenlet'] = None\n",
    )
    runner.pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = runner.pytester.runpytest_subprocess("-p", "pytest_greenlight.hooks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs the 'greenlet' package*", "*pip install 'sqlalchemy?asyncio?'*"])


TRIO = """
import pytest
from pytest_greenlight import in_portal

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

@pytest.mark.anyio
async def test_backend(anyio_backend):
    # The portal serves asyncio only; trio's run is left exactly as it was.
    assert in_portal() is (anyio_backend == "asyncio")
"""


def test_trio_backend_is_left_untouched(runner: Runner) -> None:
    pytest.importorskip("trio")
    runner.run(TRIO).assert_outcomes(passed=2)
    # Without the plugin the asyncio case is not in a portal: the same file fails once, which shows the check bites.
    runner.run(TRIO, plugin=False).assert_outcomes(passed=1, failed=1)
