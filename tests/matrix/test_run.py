"""matrix/run.py pieces with real processes: pytest runs that hang or crash, real uv installs, real databases."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matrix import axes, axes_file, collect, run

PASSWORD = "s3cr:t@/x"
SMALL = """\
[axes]
python = ["3.12"]
sqlalchemy = ["2.1"]
pytest_asyncio = ["1"]

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[databases]]
name = "postgresql-17"
kind = "postgresql"
drivers = ["asyncpg", "psycopg"]
image = "postgres:17"

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."

[[subjects]]
name = "none"
"""


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def start(code: str, tmp_path: Path, timeout: float = 20) -> run.PytestRun:
    redact = collect.make_redactor([PASSWORD])
    return run.run_pytest(python_command(code), dict(os.environ), tmp_path / "out.log", timeout, redact)


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("print('3 passed in 0.1s')", "completed", None),
        ("import sys; print('1 failed, 2 passed in 0.2s'); sys.exit(1)", "completed", None),
        ("import sys; print('INTERNALERROR> boom'); sys.exit(3)", "crashed", "pytest exited 3 (internal error)"),
        ("import sys; sys.exit(5)", "crashed", "pytest exited 5 (no scenarios collected)"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "crashed", "pytest was killed by signal 9"),
    ],
)
def test_exit_codes(tmp_path: Path, code: str, status: str, reason: str | None) -> None:
    ran = start(code, tmp_path)
    assert ran.status == status
    if reason is None:
        assert ran.reason is None
    else:
        assert ran.reason is not None
        assert ran.reason.startswith(reason)


def test_summary_line_is_reported(tmp_path: Path) -> None:
    ran = start("print('==== 2 failed, 11 passed in 13.71s ===='); print('RuntimeWarning: noise')", tmp_path)
    assert ran.last_line == "2 failed, 11 passed in 13.71s"


def test_hang_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    began = time.monotonic()
    ran = start(code, tmp_path, timeout=3)
    assert time.monotonic() - began < 30
    assert ran.status == "hung"
    assert ran.reason == "hung: killed after 3 s"
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = _alive(grandchild)
    if survived:  # do not leave it behind when the check fails
        os.kill(grandchild, signal.SIGKILL)
    assert not survived, "the hung run's own subprocess survived"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped by its parent, which is gone too) counts as dead
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


HANGING_SUITE = """\
import time

import pytest


@pytest.fixture
def stuck():
    yield
    time.sleep(600)  # a teardown that blocks for good (pytest-timeout is not even loaded here)


def test_a():
    pass


def test_b(stuck):
    pass


def test_c():
    pass
