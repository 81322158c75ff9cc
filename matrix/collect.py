"""A cell's outcome -> one results JSON file of ``reports/SCHEMA.md``.

Input: the cell's metadata (axes, subject, status, versions, databases) and the JSON lines the scenario
recorder appended while pytest ran. Output: a dict in exactly the schema's shape, written atomically.
Everything that came from the scenario run is treated as untrusted: lines that do not parse are dropped (a
crash can cut the last one in half), verdicts are recomputed from ``expected``/``outcome``, every database
password is replaced by ``***`` and every text is capped at 4,000 characters.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import quote, unquote

from matrix.rules import CAP, OUTCOMES, PASS_OR, STATUSES, VERDICTS, cap, make_redactor

SCHEMA_VERSION = 1
CELL_KEYS = ("id", "python", "sqlalchemy", "pytest_asyncio", "pytest", "tier")  # pytest: only with a pytest axis
SCENARIO_KEYS = (
    "id",
    "category",
    "database",
    "driver",
    "checks",
    "expected",
    "outcome",
    "exception",
    "verdict",
    "duration",
    "message",
    "traceback",
)


# --- text hygiene -------------------------------------------------------------------------------------------


def redact_file(path: Union[str, Path], secrets: Iterable[str]) -> bool:
    """Redact, in place, a file another program wrote (pytest's JUnit XML holds failure messages and captured
    output verbatim): raw, URL-quoted and XML-escaped forms of every secret, and any URL password. Returns
    whether anything was replaced; a missing file is left missing."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False
    forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""), unquote(secret))}
    escaped = {html.escape(form, quote=both) for form in forms for both in (True, False)}
    clean = make_redactor([*forms, *escaped])(text)
    if clean == text:
        return False
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(clean)
    os.replace(temp, path)
    return True


def _clean(value: Any, redact: Callable[[str], str]) -> Any:
    """Redact and cap every string inside ``value`` (dicts, lists and scalars)."""
    if isinstance(value, str):
        # Cut a 10 MB message down before redacting: only the first CAP characters are kept anyway, so a
        # secret straddling the 2 x CAP cut lies in the part that is dropped.
        return cap(redact(value[: 2 * CAP]) if len(value) > 2 * CAP else redact(value))
    if isinstance(value, dict):
        return {key: _clean(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item, redact) for item in value]
    return value


# --- scenario lines -----------------------------------------------------------------------------------------


@dataclass
class Lines:
    entries: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # lines that were not a JSON object (e.g. cut in half by a crash)


def read_lines(source: Union[str, Path, bytes, None]) -> Lines:
    """Parse the recorder's JSON-lines file (a path, or its bytes); a missing file means nothing finished."""
    if source is None:
        return Lines()
    if isinstance(source, bytes):
        raw = source
    else:
        try:
            raw = Path(source).read_bytes()
        except FileNotFoundError:
            return Lines()
    found = Lines()
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            found.dropped += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            found.entries.append(entry)
        else:
            found.dropped += 1
    return found


def compute_verdict(expected: Any, outcome: Any, exception: Any, recorded: Any = None) -> str:
    """The schema's verdict rule: ``works`` when the outcome matches ``expected``, ``broken`` otherwise.

    ``raises:X`` is met by a failure or error raising ``X``; ``pass or raises:X`` also by a pass. The recorder
    also accepts a subclass of ``X``, which only it can see (it has the class); so a recorded ``works`` for a
    failure with another exception name is kept, and every other case is decided here.
    """
    if outcome in ("skipped", "not-run"):
        return str(outcome)
    if isinstance(expected, str) and expected.startswith(PASS_OR):
        if outcome == "passed":
            return "works"
        expected = expected[len(PASS_OR) :]
    if expected == "pass":
        return "works" if outcome == "passed" else "broken"
    if isinstance(expected, str) and expected.startswith("raises:") and outcome in ("failed", "error"):
        if exception == expected[len("raises:") :]:
            return "works"
        return "works" if recorded == "works" and exception else "broken"
    return "broken"


def _scenario(entry: Mapping[str, Any]) -> dict[str, Any]:
    scenario = {key: entry.get(key) for key in SCENARIO_KEYS}
    if scenario["outcome"] not in OUTCOMES:
        scenario["message"] = f"unknown outcome {scenario['outcome']!r} recorded; " + str(scenario["message"] or "")
        scenario["outcome"] = "error"
    duration = scenario["duration"]
    scenario["duration"] = round(float(duration), 4) if isinstance(duration, (int, float)) else None
    ran_on = entry.get("ran_on")
    if isinstance(ran_on, str) and ran_on:
        # The scenario does not depend on the database: this entry repeats the result of its run there.
        scenario["ran_on"] = ran_on
    ran_in = entry.get("ran_in")
    if isinstance(ran_in, str) and ran_in:
        # The scenario depends on neither pytest-asyncio nor pytest: this is the result of its run in that cell, with
        # this cell's expectation and verdict (matrix.share).
        scenario["ran_in"] = ran_in
    return scenario


