"""The portal on its own, without pytest's plugin layer: plain asyncio + greenlet."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import weakref

import greenlet
import pytest
from sqlalchemy.exc import MissingGreenlet

from pytest_greenlight import GreenThreadLocal, compat, in_portal, install, run_in_portal

try:
    from sqlalchemy.util import await_ as await_only
except ImportError:  # SQLAlchemy < 2.1
    from sqlalchemy.util import await_only


async def _sync_io_in_async_code() -> int:
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 42

    pending = fetch()
    try:
        return await_only(pending)  # what a lazy load does under the hood
    except MissingGreenlet:
        pending.close()  # SQLAlchemy 1.4 leaves it unawaited; don't let the warning leak into another test
        raise


def test_await_only_works_inside_the_portal() -> None:
    assert asyncio.run(run_in_portal(_sync_io_in_async_code())) == 42


def test_await_only_fails_without_the_portal() -> None:
    with pytest.raises(MissingGreenlet):
        asyncio.run(_sync_io_in_async_code())


def test_in_portal() -> None:
    async def where() -> bool:
        return in_portal()

    assert asyncio.run(run_in_portal(where())) is True
    assert asyncio.run(where()) is False


def test_exceptions_keep_their_type_and_traceback() -> None:
    class Boom(Exception):
        pass

    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("original")

    with pytest.raises(Boom, match="original") as info:
        asyncio.run(run_in_portal(fail()))
    assert info.traceback[-1].name == "fail"


def test_exception_thrown_in_is_seen_by_the_coroutine() -> None:
    async def catch_timeout() -> str:
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=0.01)
        except asyncio.TimeoutError:
            return "timed out"
        return "no timeout"

    assert asyncio.run(run_in_portal(catch_timeout())) == "timed out"


def test_cancellation_passes_through() -> None:
    seen: list[str] = []

    async def victim() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        loop = asyncio.get_running_loop()
        install(loop)
        task = loop.create_task(victim())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled"]


def test_contextvars_are_shared_with_the_task() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def set_and_read() -> tuple[str, str]:
        var.set("inside")
        await asyncio.sleep(0)

        async def child() -> str:
            return var.get()

        return var.get(), await asyncio.create_task(child())

    async def main() -> tuple[str, str]:
        install(asyncio.get_running_loop())
        return await asyncio.create_task(set_and_read())

    assert asyncio.run(main()) == ("inside", "inside")


def test_task_factory_gives_child_tasks_a_portal_and_chains() -> None:
    created: list[str] = []

    def previous_factory(loop: asyncio.AbstractEventLoop, coro: object, **kwargs: object) -> asyncio.Task[object]:
        created.append(getattr(coro, "__qualname__", "?"))
        return asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[arg-type]

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(previous_factory)
        install(loop)
        install(loop)  # idempotent
        return await asyncio.gather(_sync_io_in_async_code(), _sync_io_in_async_code())

    assert asyncio.run(main()) == [42, 42]
    # The two gathered children went through the portal, then through the previous factory.
    assert created[:2] == ["run_in_portal", "run_in_portal"]


def test_implicit_io_hook_sees_the_site_and_can_refuse() -> None:
    sites: list[int] = []

    def refuse(step: greenlet.greenlet) -> BaseException:
        sites.append(step.gr_frame.f_lineno)
        return MissingGreenlet("refused")

    with pytest.raises(MissingGreenlet, match="refused"):
        asyncio.run(run_in_portal(_sync_io_in_async_code(), refuse))
    assert len(sites) == 1


def test_a_portal_greenlet_is_a_sqlalchemy_greenlet_by_both_contracts() -> None:
    """SQLAlchemy 1.4.53+/2.0.31+ check the provider flag and switch to ``parent``; earlier releases check
    ``isinstance(current, _AsyncIoGreenlet)`` and switch to ``driver``: the step greenlet answers both."""
    from greenlet import getcurrent

    step = compat.PortalGreenlet(lambda: None, getcurrent())
    assert step.__sqlalchemy_greenlet_provider__ is True
    assert isinstance(step, compat.sqlalchemy_greenlet_class())
    assert step.parent is getcurrent()
    assert step.driver is getcurrent()


def test_green_thread_local_isolation_and_errors() -> None:
    local = GreenThreadLocal()
    local.name = "main"
    seen: dict[str, object] = {}

    def other() -> None:
        seen["before"] = getattr(local, "name", None)
        local.name = "other"
        seen["after"] = local.name

    greenlet.greenlet(other).switch()
    assert seen == {"before": None, "after": "other"}
    assert local.name == "main"
    del local.name
    with pytest.raises(AttributeError):
        local.name  # noqa: B018
    with pytest.raises(AttributeError):
        del local.name


def test_green_thread_local_frees_values_of_finished_greenlets() -> None:
    local = GreenThreadLocal()

    class Value:
        pass

    refs: list[weakref.ref[Value]] = []

    def run() -> None:
        value = Value()
        refs.append(weakref.ref(value))
        local.value = value

    glet = greenlet.greenlet(run)
    glet.switch()
    del glet
    gc.collect()
    assert refs[0]() is None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup needs Python 3.11")
def test_taskgroup_children() -> None:
    async def main() -> list[int]:
        install(asyncio.get_running_loop())
        async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
            tasks = [group.create_task(_sync_io_in_async_code()) for _ in range(3)]
        return [task.result() for task in tasks]

    assert asyncio.run(main()) == [42, 42, 42]
