"""A cell's typed outcome: what each subject's results file says (status, verdict counts), read back once it is
written, and how a subject's line reads in the progress output."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from matrix import collect, contract


def run_id() -> str:
    """One id per nox invocation: set once by noxfile.py in the top-level process, inherited by ``-j`` workers."""
    return contract.text(contract.RUN_ID) or f"{collect.now()}-{os.getpid():x}"


@dataclass(frozen=True)
class SubjectOutcome:
    """What one subject's results file says, for the progress line and the caller."""

    subject: str
    status: str
    path: Path
    verdicts: Mapping[str, int]


@dataclass(frozen=True)
class CellOutcome:
    cell: str
    subjects: tuple[SubjectOutcome, ...]
    failures: tuple[str, ...] = ()
    skipped: Optional[str] = None  # why the nox session is to be reported skipped (excluded, no interpreter)
    error: Optional[str] = None  # why the nox session is to fail (runner errors, a missing interpreter in CI)

    @property
    def written(self) -> list[Path]:
        return [s.path for s in self.subjects]


def outcome_of(path: Path) -> SubjectOutcome:
    """The subject's status and verdict counts, read back from the results file just written."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SubjectOutcome(path.stem.rpartition("__")[2], "unreadable", path, {})
    return SubjectOutcome(
        str(document.get("subject", {}).get("name", "")),
        str(document.get("status")),
        path,
        dict(document.get("summary") or {}),
    )


def describe(outcome: SubjectOutcome) -> str:
    """'completed: works 480, broken 0, not-run 0 (skipped 40)': verdicts against the declared expectations."""
    v = outcome.verdicts
    text = f"{outcome.status}: works {v.get('works', 0)}, broken {v.get('broken', 0)}, not-run {v.get('not-run', 0)}"
    return text + (f" (n/a here: {v['skipped']})" if v.get("skipped") else "")
