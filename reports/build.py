"""Command line: results folder -> ``index.html``, ``badge.svg``, ``badge.json``, ``data.json``, docs table, and the
plugin's packaged verified combinations (``verified.py``).

``python -m reports [--results DIR] [--previous DIR|index.html] [--out DIR] [--docs FILE | --no-docs]
[--verified FILE]``;
``nox -s report`` and the end of ``nox -s matrix`` call ``main``. Bad results files never stop the build: they
are named in the report and on stderr, and the exit status stays 0 as long as the report was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from matrix.rules import why_incomplete
from reports import badge, html, table, verified
from reports.diffs import describe_regressions, regressions
from reports.loading import decode_file, from_data, load_results, to_data
from reports.results import Problem, Run
from reports.safe import clean_text
from reports.verdicts import build_grid

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Built:
    index: Path
    badge_svg: Path
    badge_json: Path
    data_json: Path
    docs: Optional[Path]
    docs_written: bool
    run: Run
    verified: Optional[Path] = None  # plugin/pytest_greenlight/verified.json (or another path), when written to
    verified_written: bool = False


def load_previous(path: Path) -> Run:
    """A previous run: a results folder, a published ``index.html``, or a folder holding one."""
    if path.is_dir() and not any(path.glob("*__*.json")) and (path / "index.html").is_file():
        path = path / "index.html"
    if path.is_dir():
        return load_results(path)
    try:
        if path.suffix in (".html", ".htm"):
            data = html.extract_data(path.read_bytes().decode("utf-8", "replace"))
        else:
            data = decode_file(path.read_bytes())  # a downloaded data.json
    except (OSError, ValueError) as exc:
        return Run((), (Problem(clean_text(path.name), f"previous run unreadable: {clean_text(exc)}"),))
    return from_data(data, clean_text(path.name))


def run_date(run: Run) -> str:
    stamps = sorted(r.written_at for r in run.results if r.written_at)
    return stamps[-1][:10] if stamps else datetime.now(timezone.utc).strftime("%Y-%m-%d")


def build(
    results: Path,
    out: Path,
    *,
    previous: Optional[Path] = None,
    docs: Optional[Path] = None,
    plugin: str = "greenlight",
    baseline: str = "none",
    support: tuple[str, ...] = ("*",),
    verified_file: Optional[Path] = None,
) -> Built:
    run = load_results(results)
    before = load_previous(previous) if previous is not None else None
    grid = build_grid(run, plugin)
    out.mkdir(parents=True, exist_ok=True)
    generated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    index = out / "index.html"
    index.write_text(
        html.render_report(run, before, plugin=plugin, baseline=baseline, support=support, generated_at=generated_at),
        encoding="utf-8",
    )
    shield = badge.badge_data(grid, support)
    (out / "badge.json").write_text(json.dumps(shield, indent=2) + "\n", encoding="utf-8")
    (out / "badge.svg").write_text(badge.render_svg(shield), encoding="utf-8")
    (out / "data.json").write_text(json.dumps(to_data(run), ensure_ascii=False), encoding="utf-8")
    # An empty run states no facts; writing it would wipe the docs table.
    docs_written = bool(docs and run.results and table.write_if_changed(docs, table.render(run, grid, run_date(run))))
    # The plugin's verified combinations: the same grid as the docs table, so both say the same per combination.
    verified_written = bool(
        verified_file and run.results and verified.write_if_changed(verified_file, verified.render(run, grid))
    )
    files = (index, out / "badge.svg", out / "badge.json", out / "data.json")
    return Built(*files, docs, docs_written, run, verified_file, verified_written)


TRACKED_DOCS = ROOT / "docs" / "compatibility.md"


def docs_refusal(results: Path, docs: Path) -> Optional[str]:
    """Why the tracked docs table (or the plugin's packaged verified combinations) must not be rewritten from
    ``results`` (None: it may be).

    The table states what the project supports, so only a complete run of the default matrix may rewrite it: the
    matrix says so in ``build/run.json`` (written at the end of every ``nox -s matrix``), naming its run id; every
    results file must belong to that run. Another ``--docs`` path (a test, a preview) is written as asked.
    """
    if docs.resolve() not in (TRACKED_DOCS.resolve(), verified.PACKAGED.resolve()):
        return None
    manifest_path = results.parent / "run.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no run manifest at {manifest_path}: run the whole default matrix (`nox -s matrix`) first"
    if not manifest.get("complete"):
        return f"the last matrix run ({manifest.get('run_id')}) is not complete: {why_incomplete(manifest)}"
    stray = sorted({p.name for p in results.glob("*.json") if _run_id(p) not in (manifest.get("run_id"), None)})
    if stray:
        return f"{len(stray)} results file(s) are not from the complete run {manifest.get('run_id')} (e.g. {stray[0]})"
    return None


def _run_id(path: Path) -> Optional[str]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found.get("run_id") if isinstance(found, dict) else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "build" / "results", help="results folder")
    parser.add_argument("--previous", type=Path, help="previous run: results folder, or a published index.html")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "report", help="output folder")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "compatibility.md", help="docs table file")
    parser.add_argument("--no-docs", action="store_true", help="do not touch the docs table (partial runs)")
    parser.add_argument(
        "--verified",
        type=Path,
        help="the plugin's verified-combinations file (default: plugin/pytest_greenlight/verified.json when --docs "
        "is the tracked docs table; written under the same rule as it, never with --no-docs)",
    )
    parser.add_argument(
        "--complete",
        action="store_true",
        help="the results are a complete run of the default matrix (CI: every cell job succeeded); without it the "
        "tracked docs table is rewritten only when build/run.json says so",
    )
    parser.add_argument("--plugin", default="greenlight", help="subject that is the plugin under test")
    parser.add_argument("--baseline", default="none", help="subject that runs without any plugin")
    parser.add_argument(
        "--support",
        action="append",
        help="glob over '<cell id>/<database>' naming the support set (repeatable; default: every cell)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.results.is_dir():
        print(f"reports: no results folder at {args.results} (run `nox -s matrix` first)", file=sys.stderr)
        return 2
    support = tuple(args.support or ("*",))
    refusal = None if args.no_docs or args.complete else docs_refusal(args.results, args.docs)
    if refusal:
        args.no_docs = True
    # The plugin's packaged verdicts go with the tracked docs table: written when it may be, by the same rule.
    tracked = args.docs.resolve() == TRACKED_DOCS.resolve()
    verified_file = args.verified or (verified.PACKAGED if tracked else None)
    if verified_file is not None and not args.no_docs and not args.complete:
        refusal = refusal or docs_refusal(args.results, verified_file)
    if args.no_docs or refusal:
        verified_file = None
    built = build(
        args.results,
        args.out,
        previous=args.previous,
        docs=None if args.no_docs else args.docs,
        plugin=args.plugin,
        baseline=args.baseline,
        support=support,
        verified_file=verified_file,
    )
    # The first line says when the plugin broke what works without it in the support set (it fails the run).
    found = regressions(built.run, args.plugin, args.baseline, support)
    headline = describe_regressions(found, args.plugin, args.baseline)
    if headline:
        print(headline)
    for problem in built.run.problems:
        print(f"reports: warning: {problem.file}: {problem.message[:300]}", file=sys.stderr)
    shield = json.loads(built.badge_json.read_text(encoding="utf-8"))
    print(f"report: {built.index} ({len(built.run.results)} results files, {len(built.run.problems)} problems)")
    print(f"badge: {shield['label']} | {shield['message']} ({shield['color']})")
    if built.docs is not None:
        print(f"docs: {built.docs} {'rewritten' if built.docs_written else 'unchanged (same support facts)'}")
    elif refusal:
        print(f"docs: {args.docs} left alone: {refusal}")
    if built.verified is not None:
        print(f"verified: {built.verified} {'rewritten' if built.verified_written else 'unchanged (same rows)'}")
    elif refusal and (args.verified or tracked):
        print(f"verified: {args.verified or verified.PACKAGED} left alone: {refusal}")
    return 0
