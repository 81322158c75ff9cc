"""A driver whose finalizer stops a leaked connection silently (no ResourceWarning): nothing names the leak."""

from __future__ import annotations

from typing import Any

import aiosqlite.core
import pytest


def _stop_silently(self: Any) -> None:
    if self._connection is not None:
        self.stop()


def pytest_configure(config: pytest.Config) -> None:
    aiosqlite.core.Connection.__del__ = _stop_silently
