"""GreenThreadLocal: like ``threading.local``, but per greenlet, and per task for the tasks the portal serves.

Served tasks share their loop's driver greenlet (loop_portal.py), so there the key is the task; a coroutine under
``run_in_portal`` has a greenlet of its own. Either way per-task state that sync code (below an ``await_only``) needs
can live here. Values are held through a weak reference to the key: when it is garbage collected they go with it.
"""

from __future__ import annotations

import weakref
from typing import Any

from .loop_portal import current_unit


class GreenThreadLocal:
    """Attribute storage private to the current greenlet (or served task).

    >>> local = GreenThreadLocal()
    >>> local.user = "alice"      # visible only in this greenlet
    >>> local.user
    'alice'
    """

    __slots__ = ("__weakref__", "_greenlight_values")

    def __init__(self) -> None:
        object.__setattr__(self, "_greenlight_values", weakref.WeakKeyDictionary())

    def _values(self, create: bool) -> dict[str, Any] | None:
        per_greenlet: weakref.WeakKeyDictionary[Any, dict[str, Any]] = object.__getattribute__(
            self, "_greenlight_values"
        )
        current = current_unit()
        values = per_greenlet.get(current)
        if values is None and create:
            values = per_greenlet[current] = {}
        return values

    def __getattr__(self, name: str) -> Any:
        values = self._values(create=False)
        if values is None or name not in values:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r} in this greenlet")
        return values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        values = self._values(create=True)
        assert values is not None
        values[name] = value

    def __delattr__(self, name: str) -> None:
        values = self._values(create=False)
        if values is None or name not in values:
            raise AttributeError(name)
        del values[name]
