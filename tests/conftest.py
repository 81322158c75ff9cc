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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _xdist_groups(items)
    if config.getoption("--run-docker") or os.environ.get("GREENLIGHT_RUN_DOCKER") == "1":
        return
    skip = pytest.mark.skip(reason="needs a Docker engine: run with --run-docker or GREENLIGHT_RUN_DOCKER=1")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


def _xdist_groups(items: list[pytest.Item]) -> None:
    """Under ``-n auto --dist loadgroup`` (``nox -s tests``) tests go to the workers one by one, except groups that
    one worker takes whole: every test marked ``docker`` (no two of them start containers from the offline images at
    the same time), and the tests of a file that share one of its module- or session-scoped fixtures (a runtime root,
    a nox run, a container), so that fixture is made once."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if "docker" in item.keywords:
            item.add_marker(pytest.mark.xdist_group("docker"))
        elif _uses_a_shared_fixture_of_ours(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _uses_a_shared_fixture_of_ours(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)  # pytest's, on every function item since pytest 3
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            code = getattr(definition.func, "__code__", None)
            if definition.scope != "function" and code is not None and code.co_filename.startswith(TESTS):
                return True
    return False


TESTS = os.path.dirname(os.path.abspath(__file__)) + os.sep


def pytest_configure(config: pytest.Config) -> None:
    # xdist workers share nox's GREENLIGHT_INVOCATION, which names the cell databases on the local servers and the
    # containers the provisioner starts: each worker is an invocation of its own (its pid, as without nox), so two
    # workers running the same cell never drop each other's database.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["GREENLIGHT_INVOCATION"] = str(os.getpid())
