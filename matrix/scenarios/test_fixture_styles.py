"""Fixture styles: the ways users write async fixtures and tests, each run in a nested pytest of its own.

Every inner test does explicit IO and implicit IO (a lazy load) in its fixtures and in the test, because making
that work in every style is what a greenlet plugin is for; without one, the lazy loads raise MissingGreenlet. The
inner modules are real files in ``matrix/scenarios/layouts/`` (``strict/``, ``auto_mode/``, ``anyio_marker/``).
"""

from __future__ import annotations

import pytest

from matrix.scenarios.core import (
    NOT_DATABASE,
    PASS,
    current_axes,
    not_applicable,
    raises,
    scenario,
    version_matches,
    when,
)
from matrix.scenarios.nested import NESTED_TIMEOUT, STRICT_LAYOUTS, has_loop_scope, ini_text, own_run, run_nested

# The strict-mode layouts (matrix/scenarios/layouts/strict/) share one nested pytest per database (a fresh
# interpreter costs seconds); each scenario reads the results of its own inner module.
LAYOUTS = STRICT_LAYOUTS


LAYOUTS.add("strict_mode")


# depends on pytest-asyncio and pytest, every scenario here: fixture styles, modes, loop scopes and markers are
# exactly what they implement.
@scenario(
    "fixture-styles/strict-mode",
    checks="asyncio_mode=strict: @pytest_asyncio.fixture (yield, async teardown) and @pytest.mark.asyncio tests",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_strict_mode(db):
    LAYOUTS.run("strict_mode", db).require(passed=1)


@scenario(
    "fixture-styles/auto-mode",
    checks="asyncio_mode=auto: plain @pytest.fixture async fixtures and unmarked async tests",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_auto_mode(db):
    run_nested(
        "fixture-styles/auto-mode", db, own_run("auto_mode"), ini=ini_text(mode="auto"), every_database=False
    ).require(passed=1)


LAYOUTS.add("yield_async_teardown")


@scenario(
    "fixture-styles/yield-async-teardown",
    checks="a yield fixture whose async teardown does IO (lazy load, delete, commit); the next test sees it ran",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_yield_async_teardown(db):
    LAYOUTS.run("yield_async_teardown", db).require(passed=2)


LAYOUTS.add("class_based")


@scenario(
    "fixture-styles/class-based",
    checks="async test methods in a class, with an async fixture defined on the class",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_class_based(db):
    LAYOUTS.run("class_based", db).require(passed=2)


LAYOUTS.add("parametrized_autouse")


@scenario(
    "fixture-styles/parametrized-autouse",
    checks="a parametrized async fixture and an autouse async fixture, both doing IO, around one async test",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_parametrized_autouse(db):
    LAYOUTS.run("parametrized_autouse", db).require(passed=2)


LAYOUTS.add("sync_test_async_fixture")


@scenario(
    "fixture-styles/sync-test-async-fixture",
    checks="a plain (sync) test requests an @pytest_asyncio.fixture that does IO",
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_sync_test_async_fixture(db):
    LAYOUTS.run("sync_test_async_fixture", db).require(passed=1)


LAYOUTS.add(
    "loop_scope_module",
    applies=has_loop_scope(),
)


@scenario(
    "fixture-styles/loop-scope-module",
    checks="a module-scoped engine fixture on a module-scoped loop (loop_scope), shared by two tests",
    expect=PASS,
    unless=[when(pytest_asyncio="<0.24", expect=not_applicable("loop_scope is new in pytest-asyncio 0.24"))],
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_loop_scope_module(db):
    LAYOUTS.run("loop_scope_module", db).require(passed=2)


LAYOUTS.add(
    "session_engine_function_loop",
    applies=has_loop_scope(),
    every_database=True,  # its expectation depends on the driver
)


@scenario(
    "fixture-styles/session-engine-function-loop",
    checks="an engine from a session-scoped fixture (session loop) used in tests on their own function loops: "
    "drivers whose connections belong to a loop fail cleanly with asyncio's cross-loop RuntimeError",
    expect=PASS,
    unless=[
        when(pytest_asyncio="<0.24", expect=not_applicable("loop_scope is new in pytest-asyncio 0.24")),
        # asyncio's cross-loop RuntimeError; asyncpg may report the rollback that follows it instead.
        when(driver="asyncpg", expect=raises("RuntimeError", "sqlalchemy.exc.InterfaceError")),
        when(driver=("aiomysql", "asyncmy"), expect=raises("RuntimeError")),
    ],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_session_engine_function_loop(db):
    LAYOUTS.run("session_engine_function_loop", db).require(passed=2)


LAYOUTS.add(
    "event_loop_override",
    applies=version_matches(current_axes().pytest_asyncio, "<1.0"),
)


@scenario(
    "fixture-styles/event-loop-override",
    checks="a user-defined event_loop fixture (the pre-1.0 way to pick a loop) runs the test on that loop",
    expect=PASS,
    unless=[when(pytest_asyncio=">=1.0", expect=not_applicable("pytest-asyncio 1.0 removed the event_loop fixture"))],
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_event_loop_override(db):
    LAYOUTS.run("event_loop_override", db).require(passed=1)


@scenario(
    "fixture-styles/anyio-marker",
    checks="@pytest.mark.anyio test (asyncio backend) with implicit IO, next to pytest-asyncio (run in a process of "
    "its own: a runner left in a bad state would break every later scenario)",
    implicit_io=True,
    depends=NOT_DATABASE,
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_anyio_marker(db):
    run_nested("fixture-styles/anyio-marker", db, own_run("anyio_marker"), every_database=False).require(passed=1)
