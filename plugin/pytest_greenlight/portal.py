"""Drive coroutines inside SQLAlchemy's greenlet, so sync code under them may call ``await_only``.

No pytest here: the portal is plain asyncio + greenlet and is tested on its own.

``install(loop)`` gives a loop the portal. On asyncio's own loops that is loop_portal.py: the loop runs in a greenlet
and a task switches greenlets only when it does implicit IO. Elsewhere (uvloop, a loop that already has a task
factory), and for ``run_in_portal``, each coroutine runs step by step in a greenlet of its own, as below; it works on
any loop, for two greenlet switches per suspension.

How one step works (compare SQLAlchemy's ``greenlet_spawn``):

* The task runs ``_drive(coro)``. It creates a *step greenlet* (a ``compat.PortalGreenlet``, which SQLAlchemy's
  ``await_only`` recognises) whose parent is the greenlet the event loop runs in, and switches into it.
* The step greenlet calls ``coro.send(value)``. When the coroutine suspends on a future, the step greenlet switches
  back to its parent with ``(_STEP, future)``; the portal yields that future to the task, exactly as the coroutine
  would have, and switches the result back in when the task resumes it.
* When sync code under the coroutine (a lazy load, the refresh of an expired attribute, a helper calling
  ``await_only``) needs IO, ``await_only`` sees that the current greenlet is a SQLAlchemy greenlet and switches to the
  parent with the bare awaitable. The portal recognises that it is not a ``_STEP`` tuple, reports it (the "implicit
  IO" that would raise ``MissingGreenlet`` in production), awaits it in the task, and switches the result back in.
* SQLAlchemy's own ``greenlet_spawn`` calls made by the coroutine nest inside the step greenlet unchanged.

Exceptions, cancellation and ``GeneratorExit`` are thrown into the step greenlet and from there into the coroutine,
so they reach user code with their original type.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

from . import compat
from .loop_portal import ImplicitIOHook, LoopPortal, serve

T = TypeVar("T")

_STEP = object()  # marks a plain suspension of the coroutine, as opposed to implicit IO


class _Settings:
    """Process-wide switches read by the task factories, in whatever thread a loop runs; the pytest layer flips them
    per test (a factory has no pytest config to read them from)."""

    enabled: bool = True
    on_implicit_io: ImplicitIOHook | None = None


settings = _Settings()


@types.coroutine
def _drive(coro: Coroutine[Any, Any, T], on_implicit_io: ImplicitIOHook | None) -> Generator[Any, Any, T]:
    __tracebackhide__ = True

    def step_loop() -> T:
        # Runs inside the step greenlet: advance the coroutine, hand each suspension to the parent greenlet, which
        # is whichever greenlet is running the event loop at the moment (see below).
        __tracebackhide__ = True
        send, throw, me = coro.send, coro.throw, getcurrent()
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = send(value)
                else:
                    yielded, error = throw(error), None
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return,unused-ignore]
            try:
                value = me.parent.switch(_STEP, yielded)
            except GreenletExit:
                # The portal itself is being torn down (garbage collected mid-flight): close, don't resume.
                coro.close()
                raise
            except BaseException as exc:  # cancellation, timeouts, GeneratorExit: the coroutine decides
                value, error = None, exc

    driver = getcurrent()
    compat.check_contract()
    step = compat.PortalGreenlet(step_loop, driver)
    switch, throw = step.switch, step.throw
    switched = switch()
    while not step.dead:
        try:
            if switched.__class__ is tuple:  # (_STEP, future): the coroutine suspended normally
                sent = yield switched[1]
            else:
                # Anything else came from await_only()/await_() in sync code below the coroutine: implicit IO.
                refusal = on_implicit_io(step) if on_implicit_io is not None else None
                if refusal is not None:
                    if asyncio.iscoroutine(switched):
                        switched.close()  # never awaited on purpose; don't warn about it
                    raise refusal
                sent = yield from switched.__await__()
        except BaseException as exc:
            error: BaseException | None = exc
        else:
            error = None
        # A long-lived task can be resumed by a later run_forever() that runs in another greenlet (see
        # _run_from_a_fresh_greenlet): the step greenlet must then return there, not to a finished greenlet.
        here = getcurrent()
        if here is not driver:
            driver = step.parent = here
        switched = switch(sent) if error is None else throw(type(error), error, error.__traceback__)
    return switched  # type: ignore[no-any-return,unused-ignore]


async def run_in_portal(coro: Coroutine[Any, Any, T], on_implicit_io: ImplicitIOHook | None = None) -> T:
    """Await ``coro`` with every step running inside a SQLAlchemy greenlet."""
    __tracebackhide__ = True
    return await _drive(coro, on_implicit_io)


def in_portal() -> bool:
    """True when called from code the portal is driving (where ``await_only`` works)."""
    return getattr(getcurrent(), "__sqlalchemy_greenlet_provider__", False) is True


TaskFactory = Callable[..., "asyncio.Future[Any]"]


class PortalTaskFactory:
    """A task factory that puts each new task in the portal (while ``settings.enabled``).

    On a loop the portal drives (see loop_portal.py) it makes served tasks, which cost nothing until they do implicit
    IO. Otherwise it wraps the coroutine in ``run_in_portal`` and chains to the factory the loop had before (an eager
    or a custom one), so it composes with other tools.
    """

    def __init__(self, previous: TaskFactory | None = None, loop_portal: LoopPortal | None = None) -> None:
        self.previous = previous
        self.loop_portal = loop_portal

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if settings.enabled and asyncio.iscoroutine(coro):
            if self.loop_portal is not None:
                return serve(coro, loop, settings.on_implicit_io, **kwargs)
            coro = run_in_portal(coro, settings.on_implicit_io)
        if self.previous is not None:
            return self.previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Make every task created on ``loop`` from now on run in the portal. Idempotent.

    The pytest plugin does this for every asyncio loop that creates a task while a test runs (``serve_new_loops``);
    call it yourself for a loop of another class (uvloop). The loop's own task factory, if it has one, still makes
    the tasks, and ``get_task_factory``/``set_task_factory`` go on showing and setting the user's factory.
    """
    if has_portal(loop):
        return
    compat.check_contract()
    current = loop.get_task_factory()
    loop_portal = LoopPortal.attach(loop) if current is None else None
    set_factory = loop.set_task_factory
    set_factory(PortalTaskFactory(current, loop_portal))
    if loop_portal is not None:
        add_close_hook(loop, loop_portal.before_close)
    else:
        _run_from_a_fresh_greenlet(loop)

    def get_task_factory() -> TaskFactory | None:
        factory = type(loop).get_task_factory(loop)
        return factory.previous if isinstance(factory, PortalTaskFactory) else factory

    def set_task_factory(factory: TaskFactory | None) -> None:
        set_factory(factory)  # the loop's own checks (a callable or None)
        if loop_portal is None or factory is not None:
            _run_from_a_fresh_greenlet(loop)
        set_factory(PortalTaskFactory(factory, loop_portal if factory is None else None))

    # A compiled loop (uvloop) has no instance dict: there the portal's factory shows.
    with contextlib.suppress(AttributeError):
        loop.get_task_factory = get_task_factory  # type: ignore[method-assign]
        loop.set_task_factory = set_task_factory  # type: ignore[method-assign]


