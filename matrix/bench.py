"""Measure the matrix: where a cell's time goes, what the cache saves, what ``-j`` buys, what the portal costs.

Run with ``nox -s bench`` (arguments after ``--`` go here; ``--help`` lists them). Everything is measured in
this one invocation, in a build directory of its own (``build/bench``), by running the real thing:

1. the chosen cells with ``-j 1`` then ``-j auto``, both ``--fresh`` (cold), then once more warm (cache hits);
   each run's container starts are counted from ``docker events`` for that run's invocation label;
2. per cell, from the results' ``timings``: environment creation, install, provisioning, and pytest, split into
   start-up (a run that collects the suite and deselects everything, timed here) and scenario time;
3. environment creation for one cell with uv (``uv venv`` + ``uv pip install``) against nox's default backend
   (``virtualenv`` + ``pip install``), same requirements;
4. ``benchmarks/portal_overhead.py`` in a cell's environment.

The full matrix is too slow to run cold on every benchmark (hours on 2 cores), so the full-matrix figure is an
extrapolation from the measured cells, printed with its inputs and labelled as such. To measure it instead, time
a real full run (``time nox -s matrix -j auto -- --fresh``) and then ``nox -s bench -- --summarize build/results``:
the same per-cell breakdown, from that run's own results, with no extrapolation.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from matrix import axes, axes_file
from matrix.bench_figures import (
    cell_figures,
    extrapolate,
    fmt,
    full_suite_reference,
    latest_run,
    spread,
)
from matrix.bench_measure import (
    collected,
    compare_env_backends,
    images_to_start,
    load_results,
    nox_fixed_seconds,
    portal_overhead,
    pytest_startup,
    run_matrix,
    venv_dir,
)
from matrix.paths import ROOT

DEFAULT_CELLS = ("py3.13-sa2.1-pa1.5-pt9", "py3.12-sa2.1-pa1.5-pt9")
DEFAULT_SCENARIOS = "lazy_load_in_test"


def summarize(directory: Path, run_id: Optional[str] = None, envdir: Path = ROOT / ".nox") -> int:
    """Per-cell figures of a finished matrix run, from its own results files: measured, never extrapolated."""
    run_id, results = (run_id, load_results(directory, run_id)) if run_id else latest_run(directory)
    if not results:
        print(f"no results files in {directory}" + (f" for run {run_id}" if run_id else ""))
        return 1
    statuses = Counter(str(result.get("status")) for result in results)
    figures = cell_figures(results)
    startup = pytest_startup(venv_dir(envdir, figures[0].cell) / "bin" / "python") if figures else None
    for figure in figures:
        figure.startup = startup
    print(f"matrix run {run_id}: {len(results)} results files in {directory}")
    print(f"  by status: {', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}")
    measured = f"{startup:.1f} s (measured now, in {figures[0].cell})" if startup is not None else "environment gone"
    print(f"  cells that ran: {len(figures)}; pytest start-up: {measured}")
    print(f"  environment creation: {spread([f.environment for f in figures])}")
    print(f"  install: {spread([f.install for f in figures])}")
    print(f"  database provisioning: {spread([f.provision for f in figures])}")
    subjects = sorted({name for f in figures for name in f.pytest})
    for subject in subjects:
        print(f"  pytest, {subject}: {spread([f.pytest[subject] for f in figures if subject in f.pytest])}")
    print(f"  scenario time per cell: {spread([f.scenario for f in figures])}")
    ratios = [f.overhead / f.scenario for f in figures if f.scenario > 0]
    if ratios:
        print(
            f"  overhead / scenario time per cell: median {statistics.median(ratios):.3f}x, max {max(ratios):.3f}x"
            f" (target <= 2x)"
        )
    busy = sum(f.environment + f.install + f.provision + sum(f.pytest.values()) for f in figures)
    print(f"  cell wall times summed (cells overlap under nox -j, sharing the cores): {fmt(busy)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv and argv[0] == "--summarize":
        if len(argv) < 2 or argv[1].startswith("-"):
            print("usage: nox -s bench -- --summarize RESULTS_DIR [RUN_ID]")
            return 2
        return summarize(Path(argv[1]), argv[2] if len(argv) > 2 else None)
    parser = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=",".join(DEFAULT_CELLS), help="comma-separated cell ids")
    parser.add_argument("-k", dest="keyword", default=DEFAULT_SCENARIOS, help="scenario subset ('' = whole suite)")
    parser.add_argument("--jobs", default="auto", help="the parallel run's -j (default: auto)")
    parser.add_argument("--skip-env-compare", action="store_true", help="skip uv vs virtualenv+pip")
    args = parser.parse_args(argv)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    scenario_args = ["-k", args.keyword] if args.keyword else []
    matrix = axes_file.load(os.environ.get("GREENLIGHT_AXES", axes.DEFAULT_PATH))
    build = ROOT / "build" / "bench"
    shutil.rmtree(build / "results", ignore_errors=True)
    jobs = (os.cpu_count() or 1) if args.jobs == "auto" else int(args.jobs)
    say = print
    say(f"greenlight bench: cells {', '.join(cells)}; scenarios {'-k ' + args.keyword if args.keyword else 'all'}")
    say(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

    logging.getLogger().setLevel(logging.WARNING)  # docker-py/urllib3 debug lines would bury the figures
    serial = run_matrix("j1-cold", cells, "1", scenario_args, build, fresh=True)
    # Measured in the environments the cold run left (the next runs rebuild them; a warm run leaves them empty).
    figures = cell_figures(serial.results)
    for figure in figures:
        figure.startup = pytest_startup(venv_dir(build / "nox", figure.cell) / "bin" / "python")
    first_python = venv_dir(build / "nox", cells[0]) / "bin" / "python"
    full_count = collected(first_python)
    selected_count = collected(first_python, args.keyword) if args.keyword else full_count
    portal = portal_overhead(first_python)
    parallel = run_matrix(f"j{jobs}-cold", cells, str(jobs), scenario_args, build, fresh=True)
    warm = run_matrix(f"j{jobs}-warm", cells, str(jobs), scenario_args, build, fresh=False)
    runs = (serial, parallel, warm)
    expected = images_to_start(matrix)
    say("\n== matrix runs (wall time, measured) ==")
    for run in runs:
        reused = sum(1 for r in run.results if "reused" in (r.get("timings") or {}))
        say(
            f"  {run.label:<10} {fmt(run.seconds):>9}  exit {run.returncode}  results {len(run.results)}"
            f" (re-used {reused})  container starts {len(run.container_starts)} {sorted(set(run.container_starts))}"
        )
    say(f"  distinct database images the provisioner starts: {len(expected)} {sorted(expected)}")
    speedup = serial.seconds / parallel.seconds if parallel.seconds else 0.0
    say(f"  -j {jobs} vs -j 1: {speedup:.2f}x faster; warm re-run: {fmt(warm.seconds)} for {len(cells)} cell(s)")

    say("\n== per cell (the -j 1 cold run's results timings; pytest start-up measured in the cell's environment) ==")
    for figure in figures:
        subjects = ", ".join(f"{k} {v:.1f}" for k, v in figure.pytest.items())
        say(
            f"  {figure.cell}: environment {figure.environment:.1f} s, install {figure.install:.1f} s,"
            f" provisioning {figure.provision:.1f} s, pytest start-up {figure.startup or 0:.1f} s x"
            f" {len(figure.pytest)} subjects, scenarios {figure.scenario:.1f} s (pytest per subject: {subjects})"
            f" -> overhead / scenario time {figure.overhead / max(figure.scenario, 1e-9):.2f}x"
        )
    if figures:
        reference = full_suite_reference(ROOT / "build" / "results", full_count)
        startup = statistics.mean(f.startup or 0.0 for f in figures)
        if reference is not None:
            scenarios = sum(max(0.0, t - startup) for t in reference.pytest.values())
            source = (
                f"whole-suite pytest runs of {reference.cell} written {reference.written_at} in build/results"
                f" ({', '.join(f'{k} {v:.0f} s' for k, v in reference.pytest.items())}; measured by an earlier"
                f" `nox -s matrix`, not in this run), minus this run's start-up"
            )
        else:
            scale = (full_count / selected_count) if (full_count and selected_count) else 1.0
            scenarios = statistics.mean(f.scenario for f in figures) * scale
            source = f"CRUDE: this run's subset scaled by {full_count} suite items / {selected_count} selected"
        estimate = extrapolate(matrix, figures, scenarios, speedup, jobs)
        say("\n== full default matrix (EXTRAPOLATED, not measured) ==")
        say(
            f"  cold: {estimate.cells} runnable cells x (overhead {estimate.per_cell_overhead:.1f} s, measured here"
            f" + scenarios {estimate.per_cell_scenarios:.0f} s) / {speedup:.2f} (measured -j {jobs} speed-up)"
            f" = {fmt(estimate.cold_seconds)}\n    scenario time from: {source}"
        )
        fixed = nox_fixed_seconds(build)
        per_cell = max(0.0, warm.seconds - fixed) / max(len(cells), 1)
        say(
            f"  warm (every cell re-used): nox start-up {fixed:.1f} s + {estimate.cells} cells x {per_cell:.1f} s"
            f" (this run's warm {fmt(warm.seconds)} for {len(cells)} cells, -j {jobs}, minus one nox start-up)"
            f" = {fmt(fixed + estimate.cells * per_cell)}"
        )
    if not args.skip_env_compare and cells:
        first = axes.parse_cell_id(cells[0])
        say("\n== environment creation for one cell: uv vs nox's default virtualenv + pip (measured) ==")
        compared = compare_env_backends(matrix, first, first.python)
        say(
            f"  {cells[0]}: uv {compared.uv:.1f} s, virtualenv+pip {compared.virtualenv_pip:.1f} s"
            f" -> uv is {compared.ratio:.1f}x faster"
        )
    say("\n== portal overhead (benchmarks/portal_overhead.py in the first cell's environment) ==")
    say("  " + portal.replace("\n", "\n  "))
    failed = [run.label for run in runs if run.returncode != 0]
    if failed:
        say(f"\nmatrix runs that failed: {', '.join(failed)} (logs in {build})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
