"""Hostile results stay inert text: HTML/JS, ANSI escapes, a 10 MB message, invalid UTF-8 and credentials."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

from reports.build import build
from reports.html import extract_data
from reports.loading import load_results
from reports.safe import MESSAGE_CAP, clean_text
from tests.reports.results_factory import PASSWORD, XSS, Spec, fabricate_run, result, write

PROBE = "<script>alert('probe')</script>"
URL = f"postgresql+asyncpg://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:5432/cell_db"
RAW_URL = f"mysql+aiomysql://root:{PASSWORD}@127.0.0.1:3306/test"


def hostile_run(directory: Path) -> None:
    """The realistic run, plus hostile text in every place a results file can carry text."""
    fabricate_run(directory)
    data = result(Spec(), "3.12", "2.1", "1", "greenlight")
    first, second, third = data["scenarios"][:3]
    first.update(verdict="broken", outcome="failed", message="HUGE" + "x" * 10_000_000, traceback=XSS * 1000)
    second.update(verdict="broken", outcome="failed", message=f"could not connect to {URL}", traceback=RAW_URL)
    third.update(id=PROBE, category=PROBE, message="MARK-INVALID")
    data["databases"][0]["reason"] = PROBE
    data["versions"]["<img src=x onerror=alert(1)>"] = PROBE
    data["summary"] = {"works": 0, "broken": 0, "skipped": 0, "not-run": 0}  # wrong on purpose: reported
    raw = json.dumps(data).encode().replace(b"MARK-INVALID", b"\xff\xfe\xc0 invalid \x1b[2J\x07")
    (directory / "py3.12-sa2.1-pa1__greenlight.json").write_bytes(raw)
    excluded = result(Spec(), "3.9", "2.1", "1", "none")
    excluded["reason"] = PROBE + "\x1b]0;title\x07"
    write(directory, excluded)
    evil_subject = result(Spec(), "3.12", "1.4", "1", "none")
    evil_subject["subject"]["name"] = PROBE
    evil_subject["cell"]["id"] = PROBE
    (directory / "evil__none.json").write_text(json.dumps(evil_subject), encoding="utf-8")


def test_clean_text_removes_escapes_caps_and_keeps_valid_unicode() -> None:
    assert clean_text("\x1b[31mred\x1b[0m and \x1b]8;;http://x\x07link\x1b]8;;\x07") == "red and link"
    assert clean_text("bell\x07 nul\x00") == "bell\N{REPLACEMENT CHARACTER} nul\N{REPLACEMENT CHARACTER}"
    assert clean_text("lone \ud800 surrogate") == "lone ? surrogate"
    capped = clean_text("y" * 10_000_000, MESSAGE_CAP)
    assert capped.startswith("y" * MESSAGE_CAP)
    assert capped.endswith("[truncated: 10,000,000 characters in the results file]")
    assert len(capped) < MESSAGE_CAP + 100
    assert clean_text(f"at {RAW_URL} then") == "at mysql+aiomysql://root:***@127.0.0.1:3306/test then"
    # A URL cut by the cap before its "@" loses its password too.
    assert PASSWORD[:4] not in clean_text("z" * 280 + RAW_URL, 300)


def test_hostile_results_render_as_inert_text(tmp_path: Path) -> None:
    hostile_run(tmp_path / "results")
    built = build(tmp_path / "results", tmp_path / "out", docs=tmp_path / "compatibility.md")
    page = built.index.read_text(encoding="utf-8")

    # Only the report's own two script elements exist, and no results text opens a tag.
    assert len(re.findall(r"<script\b", page, re.IGNORECASE)) == 2
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert XSS not in page
    assert "&lt;script&gt;alert(&#39;probe&#39;)&lt;/script&gt;" in page  # escaped where Jinja rendered it
    assert "\x1b" not in page
    assert "\x07" not in page
    assert len(page) < 5_000_000, "a 10 MB message must not make a 10 MB report"

    # The embedded data still holds the text, inert, for the browser to show with textContent.
    data = extract_data(page)
    by_file = {r["file"]: r for r in data["results"]}
    scenarios = by_file["py3.12-sa2.1-pa1__greenlight.json"]["scenarios"]
    assert scenarios[2]["id"] == PROBE
    assert scenarios[2]["message"].startswith("\N{REPLACEMENT CHARACTER}" * 3 + " invalid ")
    assert scenarios[0]["message"].endswith("[truncated: 10,000,004 characters in the results file]")
    problems = {p["file"]: p["message"] for p in data["problems"]}
    assert problems["py3.12-sa2.1-pa1__greenlight.json"].startswith("summary disagrees")


def test_credentials_appear_in_no_output(tmp_path: Path) -> None:
    hostile_run(tmp_path / "results")
    built = build(tmp_path / "results", tmp_path / "out", docs=tmp_path / "compatibility.md")
    outputs = [built.index, built.badge_svg, built.badge_json, built.data_json, tmp_path / "compatibility.md"]
    for path in outputs:
        text = path.read_text(encoding="utf-8")
        for secret in (PASSWORD, quote(PASSWORD, safe=""), json.dumps(PASSWORD)[1:-1]):
            assert secret not in text, f"password found in {path.name}"
    assert "postgres:***@127.0.0.1:5432/cell_db" in built.data_json.read_text(encoding="utf-8")


def test_the_rest_of_the_run_survives_the_hostile_files(tmp_path: Path) -> None:
    hostile_run(tmp_path / "results")
    run = load_results(tmp_path / "results")
    files = {r.file for r in run.results}
    assert len(files) == len(list((tmp_path / "results").glob("*.json")))
    assert PROBE in run.subjects()
