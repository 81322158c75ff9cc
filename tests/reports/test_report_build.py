"""``python -m reports`` as a real process: outputs, history sources, grid numbers agreeing with the files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from matrix.rules import SUPPORT_TIERS
from tests.reports.results_factory import Spec, fabricate_run

ROOT = Path(__file__).resolve().parents[2]
REAL_RESULTS = ROOT / "build" / "results"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "reports", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


class GridCells(HTMLParser):
    """Collects ``data-kind`` of every overview-grid cell, per subject, from the built page."""

    def __init__(self) -> None:
        super().__init__()
        self.subject: str | None = None
        self.kinds: dict[str, Counter[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and "grid" in (found.get("class") or "").split():
            self.subject = found["data-subject"]
            self.kinds[self.subject or ""] = Counter()
        elif tag == "td" and self.subject is not None and "data-kind" in found:
            self.kinds[self.subject][found["data-kind"] or ""] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.subject = None


def expected_kinds(results: Path, subject: str) -> Counter[str]:
    """The verdict rules of SCHEMA.md, written out again here straight from the raw files."""
    files = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*__*.json"))]
    databases = list(dict.fromkeys(d["name"] for f in files for d in f["databases"]))
    # The grid is the support set's: canary and legacy cells are shown apart.
    files = [f for f in files if f["cell"].get("tier", "support") in SUPPORT_TIERS]
    # Rows: Python x SQLAlchemy; columns: pytest-asyncio x pytest (1.4 runs under pytest 8.4 and 9: two columns).
    axes = [sorted({f["cell"][k] for f in files}) for k in ("python", "sqlalchemy")]
    axes.append(sorted({(f["cell"]["pytest_asyncio"], f["cell"].get("pytest")) for f in files}, key=str))
    mine = {(f["cell"]["python"], f["cell"]["sqlalchemy"], (f["cell"]["pytest_asyncio"], f["cell"].get("pytest"))): f
            for f in files if f["subject"]["name"] == subject}  # fmt: skip
    kinds: Counter[str] = Counter()
    for py in axes[0]:
        for sa in axes[1]:
            for pa in axes[2]:
                for db in databases:
                    f = mine.get((py, sa, pa))
                    if f is None:
                        kinds["not-run"] += 1
                    elif f["status"] == "excluded":
                        kinds["excluded"] += 1
                    else:
                        ran = [s["verdict"] for s in f["scenarios"] if s["database"] == db]
                        ran = [v for v in ran if v in ("works", "broken")]
                        works = ran.count("works")
                        kinds["not-run" if not ran else "works" if works == len(ran) else
                              "broken" if not works else "partial"] += 1  # fmt: skip
    return kinds


def test_cli_builds_everything_and_history_from_a_folder(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "prev", Spec(run_id="prev", sqlalchemy_patch={"1.4": "1.4.54", "2.1": "2.1.9"}, breaks=()))
    fabricate_run(tmp_path / "cur")
    out = tmp_path / "report"
    docs = tmp_path / "compatibility.md"
    done = run_cli("--results", str(tmp_path / "cur"), "--previous", str(tmp_path / "prev"),
                   "--out", str(out), "--docs", str(docs))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'index.html'} (24 results files, 0 problems)" in done.stdout
    assert "badge: compat | 10/12 cells (red)" in done.stdout
    for name in ("index.html", "badge.svg", "badge.json", "data.json"):
        assert (out / name).stat().st_size > 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "1 new failures" in page
    assert "broke when SQLAlchemy went 2.1.9 → 2.1.10" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch: self-contained
    assert 'src="http' not in page
    assert "<link" not in page


def test_history_from_a_published_report(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "prev", Spec(run_id="prev", sqlalchemy_patch={"1.4": "1.4.54", "2.1": "2.1.9"}, breaks=()))
    fabricate_run(tmp_path / "cur")
    assert (
        run_cli("--results", str(tmp_path / "prev"), "--out", str(tmp_path / "published"), "--no-docs").returncode == 0
    )
    # Only the published page survives from last night; the results folder is gone.
    for path in (tmp_path / "prev").iterdir():
        path.unlink()
    published = tmp_path / "published" / "index.html"
    done = run_cli("--results", str(tmp_path / "cur"), "--previous", str(published),
                   "--out", str(tmp_path / "now"), "--no-docs")  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "now" / "index.html").read_text(encoding="utf-8")
    assert "Compared with run prev" in page
    assert "broke when SQLAlchemy went 2.1.9 → 2.1.10" in page


def test_corrupted_file_is_named_and_the_report_still_builds(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "cur")
    victim = tmp_path / "cur" / "py3.12-sa2.1-pa1__greenlight.json"
    victim.write_bytes(victim.read_bytes()[:1000])
    done = run_cli("--results", str(tmp_path / "cur"), "--out", str(tmp_path / "out"), "--no-docs")
    assert done.returncode == 0
    assert "py3.12-sa2.1-pa1__greenlight.json" in done.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert '<code class="file">py3.12-sa2.1-pa1__greenlight.json</code>' in page
    assert "23 results files" in page


def test_missing_results_folder_is_an_error(tmp_path: Path) -> None:
    done = run_cli("--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "no results folder" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of a real `nox -s matrix`: this checkout's build/results when a run left some, else a small run
    made here (SQLite, two cells, one scenario; see tests/matrix/test_run_nox.py)."""
    if any(REAL_RESULTS.glob("*__*.json")):
        return REAL_RESULTS
    from tests.matrix.test_run_nox import AXES, nox, this_python

    where = tmp_path_factory.mktemp("matrix-run")
    done = nox(where, AXES.format(python=this_python()), "-s", "matrix", "--", "-k", "lazy_load_in_test")
    assert done.returncode == 0, done.stderr[-3000:]
    return where / "build" / "results"


