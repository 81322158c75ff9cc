"""Nested pytest runs without paying the interpreter's start-up each time: ``python -m matrix.scenarios.forkserver``.

A nested scenario needs a pytest process of its own (its own configuration, or garbage of its own), and a fresh
interpreter spends seconds importing pytest, SQLAlchemy and the drivers before the first inner test runs: that was
most of a nested run's cost. This server imports those libraries once, then forks one child per request; each child
is a process of its own (its own loop, garbage and module state: the isolation a nested run is for) that runs
``pytest.main`` in the request's directory and environment.

Protocol (one JSON object per line): the client writes ``{"cwd", "args", "env", "output", "timeout"}`` to stdin, the
server answers ``{"returncode"}`` (-1 when the child outlived ``timeout`` and was killed with its process group).
The server ends when its stdin closes, so it never outlives the scenario run that started it (and it is in that
run's process group, which the matrix runner kills on a hang).

Preloaded: libraries only, never a module pytest loads as a plugin (``-p``): pytest rewrites the asserts of those
and warns when one was imported before it could.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import time

PRELOAD = (
    "pytest",
    "_pytest.pytester",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "greenlet",
    "aiosqlite",
    "asyncpg",
    "psycopg",
    "aiomysql",
    "asyncmy",
)


def _child(request: dict) -> None:  # type: ignore[type-arg]
    """In the forked child: become the request's pytest run, then exit with its status (never return)."""
    code = 3
    try:
        os.setpgid(0, 0)  # its own group: a hang is killed with whatever it started
        with open(request["output"], "wb", buffering=0) as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:0] = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import pytest

        code = int(pytest.main(list(request["args"])))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"forkserver child failed: {type(exc).__name__}: {exc}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.02)


def main() -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    gc.freeze()  # the preloaded libraries: shared with every child, never scanned (nor copied) by its collector
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the protocol stream
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        code = _wait(pid, float(request.get("timeout", 100)))
        reply.write(json.dumps({"returncode": code}) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
