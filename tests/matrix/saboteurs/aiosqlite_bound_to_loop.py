"""aiosqlite connections bound to the loop that opened them, as asyncpg's and aiomysql's are."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosqlite.core
import pytest

_connect = aiosqlite.core.Connection._connect
_execute = aiosqlite.core.Connection._execute


async def _connect_binding_the_loop(self: Any) -> Any:
    self._opened_on = asyncio.get_running_loop()
    return await _connect(self)


async def _execute_on_the_opening_loop_only(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    if asyncio.get_running_loop() is not self._opened_on:
        raise RuntimeError(f"{self!r} is bound to a different event loop")
    return await _execute(self, fn, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    aiosqlite.core.Connection._connect = _connect_binding_the_loop
    aiosqlite.core.Connection._execute = _execute_on_the_opening_loop_only
