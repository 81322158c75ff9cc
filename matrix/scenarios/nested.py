"""Scenarios that need a pytest configuration of their own (a mode, a loop scope, a fixture layout) run a nested
``python -m pytest`` in a temporary directory, with the same explicit plugins as the outer run
(``GREENLIGHT_PLUGIN_ARGS``) and the scenario's database in ``GREENLIGHT_NESTED_DB``.

A nested run is reported like any other scenario: when an inner test fails, :class:`NestedFailure` carries the inner
exception's names, so the recorder records e.g. ``sqlalchemy.exc.MissingGreenlet`` rather than a wrapper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix.scenarios.core import current_axes, version_matches
from matrix.scenarios.support import Target

REPO = Path(__file__).resolve().parents[2]
BASE_PLUGINS = ["-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin", "-p", "pytest_timeout"]
INNER_TIMEOUT = 20  # per inner test; the whole nested run gets WALL_TIMEOUT, below the outer scenario's 60 s
WALL_TIMEOUT = 50


class NestedFailure(Exception):
    """An inner test did not pass; ``recorded_names`` are the inner exception's qualified names and bases."""

    def __init__(self, message: str, names: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.recorded_names = list(names) or [
            "matrix.scenarios.nested.NestedFailure",
            "Exception",
            "BaseException",
        ]
        self.recorded_message = message


@dataclass(frozen=True)
class NestedResult:
    returncode: int
    entries: list[dict[str, Any]]
    output: str

    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["outcome"] == "failed"]

    def passed(self) -> list[str]:
        return [e["nodeid"] for e in self.entries if e["when"] == "call" and e["outcome"] == "passed"]

    def require(self, passed: int) -> None:
        """Raise the first inner failure, or :class:`NestedFailure` unless exactly ``passed`` inner tests passed."""
        for failure in self.failures():
            where = f"{failure['nodeid']} ({failure['when']})"
            raise NestedFailure(f"{where}: {failure['message'] or failure['longrepr'][-1500:]}", failure["names"])
        if len(self.passed()) != passed:
            skipped = [e for e in self.entries if e["outcome"] == "skipped"]
            detail = skipped[0]["longrepr"][-500:] if skipped else self.output[-1500:]
            raise NestedFailure(f"{len(self.passed())} of {passed} inner tests passed: {detail}")


def plugin_args(environ: Mapping[str, str] = os.environ) -> list[str]:
    raw = environ.get("GREENLIGHT_PLUGIN_ARGS")
    return list(json.loads(raw)) if raw else list(BASE_PLUGINS)


def has_loop_scope() -> bool:
    """pytest-asyncio 0.24 added ``loop_scope`` (fixtures and the asyncio marker)."""
    return version_matches(current_axes().pytest_asyncio, ">=0.24")


def ini_text(mode: str = "strict", extra: str = "") -> str:
    lines = ["[pytest]", f"asyncio_mode = {mode}"]
    if has_loop_scope():
        lines.append("asyncio_default_fixture_loop_scope = function")
    return "\n".join(lines) + "\n" + extra


def run_nested(
    directory: Path,
    db: Target,
    files: Mapping[str, str],
    *,
    ini: str | None = None,
    args: Sequence[str] = (),
) -> NestedResult:
    """Write ``files`` (dedented) into ``directory`` and run pytest there in a fresh interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text(ini if ini is not None else ini_text(), encoding="utf-8")
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    probe = directory / "probe.jsonl"
    env = {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "GREENLIGHT_PROBE_OUT": str(probe),
        "GREENLIGHT_NESTED_DB": json.dumps(
            {"name": db.name, "kind": db.kind, "driver": db.driver, "url": db.url}
        ),
    }
    env.pop("GREENLIGHT_SCENARIO_OUT", None)  # the inner run must not write outer results
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(directory),
        "-c",
        str(directory / "pytest.ini"),
        "--rootdir",
        str(directory),
        "-p",
        "no:cacheprovider",
        "-p",
        "matrix.scenarios.probe",
        *plugin_args(),
        f"--timeout={INNER_TIMEOUT}",
        "-q",
        *args,
    ]
    done = subprocess.run(
        command,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=WALL_TIMEOUT,
        check=False,
    )
    entries = []
    if probe.exists():
        entries = [json.loads(line) for line in probe.read_text(encoding="utf-8").splitlines() if line]
    return NestedResult(done.returncode, entries, done.stdout + done.stderr)


def nested_target() -> Target:
    """Inside a nested run: the database the outer scenario runs on."""
    raw = json.loads(os.environ["GREENLIGHT_NESTED_DB"])
    return Target(raw["name"], raw["kind"], raw["driver"], raw["url"])
