"""The ``matrix`` nox session's entry point for one cell, and the ``--smoke`` preset.

The work is done by modules with one job each (see README "How it fits together"): :mod:`matrix.install`
(requirements and drivers into the cell's environment), :mod:`matrix.databases` (servers and per-run databases),
:mod:`matrix.watchdog` (one pytest run, the stall watchdog, interruption), :mod:`matrix.cell` (a cell's subjects,
concurrently, into results files; a typed :class:`~matrix.cell.CellOutcome`). The names below are re-exported
for callers and tests that knew them here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from matrix import contract
from matrix.axes import Cell, Matrix
from matrix.cell import CellRunner
from matrix.databases import Databases, Target, _fit
from matrix.install import (
    BASE_PLUGINS,
    Installed,
    _uv,
    inspect_env,
    install_cell,
    plugin_args,
    subject_plugins,
    uv_install,
)
from matrix.interpreter import HOST, Interpreter
from matrix.interpreter import find as find_interpreter
from matrix.outcome import CellOutcome, SubjectOutcome, describe, run_id
from matrix.paths import ROOT
from matrix.watchdog import (
    MAX_RESUMES,
    Interrupted,
    PytestRun,
    Terminated,
    run_pytest,
    sigterm_as_interrupt,
    stall_detector,
    watch_events,
)

_Interrupted = Interrupted
_Terminated = Terminated
__all__ = [
    "BASE_PLUGINS",
    "MAX_RESUMES",
    "ROOT",
    "CellOutcome",
    "CellRunner",
    "Databases",
    "Installed",
    "PytestRun",
    "SubjectOutcome",
    "Target",
    "_fit",
    "_uv",
    "describe",
    "inspect_env",
    "install_cell",
    "plugin_args",
    "run_id",
    "run_pytest",
    "stall_detector",
    "subject_plugins",
    "uv_install",
    "watch_events",
]


# Matrix options, not pytest's: noxfile.py turns them into environment variables that `nox -j` workers inherit.
RUNNER_FLAGS = ("--fresh", "--smoke", "--no-share")


def scenario_args(posargs: Sequence[str]) -> tuple[str, ...]:
    return tuple(arg for arg in posargs if arg not in RUNNER_FLAGS)


def smoke(matrix: Matrix, have_python: Callable[[str], bool] = lambda v: bool(shutil.which(f"python{v}"))) -> Matrix:
    """The ``--smoke`` preset: the newest value of each axis, one cell. The newest Python *on this machine*: a
    smoke run on a missing interpreter would answer nothing."""

    def newest(values: Sequence[str]) -> tuple[str, ...]:
        return (max(values, key=lambda v: tuple(int(part) for part in v.split("."))),)

    pythons = [v for v in matrix.pythons if have_python(v)] or list(matrix.pythons)
    return dataclasses.replace(
        matrix,
        pythons=newest(pythons),
        sqlalchemy=newest(matrix.sqlalchemy),
        pytest_asyncio=newest(matrix.pytest_asyncio),
        pytest=newest(matrix.pytest) if matrix.pytest else (),
        tiers=(),  # the support tier only
    )


def interpreter(version: str) -> Optional[str]:
    """The cell's Python on PATH (``python3.12``), or None; :func:`matrix.interpreter.find` also looks for a
    runtime root."""
    return shutil.which(f"python{version}")


def missing_interpreters_fail(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> bool:
    """nox's own rule for ``--error-on-missing-interpreters``: the flag, or ``CI`` set without the opposite flag."""
    if "--error-on-missing-interpreters" in argv:
        return True
    return bool(contract.text("CI", environ)) and "--no-error-on-missing-interpreters" not in argv


def create_environment(python: Union[str, Interpreter], location: Path) -> float:
    """One uv environment for the cell (every subject shares it), made where its interpreter runs (the host or
    its runtime root); returns the seconds it took."""
    via = python if isinstance(python, Interpreter) else HOST
    executable = python.executable if isinstance(python, Interpreter) else python
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    command = [*via.uv(), "venv", "--clear", "--quiet", "--python", executable, str(location)]
    via.run(command, env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def run_session(
    session: Any, cell: Cell, matrix: Matrix, *, fail_on_missing: bool = False, announced: Sequence[str] = ()
) -> CellOutcome:
    """The body of the ``matrix`` nox session for one cell, with the matrix the noxfile read and listed the cells
    from (the ``--smoke`` one included: the runner never reads axes.toml again). Returns the cell's outcome; the
    caller reports it (progress) and then skips or fails the session as ``outcome.skipped``/``outcome.error`` say.

    The session has no nox-made environment (``venv_backend="none"``): a missing interpreter is found here, not
    by reading nox's log, and recorded ``interpreter-missing`` like any other outcome. ``announced``: server
    databases the run's banner said no cell can have; the cell does not say so again.
    """
    env_dir = Path(session.env_dir)
    runner = CellRunner(matrix, cell, env_dir / "bin" / "python", say=session.log)
    runner.pytest_args = scenario_args(session.posargs)
    runner.announced = tuple(announced)
    if runner.plan.excluded_reason is None:
        # PATH first, else the runtime root (built here on first use; its build log goes to the session's).
        found = find_interpreter(cell.python, env_dir=env_dir, log=session.log)
        if isinstance(found, str):
            outcome = runner.record_missing(found)
            return dataclasses.replace(outcome, error=found if fail_on_missing else None, skipped=found)
        runner.interpreter = Path(found.executable)
        runner.via = found
        if found.root is not None:
            session.log(f"{runner.position}: Python {cell.python} from the {found.source} ({found.root})")
        # Made only when the cell must run (not when its previous results are re-used).
        runner.make_environment = lambda: create_environment(found, env_dir)
    with sigterm_as_interrupt():
        outcome = runner.execute()
    excluded = runner.plan.excluded_reason
    return dataclasses.replace(
        outcome,
        error="; ".join(runner.failures) or None,
        skipped=f"excluded: {excluded}" if excluded is not None else None,
    )
