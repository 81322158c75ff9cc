"""The portal serves implicit IO in tests, fixtures and child tasks — and the same tests fail without it."""

from __future__ import annotations

import sys

import pytest

from .conftest import Runner

LAZY_LOAD_IN_TEST = """
import pytest
from sqlalchemy import select
from models import User

@pytest.mark.asyncio
async def test_lazy_load(session):
    user = (await session.execute(select(User))).scalar_one()
    assert len(user.addresses) == 1
"""

EXPIRED_AFTER_COMMIT = """
import pytest
from sqlalchemy import select
from models import User

@pytest.mark.asyncio
async def test_expired_refresh(session):
    user = (await session.execute(select(User))).scalar_one()
    user.name = "bob"
    await session.commit()          # expires every attribute
    assert user.name == "bob"       # refresh: implicit IO
"""


def test_lazy_load_in_test_body(db_runner: Runner) -> None:
    result = db_runner.run(LAZY_LOAD_IN_TEST)
    result.assert_outcomes(passed=1)


def test_lazy_load_fails_without_the_plugin(db_runner: Runner) -> None:
    result = db_runner.run(LAZY_LOAD_IN_TEST, plugin=False)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*MissingGreenlet*"])


def test_expired_attribute_after_commit(db_runner: Runner) -> None:
    db_runner.run(EXPIRED_AFTER_COMMIT).assert_outcomes(passed=1)
    db_runner.run(EXPIRED_AFTER_COMMIT, plugin=False).assert_outcomes(failed=1)


CHILD_TASKS = """
import asyncio
import sys
import pytest
from sqlalchemy import select
from models import User

async def load_name(user):
    return user.name  # expired by commit: implicit IO inside a child task

@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["gather", "create_task", "wait_for", "taskgroup"])
async def test_child_tasks(session, how):
    user = (await session.execute(select(User))).scalar_one()
    await session.commit()
    if how == "gather":
        names = await asyncio.gather(load_name(user))
    elif how == "create_task":
        names = [await asyncio.create_task(load_name(user))]
    elif how == "wait_for":
        names = [await asyncio.wait_for(load_name(user), timeout=10)]
    else:
        if sys.version_info < (3, 11):
            pytest.skip("TaskGroup needs Python 3.11")
        async with asyncio.TaskGroup() as group:
            task = group.create_task(load_name(user))
        names = [task.result()]
    assert names == ["alice"]
"""


def test_child_tasks_run_in_their_own_portal(runner: Runner) -> None:
    taskgroup = sys.version_info >= (3, 11)  # the inner run uses the same interpreter
    result = runner.run(CHILD_TASKS)
    result.assert_outcomes(passed=3 + taskgroup, skipped=1 - taskgroup)
    runner.run(CHILD_TASKS, plugin=False).assert_outcomes(failed=3 + taskgroup, skipped=1 - taskgroup)


ASYNC_FIXTURE_LAZY_LOAD = """
import pytest
import pytest_asyncio
from sqlalchemy import select
from models import User

@pytest_asyncio.fixture
async def first_email(session):
    user = (await session.execute(select(User))).scalar_one()
    yield user.addresses[0].email        # setup: lazy load inside an async fixture
    await session.commit()
    assert user.name == "alice"          # teardown: refresh of an expired attribute

@pytest.mark.asyncio
async def test_uses_fixture(first_email):
    assert first_email == "a@example.invalid"
"""


def test_async_fixture_setup_and_teardown(runner: Runner) -> None:
    runner.run(ASYNC_FIXTURE_LAZY_LOAD).assert_outcomes(passed=1)
    runner.run(ASYNC_FIXTURE_LAZY_LOAD, plugin=False).assert_outcomes(errors=1)


SYNC_HELPER = """
import pytest
from sqlalchemy import text
try:
    from sqlalchemy.util import await_ as await_only
except ImportError:
    from sqlalchemy.util import await_only

def count_users(connection):
    # a sync helper doing IO, the way adapted code often does
    table = "gl_users_" + __import__("models").SUFFIX
    return await_only(connection.exec_driver_sql("select count(*) from " + table)).scalar()

@pytest.mark.asyncio
async def test_sync_helper(engine):
    async with engine.connect() as connection:
        assert count_users(connection) == 1
"""


