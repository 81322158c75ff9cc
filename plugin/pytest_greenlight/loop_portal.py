"""The portal at the level of the event loop: tasks run plainly, and switch greenlets only for implicit IO.

``portal.run_in_portal`` runs every step of a coroutine in a greenlet of its own: two greenlet switches on every
suspension, whether or not the coroutine ever does implicit IO. Here the whole loop runs in a *driver* greenlet
instead, of SQLAlchemy's own greenlet class, and the tasks the portal serves run their steps in it as plain asyncio.
Only when sync code in a served task calls ``await_only`` (a lazy load, an expired attribute) does the portal act:

1. ``await_only`` switches to the driver's parent, the *hub* (the greenlet that called ``run_forever``), with the
   awaitable. The driver is now *parked*: its stack holds the task's step, stopped inside ``await_only``.
2. The hub hands the awaitable to a helper task, takes the parked task out of asyncio's current-task slot, and
   starts a new driver, which carries on running the loop.
3. When the helper is done, the running driver, between two loop iterations, puts the task back in the current-task
   slot and switches into the parked driver with the result. ``await_only`` returns, the step finishes, and the
   resumed driver carries on running the loop; the driver that resumed it goes *idle*, to be the new driver of
   the next park.

Three details make this exact:

* The parked stack also holds the loop iteration (``BaseEventLoop._run_once``) that ran the step. Resumed, it goes on
  popping as many handles as were ready when it started; those have been run by another driver meanwhile, so the
  portal first tops the ready queue up to that count with cancelled (no-op) handles.
* A SQLAlchemy greenlet made by ``greenlet_spawn`` (``run_sync``, every ORM call) has the driver of that moment as
  its parent for life, and switches to it for each IO, even after that driver was parked or went idle. Such a
  driver relays what it receives to the running driver, where the task that owns the greenlet is being stepped.
* The driver says it is a SQLAlchemy greenlet (``__sqlalchemy_greenlet_provider__``) only while a served task runs,
  so everything else on the loop (callbacks, tasks made with the portal off, finalizers that check
  ``in_greenlet()``) sees what it would see without the portal.

Only a loop with the Python ``_run_once`` of asyncio's own loops is driven this way; ``portal.install`` falls back
to ``run_in_portal`` for any other loop, and for a loop with someone else's task factory.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any, Callable, Optional

from greenlet import GreenletExit, getcurrent, greenlet

from . import compat

# Called with the suspended greenlet (a parked driver, or run_in_portal's step greenlet) each time the portal serves
# implicit IO. It returns None to let the IO proceed, or an exception to raise at the call site instead (strict mode).
ImplicitIOHook = Callable[[Any], Optional[BaseException]]

_LOOP_STOPPED = object()  # sent by a driver to the hub when run_forever() should return
_DRIVE = object()  # sent by the hub to an idle driver: run the loop again
_RUN_ONCE_LOCALS = ("ntodo", "i")  # BaseEventLoop._run_once: ``for i in range(ntodo): handle = ready.popleft()``
_REAL_PARENT = greenlet.parent  # greenlet's own attribute; a driver shows SQLAlchemy a different ``parent``

# asyncio's current-task slot, which a parked task must leave while other tasks run.
_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] = asyncio.tasks._enter_task
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] = asyncio.tasks._leave_task


class ServedTask(asyncio.Task):  # type: ignore[type-arg]
    """A task whose implicit IO the portal serves; the task factory makes these while the portal is on."""

    _greenlight_hook: ImplicitIOHook | None = None
    _greenlight_parked: _Parked | None = None

    def cancel(self, msg: Any = None) -> bool:
        parked = self._greenlight_parked
        if parked is None:
            return super().cancel(msg)
        # The step is stopped inside await_only, so asyncio would only note the request for the task's next step.
        # A suspended coroutine has the future it waits on cancelled: do that to the IO instead.
        return parked.cancel(msg)


class _Resume:
    """What the portal sends a parked driver: the outcome of its IO. Anything else but _DRIVE is a child's."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def unwrap(self) -> Any:
        __tracebackhide__ = True
        if self.error is not None:
            raise self.error
        return self.value


async def _await_for_task(awaitable: Any) -> Any:
    __tracebackhide__ = True
    return await awaitable


