"""Wiring of the scenario suite: every scenario runs once per (database, driver) of ``GREENLIGHT_DATABASES``.

Scenarios take the ``db`` fixture (a :class:`~matrix.scenarios.support.Target`) and usually ``models`` (fresh,
seeded Parent/Child tables with a prefix of their own, dropped afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from matrix.scenarios.core import current_axes, scenario_of
from matrix.scenarios.support import (
    Target,
    create_tables,
    drop_tables,
    missing_dialect,
    make_models,
    targets,
    unique_prefix,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db" in metafunc.fixturenames:
        found = targets()
        metafunc.parametrize("db", found, ids=[t.id for t in found])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a scenario whose expectation for this cell and driver is 'not applicable', with its reason."""
    declared = scenario_of(getattr(item, "obj", None))
    target = getattr(item, "callspec", None) and item.callspec.params.get("db")  # type: ignore[attr-defined]
    if declared is None or not isinstance(target, Target):
        return
    missing = missing_dialect(target)
    if missing:
        pytest.skip(missing)
    expect = declared.resolve(current_axes().with_target(driver=target.driver, database=target.kind))
    if expect.kind == "n/a":
        pytest.skip(expect.detail)


@pytest.fixture
def models(db: Target) -> Iterator[SimpleNamespace]:
    """Parent 1 with children 1 and 2, in tables of their own; created and dropped off the scenario's loop."""
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)
