"""``matrix/axes.lock.json``: the exact versions ``nox -s axes`` chose from PyPI, and what their metadata says.

``axes.toml`` (edited by people) names the series and tiers; the lock (written by :mod:`matrix.refresh`, never by
hand) holds, per package, the floor and the newest release of each series, the newest pre-release, and for each
chosen release its ``Requires-Python`` and its declared bounds on the other matrix packages. This module reads it
and answers three questions with it, each in one place:

* which exact version a cell label installs (:meth:`Lock.exact`);
* which cells cannot exist, with the metadata as the reason (:func:`impossible`);
* whether what a cell really installed is what its label says (:func:`check_resolved`).

Imported by ``noxfile.py`` through :mod:`matrix.axes`: standard library and ``packaging`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

# One definition, shared with reports (re-exported: axes.py reads them here).
from matrix.rules import SUPPORT_TIERS as SUPPORT_TIERS
from matrix.rules import TIERS as TIERS

FORMAT = "greenlight-axes-lock"
# axis name in axes.toml -> the distribution its values are versions of
AXIS_PACKAGES = {"sqlalchemy": "sqlalchemy", "pytest_asyncio": "pytest-asyncio", "pytest": "pytest"}
# Packages the canary tier also takes at their newest pre-release (not an axis of their own).
CANARY_EXTRAS = ("greenlet",)
# Installed packages that must never be pre-releases outside the canary tier.
CHECKED = ("sqlalchemy", "pytest-asyncio", "pytest", "greenlet", "anyio")
PRE = "pre"  # the label of a canary cell's versions
# Tiers: "support" and "floor" make up the support set (what the badge and docs table count); "canary" runs
# pre-releases and "legacy" runs interpreters past their end of life: both report, neither counts nor fails a run.


class LockError(ValueError):
    """The lock is unreadable, or lacks a version a cell needs (the message says to run ``nox -s axes``)."""


@dataclass(frozen=True)
class Release:
    requires_python: Optional[str] = None
    requires: Mapping[str, str] = field(default_factory=dict)  # matrix package -> declared specifier


@dataclass(frozen=True)
class Package:
    series: Mapping[str, Mapping[str, str]]  # "2.1" -> {"floor": "2.1.0", "newest": "2.1.9"}
    newest: Optional[str]
    pre: Optional[str]  # newest pre-release newer than every release, or None
    releases: Mapping[str, Release]


@dataclass(frozen=True)
class Lock:
    source: str
    claims: Mapping[str, str]
    packages: Mapping[str, Package]

    def exact(self, distribution: str, label: str, how: str = "newest") -> Optional[str]:
        """The version a label installs: ``how`` is newest or floor of the series ``label``; ``pre`` for canary
        labels (the newest pre-release, or the newest release when there is none). None when not locked."""
        package = self.packages.get(distribution)
        if package is None:
            return None
        if label == PRE:
            return package.pre or package.newest
        return package.series.get(label, {}).get(how)

    def release(self, distribution: str, version: str) -> Optional[Release]:
        package = self.packages.get(distribution)
        return None if package is None else package.releases.get(version)


def path_for(axes_path: Union[str, Path]) -> Path:
    """``matrix/axes.toml`` -> ``matrix/axes.lock.json`` (any axes file has its lock beside it)."""
    path = Path(axes_path)
    return path.with_name(f"{path.stem}.lock.json")


def load(path: Union[str, Path]) -> Optional[Lock]:
    """The lock at ``path``; None when there is none (cells then install ``==X.Y.*``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LockError(f"{path}: unreadable lock ({exc}); regenerate it with `nox -s axes`") from None
    return from_data(data, str(path))


def from_data(data: Any, source: str = "axes.lock.json") -> Lock:
    try:
        if data.get("format") != FORMAT:
            raise LockError(f"{source}: not a {FORMAT} file; regenerate it with `nox -s axes`")
        packages = {
            name: Package(
                series=dict(entry["series"]),
                newest=entry.get("newest"),
                pre=entry.get("pre"),
                releases={
                    version: Release(info.get("requires_python"), dict(info.get("requires") or {}))
                    for version, info in entry.get("releases", {}).items()
                },
            )
            for name, entry in data["packages"].items()
        }
        return Lock(str(data.get("source", "")), dict(data.get("claims") or {}), packages)
    except (AttributeError, KeyError, TypeError) as exc:
        problem = f"malformed lock ({type(exc).__name__}: {exc})"
        raise LockError(f"{source}: {problem}; regenerate it with `nox -s axes`") from None


# --- series and labels --------------------------------------------------------------------------------------


def in_series(version: str, series: str) -> bool:
    """``2.1.9`` is in ``2.1`` and in ``2``; ``2.10.0`` is not in ``2.1`` (release numbers, not text)."""
    try:
        release = Version(version).release
    except InvalidVersion:
        return False
    wanted = tuple(int(part) for part in series.split("."))
    return release[: len(wanted)] == wanted


def is_exact(label: str) -> bool:
    """A label with three numbers (``1.4.24``, a floor) names one release; fewer name a series."""
    return label.count(".") >= 2


def python_fits(python: str, requires_python: Optional[str]) -> bool:
    """Whether some patch release of Python ``X.Y`` satisfies ``Requires-Python`` (checked at .0 and a late
    patch, so ``>=3.10.1`` keeps 3.10 while ``>=3.11`` drops it)."""
    if not requires_python:
        return True
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # metadata we cannot read excludes nothing; the installer will say
    return any(spec.contains(f"{python}.{patch}", prereleases=True) for patch in (0, 99))


def impossible(
    lock: Optional[Lock], python: str, exact: Mapping[str, str], pins: Sequence[tuple[str, str, str]] = ()
) -> Optional[str]:
    """Why a cell with these exact versions cannot exist, quoting the metadata (or a pin); None when it can.

    ``exact``: distribution -> version the cell installs. ``pins``: (distribution, specifier, reason) of the
    ``[[pins]]`` that apply to the cell.
    """
    for distribution, version in exact.items():
        release = lock.release(distribution, version) if lock else None
        if release is None:
            continue
        if not python_fits(python, release.requires_python):
            return (
                f"{distribution} {version} requires Python {release.requires_python} (its Requires-Python on PyPI); "
                f"no Python {python} release satisfies it"
            )
        for dependency, specifier in sorted(release.requires.items()):
            other = exact.get(dependency)
            if other is not None and not SpecifierSet(specifier).contains(other, prereleases=True):
                return (
                    f"{distribution} {version} requires {dependency}{specifier} (its declared dependency on PyPI); "
                    f"this cell's {dependency} is {other}"
                )
    for distribution, specifier, reason in pins:
        version = exact.get(distribution)
        if version is not None and not SpecifierSet(specifier).contains(version, prereleases=True):
            return f"pinned {distribution}{specifier}, this cell's is {version}: {reason}"
    return None


# --- after installing ---------------------------------------------------------------------------------------


def _matches(version: str, label: str) -> bool:
    return version == label if is_exact(label) else in_series(version, label)


def check_resolved(
    tier: str, labels: Mapping[str, str], exact: Mapping[str, Optional[str]], installed: Mapping[str, str]
) -> list[str]:
    """Why what got installed does not match the cell's labels (empty when it does).

    ``labels``: distribution -> the cell's label (a series like ``2.1``, an exact floor, or ``pre``);
    ``exact``: distribution -> the locked version (None without a lock: then the series is checked).
    """
    problems = []
    for distribution in CHECKED:
        version = installed.get(distribution)
        if version is None or tier == "canary":
            continue
        try:
            pre = Version(version).is_prerelease
        except InvalidVersion:
            problems.append(f"{distribution} {version} is not a valid version")
            continue
        if pre:
            problems.append(
                f"{distribution} resolved to {version}, a pre-release: a {tier} cell never runs one "
                "(only the canary tier does)"
            )
    for distribution, label in labels.items():
        version = installed.get(distribution)
        if version is None:
            problems.append(f"{distribution} is not installed, though the cell's label asks for {label}")
            continue
        wanted = exact.get(distribution)
        if wanted is not None and version != wanted:
            problems.append(f"{distribution} resolved to {version}, but the label {label} locks {wanted}")
        elif wanted is None and label != PRE and not _matches(version, label):
            problems.append(f"{distribution} resolved to {version}, outside the label's series {label}")
    return problems
