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

Drivers belong to the thread that ran the loop when they were made: greenlets cannot switch across threads. A loop
that is later run in another thread (library code often drives a loop from a worker thread, then closes it from
the main thread) gets new drivers there, and the portal never touches another thread's greenlets.

Only a loop with the Python ``_run_once`` of asyncio's own loops is driven this way (``compat.loop_portal_unsupported``
says why not); ``portal.install`` falls back to ``run_in_portal`` for any other loop, and for a loop with someone
else's task factory.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Optional

from greenlet import GreenletExit, getcurrent

from . import compat

# Called with the suspended greenlet (a parked driver, or run_in_portal's step greenlet) each time the portal serves
# implicit IO. It returns None to let the IO proceed, or an exception to raise at the call site instead (strict mode).
ImplicitIOHook = Callable[[Any], Optional[BaseException]]

_LOOP_STOPPED = object()  # sent by a driver to the hub when run_forever() should return
_DRIVE = object()  # sent by the hub to an idle driver: run the loop again
_REAL_PARENT = compat._REAL_PARENT  # greenlet's own attribute; a driver shows SQLAlchemy a different ``parent``


class ServedTask:
    """Mixed into the task class the loop would have made (``served_task_class``): a task whose implicit IO the
    portal serves. The task factory makes these while the portal is on."""

    _greenlight_hook: ImplicitIOHook | None = None
    _greenlight_parked: _Parked | None = None
    _greenlight_cancels = 0  # cancel requests delivered to a parked task's IO, which asyncio did not count

    def cancel(self, msg: Any = None) -> bool:
        parked = self._greenlight_parked
        if parked is None:
            return super().cancel(msg)  # type: ignore[misc,no-any-return]
        # The step is stopped inside await_only, so asyncio would only note the request for the task's next step.
        # A suspended coroutine has the future it waits on cancelled: do that to the IO instead, and count the
        # request as asyncio counts one delivered to the future a task waits on (cancelling(), read by TaskGroup,
        # asyncio.timeout and anyio's cancel scopes).
        cancelled = parked.cancel(msg)
        if cancelled:
            self._greenlight_cancels += 1
        return cancelled

    if compat.HAS_CANCELLING:

        def cancelling(self) -> int:
            return super().cancelling() + self._greenlight_cancels  # type: ignore[misc,no-any-return]

        def uncancel(self) -> int:
            if self._greenlight_cancels:
                self._greenlight_cancels -= 1
                return self.cancelling()
            return super().uncancel()  # type: ignore[misc,no-any-return]


_served_classes: dict[type[Any], type[Any]] = {}


def served_task_class() -> type[Any]:
    """ServedTask mixed into the task class ``loop.create_task`` would use now (see compat.current_task_class)."""
    base = compat.current_task_class()
    cls = _served_classes.get(base)
    if cls is None:
        cls = _served_classes[base] = type("ServedTask", (ServedTask, base), {"__module__": __name__})
    return cls


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
        """Drive ``loop`` this way if it has what the portal relies on (compat.loop_portal_unsupported)."""
        if compat.loop_portal_unsupported(loop) is not None:
            return None
        return cls(loop)

    def new_driver(self, hub: Any) -> Any:
        driver = LoopDriver(self.drive, hub)
        driver.portal = self
        driver.thread = threading.get_ident()
        return driver

    def usable(self, driver: Any) -> bool:
        """A driver can run the loop here only if it is alive and belongs to this thread."""
        return driver is not None and not driver.dead and driver.thread == threading.get_ident()

    # -- in the hub: the greenlet that called run_forever() ------------------------------------------------------

    def run_once_from_hub(self) -> None:
        """Replaces ``loop._run_once``: run_forever() calls it, and it returns when the loop is to stop."""
        hub = getcurrent()
        driver = self.active
        if not self.usable(driver):
            # First run, or the loop ran in another thread before: that thread's drivers stay where they are.
            self.idle = [idle for idle in self.idle if self.usable(idle)]
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
        task: Any = asyncio.current_task(loop)
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
        compat.leave_task(loop, task)
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
        if driver.thread != me.thread:
            raise RuntimeError(
                f"greenlight: {task!r} stopped in implicit IO while its loop ran in another thread; it cannot resume "
                "in this one (greenlets do not switch across threads). Let the loop finish such tasks before it is "
                "run from another thread."
            )
        self.top_up_ready_queue(driver)
        task._greenlight_parked = None
        compat.enter_task(self.loop, task)
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
        ntodo, i = (frame.f_locals[name] for name in compat.RUN_ONCE_LOCALS)
        ready: collections.deque[asyncio.Handle] = self.loop._ready  # type: ignore[attr-defined]
        for _ in range(ntodo - i - 1 - len(ready)):
            handle = asyncio.Handle(_nothing, (), self.loop)
            handle.cancel()
            ready.append(handle)

    def before_close(self) -> None:
        """Just before the loop closes: end the tasks stopped in implicit IO, then the drivers of this thread.

        Parked tasks are cancelled and run to their end, as asyncio.run does with pending tasks; the loop runs only
        if there are any, so closing a loop the portal never parked anything on runs nothing (a loop run in another
        thread, say, and closed from this one). A suspended greenlet is never garbage collected, so this thread's
        drivers are ended; another thread's go with that thread.
        """
        mine = [parked for parked in self.parked if parked.driver.thread == threading.get_ident()]
        if mine and not self.loop.is_running():
            self.closing = True
            self.loop.run_until_complete(self.cancel_parked([parked.task for parked in mine]))
        self.end_drivers()

    async def cancel_parked(self, tasks: list[Any]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def end_drivers(self) -> None:
        hub = getcurrent()
        for driver in [*self.idle, self.active]:
            if self.usable(driver):
                _REAL_PARENT.__set__(driver, hub)
                driver.throw(GreenletExit)
        self.idle.clear()
        self.active = None


def _nothing() -> None:
    pass


class LoopDriver(compat.PortalGreenlet):  # type: ignore[misc,unused-ignore]
    """Runs a loop; a SQLAlchemy greenlet only while one of the portal's tasks is running in it."""

    portal: LoopPortal
    thread: int  # threading.get_ident() of the thread it was made in, the only one it can run in

    def greenlight_serving(self) -> bool:
        return isinstance(asyncio.current_task(self.portal.loop), ServedTask)

    def greenlight_exit(self) -> _SwitchToHub:
        return _SwitchToHub(self)


def current_unit() -> Any:
    """What GreenThreadLocal keys on: the task running in a loop driver, otherwise the greenlet."""
    current = getcurrent()
    if isinstance(current, LoopDriver):
        task = asyncio.current_task(current.portal.loop)
        if task is not None:
            return task
    return current


def serve(
    coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop, hook: ImplicitIOHook | None, **kwargs: Any
) -> asyncio.Task[Any]:
    """A task of ``coro`` whose implicit IO the portal serves (calling ``hook`` first, as run_in_portal does)."""
    task = served_task_class()(coro, loop=loop, **kwargs)
    task._greenlight_hook = hook
    return task  # type: ignore[no-any-return]
