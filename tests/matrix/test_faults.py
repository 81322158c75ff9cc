"""Faults and bad input, end to end through `nox -s matrix` (issue 8): real nox, real environments, real pytest
runs, the real local PostgreSQL; no Docker engine (a dead DOCKER_HOST). Container faults are in test_chaos.py.

One small axes file per run (GREENLIGHT_AXES), its own build directory (GREENLIGHT_BUILD) and nox envdir, SQLite
plus the local PostgreSQL, and only a few scenarios (`-- -k`), plus FAULTS below: scenarios that hang, sleep or
query their database, passed to the scenario run as one more test file.
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, quote_plus

import pytest

from tests.matrix.nox_env import clean_environ
from tests.matrix.test_run_nox import nox_command, this_python

ROOT = Path(__file__).resolve().parents[2]
# Every URL-special character, so each encoded form differs from the raw one. The local PostgreSQL trusts
# loopback, so any password connects: the point is where the password travels, not that it is checked.
PASSWORD = "Fault!P@ss:w/rd?#%&+ 7"
PASSWORD_FORMS = {PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD), quote(PASSWORD)}
PASSWORD_FORMS |= {html.escape(form, quote=both) for form in PASSWORD_FORMS for both in (True, False)}
SELECT = "lazy_load_in_test or fault"

# Scenarios that misbehave on request (environment variables pass from nox through the runner to pytest).
FAULTS = '''\
import asyncio
import json
import os
import signal
import time

import pytest

from matrix.scenarios.core import scenario
from matrix.scenarios.support import targets

HANG = os.environ.get("GREENLIGHT_FAULT_HANG") == "1"


def pytest_generate_tests(metafunc):
    if "db" in metafunc.fixturenames:
        found = targets()
        if metafunc.function.__name__ == "test_fault_leak":
            found = [t for t in found if t.kind != "sqlite"]
        elif metafunc.function.__name__ != "test_fault_query":
            found = [t for t in found if t.kind == "sqlite"]
        metafunc.parametrize("db", found, ids=[t.id for t in found])


@scenario("context/fault-hangs", checks="sleeps far past the scenario timeout")
def test_fault_hangs(db):
    if HANG:
        time.sleep(120)


@scenario("context/fault-stuck", checks="blocks the timeout's signal, then sleeps: only the runner can stop it")
def test_fault_stuck(db):
    if HANG:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(120)


def test_fault_slow():
    """Not a scenario (no db): gives a test the time to interrupt the run or kill a server, in the cell and
    subject whose GREENLIGHT_CELL has every item of GREENLIGHT_FAULT_SLOW_WHEN."""
    cell = json.loads(os.environ.get("GREENLIGHT_CELL", "{}"))
    when = json.loads(os.environ.get("GREENLIGHT_FAULT_SLOW_WHEN", '{"never": true}'))
    if all(cell.get(key) == value for key, value in when.items()):
        # sleeps GREENLIGHT_FAULT_SLOW seconds, or less once the file GREENLIGHT_FAULT_RELEASE exists
        release = os.environ.get("GREENLIGHT_FAULT_RELEASE", "")
        deadline = time.monotonic() + float(os.environ.get("GREENLIGHT_FAULT_SLOW", "0"))
        while time.monotonic() < deadline and not (release and os.path.exists(release)):
            time.sleep(0.1)


@scenario("context/fault-leak", checks="fails with its URL and password in the message and the output")
def test_fault_leak(db):
    from urllib.parse import unquote, urlsplit

    if os.environ.get("GREENLIGHT_FAULT_LEAK") == "1":
        password = urlsplit(db.url).password or ""
        print("connecting to", db.url, "with", unquote(password))
        raise RuntimeError(f"could not use {db.url} (password {unquote(password)!r}, quoted {password})")


@scenario("context/fault-query", checks="one query on its database")
def test_fault_query(db):
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def query():
        engine = create_async_engine(db.url)
        try:
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT 1"))).scalar() == 1
        finally:
            await engine.dispose()

    asyncio.run(query())
'''

SQLITE = """
[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]
"""
POSTGRESQL = """
[[databases]]
name = "postgresql-15"
kind = "postgresql"
drivers = ["asyncpg"]
image = "postgres:15"
offline_image = "greenlight-offline/postgresql:15"
"""
MARIADB = """
[[databases]]
name = "mariadb-10.11"
kind = "mysql"
drivers = ["aiomysql"]
image = "mariadb:10.11"
offline_image = "greenlight-offline/mariadb:10.11"
"""
GREENLIGHT = """
[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."
"""
NONE = """
[[subjects]]
name = "none"
"""


def axes_text(pythons: list[str], sqlalchemy: list[str], *parts: str, timeout: int = 30) -> str:
    return (
        f"[axes]\npython = {json.dumps(pythons)}\nsqlalchemy = {json.dumps(sqlalchemy)}\n"
        f'pytest_asyncio = ["1"]\n\n[run]\nscenario_timeout = {timeout}\nsubject_timeout = 300\n' + "".join(parts)
    )


def nox_env(tmp: Path, axes: str, docker: bool = False, **extra: str) -> dict[str, str]:
    (tmp / "axes.toml").write_text(axes)
    (tmp / "extra").mkdir(exist_ok=True)
    (tmp / "extra" / "test_faults_extra.py").write_text(FAULTS)
    env = clean_environ()
    env.update(GREENLIGHT_AXES=str(tmp / "axes.toml"), GREENLIGHT_BUILD=str(tmp / "build"), NO_COLOR="1")
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if not docker:
        env["DOCKER_HOST"] = f"unix://{tmp}/no-docker.sock"  # no engine: nothing may be started
    env.update(extra)
    return env


def nox_args(tmp: Path, *args: str, select: str = SELECT) -> list[str]:
    command = [*nox_command(), "-f", str(ROOT / "noxfile.py"), "--envdir", str(tmp / "envs"), *args]
    return [*command, "--", "-k", select, str(tmp / "extra" / "test_faults_extra.py")]


def run_nox(tmp: Path, env: dict[str, str], *args: str, select: str = SELECT) -> subprocess.CompletedProcess[str]:
    command = nox_args(tmp, *args, select=select)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp, timeout=600, check=False)


def results(tmp: Path) -> dict[str, dict[str, Any]]:
    folder = tmp / "build" / "results"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def scenarios_by(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["id"], s["database"]): s for s in document["scenarios"]}


def start_matrix(tmp: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`nox -s matrix` in the background, in a session of its own (so a test can signal its process group)."""
    out, err = tmp / "nox.out", tmp / "nox.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        return subprocess.Popen(
            nox_args(tmp, "-s", "matrix"),
            env=env,
            cwd=tmp,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )


