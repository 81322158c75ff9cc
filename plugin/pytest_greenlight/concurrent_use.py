"""Which two tasks were using one session at once, for the failures SQLAlchemy reports without naming either.

``asyncio.gather()`` over one ``AsyncSession`` fails with "This session is provisioning a new connection",
``IllegalStateChangeError``, "Session is already flushing", "in 'prepared' state" or asyncpg's "another operation is
in progress", depending on the version and the driver. None of them says which tasks collided.

Two halves find them:

* The task that was inside an operation: SQLAlchemy's session events (registered on the Session class only while the
  plugin is configured) fire in that task when it begins a transaction (and so provisions a connection), a flush or
  a commit. Each notes the task's name and the user's line, per session. These events fire a few times per
  transaction, never per statement, and the listeners only record.
* The task whose operation failed: the failure's traceback. Its innermost user frame is where it started, and its
  innermost frame that is a task's root coroutine names the task. Root coroutines are known from the pending tasks
  of the loop, noted at each recorded event (a gather creates all its tasks before any of them runs).

connection_use.py is the same for an ``AsyncConnection`` used without a session, with the helpers below. Nothing here
imports pytest; hooks.py installs the listeners and asks ``explain`` about a failed test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType, TracebackType
from typing import Any, Optional

from sqlalchemy import event
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from . import diagnostics
from .compat import real_parent
from .engines import _is_library, frame_location

# Substrings of "<exception type>: <message>" that mean two operations overlapped on one session or connection.
SIGNATURES = (
    "provisioning a new connection",  # SQLAlchemy >= 2.0, a second task while the first one connects
    "/isce)",  # SQLAlchemy >= 2.0's code for an illegal state change (its link is missing from 2.0.0's messages)
    "IllegalStateChangeError",  # ("method '_connection_for_bind()' is already in progress")
    "Session is already flushing",
    "in 'prepared' state",  # a task executing while another is inside commit()
    "another operation is in progress",  # asyncpg
    "another coroutine is already waiting for incoming data",  # aiomysql (asyncio.StreamReader.readexactly)
)

# Session event -> what the task began; each is checked for at install (an event the installed SQLAlchemy lacks is
# skipped, so the diagnosis is less precise but nothing fails).
_EVENTS = {
    "after_transaction_create": "a transaction (connecting, when it had no connection yet)",
    "before_flush": "a flush",
    "before_commit": "a commit",
}
_KEEP = 8  # operations remembered per session: the newest ones are the ones a failure can be about


@dataclass(frozen=True)
class Operation:
    task: str  # the task's name and root coroutine: "'Task-3' (one())"
    root: int  # id() of the task's root coroutine frame
    what: str
    where: Optional[tuple[str, int]]  # the user's line: (file, line number), made relative when explained


@dataclass
class _Record:
    operations: list[Operation] = field(default_factory=list)
    roots: dict[int, tuple[CodeType, str]] = field(default_factory=dict)  # id(root frame) -> (its code, task label)


def running_task() -> Optional[asyncio.Task[Any]]:
    """The task an event fired in; None in sync code (no running loop), where nothing concurrent is to tell."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


@dataclass
class Recorders:
    """Recording listeners on one SQLAlchemy class, there only while the plugin is configured. Each event is checked
    for at install: one the installed SQLAlchemy lacks is skipped, so a diagnosis is less precise but nothing fails."""

    rootdir: str = ""
    _listeners: list[tuple[Any, str, Callable[..., None]]] = field(default_factory=list)

    def _recorder(self, what: str) -> Callable[..., None]:
        raise NotImplementedError

    def listen(self, target: Any, events: dict[str, str]) -> None:
        for name, what in events.items():
            listener = _quiet(self._recorder(what))
            try:
                event.listen(target, name, listener)
            except InvalidRequestError:  # "No such event": this SQLAlchemy lacks it; record the others
                continue
            self._listeners.append((target, name, listener))

    def uninstall(self) -> None:
        for target, name, listener in self._listeners:
            event.remove(target, name, listener)
        self._listeners = []


@dataclass
class ConcurrentUse(Recorders):
    """Installed by hooks.py for the session; ``explain`` names the tasks of a concurrent-use failure."""

    _sessions: weakref.WeakKeyDictionary[Session, _Record] = field(default_factory=weakref.WeakKeyDictionary)

    def install(self) -> None:
        self.listen(Session, _EVENTS)

    def _recorder(self, what: str) -> Callable[..., None]:
        def record(session: Any, *args: Any) -> None:
            task = running_task()
            if task is None:
                return
            root = _root_frame(task)
            record = self._sessions.setdefault(session, _Record())
            for pending in asyncio.all_tasks(task.get_loop()):
                frame = _root_frame(pending)
                if frame is not None:
                    record.roots[id(frame)] = (frame.f_code, _label(pending))
            record.operations.append(Operation(_label(task), id(root), what, user_site(stop=root)))
            del record.operations[:-_KEEP]

        return record

    def explain(self, failure: BaseException) -> Optional[str]:
        """The named explanation when ``failure`` comes from two tasks using one session, else None."""
        error = deepest_match(failure)
        if error is None:
            return None
        frames = _traceback_frames(error)
        session = _session_in(frames)
        record = self._sessions.get(session) if session is not None else None
        if record is None:
            return None
        failed = _task_of(frames, record)
        other = next((op for op in reversed(record.operations) if failed is None or op.root != failed[0]), None)
        if other is None:
            return None
        return named(diagnostics.concurrent_use, self.rootdir, other, failed, frames, error)


