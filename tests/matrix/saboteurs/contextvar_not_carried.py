"""pytest-asyncio before 0.25: ContextVars an async fixture sets do not reach the test."""

from __future__ import annotations

import contextvars

import pytest
import pytest_asyncio.plugin


def _forget_the_fixtures_changes(context: contextvars.Context) -> None:
    return None


def pytest_configure(config: pytest.Config) -> None:
    pytest_asyncio.plugin._apply_contextvar_changes = _forget_the_fixtures_changes