class _Parked:
    """A driver stopped inside ``await_only`` for a served task, and the helper task doing that IO."""

    def __init__(self, portal: LoopPortal, driver: Any, task: ServedTask, awaitable: Any) -> None:
        self.portal, self.driver, self.task = portal, driver, task
        self.cancelled_with: asyncio.CancelledError | None = None
        # The IO runs in a copy of the task's context: the task's own is entered on the parked stack.
        context = driver.gr_context.copy()
        self.helper: asyncio.Task[Any] = context.run(asyncio.Task, _await_for_task(awaitable), loop=portal.loop)
        self.helper.add_done_callback(self._io_done)

    def _io_done(self, _: asyncio.Task[Any]) -> None:
        self.portal.resumable.append(self)

    def cancel(self, msg: Any) -> bool:
        if not self.helper.done():
            return self.helper.cancel(msg)
        if self.cancelled_with is None:  # the IO is done but the task has not resumed yet: it resumes cancelled
            self.cancelled_with = asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
        return True

    def outcome(self) -> _Resume:
        if self.cancelled_with is not None:
            return _Resume(error=self.cancelled_with)
        try:
            return _Resume(self.helper.result())
        except BaseException as error:
            return _Resume(error=error)


class _SwitchToHub:
    """What a driver's ``parent`` is to SQLAlchemy's ``await_only``: parks the driver."""

    __slots__ = ("driver",)

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def switch(self, awaitable: Any) -> Any:
        __tracebackhide__ = True
        driver = self.driver
        return driver.portal.relay(_REAL_PARENT.__get__(driver).switch, awaitable)


