"""Every loop gets the portal, however it was made, and nothing that works without the plugin breaks with it.

Each test ran red before its fix (see the commit that added it): loops made by a loop factory had no portal and
their failure blamed threads; a ContextVar set in an async fixture was lost on Python < 3.11 with pytest-asyncio 1.x;
a loop run in a worker thread and closed from the main thread failed with "parent cannot be on a different thread";
the opt-out marker still gave new loops the portal.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from typing import Any

import pytest

from .conftest import PYTEST_ASYNCIO_VERSION, Runner

# A broken portal can leave a loop waiting for a greenlet that never switches back: end the run instead of hanging.
pytestmark = pytest.mark.timeout(120, method="thread")

LAZY_LOAD = """
import asyncio
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from models import URL, User, fresh_tables

async def count_addresses():
    engine = create_async_engine(URL)
    await fresh_tables(engine)
    try:
        async with AsyncSession(engine) as session:
            user = (await session.execute(select(User))).scalar_one()
            return len(user.addresses)  # lazy load: implicit IO
    finally:
        await engine.dispose()
"""


def _anyio_has_loop_factory() -> bool:
    from anyio._backends import _asyncio

    return "loop_factory" in inspect.signature(_asyncio.TestRunner).parameters


@pytest.mark.skipif(not _anyio_has_loop_factory(), reason="this anyio has no loop_factory backend option")
def test_anyio_loop_factory_gets_the_portal(runner: Runner) -> None:
    source = (
        LAZY_LOAD
        + """
@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": asyncio.SelectorEventLoop})

@pytest.mark.anyio
async def test_lazy_load():
    assert await count_addresses() == 1
"""
    )
    runner.run(source).assert_outcomes(passed=1)
    runner.run(source, plugin=False).assert_outcomes(failed=1)


@pytest.mark.skipif(PYTEST_ASYNCIO_VERSION < (1, 4), reason="pytest_asyncio_loop_factories arrived in 1.4")
def test_pytest_asyncio_loop_factory_hook_gets_the_portal(runner: Runner) -> None:
    runner.pytester.makepyfile(
        conftest_factories="""
import asyncio

def pytest_asyncio_loop_factories(config, item):
    return {"selector": asyncio.SelectorEventLoop, "default": asyncio.new_event_loop}
"""
    )
    source = (
        LAZY_LOAD
        + """
@pytest.mark.asyncio
async def test_lazy_load():
    assert await count_addresses() == 1
"""
    )
    with_plugin = runner.run(source, "-p", "conftest_factories", "-v")
    with_plugin.assert_outcomes(passed=2)
    with_plugin.stdout.fnmatch_lines(["*test_lazy_load?selector? PASSED*"])  # it ran on the factory's loop
    runner.run(source, "-p", "conftest_factories", plugin=False).assert_outcomes(failed=2)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner arrived in Python 3.11")
def test_asyncio_runner_with_a_loop_factory_in_a_sync_test_gets_the_portal(runner: Runner) -> None:
    source = (
        LAZY_LOAD
        + """
def test_lazy_load():
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as asyncio_runner:
        assert asyncio_runner.run(count_addresses()) == 1
"""
    )
    runner.run(source).assert_outcomes(passed=1)
    runner.run(source, plugin=False).assert_outcomes(failed=1)


USERS_OWN_TASK_FACTORY = (
    LAZY_LOAD
    + """
made = []

def counting_factory(loop, coro, **kwargs):
    made.append(coro)
    return asyncio.Task(coro, loop=loop, **kwargs)

async def in_a_child_task():
    return await asyncio.create_task(count_addresses())

def test_users_task_factory_is_kept(request):
    loop = asyncio.new_event_loop()
    loop.set_task_factory(counting_factory)
    try:
        assert loop.run_until_complete(in_a_child_task()) == 1
        assert loop.get_task_factory() is counting_factory  # as the user set it
    finally:
        loop.close()
    assert len(made) >= 2  # the main task, its child and any the driver starts: the user's factory made them

def test_a_factory_set_on_a_running_loop_is_kept():
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(counting_factory)
        try:
            count = await asyncio.create_task(count_addresses())
            return count, loop.get_task_factory() is counting_factory
        finally:
            loop.set_task_factory(None)
    made.clear()
    assert asyncio.run(main()) == (1, True)
    assert made
