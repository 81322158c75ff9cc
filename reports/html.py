"""Render the self-contained HTML report (one file, inline CSS and JS, no network) from a loaded run.

The overview grid, subject comparison and history are rendered here by Jinja with autoescaping on; the
heatmap and the drill-down are drawn in the browser from the embedded JSON with ``textContent`` only. Either
way no text from a results file is ever interpreted as markup.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Optional

import jinja2
from markupsafe import Markup

from reports.badge import badge_data, render_svg
from reports.diffs import (
    Change,
    Comparison,
    compare_subjects,
    describe_regressions,
    diff_grids,
    diff_runs,
    regressions,
)
from reports.loading import to_data
from reports.results import Run
from reports.verdicts import SYMBOLS, Grid, build_grid

DATA_ID = "report-data"
_DATA_BLOCK = re.compile(
    r'<script type="application/json" id="' + DATA_ID + r'">(.*?)</script>', re.DOTALL | re.IGNORECASE
)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def embed_json(data: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no "</script>" or "<!--" can survive."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return Markup(text)


def extract_data(html_text: str) -> Any:
    """The data embedded in a published report, so it can serve as the previous run for history."""
    found = _DATA_BLOCK.search(html_text)
    if found is None:
        raise ValueError("no embedded report data (script#report-data) in this HTML file")
    return json.loads(found.group(1))


def _comparison_rows(comparisons: list[Comparison], others: list[str]) -> list[dict[str, Any]]:
    """One row per (cell, database, driver) with the fixes, regressions and each subject's works/ran."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for c in comparisons:
        row = rows.setdefault(
            (c.cell_id, c.database, c.driver),
            {
                "cell_id": c.cell_id,
                "database": c.database,
                "driver": c.driver,
                "fixes": [],
                "regressions": [],
                "score": {name: Counter() for name in ["plugin", "baseline", *others]},
            },
        )
        if c.kind == "fix":
            row["fixes"].append(c.scenario)
        elif c.kind == "regression":
            row["regressions"].append(c.scenario)
        for name, verdict in [("plugin", c.plugin), ("baseline", c.baseline), *c.others.items()]:
            row["score"][name][verdict] += 1
    for row in rows.values():
        row["score"] = {
            name: f"{counts['works']}/{counts['works'] + counts['broken']}"
            if counts["works"] + counts["broken"]
            else "not run"
            for name, counts in row["score"].items()
        }
    # Rows where no subject ran anything (a database that could not be had) say nothing the grid doesn't.
    return [row for row in rows.values() if set(row["score"].values()) != {"not run"}]


def render_report(
    run: Run,
    previous: Optional[Run] = None,
    *,
    plugin: str = "greenlight",
    baseline: str = "none",
    support: tuple[str, ...] = ("*",),
    generated_at: str = "",
) -> str:
    subjects = run.subjects()
    grids: list[Grid] = [build_grid(run, s) for s in subjects] if subjects else [build_grid(run, plugin)]
    main_grid = next((g for g in grids if g.subject == plugin), grids[0])
    comparisons = compare_subjects(run, plugin, baseline)
    others = [s for s in subjects if s not in (plugin, baseline)]
    changes: list[Change] = diff_runs(run, previous) if previous is not None else []
    cell_changes = diff_grids(main_grid, build_grid(previous, plugin)) if previous is not None else []
    badge = badge_data(main_grid, support)
    template = _ENV.get_template("report.html.j2")
    return template.render(
        run=run,
        previous=previous,
        plugin=plugin,
        baseline=baseline,
        others=others,
        grids=grids,
        main_grid=main_grid,
        counts=main_grid.counts(),
        symbols=SYMBOLS,
        regressions=[c for c in comparisons if c.kind == "regression"],
        fixes=[c for c in comparisons if c.kind == "fix"],
        better_elsewhere=[c for c in comparisons if c.plugin == "broken" and "works" in c.others.values()],
        comparison_rows=_comparison_rows(comparisons, others),
        changes=changes,
        cell_changes=cell_changes,
        change_counts=Counter(c.kind for c in changes),
        badge=badge,
        badge_svg=Markup(render_svg(badge)),
        headline=describe_regressions(regressions(run, plugin, baseline, support), plugin, baseline),
        data_json=embed_json(to_data(run)),
        generated_at=generated_at,
    )