class LoopPortal:
    """Runs one loop's iterations in driver greenlets; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.run_loop_once: Callable[[], None] = loop._run_once  # type: ignore[attr-defined]
        self.run_once_code = self.run_loop_once.__func__.__code__  # type: ignore[attr-defined,unused-ignore]
        self.active: Any = None  # the driver running the loop now
        self.resumable: collections.deque[_Parked] = collections.deque()
        self.parked: set[_Parked] = set()
        self.idle: list[Any] = []  # drivers that resumed a parked one; each relays for its children until reused
        self.closing = False
        loop._run_once = self.run_once_from_hub  # type: ignore[attr-defined]

    @classmethod
    def attach(cls, loop: asyncio.AbstractEventLoop) -> LoopPortal | None:
        """Drive ``loop`` this way if its ``_run_once`` has the shape the portal relies on."""
        run_once = getattr(loop, "_run_once", None)
        code = getattr(getattr(run_once, "__func__", None), "__code__", None)
        if code is None or not set(_RUN_ONCE_LOCALS) <= set(code.co_varnames):
            return None
        try:
            return cls(loop)
        except AttributeError:  # a loop without an instance dict
            return None

    def new_driver(self, hub: Any) -> Any:
        driver = _driver_class()(self.drive, hub)
        driver.portal = self
        return driver

    # -- in the hub: the greenlet that called run_forever() ------------------------------------------------------

    def run_once_from_hub(self) -> None:
        """Replaces ``loop._run_once``: run_forever() calls it, and it returns when the loop is to stop."""
        hub = getcurrent()
        driver = self.active
        if driver is None or driver.dead:
            driver = self.active = self.new_driver(hub)
        else:
            _REAL_PARENT.__set__(driver, hub)
            driver.gr_context = hub.gr_context  # it waits between iterations, outside any task's context
        message = driver.switch()
        while message is not _LOOP_STOPPED:
            message = self.park(message)
        if self.closing:
            self.end_drivers()

    def park(self, awaitable: Any) -> Any:
        """The running driver called await_only(awaitable) for a served task: serve it, keep the loop running."""
        driver, loop = self.active, self.loop
        task = asyncio.current_task(loop)
        assert isinstance(task, ServedTask), "a driver is a SQLAlchemy greenlet only while a served task runs"
        hook = task._greenlight_hook
        refusal = hook(driver) if hook is not None else None
        if refusal is not None:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never awaited on purpose; don't warn about it
            return driver.switch(_Resume(error=refusal))
        try:
            parked = _Parked(self, driver, task, awaitable)
        except BaseException as error:  # raised where await_only was called
            return driver.switch(_Resume(error=error))
        _leave_task(loop, task)
        task._greenlight_parked = parked
        self.parked.add(parked)
        if self.idle:
            self.active = self.idle.pop()
            _REAL_PARENT.__set__(self.active, getcurrent())
            return self.active.switch(_DRIVE)
        self.active = self.new_driver(getcurrent())
        return self.active.switch()

    # -- in the drivers -------------------------------------------------------------------------------------------

    def drive(self) -> None:
        loop, resumable = self.loop, self.resumable
        try:
            while True:
                # Never waits in select() while a parked driver is resumable: the helper task of every park has its
                # first step scheduled, so the iteration after a park starts with a handle ready.
                self.run_loop_once()
                if resumable:
                    self.resume(resumable.popleft())
                if loop._stopping:  # type: ignore[attr-defined]
                    _REAL_PARENT.__get__(getcurrent()).switch(_LOOP_STOPPED)
        except GreenletExit:
            return  # the loop is closing (end_drivers)

    def resume(self, parked: _Parked) -> None:
        """Between two iterations: hand the loop to the parked driver, with the outcome of its IO."""
        me, driver, task = getcurrent(), parked.driver, parked.task
        self.parked.discard(parked)
        self.top_up_ready_queue(driver)
        task._greenlight_parked = None
        _enter_task(self.loop, task)
        _REAL_PARENT.__set__(driver, _REAL_PARENT.__get__(me))
        self.active = driver
        self.idle.append(me)
        self.relay(driver.switch, parked.outcome())  # returns when the portal needs this driver again

    def relay(self, switch: Callable[..., Any], *args: Any) -> Any:
        """Switch out, and pass on whatever arrives until the portal resumes this driver (see the docstring)."""
        __tracebackhide__ = True
        while True:
            try:
                message = switch(*args)
            except GreenletExit:
                raise
            except BaseException as error:
                switch, args = self.active.throw, (error,)
                continue
            if message.__class__ is _Resume:
                return message.unwrap()
            if message is _DRIVE:
                return None
            if self.active is getcurrent():
                raise RuntimeError(f"greenlight: the running loop driver was sent {message!r}; it expects nothing")
            switch, args = self.active.switch, (message,)

    def top_up_ready_queue(self, driver: Any) -> None:
        frame = driver.gr_frame
        while frame is not None and frame.f_code is not self.run_once_code:
            frame = frame.f_back
        if frame is None:
            return
        ntodo, i = (frame.f_locals[name] for name in _RUN_ONCE_LOCALS)
        ready: collections.deque[asyncio.Handle] = self.loop._ready  # type: ignore[attr-defined]
        for _ in range(ntodo - i - 1 - len(ready)):
            handle = asyncio.Handle(_nothing, (), self.loop)
            handle.cancel()
            ready.append(handle)

    async def cancel_parked(self) -> None:
        """Before the loop closes: cancel the tasks stopped in implicit IO and let them finish, as asyncio.run does.

        When this run of the loop stops, the hub ends the drivers: a suspended greenlet is never garbage collected.
        """
        self.closing = True
        tasks = [parked.task for parked in self.parked]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def end_drivers(self) -> None:
        hub = getcurrent()
        for driver in [*self.idle, self.active]:
            _REAL_PARENT.__set__(driver, hub)
            driver.throw(GreenletExit)
        self.idle.clear()
        self.active = None


def _nothing() -> None:
    pass


_driver_classes: list[type[Any]] = []


def _driver_class() -> type[Any]:
    if not _driver_classes:

        class LoopDriver(compat.load_greenlet_class()):  # type: ignore[misc]
            """Runs a loop; a SQLAlchemy greenlet only while one of the portal's tasks is running in it."""

            portal: LoopPortal

            @property
            def __sqlalchemy_greenlet_provider__(self) -> bool:  # type: ignore[override,unused-ignore]
                return isinstance(asyncio.current_task(self.portal.loop), ServedTask)

            @property
            def parent(self) -> _SwitchToHub:  # type: ignore[override,unused-ignore]
                return _SwitchToHub(self)

        _driver_classes.append(LoopDriver)
    return _driver_classes[0]


def current_unit() -> Any:
    """What GreenThreadLocal keys on: the task running in a loop driver, otherwise the greenlet."""
    current = getcurrent()
    if _driver_classes and isinstance(current, _driver_classes[0]):
        task = asyncio.current_task(current.portal.loop)
        if task is not None:
            return task
    return current


def serve(
    coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop, hook: ImplicitIOHook | None, **kwargs: Any
) -> ServedTask:
    """A task of ``coro`` whose implicit IO the portal serves (calling ``hook`` first, as run_in_portal does)."""
    task = ServedTask(coro, loop=loop, **kwargs)
    task._greenlight_hook = hook
    return task
