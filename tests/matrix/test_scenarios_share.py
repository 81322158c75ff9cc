"""The scenario suite sharing results across cells, for real: two runs ("cells") with one share store, as the matrix
runner starts them (GREENLIGHT_SHARE), one after the other and side by side."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from matrix import contract
from matrix.scenarios.share import Store
from tests.matrix import suite_runner
from tests.matrix.suite_runner import BASE, SUBJECT_PLUGINS, sqlite

KEYS = {"pytest,pytest_asyncio": "sha256:" + "ab" * 32}
SHARED = "gather/one-session"  # depends=NOT_RUNNER
OWN = "context/lazy-load-in-test"  # depends on everything
TIMEOUT = "gather/pool-timeout"  # depends=NOT_RUNNER; raises, whatever the timing


def run_cell(tmp: Path, cell: str, *args: str) -> tuple[dict[str, dict[str, Any]], str]:
    """One cell's scenario run (subject greenlight, SQLite) sharing ``tmp/shared``; its lines by scenario id."""
    out = tmp / f"{cell}.jsonl"
    plugins = BASE + SUBJECT_PLUGINS["greenlight"]
    env = contract.scenario_env(
        suite_runner.base_env(),
        cell={"id": cell, "subject": "greenlight"},
        databases=[sqlite(tmp)],
        plugin_args=plugins,
        scenario_out=str(out),
        share={"dir": str(tmp / "shared"), "cell": cell, "keys": KEYS, "wait": 120},
    )
    lines, output = suite_runner.run(tmp, env, out, plugins, args, timeout=600)
    return {line["id"]: line for line in lines}, output


def test_a_later_cell_reuses_what_does_not_depend_on_the_runner(tmp_path: Path) -> None:
    first, output = run_cell(tmp_path, "cell-a", "-k", "one_session or lazy_load_in_test")
    assert set(first) == {SHARED, OWN}, output
    assert "ran_in" not in first[SHARED]
    assert "ran_in" not in first[OWN]
    second, output = run_cell(tmp_path, "cell-b", "-k", "one_session or lazy_load_in_test")
    assert second[SHARED]["ran_in"] == "cell-a"
    assert second[SHARED]["duration"] == 0.0
    assert (second[SHARED]["outcome"], second[SHARED]["verdict"]) == (first[SHARED]["outcome"], "works")
    assert "ran_in" not in second[OWN]  # depends on pytest-asyncio: run in every cell
    assert "1 passed, 39 deselected" in output, output  # pytest ran only the scenario of its own


def test_the_reused_verdict_is_judged_against_this_cells_expectation(tmp_path: Path) -> None:
    """What is stored is an outcome; the verdict comes from this cell's declaration (gather/pool-timeout: raises)."""
    store = Store(tmp_path / "shared", "cell-x", KEYS, 0)
    place = store.place(TIMEOUT, ("pytest", "pytest_asyncio"), "sqlite-aiosqlite")
    assert place is not None
    entry = {"id": TIMEOUT, "database": "sqlite", "driver": "aiosqlite", "outcome": "passed", "verdict": "works",
             "expected": "pass", "exception": None}  # fmt: skip
    store.write(place, entry, [])
    lines, output = run_cell(tmp_path, "cell-b", "-k", "pool_timeout")
    assert lines[TIMEOUT]["ran_in"] == "cell-x", output
    assert lines[TIMEOUT]["expected"] == "raises:sqlalchemy.exc.TimeoutError"
    assert lines[TIMEOUT]["verdict"] == "broken"
    names = ["sqlalchemy.exc.TimeoutError", "sqlalchemy.exc.SQLAlchemyError", "Exception"]
    store.write(place, {**entry, "outcome": "failed", "verdict": "broken", "exception": names[0]}, names)
    lines, output = run_cell(tmp_path, "cell-c", "-k", "pool_timeout")
    assert lines[TIMEOUT]["verdict"] == "works", output


@pytest.mark.timeout(900)
def test_cells_side_by_side_run_each_shared_scenario_once(tmp_path: Path) -> None:
    """Both runs claim at collection; whichever holds a claim runs it, the other runs its own scenarios first, then
    waits for that claim and reuses the result."""
    selection = ("-k", "one_session or savepoint or pool_overflow or lazy_load_in_test")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda cell: run_cell(tmp_path, cell, *selection), ["cell-a", "cell-b"]))
    (a, out_a), (b, out_b) = runs
    shared = {"gather/one-session", "transactions/savepoint", "gather/pool-overflow-waits"}
    assert set(a) == set(b) == shared | {OWN}, out_a + out_b
    for sid in shared:
        ran_in = [lines[sid].get("ran_in") for lines in (a, b)]
        assert sorted(map(str, ran_in)) in (["None", "cell-a"], ["None", "cell-b"]), (sid, ran_in)
        assert a[sid]["verdict"] == b[sid]["verdict"] == "works"
    assert "ran_in" not in a[OWN]
    assert "ran_in" not in b[OWN]
