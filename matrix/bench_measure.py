"""Run the real thing and time it, for ``nox -s bench`` (:mod:`matrix.bench`).

Matrix runs through ``nox`` in a build directory of their own, the containers each run started (from
``docker events``), one pytest start-up of the scenario suite, environment creation with uv against
``virtualenv`` + ``pip``, the portal benchmark, and nox's own start-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from matrix import cache
from matrix.axes import Cell, Matrix
from matrix.paths import ROOT

LABEL_INVOCATION = "greenlight.invocation"  # = matrix.provision.containers.LABEL_INVOCATION


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


def nox_fixed_seconds(build: Path) -> float:
    """What every ``nox`` invocation (and every ``-j`` worker) pays before a session: start-up, noxfile import."""
    start = time.perf_counter()
    subprocess.run(["nox", "--envdir", str(build / "nox"), "-l"], cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start
