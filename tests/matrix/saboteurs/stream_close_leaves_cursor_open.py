"""Closing a streamed result leaves its server-side cursor open, its unread rows pending on the connection."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.connectors import asyncio as connectors


def _leave_the_cursor_open(self: Any) -> None:
    pass


def pytest_configure(config: pytest.Config) -> None:
    connectors.AsyncAdapt_dbapi_ss_cursor.close = _leave_the_cursor_open
