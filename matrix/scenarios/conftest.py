"""Wiring of the scenario suite: every scenario runs once per (database, driver) of ``GREENLIGHT_DATABASES``.

Scenarios take the ``db`` fixture (a :class:`~matrix.scenarios.support.Target`) and usually ``models`` (fresh,
seeded Parent/Child tables with a prefix of their own, dropped afterwards).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Generator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from matrix.scenarios.core import current_axes, scenario_of
from matrix.scenarios.support import (
    Target,
    create_tables,
    drop_tables,
    make_models,
    missing_dialect,
    own_database,
    representative,
    targets,
    unique_prefix,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db" in metafunc.fixturenames:
        # A SQLite file per scenario: one scenario's leaked write lock must not fail the next ones.
        name = f"{metafunc.module.__name__.rsplit('.', 1)[-1]}.{metafunc.function.__name__}"
        found = [own_database(target, name) for target in targets()]
        declared = scenario_of(metafunc.function)
        if declared is not None and not declared.per_database:
            # One run stands for every database of the cell: the recorder writes its result for each of them.
            first = representative(found)
            found = [first] if first is not None else found
        metafunc.parametrize("db", found, ids=[t.id for t in found])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from matrix.scenarios import nested

    marks = (item.get_closest_marker("timeout") for item in items)
    if any(mark is not None and mark.args[:1] == (nested.NESTED_TIMEOUT,) for mark in marks):
        # Nested scenarios are selected: the fork server imports pytest, SQLAlchemy and the drivers now, while the
        # first scenarios run, instead of when the first nested scenario needs it.
        nested.start_server()
    for item in items:
        options = getattr(getattr(item, "obj", None), "greenlight_marker", None)
        if options is not None:
            item.add_marker(pytest.mark.greenlight(**options))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported and collected so far lives for the whole run: move it out of the collector's sight.
    The gc.collect() after every scenario (below) then looks only at what scenarios made (their leaked
    connections, which is what it is for): measured 38 ms -> under 0.1 ms a collection, the biggest CPU cost
    of a cell before (two collections per scenario and database)."""
    gc.freeze()


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


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Collect garbage before pytest renders a failure, while nothing else runs.

    A scenario that fails mid-IO leaves driver connections whose ``__del__`` raises "Event loop is closed". If the
    collector runs them inside pytest's traceback rendering (``ast.parse``), the unraisable-exception hook parses
    source again, re-entering CPython 3.11's AST converter, whose shared depth counter then fails with
    "SystemError: AST constructor recursion depth mismatch": an INTERNALERROR that ends the whole run.
    """
    if call.excinfo is not None:
        gc.collect()
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The same collection, for what the scenario's own teardown left; then freeze what survived it.

    What outlives its scenario (SQLAlchemy's registries and caches, the drivers' module state) is never garbage a
    later scenario must see, but every full collection scanned it again: on a cell with every database (520
    scenario runs per subject) those collections grew with the run and took about 40% of the cell's CPU. Frozen,
    each collection looks only at the objects of the scenario that just ran. Measured, one Docker cell
    (py3.12-sa2.1-pa1.5-pt9, --fresh --no-share), twice each way: 139 / 130 CPU-s before, 79 / 80 after; the
    same 1,560 verdicts both times. Something still referenced here that becomes garbage later is not collected
    in a later scenario, where its finalizer ("Event loop is closed", a GC warning) would only be noise there."""
    gc.collect()
    gc.freeze()


_EXIT_STATUS: list[int] = []
LEFTOVER_GRACE = 1.0  # seconds for leaked driver threads to end at exit, shared by all of them


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Do not let a leaked driver thread keep the run alive after the last result is written.

    A scenario that fails mid-IO (MissingGreenlet without a portal) can leak an aiosqlite connection, whose
    non-daemon worker thread would make the interpreter wait for it forever at exit. By now every result line,
    the JUnit XML and the terminal summary are written, so exiting hard loses nothing.
    """
    leftover = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in leftover:
        thread.join(LEFTOVER_GRACE / max(1, len(leftover)))
    stuck = [t.name for t in leftover if t.is_alive()]
    if stuck:
        sys.stdout.write(f"\nscenario suite: exiting past {len(stuck)} leaked thread(s): {', '.join(stuck)}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1] if _EXIT_STATUS else 1)


@pytest.fixture
def models(db: Target) -> Iterator[SimpleNamespace]:
    """Parent 1 with children 1 and 2, in tables of their own; created and dropped off the scenario's loop."""
    found = make_models(unique_prefix())
    create_tables(db, found)
    yield found
    drop_tables(db, found)
