"""Per-invocation state shared by every process of one `nox` run: small JSON files, each behind a file lock.

``nox -j`` runs sessions in separate processes, so "start each image once" and "remove everything at the end"
cannot live in memory. Layout: ``<state_dir>/invocation-<id>/<key>.json`` guarded by ``<key>.lock``. Holding a
key's lock while its container starts is what makes every other process wait and then re-use that container.
The files hold passwords (the scenario runs need them), so the directory is private to the user.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Long enough for a container to start (testcontainers itself gives up after about 120 s).
LOCK_TIMEOUT = 600


class InvocationState:
    def __init__(self, state_dir: Path, invocation: str) -> None:
        self.invocation = invocation
        self.directory = state_dir / f"invocation-{_safe(invocation)}"

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[dict[str, Any]]:
        """The record for ``key`` (empty if new) under its lock; changes to it are written back on exit."""
        from filelock import FileLock

        self._ensure_directory()
        path = self.directory / f"{_safe(key)}.json"
        with FileLock(str(path.with_suffix(".lock")), timeout=LOCK_TIMEOUT):
            record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            before = json.dumps(record, sort_keys=True)
            try:
                yield record
            finally:
                # Also on error: a record of what was started must never be lost, or nobody could remove it.
                if json.dumps(record, sort_keys=True) != before:
                    _write_private(path, record)

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every record, without locking (for the reaper and for reports)."""
        records = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.json")):
                with contextlib.suppress(ValueError, OSError):
                    records[path.stem] = json.loads(path.read_text())
        return records

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (readers without the lock never see half a file) with mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