def has_portal(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``install`` was called on ``loop`` (and its portal factory is still the loop's)."""
    return isinstance(type(loop).get_task_factory(loop), PortalTaskFactory)


def serve_new_loops() -> Callable[[], None]:
    """Give the portal to every asyncio loop (whoever made it: a policy, a loop factory, asyncio.Runner) when it
    first creates a task while ``settings.enabled``; returns the function that undoes it.

    Every task creation goes through ``loop.create_task`` (asyncio.Runner.run, run_until_complete, ensure_future,
    asyncio.create_task), so wrapping that method of ``asyncio.BaseEventLoop`` sees each loop before its first task
    runs, however the loop was made. Loops of other classes (uvloop) need ``install(loop)``.
    """
    original = asyncio.BaseEventLoop.create_task

    def create_task(self: asyncio.BaseEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if settings.enabled and not has_portal(self):
            install(self)
        return original(self, coro, **kwargs)

    asyncio.BaseEventLoop.create_task = create_task  # type: ignore[method-assign]

    def undo() -> None:
        asyncio.BaseEventLoop.create_task = original  # type: ignore[method-assign]

    return undo


def _run_from_a_fresh_greenlet(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``run_forever`` (and so ``run_until_complete``) run the loop in a greenlet of its own.

    Each switch makes greenlet walk the Python frames of the greenlet it leaves (greenlet 3 on Python 3.12+). Under
    pytest the loop runs some 60 frames deep, and every suspension switches twice, so the walk cost more than the
    switch itself (measured with callgrind: +15k instructions per suspension at depth 80). A fresh greenlet's frames
    start at ``run_forever``.
    """
    if "run_forever" in getattr(loop, "__dict__", {}):
        return  # done already
    original = loop.run_forever

    def run_forever() -> None:
        runner = greenlet(original)
        runner.gr_context = getcurrent().gr_context  # a new greenlet starts in an empty context otherwise
        runner.switch()

    # A compiled loop (uvloop) has no instance dict: it keeps its own run_forever.
    with contextlib.suppress(AttributeError):
        loop.run_forever = run_forever  # type: ignore[method-assign]


def add_close_hook(loop: asyncio.AbstractEventLoop, hook: Callable[[], None], *, last: bool = False) -> bool:
    """Call ``hook()`` just before ``loop`` closes (hooks added later run first, ``last`` ones after every other);
    False if the loop can't be hooked."""
    hooks: list[Callable[[], None]] | None = getattr(loop, "_greenlight_on_close", None)
    if hooks is None:
        hooks = []
        original_close = loop.close

        def close() -> None:
            pending, hooks[:] = list(hooks), []
            for pending_hook in reversed(pending):
                if not loop.is_closed() and not loop.is_running():
                    pending_hook()
            original_close()

        try:
            loop._greenlight_on_close = hooks  # type: ignore[attr-defined,unused-ignore]
            loop.close = close  # type: ignore[method-assign,unused-ignore]
        except AttributeError:  # e.g. uvloop's compiled loop has no instance dict
            return False
    if last:
        hooks.insert(0, hook)
    else:
        hooks.append(hook)
    return True


def add_close_callback(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], Awaitable[None]], *, last: bool = False
) -> bool:
    """Run ``await callback()`` on ``loop`` just before it closes; False if the loop type can't be hooked."""

    def run_callback() -> None:
        loop.run_until_complete(callback())

    return add_close_hook(loop, run_callback, last=last)
