"""``plugin/pytest_greenlight/verified.json``: the verified combinations the plugin's session header reads.

One row per (support-set cell, database) where the plugin's scenarios ran, with the same verdict the docs table
(``table.py``) shows there: both are made from the same grid (``verdicts.build_grid``), by ``nox -s report``, under the
same rule (only from a complete run: ``build.docs_refusal``). Each row also carries what the docs table leaves out
and a user can compare with their environment: the exact versions installed in the cell, and per driver its
version series and verdict. The reader is ``plugin/pytest_greenlight/verified.py``; the file names its columns,
so each side finds them by name (tests/reports/test_verified_data.py checks that the two agree).

Like the docs table, the file is rewritten only when a fact in it changes, not when only the dates do, so its git
history lists real changes, one line per row.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from reports.loading import write_if_facts_changed
from reports.results import Result, Run, natural_key
from reports.verdicts import Grid, cell_verdict

PACKAGED = Path(__file__).resolve().parents[1] / "plugin" / "pytest_greenlight" / "verified.json"
FORMAT, VERSION = "pytest-greenlight-verified", 1  # what the plugin's reader accepts
COMPONENTS = ("python", "sqlalchemy", "pytest-asyncio", "pytest", "greenlet")
COLUMNS = (*COMPONENTS, "database", "drivers", "verdict", "tier", "date", "cell")
RAN = ("works", "partial", "broken")  # a cell that did not run (not-run, excluded) verifies nothing


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _series(version: Optional[str]) -> str:
    return ".".join(version.split(".")[:2]) if version else "?"


def row(result: Result, database: str, verdict_label: str) -> list[Any]:
    """One data row for the plugin's verdict ``verdict_label`` on ``database`` in ``result``'s cell."""
    versions = {_canonical(k): v for k, v in result.versions.items()}
    drivers = []
    for driver in sorted({s.driver for s in result.scenarios if s.database == database}):
        # The driver's own verdict, by the same rule as the database's: its scenarios only.
        mine = tuple(s for s in result.scenarios if s.driver == driver)
        own = cell_verdict(replace(result, scenarios=mine), database)
        if own.kind in RAN:
            drivers.append([driver, _series(versions.get(_canonical(driver))), own.label])
    cell = result.cell
    return [
        cell.python,  # the series: an interpreter's patch release is not a matrix axis
        *(versions.get(name, "?") for name in COMPONENTS[1:]),
        database,
        drivers,
        verdict_label,
        cell.tier,
        result.written_at[:10] or "unknown",
        [cell.python, cell.sqlalchemy, cell.pytest_asyncio, cell.pytest],
    ]


def rows(grid: Grid) -> list[list[Any]]:
    """The support set's verified rows, in a fixed order (cell labels, then database), whatever order the
    results files were read in. ``grid`` is the docs table's: support tiers only, never canary."""
    found = []
    for key, (verdict, result) in sorted(grid.cells.items(), key=lambda item: _order(item[0])):
        if result is not None and verdict.kind in RAN:
            found.append(row(result, key[1][1], verdict.label))
    return found


def _order(key: tuple[tuple[str, str], tuple[str, str]]) -> tuple[Any, ...]:
    (python, sqlalchemy), (asyncio, database) = key
    return tuple(natural_key(part) for part in (python, sqlalchemy, asyncio, database))


def render(run: Run, grid: Grid) -> str:
    """The file's text: a header, then one row per line (a row's change is a one-line diff)."""
    found = rows(grid)
    runs = sorted({r.run_id for r in run.results if r.subject == grid.subject})
    head = json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "generated_by": "nox -s report (reports/verified.py) from the matrix results; do not edit",
            "runs": runs,
            "columns": list(COLUMNS),
        },
        ensure_ascii=False,
    )
    body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in found)
    return head[:-1] + ', "rows": [\n' + body + ("\n" if body else "") + "]}\n"


def _facts(text: str) -> Optional[list[list[Any]]]:
    """The rows without their dates: what decides whether the file must be rewritten."""
    try:
        data = json.loads(text)
        date = data["columns"].index("date")
        return [r[:date] + r[date + 1 :] for r in data["rows"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless ``path`` already states the same rows (dates aside); say whether it wrote."""
    return write_if_facts_changed(path, text, _facts)
