"""Every scenario has been seen to flip: with the thing it checks broken, its recorded verdict turns ``broken``.

``test_scenarios.py`` runs the whole suite unsabotaged (SQLite, and the local PostgreSQL/MariaDB servers) and checks
that every scenario ``works`` there: that baseline is not re-run here. It also shows two flips: without the plugin
(subject ``none``) every scenario declared ``implicit_io`` fails with MissingGreenlet, and its SABOTEUR (sessions
never return their connections) breaks the pool scenarios. This module covers the other scenarios. Each saboteur is
a small pytest plugin, loaded with ``-p`` into the suite and into the nested pytest runs some scenarios start, that
breaks one thing; the scenarios that check that thing must then be recorded ``broken``.

The saboteurs monkeypatch SQLAlchemy, driver, pytest-asyncio and pytest-greenlight internals: each emulates a real
bug or misconfiguration (named in ``emulates``), since the real libraries cannot be broken on demand.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
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
    plugin: str  # text of the pytest plugin module that breaks it
    databases: tuple[str, ...] = ("sqlite",)  # "sqlite", or the local servers "postgresql" / "mariadb"


SABOTEURS = [
    Saboteur(
        "contextvar-not-carried",
        ("context/contextvar-fixture-to-test",),
        "pytest-asyncio before 0.25: ContextVars an async fixture sets do not reach the test.",
        """
        import pytest_asyncio.plugin


        def _forget_the_fixtures_changes(context):
            return None


        def pytest_configure(config):
            pytest_asyncio.plugin._apply_contextvar_changes = _forget_the_fixtures_changes
        """,
    ),
    Saboteur(
        "fixture-on-another-loop",
        ("context/engine-session-in-fixture",),
        "asyncio_default_fixture_loop_scope=module with tests on their own loops: the fixture's session closes its "
        "connection from a loop the connection does not belong to.",
        """
        def pytest_configure(config):
            getini = config.getini

            def module_loop_for_fixtures(name):
                return "module" if name == "asyncio_default_fixture_loop_scope" else getini(name)

            config.getini = module_loop_for_fixtures
        """,
        # aiosqlite works from any loop: only drivers whose connections belong to a loop show the mismatch.
        databases=("postgresql", "mariadb"),
    ),
    Saboteur(
        "thread-local-not-green",
        ("context/green-thread-local",),
        "a GreenThreadLocal keyed by thread, like threading.local: gathered tasks overwrite each other's values.",
        """
        import threading

        from pytest_greenlight import local


        def pytest_configure(config):
            local.current_unit = threading.current_thread
        """,
    ),
    Saboteur(
        "sync-fixture-in-running-loop",
        ("context/sync-fixture-asyncio-run",),
        "sync fixtures of async tests set up from inside a running event loop, where asyncio.run refuses to start.",
        """
        import asyncio
        import inspect

        import pytest


        def _plain_function(function):
            return inspect.isfunction(function) and not (
                inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function)
            )


        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_fixture_setup(fixturedef, request):
            original = fixturedef.func
            if not (
                _plain_function(original)
                and request.scope == "function"
                and inspect.iscoroutinefunction(request.function)
            ):
                return (yield)

            def inside_a_running_loop(*args, **kwargs):
                async def call():
                    return original(*args, **kwargs)

                loop = asyncio.new_event_loop()
                try:
                    return loop.run_until_complete(call())
                finally:
                    loop.close()

            fixturedef.func = inside_a_running_loop
            try:
                return (yield)
            finally:
                fixturedef.func = original
        """,
    ),
    Saboteur(
        "cancelled-connection-leaks",
        ("gather/cancel-one",),
        "a connection whose task is cancelled mid-statement is leaked instead of returned to the pool.",
        """
        import asyncio

        from sqlalchemy import util
        from sqlalchemy.ext.asyncio import AsyncConnection

        # SQLAlchemy returns a cancelled connection twice over: it invalidates it (cancellation counts as an exit
        # exception), and AsyncConnection's exit closes it under a shield. The emulated bug loses both.
        _is_exit_exception = util.is_exit_exception
        _aexit = AsyncConnection.__aexit__


        def _cancellation_keeps_the_connection(error):
            return not isinstance(error, asyncio.CancelledError) and _is_exit_exception(error)


        async def _drop_the_connection_when_cancelled(self, type_, value, traceback):
            if type_ is not None and issubclass(type_, asyncio.CancelledError):
                return None
            return await _aexit(self, type_, value, traceback)


        def pytest_configure(config):
            util.is_exit_exception = _cancellation_keeps_the_connection
            AsyncConnection.__aexit__ = _drop_the_connection_when_cancelled
        """,
    ),
    Saboteur(
        "lock-bound-elsewhere",
        ("gather/lock-outside-loop",),
        "Python < 3.10: an asyncio.Lock is bound at creation to the loop current then, not the one that uses it.",
        """
        import asyncio


        def pytest_collection_modifyitems(items):
            elsewhere = asyncio.new_event_loop()
            elsewhere.close()
            for item in items:
                for lock in getattr(getattr(item, "module", None), "LOCKS", {}).values():
                    lock._loop = elsewhere  # where asyncio.Lock keeps the loop it is bound to
        """,
    ),
    Saboteur(
        "no-execute-mutex",
        ("gather/one-connection",),
        "a DBAPI adapter without its per-connection execute mutex: gathered statements interleave on the wire.",
        """
        from sqlalchemy.connectors import asyncio as connectors

        _init = connectors.AsyncAdapt_dbapi_connection.__init__


        class _NoLock:
            async def __aenter__(self):
                return None

            async def __aexit__(self, *exc_info):
                return None


        def _init_without_mutex(self, *args, **kwargs):
            _init(self, *args, **kwargs)
            self._execute_mutex = _NoLock()


        def pytest_configure(config):
            connectors.AsyncAdapt_dbapi_connection.__init__ = _init_without_mutex
        """,
        # aiosqlite runs one connection's statements one at a time on its thread anyway: the servers show it.
        databases=("postgresql", "mariadb"),
    ),
    Saboteur(
        "no-session-concurrency-guard",
        ("gather/one-session",),
        "SQLAlchemy 1.4's AsyncSession, without 2.0's guard against concurrent use: no clean InvalidRequestError.",
        """
        from sqlalchemy.orm import session as orm_session


        def pytest_configure(config):
            # The guard is the state-change decorator around _connection_for_bind; __wrapped__ is the bare method.
            guarded = orm_session.SessionTransaction._connection_for_bind
            orm_session.SessionTransaction._connection_for_bind = guarded.__wrapped__
        """,
    ),
    Saboteur(
        "pool-ignores-timeout",
        ("gather/pool-timeout",),
        "a pool whose async queue ignores pool_timeout: checkouts wait as long as it takes, never time out.",
        """
        from sqlalchemy.util import queue

        _get = queue.AsyncAdaptedQueue.get


        def _get_ignoring_timeout(self, block=True, timeout=None):
            return _get(self, block, None)


        def pytest_configure(config):
            queue.AsyncAdaptedQueue.get = _get_ignoring_timeout
        """,
    ),
    Saboteur(
        "aiosqlite-bound-to-loop",
        ("fixture-styles/session-engine-function-loop",),
        "aiosqlite connections bound to the loop that opened them, as asyncpg's and aiomysql's are.",
        """
        import asyncio

        import aiosqlite.core

        _connect = aiosqlite.core.Connection._connect
        _execute = aiosqlite.core.Connection._execute


        async def _connect_binding_the_loop(self):
            self._opened_on = asyncio.get_running_loop()
            return await _connect(self)


        async def _execute_on_the_opening_loop_only(self, fn, *args, **kwargs):
            if asyncio.get_running_loop() is not self._opened_on:
                raise RuntimeError(f"{self!r} is bound to a different event loop")
            return await _execute(self, fn, *args, **kwargs)


        def pytest_configure(config):
            aiosqlite.core.Connection._connect = _connect_binding_the_loop
            aiosqlite.core.Connection._execute = _execute_on_the_opening_loop_only
        """,
    ),
    Saboteur(
        "async-fixture-unawaited-for-sync-test",
        ("fixture-styles/sync-test-async-fixture",),
        "a runner that sets up async fixtures for async tests only: a sync test gets the unawaited coroutine.",
        """
        import inspect

        import pytest


        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_fixture_setup(fixturedef, request):
            original = fixturedef.func
            if not (
                inspect.iscoroutinefunction(original)
                and request.scope == "function"
                and not inspect.iscoroutinefunction(request.function)
            ):
                return (yield)

            def unmarked(*args, **kwargs):  # not a pytest_asyncio.fixture: pytest-asyncio leaves it alone
                return original(*args, **kwargs)

            fixturedef.func = unmarked
            try:
                return (yield)
            finally:
                fixturedef.func = original
        """,
    ),
    Saboteur(
        "implicit-io-sites-not-found",
        ("implicit-io/report-lists-sites",),
        "the recorder cannot tell where implicit IO happened, so the end-of-run report lists no sites.",
        """
        from pytest_greenlight import implicit_io


        def _no_site(step_greenlet):
            return None


        def pytest_configure(config):
            implicit_io.find_site = _no_site
        """,
    ),
    Saboteur(
        "strict-mode-lets-io-through",
        ("implicit-io/strict-refuses",),
        "strict mode that never refuses: implicit IO is served even under @pytest.mark.greenlight(strict=True).",
        """
        from pytest_greenlight import implicit_io

        _record = implicit_io.Recorder.__call__


        def _record_without_refusing(self, step_greenlet):
            self.strict = False  # the plugin sets it again from the marker before each test
            return _record(self, step_greenlet)


        def pytest_configure(config):
            implicit_io.Recorder.__call__ = _record_without_refusing
        """,
    ),
    Saboteur(
        "rollback-commits",
        ("transactions/rollback-per-test", "transactions/commit-in-app-code-rolled-back"),
        "the outer transaction's ROLLBACK commits instead, like a per-test fixture whose rollback undoes nothing.",
        """
        from sqlalchemy.engine import default


        def _rollback_commits(self, dbapi_connection):
            dbapi_connection.commit()


        def pytest_configure(config):
            default.DefaultDialect.do_rollback = _rollback_commits
        """,
    ),
    Saboteur(
        "rollback-to-savepoint-ignored",
        ("transactions/savepoint",),
        "ROLLBACK TO SAVEPOINT never reaches the database, so a rolled-back savepoint keeps its rows.",
        """
        from sqlalchemy.engine import default


        def _rollback_to_savepoint_does_nothing(self, connection, name):
            pass


        def pytest_configure(config):
            default.DefaultDialect.do_rollback_to_savepoint = _rollback_to_savepoint_does_nothing
        """,
    ),
    Saboteur(
        "memory-database-per-connection",
        ("driver-specifics/aiosqlite-memory-across-connections",),
        "sqlite+aiosqlite:// without its StaticPool: every connection opens a fresh, empty in-memory database.",
        """
        from sqlalchemy import pool
        from sqlalchemy.dialects.sqlite import aiosqlite


        def _fresh_connection_each_time(cls, url):
            return pool.NullPool


        def pytest_configure(config):
            aiosqlite.SQLiteDialect_aiosqlite.get_pool_class = classmethod(_fresh_connection_each_time)
        """,
    ),
    Saboteur(
        "asyncpg-no-statement-cache",
        ("driver-specifics/asyncpg-statement-cache-after-ddl",),
        "prepared_statement_cache_size=0: each run prepares afresh, so the step that must fail after DDL succeeds.",
        """
        from sqlalchemy.dialects.postgresql import asyncpg

        _connect = asyncpg.AsyncAdapt_asyncpg_dbapi.connect


        def _connect_without_statement_cache(self, *args, **kwargs):
            return _connect(self, *args, **{**kwargs, "prepared_statement_cache_size": 0})


        def pytest_configure(config):
            asyncpg.AsyncAdapt_asyncpg_dbapi.connect = _connect_without_statement_cache
        """,
        databases=("postgresql",),
    ),
    Saboteur(
        "mysql-autocommit-on",
        ("driver-specifics/mysql-autocommit-off",),
        "aiomysql/asyncmy connecting with autocommit on: an uncommitted insert is visible and survives rollback.",
        """
        from sqlalchemy.dialects.mysql import aiomysql, asyncmy


        def _with_autocommit(create_connect_args):
            def create(self, url, **kwargs):
                args, options = create_connect_args(self, url, **kwargs)
                return args, {**options, "autocommit": True}

            return create


        def pytest_configure(config):
            for dialect in (aiomysql.MySQLDialect_aiomysql, asyncmy.MySQLDialect_asyncmy):
                dialect.create_connect_args = _with_autocommit(dialect.create_connect_args)
        """,
        databases=("mariadb",),
    ),
    Saboteur(
        "stream-close-leaves-cursor-open",
        ("driver-specifics/stream-left-early",),
        "closing a streamed result leaves its server-side cursor open, its unread rows pending on the connection.",
        """
        from sqlalchemy.connectors import asyncio as connectors


        def _leave_the_cursor_open(self):
            pass


        def pytest_configure(config):
            connectors.AsyncAdapt_dbapi_ss_cursor.close = _leave_the_cursor_open
        """,
        # Only MySQL drivers notice a cursor left open (they warn when they read its rows away).
        databases=("mariadb",),
    ),
    Saboteur(
        "dispose-does-nothing",
        ("teardown-hygiene/dispose-on-wrong-loop",),
        "AsyncEngine.dispose() that closes nothing: the pooled connection is left to the garbage collector.",
        """
        from sqlalchemy.ext.asyncio import AsyncEngine


        async def _dispose_does_nothing(self, close=True):
            pass


        def pytest_configure(config):
            AsyncEngine.dispose = _dispose_does_nothing
        """,
    ),
    Saboteur(
        "leak-goes-unnoticed",
        ("teardown-hygiene/undisposed-engine",),
        "a driver whose finalizer stops a leaked connection silently (no ResourceWarning): nothing names the leak.",
        """
        import aiosqlite.core


        def _stop_silently(self):
            if self._connection is not None:
                self.stop()


        def pytest_configure(config):
            aiosqlite.core.Connection.__del__ = _stop_silently
        """,
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
    module = "saboteur_" + saboteur.name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(saboteur.plugin))
    databases = [sqlite(tmp_path) if name == "sqlite" else local(name) for name in saboteur.databases]
    selected = " or ".join(scenario_functions(saboteur.flips))
    lines, output = run_suite(
        tmp_path / "run", SUBJECT, databases, "-k", selected, extra_path=str(tmp_path), extra_plugins=[module]
    )
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
