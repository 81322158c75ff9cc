"""What the matrix run tells the person watching it, and what nox itself decides without running a cell.

* Cells whose interpreter is missing never reach their session function: nox skips them (or fails them with
  ``--error-on-missing-interpreters``) and logs ``Session matrix(py3.14-sa2.1-pa1.5-pt9) skipped: Python
  interpreter 3.14 not found``. A handler on nox's logger turns that line into ``interpreter-missing`` results, in
  whichever process ran the session (the top-level one, or a ``nox -j`` worker).
* At the end of the invocation (``atexit`` in the top-level process only) it prints what this run wrote: cells
  by status, verdict totals, and every database that was not run, with the reason; then it builds the report
  from ``build/results`` and prints its path; last, every plugin regression of the run.
* A plugin regression (``greenlight`` broken on a scenario that works under ``none``, in a support-set cell:
  ``reports.model.regressions``) fails that cell's nox session, so ``nox -s matrix`` exits non-zero; canary and
  legacy cells report theirs without failing.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional, TextIO

from matrix import axes, collect
from matrix.paths import RESULTS

_MISSING = re.compile(
    r"Session matrix\((?P<cell>[^)]+)\) (?:skipped|failed): (?P<reason>Python interpreter \S+ not found)"
)
_last_mark = time.perf_counter()


def mark() -> None:
    """Remember now: the next cell's environment creation is measured from here."""
    global _last_mark
    _last_mark = time.perf_counter()


def since_mark() -> float:
    """Seconds since the noxfile was imported or the previous cell ended: nox's set-up and venv creation."""
    return time.perf_counter() - _last_mark


class MissingInterpreterHandler(logging.Handler):
    def __init__(self, results: Path, axes_path: Path) -> None:
        super().__init__(level=logging.WARNING)
        self.results = results
        self.axes_path = axes_path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            match = _MISSING.search(record.getMessage())
            if match:
                record_missing(self.results, self.axes_path, match.groupdict())
        except Exception:  # a failing log handler must never take nox down with it
            self.handleError(record)


def record_missing(results: Path, axes_path: Path, found: dict[str, str]) -> list[Path]:
    matrix = axes.load(axes_path)
    cell = next((c for c in matrix.cells() if c.id == found["cell"]), None)
    if cell is None:
        return []
    excluded = matrix.excluded_reason(cell)
    run = os.environ.get("GREENLIGHT_RUN_ID", "")
    written = []
    for subject in matrix.subjects:
        path = collect.result_path(results, cell.id, subject.name)
        if _run_of(path) == run:  # a -j worker and the parent both log the skip: write once
            continue
        reason = excluded or matrix.excluded_reason(cell, subject.name)
        status = "excluded" if reason else "interpreter-missing"
        why = f"the cell did not run: {status}"
        result = collect.build_result(
            run_id=run,
            cell=cell.as_dict(),
            subject={"name": subject.name, "requirement": subject.requirement},
            status=status,
            reason=reason or f"{found['reason']} on this machine",
            databases=[
                {"name": db.name, "driver": d, "status": "not-run", "reason": why, "server_version": None}
                for db in matrix.databases
                for d in db.drivers
            ],
        )
        written.append(collect.write_result(result, results))
    return written


def _run_of(path: Path) -> Optional[str]:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def summarize(results: Path, run: str) -> list[str]:
    """Lines describing the results files this run wrote (empty when it wrote none)."""
    documents: list[dict[str, Any]] = []
    for path in sorted(results.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and document.get("run_id") == run:
            documents.append(document)
    if not documents:
        return []
    statuses = Counter(d.get("status") for d in documents)
    verdicts: Counter[str] = Counter()
    for document in documents:
        verdicts.update(document.get("summary") or {})
    cells = {d["cell"]["id"] for d in documents}
    lines = [
        f"matrix run {run}: {len(documents)} results files for {len(cells)} cells in {results}",
        "  cells by status: " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())),
        "  scenario verdicts: " + ", ".join(f"{v} {verdicts.get(v, 0)}" for v in collect.VERDICTS),
    ]
    skipped: dict[tuple[str, str], set[str]] = defaultdict(set)
    for document in documents:
        if document.get("status") != "completed":
            continue
        for db in document.get("databases", []):
            if db.get("status") != "ok":
                skipped[(db["name"], str(db.get("reason")))].add(db["driver"])
    if skipped:
        lines.append("  databases not run (those cells do not count as passing):")
        for (name, reason), drivers in sorted(skipped.items()):
            lines.append(f"    {name} ({', '.join(sorted(drivers))}): {reason}")
    else:
        lines.append("  every database of every completed cell ran")
    missing = sorted({d["cell"]["python"] for d in documents if d.get("status") == "interpreter-missing"})
    if missing:
        lines.append(f"  interpreters missing here: {', '.join(missing)} (their cells are recorded as not run)")
    return lines


