"""`nox -s matrix` end to end, as a user runs it: a small axes file, real environments, real scenario runs.

The run uses its own axes file (GREENLIGHT_AXES), build directory (GREENLIGHT_BUILD) and nox envdir, so it never
touches the checkout's build/ or .nox/. SQLite only, and `-- -k lazy_load_in_test` keeps the scenario runs short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.matrix.nox_env import clean_environ

ROOT = Path(__file__).resolve().parents[2]

AXES = """\
[axes]
python = ["{python}", "3.99"]
sqlalchemy = ["2.0"]
pytest_asyncio = ["0.21", "1"]

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."

[[subjects]]
name = "none"

[[excludes]]
pytest_asyncio = "0.21"
python = "{python}"
reason = "excluded on purpose by the test"
"""


def nox_command() -> list[str]:
    try:
        import nox  # noqa: F401
    except ImportError:
        found = shutil.which("nox")
        if found is None:
            pytest.skip("nox is not installed in this environment")
        return [found]
    return [sys.executable, "-m", "nox"]


def nox(tmp_path: Path, axes_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    axes_file = tmp_path / "axes.toml"
    axes_file.write_text(axes_text)
    env = clean_environ()
    env.update(
        GREENLIGHT_AXES=str(axes_file),
        GREENLIGHT_BUILD=str(tmp_path / "build"),
        UV_PYTHON_DOWNLOADS="never",
        # no Docker engine, no URL: only SQLite can run (and the test must not start containers)
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
        NO_COLOR="1",
    )
    command = [*nox_command(), "-f", str(ROOT / "noxfile.py"), "--envdir", str(tmp_path / "envs"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_list_shows_every_cell(tmp_path: Path) -> None:
    done = nox(tmp_path, AXES.format(python=this_python()), "-l")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[1] for line in done.stdout.splitlines() if line[:2] in ("* ", "- ")]
    listed = [name for name in listed if name.startswith("matrix")]
    python = this_python()
    assert listed == [
        f"matrix(py{python}-sa2.0-pa0.21)",
        f"matrix(py{python}-sa2.0-pa1)",
        "matrix(py3.99-sa2.0-pa0.21)",
        "matrix(py3.99-sa2.0-pa1)",
    ]


def test_invalid_axes_stops_the_matrix_with_one_message(tmp_path: Path) -> None:
    text = AXES.format(python=this_python()).replace('sqlalchemy = ["2.0"]', 'sqlalchemy = ["2.0", "2.0"]')
    done = nox(tmp_path, text, "-s", "matrix")
    assert done.returncode != 0
    message = f"{tmp_path / 'axes.toml'}:3: axes.sqlalchemy: duplicate value '2.0'"
    assert f"greenlight: {message}" in done.stderr
    # nothing ran (without nox in this environment, nox's own script-mode venv may appear in envs/)
    envs = tmp_path / "envs"
    made = sorted(p.name for p in envs.iterdir()) if envs.exists() else []
    assert [name for name in made if name.startswith("matrix")] == []
    assert not (tmp_path / "build").exists()
    # the other sessions still load
    listed = nox(tmp_path, text, "-l")
    assert listed.returncode == 0
    assert "* lint" in listed.stdout


def test_matrix_run_writes_every_results_file(tmp_path: Path) -> None:
    python = this_python()
    done = nox(tmp_path, AXES.format(python=python), "-s", "matrix", "--", "-k", "lazy_load_in_test")
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "build" / "results"
    files = sorted(p.name for p in results.glob("*.json"))
    assert files == [
        f"py{python}-sa2.0-pa0.21__greenlight.json",
        f"py{python}-sa2.0-pa0.21__none.json",
        f"py{python}-sa2.0-pa1__greenlight.json",
        f"py{python}-sa2.0-pa1__none.json",
        "py3.99-sa2.0-pa0.21__greenlight.json",
        "py3.99-sa2.0-pa0.21__none.json",
        "py3.99-sa2.0-pa1__greenlight.json",
        "py3.99-sa2.0-pa1__none.json",
    ]
    documents = {name: json.loads((results / name).read_text()) for name in files}
    assert len({d["run_id"] for d in documents.values()}) == 1

    ran = documents[f"py{python}-sa2.0-pa1__greenlight.json"]
    assert ran["status"] == "completed"
    assert ran["cell"] == {
        "id": f"py{python}-sa2.0-pa1",
        "python": python,
        "sqlalchemy": "2.0",
        "pytest_asyncio": "1",
        "tier": "support",
    }
    assert ran["versions"]["sqlalchemy"].startswith("2.0.")
    assert ran["versions"]["pytest-asyncio"].startswith("1.")
    assert ran["versions"]["python"].startswith(python)
    assert ran["databases"][0]["status"] == "ok"
    assert ran["databases"][0]["server_version"]
    assert [s["id"] for s in ran["scenarios"]] == ["context/lazy-load-in-test"]
    assert sum(ran["summary"].values()) == 1
    assert (results / f"py{python}-sa2.0-pa1__greenlight.xml").read_text().startswith("<?xml")
    baseline = documents[f"py{python}-sa2.0-pa1__none.json"]
    assert baseline["status"] == "completed"
    assert baseline["subject"] == {"name": "none", "requirement": None}
    # the same scenario, with and without the plugin: the plugin is what makes the difference
    assert ran["scenarios"][0]["outcome"] != baseline["scenarios"][0]["outcome"]

    excluded = documents[f"py{python}-sa2.0-pa0.21__greenlight.json"]
    assert excluded["status"] == "excluded"
    assert excluded["reason"] == "excluded on purpose by the test"

    missing = documents["py3.99-sa2.0-pa1__none.json"]
    assert missing["status"] == "interpreter-missing"
    assert missing["reason"] == "Python interpreter 3.99 not found on this machine"
    assert missing["versions"] == {}
    assert {d["status"] for d in missing["databases"]} == {"not-run"}

    # progress, and the end-of-run summary
    # per subject: verdicts against the declared expectations, not pytest's counts
    assert f"cell 2 of 4 (py{python}-sa2.0-pa1) (greenlight): completed: works 1, broken 0, not-run 0" in done.stderr
    assert f"cell 2 of 4 (py{python}-sa2.0-pa1) (none): completed: works 0, broken 1, not-run 0" in done.stderr
    # said before the first cell spends time: what will not run
    assert "matrix: no interpreter here for Python 3.99" in done.stderr
    assert "cells by status: completed 1, excluded 1, interpreter-missing 2" in done.stderr  # cells, not files
    assert "greenlight: works 1, broken 0, not-run 0" in done.stderr  # totals per subject
    assert "interpreters missing here: 3.99" in done.stderr
