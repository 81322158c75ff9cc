"""Verdicts: what one (cell, subject, database) comes to, the support set, and the overview grid built from them.

The rules are the ones at the end of reports/SCHEMA.md; the badge, the docs table and the report's grid all read
them from here.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from matrix.rules import SUPPORT_TIERS
from reports.results import Result, Run, natural_key

SYMBOLS = {
    "works": "✓",
    "broken": "✗",
    "partial": "◐",
    "not-run": "○",
    "excluded": "⊘",
    "skipped": "\N{EN DASH}",
}


@dataclass(frozen=True)
class CellVerdict:
    """The verdict of one (cell, subject, database), as defined at the end of SCHEMA.md."""

    kind: str  # works | broken | partial | not-run | excluded
    works: int = 0
    ran: int = 0
    reason: Optional[str] = None

    @property
    def label(self) -> str:
        return f"partial {self.works} of {self.ran}" if self.kind == "partial" else self.kind

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]

    @property
    def detail(self) -> str:
        """The tooltip: the counts behind the verdict, and the reason when there is one."""
        if self.kind in ("not-run", "excluded"):
            return self.reason or self.kind
        counts = f"{self.works} of {self.ran} scenarios work"
        return f"{counts}; {self.reason}" if self.reason else counts


def in_support_set(result: Result, database: str = "*", patterns: tuple[str, ...] = ("*",)) -> bool:
    """The one definition of the support set: a cell of a support tier (never canary or legacy) whose
    ``<cell id>/<database>`` matches one of the ``--support`` globs (default: every one)."""
    return result.cell.tier in SUPPORT_TIERS and support_glob(result.cell.id, database, patterns)


def support_glob(cell_id: str, database: str, patterns: Iterable[str]) -> bool:
    """``--support`` patterns are shell globs over ``<cell id>/<database>``, e.g. ``py3.1[2-3]-sa2.*/*``."""
    key = f"{cell_id}/{database}"
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def cell_verdict(result: Optional[Result], database: str) -> CellVerdict:
    if result is None:
        return CellVerdict("not-run", reason="no results file for this cell")
    if result.status == "excluded":
        return CellVerdict("excluded", reason=result.reason or "excluded in axes.toml")
    ran = [s for s in result.scenarios if s.database == database and s.verdict in ("works", "broken")]
    works = sum(s.verdict == "works" for s in ran)
    if not ran:
        return CellVerdict("not-run", reason=_not_run_reason(result, database))
    kind = "works" if works == len(ran) else "broken" if works == 0 else "partial"
    # A crash keeps what finished (SCHEMA.md); say so, since the verdict covers only part of the suite.
    reason = f"{result.status}: {result.reason or 'no reason given'}" if result.status != "completed" else None
    return CellVerdict(kind, works, len(ran), reason)


def _not_run_reason(result: Result, database: str) -> str:
    for entry in result.databases:
        if entry.name == database and entry.status != "ok" and entry.reason:
            return entry.reason
    if result.status != "completed":
        return f"{result.status}: {result.reason or 'no reason given'}"
    if not any(s.database == database for s in result.scenarios):
        return f"no scenario recorded for {database}"
    return "every scenario was skipped or not run"


@dataclass(frozen=True)
class Grid:
    """The overview grid for one subject: rows Python x SQLAlchemy, columns pytest-asyncio x database."""

    subject: str
    rows: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]
    cells: dict[tuple[tuple[str, str], tuple[str, str]], tuple[CellVerdict, Optional[Result]]]

    def counts(self) -> Counter[str]:
        return Counter(verdict.kind for verdict, _ in self.cells.values())

    def column_groups(self) -> list[tuple[str, int]]:
        """(pytest-asyncio value, number of database columns under it) in column order: the header row."""
        return [
            (pa, sum(1 for other, _ in self.columns if other == pa)) for pa in dict.fromkeys(c[0] for c in self.columns)
        ]


def build_grid(run: Run, subject: str) -> Grid:
    """The support set's grid (canary and legacy cells are left out: they are not support facts)."""
    supported = [r for r in run.results if r.cell.tier in SUPPORT_TIERS]
    mine = [r for r in supported if r.subject == subject]
    # Every subject's cells define the axes, so a cell that only the baseline produced still shows as a hole.
    pythons = sorted({r.cell.python for r in supported}, key=natural_key)
    alchemies = sorted({r.cell.sqlalchemy for r in supported}, key=natural_key)
    asyncios = sorted({r.cell.asyncio_column for r in supported}, key=natural_key)
    databases = run.databases()
    by_axes = {(r.cell.python, r.cell.sqlalchemy, r.cell.asyncio_column): r for r in mine}
    rows = tuple((py, sa) for py in pythons for sa in alchemies)
    columns = tuple((pa, db) for pa in asyncios for db in databases)
    cells = {}
    for py, sa in rows:
        for pa, db in columns:
            result = by_axes.get((py, sa, pa))
            cells[(py, sa), (pa, db)] = (cell_verdict(result, db), result)
    return Grid(subject, rows, columns, cells)