"""
)


def test_a_users_own_task_factory_still_makes_the_tasks(runner: Runner) -> None:
    runner.run(USERS_OWN_TASK_FACTORY).assert_outcomes(passed=2)
    runner.run(USERS_OWN_TASK_FACTORY, plugin=False).assert_outcomes(failed=2)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory arrived in Python 3.12")
def test_eager_tasks_get_the_portal_and_stay_eager(runner: Runner) -> None:
    source = (
        LAZY_LOAD
        + """
async def main():
    started = []
    async def child():
        started.append(True)
        return await count_addresses()
    task = asyncio.create_task(child())
    eager = bool(started)  # an eager task runs its first step inside create_task
    return eager, await task

def test_eager():
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        assert loop.run_until_complete(main()) == (True, 1)
    finally:
        loop.close()
"""
    )
    runner.run(source).assert_outcomes(passed=1)
    runner.run(source, plugin=False).assert_outcomes(failed=1)


def test_a_task_the_portal_does_not_serve_is_explained_as_such_not_as_a_thread(runner: Runner) -> None:
    # A task constructed directly (not through loop.create_task) is not served: the lazy load in it fails as it
    # would without the plugin, and the explanation says the task lacked the portal and how to give it one.
    source = (
        LAZY_LOAD
        + """
@pytest.mark.asyncio
async def test_lazy_load_in_an_unserved_task():
    await asyncio.Task(count_addresses())
"""
    )
    result = runner.run(source)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*greenlight: why this failed*", "*task that the greenlight portal does not serve*"])
    result.stdout.no_fnmatch_line("*e.g. in a thread*")


CONTEXTVAR_FROM_FIXTURE = """
import contextvars
import pytest
import pytest_asyncio

request_id = contextvars.ContextVar("request_id")

@pytest_asyncio.fixture
async def with_request_id():
    request_id.set("abc")
    yield

@pytest.mark.asyncio
async def test_sees_the_fixtures_contextvar(with_request_id):
    assert request_id.get() == "abc"
"""


def test_a_contextvar_set_in_an_async_fixture_reaches_the_test_as_without_the_plugin(runner: Runner) -> None:
    # pytest-asyncio carries a fixture's context into the test from 1.1 on (on Python < 3.11 through the
    # asyncio.Runner backport, which replaces asyncio.tasks.Task while it creates the task).
    without = runner.run(CONTEXTVAR_FROM_FIXTURE, plugin=False).parseoutcomes()
    if PYTEST_ASYNCIO_VERSION >= (1, 1):
        assert without == {"passed": 1}, "pytest-asyncio >= 1.1 carries fixture contexts into the test"
    runner.run(CONTEXTVAR_FROM_FIXTURE).assert_outcomes(**without)  # type: ignore[arg-type]


def test_the_opt_out_marker_leaves_new_loops_alone(runner: Runner) -> None:
    source = """
import asyncio
import pytest
from pytest_greenlight import in_portal

async def served():
    return in_portal()

@pytest.mark.greenlight(enabled=False)
def test_opted_out():
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(served()) is False
        assert vars(loop).keys().isdisjoint({"_run_once", "close", "get_task_factory", "run_forever"})
    finally:
        loop.close()

def test_not_opted_out():
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(served()) is True
    finally:
        loop.close()
"""
    runner.run(source).assert_outcomes(passed=2)


# -- loops that library code drives from its own threads ---------------------------------------------------------

LIBRARY_PORTAL = """
import asyncio
import threading

class LibraryPortal:
    # As libraries that give sync code an event loop do: a loop of their own in a daemon thread.
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

async def add(a, b):
    await asyncio.sleep(0)
    return a + b

async def gathered():
    return await asyncio.gather(*(add(i, i) for i in range(20)))
"""


def test_a_loop_driven_from_a_library_thread_behaves_as_without_the_plugin(runner: Runner) -> None:
    source = (
        LIBRARY_PORTAL
        + """
import pytest

@pytest.mark.parametrize("round", range(10))
def test_library_portal(round):
    portal = LibraryPortal()
    try:
        assert portal.call(add(1, round)) == 1 + round
        assert portal.call(gathered()) == [2 * i for i in range(20)]
    finally:
        portal.close()
    assert not portal.thread.is_alive()

