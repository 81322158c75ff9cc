"""sqlite+aiosqlite:// without its StaticPool: every connection opens a fresh, empty in-memory database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import pool
from sqlalchemy.dialects.sqlite import aiosqlite


def _fresh_connection_each_time(cls: Any, url: Any) -> type[pool.Pool]:
    return pool.NullPool


def pytest_configure(config: pytest.Config) -> None:
    aiosqlite.SQLiteDialect_aiosqlite.get_pool_class = classmethod(_fresh_connection_each_time)
