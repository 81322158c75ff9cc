"""The reaper: a detached process that cleans up after a `nox` invocation once its process is gone.

Ryuk (testcontainers' own reaper) needs an image from a registry, so this does its job: it polls the
invocation's pid and, when that process has died -- normally, by Ctrl-C, SIGTERM or SIGKILL -- removes every
container labelled with the invocation, drops the per-cell databases still recorded on servers named by URL,
and deletes the invocation's state. It runs in its own session, so the Ctrl-C that stops nox does not stop it.
SIGTERM makes it exit without cleaning up: :meth:`Provisioner.release_all` sends it after cleaning up itself,
and a reaper cleaning up late could remove containers the invocation started after that.

    python -m matrix.provision.reaper --invocation ID --owner-pid PID --state-dir DIR [--detach]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.5
RETRY_SECONDS = 600
RETRY_PAUSE = 5


def process_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (to tell a reused pid from the original), or None if it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""  # no /proc here: only os.kill can tell
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a SIGKILLed child its parent has not waited for yet is dead all the same
        return None
    return fields[19]


def is_alive(pid: int, start_time: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = process_start_time(pid)
    if now is None:
        return False
    return not (start_time and now and now != start_time)


def spawn(invocation: str, owner_pid: int, state_dir: Path) -> int:
    """Start a detached reaper for ``invocation`` and return its pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "matrix.provision.reaper",
        "--invocation",
        invocation,
        "--owner-pid",
        str(owner_pid),
        "--owner-start",
        process_start_time(owner_pid) or "",
        "--state-dir",
        str(state_dir.resolve()),
        "--detach",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The first process forks the real reaper and exits at once; its only output is the reaper's pid.
    done = subprocess.run(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise RuntimeError(f"the reaper did not start ({done.returncode}): {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip())


@dataclass(frozen=True)
class Reaped:
    removed: list[str]  # short ids of the removed containers
    complete: bool  # False: the engine or a server could not be reached; the state is kept for a retry


def reap(invocation: str, state_dir: Path, log: Optional[Callable[[str], None]] = None) -> Reaped:
    """Remove what the invocation left: containers, recorded URL-server databases, then its state directory."""
    from matrix.provision import admin, containers, engine
    from matrix.provision.server import Server
    from matrix.provision.state import InvocationState

    say = log or (lambda message: None)
    state = InvocationState(state_dir, invocation)
    records = state.read_all()
    complete = True
    for key, record in records.items():
        for entry in record.get("databases", []):
            server = Server.from_json(entry["server"])
            try:
                admin.drop_database(server, entry["name"])
                say(f"dropped database {entry['name']} on {server.name} ({key})")
            except Exception as exc:
                complete = False
                say(f"could not drop database {entry['name']} on {server.name}: {exc}")
    removed: list[str] = []
    client, reason = engine.connect()
    if client is None:
        # Without recorded containers there is nothing the engine could still hold.
        if any(record.get("server") for record in records.values()):
            complete = False
            say(f"cannot remove containers: {reason}")
    else:
        removed = containers.remove_labelled(client, containers.LABEL_INVOCATION, invocation)
        say(f"removed {len(removed)} container(s): {' '.join(removed) or '-'}")
        client.close()
    if complete:
        state.remove()
    return Reaped(removed, complete)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matrix.provision.reaper")
    parser.add_argument("--invocation", required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--owner-start", default="")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    logfile = args.state_dir / f"reaper-{args.invocation}.log"
    if args.detach:
        _detach(logfile)

    def say(message: str) -> None:
        print(
            f"{time.strftime('%H:%M:%S')} reaper[{os.getpid()}] invocation {args.invocation}: {message}",
            flush=True,
        )

    stop = False

    def on_term(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    say(f"watching pid {args.owner_pid}")
    while not stop and is_alive(args.owner_pid, args.owner_start or None):
        time.sleep(POLL_SECONDS)
    if stop:
        say("asked to stand down")
        return 0
    say(f"pid {args.owner_pid} has ended")
    # An engine or server that is down for a moment (a restarting dockerd) gets a few more chances.
    deadline = time.monotonic() + RETRY_SECONDS
    while not reap(args.invocation, args.state_dir, say).complete:
        if stop or time.monotonic() > deadline:
            say(f"giving up after {RETRY_SECONDS} s; the state is kept in {args.state_dir}")
            return 1
        time.sleep(RETRY_PAUSE)
    return 0


def _detach(logfile: Path) -> None:
    """Fork into a new session with output to ``logfile``; the parent prints the child's pid and exits."""
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    with contextlib.suppress(OSError):
        logfile.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


if __name__ == "__main__":
    sys.exit(main())
