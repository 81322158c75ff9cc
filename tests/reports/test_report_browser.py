"""The built report in a real browser: Playwright drives Debian's chromium headless, from a file on disk.

It checks what a reader does: the overview grid, the heatmap filters and their URL state, the drill-down, the
history, the data download, and that an XSS probe in a failure message stays text. A screenshot of the
report is saved to build/report/ for the README.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from reports.build import build
from tests.reports.results_factory import DATABASES, SCENARIOS, XSS, Spec, fabricate_run

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
REAL_RESULTS = ROOT / "build" / "results"
SCREENSHOTS = ROOT / "build" / "report"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless chromium as root in a container, with every background fetch off: the report must need no network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    # Any request other than the file itself would be a CDN or a leak: record it.
    requests: list[str] = []
    opened.on(
        "request",
        lambda req: requests.append(req.url) if not req.url.startswith(("file:", "blob:")) else None,
    )
    yield opened
    context.close()
    assert errors == [], f"the page logged errors: {errors}"
    assert requests == [], f"the page fetched from the network: {requests}"


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    fabricate_run(base / "prev", Spec(run_id="prev", sqlalchemy_patch={"1.4": "1.4.54", "2.1": "2.1.9"}, breaks=()))
    fabricate_run(base / "cur")
    return build(base / "cur", base / "out", previous=base / "prev", docs=None).index


def heat_rows(page: Any) -> list[str]:
    return page.locator("#heatmap-table tbody th.row").all_inner_texts()


def test_grid_filters_drilldown_history_download(page: Any, fabricated: Path, tmp_path: Path) -> None:
    spec = Spec()
    url = fabricated.as_uri()
    page.goto(url)

    # Overview grid: every cell of the plugin's grid, with symbol and text.
    grid = page.locator('table.grid[data-subject="greenlight"] td')
    assert grid.count() == len(spec.cells()) * len(DATABASES)
    partial = page.locator('table.grid[data-subject="greenlight"] td[data-kind="partial"]')
    assert partial.inner_text().startswith("◐ partial 9 of 10")
    assert page.locator("#regressions h3").inner_text() == "✗ 1 regression caused by greenlight"

    # Filters change the heatmap and live in the URL.
    assert sorted(heat_rows(page)) == sorted(sid for sid, _, _ in SCENARIOS)
    page.select_option("#filters select[name=category]", "tasks")
    assert heat_rows(page) == ["tasks/gather-children"]
    assert "category=tasks" in page.url
    page.select_option("#filters select[name=category]", "")
    page.fill("#filters input[name=q]", "lazy")
    assert heat_rows(page) == ["context/lazy-load-in-test"]
    page.select_option("#filters select[name=verdict]", "broken")
    assert heat_rows(page) == []
    page.fill("#filters input[name=q]", "")
    assert heat_rows(page) == ["tasks/gather-children"]
    linked = page.url
    assert "verdict=broken" in linked

    # A linked view opens with the same filters.
    page.goto("about:blank")
    page.goto(linked)
    assert page.locator("#filters select[name=verdict]").input_value() == "broken"
    broken = page.locator("#heatmap-table td[data-verdict]")
    assert broken.count() == 1
    assert broken.get_attribute("data-cell") == spec.breaks[0][0]

    # Drill-down: versions, server versions, each scenario with message, collapsed traceback and duration.
    broken.click()
    drill = page.locator("#drilldown")
    assert drill.is_visible()
    assert "cell=py3.12-sa2.1-pa1" in page.url
    assert page.locator("#dd-title").inner_text() == "py3.12-sa2.1-pa1 · greenlight"
    assert "sqlalchemy\t2.1.10" in page.locator("#dd-versions").inner_text()
    assert "17.2" in page.locator("#dd-databases").inner_text()
    row = page.locator("#dd-scenarios tr.focus")  # the clicked scenario, on the clicked database and driver
    assert row.count() == 1
    assert "✗ broken" in row.inner_text()
    assert "0.125 s" in row.inner_text()
    trace = row.locator("details pre")
    assert not trace.is_visible()
    row.locator("details summary").click()
    assert "Traceback (most recent call last)" in trace.inner_text()
    page.click("#dd-close")
    assert not drill.is_visible()

    # History: the new failure, attributed to the SQLAlchemy upgrade.
    history = page.locator("#history-table").inner_text()
    assert "new failure" in history
    assert "broke when SQLAlchemy went 2.1.9 → 2.1.10" in history

    # Data download: the embedded JSON, whole.
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "data.json"
    download.value.save_as(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert len(data["results"]) == len(list((fabricated.parent.parent / "cur").glob("*__*.json")))


def test_xss_probe_in_a_message_stays_text(page: Any, fabricated: Path) -> None:
    cell, subject, database, _, scenario = Spec().hostile
    page.goto(f"{fabricated.as_uri()}#cell={cell}&subject={subject}&database={database}")
    message = page.locator("#dd-scenarios tbody tr", has_text=scenario).locator("pre.msg")
    shown = message.inner_text()
    assert shown.startswith("<script>window.__xss = 1</script><img src=x onerror=")
    assert shown.endswith("red")  # the ANSI colour codes are gone, the word stays
    assert shown != XSS
    assert page.evaluate("window.__xss") is None
    assert page.locator("#drilldown img").count() == 0
    page.fill("#filters input[name=q]", "__xss")  # searching for it renders it in titles too: still inert
    page.select_option("#filters select[name=subject]", "none")
    assert page.locator("#heatmap-table td[data-verdict]").count() == 1
    assert page.evaluate("window.__xss") is None


def test_real_results_and_screenshot(page: Any, fabricated: Path, tmp_path: Path) -> None:
    """Real matrix results when there are any (and the README screenshot of them), else the fabricated run."""
    results = fabricated.parent.parent / "cur"
    if any(REAL_RESULTS.glob("*__*.json")):
        results = tmp_path / "real"  # a snapshot: a running matrix may add files meanwhile
        results.mkdir()
        for path in REAL_RESULTS.glob("*__*.json"):
            shutil.copyfile(path, results / path.name)
    index = build(results, tmp_path / "out", docs=None).index
    files = [json.loads(p.read_text(encoding="utf-8")) for p in results.glob("*__*.json")]
    plugin = [f for f in files if f["subject"]["name"] == "greenlight" and f["status"] == "completed"]
    page.goto(index.as_uri())

    # The heatmap shows every scenario the plugin ran; a grid link opens the drill-down with the exact versions.
    assert sorted(heat_rows(page)) == sorted({s["id"] for f in plugin for s in f["scenarios"]})
    first = plugin[0]
    page.locator(f'table.grid[data-subject="greenlight"] a[href*="cell={first["cell"]["id"]}&"]').first.click()
    assert page.locator("#drilldown").is_visible()
    versions = page.locator("#dd-versions").inner_text()
    assert all(f"{name}\t{version}" in versions for name, version in first["versions"].items())
    (database,) = parse_qs(urlparse(page.url).fragment)["database"]
    assert page.locator("#dd-scenarios tbody tr").count() == sum(s["database"] == database for s in first["scenarios"])
    page.goto(index.as_uri())
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "screenshot.png"), full_page=False)
    assert (SCREENSHOTS / "screenshot.png").stat().st_size > 10_000


def test_a_result_of_another_cells_run_says_so_in_the_drilldown(page: Any, tmp_path: Path) -> None:
    """``ran_in`` (matrix.share): the drill-down names the cell whose run it is and why that stands for this one."""
    fabricate_run(tmp_path / "cur")
    documents = {
        path: json.loads(path.read_text(encoding="utf-8")) for path in (tmp_path / "cur").glob("*__greenlight.json")
    }
    path, document = next((p, d) for p, d in sorted(documents.items()) if d["scenarios"])
    entry = document["scenarios"][0]
    entry["ran_in"] = "py3.12-sa2.1-pa0.21"
    path.write_text(json.dumps(document), encoding="utf-8")
    index = build(tmp_path / "cur", tmp_path / "out", docs=None).index
    page.goto(f"{index.as_uri()}#cell={document['cell']['id']}&subject=greenlight&database={entry['database']}")
    rows = page.locator("#dd-scenarios tbody tr", has_text="result of the run in cell")
    assert rows.count() == 1
    assert (
        "(result of the run in cell py3.12-sa2.1-pa0.21: this scenario does not depend on pytest-asyncio or pytest)"
        in rows.inner_text()
    )
    assert entry["id"] in rows.inner_text()
