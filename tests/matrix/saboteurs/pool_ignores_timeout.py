"""A pool whose async queue ignores pool_timeout: checkouts wait as long as it takes, never time out."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from sqlalchemy.util import queue

_get = queue.AsyncAdaptedQueue.get


def _get_ignoring_timeout(self: Any, block: bool = True, timeout: Optional[float] = None) -> Any:
    return _get(self, block, None)


def pytest_configure(config: pytest.Config) -> None:
    queue.AsyncAdaptedQueue.get = _get_ignoring_timeout
