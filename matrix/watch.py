"""pytest plugin for the scenario run (``-p matrix.watch``): lets the runner see and step over a scenario that hangs.

pytest-timeout stops most hangs, but not one that blocks again after it fired (a teardown waiting on a database lock,
say). So the runner watches: this plugin appends ``start <nodeid>`` / ``end <nodeid>`` lines to
``GREENLIGHT_WATCH_OUT``; a scenario that started and never ended within the limit gets its pytest run killed. The
runner then starts pytest again with ``GREENLIGHT_WATCH_PLAN`` = ``{"skip": [...], "hung": {nodeid: message}}``:
scenarios that already finished are deselected, and the one that hung fails at once with ``message`` (which starts
like pytest-timeout's own, so the recorder writes it as outcome ``timeout``), so it is recorded and the rest runs.

Runs inside the cell's environment: standard library and pytest only.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_plan: dict[str, Any] = {}


def _write(kind: str, nodeid: str) -> None:
    path = os.environ.get("GREENLIGHT_WATCH_OUT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{kind} {nodeid}\n")
            out.flush()


def pytest_configure(config: pytest.Config) -> None:
    _plan.clear()
    _plan.update(json.loads(os.environ.get("GREENLIGHT_WATCH_PLAN") or "{}"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = set(_plan.get("skip", ()))
    if not skip:
        return
    kept = [item for item in items if item.nodeid not in skip]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid in skip])
    items[:] = kept


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _write("start", nodeid)


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _write("end", nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    message = _plan.get("hung", {}).get(item.nodeid)
    if message:
        pytest.fail(message, pytrace=False)
