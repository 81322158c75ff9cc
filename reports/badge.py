"""The compatibility badge: ``badge.json`` in the shields.io endpoint schema and a matching ``badge.svg``.

The message counts grid cells (cell and database) of the plugin that work, out of those not excluded:
"compat | 212/225 cells". The grid holds the support set's tiers only (``matrix.rules.SUPPORT_TIERS``): canary and
legacy cells are never counted. The colour is red as soon as the plugin is broken (or partly broken) in a cell of
the support set, so a green badge can never hide a regression; yellow when nothing is broken but some cells
did not run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from reports.verdicts import Grid, in_support_set

LABEL = "compat"
# shields.io named colours and the hex values its own renderer uses for them.
COLOURS = {"brightgreen": "#4c1", "yellow": "#dfb317", "red": "#e05d44", "lightgrey": "#9f9f9f"}


def badge_data(grid: Grid, support: Iterable[str] = ("*",)) -> dict[str, Any]:
    patterns = tuple(support)
    counted = [(v, r, col[1]) for (_, col), (v, r) in grid.cells.items() if v.kind != "excluded"]
    works = sum(v.kind == "works" for v, _, _ in counted)
    broken_in_support = any(
        v.kind in ("broken", "partial") and r is not None and in_support_set(r, db, patterns) for v, r, db in counted
    )
    if not counted:
        colour = "lightgrey"
    elif broken_in_support:
        colour = "red"
    elif works == len(counted):
        colour = "brightgreen"
    else:
        colour = "yellow"
    return {"schemaVersion": 1, "label": LABEL, "message": f"{works}/{len(counted)} cells", "color": colour}


def _text_width(text: str) -> int:
    # Verdana 11px, as shields renders: about 7px a character, narrower for digits' neighbours like "/" and
    # ".".
    return sum(4 if ch in " ./|il1" else 7 for ch in text) + 10


def render_svg(data: dict[str, Any]) -> str:
    label, message = escape(str(data["label"])), escape(str(data["message"]))
    colour = COLOURS.get(str(data["color"]), COLOURS["lightgrey"])
    left, right = _text_width(str(data["label"])), _text_width(str(data["message"]))
    total = left + right
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" \
aria-label="{label}: {message}">
  <title>{label}: {message}</title>
  <linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
  <clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>
  <g clip-path="url(#r)">
    <rect width="{left}" height="20" fill="#555"/>
    <rect x="{left}" width="{right}" height="20" fill="{colour}"/>
    <rect width="{total}" height="20" fill="url(#s)"/>
  </g>
  <g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
    <text x="{left / 2}" y="14">{label}</text>
    <text x="{left + right / 2}" y="14">{message}</text>
  </g>
</svg>
"""