def regressions(results: Path, run: str, cell_id: Optional[str] = None) -> list[str]:
    """One line per plugin regression (scenario x cell x database/driver) in this run's support-set results
    (of one cell, when given): the rule and the support set are ``reports.model``'s."""
    from reports.model import Run, load_results
    from reports.model import regressions as find

    loaded = load_results(results)
    mine = Run(tuple(r for r in loaded.results if r.run_id == run and cell_id in (None, r.cell.id)))
    return [
        f"{c.scenario} x {c.cell_id} x {c.database}/{c.driver}: greenlight {c.plugin}, none {c.baseline}"
        for c in find(mine)
    ]


def fail_on_regressions(session: Any, cell: axes.Cell, results: Path = RESULTS) -> None:
    """End a support-set cell's nox session with an error when the plugin regressed in it."""
    found = regressions(results, os.environ.get("GREENLIGHT_RUN_ID", ""), cell.id)
    if found:
        session.error(f"plugin regression in {cell.id} ({len(found)} scenario(s)): " + "; ".join(found[:5]))


def release_containers(stream: TextIO = sys.stderr) -> None:
    """Remove this invocation's containers now, so none is running when nox returns (the reaper would remove them
    anyway, but only once it sees this process gone: seconds after the prompt is back)."""
    from matrix.paths import PROVISION
    from matrix.provision import reaper
    from matrix.provision.state import InvocationState

    invocation = os.environ.get("GREENLIGHT_INVOCATION", "")
    if not invocation or not InvocationState(PROVISION, invocation).read_all():
        return  # this invocation provisioned nothing
    reaped = reaper.reap(invocation, PROVISION)
    removed = f"{len(reaped.removed)} removed ({' '.join(reaped.removed)})" if reaped.removed else "none to remove"
    print(f"containers of this run: {removed}", file=stream)
    if not reaped.complete:
        print("  some of this run's databases or containers could not be removed yet: the reaper retries", file=stream)


def finish(results: Path, run: str, stream: TextIO = sys.stderr) -> None:
    """End of a matrix run: containers removed, the summary, then the report built from everything in ``results``."""
    release_containers(stream)
    lines = summarize(results, run)
    for line in lines:
        print(line, file=stream)
    if not lines:
        return  # this invocation ran no matrix cell (e.g. `nox -s tests`)
    from reports import build

    # --no-docs: a run of a few cells must not rewrite the support table; `nox -s report` does that on purpose.
    build.main(["--results", str(results), "--out", str(results.parent / "report"), "--no-docs"])
    found = regressions(results, run)
    if found:
        print(f"plugin regressions in the support set ({len(found)}; the run fails):", file=stream)
        for line in found:
            print(f"  {line}", file=stream)


def install(axes_path: Path, results: Path = RESULTS) -> None:
    """Called by noxfile.py at import, in every nox process."""
    # nox logs at DEBUG on the root logger; docker-py, urllib3 and testcontainers would bury the progress lines
    # (our provisioner says what it started, where and how fast).
    for noisy in ("docker", "urllib3", "testcontainers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logger = logging.getLogger("nox")
    if not any(isinstance(h, MissingInterpreterHandler) for h in logger.handlers):
        logger.addHandler(MissingInterpreterHandler(results, axes_path))
    if os.environ.get("GREENLIGHT_INVOCATION") == str(os.getpid()):
        atexit.register(finish, results, os.environ.get("GREENLIGHT_RUN_ID", ""))
