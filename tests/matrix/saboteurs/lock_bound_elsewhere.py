"""Python < 3.10: an asyncio.Lock is bound at creation to the loop current then, not the one that uses it."""

from __future__ import annotations

import asyncio

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    elsewhere = asyncio.new_event_loop()
    elsewhere.close()
    for item in items:
        for lock in getattr(getattr(item, "module", None), "LOCKS", {}).values():
            lock._loop = elsewhere  # where asyncio.Lock keeps the loop it is bound to
