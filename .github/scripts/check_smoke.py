"""Fail the CI smoke job unless the matrix really ran on every database of ``matrix/axes.toml``.

``nox -s matrix`` records a database it could not get as ``not-run`` and still finishes, which is right for a
laptop without Docker but would let a CI smoke run pass without ever touching PostgreSQL or MySQL. This check
reads the results files (``reports/SCHEMA.md``) and demands, for every file of the run:

- ``status`` is ``completed`` (or one of the ``--accept-status`` values, whose files are not checked further);
- every (database, driver) that axes.toml declares is present with ``status: ok``;
- at least one scenario ran on each of them, and no scenario is ``not-run``.

It judges the infrastructure, not the plugin: verdicts (works/broken) are the report's business.

    python .github/scripts/check_smoke.py --results build/results [--axes matrix/axes.toml] [--accept-status S]

The nightly accepts ``install-failed`` and ``crashed``: a cell that cannot be resolved, or whose pytest dies, is a
finding the report shows every night, not a broken run; the CI smoke of the newest cell accepts neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]


def expected_pairs(axes: Path) -> set[tuple[str, str]]:
    """Every (database name, driver) the matrix definition asks for, read through matrix.axes_file (one source)."""
    sys.path.insert(0, str(ROOT))
    from matrix.axes_file import load

    return {(db.name, driver) for db in load(axes).databases for driver in db.drivers}


def problems_in(
    path: Path, data: Any, expected: set[tuple[str, str]], accepted: frozenset[str] = frozenset()
) -> list[str]:
    name = path.name
    if not isinstance(data, dict):
        return [f"{name}: not a results object"]
    if data.get("status") == "excluded" or data.get("status") in accepted:
        return []  # an impossible combination has nothing to run; the report shows its reason
    found: list[str] = []
    if data.get("status") != "completed":
        found.append(f"{name}: status {data.get('status')!r}, reason {str(data.get('reason'))[:300]!r}")
    seen = {(db.get("name"), db.get("driver")): db for db in data.get("databases") or [] if isinstance(db, dict)}
    ran: dict[tuple[str, str], int] = {}
    for scenario in data.get("scenarios") or []:
        key = (scenario.get("database"), scenario.get("driver"))
        if scenario.get("outcome") == "not-run":
            found.append(f"{name}: scenario {scenario.get('id')} on {key[0]}/{key[1]} not run")
        else:
            ran[key] = ran.get(key, 0) + 1
    for pair in sorted(expected):
        db = seen.get(pair)
        if db is None:
            found.append(f"{name}: {pair[0]}/{pair[1]} missing from databases[]")
        elif db.get("status") != "ok":
            found.append(f"{name}: {pair[0]}/{pair[1]} {db.get('status')}: {str(db.get('reason'))[:300]}")
        elif not ran.get(pair):
            found.append(f"{name}: {pair[0]}/{pair[1]} is ok but no scenario ran on it")
    return found


def check(results: Path, expected: set[tuple[str, str]], accepted: frozenset[str] = frozenset()) -> list[str]:
    files = sorted(results.glob("*.json"))
    if not files:
        return [f"no results files in {results}: the matrix session wrote nothing"]
    found: list[str] = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            found.append(f"{path.name}: unreadable ({exc})")
            continue
        found.extend(problems_in(path, data, expected, accepted))
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "build" / "results")
    parser.add_argument("--axes", type=Path, default=ROOT / "matrix" / "axes.toml")
    parser.add_argument(
        "--accept-status",
        action="append",
        default=[],
        choices=["install-failed", "crashed"],
        help="a results status that is a finding, not a failed run (repeatable)",
    )
    args = parser.parse_args(argv)
    expected = expected_pairs(args.axes)
    found = check(args.results, expected, frozenset(args.accept_status))
    files = len(list(args.results.glob("*.json")))
    if found:
        print(f"smoke check FAILED ({len(found)} problems in {files} results files):", file=sys.stderr)
        for line in found:
            print(f"  - {line}", file=sys.stderr)
        return 1
    pairs = ", ".join(f"{n}/{d}" for n, d in sorted(expected))
    print(f"smoke check passed: {files} results files, every one ran on {pairs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
