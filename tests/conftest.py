"""Opt-in gates for tests that need more than Python: Docker, the local database servers, a browser.

Like nox's own test-suite gate for conda, tests that need a Docker engine are skipped unless the run opts in with
``--run-docker`` or ``GREENLIGHT_RUN_DOCKER=1`` (``.ci/run`` sets it once the engine is up), so ``nox -s tests`` stays
runnable on a laptop without one.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-docker",
        action="store_true",
        default=False,
        help="run tests marked 'docker' (they start real containers from the offline images)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-docker") or os.environ.get("GREENLIGHT_RUN_DOCKER") == "1":
        return
    skip = pytest.mark.skip(reason="needs a Docker engine: run with --run-docker or GREENLIGHT_RUN_DOCKER=1")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)