@pytest.mark.parametrize("source", ["fabricated", "real"])
def test_grid_numbers_agree_with_the_results_files(tmp_path: Path, source: str, request: pytest.FixtureRequest) -> None:
    if source == "real":
        # A snapshot, so a matrix run writing more files meanwhile cannot make the two sides differ.
        results = tmp_path / "results"
        results.mkdir()
        for path in request.getfixturevalue("real_results").glob("*__*.json"):
            shutil.copyfile(path, results / path.name)
    else:
        results = tmp_path / "results"
        fabricate_run(results)
    assert run_cli("--results", str(results), "--out", str(tmp_path / "out"), "--no-docs").returncode == 0
    parser = GridCells()
    parser.feed((tmp_path / "out" / "index.html").read_text(encoding="utf-8"))
    subjects = {json.loads(p.read_text(encoding="utf-8"))["subject"]["name"] for p in results.glob("*__*.json")}
    assert set(parser.kinds) == subjects
    for subject in subjects:
        assert parser.kinds[subject] == expected_kinds(results, subject), subject


def test_the_tracked_docs_table_is_rewritten_only_from_a_complete_default_run(tmp_path: Path, monkeypatch) -> None:
    """`nox -s report` after an interrupted or partial run leaves docs/compatibility.md alone and says why."""
    from reports import build as building

    tracked = tmp_path / "docs" / "compatibility.md"
    monkeypatch.setattr(building, "TRACKED_DOCS", tracked)
    results = tmp_path / "build" / "results"
    fabricate_run(results, Spec(run_id="r1"))
    assert "no run manifest" in str(building.docs_refusal(results, tracked))
    manifest = {"run_id": "r1", "default_matrix": True, "cells_listed": 161, "cells_written": ["a"] * 6,
                "cells_missing": ["b"] * 155, "cells_interrupted": [], "complete": False}  # fmt: skip
    (tmp_path / "build" / "run.json").write_text(json.dumps(manifest))
    assert "is not complete: the default matrix, 6 of 161 cells written, 155 missing, 0 interrupted" in str(
        building.docs_refusal(results, tracked)
    )
    (tmp_path / "build" / "run.json").write_text(json.dumps({**manifest, "complete": True}))
    assert building.docs_refusal(results, tracked) is None
    (tmp_path / "build" / "run.json").write_text(json.dumps({**manifest, "complete": True, "run_id": "r0"}))
    assert "not from the complete run r0" in str(building.docs_refusal(results, tracked))
    # any other --docs path is written as asked
    assert building.docs_refusal(results, tmp_path / "preview.md") is None


def test_the_cli_says_why_it_left_the_tracked_docs_alone(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "results")
    docs = ROOT / "docs" / "compatibility.md"
    before = docs.read_bytes() if docs.exists() else None
    done = run_cli("--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert f"docs: {docs} left alone: no run manifest" in done.stdout
    assert (docs.read_bytes() if docs.exists() else None) == before
