"""``.github/scripts/check_smoke.py``: a smoke run passes only when every database of axes.toml really ran.

The results files are written in the shape of ``reports/SCHEMA.md`` for the databases the real axes.toml
declares, then spoiled one way at a time (a not-run database, a crashed cell, a missing driver, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from matrix import axes, axes_file
from tests.workflows.tools import GITHUB

SCRIPT = GITHUB / "scripts" / "check_smoke.py"


def results_file(subject: str = "greenlight") -> dict[str, Any]:
    """A completed results file in which one scenario passed on every (database, driver) of axes.toml."""
    matrix = axes_file.load(axes.DEFAULT_PATH)
    pairs = [(db.name, driver) for db in matrix.databases for driver in db.drivers]
    return {
        "schema_version": 1,
        "cell": {"id": "py3.14-sa2.1-pa1", "python": "3.14", "sqlalchemy": "2.1", "pytest_asyncio": "1"},
        "subject": {"name": subject, "requirement": None},
        "status": "completed",
        "reason": None,
        "databases": [
            {"name": n, "driver": d, "status": "ok", "reason": None, "server_version": "1"} for n, d in pairs
        ],
        "scenarios": [
            {"id": "context/x", "database": n, "driver": d, "outcome": "passed", "verdict": "works"} for n, d in pairs
        ],
    }


def check(folder: Path, *files: dict[str, Any], accept: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(files):
        (folder / f"cell{index}__{data['subject']['name']}.json").write_text(json.dumps(data), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(folder), *(f"--accept-status={a}" for a in accept)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_run_on_every_database_passes(tmp_path: Path) -> None:
    result = check(tmp_path, results_file("greenlight"), results_file("none"))
    assert result.returncode == 0, result.stderr
    assert "2 results files" in result.stdout


def test_an_excluded_cell_is_not_a_failure(tmp_path: Path) -> None:
    excluded = {**results_file(), "status": "excluded", "databases": [], "scenarios": []}
    assert check(tmp_path, results_file(), excluded).returncode == 0


def _database_not_run(data: dict[str, Any]) -> None:
    db = data["databases"][-1]
    db.update(status="not-run", reason="no Docker engine and GREENLIGHT_MYSQL_URL unset")
    for scenario in data["scenarios"]:
        if (scenario["database"], scenario["driver"]) == (db["name"], db["driver"]):
            scenario["outcome"] = "not-run"


def _crashed(data: dict[str, Any]) -> None:
    data.update(status="crashed", reason="pytest exited 3 (internal error)")


def _driver_missing(data: dict[str, Any]) -> None:
    del data["databases"][1]


def _nothing_ran_on_one(data: dict[str, Any]) -> None:
    gone = (data["scenarios"][0]["database"], data["scenarios"][0]["driver"])
    data["scenarios"] = [s for s in data["scenarios"] if (s["database"], s["driver"]) != gone]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        pytest.param(_database_not_run, "not-run: no Docker engine", id="database-not-run"),
        pytest.param(_crashed, "status 'crashed'", id="crashed"),
        pytest.param(_driver_missing, "missing from databases[]", id="driver-missing"),
        pytest.param(_nothing_ran_on_one, "no scenario ran on it", id="no-scenario"),
    ],
)
def test_a_spoiled_run_fails_and_says_why(
    tmp_path: Path, spoil: Callable[[dict[str, Any]], None], message: str
) -> None:
    bad = results_file("none")
    spoil(bad)
    result = check(tmp_path, results_file("greenlight"), bad)
    assert result.returncode == 1
    assert "smoke check FAILED" in result.stderr
    assert message in result.stderr


def test_no_results_at_all_fails(tmp_path: Path) -> None:
    result = check(tmp_path / "empty")
    assert result.returncode == 1
    assert "wrote nothing" in result.stderr


@pytest.mark.parametrize("status", ["install-failed", "crashed"])
def test_the_nightly_accepts_findings_but_not_infrastructure_faults(tmp_path: Path, status: str) -> None:
    """A cell that cannot be installed is a finding; a database that was not there still fails the nightly."""
    finding = {**results_file("none"), "status": status, "reason": "x", "databases": [], "scenarios": []}
    assert check(tmp_path / "strict", results_file(), finding).returncode == 1
    assert check(tmp_path / "nightly", results_file(), finding, accept=(status,)).returncode == 0
    missing = results_file("none")
    _database_not_run(missing)
    assert check(tmp_path / "infra", missing, accept=("install-failed", "crashed")).returncode == 1
