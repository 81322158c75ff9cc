"""Run one cell of the matrix inside its nox session: install, provision, run the scenarios per subject,
record.

The session has already created the cell's virtual environment (uv backend). From there this module:

1. installs the cell's requirements, every driver, and this checkout's plugin (editable), recording the
resolver's    message when that fails (``install-failed``) and trying drivers one by one when only some of
them fail;
2. records the exact version of every installed package, and checks them against the cell's labels
   (:func:`matrix.lock.check_resolved`): a pre-release outside the canary tier, or a version other than the
   lock's, makes the cell ``install-failed`` with what was resolved and why it is rejected;
3. asks :mod:`matrix.provision` for each database (SQLite is a file in the cell's work directory) and a fresh
   database per (cell, subject);
4. runs ``pytest matrix/scenarios`` once per subject over all available databases, with plugin autoload off
and    every plugin named by ``-p`` (the runner contract in ``reports/SCHEMA.md``), under a per-scenario
timeout and a    per-run timeout; a crash, a hang or Ctrl-C still leaves a results file;
5. writes ``build/results/<cell>__<subject>.json`` (via :mod:`matrix.collect`) next to pytest's JUnit XML.

Nothing here raises for a broken scenario or an unavailable database: those are results, not session failures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from matrix import axes, collect, lock
from matrix.axes import Cell, Database, Matrix, Subject
from matrix.paths import CELLS, PROVISION, RESULTS, ROOT

# pytest's closing line: "2 failed, 11 passed in 13.71s" (what the progress output shows per subject run)
_SUMMARY = re.compile(r"\b(passed|failed|errors?|skipped|xfailed|xpassed|no tests ran)\b.* in [0-9.]+s")
# How often one subject's run may be resumed past a hung scenario before it is recorded as crashed.
MAX_RESUMES = 5
BASE_PLUGINS = ("pytest_asyncio.plugin", "anyio.pytest_plugin", "pytest_timeout")
# Server URLs reach the scenario run only through GREENLIGHT_DATABASES; these must not leak into it.
_SCRUB = ("GREENLIGHT_POSTGRES_URL", "GREENLIGHT_MYSQL_URL", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")

_VERSIONS_SCRIPT = r"""
import importlib.metadata as m, json, platform, re
found = {"python": platform.python_version()}
for dist in m.distributions():
    name = dist.metadata["Name"]
    if name:
        found[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
try:
    import sqlite3
    sqlite = sqlite3.sqlite_version
except ImportError:
    sqlite = None
print(json.dumps({"versions": found, "sqlite": sqlite}))
"""

_ENTRY_POINTS_SCRIPT = r"""
import importlib.metadata as m, json, sys
dist = m.distribution(sys.argv[1])
print(json.dumps(sorted({ep.value.split(":")[0] for ep in dist.entry_points if ep.group == "pytest11"})))
"""


def run_id() -> str:
    """One id per nox invocation: set once by noxfile.py in the top-level process, inherited by ``-j``
    workers."""
    return os.environ.get("GREENLIGHT_RUN_ID") or f"{collect.now()}-{os.getpid():x}"


# --- installation -------------------------------------------------------------------------------------------


@dataclass
class Installed:
    ok: bool
    message: str = ""
    failed_drivers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def uv_install(python: Path, requirements: Sequence[str], *, constraints: Optional[Path] = None) -> tuple[bool, str]:
    """``uv pip install`` into the cell's environment; returns (ok, the resolver's/installer's message)."""
    command = [*_uv(), "pip", "install", "--python", str(python), *requirements]
    if constraints is not None:
        command += ["--constraint", str(constraints)]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def install_cell(python: Path, matrix: Matrix, cell: Cell, root: Path = ROOT) -> Installed:
    """Install the cell; when the drivers break the resolution, keep the cell and drop only those drivers."""
    start = time.perf_counter()
    base = [*matrix.requirements(cell), "-e", str(root)]
    drivers = {driver: axes.DRIVERS[driver][1] for db in matrix.databases for driver in db.drivers}
    ok, _ = uv_install(python, [*base, *sorted(set(drivers.values()))])
    if ok:
        return Installed(True, seconds=time.perf_counter() - start)
    ok, base_message = uv_install(python, base)
    if not ok:
        return Installed(False, base_message, seconds=time.perf_counter() - start)
    # Add the drivers one at a time, always resolved together with the base and the drivers that went in.
    failed: dict[str, str] = {}
    kept: list[str] = []
    for driver, requirement in sorted(drivers.items()):
        driver_ok, driver_message = uv_install(python, [*base, *kept, requirement])
        if driver_ok:
            kept.append(requirement)
        else:
            failed[driver] = driver_message
    return Installed(True, failed_drivers=failed, seconds=time.perf_counter() - start)


def inspect_env(python: Path) -> tuple[dict[str, str], Optional[str]]:
    """Exact versions of every package in the environment (plus ``python``) and the SQLite library version."""
    done = subprocess.run([str(python), "-c", _VERSIONS_SCRIPT], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    return dict(sorted(found["versions"].items())), found["sqlite"]


def subject_plugins(python: Path, subject: Subject) -> list[str]:
    """The modules named by the subject distribution's ``pytest11`` entry points (nothing for ``none``)."""
    if subject.distribution is None:
        return []
    done = subprocess.run(
        [str(python), "-c", _ENTRY_POINTS_SCRIPT, subject.distribution],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(done.stdout))


def plugin_args(modules: Sequence[str]) -> list[str]:
    return [arg for module in (*BASE_PLUGINS, *modules) for arg in ("-p", module)]


# --- databases ----------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One (database, driver) the cell was meant to use, and what happened to it."""

    database: Database
    driver: str
    status: str = "ok"  # ok | not-run | infra-error
    reason: Optional[str] = None
    server_version: Optional[str] = None

    def entry(self) -> dict[str, Any]:
        return {
            "name": self.database.name,
            "driver": self.driver,
            "status": self.status,
            "reason": self.reason,
            "server_version": self.server_version,
        }


class Databases:
    """Servers for one cell: acquired once, with a fresh database per subject run."""

    def __init__(self, matrix: Matrix, state_dir: Path, work: Path, failed_drivers: Mapping[str, str]) -> None:
        self.work = work
        self.servers: dict[str, Any] = {}
        self.secrets: set[str] = set()
        self.targets: list[Target] = []
        self.seconds = 0.0
        start = time.perf_counter()
        provisioner, why_not = _provisioner(state_dir)
        got: dict[str, tuple[str, Optional[str], Optional[str]]] = {}
        for database in matrix.databases:
            if database.kind == "sqlite":
                got[database.name] = ("ok", None, None)  # version: from the cell's own sqlite3 module
            elif provisioner is None:
                got[database.name] = ("not-run", why_not, None)
            else:
                got[database.name] = self._acquire(provisioner, database)
        got.update(self._one_run_per_server(matrix))
        for database in matrix.databases:
            status, reason, version = got[database.name]
            for driver in database.drivers:
                target = Target(database, driver, status, reason, version)
                if status == "ok" and driver in failed_drivers:
                    last = " ".join(failed_drivers[driver].strip().splitlines()[-3:])
                    target.status = "not-run"
                    target.reason = f"driver {driver} could not be installed in this cell: {last}"
                self.targets.append(target)
        self.provisioner = provisioner
        self.seconds = time.perf_counter() - start

    def _acquire(self, provisioner: Any, database: Database) -> tuple[str, Optional[str], Optional[str]]:
        try:
            got = provisioner.acquire(database)
        except Exception as exc:  # a Docker or server fault is an infrastructure error of this database only
            return "infra-error", f"provisioning {database.name} failed: {type(exc).__name__}: {exc}", None
        from matrix.provision import Unavailable

        if isinstance(got, Unavailable):
            return "not-run", str(got.reason), None
        self.servers[database.name] = got
        if got.password:
            self.secrets.add(str(got.password))
        return "ok", None, got.server_version

    def _one_run_per_server(self, matrix: Matrix) -> dict[str, tuple[str, Optional[str], Optional[str]]]:
        """One URL per kind (every PostgreSQL row on one GREENLIGHT_POSTGRES_URL), or one image given to two
        databases (a GREENLIGHT_IMAGE_* override), gives several databases the same server. It runs once, under
        the name that fits it best; running it again would only repeat that run under a wrong label, so the others
        are not-run and say why. The shipped axes.toml gives every row an image of its own version, so with
        containers this never triggers (tests/matrix/test_images.py checks it)."""
        by_address: dict[tuple[str, str, int], list[str]] = {}
        for database in matrix.databases:
            server = self.servers.get(database.name)
            if server is not None:
                by_address.setdefault((server.kind, server.host, server.port), []).append(database.name)
        dropped: dict[str, tuple[str, Optional[str], Optional[str]]] = {}
        for names in by_address.values():
            server = self.servers[names[0]]
            keep = max(names, key=lambda name: _fit(name, server.server_version))
            for name in names:
                if name != keep:
                    del self.servers[name]
                    dropped[name] = ("not-run", f"same server as {keep} ({_server_label(server)}), which ran", None)
        return dropped

    def set_sqlite_version(self, version: Optional[str]) -> None:
        for target in self.targets:
            if target.database.kind == "sqlite":
                target.server_version = version

    @contextlib.contextmanager
    def for_run(self, key: str) -> Iterator[list[dict[str, str]]]:
        """The ``GREENLIGHT_DATABASES`` list for one subject run: fresh databases, dropped afterwards."""
        with contextlib.ExitStack() as stack:
            listed: list[dict[str, str]] = []
            fresh: dict[str, str] = {}
            for target in self.targets:
                if target.status != "ok":
                    continue
                database = target.database
                if database.kind == "sqlite":
                    path = self.work / f"{key}.db"
                    path.unlink(missing_ok=True)
                    url = f"sqlite+aiosqlite:///{path}"
                else:
                    server = self.servers[database.name]
                    if database.name not in fresh:
                        # The invocation is part of the name: two runs sharing one server (two CI jobs, two
                        # people, one GREENLIGHT_POSTGRES_URL) would otherwise drop each other's database.
                        unique = f"{key}__{self.provisioner.invocation}"
                        try:
                            fresh[database.name] = stack.enter_context(self.provisioner.cell_database(server, unique))
                        except Exception as exc:
                            self._infra_error(database, f"creating the cell's database failed: {exc}")
                            continue
                    url = server.url(driver=target.driver, database=fresh[database.name])
                listed.append({"name": database.name, "kind": database.kind, "driver": target.driver, "url": url})
            yield listed

    def _infra_error(self, database: Database, reason: str) -> None:
        for target in self.targets:
            if target.database is database:
                target.status, target.reason = "infra-error", reason

    def check_servers(self) -> list[str]:
        """After a run: a server that no longer answers (its container was killed or died, the engine stopped)
        turns its database into an infrastructure error, so what its scenarios recorded is not blamed on the
        subject. Returns the names of the databases lost."""
        from matrix.provision import admin

        lost: list[str] = []
        for name, server in list(self.servers.items()):
            try:
                admin.server_version(server)
            except Exception as exc:
                database = next(t.database for t in self.targets if t.database.name == name)
                self._infra_error(database, f"{name} stopped answering during the run: {type(exc).__name__}: {exc}")
                del self.servers[name]  # later subject runs of this cell do not try it again
                lost.append(name)
        return lost

    def lost_pairs(self) -> set[tuple[str, str]]:
        """(database, driver) pairs whose server failed mid-run: their scenario lines are not results."""
        return {(t.database.name, t.driver) for t in self.targets if t.status == "infra-error"}


def _fit(name: str, server_version: Optional[str]) -> tuple[int, int]:
    """How well a database name describes the server behind it (higher is better; ties keep axes order):
    first the family (a MariaDB server is best called mariadb-*, a MySQL one not), then the major version."""
    version = (server_version or "").lower()
    family = int(("mariadb" in name) == ("mariadb" in version))
    name_major = re.search(r"-(\d+)", name)
    server_major = re.match(r"(\d+)", version)
    distance = abs(int(name_major.group(1)) - int(server_major.group(1))) if name_major and server_major else 0
    return family, -distance


def _server_label(server: Any) -> str:
    family = "PostgreSQL" if server.kind == "postgresql" else "MySQL/MariaDB"
    where = "from its URL variable" if server.source == "url" else f"image {server.image}"
    return f"{family} {server.server_version or '(version unknown)'}, {where}"


def _provisioner(state_dir: Path) -> tuple[Any, Optional[str]]:
    try:
        from matrix.provision import Provisioner
    except ImportError as exc:
        return None, f"matrix.provision is not available: {exc}"
    try:
        return Provisioner(state_dir=state_dir), None
    except Exception as exc:
        return None, f"the provisioner could not start: {type(exc).__name__}: {exc}"


# --- one pytest run -----------------------------------------------------------------------------------------


@dataclass
class PytestRun:
    status: str  # completed | crashed | hung (killed by the runner)
    reason: Optional[str]
    seconds: float
    last_line: str


class _Terminated(BaseException):
    """SIGTERM during a run: unwind like Ctrl-C so the results file is still written."""


def run_pytest(
    command: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    redact: Callable[[str], str],
    stalled: Optional[Callable[[], Optional[str]]] = None,
    append: bool = False,
) -> PytestRun:
    """Run pytest in its own process group; its output goes (redacted) to ``log_path``.

    The run is killed (status ``hung``) past ``timeout`` seconds, or as soon as ``stalled()`` (asked every
    second) returns a reason.
    """
    start = time.perf_counter()
    last = [""]
    summary = [""]
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        # Its own session: a hang is killed with everything it spawned, and Ctrl-C reaches only us.
        start_new_session=True,
    )

    def pump() -> None:
        assert process.stdout is not None
        with log_path.open("a" if append else "w", encoding="utf-8") as log:
            for line in process.stdout:
                clean = redact(line)
                log.write(clean)
                if clean.strip():
                    last[0] = clean.strip()
                    if _SUMMARY.search(clean):
                        summary[0] = clean.strip(" =\n")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            try:
                code = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.perf_counter() - start
                why = f"hung: killed after {timeout:.0f} s" if elapsed >= timeout else stalled and stalled()
                if why:
                    _kill(process)
                    return PytestRun("hung", why, elapsed, last[0])
    except (KeyboardInterrupt, _Terminated) as exc:
        _kill(process)
        how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        raise _Interrupted(f"interrupted by {how}", time.perf_counter() - start) from None
    finally:
        reader.join(timeout=5)
        # Close the pipe only when the reader is done with it: closing under a blocked reader deadlocks, and
        # a reader still blocked here means something outside the process group holds the pipe open.
        if process.stdout is not None and not reader.is_alive():
            process.stdout.close()
    seconds = time.perf_counter() - start
    last[0] = summary[0] or last[0]
    if code in (0, 1):  # all passed / some failed: both mean the suite ran
        return PytestRun("completed", None, seconds, last[0])
    if code < 0:
        return PytestRun("crashed", f"pytest was killed by signal {-code}", seconds, last[0])
    meaning = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no scenarios collected"}
    return PytestRun("crashed", f"pytest exited {code} ({meaning.get(code, 'unknown')}): {last[0]}", seconds, last[0])


def watch_events(path: Path) -> tuple[list[str], set[str]]:
    """(node ids in the order they started, node ids that ended) from ``matrix.watch``'s file."""
    started: list[str] = []
    ended: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return started, ended
    for line in text.splitlines():
        kind, _, nodeid = line.partition(" ")
        if kind == "start":
            started.append(nodeid)
        elif kind == "end":
            ended.add(nodeid)
    return started, ended


def stall_detector(path: Path, limit: float) -> Callable[[], Optional[str]]:
    """A ``stalled()`` for :func:`run_pytest`: a scenario that started over ``limit`` seconds ago and never ended."""
    seen: dict[str, float] = {}

    def stalled() -> Optional[str]:
        started, ended = watch_events(path)
        running = [nodeid for nodeid in started if nodeid not in ended]
        if not running:
            return None
        since = seen.setdefault(running[-1], time.monotonic())
        if time.monotonic() - since > limit:
            return f"hung: {running[-1]} made no progress for {limit:.0f} s"
        return None

    return stalled


class _Interrupted(Exception):
    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- the cell -----------------------------------------------------------------------------------------------


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
    env_seconds: Optional[float] = None  # nox's environment creation, measured by the caller

    def __post_init__(self) -> None:
        self.done: set[str] = set()  # subjects with a results file
        self.failures: list[str] = []  # runner errors, which fail the nox session after the cell is recorded
        self.work = self.work_root / self.cell.id
        self.plan = next(p for p in axes.expand(self.matrix) if p.cell == self.cell)
        cells = self.matrix.cells()
        self.position = f"cell {cells.index(self.cell) + 1} of {len(cells)} ({self.cell.id})"

    def execute(self) -> list[Path]:
        """Run every subject of the cell; returns the results files written.

        Ctrl-C or SIGTERM still leaves a file for every subject (``crashed``, with how it was interrupted) and
        then propagates as KeyboardInterrupt; a runner error in one subject is recorded and the others go on.
        """
        try:
            return self._execute()
        except (KeyboardInterrupt, _Terminated) as exc:
            how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
            for subject in self.matrix.subjects:
                if subject.name not in self.done:
                    self.write(subject, "crashed", f"interrupted by {how} before this subject ran")
            raise KeyboardInterrupt from None

    def _execute(self) -> list[Path]:
        if self.plan.excluded_reason is not None:
            self.say(f"{self.position}: excluded: {self.plan.excluded_reason}")
            return [self.write(s, "excluded", self.plan.excluded_reason) for s in self.matrix.subjects]
        reused = self.reuse_previous()
        if reused is not None:
            return reused
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.say(f"{self.position}: installing into {self.python.parent.parent.name}")
        installed = install_cell(self.python, self.matrix, self.cell)
        self.timings: dict[str, float] = {"install": installed.seconds}
        if self.env_seconds is not None:
            self.timings["environment"] = self.env_seconds
        if not installed.ok:
            last = (installed.message.strip().splitlines() or ["(no message)"])[-1]
            self.say(f"{self.position}: install failed: {last}")
            return [self.write(s, "install-failed", installed.message) for s in self.matrix.subjects]
        self.versions, sqlite_version = inspect_env(self.python)
        wrong = self.check_labels(self.versions)
        if wrong:
            return [self.write(s, "install-failed", wrong, self.versions) for s in self.matrix.subjects]
        databases = Databases(self.matrix, self.state_dir, self.work, installed.failed_drivers)
        databases.set_sqlite_version(sqlite_version)
        self.timings["provision"] = databases.seconds
        written = []
        ordered = sorted(self.matrix.subjects, key=lambda s: s.requirement is not None and not s.is_local)
        for number, subject in enumerate(ordered, 1):
            try:
                written.append(self.run_subject(subject, databases, f"subject {number} of {len(ordered)}"))
            except Exception as exc:  # a bug or fault in the runner itself: record it, fail the session later
                reason = f"the matrix runner failed: {type(exc).__name__}: {exc}"
                self.failures.append(f"{subject.name}: {reason}")
                written.append(self.write(subject, "crashed", reason, self.versions, databases))
        self.report_databases(databases)
        return written

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

    def run_subject(self, subject: Subject, databases: Databases, progress: str) -> Path:
        label = f"{self.position}, {progress} ({subject.name})"
        reason = self.plan.subject_reason(subject.name)
        if reason is not None:
            self.say(f"{label}: excluded: {reason}")
            return self.write(subject, "excluded", reason)
        versions = self.versions
        if subject.requirement is not None and not subject.is_local:
            ok, message = self.install_subject(subject)
            if not ok:
                self.say(f"{label}: install failed")
                return self.write(subject, "install-failed", message, versions=versions)
            versions, _ = inspect_env(self.python)
        modules = subject_plugins(self.python, subject)
        key = f"{self.cell.id}__{subject.name}"
        out = self.work / f"{subject.name}.jsonl"
        out.unlink(missing_ok=True)
        xml = collect.result_path(self.results, self.cell.id, subject.name, ".xml")
        xml.parent.mkdir(parents=True, exist_ok=True)
        redact = collect.make_redactor(databases.secrets)
        timings = dict(self.timings)
        with databases.for_run(key) as listed:
            self.say(
                f"{label}: {len(listed)} database/driver pairs "
                f"({', '.join(sorted({d['name'] for d in listed})) or 'none'}), "
                f"{sum(t.status != 'ok' for t in databases.targets)} not run (why: at the end of the cell)"
            )
            env = self.pytest_env(subject, listed, modules, out)
            command = [
                str(self.python),
                "-m",
                "pytest",
                str(ROOT / "matrix" / "scenarios"),
                "-p",
                "matrix.scenarios.recorder",
                "-p",
                "matrix.watch",
                *plugin_args(modules),
                f"--junitxml={xml}",
                f"--timeout={self.matrix.run.scenario_timeout}",
                "-q",
                # Python's own traceback format: pytest's renders source per frame and took about half of a
                # failing scenario's time (none subject: 12.0 s -> 6.4 s on the same scenarios).
                "--tb=native",
                *self.pytest_args,
            ]
            try:
                ran, seconds, resumed = self.run_resuming(subject, command, env, redact)
            except _Interrupted as stop:
                timings["pytest"] = stop.seconds
                self.write(subject, "crashed", stop.reason, versions, databases, out, timings)
                raise KeyboardInterrupt from None
            for name in databases.check_servers():
                self.say(f"{label}: {name} stopped answering during the run: its results are infra-error")
        timings["pytest"] = seconds
        status = "completed" if ran.status == "completed" else "crashed"
        path = self.write(subject, status, ran.reason, versions, databases, out, timings)
        after = f" (resumed past {resumed} hung scenario(s))" if resumed else ""
        self.say(f"{label}: {status} in {seconds:.1f} s{after}: {ran.last_line}")
        return path

    def run_resuming(
        self, subject: Subject, command: Sequence[str], env: dict[str, str], redact: Callable[[str], str]
    ) -> tuple[PytestRun, float, int]:
        """Run the suite; when a scenario hangs, kill the run and resume it without what already finished, the
        hung scenario failing at once as a timeout (see :mod:`matrix.watch`). Returns the last run, the total
        time and how many hung scenarios were stepped over."""
        log = self.work / f"{subject.name}.log"
        events = self.work / f"{subject.name}.watch"
        limit = 2.0 * self.matrix.run.scenario_timeout
        plan: dict[str, Any] = {"skip": [], "hung": {}}
        total = 0.0
        for attempt in range(1 + MAX_RESUMES):
            events.unlink(missing_ok=True)
            env["GREENLIGHT_WATCH_OUT"] = str(events)
            env["GREENLIGHT_WATCH_PLAN"] = json.dumps(plan)
            remaining = self.matrix.run.subject_timeout - total
            stalled = stall_detector(events, limit)
            ran = run_pytest(command, env, log, remaining, redact, stalled, append=attempt > 0)
            total += ran.seconds
            if ran.status != "hung" or total >= self.matrix.run.subject_timeout:
                break
            started, ended = watch_events(events)
            culprit = next((nodeid for nodeid in reversed(started) if nodeid not in ended), None)
            if culprit is None:
                break
            self.say(f"{self.cell.id} {subject.name}: {ran.reason}; resuming without it")
            plan["skip"] = sorted({*plan["skip"], *ended})
            plan["hung"][culprit] = (
                f"Timeout (>{self.matrix.run.scenario_timeout}s) from pytest-timeout did not stop this scenario: "
                f"it hung until the matrix runner killed its pytest run ({ran.reason}); "
                "the rest of the suite was resumed without it"
            )
            with log.open("a", encoding="utf-8") as out:
                out.write(f"\n--- matrix runner: {ran.reason}; resuming without it ---\n")
        return ran, total, len(plan["hung"])

    def install_subject(self, subject: Subject) -> tuple[bool, str]:
        """A comparison plugin goes into the cell's environment without moving any version already chosen."""
        pinned = self.work / "constraints.txt"
        local = {"python", *(s.distribution for s in self.matrix.subjects if s.is_local)}
        pinned.write_text("".join(f"{n}=={v}\n" for n, v in self.versions.items() if n not in local))
        assert subject.requirement is not None
        return uv_install(self.python, [subject.requirement], constraints=pinned)

    def pytest_env(
        self, subject: Subject, listed: list[dict[str, str]], modules: Sequence[str], out: Path
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        bin_dir = str(self.python.parent)
        env.update(
            PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
            VIRTUAL_ENV=str(self.python.parent.parent),
            PYTHONPATH=str(ROOT),
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            GREENLIGHT_CELL=json.dumps({**self.cell.as_dict(), "subject": subject.name}),
            GREENLIGHT_DATABASES=json.dumps(listed),
            GREENLIGHT_PLUGIN_ARGS=json.dumps(plugin_args(modules)),
            GREENLIGHT_SCENARIO_OUT=str(out),
        )
        return env

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
            timings=timings,
            log=lambda message: self.say(f"{self.cell.id} {subject.name}: {message}"),
        )
        return collect.write_result(result, self.results)

    def cache_key(self, versions: Mapping[str, str], subject: Subject) -> str:
        """The key :mod:`matrix.cache` checks before installing; when what got installed differs from what it
        resolved (a driver dropped, a release in between), the older content-only key, which never matches it."""
        cell_cache = getattr(self, "cell_cache", None)
        resolved = cell_cache.resolution.versions if cell_cache is not None else None
        key = cell_cache.key(subject) if cell_cache is not None else None
        if key is not None and resolved is not None and all(versions.get(n) == v for n, v in resolved.items()):
            return key
        images = [f"{db.name}={db.image}|{db.offline_image}" for db in self.matrix.databases]
        sources = [ROOT / "matrix" / "scenarios", ROOT / "plugin" / "pytest_greenlight"]
        return collect.cache_key(versions, [s for s in sources if s.exists()], images)

    def reuse_previous(self) -> Optional[list[Path]]:
        """Re-use every subject's previous result when its cache key is unchanged (see :mod:`matrix.cache`)."""
        from matrix import cache

        if cache.fresh_requested():
            self.say(f"{self.position}: --fresh: not looking at previous results")
        try:
            self.cell_cache = cache.CellCache(self.matrix, self.cell, self.python, self.pytest_args)
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

    def report_databases(self, databases: Databases) -> None:
        for target in databases.targets:
            if target.status != "ok":
                where = f"{target.database.name}/{target.driver}"
                self.say(f"{self.position}: {where} {target.status}: {target.reason}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``nox -j`` stopping a worker, CI cancelling) unwinds like Ctrl-C, so results still get written."""

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- entry point from noxfile.py ----------------------------------------------------------------------------


# Matrix options, not pytest's: noxfile.py turns them into environment variables that `nox -j` workers inherit.
RUNNER_FLAGS = ("--fresh", "--smoke")


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


def run_session(session: Any, cell: Cell, env_seconds: Optional[float] = None) -> None:
    """The body of the ``matrix`` nox session for one cell."""
    matrix = axes.load(os.environ.get("GREENLIGHT_AXES", axes.DEFAULT_PATH))
    venv = Path(session.virtualenv.location)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    runner = CellRunner(
        matrix, cell, python, say=session.log, env_seconds=env_seconds, pytest_args=scenario_args(session.posargs)
    )
    with sigterm_as_interrupt():
        runner.execute()
    if runner.failures:
        session.error("; ".join(runner.failures))
    if runner.plan.excluded_reason is not None:
        session.skip(f"excluded: {runner.plan.excluded_reason}")
