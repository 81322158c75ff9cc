"""Where each engine opened its pooled connections (the loop, the fixture being set up, the test, the user's line),
so that two failures can name their cause: a connection used on another loop, and engines never disposed before
their loop closed. SQLAlchemy's class-level events (every Engine, every Pool) see each engine without touching the
user's code; nothing here imports pytest (hooks.py hands in the fixture and the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Optional

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from . import compat, portal

_LIBRARY_DIRS = (os.path.dirname(sqlalchemy.__file__), os.path.dirname(__file__), os.path.dirname(asyncio.__file__))
_LIBRARY_NAMES = ("greenlet", "_pytest", "pytest_asyncio", "pluggy", "anyio", "contextlib.py", "threading.py")
_LOOP_KEY = "greenlight_loop"  # ConnectionRecord.info: a weak reference to the loop the connection was opened on


@dataclass(frozen=True)
class Origin:
    """Where something happened: the loop, the fixture being set up (name, scope), the test, the user's line."""

    loop: str
    fixture: Optional[tuple[str, str]]
    test: Optional[str]
    where: Optional[str]

    def describe(self) -> str:
        parts = []
        if self.fixture is not None:
            parts.append(f"while fixture '{self.fixture[0]}' (scope {self.fixture[1]}) was set up")
        if self.test is not None:
            parts.append(f"for {self.test}" if self.fixture is not None else f"in {self.test}")
        if self.where is not None:
            parts.append(f"at {self.where}")
        return " ".join(parts) or "outside any test"


@dataclass(frozen=True)
class Crossing:
    """A pooled connection opened on one loop and checked out on another."""

    opened: Origin
    used: Origin


@dataclass
class EngineTracker:
    """Installed by hooks.py for the session; ``fixtures`` and ``current_test`` follow pytest's setup."""

    dispose: bool = False  # greenlight_dispose_engines: dispose each undisposed engine on its loop before it closes
    rootdir: str = ""
    current_test: Optional[str] = None
    fixtures: list[tuple[str, str]] = field(default_factory=list)  # the fixtures being set up, innermost last
    crossings: dict[str, Crossing] = field(default_factory=dict)  # test -> the first cross-loop checkout in it
    undisposed: list[tuple[Origin, str]] = field(default_factory=list)  # (where first connected, engine url)
    _loops: weakref.WeakKeyDictionary[Any, str] = field(default_factory=weakref.WeakKeyDictionary)
    _engines: weakref.WeakKeyDictionary[Engine, Origin] = field(default_factory=weakref.WeakKeyDictionary)
    _hooked: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)

    _listeners: list[tuple[Any, str, Callable[..., None]]] = field(default_factory=list)

    def install(self) -> None:
        self._listeners = [
            (Engine, "engine_connect", _quiet(self._on_engine_connect)),
            (Pool, "connect", _quiet(self._on_pool_connect)),
            (Pool, "checkout", _quiet(self._on_checkout)),
        ]
        for target, name, listener in self._listeners:
            event.listen(target, name, listener)

    def uninstall(self) -> None:
        for target, name, listener in self._listeners:
            event.remove(target, name, listener)
        self._listeners = []

    # -- naming --

    def loop_label(self, loop: Any) -> str:
        label = self._loops.get(loop)
        if label is None:
            label = self._loops[loop] = f"loop #{len(self._loops) + 1} (0x{id(loop):x})"
        return label

    def origin(self, loop: Any) -> Origin:
        fixture = self.fixtures[-1] if self.fixtures else None
        return Origin(self.loop_label(loop), fixture, self.current_test, user_line(self.rootdir))

    # -- SQLAlchemy events --

    def _on_engine_connect(self, connection: Any, *args: Any) -> None:  # 1.4 passes `branch` too
        loop = _running_loop()
        engine = connection.engine
        if loop is None or engine in self._engines or not engine.dialect.is_async:
            return
        self._engines[engine] = self.origin(loop)
        if loop not in self._hooked:
            self._hooked.add(loop)
            portal.add_close_hook(loop, lambda: self._loop_closing(loop), last=True)  # after others' disposal

    def _on_pool_connect(self, dbapi_connection: Any, record: Any) -> None:
        loop = _running_loop()
        if loop is not None:
            record.info[_LOOP_KEY] = (weakref.ref(loop), self.origin(loop))

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        loop, opened = _running_loop(), record.info.get(_LOOP_KEY)
        if loop is None or opened is None or opened[0]() is loop or self.current_test is None:
            return
        self.crossings.setdefault(self.current_test, Crossing(opened[1], self.origin(loop)))

    def _loop_closing(self, loop: Any) -> None:
        """Just before ``loop`` closes: its engines still holding connections are undisposed (and disposed on it,
        when asked), because nothing can close those connections once the loop is gone. The loop runs again only to
        dispose: a check that finds nothing leaves a closing loop as it would be without the plugin."""
        label = self._loops.get(loop)
        undisposed = []
        for engine, origin in list(self._engines.items()):
            if origin.loop != label or not _holds_connections(engine):
                continue
            self.undisposed.append((origin, engine.url.render_as_string(hide_password=True)))
            del self._engines[engine]
            undisposed.append(engine)
        if self.dispose and undisposed:
            from sqlalchemy.ext.asyncio import AsyncEngine

            async def dispose_all() -> None:
                for engine in undisposed:
                    await AsyncEngine(engine).dispose()

            loop.run_until_complete(dispose_all())


def _quiet(listener: Callable[..., None]) -> Callable[..., None]:
    """A listener that never lets a failure of ours reach the code under test (it only feeds explanations)."""

    def quiet(*args: Any) -> None:
        with contextlib.suppress(Exception):
            listener(*args)

    return quiet


def _holds_connections(engine: Engine) -> bool:
    pool: Any = engine.pool
    try:
        return int(pool.checkedin()) + int(pool.checkedout()) > 0
    except (AttributeError, NotImplementedError):  # NullPool/StaticPool keep no count
        return False


def _running_loop() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _is_library(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith(_LIBRARY_DIRS) or filename.startswith("<") or any(n in filename for n in _LIBRARY_NAMES)


def user_line(rootdir: str, stop: Optional[FrameType] = None) -> Optional[str]:
    """The innermost line of the user's code on the stack, across the greenlets SQLAlchemy and the portal switch
    through (each greenlet's frames end where it started; its parent's suspended frames continue the stack).
    ``stop``: the outermost frame to look at (a task's root coroutine: what runs the loop is not the task's)."""
    from greenlet import getcurrent

    frame: Optional[FrameType] = sys._getframe(1)
    current: Any = getcurrent()
    for _ in range(64):  # a greenlet's parents end at the thread's main greenlet; the bound only guards
        while frame is not None:
            if not _is_library(frame):
                return frame_location(frame, rootdir)
            if frame is stop:
                return None
            frame = frame.f_back
        # greenlet's own parent, not the portal's `parent` property (which names where await_only switches to)
        current = compat.real_parent(current)
        if current is None:
            return None
        frame = current.gr_frame
    return None


def frame_location(frame: FrameType, rootdir: str) -> str:
    """``path:line`` of ``frame``, the path relative to ``rootdir`` when it is inside it."""
    name = frame.f_code.co_filename
    if rootdir and name.startswith(rootdir.rstrip(os.sep) + os.sep):
        name = os.path.relpath(name, rootdir)
    return f"{name}:{frame.f_lineno}"
