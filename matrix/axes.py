"""The matrix definition as values, and the cells it expands to.

A cell is one value of each axis in one tier: the ``[axes]`` product is the ``support`` tier, and each
``[[tiers]]`` entry adds the product of the values it lists (``floor``, ``canary``, ``legacy``, or more
``support`` cells). Labels are series (``2.1``); the exact version each installs comes from the lock beside the
file (``axes.lock.json``, written by ``nox -s axes``; see :mod:`matrix.lock`), whose PyPI metadata also excludes
the cells that cannot exist. Reading and validating ``axes.toml`` is :mod:`matrix.axes_file`.

This module is imported by ``noxfile.py`` at import time, so it may use only the standard library and
``packaging`` (a dependency of nox itself).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from matrix import lock as locking
from matrix.lock import PRE, Lock, LockError

DEFAULT_PATH = Path(__file__).with_name("axes.toml")

KINDS = ("sqlite", "postgresql", "mysql")
# driver -> (database kind it speaks to, the pip requirement that installs it)
DRIVERS: dict[str, tuple[str, str]] = {
    "aiosqlite": ("sqlite", "aiosqlite"),
    "asyncpg": ("postgresql", "asyncpg"),
    "psycopg": ("postgresql", "psycopg[binary]"),
    # [rsa]: cryptography, which both MySQL drivers need for caching_sha2_password, MySQL 8.4+'s only default
    # (9.x has no mysql_native_password), over plain TCP; asyncmy, installed beside it, uses it too.
    "aiomysql": ("mysql", "aiomysql[rsa]"),
    "asyncmy": ("mysql", "asyncmy"),
}
# What every cell installs besides its axis values and drivers (the scenario run's base plugins).
BASE_REQUIREMENTS = ("pytest-timeout>=2.2", "anyio>=4")

AXES = ("python", "sqlalchemy", "pytest_asyncio", "pytest")
# axis -> (distribution, the extra the cell installs it with)
INSTALLED = {
    "sqlalchemy": ("sqlalchemy", "[asyncio]"),
    "pytest_asyncio": ("pytest-asyncio", ""),
    "pytest": ("pytest", ""),
}


@dataclass(frozen=True)
class Database:
    name: str
    kind: str
    drivers: tuple[str, ...]
    image: Optional[str] = None
    offline_image: Optional[str] = None


@dataclass(frozen=True)
class Subject:
    name: str
    requirement: Optional[str]

    @property
    def is_local(self) -> bool:
        """This repository's plugin (``pytest-greenlight @ .``), installed from a wheel of the checkout."""
        return self.requirement is not None and self.requirement.replace(" ", "").endswith("@.")

    @property
    def distribution(self) -> Optional[str]:
        """The distribution whose ``pytest11`` entry points are the subject's plugins."""
        if self.requirement is None:
            return None
        from packaging.requirements import Requirement

        return Requirement(self.requirement).name


@dataclass(frozen=True)
class Cell:
    """Labels, not versions: a series (``2.1``: its newest release in the lock), an exact floor (``1.4.24``),
    or ``pre`` (canary). ``pytest`` is empty when the matrix has no pytest axis (pytest is then not pinned)."""

    python: str
    sqlalchemy: str
    pytest_asyncio: str
    pytest: str = ""
    tier: str = "support"

    @property
    def id(self) -> str:
        if self.tier == "canary":
            return f"py{self.python}-canary"
        pytest = f"-pt{self.pytest}" if self.pytest else ""
        return f"py{self.python}-sa{self.sqlalchemy}-pa{self.pytest_asyncio}{pytest}"

    @property
    def session_id(self) -> str:
        """The nox parameter id, which is the cell id: ``matrix(py3.12-sa2.1-pa1.5-pt9)``."""
        return self.id

    @property
    def tags(self) -> list[str]:
        """What ``nox -k`` can name ("sa2.1" is no Python identifier): ``sa2_1``, ``pa1_5``, ``pt9``, the tier."""
        labels = [
            (prefix, value)
            for prefix, value in (("sa", self.sqlalchemy), ("pa", self.pytest_asyncio), ("pt", self.pytest))
            if value and value != PRE
        ]
        return [f"{prefix}{value}".replace(".", "_") for prefix, value in labels] + [self.tier]

    def labels(self) -> dict[str, str]:
        """distribution -> label, for every axis the cell pins."""
        found = {INSTALLED[axis][0]: getattr(self, axis) for axis in ("sqlalchemy", "pytest_asyncio", "pytest")}
        return {name: label for name, label in found.items() if label}

    def as_dict(self) -> dict[str, str]:
        found = {
            "id": self.id,
            "python": self.python,
            "sqlalchemy": self.sqlalchemy,
            "pytest_asyncio": self.pytest_asyncio,
            "tier": self.tier,
        }
        if self.pytest:
            found["pytest"] = self.pytest
        return found


