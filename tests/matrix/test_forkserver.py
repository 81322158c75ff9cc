"""matrix/scenarios/forkserver.py with real processes: a run through the server is ``python -m pytest``'s twin, and
whoever waits for it can still stop it (the matrix runner's watchdog kills the client, a nested run times out)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix import install
from matrix.scenarios import forkserver

REPO = Path(__file__).resolve().parents[2]
TESTS = """\
import os, pathlib, time

def test_passes():
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))

def test_fails():
    assert 1 == 2

def test_sleeps():
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("SLEEP", "0")))

def test_dies():
    if os.environ.get("DIE"):
        os.kill(os.getpid(), 9)
"""


@contextlib.contextmanager
def serving(tmp_path: Path, *options: str, **variables: str) -> Iterator[str]:
    path = str(tmp_path / "s")
    env = {**os.environ, "PYTHONPATH": str(REPO), **variables}
    command = [sys.executable, "-m", "matrix.scenarios.forkserver", "--serve", path, *options]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
    assert forkserver.wait_listening(path, process)
    yield path
    assert process.stdin is not None
    process.stdin.close()  # it ends when its stdin closes
    assert process.wait(timeout=10) == 0
    assert not os.path.exists(path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as path:
        yield path


def suite(tmp_path: Path) -> Path:
    directory = tmp_path / "suite"
    directory.mkdir()
    (directory / "test_it.py").write_text(TESTS, encoding="utf-8")
    return directory


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PID_FILE": str(tmp_path / "pid"), **extra}


def client(server: str, directory: Path, environ: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "matrix.scenarios.forkserver", "--client", server, "--", "-p", "no:cacheprovider"]
    return subprocess.Popen(
        [*command, *args], cwd=directory, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def sleeping_run(tmp_path: Path, server: str) -> tuple[subprocess.Popen[str], int]:
    """A client whose run sleeps for a minute, and the run's pid once it is in its test."""
    run = client(server, suite(tmp_path), env(tmp_path, SLEEP="60"), "-q", "-k", "sleeps")
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return run, int(pid_file.read_text())


def test_a_run_through_the_server_exits_and_reports_like_pytest(tmp_path: Path, server: str) -> None:
    directory = suite(tmp_path)
    run = client(server, directory, env(tmp_path), "-q", "-k", "passes or fails")
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 1, output
    assert "1 failed, 1 passed" in output
    assert int((tmp_path / "pid").read_text()) != run.pid  # forked by the server, not the client become pytest
    direct = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "passes or fails"],
        cwd=directory,
        env=env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert direct.returncode == run.returncode


@pytest.mark.parametrize("autoload", ["on", "off"])
def test_a_run_through_the_server_hears_no_already_imported_warning(tmp_path: Path, autoload: str) -> None:
    """The server preloads only what pytest never rewrites. Had it imported a module that a run loads as a plugin
    (with autoload off, as the matrix runs: ``-p`` for pytest-asyncio, anyio's plugin, the greenlight plugin, the
    recorder …; with it on, every installed plugin's distribution), the run would warn "Module already imported so
    cannot be rewritten": here an error."""
    off = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if autoload == "off" else {}
    args = ["-q", "-k", "passes", "-W", "error::pytest.PytestAssertRewriteWarning"]
    plugins = ["matrix.scenarios.recorder", "matrix.scenarios.probe", "matrix.watch"]
    args += install.plugin_args([*plugins, "pytest_greenlight.hooks"]) if off else [f"-p{p}" for p in plugins]
    with serving(tmp_path, **off) as path:
        run = client(path, suite(tmp_path), env(tmp_path, **off), *args)
        output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    assert "1 passed" in output
    assert "cannot be rewritten" not in output


def test_the_server_preloads_the_drivers_it_is_given_and_no_other(tmp_path: Path) -> None:
    """A SQLite-only cell's server need not import the server drivers (0.35 CPU-s a cell)."""
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "test_modules.py").write_text(
        "import sys\n\n"
        "def test_preloaded():\n"
        "    assert {'aiosqlite', 'sqlalchemy.dialects.sqlite.aiosqlite', 'sqlalchemy'} <= set(sys.modules)\n"
        "    assert not {'asyncpg', 'psycopg', 'aiomysql', 'asyncmy'} & set(sys.modules)\n",
        encoding="utf-8",
    )
    with serving(tmp_path, "--drivers", "aiosqlite") as path:
        run = client(path, directory, env(tmp_path), "-q")
        output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output


def test_without_a_server_the_client_runs_pytest_itself(tmp_path: Path) -> None:
    directory = suite(tmp_path)
    run = client(str(tmp_path / "nobody"), directory, env(tmp_path), "-q", "-k", "passes")
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    assert "1 passed" in output
    assert int((tmp_path / "pid").read_text()) == run.pid
    assert "no server answered" in output  # said, so a slow run can be explained


def test_killing_the_client_kills_its_run(tmp_path: Path, server: str) -> None:
    """What the watchdog does to a hung subject: the run must not live on without anyone waiting for it."""
    run, pid = sleeping_run(tmp_path, server)
    assert not gone(pid, 0.5)  # the run is alive while its client is
    run.kill()
    run.communicate()
    assert gone(pid, 5)


def test_a_run_killed_by_a_signal_kills_its_client_with_it(tmp_path: Path, server: str) -> None:
    directory = suite(tmp_path)
    run = client(server, directory, env(tmp_path, DIE="1"), "-q", "-k", "dies")
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL


def test_a_request_past_its_timeout_answers_minus_one_and_kills_the_run(tmp_path: Path, server: str) -> None:
    directory = suite(tmp_path)
    out = tmp_path / "out.txt"
    with open(out, "wb") as handle, open(os.devnull, "rb") as nothing:
        fds = (nothing.fileno(), handle.fileno(), handle.fileno())
        args = ["-p", "no:cacheprovider", "-q", "-k", "sleeps"]
        code = forkserver.request(server, str(directory), args, env(tmp_path, SLEEP="60"), fds, timeout=3)
    assert code == -1
    assert gone(int((tmp_path / "pid").read_text()), 5)


def test_a_run_whose_keeper_dies_ends_with_it_and_is_not_run_again(tmp_path: Path, server: str) -> None:
    run, pid = sleeping_run(tmp_path, server)
    keeper = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])  # the run's parent
    os.kill(keeper, signal.SIGKILL)
    output, _ = run.communicate(timeout=30)
    assert run.returncode == forkserver.LOST, output
    assert "keeper ended without its exit status" in output
    assert gone(pid, 5)
    assert int((tmp_path / "pid").read_text()) == pid  # nothing ran the test again
