"""Diffs: a subject against the baseline in the same run, and a run against the previous one.

Each difference names its cause where one can be found (the package versions that moved between the runs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from matrix.rules import comparison_kind
from reports.results import Result, Run, Scenario, natural_key
from reports.verdicts import Grid, in_support_set


@dataclass(frozen=True)
class Comparison:
    """One scenario of one cell: the plugin's verdict next to the baseline's and every other subject's."""

    cell_id: str
    database: str
    driver: str
    scenario: str
    category: str
    plugin: str
    baseline: str
    others: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return comparison_kind(self.plugin, self.baseline)


def _scenarios_by_key(result: Optional[Result]) -> dict[tuple[str, str, str], Scenario]:
    if result is None:
        return {}
    return {(s.database, s.driver, s.id): s for s in result.scenarios}


def compare_subjects(run: Run, plugin: str = "greenlight", baseline: str = "none") -> list[Comparison]:
    """Per scenario and cell: what the plugin fixes (baseline broken, plugin works) and breaks (reverse)."""
    others = [s for s in run.subjects() if s not in (plugin, baseline)]
    comparisons = []
    for cell_id in sorted({r.cell.id for r in run.results}, key=natural_key):
        mine = _scenarios_by_key(run.find(cell_id, plugin))
        base = _scenarios_by_key(run.find(cell_id, baseline))
        rest = {name: _scenarios_by_key(run.find(cell_id, name)) for name in others}
        for key in sorted(set(mine) | set(base), key=lambda k: tuple(natural_key(p) for p in k)):
            any_scenario = mine.get(key) or base[key]
            comparisons.append(
                Comparison(
                    cell_id=cell_id,
                    database=key[0],
                    driver=key[1],
                    scenario=key[2],
                    category=any_scenario.category,
                    plugin=mine[key].verdict if key in mine else "not-run",
                    baseline=base[key].verdict if key in base else "not-run",
                    others={name: v[key].verdict if key in v else "not-run" for name, v in rest.items()},
                )
            )
    return comparisons


def regressions(
    run: Run, plugin: str = "greenlight", baseline: str = "none", support: tuple[str, ...] = ("*",)
) -> list[Comparison]:
    """Scenarios the plugin breaks (broken with it, works without it) in a support-set cell: these fail a run."""
    found = []
    for comparison in compare_subjects(run, plugin, baseline):
        result = run.find(comparison.cell_id, plugin)
        if comparison.kind == "regression" and result and in_support_set(result, comparison.database, support):
            found.append(comparison)
    return found


def describe_regressions(found: list[Comparison], plugin: str = "greenlight", baseline: str = "none") -> str:
    """The headline when there are regressions, e.g. "REGRESSION: greenlight breaks 2 scenario(s) that work
    with none, in 1 support-set cell(s)"; empty when there are none."""
    if not found:
        return ""
    cells = len({c.cell_id for c in found})
    return (
        f"REGRESSION: {plugin} breaks {len(found)} scenario(s) that work with {baseline}, "
        f"in {cells} support-set cell(s)"
    )


# Names as people write them in a sentence ("SQLAlchemy went 2.1.9 → 2.1.10").
PRETTY_NAMES = {"sqlalchemy": "SQLAlchemy", "python": "Python", "greenlet": "greenlet", "pytest": "pytest"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human sentences for every package whose version differs, e.g. "SQLAlchemy went 2.1.9 → 2.1.10"."""
    old = {_canonical(k): v for k, v in before.items()}
    new = {_canonical(k): v for k, v in after.items()}
    changes = []
    for name in sorted(set(old) | set(new), key=lambda n: (n not in PRETTY_NAMES, n)):
        pretty = PRETTY_NAMES.get(name, name)
        if name not in old:
            changes.append(f"{pretty} {new[name]} was added")
        elif name not in new:
            changes.append(f"{pretty} {old[name]} was removed")
        elif old[name] != new[name]:
            changes.append(f"{pretty} went {old[name]} → {new[name]}")
    return changes


@dataclass(frozen=True)
class Change:
    """One scenario whose verdict differs between the previous run and this one."""

    kind: str  # "new failure" | "new fix"
    cell_id: str
    subject: str
    database: str
    driver: str
    scenario: str
    before: str
    after: str
    cause: str


def diff_runs(current: Run, previous: Run) -> list[Change]:
    """New failures and new fixes since ``previous``, each attributed to the package versions that changed."""
    changes = []
    for result in current.results:
        old = previous.find(result.cell.id, result.subject)
        if old is None:
            continue
        moved = version_changes(old.versions, result.versions)
        before = _scenarios_by_key(old)
        for key, scenario in sorted(_scenarios_by_key(result).items()):
            was = before.get(key)
            if was is None or {was.verdict, scenario.verdict} != {"works", "broken"}:
                continue
            kind = "new failure" if scenario.verdict == "broken" else "new fix"
            verb = "broke" if kind == "new failure" else "fixed"
            cause = (
                f"{verb} when {', '.join(moved)}"
                if moved
                else f"{verb} with no package version change (the plugin, the scenario or the server changed)"
            )
            changes.append(Change(kind, result.cell.id, result.subject, *key, was.verdict, scenario.verdict, cause))
    return sorted(changes, key=lambda c: (c.kind != "new failure", natural_key(c.cell_id), c.scenario))


@dataclass(frozen=True)
class CellChange:
    """A grid cell (cell, database) of one subject whose verdict label differs from the previous run."""

    cell_id: str
    database: str
    before: str
    after: str
    cause: str


def diff_grids(current: Grid, previous: Grid) -> list[CellChange]:
    """Grid cells whose verdict changed (e.g. works -> not-run after a crash), with the versions that moved."""
    changes = []
    for key, (verdict, result) in current.cells.items():
        if key not in previous.cells:
            continue
        was, old = previous.cells[key]
        source = result or old
        if was.label == verdict.label or source is None:
            continue
        moved = version_changes(old.versions, result.versions) if old and result else []
        cause = ", ".join(moved) if moved else "no package version change"
        if verdict.reason and verdict.kind in ("not-run", "excluded"):
            cause = f"{verdict.reason} ({cause})"
        changes.append(CellChange(source.cell.id, key[1][1], was.label, verdict.label, cause))
    return sorted(changes, key=lambda c: (natural_key(c.cell_id), c.database))
