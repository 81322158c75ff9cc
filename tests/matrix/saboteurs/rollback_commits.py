"""The outer transaction's ROLLBACK commits instead, like a per-test fixture whose rollback undoes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import default


def _rollback_commits(self: default.DefaultDialect, dbapi_connection: Any) -> None:
    dbapi_connection.commit()


def pytest_configure(config: pytest.Config) -> None:
    default.DefaultDialect.do_rollback = _rollback_commits
