"""Every scenario has been seen to flip: with the thing it checks broken, its recorded verdict turns ``broken``.

``test_scenarios.py`` runs the whole suite unsabotaged (SQLite, and the local PostgreSQL/MariaDB servers) and checks
that every scenario ``works`` there: that baseline is not re-run here. It also shows two flips: without the plugin
(subject ``none``) every scenario declared ``implicit_io`` fails with MissingGreenlet, and its SABOTEUR (sessions
never return their connections) breaks the pool scenarios. This module covers the other scenarios. Each saboteur is
a small pytest plugin, loaded with ``-p`` into the suite and into the nested pytest runs some scenarios start, that
breaks one thing; the scenarios that check that thing must then be recorded ``broken``.

The saboteurs monkeypatch SQLAlchemy, driver, pytest-asyncio and pytest-greenlight internals: each emulates a real
bug or misconfiguration (named in ``emulates``), since the real libraries cannot be broken on demand. They are real
modules in ``tests/matrix/saboteurs/``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from matrix.scenarios import catalogue
from matrix.scenarios.core import REGISTRY, current_axes, scenario_of
from tests.matrix.test_scenarios import SUITE, local, run_suite, sqlite

# Every scenario works under pytest-greenlight (test_scenarios.py), and the plugin's own scenarios need it.
SUBJECT = "greenlight"


@dataclasses.dataclass(frozen=True)
class Saboteur:
    name: str
    flips: tuple[str, ...]  # scenario ids that must be recorded broken
    emulates: str  # the real-world breakage, in one sentence
    databases: tuple[str, ...] = ("sqlite",)  # "sqlite", or the local servers "postgresql" / "mariadb"

    @property
    def plugin(self) -> str:
        """The pytest plugin that breaks it: ``tests/matrix/saboteurs/<name>.py``, importable from the repository."""
        return f"tests.matrix.saboteurs.{self.name.replace('-', '_')}"


SABOTEURS = [
    Saboteur(
        "contextvar-not-carried",
        ("context/contextvar-fixture-to-test",),
        "pytest-asyncio before 0.25: ContextVars an async fixture sets do not reach the test.",
    ),
    Saboteur(
        "fixture-on-another-loop",
        ("context/engine-session-in-fixture",),
        "asyncio_default_fixture_loop_scope=module with tests on their own loops: the fixture's session closes its "
        "connection from a loop the connection does not belong to.",
        # aiosqlite works from any loop: only drivers whose connections belong to a loop show the mismatch.
        databases=("postgresql", "mariadb"),
    ),
    Saboteur(
        "thread-local-not-green",
        ("context/green-thread-local",),
        "a GreenThreadLocal keyed by thread, like threading.local: gathered tasks overwrite each other's values.",
    ),
    Saboteur(
        "sync-fixture-in-running-loop",
        ("context/sync-fixture-asyncio-run",),
        "sync fixtures of async tests set up from inside a running event loop, where asyncio.run refuses to start.",
    ),
    Saboteur(
        "cancelled-connection-leaks",
        ("gather/cancel-one",),
        "a connection whose task is cancelled mid-statement is leaked instead of returned to the pool.",
    ),
    Saboteur(
        "lock-bound-elsewhere",
        ("gather/lock-outside-loop",),
        "Python < 3.10: an asyncio.Lock is bound at creation to the loop current then, not the one that uses it.",
    ),
    Saboteur(
        "no-execute-mutex",
        ("gather/one-connection",),
        "a DBAPI adapter without its per-connection execute mutex: gathered statements interleave on the wire.",
        # aiosqlite runs one connection's statements one at a time on its thread anyway: the servers show it.
        databases=("postgresql", "mariadb"),
    ),
    Saboteur(
        "driver-error-on-concurrent-session",
        ("gather/one-session",),
        "SQLAlchemy 1.4 on asyncpg: gather over one AsyncSession fails with the driver's \"another operation is in "
        "progress\", not with 2.0's clean InvalidRequestError.",
    ),
    Saboteur(
        "pool-ignores-timeout",
        ("gather/pool-timeout",),
        "a pool whose async queue ignores pool_timeout: checkouts wait as long as it takes, never time out.",
    ),
    Saboteur(
        "aiosqlite-bound-to-loop",
        ("fixture-styles/session-engine-function-loop",),
        "aiosqlite connections bound to the loop that opened them, as asyncpg's and aiomysql's are.",
    ),
    Saboteur(
        "async-fixture-unawaited-for-sync-test",
        ("fixture-styles/sync-test-async-fixture",),
        "a runner that sets up async fixtures for async tests only: a sync test gets the unawaited coroutine.",
    ),
    Saboteur(
        "implicit-io-sites-not-found",
        ("implicit-io/report-lists-sites",),
        "the recorder cannot tell where implicit IO happened, so the end-of-run report lists no sites.",
    ),
    Saboteur(
        "strict-mode-lets-io-through",
        ("implicit-io/strict-refuses",),
        "strict mode that never refuses: implicit IO is served even under @pytest.mark.greenlight(strict=True).",
    ),
    Saboteur(
        "rollback-commits",
        ("transactions/rollback-per-test", "transactions/commit-in-app-code-rolled-back"),
        "the outer transaction's ROLLBACK commits instead, like a per-test fixture whose rollback undoes nothing.",
    ),
    Saboteur(
        "rollback-to-savepoint-ignored",
        ("transactions/savepoint",),
        "ROLLBACK TO SAVEPOINT never reaches the database, so a rolled-back savepoint keeps its rows.",
    ),
    Saboteur(
        "memory-database-per-connection",
        ("driver-specifics/aiosqlite-memory-across-connections",),
        "sqlite+aiosqlite:// without its StaticPool: every connection opens a fresh, empty in-memory database.",
    ),
    Saboteur(
        "asyncpg-no-statement-cache",
        ("driver-specifics/asyncpg-statement-cache-after-ddl",),
        "prepared_statement_cache_size=0: each run prepares afresh, so the step that must fail after DDL succeeds.",
        databases=("postgresql",),
    ),
    Saboteur(
        "mysql-autocommit-on",
        ("driver-specifics/mysql-autocommit-off",),
        "aiomysql/asyncmy connecting with autocommit on: an uncommitted insert is visible and survives rollback.",
        databases=("mariadb",),
    ),
    Saboteur(
        "stream-close-leaves-cursor-open",
        ("driver-specifics/stream-left-early",),
        "closing a streamed result leaves its server-side cursor open, its unread rows pending on the connection.",
        # Only MySQL drivers notice a cursor left open (they warn when they read its rows away).
        databases=("mariadb",),
    ),
    Saboteur(
        "dispose-does-nothing",
        ("teardown-hygiene/dispose-on-wrong-loop",),
        "AsyncEngine.dispose() that closes nothing: the pooled connection is left to the garbage collector.",
    ),
    Saboteur(
        "leak-goes-unnoticed",
        ("teardown-hygiene/undisposed-engine",),
        "a driver whose finalizer stops a leaked connection silently (no ResourceWarning): nothing names the leak.",
    ),
]

# The scenarios test_scenarios.py's SABOTEUR flips (sessions never return their connections).
POOL_SCENARIOS = {"gather/concurrent-sessions", "gather/task-group", "gather/pool-overflow-waits"}
# Never seen to flip in the project's tests, each with the reason. Keep it short.
NOT_SABOTAGED = {
    # Declared implicit_io, it flips with the plugin off where it applies (the matrix's older stacks); but these
    # tests run on the newest stack only, whose pytest-asyncio (1.x) removed the event_loop fixture it is about.
    "fixture-styles/event-loop-override": "n/a on the only stack that runs these tests (pytest-asyncio >= 1.0)",
}


def scenario_functions(ids: tuple[str, ...]) -> list[str]:
    """The scenario test functions declaring ``ids`` (what ``-k`` selects)."""
    catalogue.load_all()
    found = {}
    for module in SUITE.glob("test_*.py"):
        loaded = sys.modules[f"matrix.scenarios.{module.stem}"]
        for name, value in vars(loaded).items():
            declared = scenario_of(value)
            if declared is not None and declared.id in ids:
                found[declared.id] = name
    assert set(found) == set(ids), f"no scenario function for {sorted(set(ids) - set(found))}"
    return sorted(found.values())


def describe(line: dict[str, Any]) -> str:
    return (
        f"{line['id']} [{line['database']}]: {line['verdict']} ({line['outcome']} {line['exception']}: "
        f"{(line['message'] or '')[:300]})"
    )


@pytest.mark.parametrize(
    "saboteur",
    [
        pytest.param(s, id=s.name, marks=[pytest.mark.local_servers] if set(s.databases) - {"sqlite"} else [])
        for s in SABOTEURS
    ],
)
def test_saboteur_flips_its_scenarios(saboteur: Saboteur, tmp_path: Path) -> None:
    databases = [sqlite(tmp_path) if name == "sqlite" else local(name) for name in saboteur.databases]
    selected = " or ".join(scenario_functions(saboteur.flips))
    lines, output = run_suite(tmp_path / "run", SUBJECT, databases, "-k", selected, extra_plugins=[saboteur.plugin])
    recorded = {(line["id"], line["database"]) for line in lines}
    wanted = {(sid, db["name"]) for sid in saboteur.flips for db in databases}
    assert recorded == wanted, f"recorded {sorted(recorded)}, wanted {sorted(wanted)}\n{output}"
    unbroken = [describe(line) for line in lines if line["verdict"] != "broken"]
    assert not unbroken, f"{saboteur.emulates}\nyet these were not broken:\n" + "\n".join(unbroken)


def test_every_scenario_is_seen_to_flip() -> None:
    """Saboteurs here, the plugin-off run and the pool saboteur of test_scenarios.py flip every scenario between
    them, but for the commented few of NOT_SABOTAGED."""
    catalogue.load_all()
    # The plugin-off run of test_scenarios.py flips the implicit-IO scenarios that apply to subject "none" here.
    plugin_off = dataclasses.replace(current_axes(), subject="none").with_target(driver="aiosqlite", database="sqlite")
    by_plugin_off = {sid for sid, s in REGISTRY.items() if s.implicit_io and s.resolve(plugin_off).kind != "n/a"}
    by_saboteurs = {sid for saboteur in SABOTEURS for sid in saboteur.flips}
    seen = by_plugin_off | by_saboteurs | POOL_SCENARIOS
    assert seen <= set(REGISTRY), f"unknown scenario ids: {sorted(seen - set(REGISTRY))}"
    assert set(NOT_SABOTAGED) <= set(REGISTRY), f"unknown scenario ids: {sorted(set(NOT_SABOTAGED) - set(REGISTRY))}"
    never_seen = set(REGISTRY) - seen - set(NOT_SABOTAGED)
    assert not never_seen, f"never seen to flip: {sorted(never_seen)}"
