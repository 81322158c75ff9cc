"""The scenario suite run in a subprocess pytest, as the matrix runner starts it, and its recorded lines read back.

Shared by the tests that run the suite for real (``test_scenarios.py``, ``test_scenarios_share.py``,
``test_scenario_sabotage.py``); each builds the run's environment (the ``GREENLIGHT_*`` contract) its own way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "matrix" / "scenarios"
BASE = ["-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin", "-p", "pytest_timeout"]
SUBJECT_PLUGINS = {"none": [], "greenlight": ["-p", "pytest_greenlight.hooks"]}


def sqlite(tmp: Path) -> dict[str, str]:
    return {"name": "sqlite", "kind": "sqlite", "driver": "aiosqlite", "url": f"sqlite+aiosqlite:///{tmp}/x.db"}


def base_env() -> dict[str, str]:
    """This process's environment, with only the plugins named by ``-p`` and the repository importable."""
    return {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)}


def run(
    cwd: Path, env: Mapping[str, str], out: Path, plugins: Sequence[str], args: Sequence[str], *, timeout: float
) -> tuple[list[dict[str, Any]], str]:
    """Run the suite in ``cwd`` with the recorder and ``plugins``, its pytest arguments then ``args``; return the
    lines recorded into ``out`` (which ``env`` names as the scenario output) and the tail of pytest's output."""
    command = [sys.executable, "-m", "pytest", str(SUITE), "-p", "matrix.scenarios.recorder", *plugins]
    done = subprocess.run(
        [*command, "--timeout=60", "-q", "--tb=native", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return lines, done.stdout[-5000:] + done.stderr[-3000:]
