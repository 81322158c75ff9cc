"""The figures ``nox -s bench`` derives from results files: per cell (where its time goes) and the full matrix
extrapolated from the measured cells. Plain functions over the results' data; nothing here runs anything.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matrix import axes
from matrix.axes import Cell, Matrix


@dataclass
class CellFigures:
    cell: str
    environment: float
    install: float
    provision: float
    pytest: dict[str, float]  # per subject: the whole pytest run
    startup: Optional[float] = None  # one pytest start-up (collect the suite, run nothing), measured here

    @property
    def scenario(self) -> float:
        """Scenario time: the pytest runs minus one start-up each."""
        return sum(max(0.0, seconds - (self.startup or 0.0)) for seconds in self.pytest.values())

    @property
    def overhead(self) -> float:
        """Everything that is not running scenarios: environment, install, provisioning, pytest start-ups."""
        return self.environment + self.install + self.provision + (self.startup or 0.0) * len(self.pytest)


def cell_figures(results: Iterable[Mapping[str, Any]]) -> list[CellFigures]:
    """Group a run's results by cell; environment/install/provision are per cell (every subject repeats them)."""
    cells: dict[str, CellFigures] = {}
    for result in results:
        timings = result.get("timings") or {}
        if "pytest" not in timings:
            continue  # excluded, re-used or never ran: nothing measured
        cell_id = result["cell"]["id"]
        figures = cells.setdefault(
            cell_id,
            CellFigures(
                cell_id,
                float(timings.get("environment", 0.0)),
                float(timings.get("install", 0.0)),
                float(timings.get("provision", 0.0)),
                {},
            ),
        )
        figures.pytest[result["subject"]["name"]] = float(timings["pytest"])
    return [cells[k] for k in sorted(cells)]


@dataclass
class Extrapolation:
    cells: int  # runnable cells of the full matrix on this machine (interpreter present, not excluded)
    per_cell_overhead: float
    per_cell_scenarios: float  # full suite, scaled from the measured subset
    jobs: int
    speedup: float  # measured -j auto over -j 1 on the subset

    @property
    def cold_seconds(self) -> float:
        return self.cells * (self.per_cell_overhead + self.per_cell_scenarios) / self.speedup


def runnable_cells(matrix: Matrix) -> list[Cell]:
    return [
        plan.cell
        for plan in axes.expand(matrix)
        if plan.excluded_reason is None and shutil.which(f"python{plan.cell.python}")
    ]


def extrapolate(
    matrix: Matrix, figures: Sequence[CellFigures], scenarios_per_cell: float, speedup: float, jobs: int
) -> Extrapolation:
    overhead = statistics.mean(f.overhead for f in figures)
    return Extrapolation(len(runnable_cells(matrix)), overhead, scenarios_per_cell, jobs, max(speedup, 1e-9))


@dataclass
class Reference:
    """A whole-suite cell run found in a results directory: what one cell's scenarios really cost."""

    cell: str
    written_at: str
    pytest: dict[str, float]


def full_suite_reference(directory: Path, items_per_database: Optional[int]) -> Optional[Reference]:
    """The newest cell whose every subject completed the whole suite (not a ``-k`` subset) with timings.

    A ``-k`` run holds a few scenario entries per database; the whole suite holds about ``items_per_database``
    (the count ``--collect-only`` gives on one database) for SQLite.
    """
    if not items_per_database:
        return None
    cells: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            cells.setdefault(result["cell"]["id"], []).append(result)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    found: list[Reference] = []
    for cell_id, results in cells.items():
        ran = [r for r in results if r.get("status") != "excluded"]
        whole = all(
            r.get("status") == "completed"
            and "pytest" in (r.get("timings") or {})
            and "reused" not in (r.get("timings") or {})
            and sum(1 for s in r.get("scenarios", []) if s.get("database") == "sqlite") >= 0.9 * items_per_database
            for r in ran
        )
        if ran and whole:
            written = max(str(r.get("written_at", "")) for r in ran)
            found.append(
                Reference(cell_id, written, {r["subject"]["name"]: float(r["timings"]["pytest"]) for r in ran})
            )
    return max(found, key=lambda r: r.written_at) if found else None


def fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def latest_run(directory: Path) -> tuple[Optional[str], list[dict[str, Any]]]:
    """The run id most results files in ``directory`` carry (a full run writes one per cell and subject), and those
    files."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("run_id"), str):
            documents.append(document)
    runs = Counter(d["run_id"] for d in documents)
    if not runs:
        return None, []
    run_id = runs.most_common(1)[0][0]
    return run_id, [d for d in documents if d["run_id"] == run_id]


def spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"
