"""AsyncEngine.dispose() that closes nothing: the pooled connection is left to the garbage collector."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine


async def _dispose_does_nothing(self: AsyncEngine, close: bool = True) -> None:
    pass


def pytest_configure(config: pytest.Config) -> None:
    AsyncEngine.dispose = _dispose_does_nothing
