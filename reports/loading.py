"""Load matrix results files (reports/SCHEMA.md) into a ``Run``, and write a run back out as plain data.

A results file may be truncated, hold invalid UTF-8, megabytes of output or hostile markup: every string goes
through ``safe.clean_text`` on the way in, and loading never raises for a bad file; it records a ``Problem``
naming the file and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

# Statuses and verdicts: one definition each, shared with the runner (reports reads what the matrix wrote; the
# matrix never imports reports).
from matrix.rules import STATUSES, VERDICTS
from reports.results import SCHEMA_VERSION, Cell, DatabaseEntry, Problem, Result, Run, Scenario
from reports.safe import MESSAGE_CAP, SHORT_CAP, TRACEBACK_CAP, clean_text

# A results file is small (hundreds of kB); anything far bigger is refused rather than parsed into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _opt(value: Any, cap: int = SHORT_CAP) -> Optional[str]:
    return None if value is None else clean_text(value, cap)


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
        ran_in=_opt(raw.get("ran_in")),
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


def write_if_facts_changed(path: Path, text: str, facts: Callable[[str], object]) -> bool:
    """Write ``text`` to ``path`` unless the file already states the same ``facts`` (what a reader of the tracked
    file cares about: not the run's date); say whether it wrote. An unreadable old file is rewritten."""
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old = ""
    if old and facts(old) is not None and facts(old) == facts(text):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True
