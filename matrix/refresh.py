"""``nox -s axes``: choose the matrix's exact versions from PyPI metadata and write ``matrix/axes.lock.json``.

For every package a matrix axis names (and greenlet, for the canary tier) it asks the package index which
releases exist (PEP 691 JSON: versions, ``Requires-Python``, yanked files), and chooses per series that
``axes.toml`` names:

* ``floor``: the lowest release of the series the plugin claims to support (``pyproject.toml``: the project's
  dependencies and the ``tests`` dependency group, read now, not copied here);
* ``newest``: the newest release of the series (pre-releases, dev releases and yanked releases never count);

and, per package, the newest release and the newest pre-release newer than it (the canary tier's). For each
chosen release it reads the wheel's ``METADATA`` for the bounds it declares on the other matrix packages
(pytest-asyncio 1.4 requires ``pytest>=8.4``): :mod:`matrix.lock` turns those and ``Requires-Python`` into
exclusions. The lock is sorted and has no timestamp: the same index state writes the same file.

    python -m matrix.refresh [--axes FILE] [--pyproject FILE] [--record FILE] [--replay FILE] [--check]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Optional, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from matrix import axes, axes_file, lock

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INDEX = "https://pypi.org/simple"
# The packages whose declared bounds on each other can rule a combination out.
MATRIX_PACKAGES = ("greenlet", "pytest", "pytest-asyncio", "sqlalchemy")
CLAIM_GROUPS = ("plugin-tests",)  # dependency groups whose bounds are claims too (pytest-asyncio is not a dependency)


class Source(Protocol):
    """Where release metadata comes from: the package index, or a recording of it (tests)."""

    location: str

    def releases(self, name: str) -> dict[str, Optional[str]]:
        """Every release that has a file not yanked: version -> its Requires-Python (None if unstated)."""

    def requires_dist(self, name: str, version: str) -> list[str]:
        """The release's ``Requires-Dist`` lines."""


