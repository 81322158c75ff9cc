"""A DBAPI adapter without its per-connection execute mutex: gathered statements interleave on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.connectors import asyncio as connectors

_init = connectors.AsyncAdapt_dbapi_connection.__init__


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _init_without_mutex(self: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self._execute_mutex = _NoLock()


def pytest_configure(config: pytest.Config) -> None:
    connectors.AsyncAdapt_dbapi_connection.__init__ = _init_without_mutex
