"""The conftest of every nested run: the outer run's databases as the ``db`` fixture, and fresh tables per test."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Generator
from types import SimpleNamespace

import pytest

from matrix.scenarios.nested import inner_targets
from matrix.scenarios.support import Target, create_tables, drop_tables, make_models, unique_prefix

TARGETS = inner_targets()


@pytest.fixture(scope="session", params=[t for _, t in TARGETS], ids=[i for i, _ in TARGETS])
def db(request: pytest.FixtureRequest) -> Target:
    target: Target = request.param
    return target


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    first_only = set(json.loads(os.environ.get("GREENLIGHT_NESTED_FIRST_ONLY") or "[]"))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        spec = getattr(item, "callspec", None)
        ids = set(spec.id.split("-")) if spec is not None else set()
        module = item.nodeid.split("::")[0]
        (drop if module in first_only and ids and "DB0" not in ids else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    if call.excinfo is not None:
        gc.collect()  # see the outer conftest: keeps CPython 3.11's AST re-entrancy bug out of rendering
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    gc.collect()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()  # see the outer conftest: collections then look only at what the inner tests made


@pytest.fixture
def models(db: Target) -> Generator[SimpleNamespace, None, None]:
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)
