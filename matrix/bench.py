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
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from matrix import axes, axes_file, cache
from matrix.axes import Cell, Matrix
from matrix.paths import ROOT

LABEL_INVOCATION = "greenlight.invocation"  # = matrix.provision.containers.LABEL_INVOCATION
DEFAULT_CELLS = ("py3.13-sa2.1-pa1.5-pt9", "py3.12-sa2.1-pa1.5-pt9")
DEFAULT_SCENARIOS = "lazy_load_in_test"


def session_name(cell_id: str) -> str:
    """``py3.13-sa2.1-pa1.5-pt9`` -> ``matrix(py3.13-sa2.1-pa1.5-pt9)`` (the nox session of that cell)."""
    return f"matrix({cell_id})"


def venv_dir(envdir: Path, cell_id: str) -> Path:
    """Where nox puts the cell's environment (it replaces every non-alphanumeric run with '-', and hashes a
    path too long for a shebang line: nox's own function decides)."""
    name = session_name(cell_id)
    try:
        from nox.sessions import _normalize_path
    except ImportError:  # outside nox's environment
        return envdir / re.sub(r"[^0-9A-Za-z]+", "-", name).strip("-")
    return Path(_normalize_path(str(envdir), name))


# --- one matrix run -----------------------------------------------------------------------------------------


@dataclass
class MatrixRun:
    label: str
    seconds: float
    returncode: int
    container_starts: list[str]  # image of every container started under this run's invocation label
    results: list[dict[str, Any]] = field(default_factory=list)


def images_to_start(matrix: Matrix) -> set[str]:
    """The distinct local images the provisioner would start for this matrix (``name@id``): what one run's
    container starts must equal, however many cells it has."""
    return {
        identity.split("=", 1)[1] for identity in cache.server_identities(matrix) if "@" in identity.split("=", 1)[1]
    }


def count_container_starts(since: float, until: float, invocation: str) -> list[str]:
    """Images of the containers started between ``since`` and ``until`` (epoch seconds) with our invocation label.

    Read from the engine's own event log, so a container started and removed again is counted too.
    """
    if shutil.which("docker") is None:
        return []
    done = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--filter",
            "event=start",
            "--filter",
            f"label={LABEL_INVOCATION}={invocation}",
            "--format",
            "{{json .}}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return parse_start_events(done.stdout)


def parse_start_events(text: str) -> list[str]:
    """``docker events --format '{{json .}}'`` lines -> the image of each distinct container started."""
    seen: dict[str, str] = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id")
        if cid and event.get("status", event.get("Action")) == "start":
            seen.setdefault(cid, (actor.get("Attributes") or {}).get("image") or event.get("from") or "?")
    return sorted(seen.values())


def run_matrix(
    label: str, cells: Sequence[str], jobs: str, scenario_args: Sequence[str], build: Path, *, fresh: bool
) -> MatrixRun:
    """Run ``nox -s <cells> [-j N] -- [--fresh] <scenario args>`` and collect what it wrote."""
    run_id = f"bench-{label}-{os.getpid():x}-{time.time_ns() % 10**6:x}"
    env = {**os.environ, "GREENLIGHT_BUILD": str(build), "GREENLIGHT_RUN_ID": run_id, "UV_PYTHON_DOWNLOADS": "never"}
    for inherited in ("GREENLIGHT_INVOCATION", "GREENLIGHT_FRESH", "GREENLIGHT_SMOKE"):
        env.pop(inherited, None)
    # Environments of their own (--envdir): a matrix run elsewhere in this checkout must not share them.
    nox_args = ["--envdir", str(build / "nox"), "-s", *(session_name(c) for c in cells)]
    nox_args += ["-j", jobs] if jobs != "1" else []
    posargs = ["--fresh", *scenario_args] if fresh else list(scenario_args)
    # `exec` keeps the shell's pid, so $$ is the nox process: the provisioner labels containers with it and
    # its reaper removes them when that process ends.
    read_fd, write_fd = os.pipe()
    script = f'GREENLIGHT_INVOCATION=$$; export GREENLIGHT_INVOCATION; echo "$$" >&{write_fd}; exec "$@"'
    log = build / f"{label}.log"
    build.mkdir(parents=True, exist_ok=True)
    since = time.time()
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            ["sh", "-c", script, "sh", "nox", *nox_args, "--", *posargs],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as pid_pipe:
            invocation = pid_pipe.readline().strip()
        code = process.wait()
    seconds = time.perf_counter() - start
    starts = count_container_starts(since - 1, time.time() + 1, invocation)
    return MatrixRun(label, seconds, code, starts, load_results(build / "results", run_id))


