"""The share store, as a scenario run sees it: claim, write, wait for and read results that other cells reuse.

A scenario that depends on neither pytest-asyncio nor pytest (``Scenario.runner_free``) gives the same result in
every cell that agrees on the rest (exact versions, interpreter, subject, sources, servers). The cell runner hands
this run, in ``GREENLIGHT_SHARE``, one key per set of runner axes left out (:func:`matrix.share.config` computes
them with the cell cache's hasher); a result's place in the store is that key, the scenario id and the
database/driver::

    <dir>/<key>/<scenario id>/<database>-<driver>.json   the result (written atomically, then the claim is let go)
    <dir>/<key>/<scenario id>/<database>-<driver>.lock   the claim: an flock held while the claimer runs it

The first run to take a claim runs the scenario and writes the result; a run that finds it claimed runs its own
scenarios first, then waits for the claim and reuses the result; when the claimer died (the claim is free and there
is no result: the kernel lets go of a dead process's flock), it runs the scenario itself. Standard library only
(``fcntl`` rather than ``filelock``: this runs inside the cell's environment, and a package installed for the
runner's sake would be one more version in every cell's results and keys).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matrix import contract

POLL = 0.2  # seconds between looks at a claim held by another run


def key_dir(root: Path, key: str) -> Path:
    """The directory of one key's results (the runner looks there too, to forget a failed server's)."""
    return root / key.removeprefix("sha256:")[:40]


@dataclass(frozen=True)
class Claim:
    """A held claim: the open lock file (closing it lets go)."""

    path: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass(frozen=True)
class Store:
    root: Path
    cell: str  # this cell's id: what a result written here records as ``ran_in``
    keys: dict[str, str]  # ",".join(sorted(runner axes left out)) -> key
    wait: float  # seconds to wait for another run's claim before running the scenario here too

    def place(self, scenario_id: str, runner_free: tuple[str, ...], target: str) -> Optional[Path]:
        """Where the result of ``scenario_id`` on ``target`` ('<database>-<driver>') lives, or None when it is not
        shared (it depends on every runner axis, or the runner gave no key for that set)."""
        key = self.keys.get(",".join(sorted(runner_free))) if runner_free else None
        if not key:
            return None
        return key_dir(self.root, key) / scenario_id.replace("/", "__") / f"{target}.json"

    @staticmethod
    def read(place: Path) -> Optional[dict[str, Any]]:
        try:
            found = json.loads(place.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and isinstance(found.get("entry"), dict) else None

    @staticmethod
    def claim(place: Path) -> Optional[Claim]:
        """Take the claim if nobody holds it (never waits)."""
        place.parent.mkdir(parents=True, exist_ok=True)
        lock = place.with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return Claim(lock, fd)

    def wait_claim(self, place: Path) -> Optional[Claim]:
        """Wait (at most ``wait`` seconds) until the claim is free, and take it; None when it never was."""
        deadline = time.monotonic() + self.wait
        while True:
            taken = self.claim(place)
            if taken is not None or time.monotonic() >= deadline:
                return taken
            time.sleep(POLL)

    def write(self, place: Path, entry: dict[str, Any], names: list[str]) -> None:
        """Store a result atomically (a reader sees all of it or nothing), while the claim is still held."""
        record = {"ran_in": self.cell, "entry": entry, "names": names}
        place.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=place.parent, prefix=f".{place.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out, ensure_ascii=False)
            os.replace(temp, place)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def from_env(environ: Optional[dict[str, str]] = None) -> Optional[Store]:
    """The store this run was handed (``GREENLIGHT_SHARE``), or None: sharing is off."""
    found = contract.share(environ)
    if not found:
        return None
    return Store(Path(found["dir"]), str(found["cell"]), dict(found["keys"]), float(found["wait"]))
