"""What a results file (reports/SCHEMA.md) holds, as typed values: the vocabulary of every other report module.

``reports.loading`` makes these from files, ``reports.verdicts`` judges them, ``reports.diffs`` compares them.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from matrix.rules import VERDICTS

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Problem:
    """A results file (or part of one) the report could not use; shown by name in the report."""

    file: str
    message: str


@dataclass(frozen=True)
class Cell:
    id: str
    python: str
    sqlalchemy: str
    pytest_asyncio: str
    pytest: str = ""  # the pytest series label; "" in files written before the matrix had a pytest axis
    tier: str = "support"

    @property
    def asyncio_column(self) -> str:
        """The grid's column label: pytest-asyncio, with the pytest series when the cell names one."""
        return f"{self.pytest_asyncio} · pytest {self.pytest}" if self.pytest else self.pytest_asyncio


@dataclass(frozen=True)
class DatabaseEntry:
    name: str
    driver: str
    status: str
    reason: Optional[str]
    server_version: Optional[str]


@dataclass(frozen=True)
class Scenario:
    id: str
    category: str
    database: str
    driver: str
    checks: str
    expected: str
    outcome: str
    exception: Optional[str]
    verdict: str
    duration: Optional[float]
    message: Optional[str]
    traceback: Optional[str]
    # "<database>/<driver>" when the scenario does not depend on the database: this entry repeats that run's result.
    ran_on: Optional[str] = None
    # The id of the cell whose run this result is (the scenario depends on neither pytest-asyncio nor pytest).
    ran_in: Optional[str] = None


@dataclass(frozen=True)
class Result:
    """One results file: one (cell, subject)."""

    file: str
    run_id: str
    written_at: str
    cell: Cell
    subject: str
    requirement: Optional[str]
    status: str
    reason: Optional[str]
    versions: dict[str, str]
    databases: tuple[DatabaseEntry, ...]
    scenarios: tuple[Scenario, ...]
    cache_key: Optional[str]

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(s.verdict for s in self.scenarios)
        return {verdict: counts.get(verdict, 0) for verdict in VERDICTS}

    def database_names(self) -> list[str]:
        names = [d.name for d in self.databases] + [s.database for s in self.scenarios]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Run:
    results: tuple[Result, ...]
    problems: tuple[Problem, ...] = ()

    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.results}, key=_subject_order)

    def databases(self) -> list[str]:
        # First-seen order: results files list databases in axes.toml order, which is the order people expect.
        return list(dict.fromkeys(name for r in self.results for name in r.database_names()))

    def run_ids(self) -> list[str]:
        return sorted({r.run_id for r in self.results})

    def find(self, cell_id: str, subject: str) -> Optional[Result]:
        return self._by_cell_and_subject.get((cell_id, subject))

    @functools.cached_property
    def _by_cell_and_subject(self) -> dict[tuple[str, str], Result]:
        """The first result of each (cell, subject), as a search in file order finds it (asked 150,000 times)."""
        index: dict[tuple[str, str], Result] = {}
        for result in self.results:
            index.setdefault((result.cell.id, result.subject), result)
        return index


@functools.lru_cache(maxsize=1 << 14)  # pure, and asked for the same cell ids and scenario keys over and over
def natural_key(text: str) -> tuple[Any, ...]:
    """Sort "3.9" before "3.10" and "postgresql-9" before "postgresql-17"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def _subject_order(name: str) -> tuple[int, str]:
    # The plugin first, the baseline second, comparison subjects after: the order every table uses.
    return ({"greenlight": 0, "none": 1}.get(name, 2), name)