"""


def test_a_hung_scenario_is_stepped_over_and_the_run_resumed(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")  # keep the project's configuration out
    (suite / "test_hang.py").write_text(HANGING_SUITE)
    matrix = axes_file.parse(SMALL + "\n[run]\nscenario_timeout = 2\nsubject_timeout = 120\n")
    said: list[str] = []
    runner = run.CellRunner(
        matrix, axes.Cell("3.12", "2.1", "1"), Path(sys.executable), say=said.append, work_root=tmp_path / "cells"
    )
    runner.work.mkdir(parents=True)
    command = [sys.executable, "-m", "pytest", str(suite), "-p", "matrix.watch", "-p", "no:cacheprovider", "-rA"]
    env = {**os.environ, "PYTHONPATH": str(run.ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    began = time.monotonic()
    ran, seconds, resumed = runner.run_resuming(matrix.subject("none"), command, env, str)
    assert time.monotonic() - began < 60
    assert ran.status == "completed"
    assert resumed == 1
    assert seconds > 4  # the stall limit is twice the scenario timeout
    log = (runner.work / "none.log").read_text()
    assert "test_hang.py::test_b made no progress for 4 s; resuming without it" in log
    # the second attempt: test_a already finished (deselected), test_b fails at once as a timeout, test_c runs
    assert re.fullmatch(r"1 passed, 1 deselected, 1 error in [0-9.]+s", ran.last_line)
    assert "Timeout (>2s) from pytest-timeout did not stop this scenario" in log
    assert len(said) == 1
    assert said[0].endswith("test_hang.py::test_b made no progress for 4 s; resuming without it")


def test_log_is_redacted(tmp_path: Path) -> None:
    start(f"print('connecting with {PASSWORD} to db'); print('3 passed in 0.1s')", tmp_path)
    log = (tmp_path / "out.log").read_text()
    assert "connecting with *** to db" in log
    assert PASSWORD not in log


# --- installs through the real resolver ----------------------------------------------------------------------


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    location = tmp_path / "venv"
    subprocess.run([*run._uv(), "venv", "-q", "-p", sys.executable, str(location)], check=True)
    return location / "bin" / "python"


def small_matrix(extra: str = "") -> axes.Matrix:
    text = SMALL.replace(
        '[[databases]]\nname = "postgresql-17"',
        '[[databases]]\nname = "mariadb-11"\nkind = "mysql"\ndrivers = ["aiomysql"]\nimage = "mariadb:11"\n\n'
        '[[databases]]\nname = "postgresql-17"',
    )
    return axes_file.parse(text + extra)


def test_unresolvable_cell_keeps_the_resolver_message(venv: Path) -> None:
    matrix = small_matrix('\n[[pins]]\nsqlalchemy = "2.1"\nrequirements = ["sqlalchemy<2"]\nreason = "clash"\n')
    got = run.install_cell(venv, matrix, axes.Cell("3.12", "2.1", "1"))
    assert not got.ok
    assert "No solution found" in got.message
    assert "sqlalchemy" in got.message


def test_a_broken_driver_drops_only_that_driver(venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # version 0.0.1 of aiosqlite was never released: resolving it fails exactly like a driver with no wheel would
    monkeypatch.setitem(axes.DRIVERS, "aiosqlite", ("sqlite", "aiosqlite==0.0.1"))
    matrix = small_matrix()
    got = run.install_cell(venv, matrix, axes.Cell("3.12", "2.1", "1"))
    assert got.ok
    assert list(got.failed_drivers) == ["aiosqlite"]
    assert "aiosqlite" in got.failed_drivers["aiosqlite"]
    versions, sqlite = run.inspect_env(venv)
    assert versions["sqlalchemy"].startswith("2.1.")
    assert versions["pytest-asyncio"].startswith("1.")
    assert {"asyncpg", "psycopg", "aiomysql", "pytest-greenlight", "pytest-timeout", "anyio"} <= set(versions)
    assert "aiosqlite" not in versions
    assert sqlite
    assert run.subject_plugins(venv, matrix.subject("greenlight")) == ["pytest_greenlight.hooks"]
    assert run.subject_plugins(venv, matrix.subject("none")) == []
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    databases = run.Databases(matrix, tmp_path / "state", tmp_path, got.failed_drivers)
    sqlite_targets = [t for t in databases.targets if t.database.name == "sqlite"]
    assert [t.status for t in sqlite_targets] == ["not-run"]
    assert (sqlite_targets[0].reason or "").startswith("driver aiosqlite could not be installed in this cell")


# --- databases -------------------------------------------------------------------------------------------------


def test_no_engine_and_no_url_is_not_run_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GREENLIGHT_POSTGRES_URL", "GREENLIGHT_MYSQL_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    databases = run.Databases(small_matrix(), tmp_path / "state", tmp_path, {})
    status = {(t.database.name, t.driver): (t.status, t.reason) for t in databases.targets}
    assert status[("sqlite", "aiosqlite")] == ("ok", None)
    reason = status[("postgresql-17", "asyncpg")][1]
    assert status[("postgresql-17", "asyncpg")][0] == "not-run"
    assert reason is not None
    assert "no Docker engine" in reason
    assert "GREENLIGHT_POSTGRES_URL is unset" in reason
    with databases.for_run("py3.12-sa2.1-pa1__none") as listed:
        assert [(d["name"], d["driver"]) for d in listed] == [("sqlite", "aiosqlite")]
        assert listed[0]["url"] == f"sqlite+aiosqlite:///{tmp_path}/py3.12-sa2.1-pa1__none.db"


@pytest.mark.local_servers
def test_local_servers_fresh_database_per_run_and_one_run_per_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENLIGHT_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("GREENLIGHT_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    monkeypatch.setenv("GREENLIGHT_INVOCATION", str(os.getpid()))
    text = SMALL.replace(
        "[[subjects]]",
        '[[databases]]\nname = "postgresql-18"\nkind = "postgresql"\ndrivers = ["asyncpg"]\nimage = "postgres:18"\n\n'
        '[[databases]]\nname = "mariadb-11.8"\nkind = "mysql"\ndrivers = ["aiomysql"]\nimage = "mariadb:11.8"\n\n'
        "[[subjects]]",
        1,
    )
    databases = run.Databases(axes_file.parse(text), tmp_path / "state", tmp_path, {})
    status = {(t.database.name, t.driver): t for t in databases.targets}
    assert status[("postgresql-17", "asyncpg")].status == "ok"
    assert status[("postgresql-17", "asyncpg")].server_version
    assert status[("mariadb-11.8", "aiomysql")].status == "ok"
    # postgresql-18 names the same server (the local PostgreSQL 15) as postgresql-17, which fits it better:
    # it is not run twice under another label
    assert status[("postgresql-18", "asyncpg")].status == "not-run"
    assert (status[("postgresql-18", "asyncpg")].reason or "").startswith("same server as postgresql-17")
    with databases.for_run("py3.12-sa2.1-pa1__greenlight") as listed:
        urls = {(d["name"], d["driver"]): d["url"] for d in listed}
        assert set(urls) == {
            ("sqlite", "aiosqlite"),
            ("postgresql-17", "asyncpg"),
            ("postgresql-17", "psycopg"),
            ("mariadb-11.8", "aiomysql"),
        }
        fresh = urls[("postgresql-17", "psycopg")].rsplit("/", 1)[1]
        assert fresh != "test"
        assert fresh == urls[("postgresql-17", "asyncpg")].rsplit("/", 1)[1]
        assert _pg_databases().count(fresh) == 1
    assert fresh not in _pg_databases()  # dropped afterwards


def _pg_databases() -> list[str]:
    import asyncio

    import asyncpg

    async def names() -> list[str]:
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            return [row[0] for row in await connection.fetch("select datname from pg_database")]
        finally:
            await connection.close()

    return asyncio.run(names())


def test_interrupted_pytest_run_is_killed(tmp_path: Path) -> None:
    """SIGTERM to the runner while pytest runs: the run is killed and reported as interrupted."""
    script = tmp_path / "runner.py"
    script.write_text(
        "import os, sys\n"
        "from pathlib import Path\n"
        "from matrix import run\n"
        "with run.sigterm_as_interrupt():\n"
        "    try:\n"
        "        run.run_pytest([sys.executable, '-c', 'import time; time.sleep(600)'], dict(os.environ),\n"
        f"                       Path({str(tmp_path / 'log')!r}), 600, str)\n"
        "    except run._Interrupted as stop:\n"
        "        print('INTERRUPTED', stop.reason, flush=True)\n"
    )
    out = _terminate_when(script, tmp_path / "log")
    assert out.strip() == "INTERRUPTED interrupted by SIGTERM"


def test_interrupted_cell_still_writes_every_result(tmp_path: Path) -> None:
    """SIGTERM while the cell installs: every subject gets a 'crashed' results file saying so."""
    script = tmp_path / "cell.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from matrix import axes, axes_file, cell, run\n"
        "# A slow install, to be interrupted: patched where the cell runner looks the name up.\n"
        "cell.install_cell = lambda *args, **kwargs: time.sleep(600)\n"
        f"matrix = axes_file.parse({SMALL!r})\n"
        "runner = run.CellRunner(matrix, axes.Cell('3.12', '2.1', '1'), Path(sys.executable), say=print,\n"
        f"    results=Path({str(tmp_path / 'results')!r}), work_root=Path({str(tmp_path / 'cells')!r}), run='r1')\n"
        "with run.sigterm_as_interrupt():\n"
        "    try:\n"
        "        runner.execute()\n"
        "    except KeyboardInterrupt:\n"
        "        print('INTERRUPTED', flush=True)\n"
    )
    out = _terminate_when(script, tmp_path / "cells" / "py3.12-sa2.1-pa1")
    assert out.strip().endswith("INTERRUPTED")
    for subject in ("greenlight", "none"):
        written = json.loads((tmp_path / "results" / f"py3.12-sa2.1-pa1__{subject}.json").read_text())
        assert written["status"] == "crashed"
        assert written["reason"] == "interrupted by SIGTERM before this subject ran"
        assert written["run_id"] == "r1"


def _terminate_when(script: Path, appears: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(run.ROOT)}
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not appears.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return out


@pytest.mark.parametrize(
    ("better", "worse", "server_version"),
    [
        ("mariadb-10.11", "mysql-9.7", "10.11.19-MariaDB-0+deb12u1"),
        ("mysql-9.7", "mariadb-11.8", "9.7.4-2"),
        ("mariadb-11.8", "mariadb-10.11", "11.8.9-MariaDB-0+deb13u1"),
        ("postgresql-17", "postgresql-15", "17.2"),
        ("postgresql-15", "postgresql-18", "14.1"),
    ],
)
def test_a_shared_server_runs_under_the_name_that_fits_it(better: str, worse: str, server_version: str) -> None:
    assert run._fit(better, server_version) > run._fit(worse, server_version)