def _not_run(scenarios: Sequence[Mapping[str, Any]], database: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``not-run`` entry per known scenario for a (database, driver) that could not be had.

    The scenario list comes from the databases that did run (``expected`` is taken from the first of them: it
    can differ per driver, but a not-run entry is never judged against it).
    """
    seen: dict[str, Mapping[str, Any]] = {}
    for scenario in scenarios:
        seen.setdefault(scenario["id"], scenario)
    reason = database.get("reason") or "the database could not be had"
    return [
        {
            "id": first["id"],
            "category": first.get("category"),
            "database": database["name"],
            "driver": database["driver"],
            "checks": first.get("checks"),
            "expected": first.get("expected"),
            "outcome": "not-run",
            "exception": None,
            "verdict": "not-run",
            "duration": None,
            "message": reason,
            "traceback": None,
        }
        for first in seen.values()
    ]


def summarize(scenarios: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for scenario in scenarios:
        counts[scenario["verdict"]] = counts.get(scenario["verdict"], 0) + 1
    return counts


# --- the result ---------------------------------------------------------------------------------------------


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_result(
    *,
    run_id: str,
    cell: Mapping[str, str],
    subject: Mapping[str, Optional[str]],
    status: str,
    reason: Optional[str] = None,
    versions: Optional[Mapping[str, str]] = None,
    databases: Sequence[Mapping[str, Any]] = (),
    lines: Optional[Lines] = None,
    secrets: Iterable[str] = (),
    cache_key: Optional[str] = None,
    timings: Optional[Mapping[str, float]] = None,
    log: Optional[Callable[[str], None]] = None,
    interpreter: Optional[Mapping[str, Optional[str]]] = None,
) -> dict[str, Any]:
    """Assemble one results document. ``databases`` entries: name, driver, status, reason, server_version."""
    if status not in STATUSES:
        raise ValueError(f"unknown cell status {status!r} (one of {STATUSES})")
    redact = make_redactor(secrets)
    lines = lines or Lines()
    # One entry per (scenario, database, driver): a run resumed past a hung scenario reuses shared results again,
    # and the last line written is the one that counts.
    last = {(e.get("id"), e.get("database"), e.get("driver")): e for e in lines.entries}
    lines = Lines(list(last.values()), lines.dropped)
    scenarios = [_scenario(entry) for entry in lines.entries]
    disagreements = 0
    for scenario, entry in zip(scenarios, lines.entries, strict=True):
        verdict = compute_verdict(
            scenario["expected"], scenario["outcome"], scenario["exception"], entry.get("verdict")
        )
        disagreements += verdict != entry.get("verdict")
        scenario["verdict"] = verdict
    if log and disagreements:
        log(f"{disagreements} recorded verdict(s) disagreed with the schema rule; kept the recomputed ones")
    if log and lines.dropped:
        log(f"{lines.dropped} scenario line(s) could not be parsed and were dropped")
    db_entries = [
        {
            "name": db["name"],
            "driver": db["driver"],
            "status": db.get("status", "ok"),
            "reason": db.get("reason"),
            "server_version": db.get("server_version"),
        }
        for db in databases
    ]
    ran = {(s["database"], s["driver"]) for s in scenarios}
    for db in db_entries:
        if db["status"] != "ok" and (db["name"], db["driver"]) not in ran:
            scenarios.extend(_not_run(scenarios, db))
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "written_at": now(),
        "cell": {key: cell[key] for key in CELL_KEYS if key in cell},
        "subject": {"name": subject["name"], "requirement": subject.get("requirement")},
        "status": status,
        "reason": reason,
        "versions": dict(versions or {}),
        # The exact Python that ran and where it came from (PATH, or a runtime root): null when none was built.
        "interpreter": dict(interpreter) if interpreter is not None else None,
        "databases": db_entries,
        "scenarios": scenarios,
        "summary": summarize(scenarios),
        "cache_key": cache_key,
    }
    if timings is not None:
        result["timings"] = {key: round(value, 3) for key, value in timings.items()}
    return _clean(result, redact)


def result_path(directory: Union[str, Path], cell_id: str, subject: str, suffix: str = ".json") -> Path:
    return Path(directory) / f"{cell_id}__{subject}{suffix}"


def write_result(result: Mapping[str, Any], directory: Union[str, Path]) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a file, also under ``nox -j``."""
    target = result_path(directory, result["cell"]["id"], result["subject"]["name"])
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=1, ensure_ascii=False)
            out.write("\n")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
