"""What the matrix run tells the person watching it, and the end of the run.

* The run says up front what it will and will not do: cells listed, excluded and without an interpreter here,
  which databases cannot run and why (before any cell has spent time), and where results go. Under ``nox -j`` the
  top-level process says it as soon as it knows the selection (a worker's output shows only when its cell ends);
  otherwise the first cell does.
* Every cell ends with one line per subject (verdicts against the declared expectations: works / broken /
  not-run, see :func:`matrix.cell.describe`) and a progress line: cells done, and an estimate of the time left
  from the cells that ran so far (under ``nox -j``, from the files of :mod:`matrix.selection`). Databases the banner
  said no cell can have are not repeated by each cell.
* A plugin regression (``greenlight`` broken on a scenario that works under ``none``, in a support-set cell:
  :func:`matrix.rules.comparison_kind`) fails that cell's nox session, so ``nox -s matrix`` exits non-zero.
* At the end of the invocation (``atexit`` in the top-level process only): containers removed, cells by status
  (cells, not files), verdict totals per subject, every database that was not run with the reason, the
  regressions; then the run's manifest (``build/run.json``) is written and the report is notified: ``python -m
  reports`` runs as a process of its own (the matrix never imports reports) and builds ``build/report/`` without
  touching the tracked docs table.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TextIO

from matrix import axes, contract, interpreter, rules, runtime, selection
from matrix.paths import BUILD, RESULTS, ROOT

PLUGIN, BASELINE = "greenlight", "none"
_state: dict[str, Any] = {"matrix": None, "started": None, "announced": []}


def _session_cells(session: Any) -> Optional[list[str]]:
    """The matrix cells this nox process runs (None when nox's manifest cannot be read)."""
    manifest = getattr(getattr(session, "_runner", None), "manifest", None)
    try:
        # Read, never iterate: the manifest is the queue nox runs from (iterating it consumes the sessions).
        queued = [*getattr(manifest, "_consumed", []), *getattr(manifest, "_queue", [])]
        names = [runner.friendly_name for runner in queued]
    except Exception:
        return None
    return [name[len("matrix(") : -1] for name in names if name.startswith("matrix(")]


def _runnable(cell_ids: list[str], matrix: axes.Matrix) -> set[str]:
    """The cells among ``cell_ids`` that will really run here (an interpreter, not excluded)."""
    plans = {p.cell.id: p for p in axes.expand(matrix)}
    return {
        c
        for c in cell_ids
        if c in plans and plans[c].excluded_reason is None and interpreter.available(plans[c].cell.python)
    }


def unavailable_servers(matrix: axes.Matrix, environ: Optional[dict[str, str]] = None) -> tuple[list[str], str]:
    """The server databases no cell of this run can have (no Docker engine answers and no URL names a server of
    their kind), and why: said once by the banner, so the cells leave them out of their own not-run lines."""
    servers = [db for db in matrix.databases if db.kind != "sqlite"]
    if not servers:
        return [], ""
    from matrix.provision import engine

    client, reason = engine.connect()
    if client is not None:
        client.close()
        return [], ""
    urls = {
        kind: contract.text(var, environ)
        for kind, var in (("postgresql", contract.POSTGRES_URL), ("mysql", contract.MYSQL_URL))
    }
    return [db.name for db in servers if not urls.get(db.kind)], str(reason)


def banner(matrix: axes.Matrix, environ: Optional[dict[str, str]] = None) -> list[str]:
    """What this run will not do, and why, said before the first cell spends any time."""
    cells = matrix.cells()
    plans = {p.cell: p for p in axes.expand(matrix)}
    excluded = sum(1 for c in cells if plans[c].excluded_reason)
    pythons = sorted({c.python for c in cells}, key=axes._key)
    missing = [v for v in pythons if not interpreter.available(v)]
    in_root = [v for v in pythons if v not in missing and not shutil.which(f"python{v}")]
    lines = [f"matrix: {len(cells)} cells listed, {excluded} excluded by axes.toml or the lock's metadata"]
    if missing:
        lines.append(f"matrix: no interpreter here for Python {', '.join(missing)}: those cells are recorded not run")
    if in_root:
        built = "" if runtime.is_built() else " (built on first use: about a minute, once)"
        lines.append(f"matrix: Python {', '.join(in_root)} not on PATH: run in Debian sid's runtime root{built}")
    servers = [db for db in matrix.databases if db.kind != "sqlite"]
    if servers:
        skipped, reason = unavailable_servers(matrix, environ)
        if skipped:
            lines.append(
                f"matrix: {', '.join(skipped)} will be not-run: {reason}, and no GREENLIGHT_POSTGRES_URL / "
                "GREENLIGHT_MYSQL_URL is set (start an engine with .ci/docker.sh, or point those at servers); "
                "the cells do not say it again"
            )
        else:
            lines.append(f"matrix: databases: sqlite and {', '.join(db.name for db in servers)}")
    lines.append(f"matrix: results go to {RESULTS}; `-- --smoke` runs one cell, `-j auto` runs cells in parallel")
    return lines


def cell_start(session: Any, matrix: axes.Matrix) -> list[str]:
    """Before a cell: the banner, once per invocation (the first cell of any nox process of the run says it).
    Returns the server databases the banner says no cell can have (the cell leaves them out of its own lines)."""
    _state["matrix"] = matrix
    _state["cell_started"] = time.monotonic()
    if _state["started"] is None:
        _state["started"] = time.monotonic()
        listed = _session_cells(session) or []
        # More than one cell in this nox process: a sequential run, whose manifest is the selection. One: a `nox
        # -j` worker (or a one-cell run), which learns the selection from the top-level process's plan file.
        _state["planned"] = len(listed) if len(listed) > 1 else None
        _state["runnable"] = _runnable(listed, matrix) if len(listed) > 1 else None
        _state["announced"] = unavailable_servers(matrix)[0]
    if _take_banner():
        for line in banner(matrix):
            session.log(line)
    return list(_state["announced"])


def _banner_marker() -> Path:
    return BUILD / "progress" / f"{_safe(contract.text(contract.RUN_ID))}.started"


def _take_banner() -> bool:
    """Whether this process is the one of the run to say the banner (the first to ask)."""
    marker = _banner_marker()
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _banner_up_front(matrix: axes.Matrix) -> Callable[[Optional[list[str]]], None]:
    """Under ``nox -j`` a worker's output shows only when its cell ends (a minute or more with the servers), so the
    top-level process says the banner, as soon as it knows matrix cells were selected. It takes the banner before
    any worker starts; when the selection cannot be known it lets go, and the first cell says it as without ``-j``."""
    taken = _take_banner()

    def say(cells: Optional[list[str]]) -> None:
        if not taken:
            return
        if cells is None:
            _banner_marker().unlink(missing_ok=True)
        elif cells:
            print("".join(f"nox > {line}\n" for line in banner(matrix)), end="", flush=True)

    return say


def cell_done(session: Any, outcome: Any) -> None:
    """After a cell: progress and an estimate of the time left; a plugin regression in a support-set cell fails
    its session."""
    now = time.monotonic()
    run = contract.text(contract.RUN_ID)
    ran = any("reused" not in _timings(s.path) and s.status == "completed" for s in outcome.subjects)
    selection.record_done(run, outcome.cell, now - (_state.get("cell_started") or now), ran)
    done = selection.read_done(run)
    planned, runnable = _state.get("planned"), _state.get("runnable")
    elapsed, jobs = now - (_state["started"] or now), 1
    plan = selection.read_plan(run) if planned is None else None
    if plan is not None:  # a `nox -j` worker: the run's start, jobs and selection come from the top-level process
        elapsed, jobs = max(0.0, time.time() - plan.started), plan.jobs
        if plan.cells is not None and len(plan.cells) > 1:
            planned, runnable = len(plan.cells), _runnable(plan.cells, _state["matrix"])
    session.log(selection.progress_line(done, planned, runnable, elapsed, jobs))
    found = cell_regressions(outcome.written)
    if found:
        session.error(f"plugin regression in {outcome.cell} ({len(found)} scenario(s)): " + "; ".join(found[:5]))


def _timings(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("timings") or {})
    except (OSError, ValueError):
        return {}


def _load(paths: Any) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents


def regressions_in(documents: list[dict[str, Any]]) -> list[str]:
    """``<scenario> x <cell> x <database>/<driver>: greenlight broken, none works`` for each plugin regression in
    support-set cells (the rule: :func:`matrix.rules.comparison_kind`)."""
    by_cell: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for document in documents:
        by_cell[document["cell"]["id"]][document["subject"]["name"]] = document
    found = []
    for cell_id, subjects in sorted(by_cell.items()):
        plugin, baseline = subjects.get(PLUGIN), subjects.get(BASELINE)
        if plugin is None or baseline is None or not rules.is_support_tier(plugin["cell"].get("tier", "support")):
            continue
        base = {(s["database"], s["driver"], s["id"]): s["verdict"] for s in baseline.get("scenarios", [])}
        for s in plugin.get("scenarios", []):
            key = (s["database"], s["driver"], s["id"])
            if key in base and rules.comparison_kind(s["verdict"], base[key]) == "regression":
                found.append(
                    f"{s['id']} x {cell_id} x {s['database']}/{s['driver']}: {PLUGIN} broken, {BASELINE} works"
                )
    return found


def cell_regressions(paths: Any) -> list[str]:
    return regressions_in(_load(paths))


def cell_status(documents: list[dict[str, Any]]) -> str:
    """One status per cell (not per results file): the first of these any of its subjects has."""
    statuses = {d.get("status") for d in documents}
    if statuses == {"excluded"}:
        return "excluded"
    for status in ("interpreter-missing", "install-failed", "infra-error", "crashed"):
        if status in statuses:
            return status
    return "completed"


def run_documents(results: Path, run: str) -> list[dict[str, Any]]:
    return [d for d in _load(sorted(results.glob("*.json"))) if d.get("run_id") == run]


def summarize(results: Path, run: str) -> list[str]:
    """Lines describing the results files this run wrote (empty when it wrote none)."""
    documents = run_documents(results, run)
    if not documents:
        return []
    cells: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        cells[document["cell"]["id"]].append(document)
    by_status = Counter(cell_status(docs) for docs in cells.values())
    reused = sum(
        1
        for docs in cells.values()
        if any(d.get("status") != "excluded" for d in docs)
        and all("reused" in (d.get("timings") or {}) for d in docs if d.get("status") != "excluded")
    )
    lines = [
        f"matrix run {run}: {len(cells)} cells ({len(documents)} results files) in {results}",
        "  cells by status: "
        + ", ".join(f"{status} {count}" for status, count in sorted(by_status.items()))
        + (f" ({reused} re-used unchanged)" if reused else ""),
        "  verdicts per subject (against each scenario's declared expectation):",
    ]
    subjects: dict[str, Counter[str]] = defaultdict(Counter)
    for document in documents:
        subjects[document["subject"]["name"]].update(document.get("summary") or {})
    for name, verdicts in sorted(subjects.items(), key=lambda item: (item[0] != PLUGIN, item[0] != BASELINE, item[0])):
        line = ", ".join(f"{v} {verdicts.get(v, 0)}" for v in ("works", "broken", "not-run"))
        lines.append(f"    {name}: {line} (n/a in those cells: {verdicts.get('skipped', 0)})")
    lines.append("    (none is the baseline without any plugin: its broken scenarios are what a plugin is for)")
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


def release_containers(stream: TextIO = sys.stderr) -> None:
    """Remove this invocation's containers now, so none is running when nox returns (the reaper would remove them
    anyway, but only once it sees this process gone: seconds after the prompt is back)."""
    from matrix.paths import PROVISION
    from matrix.provision import reaper
    from matrix.provision.state import InvocationState

    invocation = contract.text(contract.INVOCATION)
    if not invocation or not InvocationState(PROVISION, invocation).read_all():
        return  # this invocation provisioned nothing
    reaped = reaper.reap(invocation, PROVISION)
    removed = f"{len(reaped.removed)} removed ({' '.join(reaped.removed)})" if reaped.removed else "none to remove"
    print(f"containers of this run: {removed}", file=stream)
    if not reaped.complete:
        print("  some of this run's databases or containers could not be removed yet: the reaper retries", file=stream)


def write_manifest(results: Path, run: str, matrix: Optional[axes.Matrix], path: Path) -> dict[str, Any]:
    """``build/run.json``: which cells this run's matrix lists and which it wrote, and whether it is the complete
    default matrix (the only run the tracked docs table may be rewritten from)."""
    documents = run_documents(results, run)
    written = sorted({d["cell"]["id"] for d in documents})
    listed = [c.id for c in matrix.cells()] if matrix is not None else []
    default = (
        matrix is not None
        and not contract.flag(contract.SMOKE)
        and Path(contract.text(contract.AXES, default=str(axes.DEFAULT_PATH))).resolve()
        == Path(axes.DEFAULT_PATH).resolve()
    )
    unfinished = sorted({d["cell"]["id"] for d in documents if d.get("status") == "crashed"})
    # A cell that did not answer in full: no interpreter here, an install or infrastructure failure, or a database
    # that did not run (a SQLite-only run must not rewrite what the table says about PostgreSQL and MySQL).
    partial = sorted(
        {
            d["cell"]["id"]
            for d in documents
            if d.get("status") in ("interpreter-missing", "install-failed", "infra-error")
            or (
                d.get("status") == "completed"
                and any(
                    db.get("status") != "ok" and not str(db.get("reason") or "").startswith("same server as")
                    for db in d.get("databases") or []
                )
            )
        }
    )
    manifest = {
        "run_id": run,
        "default_matrix": bool(default),
        "cells_listed": len(listed),
        "cells_written": written,
        "cells_missing": sorted(set(listed) - set(written)),
        "cells_interrupted": unfinished,
        "cells_partial": partial,
        "complete": bool(default) and set(written) >= set(listed) and not unfinished and not partial,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return manifest


def finish(results: Path, run: str, stream: TextIO = sys.stderr) -> None:
    """End of a matrix run: containers removed, the summary, the regressions, then the report notified."""
    release_containers(stream)
    lines = summarize(results, run)
    for line in lines:
        print(line, file=stream)
    if not lines:
        return  # this invocation ran no matrix cell (e.g. `nox -s tests`)
    found = regressions_in(run_documents(results, run))
    manifest = write_manifest(results, run, _state.get("matrix"), BUILD / "run.json")
    if not manifest["complete"]:
        print(f"  the docs table is left alone: not a complete run ({rules.why_incomplete(manifest)})", file=stream)
    documents = run_documents(results, run)
    completed = [d for d in documents if d.get("status") == "completed"]
    others = {d.get("status") for d in documents} - {"completed", "excluded", "interpreter-missing", "install-failed"}
    unchanged = completed and not others and all("reused" in (d.get("timings") or {}) for d in completed)
    if unchanged and (results.parent / "report").is_dir():
        # Nothing new since the report was built: rebuilding it would take longer than the whole warm run.
        print(
            "report: every result re-used unchanged; build/report/ is left as it is (`nox -s report` rebuilds it)",
            file=stream,
        )
        _print_regressions(found, stream)
        return
    # The report is notified, not imported: it is a stage of its own (`nox -s report` does the same, with docs).
    stream.flush()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "reports",
            "--results",
            str(results),
            "--out",
            str(results.parent / "report"),
            "--no-docs",
        ],
        cwd=str(ROOT),
        check=False,
    )
    _print_regressions(found, stream)


def _print_regressions(found: list[str], stream: TextIO) -> None:
    if found:
        print(f"plugin regressions in the support set ({len(found)}; the run fails):", file=stream)
        for line in found:
            print(f"  {line}", file=stream)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "run"


def install(matrix: axes.Matrix, results: Path = RESULTS) -> None:
    """Called by noxfile.py at import, in every nox process."""
    _state["matrix"] = matrix
    # nox logs at DEBUG on the root logger; docker-py, urllib3 and testcontainers would bury the progress lines
    # (our provisioner says what it started, where and how fast).
    for noisy in ("docker", "urllib3", "testcontainers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if contract.text(contract.INVOCATION) == str(os.getpid()):
        atexit.register(finish, results, contract.text(contract.RUN_ID))
        argv = sys.argv[: sys.argv.index("--")] if "--" in sys.argv else sys.argv
        listing = any(arg in ("-l", "--list", "--json") or arg.startswith("--list") for arg in argv)
        if selection.parallel_jobs(argv) > 1 and not listing:
            # `nox -j` workers know only their own cell: the top-level process says what was selected.
            selection.record_plan(argv, contract.text(contract.RUN_ID), on_selected=_banner_up_front(matrix))
