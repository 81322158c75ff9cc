"""Was this exact combination verified? The packaged matrix verdicts, read for the session header and
``pytest --greenlight-compat``.

``verified.json`` (next to this module) is written by ``nox -s report`` (reports/verified.py) from the
compatibility matrix's results, at the same time as docs/compatibility.md. Each row is one (matrix cell, database)
of the support set: the Python series and the exact SQLAlchemy, pytest-asyncio, pytest and greenlet versions
installed in the cell, the database, its drivers (version series and verdict each), the verdict as the docs table
states it, the cell's tier and the date it ran. The file names its columns, so this reader finds them by name.

Start-up cost: one small JSON file and four ``importlib.metadata`` look-ups, only when the header is asked for.
Nothing here may break a run: a missing or unreadable file becomes one header line that says so.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

DATA_FILE = Path(__file__).with_name("verified.json")
FORMAT = "pytest-greenlight-verified"
VERSION = 1
# The combination a row verifies, in the order that decides "nearest" (most important first), with the names
# the file's columns and the distributions use, and how a sentence names them.
COMPONENTS = ("python", "sqlalchemy", "pytest-asyncio", "pytest", "greenlet")
PRETTY = {"python": "Python", "sqlalchemy": "SQLAlchemy"}
COMPAT_HELP = (
    "print the compatibility matrix's verdicts for the installed Python, SQLAlchemy, pytest-asyncio, pytest and "
    "greenlet (and the nearest verified combinations), then exit without running tests"
)
HOW_TO_REGENERATE = "the matrix's verdicts are in docs/compatibility.md; `nox -s report` regenerates this file"
NEAREST_SHOWN = 3  # combinations --greenlight-compat lists besides the installed one


class DataUnavailable(Exception):
    """The packaged data file is missing, unreadable or of another format; the message says which."""


@dataclass(frozen=True)
class Driver:
    name: str
    series: str  # the driver's version series in the cell, e.g. "0.30"
    verdict: str


@dataclass(frozen=True)
class Row:
    versions: tuple[str, ...]  # in COMPONENTS order; python is the series ("3.12"), the rest exact
    database: str  # the docs table's column: kind and server series, e.g. "postgresql-17"
    drivers: tuple[Driver, ...]
    verdict: str  # works | partial N of M | broken, as docs/compatibility.md states it
    tier: str
    date: str
    cell: tuple[str, ...]  # the cell's axis labels (python, sqlalchemy, pytest-asyncio, pytest), as the docs name it


@dataclass(frozen=True)
class Data:
    path: Path
    runs: tuple[str, ...]
    rows: tuple[Row, ...]


def load(path: Optional[Path] = None) -> Data:
    path = DATA_FILE if path is None else path
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataUnavailable(f"{path.name} is not in the package") from None
    except (OSError, ValueError) as exc:
        raise DataUnavailable(f"{path.name} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise DataUnavailable(f"{path.name} is not {FORMAT} version {VERSION}")
    try:
        index = {name: raw["columns"].index(name) for name in (*COMPONENTS, "database", "drivers", "verdict")}
        index.update({name: raw["columns"].index(name) for name in ("tier", "date", "cell")})
        rows = tuple(_row(values, index) for values in raw["rows"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise DataUnavailable(f"{path.name} is malformed ({type(exc).__name__}: {exc})") from None
    return Data(path, tuple(str(run) for run in raw.get("runs") or ()), rows)


def _row(values: Sequence[Any], index: dict[str, int]) -> Row:
    return Row(
        versions=tuple(str(values[index[name]]) for name in COMPONENTS),
        database=str(values[index["database"]]),
        drivers=tuple(Driver(str(n), str(s), str(v)) for n, s, v in values[index["drivers"]]),
        verdict=str(values[index["verdict"]]),
        tier=str(values[index["tier"]]),
        date=str(values[index["date"]]),
        cell=tuple(str(label) for label in values[index["cell"]]),
    )


def installed() -> tuple[Optional[str], ...]:
    """This interpreter's series and the installed versions, in COMPONENTS order (None: not installed)."""
    found: list[Optional[str]] = [f"{sys.version_info[0]}.{sys.version_info[1]}"]
    for name in COMPONENTS[1:]:
        try:
            found.append(metadata.version(name))
        except metadata.PackageNotFoundError:
            found.append(None)
    return tuple(found)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(part):  # "0rc1": the pre-release ends the release numbers
            break
    return tuple(parts)


def closeness(mine: Optional[str], theirs: str) -> int:
    """3: the same version; 2: the same x.y series; 1: the same major version; 0: otherwise or not installed."""
    if mine is None:
        return 0
    if mine == theirs:
        return 3
    a, b = _release(mine), _release(theirs)
    if a[:2] == b[:2] and len(a) >= 2:
        return 2
    return 1 if a[:1] == b[:1] and a else 0