_CELL_ID = re.compile(
    r"py(?P<python>[\d.]+)-(?:(?P<canary>canary)|"
    r"sa(?P<sqlalchemy>[\d.]+)-pa(?P<pytest_asyncio>[\d.]+)(?:-pt(?P<pytest>[\d.]+))?)"
)


def parse_cell_id(cell_id: str) -> Cell:
    """A cell from its id; the tier is not in the id of support, floor and legacy cells (``support`` here)."""
    match = _CELL_ID.fullmatch(cell_id)
    if match is None:
        raise ValueError(f"not a cell id: {cell_id!r} (expected e.g. py3.12-sa2.1-pa1.5-pt9)")
    if match["canary"]:
        return Cell(match["python"], PRE, PRE, PRE, "canary")
    return Cell(match["python"], match["sqlalchemy"], match["pytest_asyncio"], match["pytest"] or "")


@dataclass(frozen=True)
class _Selector:
    """Axis values a rule applies to; an empty tuple means any value."""

    python: tuple[str, ...] = ()
    sqlalchemy: tuple[str, ...] = ()
    pytest_asyncio: tuple[str, ...] = ()
    pytest: tuple[str, ...] = ()

    def selects(self, cell: Cell) -> bool:
        """A value selects its series: ``1.4`` selects the floor ``1.4.24`` too; never a canary's ``pre``."""
        return all(
            not wanted or any(_label_in(getattr(cell, axis), value) for value in wanted)
            for axis, wanted in self._axes()
        )

    def _axes(self) -> Iterable[tuple[str, tuple[str, ...]]]:
        return ((axis, getattr(self, axis)) for axis in AXES)


@dataclass(frozen=True)
class Exclude(_Selector):
    reason: str = ""
    subject: tuple[str, ...] = ()

    def matches(self, cell: Cell, subject: Optional[str] = None) -> bool:
        """A rule with ``subject`` excludes only those subjects; one without it excludes the whole cell."""
        if self.subject and (subject is None or subject not in self.subject):
            return False
        return self.selects(cell)


@dataclass(frozen=True)
class Pin(_Selector):
    requirements: tuple[str, ...] = ()
    reason: str = ""


def _label_in(label: str, series: str) -> bool:
    return label == series or (label != PRE and bool(label) and locking.in_series(label, series))


@dataclass(frozen=True)
class Tier:
    """One ``[[tiers]]`` entry: the product of the values it lists; an axis it leaves out takes every value of
    ``[axes]`` (``pytest``: the newest series the cell's pytest-asyncio release and the pins allow)."""

    tier: str
    python: tuple[str, ...] = ()
    sqlalchemy: tuple[str, ...] = ()
    pytest_asyncio: tuple[str, ...] = ()
    pytest: tuple[str, ...] = ()


def _key(series: str) -> list[int]:
    return [int(part) for part in series.split(".")]


@dataclass(frozen=True)
class RunSettings:
    scenario_timeout: int = 60
    subject_timeout: int = 900


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    excluded_reason: Optional[str]
    # (subject name, reason) for subjects excluded from an otherwise runnable cell
    subject_excludes: tuple[tuple[str, str], ...] = ()

    def subject_reason(self, subject: str) -> Optional[str]:
        return self.excluded_reason or dict(self.subject_excludes).get(subject)


