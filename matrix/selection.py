"""What a matrix run selected and how far it got, shared by every nox process of the run through files.

Under ``nox -j`` each cell runs in a worker process of its own that knows only its cell, so the time left cannot be
estimated from nox's manifest there. Instead, per run id, under ``build/progress/``:

* ``<run>.plan.json``: written by the top-level process when it starts (the time, the number of parallel jobs),
  then again with the selected cell ids once ``nox --list --json`` with the run's own selection options answers
  (a background thread: about a second, while the first cells install);
* ``<run>.done``: one JSON line per finished cell (its id, seconds, whether it ran or re-used its results),
  appended by whichever process ran it (``O_APPEND``: lines from concurrent workers do not interleave).

A sequential run uses the same files; its process also reads nox's manifest directly (see :mod:`matrix.progress`).
Standard library only: the noxfile imports it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matrix.paths import BUILD, ROOT

PROGRESS = BUILD / "progress"
# Options of the top-level nox command line that do not change which sessions are selected, with their arity.
_NOT_SELECTION = {"-j": 1, "--parallel": 1, "--report": 1, "-r": 0, "-R": 0, "--reuse-existing-virtualenvs": 0}


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "run"


def plan_path(run: str, directory: Path = PROGRESS) -> Path:
    return directory / f"{_safe(run)}.plan.json"


def done_path(run: str, directory: Path = PROGRESS) -> Path:
    return directory / f"{_safe(run)}.done"


def interpreters_path(run: str, directory: Path = PROGRESS) -> Path:
    """What each Python's PATH entry stands for, asked once per run (:func:`matrix.interpreter.behind_launcher`)."""
    return directory / f"{_safe(run)}.interpreters.json"


def parallel_jobs(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> int:
    """The number of cells nox runs at once: ``-j N`` / ``--parallel N`` (``auto``: the CPU count), else
    ``NOX_PARALLEL``, else 1."""
    environ = os.environ if environ is None else environ
    value: Optional[str] = environ.get("NOX_PARALLEL")
    for index, arg in enumerate(argv):
        if arg in ("-j", "--parallel") and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--parallel="):
            value = arg.partition("=")[2]
        elif arg.startswith("-j") and len(arg) > 2:
            value = arg[2:]
    if not value:
        return 1
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        return max(1, int(value))
    except ValueError:
        return 1


def _write(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(dict(data)), encoding="utf-8")
    os.replace(temp, path)


def list_command(argv: Sequence[str]) -> list[str]:
    """``nox --list --json`` with the selection options of ``argv`` (the top-level nox command line, without the
    ``--`` arguments): the sessions it prints are exactly the ones this run selected."""
    kept: list[str] = []
    skip = 0
    for arg in argv[1:]:
        if skip:
            skip -= 1
            continue
        name = arg.partition("=")[0]
        if name in _NOT_SELECTION:
            skip = 0 if "=" in arg else _NOT_SELECTION[name]
            continue
        if arg.startswith("-j") and len(arg) > 2:
            continue
        kept.append(arg)
    return [sys.executable, "-m", "nox", *kept, "--list", "--json"]


def record_plan(
    argv: Sequence[str],
    run: str,
    *,
    directory: Path = PROGRESS,
    wait: bool = False,
    on_selected: Optional[Callable[[Optional[list[str]]], None]] = None,
) -> None:
    """In the top-level process: write the plan (start time, jobs), then the selected cells in the background, and
    hand them to ``on_selected`` (None when ``nox --list`` could not say)."""
    path = plan_path(run, directory)
    plan: dict[str, Any] = {"started": time.time(), "jobs": parallel_jobs(argv), "cells": None}
    _write(path, plan)

    def selected() -> None:
        try:
            done = subprocess.run(
                list_command(argv), capture_output=True, text=True, cwd=str(ROOT), timeout=120, check=False
            )
            sessions = json.loads(done.stdout) if done.returncode == 0 else None
        except (OSError, ValueError, subprocess.SubprocessError):
            sessions = None
        cells: Optional[list[str]] = None
        if sessions is not None:  # else no estimate, as before; the run itself is not affected
            names = [str(s.get("session", "")) for s in sessions if isinstance(s, dict)]
            cells = [name[len("matrix(") : -1] for name in names if name.startswith("matrix(")]
            _write(path, {**plan, "cells": cells})
        if on_selected is not None:
            on_selected(cells)

    if wait:
        selected()
    else:
        threading.Thread(target=selected, name="matrix-selection", daemon=True).start()


@dataclass(frozen=True)
class Plan:
    started: float  # time.time() when the run started
    jobs: int
    cells: Optional[list[str]]  # None until known


def read_plan(run: str, directory: Path = PROGRESS) -> Optional[Plan]:
    try:
        data = json.loads(plan_path(run, directory).read_text(encoding="utf-8"))
        cells = data.get("cells")
        return Plan(float(data["started"]), int(data["jobs"]), list(cells) if cells is not None else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Done:
    cell: str
    seconds: float
    ran: bool  # False: its previous results were re-used (seconds), which says nothing about a cell that runs


def record_done(run: str, cell: str, seconds: float, ran: bool, directory: Path = PROGRESS) -> None:
    path = done_path(run, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"cell": cell, "seconds": round(seconds, 3), "ran": ran}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: atomic with O_APPEND
    finally:
        os.close(fd)


def read_done(run: str, directory: Path = PROGRESS) -> list[Done]:
    try:
        text = done_path(run, directory).read_text(encoding="utf-8")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            found.append(Done(str(data["cell"]), float(data["seconds"]), bool(data["ran"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def progress_line(
    done: Sequence[Done], planned: Optional[int], runnable: Optional[Collection[str]], elapsed: float, jobs: int = 1
) -> str:
    """``progress: 3 of 25 cells done in 4.1 min, about 9.5 min left (19 cells to run)``: the time left is the
    cells still to run (``runnable``: selected, not excluded, with an interpreter) times the median time of a cell
    that ran, divided among the parallel jobs. ``planned``/``runnable`` None: the selection is not known."""
    finished = {d.cell for d in done}
    text = f"progress: {len(finished)}{f' of {planned}' if planned else ''} cells done in {elapsed / 60:.1f} min"
    if runnable is None:
        return text
    left = set(runnable) - finished
    durations = [d.seconds for d in done if d.ran]
    if durations and left:
        at_once = max(1, min(jobs, len(left)))
        minutes = len(left) * statistics.median(durations) / at_once / 60
        at_a_time = f", {at_once} at a time" if at_once > 1 else ""
        text += f", about {minutes:.1f} min left ({len(left)} cells to run{at_a_time})"
    elif not left:
        text += ", no cell left to run"
    return text
