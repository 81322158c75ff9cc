"""A pytest plugin for ``test_scenarios.py``: once the first scenario on SQLite ends, hold its file's write lock.

It emulates what a scenario that fails mid-transaction without a portal leaves behind (seen in
py3.12-sa1.4-pa0.21-pt8.4 under ``none``): an aiosqlite connection, never closed, inside a write transaction,
holding SQLite's RESERVED lock until the process ends. Where the lock was taken is appended to
``GREENLIGHT_TEST_LEAKED_LOCKS`` so the test can tell that it really happened. Only in the outer run (nested runs
do not get ``GREENLIGHT_SCENARIO_OUT``).
"""

from __future__ import annotations

import os
import sqlite3

import pytest

_HELD: list[sqlite3.Connection] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    target = getattr(item, "callspec", None) and item.callspec.params.get("db")  # type: ignore[attr-defined]
    if _HELD or not os.environ.get("GREENLIGHT_SCENARIO_OUT") or getattr(target, "kind", None) != "sqlite":
        return
    path = target.url.split(":///", 1)[1]
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")  # the write lock, held until this process ends
    _HELD.append(connection)
    with open(os.environ["GREENLIGHT_TEST_LEAKED_LOCKS"], "a", encoding="utf-8") as out:
        out.write(f"{item.nodeid} {path}\n")
