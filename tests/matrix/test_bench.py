"""matrix/bench*.py: the figures it derives, checked against real nox naming, real pytest runs and real Docker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from matrix import axes, axes_file, bench, bench_figures, bench_measure, collect

OFFLINE_POSTGRES = "greenlight-offline/postgresql:15"


def test_session_and_environment_names_are_the_ones_nox_uses(tmp_path: Path) -> None:
    from nox.sessions import _normalize_path

    matrix = axes_file.load(axes.DEFAULT_PATH)
    for cell in matrix.cells():
        name = bench_measure.session_name(cell.id)
        assert name == f"matrix({cell.id})"
        assert bench_measure.venv_dir(tmp_path, cell.id) == Path(_normalize_path(str(tmp_path), name))


def result(cell: str, subject: str, timings: dict[str, float]) -> dict:
    return collect.build_result(
        run_id="r",
        cell=axes.parse_cell_id(cell).as_dict(),
        subject={"name": subject, "requirement": None},
        status="completed",
        reason=None,
        versions={},
        databases=[],
        lines=[],
        timings=timings,
    )


def test_cell_figures_split_overhead_from_scenario_time() -> None:
    cell = "py3.12-sa2.1-pa1"
    shared = {"environment": 0.5, "install": 2.0, "provision": 1.5}
    results = [
        result(cell, "greenlight", {**shared, "pytest": 10.0}),
        result(cell, "none", {**shared, "pytest": 20.0}),
        result("py3.13-sa2.1-pa1", "none", {"reused": 0.8}),  # re-used: nothing measured, left out
    ]
    [figures] = bench_figures.cell_figures(results)
    figures.startup = 3.0
    assert figures.pytest == {"greenlight": 10.0, "none": 20.0}
    assert figures.scenario == pytest.approx(7.0 + 17.0)
    assert figures.overhead == pytest.approx(0.5 + 2.0 + 1.5 + 2 * 3.0)


def test_extrapolation_adds_overhead_to_scenario_time_and_divides_by_the_speedup() -> None:
    matrix = axes_file.load(axes.DEFAULT_PATH)
    figures = bench_figures.CellFigures("c", 1.0, 2.0, 1.0, {"a": 5.0, "b": 5.0}, startup=2.0)  # overhead 8
    estimate = bench_figures.extrapolate(matrix, figures=[figures], scenarios_per_cell=600.0, speedup=1.5, jobs=2)
    assert estimate.cells == len(bench_figures.runnable_cells(matrix))
    assert estimate.per_cell_overhead == pytest.approx(8.0)
    assert estimate.cold_seconds == pytest.approx(estimate.cells * 608.0 / 1.5)


def scenarios(count: int) -> list[dict]:
    return [
        {"id": f"s/{i}", "category": "s", "database": "sqlite", "driver": "aiosqlite", "expected": "pass",
         "outcome": "passed", "exception": None, "duration": 0.1}
        for i in range(count)
    ]  # fmt: skip


def test_full_suite_reference_skips_subsets_reuses_and_partial_cells(tmp_path: Path) -> None:
    def write(cell: str, subject: str, count: int, **timings: float) -> None:
        document = result(cell, subject, {"install": 1.0, **timings})
        document["scenarios"] = scenarios(count)
        document["written_at"] = f"2026-11-21T22:{len(list(tmp_path.glob('*.json'))):02d}:00Z"
        collect.write_result(document, tmp_path)

    write("py3.12-sa2.1-pa1", "greenlight", 40, pytest=160.0)
    write("py3.12-sa2.1-pa1", "none", 40, pytest=300.0)
    write("py3.13-sa2.1-pa1", "greenlight", 1, pytest=10.0)  # a -k subset
    write("py3.11-sa2.1-pa1", "greenlight", 40, pytest=150.0, reused=1.0)  # re-used: not a measurement
    write("py3.10-sa2.1-pa1", "greenlight", 40, pytest=150.0)
    write("py3.10-sa2.1-pa1", "none", 3, pytest=20.0)  # one subject ran a subset: the cell is no reference
    found = bench_figures.full_suite_reference(tmp_path, items_per_database=40)
    assert found is not None
    assert found.cell == "py3.12-sa2.1-pa1"
    assert found.pytest == {"greenlight": 160.0, "none": 300.0}
    assert bench_figures.full_suite_reference(tmp_path, items_per_database=None) is None


def test_runnable_cells_leave_out_excluded_cells_and_missing_interpreters() -> None:
    matrix = axes_file.load(axes.DEFAULT_PATH)
    runnable = bench_figures.runnable_cells(matrix)
    assert runnable
    assert all(shutil.which(f"python{c.python}") for c in runnable)
    assert all(matrix.excluded_reason(c) is None for c in runnable)
    assert len(runnable) < len(matrix.cells())  # 3.10 x 2.1 is excluded (SQLAlchemy 2.1 requires Python >= 3.11)


def test_pytest_startup_times_a_real_collect_only_run() -> None:
    seconds = bench_measure.pytest_startup(Path(sys.executable), rounds=1)
    assert seconds is not None
    assert 0.05 < seconds < 120
    assert bench_measure.pytest_startup(Path("/nonexistent/python")) is None


def test_parse_start_events_counts_each_container_once() -> None:
    lines = [
        '{"status":"start","id":"aa","from":"img:1","Actor":{"ID":"aa","Attributes":{"image":"img:1"}}}',
        '{"status":"start","id":"aa","from":"img:1","Actor":{"ID":"aa","Attributes":{"image":"img:1"}}}',
        '{"Action":"start","Actor":{"ID":"bb","Attributes":{"image":"img:2"}}}',
        '{"status":"die","id":"bb","Actor":{"ID":"bb","Attributes":{"image":"img:2"}}}',
        "not json",
    ]
    assert bench_measure.parse_start_events("\n".join(lines)) == ["img:1", "img:2"]


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "image", "inspect", OFFLINE_POSTGRES], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.docker
def test_container_starts_are_counted_from_docker_events_by_invocation_label() -> None:
    if not docker_ok():
        pytest.skip(f"needs a Docker engine and {OFFLINE_POSTGRES} (nox -s images)")
    invocation = f"bench-test-{uuid.uuid4().hex[:8]}"
    since = time.time()
    ids = []
    try:
        for labelled in (True, True, False):  # two of ours, one of someone else's
            label = ["--label", f"{bench_measure.LABEL_INVOCATION}={invocation}"] if labelled else []
            created = subprocess.run(
                ["docker", "create", *label, "--entrypoint", "sh", OFFLINE_POSTGRES, "-c", "sleep 30"],
                capture_output=True,
                text=True,
                check=True,
            )
            ids.append(created.stdout.strip())
            subprocess.run(["docker", "start", ids[-1]], capture_output=True, check=True)
    finally:
        for cid in ids:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    starts = bench_measure.count_container_starts(since - 1, time.time() + 1, invocation)
    assert starts == [OFFLINE_POSTGRES, OFFLINE_POSTGRES]


@pytest.mark.docker
def test_images_to_start_are_the_distinct_local_images_of_the_matrix() -> None:
    if not docker_ok():
        pytest.skip(f"needs a Docker engine and {OFFLINE_POSTGRES} (nox -s images)")
    matrix = axes_file.load(axes.DEFAULT_PATH)
    images = bench_measure.images_to_start(matrix)
    # one container per distinct image, however many cells; each database row has an image of its own
    assert len([i for i in images if i.startswith(OFFLINE_POSTGRES + "@")]) == 1
    assert len(images) <= len([db for db in matrix.databases if db.kind != "sqlite"])


def test_summarize_reports_the_latest_run_of_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(cell: str, subject: str, run_id: str, **timings: float) -> None:
        document = result(cell, subject, {"environment": 0.2, "install": 1.0, "provision": 0.5, **timings})
        document["run_id"] = run_id
        collect.write_result(document, tmp_path)

    write("py3.12-sa2.1-pa1", "greenlight", "new", pytest=60.0)
    write("py3.12-sa2.1-pa1", "none", "new", pytest=90.0)
    write("py3.13-sa2.1-pa1", "greenlight", "new", pytest=70.0)
    write("py3.11-sa2.1-pa1", "greenlight", "old", pytest=999.0)  # another run's file: not counted
    assert bench.main(["--summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "matrix run new: 3 results files" in out
    assert "pytest, greenlight: median 65.0 s (min 60.0, max 70.0)" in out
    assert "pytest, none: median 90.0 s" in out
    assert "999" not in out
    assert bench.main(["--summarize", str(tmp_path / "nothing")]) == 1
