"""pytest runs without paying the interpreter's start-up each time: one server per cell forks them all.

A pytest process spends about 0.6 CPU-s importing pytest, SQLAlchemy and the drivers before its first test (each
cell's subject runs and every nested scenario run did it again, six times a SQLite cell at least). This server
imports them once, then forks one run per request: each run is a process of its own (its own loop, garbage and
module state: the isolation a run needs) doing ``pytest.main`` in the request's directory and environment.

``python -m matrix.scenarios.forkserver --serve SOCKET`` is the server: it listens on a Unix socket before it
imports anything (requests wait in the backlog meanwhile), and ends when its stdin closes, so it never outlives
whoever started it. A request is one JSON line ``{"cwd", "args", "env"}`` carrying the client's stdin, stdout and
stderr as file descriptors; the answer is ``{"returncode"}`` (negative: killed by that signal). The server forks a
keeper per request, in a session of its own, which forks the run and waits for it; when the client goes away (a
watchdog killed it, a timeout closed the connection) the keeper kills the run's whole session.

``python -m matrix.scenarios.forkserver --client SOCKET -- ARGS`` is ``python -m pytest ARGS`` through the server
(the matrix runner starts each subject's suite this way, under its watchdog): its exit status is the run's, and
with no server answering it becomes ``python -m pytest ARGS`` itself. :func:`request` is the same from Python
(nested scenario runs).

Preloaded: libraries and pytest's default plugins, never a module of an installed plugin nor one loaded with
``-p``: pytest rewrites the asserts of those and warns when one was imported before it could (see :data:`PRELOAD`).
Nothing that reads the environment at import time differs between the server and its runs (the runner starts both
with the same environment but the contract variables).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

# Imported once by the server, so that every run starts with them loaded: only modules a run imports anyway and
# that pytest never marks for assertion rewriting. pytest warns "Module already imported so cannot be rewritten"
# about the modules it loads as plugins (each ``-p`` module and what is below it: pytest_asyncio.plugin,
# anyio.pytest_plugin, pytest_timeout, the subject's, the recorder, the probe) when they were imported before it
# could rewrite them, which would change what a run reports. The runs load no plugin from entry points
# (PYTEST_DISABLE_PLUGIN_AUTOLOAD), which would mark whole distributions (all of anyio); pytest's own plugins
# (:func:`_pytest_plugins`) are imported before its rewrite hook exists. tests/matrix/test_forkserver.py checks
# that a run made like the matrix's hears no such warning.
PRELOAD = (
    "pytest",
    "_pytest.pytester",
    "pdb",  # pytest's debugging plugin imports it at configure time
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "greenlet",
    "matrix.scenarios.core",
    "matrix.scenarios.support",
)
# Preloaded only when the server's own environment turns plugin autoload off, as the matrix runner's does for the
# server and every run: with autoload on, pytest marks anyio's whole distribution (its entry point) for rewriting.
WITHOUT_AUTOLOAD = ("anyio",)  # the package below anyio.pytest_plugin: a third of a nested run's imports
# Each driver and its dialect (imported when the first engine for it is made), preloaded only for the drivers the
# cell's runs use (``--drivers``): the server drivers cost a SQLite-only cell 0.35 CPU-s for nothing.
DRIVERS = {
    "aiosqlite": ("aiosqlite", "sqlalchemy.dialects.sqlite.aiosqlite"),
    "asyncpg": ("asyncpg", "sqlalchemy.dialects.postgresql.asyncpg"),
    "psycopg": ("psycopg", "sqlalchemy.dialects.postgresql.psycopg"),
    "aiomysql": ("aiomysql", "sqlalchemy.dialects.mysql.aiomysql"),
    "asyncmy": ("asyncmy", "sqlalchemy.dialects.mysql.asyncmy"),
}
_KEEPER_POLL = 0.05  # seconds between a keeper's looks at its run and its client
LOST = 70  # the status reported for a run whose keeper died without answering (EX_SOFTWARE); it is not rerun


# --- client ---------------------------------------------------------------------------------------------------


def request(
    path: str,
    cwd: str,
    args: Sequence[str],
    env: Mapping[str, str],
    fds: Sequence[int],
    timeout: Optional[float] = None,
) -> Optional[int]:
    """Run ``pytest args`` through the server at ``path`` with ``fds`` as its stdin, stdout and stderr.

    Returns its exit status (negative: the signal that killed it), -1 when it outlived ``timeout`` (it is killed
    with everything it started), :data:`LOST` when its keeper died before it could answer, or None when no
    server answers (nothing ran: run it some other way)."""
    payload = (json.dumps({"cwd": cwd, "args": list(args), "env": dict(env)}) + "\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(path)
            sent = socket.send_fds(connection, [payload], list(fds))
            connection.sendall(payload[sent:])
        except OSError:
            return None
        connection.settimeout(timeout)
        reply = b""
        try:
            while not reply.endswith(b"\n"):
                chunk = connection.recv(4096)
                if not chunk:  # the run's keeper died (killed from outside): the run is gone too
                    return LOST
                reply += chunk
        except TimeoutError:
            return -1  # closing the connection makes the keeper kill the run
    return int(json.loads(reply)["returncode"])


def socket_path() -> str:
    """A new server socket's path, in a directory of its own under the temporary directory (short: a socket's path
    has 107 bytes at most; /tmp is also where a runtime root's processes find it). Remove its directory after."""
    return os.path.join(tempfile.mkdtemp(prefix="greenlight-forkserver-"), "socket")


