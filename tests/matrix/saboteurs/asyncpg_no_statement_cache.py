"""prepared_statement_cache_size=0: each run prepares afresh, so the step that must fail after DDL succeeds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import asyncpg

_connect = asyncpg.AsyncAdapt_asyncpg_dbapi.connect


def _connect_without_statement_cache(self: Any, *args: Any, **kwargs: Any) -> Any:
    return _connect(self, *args, **{**kwargs, "prepared_statement_cache_size": 0})


def pytest_configure(config: pytest.Config) -> None:
    asyncpg.AsyncAdapt_asyncpg_dbapi.connect = _connect_without_statement_cache