@dataclass(frozen=True)
class Matrix:
    pythons: tuple[str, ...]
    sqlalchemy: tuple[str, ...]
    pytest_asyncio: tuple[str, ...]
    databases: tuple[Database, ...]
    subjects: tuple[Subject, ...]
    excludes: tuple[Exclude, ...]
    pins: tuple[Pin, ...] = ()
    run: RunSettings = field(default_factory=RunSettings)
    pytest: tuple[str, ...] = ()
    tiers: tuple[Tier, ...] = ()
    lock: Optional[Lock] = None

    def cells(self) -> list[Cell]:
        """Every cell: the ``[axes]`` product (tier ``support``), then each ``[[tiers]]`` entry, in file order."""
        found: list[Cell] = []
        for tier in (Tier("support"), *self.tiers):
            if tier.tier == "canary":
                found.extend(Cell(py, PRE, PRE, PRE if self.pytest else "", "canary") for py in tier.python)
                continue
            values = (
                tier.python or self.pythons,
                tier.sqlalchemy or self.sqlalchemy,
                tier.pytest_asyncio or self.pytest_asyncio,
                tier.pytest or ("",),
            )
            for python, sa, pa, pt in itertools.product(*values):
                found.append(self._cell(tier.tier, python, sa, pa, pt))
        return found

    def _cell(self, tier: str, python: str, sa: str, pa: str, pt: str) -> Cell:
        if tier == "floor":  # a floor cell's labels are the exact floor releases of its series
            sa, pa = self._floor("sqlalchemy", sa), self._floor("pytest-asyncio", pa)
        cell = Cell(python, sa, pa, pt, tier)
        if not pt and self.pytest:
            cell = dataclasses.replace(cell, pytest=self._newest_pytest(cell))
        if tier == "floor":
            cell = dataclasses.replace(cell, pytest=self._floor("pytest", cell.pytest))
        return cell

    def _floor(self, distribution: str, series: str) -> str:
        if not series or locking.is_exact(series):
            return series
        found = self.lock.exact(distribution, series, "floor") if self.lock else None
        if found is None:
            raise LockError(f"the lock has no floor of {distribution} {series}: run `nox -s axes`")
        return found

    def _newest_pytest(self, cell: Cell) -> str:
        """The newest ``pytest`` series whose locked release the cell's pytest-asyncio release and pins allow."""
        for series in sorted(self.pytest, key=_key, reverse=True):
            candidate = dataclasses.replace(cell, pytest=series)
            # Only what pytest and pytest-asyncio declare decides (SQLAlchemy's own bounds exclude the cell anyway).
            exact = {n: v for n, v in self.exact(candidate).items() if n in ("pytest", "pytest-asyncio")}
            exact.setdefault("pytest", f"{series}.0")  # no lock: judge the pins by the series' first release
            if locking.impossible(self.lock, cell.python, exact, self._pinned(candidate)) is None:
                return series
        return max(self.pytest, key=_key)

    def exact(self, cell: Cell) -> dict[str, str]:
        """distribution -> the exact version the cell installs, for every label the lock (or the label) fixes."""
        found: dict[str, str] = {}
        for distribution, label in cell.labels().items():
            if locking.is_exact(label):
                found[distribution] = label
            elif self.lock is not None and (version := self.lock.exact(distribution, label)) is not None:
                found[distribution] = version
        if cell.tier == "canary" and self.lock is not None:
            for distribution in locking.CANARY_EXTRAS:
                if (version := self.lock.exact(distribution, PRE)) is not None:
                    found[distribution] = version
        return found

    def _pinned(self, cell: Cell) -> list[tuple[str, str, str]]:
        from packaging.requirements import Requirement

        found = []
        for pin in self.pins:
            if pin.selects(cell):
                for text in pin.requirements:
                    requirement = Requirement(text)
                    found.append((requirement.name, str(requirement.specifier), pin.reason))
        return found

    def excluded_reason(self, cell: Cell, subject: Optional[str] = None) -> Optional[str]:
        """Why this cell (or this subject in it) cannot exist; ``None`` when it can. The rules of axes.toml
        first, then the PyPI metadata of the versions the cell would install (quoted in the reason)."""
        for rule in self.excludes:
            if rule.matches(cell, subject):
                return rule.reason
        return locking.impossible(self.lock, cell.python, self.exact(cell), self._pinned(cell))

    def requirements(self, cell: Cell) -> list[str]:
        """What the cell's environment installs, besides drivers and subjects: exact versions from the lock
        (``==X.Y.*`` for a series the lock does not hold)."""
        exact = self.exact(cell)
        wanted = []
        for axis, (distribution, extra) in INSTALLED.items():
            label = getattr(cell, axis)
            if label:
                wanted.append(f"{distribution}{extra}=={exact.get(distribution) or _series(label)}")
        wanted.extend(f"{name}=={version}" for name, version in exact.items() if name in locking.CANARY_EXTRAS)
        wanted.extend(BASE_REQUIREMENTS)
        for pin in self.pins:
            if pin.selects(cell):
                wanted.extend(pin.requirements)
        return wanted

    def subject(self, name: str) -> Subject:
        return next(s for s in self.subjects if s.name == name)


def _series(version: str) -> str:
    """'2.1' -> '2.1.*' (latest patch of the series); a full 'X.Y.Z' is taken exactly."""
    return version if version.count(".") == 2 else f"{version}.*"


def plan(matrix: Matrix, cell: Cell) -> CellPlan:
    """Whether ``cell`` can exist, and which of its subjects cannot (and why)."""
    reason = matrix.excluded_reason(cell)
    subject_reasons = tuple(
        (subject.name, why)
        for subject in matrix.subjects
        if reason is None and (why := matrix.excluded_reason(cell, subject.name)) is not None
    )
    return CellPlan(cell, reason, subject_reasons)


def expand(matrix: Matrix) -> list[CellPlan]:
    return [plan(matrix, cell) for cell in matrix.cells()]


def series_in_use(matrix: Matrix) -> dict[str, list[str]]:
    """distribution -> every series label axes.toml names for it (what ``nox -s axes`` must lock)."""
    found: dict[str, set[str]] = {distribution: set() for distribution, _ in INSTALLED.values()}
    for tier in (Tier("support", (), matrix.sqlalchemy, matrix.pytest_asyncio, matrix.pytest), *matrix.tiers):
        for axis, (distribution, _) in INSTALLED.items():
            found[distribution].update(v for v in getattr(tier, axis) if not locking.is_exact(v))
    return {name: sorted(values, key=_key) for name, values in found.items()}
