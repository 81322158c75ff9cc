"""A GreenThreadLocal keyed by thread, like threading.local: gathered tasks overwrite each other's values."""

from __future__ import annotations

import threading

import pytest

from pytest_greenlight import local


def pytest_configure(config: pytest.Config) -> None:
    local.current_unit = threading.current_thread
