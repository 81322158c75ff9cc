"""badge.json follows the shields.io endpoint schema; its colour turns red on a broken support-set cell."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reports.badge import COLOURS, badge_data, render_svg
from reports.build import build
from reports.loading import load_results
from reports.verdicts import build_grid, support_glob
from tests.reports.results_factory import DATABASES, Spec, fabricate_run

# https://shields.io/badges/endpoint-badge: required keys and the types of the optional ones.
REQUIRED = {"schemaVersion": int, "label": str, "message": str}
OPTIONAL = {"color": str, "labelColor": str, "isError": bool, "namedLogo": str, "logoSvg": str,
            "logoColor": str, "logoWidth": int, "style": str, "cacheSeconds": int}  # fmt: skip
NAMED = {"brightgreen", "green", "yellowgreen", "yellow", "orange", "red", "blue", "lightgrey", "grey"}


def validate_endpoint(data: Any) -> None:
    """The shields endpoint schema: raises AssertionError naming the first violation."""
    assert isinstance(data, dict), "top level must be an object"
    for key, kind in REQUIRED.items():
        assert isinstance(data.get(key), kind), f"{key} must be {kind.__name__}"
    assert data["schemaVersion"] == 1, "schemaVersion must be 1"
    assert data["message"], "message must not be empty"
    for key, value in data.items():
        assert key in REQUIRED or key in OPTIONAL, f"unknown key {key}"
        if key in OPTIONAL:
            assert isinstance(value, OPTIONAL[key]), f"{key} must be {OPTIONAL[key].__name__}"
    assert data.get("color") in NAMED or re.fullmatch(r"[0-9a-fA-F]{3,6}", str(data.get("color")))


def test_badge_json_validates_and_counts_cells(tmp_path: Path) -> None:
    spec = fabricate_run(tmp_path / "results")
    built = build(tmp_path / "results", tmp_path / "out", docs=None)
    data = json.loads(built.badge_json.read_text(encoding="utf-8"))
    validate_endpoint(data)
    total = (len(spec.cells()) - 2 * len(spec.excluded)) * len(DATABASES)
    works = total - len(spec.breaks) - len(spec.unavailable)
    assert data["message"] == f"{works}/{total} cells"
    assert data["label"] == "compat"
    assert data["color"] == "red"  # the plugin's regression sits in the default support set (every cell)


def test_the_validator_rejects_bad_badges() -> None:
    for bad in ({"label": "x", "message": "y"}, {"schemaVersion": 2, "label": "x", "message": "y"},
                {"schemaVersion": 1, "label": "x", "message": "y", "colour": "red"}):  # fmt: skip
        with pytest.raises(AssertionError):
            validate_endpoint(bad)


@pytest.mark.parametrize(
    ("spec", "support", "colour"),
    [
        (Spec(), ("*",), "red"),
        # The broken cell is outside the support set; a not-run cell remains, so not green either.
        (Spec(), ("py3.9-*/*", "*/sqlite"), "yellow"),
        (Spec(breaks=(), unavailable=()), ("*",), "brightgreen"),
        (Spec(breaks=()), ("*",), "yellow"),
    ],
)
def test_colour(tmp_path: Path, spec: Spec, support: tuple[str, ...], colour: str) -> None:
    fabricate_run(tmp_path, spec)
    data = badge_data(build_grid(load_results(tmp_path), "greenlight"), support)
    validate_endpoint(data)
    assert data["color"] == colour


def test_support_patterns_match_cell_and_database() -> None:
    assert support_glob("py3.12-sa2.1-pa1", "postgresql-17", ["py3.12-*/postgresql-*"])
    assert not support_glob("py3.12-sa2.1-pa1", "sqlite", ["py3.12-*/postgresql-*"])


def test_svg_is_well_formed_and_says_the_same(tmp_path: Path) -> None:
    fabricate_run(tmp_path / "results")
    built = build(tmp_path / "results", tmp_path / "out", docs=None)
    data = json.loads(built.badge_json.read_text(encoding="utf-8"))
    root = ET.fromstring(built.badge_svg.read_text(encoding="utf-8"))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [data["label"], data["message"]]
    fills = {r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect")}
    assert COLOURS[data["color"]] in fills


def test_svg_escapes_its_text() -> None:
    svg = render_svg({"label": "<a>", "message": "1 & 2", "color": "red"})
    root = ET.fromstring(svg)
    assert [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")] == ["<a>", "1 & 2"]
