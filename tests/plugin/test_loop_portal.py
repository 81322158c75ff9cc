"""The loop-level portal (loop_portal.py): tasks run plainly and park their driver greenlet only for implicit IO.

Each test runs a real loop with ``install()`` and checks what a user can see. The ``portal`` parameter runs the same
code on a loop without the portal, where SQLAlchemy raises MissingGreenlet: the tests can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy.exc import MissingGreenlet

from pytest_greenlight import GreenThreadLocal, in_portal, install
from pytest_greenlight.portal import settings

try:
    from sqlalchemy.util import await_ as await_only
    from sqlalchemy.util import greenlet_spawn
except ImportError:  # SQLAlchemy < 2.1
    from sqlalchemy.util import await_only, greenlet_spawn

T = TypeVar("T")
# A broken portal can leave the loop waiting for a greenlet that never switches back, where a signal cannot reach
# the test: the thread method ends the whole run instead of hanging.
pytestmark = pytest.mark.timeout(60, method="thread")

with_and_without_portal = pytest.mark.parametrize("portal", [True, False], ids=["portal", "no-portal"])


def run(main: Callable[[], Awaitable[T]], portal: bool = True) -> T:
    loop = asyncio.new_event_loop()
    if portal:
        install(loop)
    try:
        return loop.run_until_complete(main())  # type: ignore[arg-type]
    finally:
        loop.close()


async def later(value: T, delay: float = 0.0) -> T:
    await asyncio.sleep(delay)
    return value


def io(value: T, delay: float = 0.0) -> T:
    """Sync code doing IO the way a lazy load does: through await_only."""
    pending = later(value, delay)
    try:
        return await_only(pending)
    except MissingGreenlet:
        pending.close()  # SQLAlchemy 1.4 leaves it unawaited
        raise


def expect(portal: bool) -> Any:
    """Without the portal, SQLAlchemy refuses the implicit IO: what each test checks must then fail."""
    return contextlib.nullcontext() if portal else pytest.raises(MissingGreenlet)


@with_and_without_portal
def test_gathered_tasks_in_implicit_io_at_once_do_not_wait_for_each_other(portal: bool) -> None:
    finished: list[str] = []

    async def task(name: str, delay: float) -> str:
        value = io(name, delay)
        finished.append(name)
        return value

    async def main() -> list[str]:
        return await asyncio.gather(task("slow", 0.3), task("fast", 0.01), task("middle", 0.1))

    with expect(portal):
        assert run(main, portal) == ["slow", "fast", "middle"]
        assert finished == ["fast", "middle", "slow"]


@with_and_without_portal
def test_many_tasks_parked_from_one_loop_iteration(portal: bool) -> None:
    # All 200 first steps run in one iteration of the loop; each parks the driver it runs in, and each resumed
    # driver finishes that iteration's count of handles (the portal tops the ready queue up for it).
    async def task(i: int) -> int:
        return io(i) + io(0)

    async def main() -> list[int]:
        return await asyncio.gather(*(task(i) for i in range(200)))

    with expect(portal):
        assert run(main, portal) == list(range(200))


@with_and_without_portal
def test_the_loop_keeps_running_while_a_task_waits_in_implicit_io(portal: bool) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> str:
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            return io("done", 0.2)
        finally:
            ticking.cancel()

    with expect(portal):
        assert run(main, portal) == "done"
        assert len(ticks) >= 5


@with_and_without_portal
def test_sqlalchemy_greenlet_made_before_its_driver_parked_keeps_working(portal: bool) -> None:
    # greenlet_spawn (behind run_sync and every ORM call) makes a greenlet whose parent is the driver of that
    # moment. Here that driver parks (another task's implicit IO) while the spawned greenlet still has IO to do.
    order: list[str] = []

    def sync_work() -> str:
        order.append(io("spawned: first IO", 0.01))
        order.append(io("spawned: second IO", 0.05))
        return "spawned: returned"

    async def spawner() -> str:
        result: str = await greenlet_spawn(sync_work)
        return result

    async def parker() -> str:
        await asyncio.sleep(0.005)  # after the spawner's first IO began: its greenlet's parent is this driver
        return io("parker", 0.2)

    async def main() -> list[str]:
        return await asyncio.gather(spawner(), parker())

    with expect(portal):
        assert run(main, portal) == ["spawned: returned", "parker"]
        assert order == ["spawned: first IO", "spawned: second IO"]


def test_errors_from_the_io_and_from_a_spawned_greenlet_keep_their_type() -> None:
    class Boom(Exception):
        pass

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise Boom("from the IO")

    def sync_work() -> None:
        io(None, 0.01)
        raise Boom("from the spawned greenlet")

    async def parker() -> None:
        await asyncio.sleep(0.005)
        io(None, 0.1)

    async def main() -> list[Any]:
        async def via_io() -> None:
            await_only(failing())

        return await asyncio.gather(via_io(), greenlet_spawn(sync_work), parker(), return_exceptions=True)

    first, second, third = run(main)
    assert isinstance(first, Boom)
    assert str(first) == "from the IO"
    assert isinstance(second, Boom)
    assert str(second) == "from the spawned greenlet"
    assert third is None


@pytest.mark.parametrize("how", ["wait_for", "cancel", "timeout"])
def test_cancelling_a_task_in_implicit_io_cancels_the_io(how: str) -> None:
    if how == "timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout needs Python 3.11")
    io_cancelled: list[bool] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            io_cancelled.append(True)
            raise
        return "never"

    async def victim() -> str:
        try:
            if how == "timeout":
                async with asyncio.timeout(0.05):  # type: ignore[attr-defined]  # noqa: ASYNC100 - the IO is implicit
                    await_only(slow())
            else:
                await_only(slow())
        except (asyncio.TimeoutError, TimeoutError):
            pass
        await asyncio.sleep(0.01)  # the task goes on normally: no second cancellation is pending
        return "went on"

    async def main() -> Any:
        start = time.monotonic()
        if how == "wait_for":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(victim(), timeout=0.05)
        elif how == "cancel":
            task = asyncio.create_task(victim())
            await asyncio.sleep(0.05)
            assert task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            assert await victim() == "went on"
        return time.monotonic() - start

    assert run(main) < 5
    assert io_cancelled == [True]


def test_contextvars_reach_the_io_and_stay_the_tasks() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read_var() -> str:
        await asyncio.sleep(0)
        return var.get()

    async def task(name: str) -> tuple[str, str]:
        var.set(name)
        seen_by_io = await_only(read_var())
        await asyncio.sleep(0)
        return seen_by_io, var.get()

    async def main() -> list[tuple[str, str]]:
        return await asyncio.gather(task("a"), task("b"))

    assert run(main) == [("a", "a"), ("b", "b")]


def test_green_thread_local_is_per_served_task() -> None:
    local = GreenThreadLocal()

    async def task(i: int) -> int:
        local.value = i
        await asyncio.sleep(0)  # the others write theirs meanwhile, in the same (driver) greenlet
        io(None, 0.01 * (3 - i))  # and again while this one is parked
        await asyncio.sleep(0)
        return int(local.value)

    async def main() -> list[int]:
        return await asyncio.gather(*(task(i) for i in range(3)))

    assert run(main) == [0, 1, 2]


def test_only_served_tasks_are_in_the_portal() -> None:
    seen: dict[str, bool] = {}

    async def where(name: str) -> None:
        seen[name] = in_portal()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.create_task(where("served task"))
        loop.call_soon(lambda: seen.setdefault("callback", in_portal()))
        settings.enabled = False
        try:
            task = asyncio.create_task(where("task made with the portal off"))
            doing_io = asyncio.create_task(_off_task_doing_io())
        finally:
            settings.enabled = True
        await task
        with pytest.raises(MissingGreenlet):
            await doing_io

    async def _off_task_doing_io() -> None:
        io(None)

    settings.enabled = True
    run(main)
    assert seen == {"served task": True, "callback": False, "task made with the portal off": False}


def test_implicit_io_hook_sees_the_parked_task_and_can_refuse() -> None:
    calls: list[bool] = []

    def hook(driver: Any) -> BaseException | None:
        names, frame = [], driver.gr_frame
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        calls.append("task" in names)  # the site is on the parked driver's stack
        return None if len(calls) == 1 else MissingGreenlet("refused")

    async def main() -> list[Any]:
        async def task() -> int:
            return io(1)

        return await asyncio.gather(task(), task(), return_exceptions=True)

    settings.on_implicit_io = hook
    try:
        first, second = run(main)
    finally:
        settings.on_implicit_io = None
    assert first == 1
    assert isinstance(second, MissingGreenlet)
    assert str(second).startswith("refused")
    assert calls == [True, True]


def test_closing_the_loop_ends_a_task_stopped_in_implicit_io() -> None:
    loop = asyncio.new_event_loop()
    install(loop)

    async def stuck() -> None:
        io(None, 60)

    task = loop.create_task(stuck())
    loop.run_until_complete(asyncio.sleep(0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.close()
        gc.collect()
    assert task.cancelled()


def test_the_loop_can_be_run_again_from_another_greenlet() -> None:
    import greenlet

    loop = asyncio.new_event_loop()
    install(loop)

    async def step(value: int) -> int:
        return io(value, 0.01)

    try:
        assert loop.run_until_complete(step(1)) == 1
        other = greenlet.greenlet(lambda: loop.run_until_complete(step(2)))
        assert other.switch() == 2
        assert loop.run_until_complete(step(3)) == 3
    finally:
        loop.close()


def test_awaiting_something_not_awaitable_fails_where_await_only_was_called() -> None:
    async def main() -> str:
        with pytest.raises(TypeError):
            await_only(42)  # type: ignore[arg-type]
        return io("the loop goes on")

    assert run(main) == "the loop goes on"


def test_drivers_are_reused_and_ended_when_the_loop_closes() -> None:
    # A suspended greenlet is never garbage collected: the portal must not leave one behind per implicit IO.
    from pytest_greenlight.loop_portal import LoopDriver

    def live_drivers() -> int:
        gc.collect()
        return sum(isinstance(obj, LoopDriver) for obj in gc.get_objects())

    before = live_drivers()
    loop = asyncio.new_event_loop()
    install(loop)

    async def main() -> None:
        for _ in range(500):
            io(None)

    loop.run_until_complete(main())
    assert live_drivers() - before <= 2  # the running one and the one that last resumed it
    loop.close()
    assert live_drivers() == before
