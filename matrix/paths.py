"""Where the matrix writes. ``GREENLIGHT_BUILD`` moves all of it (the tests use a temporary directory)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("GREENLIGHT_BUILD") or ROOT / "build")
RESULTS = BUILD / "results"  # <cell>__<subject>.json and .xml: the hand-off to reports/
CELLS = BUILD / "cells"  # per-cell scratch: SQLite files, scenario JSON lines, pytest logs, constraints
PROVISION = BUILD / "provision"  # the provisioner's cross-process state
PYCACHE = BUILD / "pycache"  # compiled bytecode of every cell process (PYTHONPYCACHEPREFIX), outside the checkout
