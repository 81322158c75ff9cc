"""Load matrix results files (reports/SCHEMA.md) and compute verdicts and diffs from them.

Everything the report, the badge and the docs table show comes from here. A results file may be truncated,
hold invalid UTF-8, megabytes of output or hostile markup: every string goes through ``safe.clean_text`` on
the way in, and loading never raises for a bad file; it records a ``Problem`` naming the file and goes on.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# Statuses, verdicts, support tiers, the regression rule: one definition each, shared with the runner (reports
# reads what the matrix wrote; the matrix never imports reports).
from matrix.rules import STATUSES, SUPPORT_TIERS, VERDICTS, comparison_kind
from reports.safe import MESSAGE_CAP, SHORT_CAP, TRACEBACK_CAP, clean_text

SCHEMA_VERSION = 1
# A results file is small (hundreds of kB); anything far bigger is refused rather than parsed into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _opt(value: Any, cap: int = SHORT_CAP) -> Optional[str]:
    return None if value is None else clean_text(value, cap)


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
        for result in self.results:
            if result.cell.id == cell_id and result.subject == subject:
                return result
        return None


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort "3.9" before "3.10" and "postgresql-9" before "postgresql-17"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def _subject_order(name: str) -> tuple[int, str]:
    # The plugin first, the baseline second, comparison subjects after: the order every table uses.
    return ({"greenlight": 0, "none": 1}.get(name, 2), name)


# ------------------------------------------------------------------------------------------------ loading


class _Invalid(Exception):
    """A results file that does not follow SCHEMA.md; the message says which field."""


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise _Invalid(f"missing {where}{key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise _Invalid(f"{where}{key!r} should be {kind.__name__}, not {type(value).__name__}")
    return value


def _scenario(raw: Any, index: int) -> Scenario:
    where = f"scenarios[{index}]."
    if not isinstance(raw, dict):
        raise _Invalid(f"scenarios[{index}] is not an object")
    verdict = raw.get("verdict")
    if verdict not in VERDICTS:
        raise _Invalid(f"{where}verdict {clean_text(verdict, 40)!r} is not one of {', '.join(VERDICTS)}")
    duration = raw.get("duration")
    return Scenario(
        id=clean_text(_require(raw, "id", str, where)),
        category=clean_text(raw.get("category") or "uncategorised"),
        database=clean_text(_require(raw, "database", str, where)),
        driver=clean_text(raw.get("driver") or "?"),
        checks=clean_text(raw.get("checks") or "", MESSAGE_CAP),
        expected=clean_text(raw.get("expected") or "pass"),
        outcome=clean_text(raw.get("outcome") or "?"),
        exception=_opt(raw.get("exception")),
        verdict=verdict,
        duration=float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None,
        message=_opt(raw.get("message"), MESSAGE_CAP),
        traceback=_opt(raw.get("traceback"), TRACEBACK_CAP),
        ran_on=_opt(raw.get("ran_on")),
    )


def _database(raw: Any, index: int) -> DatabaseEntry:
    if not isinstance(raw, dict):
        raise _Invalid(f"databases[{index}] is not an object")
    where = f"databases[{index}]."
    return DatabaseEntry(
        name=clean_text(_require(raw, "name", str, where)),
        driver=clean_text(raw.get("driver") or "?"),
        status=clean_text(raw.get("status") or "ok"),
        reason=_opt(raw.get("reason"), MESSAGE_CAP),
        server_version=_opt(raw.get("server_version")),
    )


def parse_result(data: Any, file: str) -> tuple[Optional[Result], list[Problem]]:
    """Validate one decoded results file; bad scenario entries are dropped and reported, the rest is kept."""
    problems: list[Problem] = []
    try:
        if not isinstance(data, dict):
            raise _Invalid("the top level is not a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise _Invalid(f"schema_version is {clean_text(version, 20)}, this report reads {SCHEMA_VERSION}")
        raw_cell = _require(data, "cell", dict, "")
        cell = Cell(
            id=clean_text(_require(raw_cell, "id", str, "cell.")),
            python=clean_text(_require(raw_cell, "python", str, "cell.")),
            sqlalchemy=clean_text(_require(raw_cell, "sqlalchemy", str, "cell.")),
            pytest_asyncio=clean_text(_require(raw_cell, "pytest_asyncio", str, "cell.")),
            pytest=clean_text(raw_cell.get("pytest") or ""),
            tier=clean_text(raw_cell.get("tier") or "support"),
        )
        raw_subject = _require(data, "subject", dict, "")
        status = _require(data, "status", str, "")
        if status not in STATUSES:
            raise _Invalid(f"status {clean_text(status, 40)!r} is not one of {', '.join(STATUSES)}")
        raw_versions = data.get("versions") or {}
        if not isinstance(raw_versions, dict):
            raise _Invalid("'versions' should be an object")
        databases = []
        for index, raw in enumerate(data.get("databases") or []):
            try:
                databases.append(_database(raw, index))
            except _Invalid as exc:
                problems.append(Problem(file, f"{exc}; entry skipped"))
        scenarios = []
        for index, raw in enumerate(data.get("scenarios") or []):
            try:
                scenarios.append(_scenario(raw, index))
            except _Invalid as exc:
                problems.append(Problem(file, f"{exc}; entry skipped"))
        result = Result(
            file=file,
            run_id=clean_text(data.get("run_id") or "unknown"),
            written_at=clean_text(data.get("written_at") or ""),
            cell=cell,
            subject=clean_text(_require(raw_subject, "name", str, "subject.")),
            requirement=_opt(raw_subject.get("requirement")),
            status=status,
            reason=_opt(data.get("reason"), MESSAGE_CAP),
            versions={clean_text(k, 100): clean_text(v, 100) for k, v in raw_versions.items()},
            databases=tuple(databases),
            scenarios=tuple(scenarios),
            cache_key=_opt(data.get("cache_key")),
        )
    except _Invalid as exc:
        return None, [*problems, Problem(file, str(exc))]
    claimed = data.get("summary")
    if isinstance(claimed, dict) and "summary" in data:
        mismatched = {k: (claimed.get(k, 0), v) for k, v in result.summary.items() if claimed.get(k, 0) != v}
        if mismatched:
            detail = ", ".join(f"{k}: file says {a}, scenarios give {b}" for k, (a, b) in mismatched.items())
            problems.append(Problem(file, f"summary disagrees with its scenarios ({detail}); the scenarios are used"))
    return result, problems


def decode_file(raw: bytes) -> Any:
    """Decode JSON that may hold invalid UTF-8 or raw control characters (a careless writer's output): bad
    bytes become U+FFFD and control characters are kept for ``clean_text``, instead of losing the file."""
    return json.loads(raw.decode("utf-8", "replace"), strict=False)


def load_results(directory: Path) -> Run:
    """Load every results file (``<cell id>__<subject>.json``) in ``directory``; unusable files become
    problems, not errors. Other JSON files there (a runner's state, say) are not results and are ignored."""
    results: list[Result] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}
    for path in sorted(directory.glob("*__*.json")):
        name = clean_text(path.name)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                problems.append(Problem(name, f"file is larger than {MAX_FILE_BYTES:,} bytes; not read"))
                continue
            data = decode_file(path.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(Problem(name, f"unreadable or not JSON (corrupted or partial file?): {clean_text(exc)}"))
            continue
        result, found = parse_result(data, name)
        problems.extend(found)
        if result is None:
            continue
        key = (result.cell.id, result.subject)
        if key in seen:
            problems.append(Problem(name, f"same cell and subject as {seen[key]}; ignored"))
            continue
        seen[key] = name
        results.append(result)
    return Run(tuple(results), tuple(problems))


# ------------------------------------------------------------------------------------------------ verdicts

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


# ------------------------------------------------------------------------------------------------ diffs


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


def _verdicts(result: Optional[Result]) -> dict[tuple[str, str, str], Scenario]:
    if result is None:
        return {}
    return {(s.database, s.driver, s.id): s for s in result.scenarios}


def compare_subjects(run: Run, plugin: str = "greenlight", baseline: str = "none") -> list[Comparison]:
    """Per scenario and cell: what the plugin fixes (baseline broken, plugin works) and breaks (reverse)."""
    others = [s for s in run.subjects() if s not in (plugin, baseline)]
    comparisons = []
    for cell_id in sorted({r.cell.id for r in run.results}, key=natural_key):
        mine = _verdicts(run.find(cell_id, plugin))
        base = _verdicts(run.find(cell_id, baseline))
        rest = {name: _verdicts(run.find(cell_id, name)) for name in others}
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
        before = _verdicts(old)
        for key, scenario in sorted(_verdicts(result).items()):
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


# ------------------------------------------------------------------------------------------------ export


def to_data(run: Run) -> dict[str, Any]:
    """The run as plain JSON data: embedded in the report, downloadable, and re-loadable as a previous run.

    Kept compact because a full matrix embeds tens of thousands of scenario entries: null fields are left out,
    and each scenario's "checks" sentence is stored once in ``checks`` instead of in every entry.
    """
    checks: dict[str, str] = {}
    for result in run.results:
        for scenario in result.scenarios:
            checks.setdefault(scenario.id, scenario.checks)

    def entry(scenario: Scenario) -> dict[str, Any]:
        out = {k: v for k, v in vars(scenario).items() if v is not None}
        if checks[scenario.id] == scenario.checks:
            del out["checks"]
        return out

    return {
        "format": "greenlight-report-data",
        "version": 1,
        "checks": checks,
        "problems": [vars(p) for p in run.problems],
        "results": [
            {
                "schema_version": SCHEMA_VERSION,
                "file": r.file,
                "run_id": r.run_id,
                "written_at": r.written_at,
                "cell": vars(r.cell),
                "subject": {"name": r.subject, "requirement": r.requirement},
                "status": r.status,
                "reason": r.reason,
                "versions": r.versions,
                "databases": [vars(d) for d in r.databases],
                "scenarios": [entry(s) for s in r.scenarios],
                "summary": r.summary,
                "cache_key": r.cache_key,
            }
            for r in run.results
        ],
    }


def from_data(data: Any, source: str) -> Run:
    """Rebuild a run from ``to_data`` output (e.g. from a published report), validating it like a file."""
    if not isinstance(data, dict) or data.get("format") != "greenlight-report-data":
        return Run((), (Problem(source, "no greenlight report data found"),))
    checks = data.get("checks") if isinstance(data.get("checks"), dict) else {}
    results, problems = [], []
    for index, raw in enumerate(data.get("results") or []):
        for scenario in raw.get("scenarios") or [] if isinstance(raw, dict) else []:
            if isinstance(scenario, dict) and "checks" not in scenario:
                scenario["checks"] = checks.get(scenario.get("id"), "")
        name = clean_text(raw.get("file") if isinstance(raw, dict) and raw.get("file") else f"{source}#{index}")
        result, found = parse_result(raw, name)
        problems.extend(found)
        if result is not None:
            results.append(result)
    return Run(tuple(results), tuple(problems))