def test_sync_helper_calling_await_only(runner: Runner) -> None:
    runner.run(SYNC_HELPER).assert_outcomes(passed=1)
    runner.run(SYNC_HELPER, plugin=False).assert_outcomes(failed=1)


def test_summary_names_each_site_once(runner: Runner) -> None:
    result = runner.run(LAZY_LOAD_IN_TEST + EXPIRED_AFTER_COMMIT.replace("import pytest\n", ""))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*greenlight: implicit IO served by the portal*",
            "2 place(s) relied on implicit IO*",
            "  test_inner.py:*: lazy load of User.addresses (in test_inner.py::test_lazy_load)",
            # commit() expired every attribute of the user; the site names the one the test read.
            "  test_inner.py:*: refresh of expired attribute User.name (in test_inner.py::test_expired_refresh)",
        ]
    )


def test_no_summary_when_nothing_relied_on_it(runner: Runner) -> None:
    result = runner.run("import pytest\n\n@pytest.mark.asyncio\nasync def test_plain():\n    assert True\n")
    result.assert_outcomes(passed=1)
    assert "implicit IO served" not in result.stdout.str()


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(("--greenlight-strict",), id="option"),
        pytest.param(("-o", "greenlight_strict=true"), id="ini"),
    ],
)
def test_strict_mode_fails_at_the_site(runner: Runner, how: tuple[str, ...]) -> None:
    result = runner.run(LAZY_LOAD_IN_TEST, *how)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*greenlight strict mode: implicit IO at *test_inner.py:* (lazy load of User.addresses)*",
            "*selectinload*",
        ]
    )
    # The summary must not claim the portal served what strict mode refused.
    result.stdout.fnmatch_lines(
        [
            "*greenlight: implicit IO 1 refused by strict mode*",
            "  test_inner.py:*: lazy load of User.addresses (in test_inner.py::test_lazy_load, refused: the test fail*",
            "Each failed where it happened*",
        ]
    )
    assert "served by the portal" not in result.stdout.str()


def test_strict_marker_and_override(runner: Runner) -> None:
    source = LAZY_LOAD_IN_TEST.replace(
        "@pytest.mark.asyncio", "@pytest.mark.asyncio\n@pytest.mark.greenlight(strict=True)"
    )
    runner.run(source).assert_outcomes(failed=1)
    relaxed = LAZY_LOAD_IN_TEST.replace(
        "@pytest.mark.asyncio", "@pytest.mark.asyncio\n@pytest.mark.greenlight(strict=False)"
    )
    runner.run(relaxed, "--greenlight-strict").assert_outcomes(passed=1)


def test_strict_mode_fails_even_when_the_error_is_swallowed(runner: Runner) -> None:
    source = LAZY_LOAD_IN_TEST.replace(
        "    assert len(user.addresses) == 1",
        "    try:\n        user.addresses\n    except Exception:\n        pass",
    )
    result = runner.run(source, "--greenlight-strict")
    result.assert_outcomes(failed=1)
    # Raised from the test call like any failure (pytest renders it), not written into a passed report.
    result.stdout.fnmatch_lines(["*ImplicitIOError: greenlight strict mode refused implicit IO at *test_inner.py:*"])
    result.stdout.fnmatch_lines(["*and the code under test caught the*"])


def test_marker_turns_the_portal_off_and_explains(runner: Runner) -> None:
    source = LAZY_LOAD_IN_TEST.replace(
        "@pytest.mark.asyncio", "@pytest.mark.asyncio\n@pytest.mark.greenlight(enabled=False)"
    )
    result = runner.run(source)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*greenlight: why this failed*", "*portal was OFF for this test*"])


def test_installed_plugin_loads_itself_and_p_no_greenlight_turns_it_off(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a user has it: autoload on, the plugin found through its pytest11 entry point.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    runner.run(LAZY_LOAD_IN_TEST, autoload=True).assert_outcomes(passed=1)
    off = runner.run(LAZY_LOAD_IN_TEST, "-p", "no:greenlight", autoload=True)
    off.assert_outcomes(failed=1)
    off.stdout.fnmatch_lines(["*MissingGreenlet*"])
