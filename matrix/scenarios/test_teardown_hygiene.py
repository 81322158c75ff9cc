"""Teardown hygiene: engines and connections that outlive the loop they were made on.

Both scenarios run nested, with unraisable-exception and resource warnings turned into errors, so that what
would otherwise be noise at garbage collection ("Event loop is closed", "non-checked-in connection") becomes a
named, recorded outcome. They share one pytest process per database (a process costs more than both scenarios);
each inner module collects its own leftovers, so one module's leak cannot surface in the other's tests.
"""

from __future__ import annotations

import pytest

from matrix.scenarios.core import PASS, raises, scenario, when
from matrix.scenarios.nested import LAYOUTS, NESTED_TIMEOUT, NestedGroup

STRICT_WARNINGS = [
    "-W",
    "error::pytest.PytestUnraisableExceptionWarning",
    "-W",
    "error::ResourceWarning",
]

# The inner modules: matrix/scenarios/layouts/teardown_hygiene/.
HYGIENE = NestedGroup("teardown-hygiene", LAYOUTS / "teardown_hygiene", args=STRICT_WARNINGS, isolated=True)
HYGIENE.add("undisposed_engine")
HYGIENE.add("dispose_on_wrong_loop")


# depends: everything (the default): what happens to connections when pytest-asyncio closes a test's loop (1.1
# cancels what is left) and how pytest reports unraisable exceptions is the point.
@scenario(
    "teardown-hygiene/undisposed-engine",
    checks="a test leaves its engine undisposed (pooled connection checked in); when it is collected after its "
    "loop closed, the leak surfaces as a named warning in the next test, never as a hang or crash",
    expect=raises("pytest.PytestUnraisableExceptionWarning"),
    # Before 2.0.38 the aiosqlite dialect gives a file database a NullPool (its get_pool_class, read in the wheels of
    # 1.4.24, 2.0.0 ... 2.0.37; 2.0.38 switched to AsyncAdaptedQueuePool): nothing stays pooled, so nothing leaks.
    unless=[when(database="sqlite", sqlalchemy="<2.0.38", expect=PASS)],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_undisposed_engine(db):
    HYGIENE.run("undisposed_engine", db).require(passed=2)


@scenario(
    "teardown-hygiene/dispose-on-wrong-loop",
    checks="an engine used on one test's loop is disposed from the next test's loop: its pooled connections "
    "are closed without unraisable errors or resource warnings",
    expect=PASS,
    # aiomysql's Connection.__del__ warns "Unclosed connection"; pytest before 8.4 reports that as an unraisable
    # exception at the test's teardown, 8.4 no longer does. Bisected on 2 December 2026 on MariaDB 10.11, aiomysql
    # 0.3.2, without the plugin: pytest 7.4.0, 8.0.2 and 8.3.5 fail (SQLAlchemy 2.0.0 and 2.0.58 alike), 8.4.2
    # passes. (An earlier rule keyed this to SQLAlchemy 1.4: the old axes paired SQLAlchemy 1.4 with older pytest.)
    unless=[when(driver="aiomysql", pytest="<8.4", expect=raises("pytest.PytestUnraisableExceptionWarning"))],
)
@pytest.mark.timeout(NESTED_TIMEOUT)
def test_dispose_on_wrong_loop(db):
    HYGIENE.run("dispose_on_wrong_loop", db).require(passed=2)
