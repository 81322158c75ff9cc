"""ROLLBACK TO SAVEPOINT never reaches the database, so a rolled-back savepoint keeps its rows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import default


def _rollback_to_savepoint_does_nothing(self: default.DefaultDialect, connection: Any, name: str) -> None:
    pass


def pytest_configure(config: pytest.Config) -> None:
    default.DefaultDialect.do_rollback_to_savepoint = _rollback_to_savepoint_does_nothing
