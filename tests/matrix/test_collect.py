"""matrix/collect.py: scenario JSON lines + cell metadata -> one results file exactly as reports/SCHEMA.md says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from matrix import collect

SCHEMA = Path(__file__).resolve().parents[2] / "reports" / "SCHEMA.md"
# URL-special characters on purpose: they must be caught raw and URL-quoted.
PASSWORD = "pa:ss@w/rd?#%x"
CELL = {
    "id": "py3.12-sa2.1-pa1.5-pt9",
    "python": "3.12",
    "sqlalchemy": "2.1",
    "pytest_asyncio": "1.5",
    "pytest": "9",
    "tier": "support",
}
SUBJECT = {"name": "greenlight", "requirement": "pytest-greenlight @ ."}


def line(**fields: Any) -> dict[str, Any]:
    entry = {
        "id": "context/lazy-load-in-test",
        "category": "context",
        "database": "sqlite",
        "driver": "aiosqlite",
        "checks": "a lazy load in the test",
        "expected": "pass",
        "outcome": "passed",
        "exception": None,
        "verdict": "works",
        "duration": 0.04123456,
        "message": None,
        "traceback": None,
    }
    entry.update(fields)
    return entry


def as_bytes(*entries: dict[str, Any], tail: bytes = b"") -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries) + tail


DATABASES = [
    {"name": "sqlite", "driver": "aiosqlite", "status": "ok", "reason": None, "server_version": "3.40.1"},
    {
        "name": "postgresql-17",
        "driver": "asyncpg",
        "status": "not-run",
        "reason": "no Docker engine, and GREENLIGHT_POSTGRES_URL is unset",
        "server_version": None,
    },
]


def build(lines: bytes, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "run_id": "run-1",
        "cell": CELL,
        "subject": SUBJECT,
        "status": "completed",
        "versions": {"python": "3.12.1", "sqlalchemy": "2.1.9"},
        "databases": DATABASES,
        "lines": collect.read_lines(lines),
        "secrets": [PASSWORD],
    }
    arguments.update(overrides)
    return collect.build_result(**arguments)


def schema_example() -> dict[str, Any]:
    block = re.search(r"```json\n(.*?)```", SCHEMA.read_text(encoding="utf-8"), re.DOTALL)
    assert block, "reports/SCHEMA.md lost its JSON example"
    # the example elides long texts with "…", which is still valid JSON
    return json.loads(block.group(1))


def test_result_has_exactly_the_schema_shape() -> None:
    example = schema_example()
    result = build(as_bytes(line()), cache_key="sha256:x", timings={"pytest": 1.0})
    optional = {"timings"}  # documented in SCHEMA.md as optional
    assert set(result) - optional == set(example)
    for key in ("cell", "subject", "summary"):
        assert set(result[key]) == set(example[key]), key
    assert set(result["databases"][0]) == set(example["databases"][0])
    assert set(result["scenarios"][0]) == set(example["scenarios"][0])
    assert result["schema_version"] == collect.SCHEMA_VERSION == example["schema_version"]
    assert result["cell"] == CELL
    assert result["subject"] == SUBJECT
    assert result["run_id"] == "run-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["written_at"])


def test_unavailable_database_gets_not_run_entries_and_summary_counts() -> None:
    lines = as_bytes(
        line(),
        line(id="gather/one-session", category="gather", outcome="failed", exception="builtins.RuntimeError"),
        line(id="fixture-styles/strict", category="fixture-styles", outcome="skipped", verdict="skipped"),
    )
    result = build(lines)
    by_db: dict[str, list[dict[str, Any]]] = {}
    for scenario in result["scenarios"]:
        by_db.setdefault(scenario["database"], []).append(scenario)
    assert [s["verdict"] for s in by_db["sqlite"]] == ["works", "broken", "skipped"]
    not_run = by_db["postgresql-17"]
    assert [s["id"] for s in not_run] == [s["id"] for s in by_db["sqlite"]]
    assert {(s["outcome"], s["verdict"], s["driver"]) for s in not_run} == {("not-run", "not-run", "asyncpg")}
    assert not_run[0]["message"] == DATABASES[1]["reason"]
    assert result["summary"] == {"works": 1, "broken": 1, "skipped": 1, "not-run": 3}
    assert result["databases"] == DATABASES


@pytest.mark.parametrize(
    ("expected", "outcome", "exception", "recorded", "verdict"),
    [
        ("pass", "passed", None, "works", "works"),
        ("pass", "failed", "sqlalchemy.exc.MissingGreenlet", "broken", "broken"),
        ("pass", "timeout", None, "broken", "broken"),
        ("pass", "error", "builtins.RuntimeError", "broken", "broken"),
        ("raises:sqlalchemy.exc.MissingGreenlet", "failed", "sqlalchemy.exc.MissingGreenlet", "works", "works"),
        ("raises:sqlalchemy.exc.MissingGreenlet", "error", "sqlalchemy.exc.MissingGreenlet", "works", "works"),
        ("raises:sqlalchemy.exc.MissingGreenlet", "passed", None, "broken", "broken"),
        ("raises:sqlalchemy.exc.MissingGreenlet", "failed", "builtins.RuntimeError", "broken", "broken"),
        # the recorder matched a subclass (it sees the class; the line carries only the leaf name)
        ("raises:sqlalchemy.exc.DBAPIError", "failed", "sqlalchemy.exc.InterfaceError", "works", "works"),
        ("pass or raises:sqlalchemy.exc.InvalidRequestError", "passed", None, "works", "works"),
        (
            "pass or raises:sqlalchemy.exc.InvalidRequestError",
            "failed",
            "sqlalchemy.exc.InvalidRequestError",
            "works",
            "works",
        ),
        ("pass or raises:sqlalchemy.exc.InvalidRequestError", "failed", "builtins.AssertionError", "broken", "broken"),
        ("pass or raises:sqlalchemy.exc.InvalidRequestError", "timeout", None, "broken", "broken"),
        ("pass", "skipped", None, "skipped", "skipped"),
        ("pass", "not-run", None, "not-run", "not-run"),
        ("n/a (not for sqlite)", "passed", None, "broken", "broken"),
        # a recorder that judged by eye is overruled
        ("pass", "failed", "builtins.AssertionError", "works", "broken"),
        ("raises:sqlalchemy.exc.MissingGreenlet", "passed", None, "works", "broken"),
    ],
)
def test_verdict_is_recomputed(expected: str, outcome: str, exception: Any, recorded: str, verdict: str) -> None:
    assert collect.compute_verdict(expected, outcome, exception, recorded) == verdict
    result = build(as_bytes(line(expected=expected, outcome=outcome, exception=exception, verdict=recorded)))
    assert result["scenarios"][0]["verdict"] == verdict


def test_disagreement_is_logged() -> None:
    said: list[str] = []
    build(as_bytes(line(outcome="failed", verdict="works")), log=said.append)
    assert said == ["1 recorded verdict(s) disagreed with the schema rule; kept the recomputed ones"]


def test_passwords_never_written() -> None:
    quoted = quote(PASSWORD, safe="")
    url = f"postgresql+asyncpg://postgres:{quoted}@127.0.0.1:5432/cell"
    lines = as_bytes(
        line(
            outcome="failed",
            verdict="broken",
            message=f"could not connect to {url} with password {PASSWORD}",
            traceback=f"File x\n  engine = create_async_engine('{url}')\nOSError: {quoted}",
        )
    )
    databases = [*DATABASES[:1], {**DATABASES[1], "reason": f"connecting with {PASSWORD} failed"}]
    result = build(lines, databases=databases, reason=f"crash mentioning {url}", status="crashed")
    text = json.dumps(result)
    assert PASSWORD not in text
    assert quoted not in text
    assert json.dumps(PASSWORD)[1:-1] not in text
    scenario = result["scenarios"][0]
    assert scenario["message"] == (
        "could not connect to postgresql+asyncpg://postgres:***@127.0.0.1:5432/cell with password ***"
    )
    assert result["databases"][1]["reason"] == "connecting with *** failed"


def test_url_passwords_redacted_even_when_unknown() -> None:
    result = build(as_bytes(line(outcome="failed", message="mysql+aiomysql://root:hunter2@db:3306/x refused")))
    assert result["scenarios"][0]["message"] == "mysql+aiomysql://root:***@db:3306/x refused"


def test_huge_and_hostile_text_is_capped() -> None:
    huge = "<script>alert(1)</script>\x1b[31m" + "x" * 10_000_000
    result = build(as_bytes(line(outcome="failed", message=huge, traceback=huge)))
    scenario = result["scenarios"][0]
    for key in ("message", "traceback"):
        assert len(scenario[key]) == collect.CAP
        assert "[truncated" in scenario[key]
    # escaping is the reader's job: the text is kept as it was, only shorter
    assert scenario["message"].startswith("<script>alert(1)</script>\x1b[31m")


def test_partial_and_invalid_lines_are_dropped() -> None:
    said: list[str] = []
    lines = as_bytes(line(), tail=b'{"id": "gather/one-ses')  # the process died mid-write
    lines = b"not json\n" + b"[1, 2]\n" + lines.replace(b"lazy-load", b"lazy-\xff-load")
    result = build(lines, log=said.append)
    assert len([s for s in result["scenarios"] if s["database"] == "sqlite"]) == 1
    assert result["scenarios"][0]["id"] == "context/lazy-\ufffd-load-in-test"  # invalid UTF-8 replaced, not fatal
    assert said == ["3 scenario line(s) could not be parsed and were dropped"]


def test_unknown_outcome_becomes_error() -> None:
    result = build(as_bytes(line(outcome="exploded", verdict="works")))
    scenario = result["scenarios"][0]
    assert scenario["outcome"] == "error"
    assert scenario["verdict"] == "broken"
    assert scenario["message"].startswith("unknown outcome 'exploded' recorded")


def test_no_lines_file(tmp_path: Path) -> None:
    assert collect.read_lines(tmp_path / "absent.jsonl").entries == []
    assert collect.read_lines(None).entries == []
    result = build(b"", status="install-failed", reason="No solution found", versions={})
    assert result["scenarios"] == []
    assert result["summary"] == {"works": 0, "broken": 0, "skipped": 0, "not-run": 0}
    assert result["status"] == "install-failed"


def test_unknown_status_refused() -> None:
    with pytest.raises(ValueError, match="unknown cell status 'done'"):
        build(b"", status="done")


def test_write_is_atomic_and_named(tmp_path: Path) -> None:
    result = build(as_bytes(line()))
    path = collect.write_result(result, tmp_path / "results")
    assert path == tmp_path / "results" / "py3.12-sa2.1-pa1.5-pt9__greenlight.json"
    assert json.loads(path.read_text(encoding="utf-8")) == result
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    result["status"] = "crashed"
    collect.write_result(result, tmp_path / "results")
    assert json.loads(path.read_text(encoding="utf-8"))["status"] == "crashed"


def test_ran_in_is_kept_and_documented() -> None:
    """A result reused from another cell's run says which (reports/SCHEMA.md documents the optional field)."""
    result = build(as_bytes(line(ran_in="py3.12-sa2.1-pa0.21-pt8.4"), line(id="gather/one-session")))
    assert result["scenarios"][0]["ran_in"] == "py3.12-sa2.1-pa0.21-pt8.4"
    assert "ran_in" not in result["scenarios"][1]
    assert "`scenarios[].ran_in`" in SCHEMA.read_text(encoding="utf-8")


def test_a_scenario_recorded_twice_counts_once_the_last_line() -> None:
    """A run resumed past a hung scenario records the shared results it reuses again: one entry each."""
    result = build(as_bytes(line(outcome="failed", verdict="broken"), line(ran_in="other-cell")))
    on_sqlite = [s for s in result["scenarios"] if s["database"] == "sqlite"]
    assert len(on_sqlite) == 1
    assert on_sqlite[0]["verdict"] == "works"
    assert on_sqlite[0]["ran_in"] == "other-cell"
