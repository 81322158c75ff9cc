"""A plugin regression fails `nox -s matrix` (README "The matrix"): a real nox run whose subject ``greenlight`` is a
saboteur plugin, which breaks a scenario that works with no plugin at all (subject ``none``).

One cell (this machine's Python, SQLAlchemy 2.1, pytest-asyncio 1), SQLite only, one scenario that works without a
plugin (``-k``): the run must exit non-zero, name the scenario x cell x database at the end, and the report's first
line must say so.
"""

from __future__ import annotations

from pathlib import Path

from tests.matrix.test_faults import SQLITE, axes_text, nox_env, results, run_nox
from tests.matrix.test_run_nox import this_python

SABOTEUR = """
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    raise RuntimeError("saboteur: the plugin under test broke this scenario")
"""
PYPROJECT = """
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "greenlight-saboteur"
version = "0.0.1"

[project.entry-points.pytest11]
saboteur = "greenlight_saboteur"
"""


def test_plugin_regression_fails_the_run(tmp_path: Path) -> None:
    package = tmp_path / "saboteur"
    (package / "greenlight_saboteur").mkdir(parents=True)
    (package / "greenlight_saboteur" / "__init__.py").write_text(SABOTEUR)
    (package / "pyproject.toml").write_text(PYPROJECT)
    subjects = (
        f'\n[[subjects]]\nname = "greenlight"\nrequirement = "greenlight-saboteur @ {package.as_uri()}"\n'
        '\n[[subjects]]\nname = "none"\n'
    )
    env = nox_env(tmp_path, axes_text([this_python()], ["2.1"], SQLITE, subjects))
    done = run_nox(tmp_path, env, "-s", "matrix", select="test_savepoint")
    output = done.stdout + done.stderr
    cell = f"py{this_python()}-sa2.1-pa1"
    found = results(tmp_path)
    saboteur = {s["id"]: s for s in found[f"{cell}__greenlight.json"]["scenarios"]}
    baseline = {s["id"]: s for s in found[f"{cell}__none.json"]["scenarios"]}
    assert saboteur["transactions/savepoint"]["verdict"] == "broken", output[-3000:]
    assert baseline["transactions/savepoint"]["verdict"] == "works", output[-3000:]
    assert found[f"{cell}__greenlight.json"]["cell"]["tier"] == "support"
    assert done.returncode != 0, output[-3000:]
    assert f"plugin regression in {cell}" in output
    tail = output[output.index("plugin regressions in the support set") :]
    assert f"transactions/savepoint x {cell} x sqlite/aiosqlite: greenlight broken, none works" in tail
    # the report's first line
    assert "REGRESSION: greenlight breaks 1 scenario(s) that work with none, in 1 support-set cell(s)" in done.stdout
