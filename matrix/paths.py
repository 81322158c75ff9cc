"""Where the matrix writes. ``GREENLIGHT_BUILD`` moves all of it (the tests use a temporary directory)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("GREENLIGHT_BUILD") or ROOT / "build")
RESULTS = BUILD / "results"  # <cell>__<subject>.json and .xml: the hand-off to reports/
CELLS = BUILD / "cells"  # per-cell scratch: SQLite files, scenario JSON lines, pytest logs, constraints
PROVISION = BUILD / "provision"  # the provisioner's cross-process state
PYCACHE = BUILD / "pycache"  # compiled bytecode of every process nox starts (PYTHONPYCACHEPREFIX)


def cache_bytecode(environ: MutableMapping[str, str]) -> None:
    """Let the processes started with ``environ`` cache compiled bytecode, under build/pycache, never beside the
    sources. This kind of machine sets PYTHONDONTWRITEBYTECODE: without the cache every process compiled pytest,
    SQLAlchemy and the drivers from source again (py-spy: a quarter of a matrix subject run's CPU; measured:
    about half of a plugin test file's, README "Performance"). A prefix the user chose is kept."""
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
