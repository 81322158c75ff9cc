"""A connection whose task is cancelled mid-statement is leaked instead of returned to the pool.

SQLAlchemy returns a cancelled connection twice over: it invalidates it (cancellation counts as an exit exception),
and AsyncConnection's exit closes it under a shield. The emulated bug loses both.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Optional

import pytest
from sqlalchemy import util
from sqlalchemy.ext.asyncio import AsyncConnection

_is_exit_exception = util.is_exit_exception
_aexit = AsyncConnection.__aexit__


def _cancellation_keeps_the_connection(error: BaseException) -> bool:
    return not isinstance(error, asyncio.CancelledError) and _is_exit_exception(error)


async def _drop_the_connection_when_cancelled(
    self: AsyncConnection,
    type_: Optional[type[BaseException]],
    value: Optional[BaseException],
    traceback: Optional[TracebackType],
) -> Any:
    if type_ is not None and issubclass(type_, asyncio.CancelledError):
        return None
    return await _aexit(self, type_, value, traceback)


def pytest_configure(config: pytest.Config) -> None:
    util.is_exit_exception = _cancellation_keeps_the_connection
    AsyncConnection.__aexit__ = _drop_the_connection_when_cancelled
