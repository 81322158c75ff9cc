"""``.github/scripts/nox_matrix.py``: the real ``nox -l --json`` of this noxfile in, GitHub job data out.

The expected cells come from ``matrix.axes`` (the same axes.toml nox reads), never from a list in this file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from matrix import axes, axes_file
from tests.workflows.tools import GITHUB, ROOT, load_script, nox_command, run

SCRIPT = GITHUB / "scripts" / "nox_matrix.py"
# upload-artifact refuses these characters in artifact names.
FORBIDDEN_IN_ARTIFACT_NAMES = set('":<>|*?\\/\r\n')

nox_matrix = load_script("nox_matrix")


@pytest.fixture(scope="module")
def listing() -> str:
    """What the workflows feed the script: ``nox -l --json -s matrix`` on this repository's noxfile."""
    result = run([*nox_command(), "-l", "--json", "-s", "matrix"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def script(command: str, stdin: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the script as the workflow does, with a ``$GITHUB_OUTPUT`` file; return its parsed outputs."""
    output = tmp_path / "github_output"
    output.write_text("", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), command],
        input=stdin,
        capture_output=True,
        text=True,
        env={"GITHUB_OUTPUT": str(output), "PATH": ""},
        timeout=60,
        check=False,
    )
    pairs = [line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines()]
    return result, dict(pairs)


def test_plan_has_one_job_per_cell(listing: str, tmp_path: Path) -> None:
    matrix = axes_file.load(axes.DEFAULT_PATH)
    result, outputs = script("plan", listing, tmp_path)
    assert result.returncode == 0, result.stderr
    jobs: list[dict[str, Any]] = json.loads(outputs["matrix"])["include"]
    listed = json.loads(listing)
    assert int(outputs["count"]) == len(jobs) == len(listed) == len(matrix.cells())
    assert {job["python"] for job in jobs} == {cell["python"] for cell in listed} >= set(matrix.pythons)
    assert len({job["session"] for job in jobs}) == len(jobs)
    names = [job["artifact"] for job in jobs]
    assert len(set(names)) == len(names)
    for name in names:
        assert not FORBIDDEN_IN_ARTIFACT_NAMES & set(name), name
        assert name.startswith("results-matrix-")


def test_every_planned_session_is_accepted_by_nox(listing: str, tmp_path: Path) -> None:
    """Session names travel through JSON, $GITHUB_OUTPUT and a shell variable; nox must still know them."""
    _, outputs = script("plan", listing, tmp_path)
    jobs = json.loads(outputs["matrix"])["include"]
    sample = [jobs[0]["session"], jobs[-1]["session"]]
    result = run([*nox_command(), "-l", "--json", "-s", *sample], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [s["session"] for s in json.loads(result.stdout)] == sample


def test_newest_is_the_newest_of_each_axis(listing: str, tmp_path: Path) -> None:
    matrix = axes_file.load(axes.DEFAULT_PATH)
    result, outputs = script("newest", listing, tmp_path)
    assert result.returncode == 0, result.stderr
    chosen = [s for s in json.loads(listing) if s["session"] == outputs["session"]]
    assert len(chosen) == 1, outputs
    assert outputs["python"] == chosen[0]["python"] == max(matrix.pythons, key=Version)
    assert chosen[0]["call_spec"] == {
        "sqlalchemy": max(matrix.sqlalchemy, key=Version),
        "pytest_asyncio": max(matrix.pytest_asyncio, key=Version),
        "pytest": max(matrix.pytest, key=Version),
        "tier": "support",
    }


def test_version_order_is_numeric() -> None:
    assert nox_matrix.version_key("3.10") > nox_matrix.version_key("3.9")
    assert nox_matrix.version_key("1") > nox_matrix.version_key("0.26")


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        pytest.param("[]", "listed no sessions", id="empty"),
        pytest.param("nox > Error while collecting sessions", "did not print JSON", id="not-json"),
        pytest.param('{"session": "matrix"}', "expected a list", id="not-a-list"),
        pytest.param(
            json.dumps([{"session": "matrix", "python": None, "call_spec": {}}]),
            "no single Python",
            id="no-python",
        ),
        pytest.param(
            json.dumps([{"session": f"m-{i}", "python": "3.12", "call_spec": {}} for i in range(257)]),
            "256-job matrix limit",
            id="too-many",
        ),
        pytest.param(
            json.dumps([{"session": s, "python": "3.12", "call_spec": {}} for s in ("m(a b)", "m(a-b)")]),
            "same artifact name",
            id="clash",
        ),
    ],
)
def test_bad_listings_fail_with_the_reason(stdin: str, message: str, tmp_path: Path) -> None:
    result, outputs = script("plan", stdin, tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert outputs == {}, "nothing may reach $GITHUB_OUTPUT from a failed plan"


def test_a_matrix_session_without_python_fails_the_plan(tmp_path: Path) -> None:
    """Real nox on a noxfile whose matrix session has no interpreter (as when axes.toml is invalid)."""
    (tmp_path / "noxfile.py").write_text(
        textwrap.dedent(
            '''
            import nox

            @nox.session(venv_backend="none")
            def matrix(session):
                """The matrix is disabled."""
            '''
        ),
        encoding="utf-8",
    )
    listed = run([*nox_command(), "-l", "--json", "-s", "matrix"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    result, _ = script("plan", listed.stdout, tmp_path)
    assert result.returncode == 1
    assert "has no single Python version" in result.stderr
