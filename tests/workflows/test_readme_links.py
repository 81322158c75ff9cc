"""The README's nightly badge and links point at what nightly.yml publishes to GitHub Pages.

nightly.yml uploads index.html, badge.json and badge.svg to the root of the Pages site; the README must show the
badge through shields.io's endpoint for that badge.json, link the report at the same site, and link the docs table.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.workflows.tools import GITHUB, ROOT

README = ROOT / "README.md"
ENDPOINT = re.compile(r"https://img\.shields\.io/endpoint\?[^)\s\"'>]+")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def published_files() -> set[str]:
    """The file names the nightly puts on the Pages site (from its 'Keep the published files only' step)."""
    nightly = yaml.safe_load((GITHUB / "workflows" / "nightly.yml").read_text(encoding="utf-8"))
    script = next(s["run"] for s in nightly["jobs"]["report"]["steps"] if "build/pages" in s.get("run", ""))
    return set(re.findall(r"build/report/([\w.]+)", script))


def readme_problems(text: str) -> list[str]:
    endpoints = ENDPOINT.findall(text)
    if not endpoints:
        return ["no shields.io endpoint badge (https://img.shields.io/endpoint?url=...)"]
    badge_json = parse_qs(urlsplit(endpoints[0]).query).get("url", [""])[0]
    if not (badge_json.startswith("https://") and badge_json.endswith("/badge.json")):
        return [f"the badge's endpoint is not a published badge.json: {badge_json!r}"]
    site = badge_json[: -len("badge.json")]
    targets = LINK.findall(text)
    problems = []
    if not any(t in (site, site + "index.html") for t in targets):
        problems.append(f"no link to the report at {site} (where the badge.json is)")
    if not any(t.split("#")[0] == "docs/compatibility.md" for t in targets):
        problems.append("no link to docs/compatibility.md")
    return problems


def test_the_nightly_publishes_the_badge_and_the_report() -> None:
    assert published_files() == {"index.html", "badge.json", "badge.svg", "data.json"}


def test_the_readme_shows_the_nightly_badge_and_links_the_report_and_the_table() -> None:
    assert readme_problems(README.read_text(encoding="utf-8")) == []


GOOD = """[![compat](https://img.shields.io/endpoint?url=https://o.github.io/r/badge.json)](https://o.github.io/r/)
See [the table](docs/compatibility.md)."""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("# greenlight\n[table](docs/compatibility.md)", "no shields.io endpoint", id="no-badge"),
        pytest.param(GOOD.replace("badge.json", "badge.svg"), "not a published badge.json", id="svg"),
        pytest.param(
            GOOD.replace("(https://o.github.io/r/)", "(https://x.example/)"), "no link to the report", id="link"
        ),
        pytest.param(GOOD.replace("docs/compatibility.md", "docs/other.md"), "docs/compatibility.md", id="table"),
    ],
)
def test_a_wrong_readme_is_caught(text: str, problem: str) -> None:
    assert readme_problems(GOOD) == []
    assert any(problem in p for p in readme_problems(text)), readme_problems(text)