def load_results(directory: Path, run_id: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("run_id") == run_id:
            found.append(result)
    return found


# --- per-cell figures ---------------------------------------------------------------------------------------


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


def _suite_command(python: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    """A scenario-suite pytest command as the runner builds it, on one SQLite database (nothing to provision)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    sqlite = tempfile.gettempdir() + f"/greenlight-bench-{os.getpid()}.db"
    listed = [{"name": "sqlite", "kind": "sqlite", "driver": "aiosqlite", "url": f"sqlite+aiosqlite:///{sqlite}"}]
    env.update(PYTHONPATH=str(ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", GREENLIGHT_DATABASES=json.dumps(listed))
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin", "-p", "pytest_timeout"]
    command = [
        str(python),
        "-m",
        "pytest",
        str(ROOT / "matrix" / "scenarios"),
        *plugins,
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    return [*command, *extra], env


def pytest_startup(python: Path, rounds: int = 3) -> Optional[float]:
    """Median wall time of a scenario-suite pytest run that collects everything and runs nothing."""
    if not python.exists():
        return None
    command, env = _suite_command(python, "-k", "bench_deselects_everything")
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 5:  # 5: "no tests ran", i.e. collected and all deselected, as intended
            return None
    return statistics.median(seconds)


def collected(python: Path, keyword: Optional[str] = None) -> Optional[int]:
    """How many scenario items the suite (or its ``-k`` subset) has per database/driver, for this cell."""
    if not python.exists():
        return None
    command, env = _suite_command(python, "--collect-only", *(["-k", keyword] if keyword else []))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    return sum(1 for line in done.stdout.splitlines() if "::" in line) or None


# --- environment backends -----------------------------------------------------------------------------------


@dataclass
class EnvComparison:
    uv: float
    virtualenv_pip: float

    @property
    def ratio(self) -> float:
        return self.virtualenv_pip / self.uv


def compare_env_backends(matrix: Matrix, cell: Cell, python: str) -> EnvComparison:
    """Build the same cell's environment both ways (caches warm for both: uv's and pip's own)."""
    requirements = [*cache.cell_requirements(matrix, cell), "-e", str(ROOT)]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-") as tmp:
        uv_dir, pip_dir = Path(tmp) / "uv", Path(tmp) / "pip"
        start = time.perf_counter()
        subprocess.run(["uv", "venv", "-q", "-p", python, str(uv_dir)], env=env, check=True, capture_output=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(uv_dir / "bin" / "python"), *requirements],
            env=env,
            check=True,
            capture_output=True,
        )
        uv_seconds = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "virtualenv", "-q", "-p", python, str(pip_dir)],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [str(pip_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *requirements],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        pip_seconds = time.perf_counter() - start
    return EnvComparison(uv_seconds, pip_seconds)


def portal_overhead(python: Path) -> str:
    done = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "portal_overhead.py")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return (done.stdout + (done.stderr if done.returncode else "")).strip()


# --- the full matrix, extrapolated --------------------------------------------------------------------------


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


def nox_fixed_seconds(build: Path) -> float:
    """What every ``nox`` invocation (and every ``-j`` worker) pays before a session: start-up, noxfile import."""
    start = time.perf_counter()
    subprocess.run(["nox", "--envdir", str(build / "nox"), "-l"], cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


# --- the report ---------------------------------------------------------------------------------------------


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