def test_a_loop_first_run_here_then_in_a_worker_thread():
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(add(1, 2)) == 3
        results = []
        worker = threading.Thread(target=lambda: results.append(loop.run_until_complete(gathered())))
        worker.start()
        worker.join(timeout=30)
        assert results == [[2 * i for i in range(20)]]
        assert loop.run_until_complete(add(3, 4)) == 7  # and back on this thread
    finally:
        loop.close()
"""
    )
    for plugin in (False, True):
        result = runner.run(source, "-p", "pytest_timeout", "--timeout", "60", "-W", "error", plugin=plugin)
        result.assert_outcomes(passed=11)


def test_implicit_io_in_a_library_threads_loop_is_served_there() -> None:
    # The same shape in-process: the portal serves the loop in the thread that runs it, with drivers of that thread.
    from greenlet import getcurrent

    from pytest_greenlight import install

    try:
        from sqlalchemy.util import await_ as await_only
    except ImportError:  # SQLAlchemy < 2.1
        from sqlalchemy.util import await_only

    async def later(value: Any) -> Any:
        await asyncio.sleep(0.01)
        return value

    async def served() -> tuple[Any, Any]:
        return await_only(later("io")), getcurrent()

    loop = asyncio.new_event_loop()
    install(loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        value, greenlet_there = asyncio.run_coroutine_threadsafe(served(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
    loop.close()  # from this thread, whose greenlets never ran the loop
    assert value == "io"
    assert greenlet_there is not getcurrent()
    assert loop.is_closed()


# -- cancellation counters ------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() arrived in Python 3.11")
@pytest.mark.parametrize("portal", [True, False], ids=["portal", "no-portal"])
def test_cancelling_counts_a_cancel_of_a_task_in_implicit_io(portal: bool) -> None:
    # What anyio's cancel scopes, TaskGroup and asyncio.timeout read. Without the portal the task awaits the same IO
    # explicitly (implicit IO would fail): the counters must read the same.
    from pytest_greenlight import install

    try:
        from sqlalchemy.util import await_ as await_only
    except ImportError:  # SQLAlchemy < 2.1
        from sqlalchemy.util import await_only

    seen: dict[str, Any] = {}

    async def slow() -> None:
        await asyncio.sleep(10)

    async def worker() -> None:
        try:
            if portal:
                await_only(slow())
            else:
                await slow()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            seen["in_worker"] = task.cancelling()
            seen["after_uncancel"] = task.uncancel()

    async def main() -> None:
        task = asyncio.create_task(worker())
        await asyncio.sleep(0.05)
        task.cancel()
        seen["after_cancel"] = task.cancelling()
        await task

    loop = asyncio.new_event_loop()
    if portal:
        install(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == {"after_cancel": 1, "in_worker": 1, "after_uncancel": 0}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout arrived in Python 3.11")
def test_timeout_around_implicit_io_raises_timeout_error() -> None:
    from pytest_greenlight import install

    try:
        from sqlalchemy.util import await_ as await_only
    except ImportError:  # SQLAlchemy < 2.1
        from sqlalchemy.util import await_only

    async def main() -> str:
        try:
            async with asyncio.timeout(0.05):  # noqa: ASYNC100  (the wait is implicit IO, served by the portal)
                await_only(asyncio.sleep(10))
        except TimeoutError:
            return "timed out"
        return "not cancelled"

    loop = asyncio.new_event_loop()
    install(loop)
    try:
        assert loop.run_until_complete(main()) == "timed out"
    finally:
        loop.close()


@pytest.mark.parametrize("portal", [True, False], ids=["portal", "no-portal"])
def test_task_names_and_the_task_class_are_what_asyncio_makes(portal: bool) -> None:
    from pytest_greenlight import install

    async def main() -> tuple[str, bool, str]:
        task = asyncio.create_task(asyncio.sleep(0, "done"), name="named by the user")
        return task.get_name(), isinstance(task, asyncio.Task), await task

    loop = asyncio.new_event_loop()
    if portal:
        install(loop)
    try:
        assert loop.run_until_complete(main()) == ("named by the user", True, "done")
    finally:
        loop.close()
