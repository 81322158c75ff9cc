"""reports.loading, verdicts and diffs on results files written by the tests: loading, verdicts, subject comparison
and history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.diffs import compare_subjects, diff_grids, diff_runs, version_changes
from reports.loading import from_data, load_results, to_data
from reports.verdicts import build_grid, cell_verdict
from tests.reports.results_factory import (
    ASYNCIOS,
    DATABASES,
    SCENARIOS,
    SUBJECTS,
    Spec,
    cell_id,
    fabricate_run,
    result,
    write,
)


def test_every_file_becomes_one_result(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path)
    run = load_results(tmp_path)
    assert run.problems == ()
    assert len(run.results) == len(spec.cells()) * len(SUBJECTS)
    assert run.subjects() == list(SUBJECTS)
    assert run.databases() == list(DATABASES)


def test_grid_verdicts_follow_the_schema_rules(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path)
    grid = build_grid(load_results(tmp_path), "greenlight")
    assert len(grid.cells) == len(spec.cells()) * len(DATABASES)

    excluded = grid.cells[("3.9", "2.1"), ("1", "sqlite")][0]
    assert (excluded.kind, excluded.label) == ("excluded", "excluded")
    assert "cannot run here" in excluded.reason

    missing_server = grid.cells[("3.9", "1.4"), ("0.21", "postgresql-17")][0]
    assert missing_server.kind == "not-run"
    assert missing_server.reason == "no Docker engine and GREENLIGHT_POSTGRES_URL unset"

    # One broken scenario out of every scenario on both PostgreSQL drivers.
    ran = len(SCENARIOS) * len(DATABASES["postgresql-17"])
    partial = grid.cells[("3.12", "2.1"), ("1", "postgresql-17")][0]
    assert (partial.kind, partial.works, partial.ran) == ("partial", ran - 1, ran)
    assert partial.label == f"partial {ran - 1} of {ran}"

    excluded_cells = sum(1 for py, sa in spec.excluded for _ in ASYNCIOS) * len(DATABASES)
    counts = grid.counts()
    assert counts["excluded"] == excluded_cells
    assert counts["partial"] == len(spec.breaks)
    assert counts["not-run"] == len(spec.unavailable)
    assert counts["works"] == len(grid.cells) - excluded_cells - len(spec.breaks) - len(spec.unavailable)
    assert counts["broken"] == 0


def test_a_cell_where_nothing_works_is_broken_and_a_missing_file_is_not_run(tmp_path: Path) -> None:
    spec = Spec()
    data = result(spec, "3.12", "2.0", "1", "none")
    for entry in data["scenarios"]:
        entry["verdict"] = "broken"
    write(tmp_path, data)
    run = load_results(tmp_path)
    assert cell_verdict(run.results[0], "sqlite").kind == "broken"
    missing = cell_verdict(None, "sqlite")
    assert (missing.kind, missing.reason) == ("not-run", "no results file for this cell")


def test_skipped_scenarios_do_not_count_as_ran(tmp_path: Path) -> None:
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    sqlite = [s for s in data["scenarios"] if s["database"] == "sqlite"]
    sqlite[0].update(verdict="skipped", outcome="skipped")
    write(tmp_path, data)
    verdict = cell_verdict(load_results(tmp_path).results[0], "sqlite")
    assert (verdict.kind, verdict.ran) == ("works", len(sqlite) - 1)


def test_subject_comparison_finds_fixes_and_the_regression(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path)
    comparisons = compare_subjects(load_results(tmp_path))
    regressions = [
        (c.cell_id, "greenlight", c.database, c.driver, c.scenario) for c in comparisons if c.kind == "regression"
    ]
    assert regressions == list(spec.breaks)
    # Every scenario that fails without a plugin is fixed wherever both ran.
    fails_without = sum(1 for *_, works in SCENARIOS if not works)
    ran_pairs = sum(
        len(drivers)
        for py, sa, pa in spec.cells()
        if (py, sa) not in spec.excluded
        for db, drivers in DATABASES.items()
        if (cell_id(py, sa, pa), db) not in spec.unavailable
    )
    assert sum(c.kind == "fix" for c in comparisons) == fails_without * ran_pairs
    third = {c.others["pytest-green-light"] for c in comparisons if c.cell_id.startswith("py3.12-sa1.4")}
    assert third == {"not-run"}  # excluded for that subject


def test_history_attributes_changes_to_package_versions(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "prev", Spec(run_id="prev", sqlalchemy_patch={"1.4": "1.4.54", "2.1": "2.1.9"}, breaks=()))
    spec = fabricate_run(tmp_path / "cur")
    changes = diff_runs(load_results(tmp_path / "cur"), load_results(tmp_path / "prev"))
    assert [(c.kind, c.cell_id, c.subject, c.database, c.driver, c.scenario) for c in changes] == [
        ("new failure", *spec.breaks[0])
    ]
    assert changes[0].cause == "broke when SQLAlchemy went 2.1.9 → 2.1.10"

    fixed = diff_runs(load_results(tmp_path / "prev"), load_results(tmp_path / "cur"))
    assert [c.kind for c in fixed] == ["new fix"]
    assert fixed[0].cause == "fixed when SQLAlchemy went 2.1.10 → 2.1.9"


def test_a_change_without_version_change_says_so(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "prev", Spec(breaks=()))
    fabricate_run(tmp_path / "cur")
    (change,) = diff_runs(load_results(tmp_path / "cur"), load_results(tmp_path / "prev"))
    assert change.cause.startswith("broke with no package version change")


def test_version_changes_names_added_removed_and_moved_packages() -> None:
    before = {"python": "3.12.1", "SQLAlchemy": "2.1.9", "greenlet": "3.2.4", "old-thing": "1"}
    after = {"python": "3.12.2", "sqlalchemy": "2.1.9", "greenlet": "3.2.4", "new_thing": "2"}
    assert version_changes(before, after) == [
        "Python went 3.12.1 → 3.12.2",
        "new-thing 2 was added",
        "old-thing 1 was removed",
    ]


def test_corrupted_and_partial_files_are_named_and_the_rest_loads(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path)
    good = len(spec.cells()) * len(SUBJECTS)
    whole = (tmp_path / "py3.12-sa2.1-pa1__none.json").read_bytes()
    (tmp_path / "py3.12-sa2.1-pa1__none.json").write_bytes(whole[: len(whole) // 2])  # killed mid-write
    (tmp_path / "zz-garbage__none.json").write_bytes(b"\x00\xff not json at all")
    (tmp_path / "zz-old__none.json").write_text(json.dumps({"schema_version": 0}))
    (tmp_path / "zz-list__none.json").write_text("[1, 2]")
    run = load_results(tmp_path)
    assert len(run.results) == good - 1
    named = {p.file: p.message for p in run.problems}
    assert set(named) == {
        "py3.12-sa2.1-pa1__none.json",
        "zz-garbage__none.json",
        "zz-old__none.json",
        "zz-list__none.json",
    }
    assert "corrupted or partial" in named["py3.12-sa2.1-pa1__none.json"]
    assert "schema_version is 0" in named["zz-old__none.json"]


def test_bad_entries_are_dropped_and_reported(tmp_path: Path) -> None:
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    total = len(data["scenarios"])
    data["scenarios"][0]["verdict"] = "great"
    data["scenarios"][1] = "not an object"
    write(tmp_path, data)
    run = load_results(tmp_path)
    assert len(run.results[0].scenarios) == total - 2
    messages = [p.message for p in run.problems]
    assert any("scenarios[0].verdict 'great'" in m for m in messages)
    assert any("scenarios[1] is not an object" in m for m in messages)
    # The file's summary still counts the dropped entries: the disagreement is reported, the scenarios win.
    assert any(m.startswith("summary disagrees") for m in messages)


def test_invalid_utf8_bytes_do_not_lose_the_file(tmp_path: Path) -> None:
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    data["scenarios"][0].update(verdict="broken", outcome="failed", message="MARK")
    data["summary"]["works"] -= 1
    data["summary"]["broken"] += 1
    raw = json.dumps(data).encode().replace(b"MARK", b"bad \xff\xfe bytes")
    (tmp_path / "py3.12-sa2.1-pa1__greenlight.json").write_bytes(raw)
    run = load_results(tmp_path)
    assert run.problems == ()
    assert run.results[0].scenarios[0].message == "bad \N{REPLACEMENT CHARACTER}\N{REPLACEMENT CHARACTER} bytes"


def test_data_round_trips_for_history(tmp_path: Path) -> None:
    fabricate_run(tmp_path)
    run = load_results(tmp_path)
    again = from_data(json.loads(json.dumps(to_data(run))), "index.html")
    assert again.problems == ()
    assert again.results == run.results


def test_rows_are_in_version_order(tmp_path: Path) -> None:
    fabricate_run(tmp_path, Spec(excluded=()))
    write(tmp_path, result(Spec(), "3.10", "1.4", "1", "greenlight"))
    rows = list(build_grid(load_results(tmp_path), "greenlight").rows)
    assert rows.index(("3.9", "1.4")) < rows.index(("3.10", "1.4")) < rows.index(("3.12", "1.4"))


def test_a_crashed_run_keeps_what_finished_and_says_so(tmp_path: Path) -> None:
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    finished = [s for s in data["scenarios"] if s["database"] == "sqlite"][:2]
    data.update(status="crashed", reason="SIGTERM during the run", scenarios=finished)
    data.pop("summary")
    write(tmp_path, data)
    run = load_results(tmp_path)
    sqlite = cell_verdict(run.results[0], "sqlite")
    assert (sqlite.kind, sqlite.ran) == ("works", 2)
    assert sqlite.reason == "crashed: SIGTERM during the run"
    postgres = cell_verdict(run.results[0], "postgresql-17")
    assert (postgres.kind, postgres.reason) == ("not-run", "crashed: SIGTERM during the run")


@pytest.mark.parametrize("status", ["install-failed", "interpreter-missing", "infra-error"])
def test_a_cell_that_never_ran_is_not_run_with_its_reason(tmp_path: Path, status: str) -> None:
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    data.update(status=status, reason=f"why: {status}", versions={}, databases=[], scenarios=[])
    write(tmp_path, data)
    verdict = cell_verdict(load_results(tmp_path).results[0], "sqlite")
    assert (verdict.kind, verdict.reason) == ("not-run", f"{status}: why: {status}")


def test_grid_cells_whose_verdict_changed(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "prev", Spec(run_id="prev", sqlalchemy_patch={"1.4": "1.4.54", "2.1": "2.1.9"}))
    fabricate_run(tmp_path / "cur", Spec(breaks=(), unavailable=(("py3.12-sa1.4-pa1", "postgresql-17"),)))
    changes = diff_grids(
        build_grid(load_results(tmp_path / "cur"), "greenlight"),
        build_grid(load_results(tmp_path / "prev"), "greenlight"),
    )
    assert [(c.cell_id, c.database, c.before, c.after) for c in changes] == [
        ("py3.9-sa1.4-pa0.21", "postgresql-17", "not-run", "works"),
        ("py3.12-sa1.4-pa1", "postgresql-17", "works", "not-run"),
        ("py3.12-sa2.1-pa1", "postgresql-17", "partial 9 of 10", "works"),
    ]
    assert changes[1].cause == "no Docker engine and GREENLIGHT_POSTGRES_URL unset (no package version change)"
    assert changes[2].cause == "SQLAlchemy went 2.1.9 → 2.1.10"


def test_other_json_files_in_the_folder_are_not_results(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path)
    (tmp_path / "state.json").write_text("{}", encoding="utf-8")
    run = load_results(tmp_path)
    assert run.problems == ()
    assert len(run.results) == len(spec.cells()) * len(SUBJECTS)