def deepest_match(failure: BaseException) -> Optional[BaseException]:
    """The exception of ``failure``'s chain that says two operations overlapped, raised first; or None."""
    # The deepest match was raised first: by the task that collided (a later one is often the test's own close() of
    # the session, failing for the same reason).
    matching = [error for error in diagnostics.exception_chain(failure) if _is_concurrent(error)]
    return matching[-1] if matching else None


def named(
    message: Callable[..., str],
    rootdir: str,
    other: Operation,
    failed: Optional[tuple[int, str]],
    frames: list[FrameType],
    error: BaseException,
) -> str:
    """``message`` (diagnostics.concurrent_use's arguments) for ``other``, which began an operation, and ``failed``,
    whose operation (its line in ``frames``) met it with ``error``."""
    where = next((frame_location(f, rootdir) for f in reversed(frames) if not _is_library(f)), None)
    return message(
        first=other.task,
        first_what=other.what,
        first_where=_location(other.where, rootdir) if other.where else "(no line of yours in that task)",
        second=failed[1] if failed is not None else "another task",
        second_where=where or "(no line of yours in that task)",
        error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
    )


# Code object -> whether it is a library's (engines._is_library): user_site runs per statement for connections.
_library_code: dict[CodeType, bool] = {}


def user_site(stop: Optional[FrameType]) -> Optional[tuple[str, int]]:
    """engines.user_line's walk, cheap enough for every statement: the innermost line of the user's code on the stack,
    across the greenlets SQLAlchemy switches through, up to ``stop`` (the task's root coroutine). Whether a code
    object is a library's is worked out once; the path is made relative only when a failure is explained."""
    from greenlet import getcurrent

    frame: Optional[FrameType] = sys._getframe(1)
    current: Any = getcurrent()
    for _ in range(64):  # a greenlet's parents end at the thread's main greenlet; the bound only guards
        while frame is not None:
            library = _library_code.get(frame.f_code)
            if library is None:
                if len(_library_code) > 4096:  # code compiled anew and again (exec) must not grow it for ever
                    _library_code.clear()
                library = _library_code[frame.f_code] = _is_library(frame)
            if not library:
                return frame.f_code.co_filename, frame.f_lineno
            if frame is stop:
                return None
            frame = frame.f_back
        current = real_parent(current)  # greenlet's own parent, not the portal's `parent` property
        if current is None:
            return None
        frame = current.gr_frame
    return None


def _location(site: tuple[str, int], rootdir: str) -> str:
    """engines.frame_location for a noted (file, line number)."""
    name, line = site
    if rootdir and name.startswith(rootdir.rstrip(os.sep) + os.sep):
        name = os.path.relpath(name, rootdir)
    return f"{name}:{line}"


def _quiet(listener: Callable[..., None]) -> Callable[..., None]:
    """A listener that never lets a failure of ours reach the code under test (it only feeds explanations)."""

    def quiet(*args: Any) -> None:
        with contextlib.suppress(Exception):
            listener(*args)

    return quiet


def _root_frame(task: asyncio.Task[Any]) -> Optional[FrameType]:
    coro = task.get_coro()
    return getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)


def _label(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    return f"task '{task.get_name()}' ({name}())"


def _is_concurrent(error: BaseException) -> bool:
    text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    return any(signature in text for signature in SIGNATURES)


def _traceback_frames(error: BaseException) -> list[FrameType]:
    """The frames ``error`` unwound, outermost first."""
    frames = []
    tb: Optional[TracebackType] = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _session_in(frames: list[FrameType]) -> Optional[Session]:
    """The (sync) Session the innermost SQLAlchemy method on the stack was working on."""
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        for candidate in (owner, getattr(owner, "session", None), getattr(owner, "sync_session", None)):
            if isinstance(candidate, Session):
                return candidate
    return None


def _task_of(frames: list[FrameType], record: _Record) -> Optional[tuple[int, str]]:
    """The task whose root coroutine is the innermost root frame on the stack: (id of that frame, its label)."""
    for frame in reversed(frames):
        known = record.roots.get(id(frame))
        if known is not None and known[0] is frame.f_code:  # the code guards against a reused id
            return id(frame), known[1]
    return None
