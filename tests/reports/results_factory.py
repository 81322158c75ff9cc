"""Realistic results files for the report tests, written as ``nox -s matrix`` writes them (reports/SCHEMA.md).

``fabricate(directory)`` writes a small but complete matrix: two Pythons, two SQLAlchemy series and two
pytest-asyncio series; SQLite plus PostgreSQL with two drivers; three subjects (the plugin, the no-plugin
baseline and a comparison plugin); one excluded combination, one database that could not be had, one
regression caused by the plugin and one hostile failure message. Tests derive the numbers they expect from
``Spec``, not from the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

PYTHONS = ("3.9", "3.12")
ALCHEMIES = ("1.4", "2.1")
ASYNCIOS = ("0.21", "1")
DATABASES = {"sqlite": ("aiosqlite",), "postgresql-17": ("asyncpg", "psycopg")}
SUBJECTS = ("greenlight", "none", "pytest-green-light")
# (id, category, works without a plugin?)
SCENARIOS = (
    ("context/lazy-load-in-test", "context", False),
    ("context/refresh-expired", "context", False),
    ("fixtures/session-fixture", "fixtures", True),
    ("tasks/gather-children", "tasks", True),
    ("loops/cross-loop-engine", "loops", True),
)
MISSING_GREENLET = "greenlet_spawn has not been called; can't call await_only() here."
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">\x1b[31mred\x1b[0m'
PASSWORD = "p@ss:w/rd?#&%"


def cell_id(py: str, sa: str, pa: str) -> str:
    return f"py{py}-sa{sa}-pa{pa}"


@dataclass
class Spec:
    """What to fabricate; the defaults are the realistic run described in the module docstring."""

    run_id: str = "2026-11-21T21:30:00Z-4f2a"
    sqlalchemy_patch: dict[str, str] = field(default_factory=lambda: {"1.4": "1.4.54", "2.1": "2.1.10"})
    excluded: tuple[tuple[str, str], ...] = (("3.9", "2.1"),)  # (python, sqlalchemy)
    # (cell id, database) whose server could not be had
    unavailable: tuple[tuple[str, str], ...] = (("py3.9-sa1.4-pa0.21", "postgresql-17"),)
    # (cell id, subject, database, driver, scenario) that break although they "should" work
    breaks: tuple[tuple[str, str, str, str, str], ...] = (
        ("py3.12-sa2.1-pa1", "greenlight", "postgresql-17", "asyncpg", "tasks/gather-children"),
    )
    hostile: tuple[str, str, str, str, str] = (
        "py3.12-sa1.4-pa0.21",
        "none",
        "sqlite",
        "aiosqlite",
        "context/lazy-load-in-test",
    )

    def cells(self) -> list[tuple[str, str, str]]:
        return [(py, sa, pa) for py in PYTHONS for sa in ALCHEMIES for pa in ASYNCIOS]

    def is_excluded(self, py: str, sa: str, subject: str) -> bool:
        return (py, sa) in self.excluded or (subject == "pytest-green-light" and sa == "1.4")


def scenario(sid: str, category: str, db: str, driver: str, verdict: str, message: Optional[str] = None) -> dict:
    outcome = {"works": "passed", "broken": "failed", "skipped": "skipped", "not-run": "not-run"}[verdict]
    broken = verdict == "broken"
    return {
        "id": sid,
        "category": category,
        "database": db,
        "driver": driver,
        "checks": f"{sid} on {db}",
        "expected": "pass",
        "outcome": outcome,
        "exception": "sqlalchemy.exc.MissingGreenlet" if broken else None,
        "verdict": verdict,
        "duration": 0.125,
        "message": message if message is not None else (MISSING_GREENLET if broken else None),
        "traceback": f"Traceback (most recent call last):\n  ...\n{message or MISSING_GREENLET}" if broken else None,
    }


def result(spec: Spec, py: str, sa: str, pa: str, subject: str) -> dict[str, Any]:
    cid = cell_id(py, sa, pa)
    data: dict[str, Any] = {
        "schema_version": 1,
        "run_id": spec.run_id,
        "written_at": "2026-11-21T21:34:12Z",
        "cell": {"id": cid, "python": py, "sqlalchemy": sa, "pytest_asyncio": pa},
        "subject": {"name": subject, "requirement": None if subject == "none" else f"{subject} @ ."},
        "status": "completed",
        "reason": None,
        "versions": {},
        "databases": [],
        "scenarios": [],
        "cache_key": "sha256:0",
    }
    if spec.is_excluded(py, sa, subject):
        data.update(status="excluded", reason=f"SQLAlchemy {sa} cannot run here (fixture reason)")
    else:
        data["versions"] = {
            "python": f"{py}.1",
            "sqlalchemy": spec.sqlalchemy_patch.get(sa, f"{sa}.0"),
            "pytest": "9.0.1" if pa == "1" else "7.4.4",
            "pytest-asyncio": "1.3.0" if pa == "1" else "0.21.2",
            "greenlet": "3.2.4",
        }
        for db, drivers in DATABASES.items():
            for driver in drivers:
                available = (cid, db) not in spec.unavailable
                data["databases"].append(
                    {
                        "name": db,
                        "driver": driver,
                        "status": "ok" if available else "not-run",
                        "reason": None if available else "no Docker engine and GREENLIGHT_POSTGRES_URL unset",
                        "server_version": ("3.40.1" if db == "sqlite" else "17.2") if available else None,
                    }
                )
                for sid, category, works_without in SCENARIOS:
                    ok = subject != "none" or works_without
                    if (cid, subject, db, driver, sid) in spec.breaks:
                        ok = False
                    verdict = ("works" if ok else "broken") if available else "not-run"
                    message = XSS if (cid, subject, db, driver, sid) == spec.hostile else None
                    data["scenarios"].append(scenario(sid, category, db, driver, verdict, message))
    counts: dict[str, int] = {"works": 0, "broken": 0, "skipped": 0, "not-run": 0}
    for entry in data["scenarios"]:
        counts[entry["verdict"]] += 1
    data["summary"] = counts
    return data


def write(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['cell']['id']}__{data['subject']['name']}.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def fabricate_run(directory: Path, spec: Optional[Spec] = None) -> Spec:
    spec = spec or Spec()
    for py, sa, pa in spec.cells():
        for subject in SUBJECTS:
            write(directory, result(spec, py, sa, pa, subject))
    return spec