def index_url(environ: Optional[Mapping[str, str]] = None) -> str:
    """The index pip and uv are configured with (a proxy of PyPI, say); PyPI itself otherwise."""
    environ = os.environ if environ is None else environ
    for variable in ("GREENLIGHT_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if environ.get(variable):
            return environ[variable].rstrip("/")
    return DEFAULT_INDEX


@dataclass
class IndexSource:
    """A PEP 691 simple index (JSON). Metadata comes from each release's smallest wheel (the index here serves
    no PEP 658 ``.metadata`` files), cached under ``cache`` since a release's files never change."""

    location: str = field(default_factory=index_url)
    cache: Optional[Path] = None
    record: dict[str, Any] = field(default_factory=dict)  # what was fetched, for --record
    _pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def _files(self, name: str) -> list[dict[str, Any]]:
        name = canonicalize_name(name)
        if name not in self._pages:
            url = f"{self.location}/{name}/"
            request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                page = json.load(response)
            self._pages[name] = [dict(f, url=urllib.parse.urljoin(url, f["url"])) for f in page["files"]]
        return self._pages[name]

    def releases(self, name: str) -> dict[str, Optional[str]]:
        found: dict[str, Optional[str]] = {}
        for file in self._files(name):
            version = _file_version(file["filename"])
            if version is None or file.get("yanked"):
                continue
            if found.get(version) is None:
                found[version] = file.get("requires-python") or None
        self.record.setdefault(canonicalize_name(name), {})["releases"] = dict(sorted(found.items()))
        return found

    def requires_dist(self, name: str, version: str) -> list[str]:
        cached = self.cache / f"{canonicalize_name(name)}-{version}.METADATA" if self.cache else None
        if cached is not None and cached.is_file():
            text = cached.read_text(encoding="utf-8")
        else:
            text = self._download_metadata(name, version)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(text, encoding="utf-8")
        lines = HeaderParser().parsestr(text).get_all("Requires-Dist") or []
        self.record.setdefault(canonicalize_name(name), {}).setdefault("requires_dist", {})[version] = lines
        return list(lines)

    def _download_metadata(self, name: str, version: str) -> str:
        wheels = [
            f
            for f in self._files(name)
            if f["filename"].endswith(".whl") and _file_version(f["filename"]) == version and not f.get("yanked")
        ]
        if not wheels:
            return ""  # an sdist-only release: its bounds are unknown, so they exclude nothing
        wheel = min(wheels, key=lambda f: (not f["filename"].endswith("-none-any.whl"), f.get("size") or 0))
        with urllib.request.urlopen(wheel["url"], timeout=120) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return archive.read(member).decode("utf-8", "replace")


@dataclass
class RecordedSource:
    """Metadata recorded from the index by ``--record`` (tests replay it without a network)."""

    data: Mapping[str, Any]
    location: str = "recorded"

    @classmethod
    def from_file(cls, path: Path) -> RecordedSource:
        return cls(json.loads(path.read_text(encoding="utf-8")), f"recorded in {path.name}")

    def releases(self, name: str) -> dict[str, Optional[str]]:
        return dict(self.data[canonicalize_name(name)]["releases"])

    def requires_dist(self, name: str, version: str) -> list[str]:
        return list(self.data[canonicalize_name(name)].get("requires_dist", {}).get(version, []))


def _file_version(filename: str) -> Optional[str]:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None  # .exe/.egg and other legacy files


# --- claims -------------------------------------------------------------------------------------------------


def claims(pyproject: Path) -> dict[str, list[str]]:
    """distribution -> the specifiers the plugin claims (several when pyproject lists it more than once, e.g.
    under different markers: a release satisfying any of them is claimed)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    texts = list(data.get("project", {}).get("dependencies", []))
    for group in CLAIM_GROUPS:
        texts += [t for t in data.get("dependency-groups", {}).get(group, []) if isinstance(t, str)]
    found: dict[str, list[str]] = {}
    for text in texts:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name in MATRIX_PACKAGES and str(requirement.specifier) not in found.get(name, []):
            found.setdefault(name, []).append(str(requirement.specifier))
    return {name: sorted(specs) for name, specs in sorted(found.items())}


def claimed(version: Version, specifiers: Sequence[str]) -> bool:
    return not specifiers or any(SpecifierSet(s).contains(version) for s in specifiers)


# --- choosing -----------------------------------------------------------------------------------------------


def declared_bounds(lines: Iterable[str]) -> dict[str, str]:
    """``Requires-Dist`` lines -> matrix package -> specifier (extras' dependencies left out)."""
    found: dict[str, SpecifierSet] = {}
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name not in MATRIX_PACKAGES or (requirement.marker and "extra" in str(requirement.marker)):
            continue
        if str(requirement.specifier):
            found[name] = found.get(name, SpecifierSet()) & requirement.specifier
    return {name: str(spec) for name, spec in sorted(found.items())}


def choose_package(
    name: str, series: Sequence[str], claim: Sequence[str], source: Source
) -> tuple[dict[str, Any], list[str]]:
    """One package's lock entry and the problems (a series with no release, or none the plugin claims)."""
    available = source.releases(name)
    versions = sorted(Version(v) for v in available)
    finals = [v for v in versions if not v.is_prerelease and not v.is_devrelease]
    problems: list[str] = []
    chosen: dict[str, dict[str, str]] = {}
    for label in series:
        members = [v for v in finals if lock.in_series(str(v), label)]
        if not members:
            problems.append(f"{name} {label}: no release of this series on the index")
            continue
        entry = {"newest": str(members[-1])}
        floors = [v for v in members if claimed(v, claim)]
        if floors:
            entry["floor"] = str(floors[0])
        else:
            problems.append(f"{name} {label}: no release of this series satisfies the claim {' or '.join(claim)}")
        chosen[label] = entry
    newest = finals[-1] if finals else None
    pres = [v for v in versions if v.is_prerelease and (newest is None or v > newest)]
    pre = pres[-1] if pres else None
    picked = {v for entry in chosen.values() for v in entry.values()}
    picked |= {str(v) for v in (newest, pre) if v is not None}
    releases = {}
    for version in sorted(picked, key=Version):
        info: dict[str, Any] = {"requires": declared_bounds(source.requires_dist(name, version))}
        if available.get(version):
            info["requires_python"] = available[version]
        releases[version] = info
    entry = {
        "series": chosen,
        "newest": None if newest is None else str(newest),
        "pre": None if pre is None else str(pre),
        "releases": releases,
    }
    return entry, problems


def build_lock(matrix: axes.Matrix, pyproject: Path, source: Source) -> tuple[dict[str, Any], list[str]]:
    """The lock's data for ``matrix`` (axes.toml's series) and the claims in ``pyproject``."""
    wanted = axes.series_in_use(matrix)
    for extra in lock.CANARY_EXTRAS:
        wanted.setdefault(extra, [])
    claim = claims(pyproject)
    packages: dict[str, Any] = {}
    problems: list[str] = []
    for name in sorted(n for n, series in wanted.items() if series or n in lock.CANARY_EXTRAS):
        packages[name], found = choose_package(name, wanted[name], claim.get(name, []), source)
        problems += found
    data = {
        "format": lock.FORMAT,
        "comment": "Written by `nox -s axes` (matrix/refresh.py) from the package index; do not edit by hand.",
        "source": source.location,
        "claims": {name: " or ".join(specs) for name, specs in claim.items()},
        "packages": packages,
    }
    return data, problems


def render(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def describe(matrix: axes.Matrix) -> list[str]:
    """What the refreshed lock means: versions per series, and the cells it rules out (with the reason)."""
    assert matrix.lock is not None
    lines = []
    for name, package in sorted(matrix.lock.packages.items()):
        parts = [f"{label}: floor {c.get('floor', '-')}, newest {c['newest']}" for label, c in package.series.items()]
        parts.append(f"newest {package.newest}, pre-release {package.pre or 'none newer'}")
        lines.append(f"  {name}: " + "; ".join(parts))
    plans = axes.expand(matrix)
    excluded = [p for p in plans if p.excluded_reason]
    tiers: dict[str, int] = {}
    for plan in plans:
        tiers[plan.cell.tier] = tiers.get(plan.cell.tier, 0) + 1
    lines.append(
        f"  cells: {len(plans)} ({', '.join(f'{t} {n}' for t, n in tiers.items())}); "
        f"{len(excluded)} excluded, {len(plans) - len(excluded)} to run"
    )
    reasons: dict[str, list[str]] = {}
    for plan in excluded:
        reasons.setdefault(str(plan.excluded_reason), []).append(plan.cell.id)
    for reason, ids in sorted(reasons.items()):
        lines.append(f"    {len(ids)} excluded: {reason} (e.g. {ids[0]})")
    return lines


def main(argv: Optional[Sequence[str]] = None, log: Any = print) -> int:
    parser = argparse.ArgumentParser(prog="nox -s axes --", description=__doc__.splitlines()[0])
    parser.add_argument("--axes", type=Path, default=Path(os.environ.get("GREENLIGHT_AXES", axes.DEFAULT_PATH)))
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--record", type=Path, help="also write the metadata fetched (a replayable recording)")
    parser.add_argument("--replay", type=Path, help="read metadata from a recording instead of the index")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the lock is out of date")
    args = parser.parse_args(argv)
    matrix = axes_file.load(args.axes, definition_only=True)
    source: Source
    if args.replay:
        source = RecordedSource.from_file(args.replay)
    else:
        source = IndexSource(cache=ROOT / "build" / "axes-metadata")
    log(f"axes: reading {args.axes} and the claims in {args.pyproject}; metadata from {source.location}")
    data, problems = build_lock(matrix, args.pyproject, source)
    for problem in problems:
        log(f"axes: warning: {problem}")
    target = lock.path_for(args.axes)
    text = render(data)
    if args.record and isinstance(source, IndexSource):
        args.record.write_text(render(source.record), encoding="utf-8")
        log(f"axes: recorded the metadata in {args.record}")
    old = target.read_text(encoding="utf-8") if target.is_file() else ""
    if args.check:
        log(f"axes: {target} is {'up to date' if old == text else 'out of date: run `nox -s axes`'}")
        return 0 if old == text else 1
    target.write_text(text, encoding="utf-8")
    log(f"axes: {target} {'unchanged' if old == text else 'written'}")
    for line in describe(axes_file.load(args.axes)):
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
