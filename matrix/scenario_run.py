"""How one subject's scenario suite is started: its pytest command line and environment, and the run resumed past
scenarios that hang.

:class:`matrix.cell.CellRunner` decides which subjects run and what their results files say; this module only starts
the suite the way every subject's run is started. One pytest process under the stall watchdog is
:mod:`matrix.watchdog`'s; the contract variables in the environment are :mod:`matrix.contract`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from matrix import contract
from matrix.install import plugin_args
from matrix.interpreter import Interpreter
from matrix.paths import ROOT, cache_bytecode
from matrix.scenarios import forkserver
from matrix.watchdog import MAX_RESUMES, PytestRun, StopSignal, run_pytest, stall_detector, watch_events


def pytest_command(
    python: Path,
    modules: Sequence[str],
    xml: Path,
    scenario_timeout: float,
    pytest_args: Sequence[str],
    forkserver: Optional[str] = None,
) -> list[str]:
    """The scenario suite's pytest command line for a subject whose plugins are ``modules``: through the cell's
    fork server when it has one (``python -m pytest`` itself when the server does not answer)."""
    through = ["-m", "matrix.scenarios.forkserver", "--client", forkserver, "--"] if forkserver else ["-m", "pytest"]
    return [
        str(python),
        *through,
        str(ROOT / "matrix" / "scenarios"),
        "-p",
        "matrix.scenarios.recorder",
        "-p",
        "matrix.watch",
        *plugin_args(modules),
        f"--junitxml={xml}",
        f"--timeout={scenario_timeout}",
        "-q",
        # Python's own traceback format: pytest's renders source per frame and took about half of a
        # failing scenario's time (none subject: 12.0 s -> 6.4 s on the same scenarios).
        "--tb=native",
        *pytest_args,
    ]


def pytest_env(
    python: Path,
    cell: Mapping[str, Any],
    listed: list[dict[str, str]],
    modules: Sequence[str],
    out: Path,
    shared: Optional[Mapping[str, Any]] = None,
    forkserver: Optional[str] = None,
) -> dict[str, str]:
    """The run's environment: this process's, the contract (``cell`` names the subject too; ``forkserver`` is the
    cell's fork server, for nested runs) and the cell's environment first on PATH."""
    env = contract.scenario_env(
        os.environ,
        cell=cell,
        databases=listed,
        plugin_args=plugin_args(modules),
        scenario_out=str(out),
        share=shared,
    )
    if forkserver:
        env[contract.FORKSERVER] = forkserver
    return _in_environment(python, env)


def _in_environment(python: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process of the cell's environment ``python``: first on PATH, the repository importable."""
    env.update(
        PATH=os.pathsep.join([str(python.parent), env.get("PATH", "")]),
        VIRTUAL_ENV=str(python.parent.parent),
        PYTHONPATH=str(ROOT),
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    cache_bytecode(env)  # every subject run, fork server and nested run imports pytest and SQLAlchemy
    return env


@contextlib.contextmanager
def fork_server(python: Path, launcher: Interpreter, log: Path, drivers: Sequence[str]) -> Iterator[str]:
    """The cell's fork server (:mod:`matrix.scenarios.forkserver`) while the block runs; yields its socket.

    It imports pytest, SQLAlchemy and ``drivers`` once for every subject's run and their nested runs (each was a
    fresh interpreter's imports: about 0.6 CPU-s, at least six times a cell). Its environment is the runs' without
    the contract variables, none of which a preloaded library reads. A server that fails to start only costs
    time: the runs then start pytest themselves."""
    path = forkserver.socket_path()
    base = {k: v for k, v in os.environ.items() if k not in contract.SCRUBBED}
    serve = [str(python), "-m", "matrix.scenarios.forkserver", "--serve", path, "--drivers", ",".join(drivers)]
    argv, env = launcher.command(serve, _in_environment(python, base))
    with log.open("w", encoding="utf-8") as out:
        server = subprocess.Popen(
            argv,
            env=env,
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        forkserver.wait_listening(path, server)
        yield path
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the server ends when its stdin closes
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def run_resuming(
    command: Sequence[str],
    env: dict[str, str],
    redact: Callable[[str], str],
    *,
    work: Path,
    name: str,
    scenario_timeout: float,
    subject_timeout: float,
    launcher: Interpreter,
    stop: StopSignal,
    say: Callable[[str], None],
) -> tuple[PytestRun, float, int]:
    """Run the suite; when a scenario hangs, kill the run and resume it without what already finished, the
    hung scenario failing at once as a timeout (see :mod:`matrix.watch`). Returns the last run, the total
    time and how many hung scenarios were stepped over.

    ``work``/``name``: the run's log and watch events are ``work/<name>.log`` and ``.watch``; ``say`` tells of
    each resumption (the caller prefixes which cell and subject)."""
    log = work / f"{name}.log"
    events = work / f"{name}.watch"
    limit = 2.0 * scenario_timeout
    plan: dict[str, Any] = {"skip": [], "hung": {}}
    total = 0.0
    for attempt in range(1 + MAX_RESUMES):
        events.unlink(missing_ok=True)
        env[contract.WATCH_OUT] = str(events)
        env[contract.WATCH_PLAN] = json.dumps(plan)
        remaining = subject_timeout - total
        stalled = stall_detector(events, limit)
        argv, environment = launcher.command(command, env)  # in the runtime root, if the cell has one
        ran = run_pytest(argv, environment, log, remaining, redact, stalled, append=attempt > 0, stop=stop)
        total += ran.seconds
        if ran.status != "hung" or total >= subject_timeout:
            break
        started, ended = watch_events(events)
        culprit = next((nodeid for nodeid in reversed(started) if nodeid not in ended), None)
        if culprit is None:
            break
        say(f"{ran.reason}; resuming without it")
        plan["skip"] = sorted({*plan["skip"], *ended})
        plan["hung"][culprit] = (
            f"Timeout (>{scenario_timeout}s) from pytest-timeout did not stop this scenario: "
            f"it hung until the matrix runner killed its pytest run ({ran.reason}); "
            "the rest of the suite was resumed without it"
        )
        with log.open("a", encoding="utf-8") as out:
            out.write(f"\n--- matrix runner: {ran.reason}; resuming without it ---\n")
    return ran, total, len(plan["hung"])
