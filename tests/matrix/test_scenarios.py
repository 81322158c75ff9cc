"""The scenario suite run for real, as the matrix runner runs it: a subprocess pytest with the recorder, per subject.

The claim checked here is the suite's reason to exist: a scenario's recorded verdict changes when the thing it
checks is broken. Without a greenlet portal (subject ``none``) every scenario declared ``implicit_io`` is recorded
``broken`` with ``MissingGreenlet``; with pytest-greenlight, everything is ``works`` (or skipped, with a reason).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from matrix.scenarios import catalogue
from matrix.scenarios.core import REGISTRY
from tests.matrix import suite_runner
from tests.matrix.suite_runner import BASE, SUBJECT_PLUGINS, SUITE, sqlite

LOCAL = {
    "postgresql": ("postgresql", "asyncpg", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    "mariadb": ("mysql", "aiomysql", "mysql+aiomysql://root@127.0.0.1:3306/test"),
}
SCHEMA_KEYS = {
    "id", "category", "database", "driver", "checks", "expected", "outcome", "exception", "verdict", "duration",
    "message", "traceback",
}  # fmt: skip


def local(name: str) -> dict[str, str]:
    kind, driver, url = LOCAL[name]
    return {"name": name, "kind": kind, "driver": driver, "url": url}


def run_suite(
    tmp: Path,
    subject: str,
    databases: Sequence[dict[str, str]],
    *args: str,
    extra_plugins: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], str]:
    """Run the suite like the matrix runner does; return the recorded lines and pytest's output.

    ``extra_plugins`` (module names, importable from the repository root) are loaded like the subject's plugins, so that
    they reach the nested pytest runs too (those take their plugins from GREENLIGHT_PLUGIN_ARGS).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"{subject}.jsonl"
    plugins = BASE + SUBJECT_PLUGINS[subject] + [arg for name in extra_plugins for arg in ("-p", name)]
    env = {
        **suite_runner.base_env(),
        "GREENLIGHT_CELL": json.dumps({"id": "test", "subject": subject}),
        "GREENLIGHT_DATABASES": json.dumps(list(databases)),
        "GREENLIGHT_PLUGIN_ARGS": json.dumps(plugins),
        "GREENLIGHT_SCENARIO_OUT": str(out),
    }
    return suite_runner.run(tmp, env, out, plugins, args, timeout=SUITE_TIMEOUT - 60)


def check_verdicts(lines: list[dict[str, Any]], subject: str, databases: Sequence[dict[str, str]]) -> None:
    """Every scenario has one line per database, and its verdict is what its declaration says it must be."""
    catalogue.load_all()
    seen = {(line["id"], line["database"], line["driver"]) for line in lines}
    assert len(seen) == len(lines), "a (scenario, database, driver) recorded twice"
    wanted = {(sid, db["name"], db["driver"]) for sid in REGISTRY for db in databases}
    assert seen == wanted, f"missing {sorted(wanted - seen)[:5]}, unexpected {sorted(seen - wanted)[:5]}"
    problems = []
    for line in lines:
        assert set(line) - {"ran_on"} == SCHEMA_KEYS
        # ran_on: the scenario does not depend on the database; its one run stands for this database too
        assert ("ran_on" in line) == (
            not REGISTRY[line["id"]].per_database and line["database"] != databases[0]["name"]
        )
        declared = REGISTRY[line["id"]]
        if line["verdict"] == "skipped":
            assert line["message"], f"{line['id']} skipped without a reason"
            continue
        if subject == "none" and declared.implicit_io:
            ok = line["verdict"] == "broken" and line["exception"] == "sqlalchemy.exc.MissingGreenlet"
        else:
            ok = line["verdict"] == "works"
        if not ok:
            problems.append(
                f"{line['id']} [{line['database']}-{line['driver']}]: expected {line['expected']}, "
                f"got {line['outcome']} {line['exception']}: {(line['message'] or '')[:300]}"
            )
    assert not problems, "\n".join(problems)


def run_both(tmp: Path, databases: Sequence[dict[str, str]]) -> None:
    # The two subjects are independent pytest processes: run them side by side to halve the wall time. Each writes
    # a SQLite file of its own, as in the matrix (matrix/databases.py: one per subject run): two processes on one
    # file lock each other out ("database is locked" after SQLite's 5 s busy timeout, seen under load in CI).
    def own(subject: str) -> list[dict[str, str]]:  # run_suite creates tmp / subject before the suite opens the file
        return [sqlite(tmp / subject) if db["kind"] == "sqlite" else db for db in databases]

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(run_suite, tmp / s, s, own(s)) for s in SUBJECT_PLUGINS}
    for subject, future in futures.items():
        lines, output = future.result()
        assert lines, output
        check_verdicts(lines, subject, databases)


# A whole suite run per subject (nested pytest runs included) is minutes on a busy 2-core machine.
SUITE_TIMEOUT = 1500


