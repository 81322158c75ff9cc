"""One cell of the matrix: install, databases, every subject's scenario run (concurrently), results.

:meth:`CellRunner.execute` returns a typed :class:`CellOutcome` (the results files written and each subject's
verdicts); nothing here raises for a broken scenario or an unavailable database: those are results. Ctrl-C or
SIGTERM still leaves a results file for every subject. The stages are modules of their own: :mod:`matrix.install`,
:mod:`matrix.databases`, :mod:`matrix.watchdog`, :mod:`matrix.scenario_run` (a subject's pytest command, its
environment and resuming it past hung scenarios); the contract variables of that environment are
:mod:`matrix.contract`'s.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from matrix import axes, bytecode, collect, lock, scenario_run, share
from matrix.axes import Cell, Matrix, Subject
from matrix.databases import Databases, unavailable_lines
from matrix.install import inspect_env, install_cell, subject_plugins, uv_install
from matrix.interpreter import HOST, Interpreter
from matrix.outcome import CellOutcome, describe, outcome_of, run_id
from matrix.paths import CELLS, PROVISION, RESULTS
from matrix.watchdog import Interrupted, PytestRun, StopSignal, Terminated

_CELLS: dict[int, tuple[Matrix, list[Cell]]] = {}


def _cells(matrix: Matrix) -> list[Cell]:
    """``matrix.cells()`` once per matrix and process: a sequential run asks it for every cell's position."""
    known = _CELLS.get(id(matrix))
    if known is None or known[0] is not matrix:
        known = _CELLS[id(matrix)] = (matrix, matrix.cells())
    return known[1]


