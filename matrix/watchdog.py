"""One pytest run under the stall watchdog: its own process group, output redacted into a log, killed past its
time limit or when a scenario stops making progress (see :mod:`matrix.watch`), Ctrl-C/SIGTERM unwinding into a
typed outcome (:class:`PytestRun`, :class:`Interrupted`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matrix.paths import ROOT

# How often one subject's run may be resumed past a hung scenario before it is recorded as crashed.
MAX_RESUMES = 5
# pytest's closing line: "2 failed, 11 passed in 13.71s" (kept as the run's last line for crash reasons)
_SUMMARY = re.compile(r"\b(passed|failed|errors?|skipped|xfailed|xpassed|no tests ran)\b.* in [0-9.]+s")


class StopSignal(threading.Event):
    """Set by a cell interrupted while its subjects run in worker threads; ``reason`` says how."""

    reason = "interrupted"

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()


@dataclass
class PytestRun:
    status: str  # completed | crashed | hung (killed by the runner)
    reason: Optional[str]
    seconds: float
    last_line: str


class Terminated(BaseException):
    """SIGTERM during a run: unwind like Ctrl-C so the results file is still written."""


def run_pytest(
    command: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    redact: Callable[[str], str],
    stalled: Optional[Callable[[], Optional[str]]] = None,
    append: bool = False,
    stop: Optional[StopSignal] = None,
) -> PytestRun:
    """Run pytest in its own process group; its output goes (redacted) to ``log_path``.

    The run is killed (status ``hung``) past ``timeout`` seconds, or as soon as ``stalled()`` (asked every
    second) returns a reason. ``stop`` (set by the cell when it is interrupted while this runs in a worker
    thread) kills it and raises :class:`Interrupted` like Ctrl-C in the main thread does.
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
                if stop is not None and stop.is_set():
                    _kill(process)
                    raise Interrupted(stop.reason, elapsed) from None
                why = f"hung: killed after {timeout:.0f} s" if elapsed >= timeout else stalled and stalled()
                if why:
                    _kill(process)
                    return PytestRun("hung", why, elapsed, last[0])
    except (KeyboardInterrupt, Terminated) as exc:
        _kill(process)
        how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        raise Interrupted(f"interrupted by {how}", time.perf_counter() - start) from None
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


class Interrupted(Exception):
    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- the cell -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``nox -j`` stopping a worker, CI cancelling) unwinds like Ctrl-C, so results still get written."""

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- entry point from noxfile.py ----------------------------------------------------------------------------