def build_report(tmp: Path, out: Path) -> subprocess.CompletedProcess[str]:
    # --docs into tmp: the repository's docs/compatibility.md is only for real matrix runs
    command = [sys.executable, "-m", "reports", "--results", str(tmp / "build" / "results"), "--out", str(out)]
    command += ["--docs", str(tmp / "compatibility.md")]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


# --- one run with several faults at once ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One cell that runs (SQLite, the local PostgreSQL under a nasty password, MariaDB with no Docker engine,
    two hanging scenarios) and one cell whose SQLAlchemy version does not exist."""
    tmp = tmp_path_factory.mktemp("faulty")
    url = f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:5432/test"
    axes = axes_text([this_python()], ["2.0", "9.9"], SQLITE, POSTGRESQL, MARIADB, GREENLIGHT, timeout=3)
    env = nox_env(tmp, axes, GREENLIGHT_POSTGRES_URL=url, GREENLIGHT_FAULT_HANG="1", GREENLIGHT_FAULT_LEAK="1")
    return tmp, run_nox(tmp, env, "-s", "matrix")


@pytest.mark.local_servers
def test_unresolvable_version_keeps_the_resolver_message_and_the_other_cell_runs(faulty: Any) -> None:
    tmp, done = faulty
    found = results(tmp)
    python = this_python()
    failed = found[f"py{python}-sa9.9-pa1__greenlight.json"]
    assert failed["status"] == "install-failed"
    assert "No solution found" in failed["reason"]
    assert "sqlalchemy" in failed["reason"].lower()
    assert "9.9" in failed["reason"]
    assert {d["status"] for d in failed["databases"]} == {"not-run"}
    ran = found[f"py{python}-sa2.0-pa1__greenlight.json"]
    assert ran["status"] == "completed", done.stderr[-3000:]
    assert ran["versions"]["sqlalchemy"].startswith("2.0.")
    assert "install failed" in done.stderr


@pytest.mark.local_servers
def test_docker_absent_is_not_run_with_the_reason_and_the_rest_runs(faulty: Any) -> None:
    tmp, done = faulty
    ran = results(tmp)[f"py{this_python()}-sa2.0-pa1__greenlight.json"]
    by_name = {d["name"]: d for d in ran["databases"]}
    assert by_name["mariadb-10.11"]["status"] == "not-run"
    reason = by_name["mariadb-10.11"]["reason"]
    assert "Docker" in reason
    assert reason.endswith("and GREENLIGHT_MYSQL_URL is unset")
    assert by_name["sqlite"]["status"] == by_name["postgresql-15"]["status"] == "ok"
    scenarios = scenarios_by(ran)
    assert scenarios[("context/lazy-load-in-test", "mariadb-10.11")]["outcome"] == "not-run"
    assert scenarios[("context/lazy-load-in-test", "postgresql-15")]["verdict"] == "works"
    assert scenarios[("context/fault-query", "postgresql-15")]["verdict"] == "works"
    assert scenarios[("context/fault-query", "sqlite")]["verdict"] == "works"
    # the end-of-run summary says which database did not run, and why
    assert "    mariadb-10.11 (aiomysql): no Docker engine answers at unix://" in done.stderr
    # nothing was started, so there is no provisioner state naming a container
    state = tmp / "build" / "provision"
    assert not any("container_id" in p.read_text() for p in state.rglob("*") if p.is_file())


@pytest.mark.local_servers
def test_hanging_scenarios_time_out_are_recorded_and_the_cell_goes_on(faulty: Any) -> None:
    tmp, done = faulty
    ran = results(tmp)[f"py{this_python()}-sa2.0-pa1__greenlight.json"]
    assert ran["status"] == "completed"
    scenarios = scenarios_by(ran)
    # stopped by pytest-timeout after 3 s
    assert scenarios[("context/fault-hangs", "sqlite")]["outcome"] == "timeout"
    assert "Timeout (>3" in scenarios[("context/fault-hangs", "sqlite")]["message"]
    # immune to pytest-timeout: the runner killed the run after 2 x 3 s without progress and resumed it
    stuck = scenarios[("context/fault-stuck", "sqlite")]
    assert stuck["outcome"] == "timeout"
    assert "did not stop this scenario" in stuck["message"]
    assert "(resumed past 1 hung scenario(s))" in done.stderr
    # what comes after the hangs still ran, on every database
    assert scenarios[("context/fault-query", "sqlite")]["outcome"] == "passed"
    assert scenarios[("context/fault-query", "postgresql-15")]["outcome"] == "passed"


@pytest.mark.local_servers
def test_credentials_never_reach_results_logs_report_or_output(faulty: Any) -> None:
    tmp, done = faulty
    ran = results(tmp)[f"py{this_python()}-sa2.0-pa1__greenlight.json"]
    # the password was really used (the PostgreSQL scenarios ran), and a scenario put it in its output and error
    assert scenarios_by(ran)[("context/fault-query", "postgresql-15")]["outcome"] == "passed"
    leaked = scenarios_by(ran)[("context/fault-leak", "postgresql-15")]
    assert leaked["outcome"] == "failed"
    assert "(password '***', quoted ***)" in leaked["message"]
    assert "connecting to" in (tmp / "build" / "cells" / ran["cell"]["id"] / "greenlight.log").read_text()
    report = build_report(tmp, tmp / "report")
    assert report.returncode == 0, report.stderr
    leaks = []
    files = [p for p in [*(tmp / "build").rglob("*"), *(tmp / "report").rglob("*")] if p.is_file()]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        leaks += [f"{path}: {form!r}" for form in PASSWORD_FORMS if form.encode() in data]
    for name, text in (("stdout", done.stdout + report.stdout), ("stderr", done.stderr + report.stderr)):
        leaks += [f"{name}: {form!r}" for form in PASSWORD_FORMS if form in text]
    assert leaks == []


@pytest.mark.local_servers
def test_two_runs_sharing_one_server_keep_their_own_databases(tmp_path: Path) -> None:
    """Two invocations (two CI jobs, two people) on one GREENLIGHT_POSTGRES_URL run the same cell: the second
    one, start to end, falls inside the first one's run, and must not drop the first one's database."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    axes = axes_text([this_python()], ["2.0"], SQLITE, POSTGRESQL, GREENLIGHT)
    url = {"GREENLIGHT_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/test"}
    release = tmp_path / "release"
    slow = {"GREENLIGHT_FAULT_SLOW": "240", "GREENLIGHT_FAULT_SLOW_WHEN": '{"subject": "greenlight"}'}
    env = nox_env(first, axes, **url, **slow, GREENLIGHT_FAULT_RELEASE=str(release))
    with (first / "nox.err").open("w") as stderr:
        process = subprocess.Popen(
            nox_args(first, "-s", "matrix"),
            env=env,
            cwd=first,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        watch = first / "build" / "cells" / f"py{this_python()}-sa2.0-pa1" / "greenlight.watch"
        wait_for("the first run's slow test", lambda: "test_fault_slow" in read_or_empty(watch), 300, process)
        inner = run_nox(second, nox_env(second, axes, **url), "-s", "matrix")
        assert inner.returncode == 0, inner.stderr[-3000:]
        release.touch()
        assert process.wait(timeout=300) == 0, (first / "nox.err").read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for run in (first, second):
        [document] = results(run).values()
        query = scenarios_by(document)[("context/fault-query", "postgresql-15")]
        assert (query["outcome"], query["message"]) == ("passed", None)


# --- missing interpreters --------------------------------------------------------------------------------------


def test_missing_interpreter_fails_the_run_under_error_on_missing_interpreters(tmp_path: Path) -> None:
    env = nox_env(tmp_path, axes_text(["3.99"], ["2.0"], SQLITE, GREENLIGHT, NONE))
    done = run_nox(tmp_path, env, "-s", "matrix", "--error-on-missing-interpreters")
    assert done.returncode != 0
    assert "Python interpreter 3.99 not found" in done.stderr
    found = results(tmp_path)
    assert sorted(found) == ["py3.99-sa2.0-pa1__greenlight.json", "py3.99-sa2.0-pa1__none.json"]
    for document in found.values():
        assert document["status"] == "interpreter-missing"
        assert document["reason"] == "Python interpreter 3.99 not found on this machine"
    assert "interpreters missing here: 3.99" in done.stderr
    # without the option the same run is not a failure, and still recorded
    again = run_nox(tmp_path, env, "-s", "matrix")
    assert again.returncode == 0, again.stderr[-2000:]
    assert {d["status"] for d in results(tmp_path).values()} == {"interpreter-missing"}


# --- interrupted runs --------------------------------------------------------------------------------------------


def wait_for(what: str, check: Any, timeout: float, process: Optional[subprocess.Popen[str]] = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if process is not None and process.poll() is not None:
            raise AssertionError(f"nox ended (exit {process.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def interrupt_mid_run(
    tmp: Path, env: dict[str, str], how: signal.Signals, cell: str, *, group: bool
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Start the matrix, wait until subject ``none`` is inside its slow test, then send ``how`` (to nox's
    process group, as a terminal's Ctrl-C does, or to nox alone, as a CI cancel does)."""
    process = start_matrix(tmp, env)
    try:
        watch = tmp / "build" / "cells" / cell / "none.watch"
        started = lambda: "test_fault_slow" in read_or_empty(watch)  # noqa: E731
        wait_for("subject none to start its slow test", started, 300, process)
        if group:
            os.killpg(process.pid, how)
        else:
            process.send_signal(how)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    done = subprocess.CompletedProcess(
        process.args, process.returncode, *(read_or_empty(tmp / name) for name in ("nox.out", "nox.err"))
    )
    return done, process.pid


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_sigterm_keeps_partial_results_the_report_builds_and_a_rerun_resumes(tmp_path: Path) -> None:
    python = this_python()
    done_cell, cut_cell = f"py{python}-sa2.0-pa1", f"py{python}-sa2.1-pa1"
    env = nox_env(
        tmp_path,
        axes_text([python], ["2.0", "2.1"], SQLITE, GREENLIGHT, NONE),
        GREENLIGHT_FAULT_SLOW="120",
        GREENLIGHT_FAULT_SLOW_WHEN=json.dumps({"sqlalchemy": "2.1", "subject": "none"}),
    )
    began = time.monotonic()
    done, _ = interrupt_mid_run(tmp_path, env, signal.SIGTERM, cut_cell, group=False)
    assert time.monotonic() - began < 300  # the 120 s sleep did not have to end
    assert done.returncode != 0
    found = results(tmp_path)
    statuses = {name: d["status"] for name, d in found.items()}
    # A cell's subjects run concurrently: the cut cell's greenlight either finished before the signal or was
    # interrupted with none, holding what finished.
    cut_greenlight = found[f"{cut_cell}__greenlight.json"]
    assert cut_greenlight["status"] == "completed" or cut_greenlight["reason"] == "interrupted by SIGTERM"
    assert statuses == {
        f"{done_cell}__greenlight.json": "completed",
        f"{done_cell}__none.json": "completed",
        f"{cut_cell}__greenlight.json": cut_greenlight["status"],
        f"{cut_cell}__none.json": "crashed",
    }
    interrupted = found[f"{cut_cell}__none.json"]
    assert interrupted["reason"] == "interrupted by SIGTERM"
    # what finished before the signal is kept; what came after it is not invented
    before = ["context/lazy-load-in-test", "context/fault-hangs", "context/fault-stuck"]
    assert [s["id"] for s in interrupted["scenarios"]] == before
    # no process of the run survives it
    assert [p for p in _processes_with(str(tmp_path / "envs")) if p != os.getpid()] == []

    report = build_report(tmp_path, tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "interrupted by SIGTERM" in (tmp_path / "report" / "index.html").read_text()

    # the rerun re-uses the cell that finished and runs the one that was cut
    rerun = run_nox(tmp_path, {**env, "GREENLIGHT_FAULT_SLOW": "0"}, "-s", "matrix")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = results(tmp_path)
    assert {d["status"] for d in again.values()} == {"completed"}
    reused = {name for name, d in again.items() if "reused" in (d.get("timings") or {})}
    assert reused == {f"{done_cell}__greenlight.json", f"{done_cell}__none.json"}
    assert f"({done_cell}): unchanged" in rerun.stderr
    ids = [s["id"] for s in again[f"{cut_cell}__none.json"]["scenarios"]]
    assert ids == [*before, "context/fault-query"]


def _processes_with(text: str) -> list[int]:
    """Pids whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
