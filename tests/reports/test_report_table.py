"""docs/compatibility.md: the support table, rewritten only when the support facts change."""

from __future__ import annotations

from pathlib import Path

from reports.build import build
from reports.table import END, START
from tests.reports.results_factory import ASYNCIOS, DATABASES, PYTHONS, Spec, fabricate_run


def table_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    body = text[text.index(START) + len(START) : text.index(END)].strip().splitlines()
    header = [c.strip() for c in body[0].strip("|").split("|")]
    assert header[:3] == ["Python", "SQLAlchemy", "pytest-asyncio"]
    assert header[3:] == list(DATABASES)
    rows = {}
    for line in body[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[tuple(cells[:3])] = cells[3:]
    return rows


def test_table_states_every_cell(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path / "results")
    docs = tmp_path / "compatibility.md"
    assert build(tmp_path / "results", tmp_path / "out", docs=docs).docs_written
    text = docs.read_text(encoding="utf-8")
    rows = table_rows(text)
    assert set(rows) == set(spec.cells())
    assert rows[("3.9", "2.1", "1")] == ["⊘ excluded", "⊘ excluded"]
    assert rows[("3.9", "1.4", "0.21")] == ["✅ works", "⏸ not run"]
    assert rows[("3.12", "2.1", "1")] == ["✅ works", "⚠️ partial 9 of 10"]
    assert rows[("3.12", "1.4", "1")] == ["✅ works", "✅ works"]
    assert "Run date: 2026-11-21" in text
    assert "SQLAlchemy 1.4.54, 2.1.10" in text
    assert "database servers: sqlite 3.40.1; postgresql-17 17.2" in text
    # The one hole in the PostgreSQL column is explained, with its reason, for the one cell it covers.
    not_run = next(line for line in text.splitlines() if line.startswith("- Not run: "))
    assert not_run.count(" in ") == 1
    assert "postgresql-17 in 1 of " in not_run
    assert "(no Docker engine and GREENLIGHT_POSTGRES_URL unset)" in not_run
    assert all(py in text for py in PYTHONS)
    assert all(pa in text for pa in ASYNCIOS)


def test_rewritten_only_when_facts_change(tmp_path: Path) -> None:
    docs = tmp_path / "compatibility.md"
    fabricate_run(tmp_path / "first")
    assert build(tmp_path / "first", tmp_path / "out", docs=docs).docs_written
    first = docs.read_text(encoding="utf-8")

    # Same facts, new patch versions and run id: the file keeps its old text (and date).
    fabricate_run(tmp_path / "second", Spec(run_id="second", sqlalchemy_patch={"1.4": "1.4.55", "2.1": "2.1.11"}))
    assert not build(tmp_path / "second", tmp_path / "out", docs=docs).docs_written
    assert docs.read_text(encoding="utf-8") == first

    # The regression is fixed: a support fact changed, so the file is rewritten with the new versions.
    fabricate_run(
        tmp_path / "third",
        Spec(run_id="third", sqlalchemy_patch={"1.4": "1.4.55", "2.1": "2.1.11"}, breaks=()),
    )
    assert build(tmp_path / "third", tmp_path / "out", docs=docs).docs_written
    third = docs.read_text(encoding="utf-8")
    assert table_rows(third)[("3.12", "2.1", "1")] == ["✅ works", "✅ works"]
    assert "SQLAlchemy 1.4.55, 2.1.11" in third
    assert "run third" in third


def test_an_empty_results_folder_leaves_the_table_alone(tmp_path: Path) -> None:
    docs = tmp_path / "compatibility.md"
    docs.write_text("hand-written\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    assert not build(tmp_path / "empty", tmp_path / "out", docs=docs).docs_written
    assert docs.read_text(encoding="utf-8") == "hand-written\n"
