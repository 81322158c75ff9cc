"""The shell steps of nightly.yml's report job, run for real on a copy of this repository.

GitHub is not here, so the steps that are actions (download-artifact, configure-pages, upload-pages-artifact) are
played by the test: results files go where download-artifact puts them, and the "published site" is a folder
reached through a file:// URL. Every ``run:`` step runs unchanged in bash, including the real ``nox -s report``, so
a renamed report option, a wrong path or a broken docs-change check fails here instead of in the first nightly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reports.results_factory import fabricate_run
from tests.workflows.tools import GITHUB, ROOT, find_tool

COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".nox", "build", "__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache", "node_modules"
)
PUBLISHED = {"index.html", "badge.json", "badge.svg", "data.json", ".nojekyll"}


def report_steps() -> list[dict[str, Any]]:
    nightly = yaml.safe_load((GITHUB / "workflows" / "nightly.yml").read_text(encoding="utf-8"))
    steps: list[dict[str, Any]] = nightly["jobs"]["report"]["steps"]
    return [s for s in steps if "run" in s and not s["name"].startswith("Install")]  # tools are installed here


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


class Job:
    """A checkout of this repository as the report job sees it, and a way to run its steps."""

    def __init__(self, tmp_path: Path) -> None:
        self.repo = tmp_path / "repo"
        shutil.copytree(ROOT, self.repo, ignore=COPY_IGNORE)
        git(self.repo, "init", "-q")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "checkout")
        fabricate_run(self.repo / "build" / "results")  # what download-artifact leaves
        self.output = tmp_path / "github_output"
        self.log = ""

    def run_steps(self, site: str, cells_result: str) -> dict[str, str]:
        """Run every shell step in order, as a runner would; return what they wrote to $GITHUB_OUTPUT."""
        self.output.write_text("", encoding="utf-8")
        tools = os.pathsep.join([str(Path(sys.executable).parent), str(Path(find_tool("uv")).parent)])
        env = {
            **os.environ,
            "PATH": tools + os.pathsep + os.environ.get("PATH", ""),
            "GITHUB_OUTPUT": str(self.output),
            "SITE": site,
            "CELLS_RESULT": cells_result,
            "NOX_SCRIPT_MODE": "none",  # this environment already has what the noxfile imports
        }
        env.pop("VIRTUAL_ENV", None)
        for step in report_steps():
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", step["run"]],
                cwd=self.repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            self.log += f"--- {step['name']}\n{done.stdout}{done.stderr}"
            assert done.returncode == 0, self.log[-4000:]
        return dict(line.split("=", 1) for line in self.output.read_text(encoding="utf-8").splitlines())


@pytest.fixture
def job(tmp_path: Path) -> Job:
    if shutil.which("nox", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("nox is not installed in this environment; it comes with the 'workflows' dependency group")
    return Job(tmp_path)


def published_site(tmp_path: Path) -> str:
    """A previous run's report, built by the same code, served as the Pages site."""
    site = tmp_path / "site"
    fabricate_run(tmp_path / "previous-results")
    # --no-docs: this checkout's docs table is not the test's to touch.
    command = [sys.executable, "-m", "reports", "--results", str(tmp_path / "previous-results"), "--no-docs"]
    subprocess.run(
        [*command, "--out", str(site)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return site.as_uri()


def test_a_complete_run_publishes_with_history_and_proposes_the_docs_table(job: Job, tmp_path: Path) -> None:
    outputs = job.run_steps(published_site(tmp_path), "success")
    assert "history: previous report from file://" in job.log
    assert "--previous build/previous/index.html" in job.log
    assert {p.name for p in (job.repo / "build" / "pages").iterdir()} == PUBLISHED
    # The fabricated run is not what docs/compatibility.md describes, so the table changed: a pull request follows.
    assert outputs["changed"] == "true"
    assert "--no-docs" not in job.log


def test_a_run_with_failed_cells_publishes_but_leaves_the_docs_table(job: Job) -> None:
    outputs = job.run_steps("", "failure")
    assert "GitHub Pages is not set up" in job.log
    assert "--previous" not in job.log
    assert "--no-docs" in job.log
    assert outputs["changed"] == "false"
    assert {p.name for p in (job.repo / "build" / "pages").iterdir()} == PUBLISHED
