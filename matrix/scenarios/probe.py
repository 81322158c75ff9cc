"""pytest plugin loaded into nested runs (``-p matrix.scenarios.probe``): one JSON line per inner test phase.

The outer scenario reads these lines to learn which inner test failed and with which exception, so that a nested
scenario is recorded with the inner exception's name like any other scenario.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest

from matrix.scenarios.recorder import exception_names


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    path = os.environ.get("GREENLIGHT_PROBE_OUT")
    if not path or (report.passed and report.when != "call"):
        return
    names = exception_names(call.excinfo.value) if call.excinfo is not None and report.failed else []
    entry = {
        "nodeid": item.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "names": names,
        "message": str(call.excinfo.value) if names and call.excinfo is not None else "",
        "longrepr": report.longreprtext if not report.passed else "",
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that fails to import is an inner failure too."""
    path = os.environ.get("GREENLIGHT_PROBE_OUT")
    if path and report.failed:
        entry = {
            "nodeid": report.nodeid,
            "when": "collect",
            "outcome": "failed",
            "names": [],
            "message": report.longreprtext[-2000:],
            "longrepr": report.longreprtext,
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