def nearest(rows: Iterable[Row], mine: Sequence[Optional[str]]) -> list[tuple[str, ...]]:
    """Verified combinations, nearest first. Each of the five versions scores its ``closeness`` to the installed
    one; the highest total is nearest. Ties go to the closer Python, then SQLAlchemy, pytest-asyncio, pytest and
    greenlet, in that order, then to the newest. The installed combination, when verified, comes first (15)."""
    combos = {row.versions for row in rows}

    def key(combo: tuple[str, ...]) -> tuple[Any, ...]:
        scores = tuple(closeness(m, t) for m, t in zip(mine, combo, strict=True))
        return (sum(scores), scores, [_release(v) for v in combo])

    return sorted(combos, key=key, reverse=True)


def describe(combo: Sequence[Optional[str]]) -> str:
    return ", ".join(f"{PRETTY.get(n, n)} {v or 'not installed'}" for n, v in zip(COMPONENTS, combo, strict=True))


def verdicts(rows: Iterable[Row]) -> str:
    """Databases grouped by verdict, e.g. "works on sqlite, postgresql-17; partial 9 of 10 on mariadb-11.8"."""
    by_verdict: dict[str, list[str]] = {}
    for row in rows:
        by_verdict.setdefault(row.verdict, []).append(row.database)
    order = sorted(by_verdict, key=lambda v: (not v.startswith("works"), v.startswith("broken"), v))
    return "; ".join(f"{v} on {', '.join(by_verdict[v])}" for v in order)


def _of(data: Data, combo: tuple[str, ...]) -> list[Row]:
    return [row for row in data.rows if row.versions == combo]


def header_line(data: Data, mine: Sequence[Optional[str]]) -> str:
    if not data.rows:
        return f"greenlight: the packaged compatibility data lists no verified combination ({HOW_TO_REGENERATE})"
    found = nearest(data.rows, mine)
    best = found[0]
    rows = _of(data, best)
    date = max(row.date for row in rows)
    if tuple(mine) == best:
        return f"greenlight: verified by the compatibility matrix on {date} ({describe(best)}): {verdicts(rows)}"
    differs = [
        f"{PRETTY.get(n, n)} {theirs} (installed: {m or 'none'})"
        for n, m, theirs in zip(COMPONENTS, mine, best, strict=True)
        if m != theirs
    ]
    return (
        f"greenlight: not covered by the compatibility matrix ({describe(mine)}); nearest verified combination, "
        f"on {date}: {', '.join(differs)}, the rest the same: {verdicts(rows)} (pytest --greenlight-compat lists them)"
    )


def header() -> str:
    """The session header's line; never raises (a run must not fail because this file is missing or wrong)."""
    try:
        return header_line(load(), installed())
    except DataUnavailable as exc:
        return f"greenlight: no compatibility data: {exc} ({HOW_TO_REGENERATE})"
    except Exception as exc:  # a bug here must cost one line, never the run
        return f"greenlight: the compatibility check failed ({type(exc).__name__}: {exc})"


COLUMNS = ("", *[PRETTY.get(n, n) for n in COMPONENTS], "database", "drivers", "verdict", "tier", "date")


def compat_table(data: Data, mine: Sequence[Optional[str]], driver_versions: dict[str, Optional[str]]) -> list[str]:
    """``--greenlight-compat``: the rows of the installed combination (marked ``=``) and of the nearest verified
    ones (``~``), as an aligned text table."""
    found = nearest(data.rows, mine)
    exact = bool(found) and tuple(mine) == found[0]
    shown = found[: NEAREST_SHOWN + exact]
    drivers = ", ".join(f"{name} {v or 'not installed'}" for name, v in sorted(driver_versions.items()))
    lines = [
        f"greenlight: the compatibility matrix's verdicts ({data.path}; run {', '.join(data.runs) or 'unknown'})",
        f"installed: {describe(mine)}; drivers: {drivers or 'none listed'}",
        (
            "this combination was verified: rows marked ="
            if exact
            else "this combination is not covered by the matrix; the nearest verified ones are marked ~"
        ),
        "",
    ]
    table = [list(COLUMNS)]
    for combo in shown:
        for row in _of(data, combo):
            mark = "=" if exact and combo == found[0] else "~"
            listed = ", ".join(f"{d.name} {d.series}: {d.verdict}" for d in row.drivers)
            table.append([mark, *row.versions, row.database, listed, row.verdict, row.tier, row.date])
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table]
    if len(table) == 1:
        lines.append("(the data file lists no verified combination)")
    return lines


def compat_report() -> tuple[int, list[str]]:
    """Exit status and lines for ``pytest --greenlight-compat`` (1 when there is no data to show)."""
    try:
        data = load()
    except DataUnavailable as exc:
        return 1, [f"greenlight: no compatibility data: {exc} ({HOW_TO_REGENERATE})"]
    names = sorted({d.name for row in data.rows for d in row.drivers})
    return 0, compat_table(data, installed(), {name: _version(name) for name in names})


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
