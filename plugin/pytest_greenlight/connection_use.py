"""Which two tasks were using one ``AsyncConnection`` (no session) at once: concurrent_use.py's other half.

What fails, on the drivers SQLAlchemy adapts: two statements do not collide (the asyncpg and aiomysql adapters run
one at a time per connection; aiosqlite runs every call in turn on its thread, so nothing on SQLite fails at all).
A commit or a rollback is not under that lock: while another task is inside a statement, asyncpg refuses it ("cannot
perform operation: another operation is in progress") and aiomysql's second reader fails ("readexactly() called
while another coroutine is already waiting for incoming data"). Neither names a task.

The task that was inside an operation: Core's events, registered on the Engine class only while the plugin is
configured, note per connection the task and the user's line of each statement (``before_execute``: the task inside
a statement is the one to name, and only a per-statement event sees it; ``before_cursor_execute`` would add the
statements SQLAlchemy runs for itself, at a higher cost), commit and rollback. The listeners only record, and only
the current task (its own operation orders the failed task's against the other's). The task whose operation failed,
and its line: the failure's traceback, as for a session.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Optional

from sqlalchemy.engine import Connection, Engine

from . import diagnostics
from .concurrent_use import (
    _KEEP,
    Operation,
    Recorders,
    _label,
    _Record,
    _root_frame,
    _session_in,
    _task_of,
    _traceback_frames,
    deepest_match,
    named,
    running_task,
    user_site,
)

# Core event -> what the task began; each is checked for at install (one the installed SQLAlchemy lacks is skipped).
_EVENTS = {
    "before_execute": "a statement",
    "commit": "a commit",
    "rollback": "a rollback",
}

# diagnostics.CONCURRENT_USE_NAMED, for a connection.
CONNECTION_USE_NAMED = """\
Two tasks used ONE AsyncConnection at the same time (SQLAlchemy's message names neither):
  {first} began {first_what} on it at {first_where}, and was still inside it;
  {second} started another operation on it at {second_where}, which failed:
    {error}
An AsyncConnection (and its transaction) serves one task at a time: asyncio.gather() over one connection is the usual
cause (SQLAlchemy runs two statements in turn, but a commit or a rollback meets the other task's statement).
Fix: give each concurrent task its own connection (`async with engine.connect() as conn:` inside the task), or await
the operations one after another."""


@dataclass
class ConnectionUse(Recorders):
    """Installed by hooks.py beside ConcurrentUse; ``explain`` names the tasks of a collision on one connection."""

    _connections: weakref.WeakKeyDictionary[Connection, _Record] = field(default_factory=weakref.WeakKeyDictionary)

    def install(self) -> None:
        self.listen(Engine, _EVENTS)

    def _recorder(self, what: str) -> Callable[..., None]:
        def record(connection: Connection, *args: Any) -> None:
            task = running_task()
            root = _root_frame(task) if task is not None else None
            if task is None or root is None:
                return
            noted = self._connections.get(connection)
            if noted is None:
                noted = self._connections[connection] = _Record()
            label = _label(task)
            noted.roots[id(root)] = (root.f_code, label)
            noted.operations.append(Operation(label, id(root), what, user_site(stop=root)))
            if len(noted.operations) > 2 * _KEEP:  # trimmed now and then, with the roots of the operations dropped
                del noted.operations[:-_KEEP]
                kept = {op.root for op in noted.operations}
                noted.roots = {key: value for key, value in noted.roots.items() if key in kept}

        return record

    def explain(self, failure: BaseException) -> Optional[str]:
        """The named explanation when ``failure`` comes from two tasks using one connection, else None."""
        error = deepest_match(failure)
        if error is None:
            return None
        # A driver's error reaches the test wrapped twice (the adapter's, then SQLAlchemy's): the Connection's frames
        # are in the wrappers' tracebacks. The whole stack: each traceback, outermost error first.
        chain = diagnostics.exception_chain(failure)
        stack = [frame for each in chain[: chain.index(error) + 1] for frame in _traceback_frames(each)]
        found = _connection_in(stack)
        if found is None or _session_in(stack) is not None:  # a session's connection: concurrent_use's to explain
            return None
        connection, index = found
        record = self._connections.get(connection)
        failed = _task_of(stack, record) if record is not None else None
        if record is None or failed is None:  # the failed task's own operation orders the others; none was noted
            return None
        # The other task's newest operation before the failed one's own (a later one is the test's close()).
        own = max((i for i, op in enumerate(record.operations) if op.root == failed[0]), default=0)
        other = next((op for op in reversed(record.operations[:own]) if op.root != failed[0]), None)
        if other is None:
            return None
        # The failed task's line calls into the Connection, never below it (the driver's frames are there).
        return named(CONNECTION_USE_NAMED.format, self.rootdir, other, failed, stack[:index], error)


def _connection_in(frames: list[FrameType]) -> Optional[tuple[Connection, int]]:
    """The (sync) Connection the innermost SQLAlchemy method on the stack was working on, and that frame's index."""
    for index in range(len(frames) - 1, -1, -1):
        owner = frames[index].f_locals.get("self")
        if isinstance(owner, Connection):
            return owner, index
    return None