@pytest.mark.timeout(SUITE_TIMEOUT)
def test_sqlite_with_and_without_the_plugin(tmp_path: Path) -> None:
    run_both(tmp_path, [sqlite(tmp_path)])


def test_a_scenario_that_does_not_depend_on_the_database_runs_once_and_stands_for_each(tmp_path: Path) -> None:
    """Declared ``depends=NOT_DATABASE``: one run per cell (and its nested pytest on the first database only); the
    recorder writes its result for every database, marked ``ran_on``. Per-database scenarios run on each."""
    second = {**sqlite(tmp_path), "name": "sqlite-2", "url": f"sqlite+aiosqlite:///{tmp_path}/y.db"}
    databases = [sqlite(tmp_path), second]
    lines, output = run_suite(tmp_path / "run", "greenlight", databases, "-k", "strict_mode or lazy_load_in_test")
    by = {(line["id"], line["database"]): line for line in lines}
    assert set(by) == {
        (s, d["name"]) for s in ("fixture-styles/strict-mode", "context/lazy-load-in-test") for d in databases
    }
    assert by[("fixture-styles/strict-mode", "sqlite-2")]["ran_on"] == "sqlite/aiosqlite"
    assert (
        by[("fixture-styles/strict-mode", "sqlite-2")]["verdict"]
        == by[("fixture-styles/strict-mode", "sqlite")]["verdict"]
        == "works"
    )
    assert "ran_on" not in by[("fixture-styles/strict-mode", "sqlite")]
    assert "ran_on" not in by[("context/lazy-load-in-test", "sqlite-2")]
    # pytest ran strict-mode once (on the first database), lazy-load-in-test on both
    assert "3 passed" in output, output


@pytest.mark.local_servers
@pytest.mark.timeout(SUITE_TIMEOUT)
def test_local_servers_with_and_without_the_plugin(tmp_path: Path) -> None:
    run_both(tmp_path, [local("postgresql"), local("mariadb")])


@pytest.mark.timeout(SUITE_TIMEOUT)
def test_pool_scenarios_see_leaked_connections(tmp_path: Path) -> None:
    """The same scenarios that work above are recorded broken once sessions stop returning connections."""
    picked = "concurrent_sessions or task_group or pool_overflow_waits"
    # tests/matrix/saboteurs/sessions_keep_connections.py: sessions never give their connection back.
    saboteur = "tests.matrix.saboteurs.sessions_keep_connections"
    lines, output = run_suite(tmp_path / "run", "none", [sqlite(tmp_path)], "-k", picked, "-p", saboteur)
    verdicts = {line["id"]: line["verdict"] for line in lines if line["verdict"] != "skipped"}
    assert verdicts, output
    assert set(verdicts.values()) == {"broken"}, verdicts
    assert {"gather/concurrent-sessions", "gather/pool-overflow-waits"} <= set(verdicts)


@pytest.mark.timeout(SUITE_TIMEOUT)
def test_a_leaked_sqlite_write_lock_stays_in_its_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One scenario's leaked write lock on SQLite does not fail the scenarios after it (each has a file of its own).

    On one file per run, every later scenario waited out the busy timeout and was recorded broken for "database is
    locked": a result about another scenario, which cross-cell sharing then reused in other cells."""
    leaked = tmp_path / "leaked.txt"
    monkeypatch.setenv("GREENLIGHT_TEST_LEAKED_LOCKS", str(leaked))
    # Per-database scenarios, one of them nested (strict-mode), so the nested runs are covered too.
    picked = "savepoint or commit_in_app_code or concurrent_sessions or strict_mode"
    leak = "tests.matrix.sqlite_lock_leak"  # holds the first scenario's file's write lock until the run ends
    lines, output = run_suite(tmp_path / "run", "greenlight", [sqlite(tmp_path)], "-k", picked, "-p", leak)
    assert len(leaked.read_text(encoding="utf-8").splitlines()) == 1, output
    verdicts = {line["id"]: line["verdict"] for line in lines}
    assert len(verdicts) == 4, output
    assert set(verdicts.values()) == {"works"}, (verdicts, output)


def test_readme_catalogue_is_current() -> None:
    """The README table is generated from the declarations; regenerate with python -m matrix.scenarios.catalogue."""
    assert catalogue.readme_table() == catalogue.table()


def test_every_category_has_scenarios_and_every_test_is_a_scenario() -> None:
    """Each test in matrix/scenarios is declared (the recorder ignores undeclared ones, so they would vanish)."""
    from matrix.scenarios.core import CATEGORIES, scenario_of

    catalogue.load_all()
    assert {s.category for s in REGISTRY.values()} == set(CATEGORIES)
    for module in SUITE.glob("test_*.py"):
        loaded = sys.modules[f"matrix.scenarios.{module.stem}"]
        for name, value in vars(loaded).items():
            if name.startswith("test_") and callable(value):
                assert scenario_of(value) is not None, f"{module.name}::{name} has no @scenario"
