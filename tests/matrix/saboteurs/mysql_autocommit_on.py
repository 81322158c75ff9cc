"""aiomysql/asyncmy connecting with autocommit on: an uncommitted insert is visible and survives rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects.mysql import aiomysql, asyncmy


def _with_autocommit(create_connect_args: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: Any, url: Any, **kwargs: Any) -> Any:
        args, options = create_connect_args(self, url, **kwargs)
        return args, {**options, "autocommit": True}

    return create


def pytest_configure(config: pytest.Config) -> None:
    for dialect in (aiomysql.MySQLDialect_aiomysql, asyncmy.MySQLDialect_asyncmy):
        dialect.create_connect_args = _with_autocommit(dialect.create_connect_args)