def wait_listening(path: str, server: subprocess.Popen[Any], timeout: float = 10.0) -> bool:
    """Whether the server just started at ``path`` listens (it binds before importing anything): a request sent
    earlier finds no socket and runs without the server."""
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def client(path: str, args: Sequence[str]) -> None:
    """``python -m pytest args`` through the server, as this process (never returns)."""
    sys.stdout.flush()
    code = request(path, os.getcwd(), args, os.environ, (0, 1, 2))
    if code is None:  # said in the run's log: the run is the same, only slower
        sys.stderr.write(f"forkserver: no server answered at {path}; running pytest in this process\n")
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    if code == LOST:
        sys.stderr.write(f"forkserver: the run's keeper ended without its exit status; exiting {LOST}\n")
    if code < 0:  # die the way the run did, so the watchdog reports the signal
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's disposition cannot be set (nor needs to be)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code if code >= 0 else 128 - code)


# --- server ---------------------------------------------------------------------------------------------------


def _pytest_plugins() -> list[str]:
    """pytest's default plugins (``_pytest.terminal``, ``_pytest.junitxml`` …), which every run imports."""
    try:
        from _pytest.config import default_plugins
    except ImportError:  # no pytest, or one without the list: the runs import them as usual
        return []
    return [f"_pytest.{name}" for name in default_plugins]


def serve(path: str, drivers: Optional[Sequence[str]] = None) -> None:
    """Serve runs at ``path`` until stdin closes, with the libraries preloaded (the drivers named, or all)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    chosen = DRIVERS if drivers is None else [d for d in drivers if d in DRIVERS]
    names = [*PRELOAD, *_pytest_plugins(), *(module for driver in chosen for module in DRIVERS[driver])]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        names.extend(WITHOUT_AUTOLOAD)
    for name in names:
        with contextlib.suppress(Exception):  # a library this cell lacks, or one that fails: the run will say so
            importlib.import_module(name)
    gc.freeze()  # the preloaded libraries: shared with every run, never scanned (nor copied) by its collector
    try:
        while True:
            readable, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
            _reap()
            if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
                return  # whoever started the server is done (or gone)
            if listener in readable:
                connection, _ = listener.accept()
                if os.fork() == 0:
                    listener.close()
                    _keep(connection)  # never returns
                connection.close()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    while not data.endswith(b"\n"):
        chunk = connection.recv(1 << 16)
        if not chunk:
            raise EOFError("the client left before its request was complete")
        data += chunk
    return json.loads(data), fds


def _keep(connection: socket.socket) -> None:
    """In the forked keeper: start the request's run, answer its exit status, kill it if the client leaves."""
    code = 3
    try:
        os.setsid()  # the run and all it starts are this session: killed together
        wanted, fds = _receive(connection)
        run = os.fork()
        if run == 0:
            connection.close()
            _run(wanted, fds)  # never returns
        for fd in fds:
            os.close(fd)
        while True:
            done, status = os.waitpid(run, os.WNOHANG)
            if done:
                connection.sendall((json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())
                code = 0
                return
            readable, _, _ = select.select([connection], [], [], _KEEPER_POLL)
            if readable and not connection.recv(1):  # the client is gone: so is its run
                os.killpg(0, signal.SIGKILL)
    except BaseException:
        with contextlib.suppress(Exception):
            os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(code)


def _die_with_keeper() -> None:
    """Linux: this process gets SIGKILL when its parent (the keeper) dies, so no run outlives its keeper."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(wanted: Mapping[str, Any], fds: Sequence[int]) -> None:
    """In the forked run: become ``pytest.main(args)`` in the request's directory and environment."""
    code = 3
    try:
        _die_with_keeper()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(wanted["cwd"])
        os.environ.clear()
        os.environ.update(wanted["env"])
        entries = wanted["env"].get("PYTHONPATH", "").split(os.pathsep)
        sys.path[:0] = [p for p in entries if p and p not in sys.path]
        sys.argv = ["pytest", *wanted["args"]]
        import pytest

        code = int(pytest.main(list(wanted["args"])))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"forkserver run failed: {type(exc).__name__}: {exc}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main(argv: Sequence[str]) -> None:
    if len(argv) == 2 and argv[0] == "--serve":
        serve(argv[1])
    elif len(argv) == 4 and argv[0] == "--serve" and argv[2] == "--drivers":
        serve(argv[1], [d for d in argv[3].split(",") if d])
    elif len(argv) >= 3 and argv[0] == "--client" and argv[2] == "--":
        client(argv[1], argv[3:])
    else:
        sys.exit(
            "usage: python -m matrix.scenarios.forkserver --serve SOCKET [--drivers D1,D2] | --client SOCKET -- ARGS"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