@dataclass
class CellRunner:
    matrix: Matrix
    cell: Cell
    python: Path  # the cell environment's interpreter
    say: Callable[[str], None] = print
    results: Path = RESULTS
    work_root: Path = CELLS
    state_dir: Path = PROVISION
    pytest_args: Sequence[str] = ()  # extra arguments for the scenario run (nox posargs), e.g. -k lazy
    run: str = field(default_factory=run_id)
    env_seconds: Optional[float] = None  # the environment's creation, measured by the caller
    interpreter: Optional[Path] = None  # the cell's base interpreter (the cache check needs no environment)
    make_environment: Optional[Callable[[], float]] = None  # creates the environment when the cell must run
    # Where the cell's interpreter runs (the host, or a runtime root): every process started with it goes through
    # via.command. None: the host, and results do not say where the interpreter came from.
    via: Optional[Interpreter] = None
    # Server databases the run's banner already said no cell can have (no engine, no URL): not repeated per cell.
    announced: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.done: set[str] = set()  # subjects with a results file
        self.failures: list[str] = []  # runner errors, which fail the nox session after the cell is recorded
        self.work = self.work_root / self.cell.id
        # This cell's plan only: a `nox -j` worker runs one cell, and the whole matrix's plans cost it 0.07 CPU-s.
        self.plan = axes.plan(self.matrix, self.cell)
        cells = _cells(self.matrix)
        self.position = f"cell {cells.index(self.cell) + 1} of {len(cells)} ({self.cell.id})"
        self.stop = StopSignal()  # set on Ctrl-C/SIGTERM: every running subject kills its pytest
        self._lock = threading.Lock()

    def execute(self) -> CellOutcome:
        """Run every subject of the cell; returns what each subject's results file says.

        Ctrl-C or SIGTERM still leaves a file for every subject (``crashed``, with how it was interrupted) and
        then propagates as KeyboardInterrupt; a runner error in one subject is recorded and the others go on.
        """
        try:
            written = self._execute()
        except (KeyboardInterrupt, Terminated) as exc:
            how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
            self.stop.stop(f"interrupted by {how}")
            for subject in self.matrix.subjects:
                if subject.name not in self.done:
                    self.write(subject, "crashed", f"interrupted by {how} before this subject ran")
            raise KeyboardInterrupt from None
        return CellOutcome(self.cell.id, tuple(outcome_of(path) for path in written), tuple(self.failures))

    def _execute(self) -> list[Path]:
        if self.plan.excluded_reason is not None:
            self.say(f"{self.position}: excluded: {self.plan.excluded_reason}")
            return [self.write(s, "excluded", self.plan.excluded_reason) for s in self.matrix.subjects]
        reused = self.reuse_previous()
        if reused is not None:
            return reused
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        if self.make_environment is not None:
            try:
                self.env_seconds = self.make_environment()
            except Exception as exc:  # uv could not make the environment: a result, like a failed install
                why = f"creating the environment failed: {getattr(exc, 'stderr', None) or exc}"
                self.say(f"{self.position}: {why}")
                return [self.write(s, "install-failed", why) for s in self.matrix.subjects]
        self.say(f"{self.position}: installing into {self.python.parent.parent.name}")
        installed = install_cell(self.python, self.matrix, self.cell, via=self.launcher)
        self.timings: dict[str, float] = {"install": installed.seconds}
        if self.env_seconds is not None:
            self.timings["environment"] = self.env_seconds
        if not installed.ok:
            last = (installed.message.strip().splitlines() or ["(no message)"])[-1]
            self.say(f"{self.position}: install failed: {last}")
            return [self.write(s, "install-failed", installed.message) for s in self.matrix.subjects]
        self.versions, sqlite_version = inspect_env(self.python, self.launcher)
        wrong = self.check_labels(self.versions)
        if wrong:
            return [self.write(s, "install-failed", wrong, self.versions) for s in self.matrix.subjects]
        databases = Databases(self.matrix, self.state_dir, self.work, installed.failed_drivers)
        databases.set_sqlite_version(sqlite_version)
        self.timings["provision"] = databases.seconds
        self.report_databases(databases)
        written: list[Path] = []
        # Every subject shares the cell's environment (its plugin is chosen with -p): comparison plugins are
        # installed first, then the subjects' scenario runs go concurrently (they wait on timers, servers and
        # nested processes much of the time; each has databases of its own).
        ready: list[tuple[Subject, Mapping[str, str]]] = []
        for subject in self.matrix.subjects:
            reason = self.plan.subject_reason(subject.name)
            if reason is not None:
                self.say(f"{self.position} ({subject.name}): excluded: {reason}")
                written.append(self.write(subject, "excluded", reason))
                continue
            versions: Mapping[str, str] = self.versions
            if subject.requirement is not None and not subject.is_local:
                ok, message = self.install_subject(subject)
                if not ok:
                    self.say(f"{self.position} ({subject.name}): install failed")
                    written.append(self.write(subject, "install-failed", message, versions=versions))
                    continue
                versions, _ = inspect_env(self.python, self.launcher)
            ready.append((subject, versions))
        environment, cache = self.python.parent.parent, bytecode.prefix()
        if cache is not None:  # what other cells compiled of the same installed files (matrix/bytecode.py)
            bytecode.seed(environment, cache, bytecode.cache_tag(self.versions["python"]))
        with (
            scenario_run.fork_server(
                self.python, self.launcher, self.work / "forkserver.log", databases.drivers_to_run()
            ) as forkserver,
            ThreadPoolExecutor(max_workers=max(1, len(ready)), thread_name_prefix="subject") as pool,
        ):
            futures = [pool.submit(self.guarded_subject, s, v, databases, forkserver) for s, v in ready]
            try:
                for future in futures:
                    while True:
                        try:
                            written.append(future.result(timeout=0.5))
                            break
                        except StillRunning:
                            continue
            except BaseException as exc:
                how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
                # each running subject kills its pytest and writes a crashed result holding what finished
                self.stop.stop(f"interrupted by {how}")
                for future in futures:
                    future.exception()
                raise
        if cache is not None:
            bytecode.harvest(environment, cache)
        for name in databases.check_servers():
            self.say(f"{self.position}: {name} stopped answering during the run: its results are infra-error")
        self.report_databases(databases, again=True)
        order = {s.name: i for i, s in enumerate(self.matrix.subjects)}
        return sorted(written, key=lambda p: order.get(p.stem.rpartition("__")[2], 0))

    def guarded_subject(
        self, subject: Subject, versions: Mapping[str, str], databases: Databases, forkserver: Optional[str] = None
    ) -> Path:
        try:
            return self.run_subject(subject, versions, databases, forkserver)
        except Interrupted:
            raise
        except Exception as exc:  # a bug or fault in the runner itself: record it, fail the session later
            reason = f"the matrix runner failed: {type(exc).__name__}: {exc}"
            self.failures.append(f"{subject.name}: {reason}")
            return self.write(subject, "crashed", reason, versions, databases)

    def record_missing(self, reason: str) -> CellOutcome:
        """The cell's Python is not on this machine: every subject ``interpreter-missing`` (or excluded)."""
        written = []
        for subject in self.matrix.subjects:
            why = self.plan.subject_reason(subject.name)
            written.append(
                self.write(subject, "excluded", why) if why else self.write(subject, "interpreter-missing", reason)
            )
        return CellOutcome(self.cell.id, tuple(outcome_of(p) for p in written))

    def record_status(self, status: str, reason: str) -> CellOutcome:
        written = [self.write(s, status, reason) for s in self.matrix.subjects]
        return CellOutcome(self.cell.id, tuple(outcome_of(p) for p in written))

    def check_labels(self, versions: Mapping[str, str]) -> Optional[str]:
        """The reason to reject what got installed (it is not what the cell's labels say), or None."""
        labels = self.cell.labels()
        exact = self.matrix.exact(self.cell)
        problems = lock.check_resolved(self.cell.tier, labels, {n: exact.get(n) for n in labels}, versions)
        if not problems:
            return None
        resolved = ", ".join(f"{n} {versions.get(n, '(none)')}" for n in lock.CHECKED if n in versions)
        message = f"resolved {resolved}; rejected: " + "; ".join(problems)
        self.say(f"{self.position}: install failed: {message}")
        return message

    def run_subject(
        self, subject: Subject, versions: Mapping[str, str], databases: Databases, forkserver: Optional[str] = None
    ) -> Path:
        """One subject's scenario run, forked from the cell's server at ``forkserver`` (when it has one)."""
        label = f"{self.position} ({subject.name})"
        modules = subject_plugins(self.python, subject)
        key = f"{self.cell.id}__{subject.name}"
        out = self.work / f"{subject.name}.jsonl"
        out.unlink(missing_ok=True)
        xml = collect.result_path(self.results, self.cell.id, subject.name, ".xml")
        xml.parent.mkdir(parents=True, exist_ok=True)
        redact = collect.make_redactor(databases.secrets)
        timings = dict(self.timings)
        shared = self.share_config(subject, versions)
        with databases.for_run(key) as listed:
            cell = {**self.cell.as_dict(), "subject": subject.name}
            env = scenario_run.pytest_env(self.python, cell, listed, modules, out, shared, forkserver)
            timeout = self.matrix.run.scenario_timeout
            command = scenario_run.pytest_command(self.python, modules, xml, timeout, self.pytest_args, forkserver)
            try:
                ran, seconds, resumed = self.run_resuming(subject, command, env, redact)
            except Interrupted as stop:
                timings["pytest"] = stop.seconds
                self.write(subject, "crashed", stop.reason, versions, databases, out, timings)
                raise
            # Checked after each subject's run, before its results are written: a server that stopped answering
            # makes its database infra-error, and what this run recorded on it is not blamed on the subject.
            for name in databases.check_servers():
                self.say(f"{label}: {name} stopped answering during the run: its results are infra-error")
            share.forget(shared, databases.lost_pairs())  # what ran on a failed server is not for other cells
        timings["pytest"] = seconds
        status = "completed" if ran.status == "completed" else "crashed"
        path = self.write(subject, status, ran.reason, versions, databases, out, timings)
        after = f" (resumed past {resumed} hung scenario(s))" if resumed else ""
        after += f" ({share.reused(json.loads(path.read_text()))} reused from other cells)" if shared else ""
        self.say(f"{label}: {describe(outcome_of(path))} in {seconds:.1f} s{after}")
        return path

    def run_resuming(
        self, subject: Subject, command: Sequence[str], env: dict[str, str], redact: Callable[[str], str]
    ) -> tuple[PytestRun, float, int]:
        """The subject's suite run, resumed past hung scenarios (:func:`matrix.scenario_run.run_resuming`)."""
        return scenario_run.run_resuming(
            command,
            env,
            redact,
            work=self.work,
            name=subject.name,
            scenario_timeout=self.matrix.run.scenario_timeout,
            subject_timeout=self.matrix.run.subject_timeout,
            launcher=self.launcher,
            stop=self.stop,
            say=lambda message: self.say(f"{self.cell.id} {subject.name}: {message}"),
        )

    def install_subject(self, subject: Subject) -> tuple[bool, str]:
        """A comparison plugin goes into the cell's environment without moving any version already chosen."""
        pinned = self.work / "constraints.txt"
        local = {"python", *(s.distribution for s in self.matrix.subjects if s.is_local)}
        pinned.write_text("".join(f"{n}=={v}\n" for n, v in self.versions.items() if n not in local))
        assert subject.requirement is not None
        return uv_install(self.python, [subject.requirement], constraints=pinned, via=self.launcher)

    def share_config(self, subject: Subject, versions: Mapping[str, str]) -> Optional[dict[str, Any]]:
        """The share store's keys for this subject's run (:mod:`matrix.share`); None runs everything here."""
        try:
            return share.config(self.matrix, self.cell.id, subject, versions, self.results, self.pytest_args, self.run)
        except Exception as exc:  # sharing only saves time: when it cannot decide, every scenario runs here
            self.say(f"{self.position} ({subject.name}): not sharing ({type(exc).__name__}: {exc})")
            return None

    def write(
        self,
        subject: Subject,
        status: str,
        reason: Optional[str],
        versions: Optional[Mapping[str, str]] = None,
        databases: Optional[Databases] = None,
        lines: Optional[Path] = None,
        timings: Optional[Mapping[str, float]] = None,
    ) -> Path:
        if databases is not None:
            entries = [t.entry() for t in databases.targets]
            secrets = databases.secrets
        else:
            # Nothing ran: every (database, driver) is not-run, for the cell's reason.
            why = f"the cell did not run: {status}"
            entries = [
                {"name": db.name, "driver": d, "status": "not-run", "reason": why, "server_version": None}
                for db in self.matrix.databases
                for d in db.drivers
            ]
            secrets = set()
        with self._lock:
            self.done.add(subject.name)
        if lines is not None:  # a subject run: pytest's own JUnit XML is not redacted by anything else
            collect.redact_file(collect.result_path(self.results, self.cell.id, subject.name, ".xml"), secrets)
        read = collect.read_lines(lines)
        if databases is not None:
            # Lines recorded against a server that failed mid-run are the fault's, not the subject's: dropped,
            # they become not-run entries carrying the database's infra-error reason.
            lost = databases.lost_pairs()
            read.entries = [e for e in read.entries if (e.get("database"), e.get("driver")) not in lost]
        result = collect.build_result(
            run_id=self.run,
            cell=self.cell.as_dict(),
            subject={"name": subject.name, "requirement": subject.requirement},
            status=status,
            reason=reason,
            versions=versions or {},
            databases=entries,
            lines=read,
            secrets=secrets,
            cache_key=self.cache_key(versions, subject) if versions else None,
            interpreter=self.interpreter_record(versions),
            timings=timings,
            log=lambda message: self.say(f"{self.cell.id} {subject.name}: {message}"),
        )
        return collect.write_result(result, self.results)

    @property
    def launcher(self) -> Interpreter:
        return self.via or HOST

    def interpreter_record(self, versions: Optional[Mapping[str, str]]) -> Optional[dict[str, Optional[str]]]:
        """The results file's ``interpreter``: the exact version that ran and where it came from (None: the
        environment was never built)."""
        if not versions or "python" not in versions:
            return None
        return {"version": versions["python"], "source": self.via.source if self.via else None}

    def cache_key(self, versions: Mapping[str, str], subject: Subject) -> str:
        """The key written into the subject's results file (:func:`matrix.cache.installed_key`)."""
        from matrix import cache

        cell_cache = getattr(self, "cell_cache", None)
        return cache.installed_key(cell_cache, versions, subject, self.matrix, self.pytest_args)

    def reuse_previous(self) -> Optional[list[Path]]:
        """Re-use every subject's previous result when its cache key is unchanged (see :mod:`matrix.cache`)."""
        from matrix import cache

        if cache.fresh_requested():
            self.say(f"{self.position}: --fresh: not looking at previous results")
        try:
            memo = self.results.parent / "cache" / "resolutions"
            self.cell_cache = cache.CellCache(
                self.matrix,
                self.cell,
                self.interpreter or self.python,
                self.pytest_args,
                memo_dir=memo,
                via=self.launcher,
            )
        except Exception as exc:  # the cache only saves time: when it cannot decide, the cell runs
            self.say(f"{self.position}: cache check failed ({type(exc).__name__}: {exc}); running the cell")
            return None
        if cache.fresh_requested():
            return None
        if self.cell_cache.resolution.versions is None:
            self.say(f"{self.position}: versions not resolvable without installing; running the cell")
            return None
        runnable = [s for s in self.matrix.subjects if self.plan.subject_reason(s.name) is None]
        stored = self.cell_cache.reusable(self.results, self.cell.id, runnable)
        if stored is None:
            return None
        seconds = self.cell_cache.seconds
        written = [cache.reuse(stored[s.name], self.results, self.run, seconds) for s in runnable]
        for subject in self.matrix.subjects:
            reason = self.plan.subject_reason(subject.name)
            if reason is not None:
                written.append(self.write(subject, "excluded", reason))
        self.say(f"{self.position}: unchanged (cache check {seconds:.1f} s): re-used {len(runnable)} result(s)")
        return written

    def report_databases(self, databases: Databases, again: bool = False) -> None:
        """Which (database, driver) pairs will not run and why, said before the subjects start (and again at the
        end for what failed during the run); servers the run's banner already named are not repeated."""
        self._said: set[str] = getattr(self, "_said", set())
        for line in unavailable_lines(databases.targets, self.announced, self._said):
            self.say(f"{self.position}: {line}")
        if not again:
            ran = sorted({t.database.name for t in databases.targets if t.status == "ok"})
            where = ", ".join(ran) or "no database"
            self.say(f"{self.position}: running {len(self.matrix.subjects)} subject(s) on {where}")
