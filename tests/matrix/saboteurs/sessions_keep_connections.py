"""Breaks what the pool-hygiene scenarios check (tests/matrix/test_scenarios.py): sessions never give their
connection back."""

from __future__ import annotations

import pytest
import sqlalchemy.ext.asyncio


async def _close_without_returning(self: sqlalchemy.ext.asyncio.AsyncSession) -> None:
    pass


def pytest_configure(config: pytest.Config) -> None:
    sqlalchemy.ext.asyncio.AsyncSession.close = _close_without_returning
