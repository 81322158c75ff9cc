"""The plugin's packaged verified combinations (plugin/pytest_greenlight/verified.json) and the docs table.

Both are written by ``nox -s report`` from the same results; these tests read both back as a user would (the docs
table's Markdown, the plugin's own reader) and compare what each says per combination.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_greenlight import verified as reader
from reports import build as building
from reports import table, verified
from reports.results import Cell
from tests.reports.results_factory import Spec, fabricate_run

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "compatibility.md"
DRIVER_VERSIONS = {"aiosqlite": "0.22.1", "asyncpg": "0.32.0", "psycopg": "3.3.9"}


def docs_run(text: str) -> str:
    found = re.search(r"^- Run date: .* \(run (.*)\)$", text, re.MULTILINE)
    return found.group(1) if found else ""


def docs_verdicts(text: str) -> dict[tuple[str, str, str, str], str]:
    """(python, sqlalchemy, pytest-asyncio column, database) -> the verdict the docs table shows, for every cell
    that ran (works, partial N of M, broken); not-run and excluded cells verify nothing."""
    facts = text[text.index(table.START) + len(table.START) : text.index(table.END)].strip().splitlines()
    databases = [cell.strip() for cell in facts[0].strip("| ").split(" | ")[3:]]
    marks = {mark: kind for kind, mark in table.MARKS.items()}
    found = {}
    for line in facts[2:]:
        python, sqlalchemy, asyncio, *cells = (cell.strip() for cell in line.strip("| ").split(" | "))
        for database, mark in zip(databases, cells, strict=True):
            label = marks.get(mark) or mark.replace("⚠️ ", "")
            if label.startswith(("works", "partial", "broken")):
                found[python, sqlalchemy, asyncio, database] = label
    return found


def data_verdicts(data: reader.Data) -> dict[tuple[str, str, str, str], str]:
    """The same key from the plugin's rows (the docs table names a row by its cell's labels)."""
    found = {}
    for row in data.rows:
        python, sqlalchemy, asyncio, pytest_series = row.cell
        column = Cell("", python, sqlalchemy, asyncio, pytest_series).asyncio_column
        found[python, sqlalchemy, column, row.database] = row.verdict
    return found


def disagreements(docs_text: str, data: reader.Data) -> list[str]:
    """Every combination on which the docs table and the data file differ, in words; empty when they agree."""
    docs, rows = docs_verdicts(docs_text), data_verdicts(data)
    problems = [f"{k}: docs say {docs[k]!r}, the data file {rows.get(k)!r}" for k in docs if docs[k] != rows.get(k)]
    problems += [f"{k}: the data file says {rows[k]!r}, the docs table nothing" for k in rows if k not in docs]
    if docs_run(docs_text) != ", ".join(data.runs):
        problems.append(f"the docs table is from run {docs_run(docs_text)!r}, the data file from {list(data.runs)}")
    return problems


def fabricated(results: Path, spec: Spec | None = None) -> Path:
    """``fabricate_run``'s results, with driver versions: a real cell's ``versions`` lists every installed package."""
    fabricate_run(results, spec)
    for path in results.glob("*__*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["versions"]:
            data["versions"].update(DRIVER_VERSIONS)
        path.write_text(json.dumps(data), encoding="utf-8")
    return results


def add_canary(results: Path) -> None:
    """A canary cell (a pre-release): never a support fact, so neither the docs table nor the data file has it."""
    source = json.loads((results / "py3.12-sa2.1-pa1__greenlight.json").read_text(encoding="utf-8"))
    source["cell"].update(id="py3.12-sapre-pa1", sqlalchemy="pre", tier="canary")
    source["versions"]["sqlalchemy"] = "2.2.0b1"
    (results / "py3.12-sapre-pa1__greenlight.json").write_text(json.dumps(source), encoding="utf-8")


def generate(results: Path, out: Path) -> tuple[str, reader.Data]:
    """``python -m reports`` as ``nox -s report`` runs it, with both outputs in ``out``."""
    outputs = ["--docs", str(out / "compat.md"), "--verified", str(out / "v.json")]
    assert building.main(["--results", str(results), "--out", str(out), *outputs]) == 0
    return (out / "compat.md").read_text(encoding="utf-8"), reader.load(out / "v.json")


def test_the_packaged_data_says_what_the_docs_table_says() -> None:
    """Fails when plugin/pytest_greenlight/verified.json is out of date with docs/compatibility.md."""
    assert disagreements(DOCS.read_text(encoding="utf-8"), reader.load()) == []


def test_a_generated_pair_agrees_on_every_combination(tmp_path: Path) -> None:
    results = fabricated(tmp_path / "results", Spec())
    add_canary(results)
    docs, data = generate(results, tmp_path / "out")
    assert disagreements(docs, data) == []
    # The fabricated run's support set: 2 Pythons x 2 SQLAlchemy x 2 pytest-asyncio cells, minus the excluded
    # (3.9, 2.1) pair, on 2 databases, minus one database that could not be had.
    assert len(data.rows) == (8 - 2) * 2 - 1
    assert {row.tier for row in data.rows} == {"support"}
    assert all(row.versions[1] != "2.2.0b1" for row in data.rows)
    broken = next(r for r in data.rows if r.cell == ("3.12", "2.1", "1", "") and r.database == "postgresql-17")
    # The row says what the docs say (the database, both drivers together) and each driver's own verdict.
    assert broken.versions == ("3.12", "2.1.10", "1.3.0", "9.0.1", "3.2.4")
    assert broken.verdict == "partial 9 of 10"
    assert broken.drivers == (
        reader.Driver("asyncpg", "0.32", "partial 4 of 5"),
        reader.Driver("psycopg", "3.3", "works"),
    )
    assert (broken.tier, broken.date) == ("support", "2026-11-21")


@pytest.mark.parametrize("stale", ["a verdict changed", "a cell added"])
def test_a_data_file_out_of_date_with_the_docs_table_is_caught(tmp_path: Path, stale: str) -> None:
    before = fabricated(tmp_path / "before", Spec(run_id="r1"))
    _, old_data = generate(before, tmp_path / "old")
    after = tmp_path / "after"
    shutil.copytree(before, after)
    if stale == "a verdict changed":
        newly_broken = ("py3.12-sa1.4-pa0.21", "greenlight", "sqlite", "aiosqlite", "tasks/gather-children")
        fabricated(after, Spec(run_id="r2", breaks=(newly_broken,)))
    else:
        add_canary(after)
        moved = json.loads((after / "py3.12-sapre-pa1__greenlight.json").read_text(encoding="utf-8"))
        moved["cell"].update(id="py3.13-sa2.1-pa1", python="3.13", sqlalchemy="2.1", tier="support")
        (after / "py3.12-sapre-pa1__greenlight.json").unlink()
        (after / "py3.13-sa2.1-pa1__greenlight.json").write_text(json.dumps(moved), encoding="utf-8")
    new_docs, new_data = generate(after, tmp_path / "new")
    assert disagreements(new_docs, new_data) == []
    found = disagreements(new_docs, old_data)
    if stale == "a verdict changed":
        assert "('3.12', '1.4', '0.21', 'sqlite'): docs say 'partial 4 of 5', the data file 'works'" in found
        assert "the docs table is from run 'r2', the data file from ['r1']" in found
    else:
        assert "('3.13', '2.1', '1', 'sqlite'): docs say 'works', the data file None" in found


def test_the_order_is_fixed_and_dates_alone_do_not_rewrite(tmp_path: Path) -> None:
    results = fabricated(tmp_path / "results", Spec())
    grid_text = verified.render(*_grid(results))
    reordered = tmp_path / "reordered"
    shutil.copytree(results, reordered)
    for path in reordered.glob("*.json"):  # the databases and scenarios listed the other way round
        data = json.loads(path.read_text(encoding="utf-8"))
        data["databases"].reverse()
        data["scenarios"].reverse()
        path.write_text(json.dumps(data), encoding="utf-8")
    assert verified.render(*_grid(reordered)) == grid_text
    target = tmp_path / "verified.json"
    assert verified.write_if_changed(target, grid_text)
    for path in results.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace('"written_at": "2026-11-21', '"written_at": "2026-12-24'), encoding="utf-8")
    redated = verified.render(*_grid(results))
    assert redated != grid_text
    assert not verified.write_if_changed(target, redated)
    assert target.read_text(encoding="utf-8") == grid_text
    # one row per line: a changed row is a one-line diff
    assert len(grid_text.splitlines()) == len(reader.load(target).rows) + 2


def _grid(results: Path) -> tuple:
    from reports.loading import load_results
    from reports.verdicts import build_grid

    run = load_results(results)
    return run, build_grid(run, "greenlight")


def test_the_packaged_file_is_written_only_when_the_docs_table_may_be(tmp_path: Path, monkeypatch) -> None:
    """`nox -s report` after a partial run leaves both tracked files alone; a complete run writes both."""
    tracked_docs, packaged = tmp_path / "docs" / "compatibility.md", tmp_path / "plugin" / "verified.json"
    monkeypatch.setattr(building, "TRACKED_DOCS", tracked_docs)
    monkeypatch.setattr(verified, "PACKAGED", packaged)
    results = fabricated(tmp_path / "build" / "results", Spec(run_id="r1"))
    args = ["--results", str(results), "--out", str(tmp_path / "out"), "--docs", str(tracked_docs)]
    manifest = tmp_path / "build" / "run.json"
    manifest.write_text(json.dumps({"run_id": "r1", "default_matrix": True, "cells_listed": 9, "complete": False}))
    assert building.main(args) == 0
    assert not tracked_docs.exists()
    assert not packaged.exists()
    assert building.main([*args, "--no-docs"]) == 0
    assert not packaged.exists()
    manifest.write_text(json.dumps({"run_id": "r1", "default_matrix": True, "cells_listed": 8, "complete": True}))
    assert building.main(args) == 0
    assert tracked_docs.is_file()
    assert packaged.is_file()
    assert disagreements(tracked_docs.read_text(encoding="utf-8"), reader.load(packaged)) == []


def test_the_cli_says_what_it_did_with_the_packaged_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = fabricated(tmp_path / "results")
    packaged = ROOT / "plugin" / "pytest_greenlight" / "verified.json"
    before = packaged.read_bytes() if packaged.exists() else None
    assert building.main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    assert f"verified: {verified.PACKAGED} left alone: no run manifest" in capsys.readouterr().out
    assert (packaged.read_bytes() if packaged.exists() else None) == before
    preview = tmp_path / "preview.json"
    args = ["--results", str(results), "--out", str(tmp_path / "out"), "--no-docs", "--verified", str(preview)]
    assert building.main(args) == 0
    assert not preview.exists()
