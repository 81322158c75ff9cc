"""Turn ``nox -l --json -s matrix`` into GitHub Actions job data.

The nightly workflow fans out one job per matrix cell, the CI smoke job runs only the newest cell; both read
the cells from nox itself, so ``matrix/axes.toml`` stays the single definition and no workflow lists versions.

    nox -l --json -s matrix > sessions.json
    python .github/scripts/nox_matrix.py plan   --input sessions.json   # -> matrix=<JSON>, count=<N>
    python .github/scripts/nox_matrix.py newest --input sessions.json   # -> session=<name>, python=<X.Y>

Outputs are ``key=value`` lines appended to ``$GITHUB_OUTPUT`` when that is set (on a runner), else printed.
Standard library only: it runs on the runner's bare Python before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# GitHub refuses a job matrix with more than 256 entries; failing here names the cause instead of a vague
# "matrix too large" from the runner.
MAX_JOBS = 256
# upload-artifact rejects  " : < > | * ? \ /  and CR/LF in names; keep a conservative alphabet instead.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PlanError(Exception):
    """The nox listing cannot be turned into jobs (empty, malformed, a cell without a Python, too many)."""


@dataclass(frozen=True)
class Cell:
    session: str  # the exact name `nox -s` accepts, e.g. "matrix-3.13(sqlalchemy='2.1', pytest_asyncio='1')"
    python: str  # the interpreter actions/setup-python must provide for this session
    params: tuple[tuple[str, str], ...]  # nox's call_spec, sorted by key


def load_sessions(text: str) -> list[Cell]:
    """Parse the JSON nox prints for ``nox -l --json`` (a list of objects with session, python, call_spec)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"`nox -l --json` did not print JSON ({exc}); first bytes: {text[:200]!r}") from None
    if not isinstance(raw, list):
        raise PlanError(f"`nox -l --json` printed a {type(raw).__name__}, expected a list of sessions")
    cells = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("session"), str):
            raise PlanError(f"session entry without a 'session' name: {entry!r}")
        python = entry.get("python")
        if not isinstance(python, str) or not python:
            # A matrix cell is defined by its interpreter; without one setup-python cannot provide it.
            raise PlanError(f"session {entry['session']!r} has no single Python version (python={python!r})")
        call_spec = entry.get("call_spec") or {}
        cells.append(Cell(entry["session"], python, tuple(sorted((k, str(v)) for k, v in call_spec.items()))))
    if not cells:
        raise PlanError("`nox -l --json` listed no sessions: is the matrix session defined and selected (-s)?")
    return cells


def artifact_name(cell: Cell) -> str:
    """A unique, upload-artifact-safe name: ``results-matrix-3.13-sqlalchemy-2.1-pytest_asyncio-1``."""
    return "results-" + _UNSAFE.sub("-", cell.session).strip("-")


def version_key(value: str) -> tuple[int, ...]:
    """Order "3.9" < "3.10" < "3.14" and "0.26" < "1" numerically; non-numeric parts sort first."""
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r"[.\-]", value))


def newest(cells: list[Cell]) -> Cell:
    """The support-tier cell with the newest Python, then the newest value of every other axis (in key order).

    Floor, canary and legacy cells are not what "newest" means for the smoke run (a canary may run pre-releases)."""
    support = [c for c in cells if dict(c.params).get("tier", "support") == "support"] or cells
    return max(support, key=lambda c: (version_key(c.python), *(version_key(v) for k, v in c.params if k != "tier")))


def plan(cells: list[Cell]) -> dict[str, list[dict[str, str]]]:
    """The ``strategy.matrix`` value: one ``include`` entry per cell."""
    if len(cells) > MAX_JOBS:
        raise PlanError(f"{len(cells)} cells exceed GitHub's {MAX_JOBS}-job matrix limit; split the workflow")
    names = [artifact_name(c) for c in cells]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise PlanError(f"sessions map to the same artifact name: {clashes}")
    return {
        "include": [
            {"session": c.session, "python": c.python, "artifact": n} for c, n in zip(cells, names, strict=True)
        ]
    }


def emit(outputs: dict[str, str], github_output: Optional[str]) -> None:
    lines = "".join(f"{key}={value}\n" for key, value in outputs.items())
    if github_output:
        with open(github_output, "a", encoding="utf-8") as handle:
            handle.write(lines)
    sys.stdout.write(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["plan", "newest"])
    parser.add_argument("--input", type=Path, help="file holding `nox -l --json` output (default: stdin)")
    args = parser.parse_args(argv)
    text = args.input.read_text(encoding="utf-8") if args.input else sys.stdin.read()
    try:
        cells = load_sessions(text)
        if args.command == "plan":
            outputs = {"matrix": json.dumps(plan(cells), separators=(",", ":")), "count": str(len(cells))}
        else:
            cell = newest(cells)
            outputs = {"session": cell.session, "python": cell.python}
    except PlanError as exc:
        print(f"nox_matrix: {exc}", file=sys.stderr)
        return 1
    emit(outputs, os.environ.get("GITHUB_OUTPUT"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
