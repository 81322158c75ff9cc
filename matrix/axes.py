"""Load ``matrix/axes.toml``, validate it, and expand it into cells.

A cell is one value of each axis in one tier: the ``[axes]`` product is the ``support`` tier, and each
``[[tiers]]`` entry adds the product of the values it lists (``floor``, ``canary``, ``legacy``, or more
``support`` cells). Labels are series (``2.1``); the exact version each installs comes from the lock beside the
file (``axes.lock.json``, written by ``nox -s axes``; see :mod:`matrix.lock`), whose PyPI metadata also excludes
the cells that cannot exist.

This module is imported by ``noxfile.py`` at import time, so it may use only the standard library, ``tomli``
on Python < 3.11, and ``packaging`` (a dependency of nox itself). Any problem in the file raises
:class:`AxesError` with one message that names the file, the line and the key; nothing is run from an invalid
file.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from matrix import lock as locking
from matrix.lock import PRE, Lock, LockError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on the older interpreters nox may run on
    import tomli as tomllib

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
_PYTHON = re.compile(r"3\.\d{1,2}")
_VERSION = re.compile(r"\d+(\.\d+){0,2}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")

Path_ = tuple[Union[str, int], ...]


class AxesError(ValueError):
    """An invalid axes file. ``str(error)`` is the whole message: ``<file>:<line>: <key>: <problem>``."""


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
        """This repository's plugin (``pytest-greenlight @ .``), installed editable from the checkout."""
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


def expand(matrix: Matrix) -> list[CellPlan]:
    plans = []
    for cell in matrix.cells():
        reason = matrix.excluded_reason(cell)
        subject_reasons = tuple(
            (subject.name, why)
            for subject in matrix.subjects
            if reason is None and (why := matrix.excluded_reason(cell, subject.name)) is not None
        )
        plans.append(CellPlan(cell, reason, subject_reasons))
    return plans


# --- loading and validation ---------------------------------------------------------------------------------


def load(path: Union[str, Path] = DEFAULT_PATH, *, definition_only: bool = False) -> Matrix:
    """The axes file and the lock beside it (``axes.lock.json``; none: series install ``==X.Y.*``).
    ``definition_only``: the file alone, its cells unchecked (``nox -s axes`` writes the lock from it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AxesError(f"{path}: cannot read the matrix definition: {exc.strerror or exc}") from None
    if definition_only:
        return parse(text, str(path), check_cells=False)
    try:
        lock = locking.load(locking.path_for(path))
    except LockError as exc:
        raise AxesError(str(exc)) from None
    return parse(text, str(path), lock)


def parse(text: str, source: str = "axes.toml", lock: Optional[Lock] = None, *, check_cells: bool = True) -> Matrix:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line N, column M)".
        raise AxesError(f"{source}: invalid TOML: {exc}") from None
    matrix = dataclasses.replace(_Validator(text, source).matrix(data), lock=lock)
    if not check_cells:
        return matrix
    try:
        cells = matrix.cells()
    except LockError as exc:
        raise AxesError(f"{source}: {exc}") from None
    seen: set[str] = set()
    for cell in cells:
        if cell.id in seen:
            raise AxesError(f"{source}: tiers: cell {cell.id} is defined twice (two tiers list the same values)")
        seen.add(cell.id)
        if lock is None and cell.tier == "canary":
            raise AxesError(f"{source}: tiers: the canary tier needs the lock's pre-releases: run `nox -s axes`")
    return matrix


def series_in_use(matrix: Matrix) -> dict[str, list[str]]:
    """distribution -> every series label axes.toml names for it (what ``nox -s axes`` must lock)."""
    found: dict[str, set[str]] = {distribution: set() for distribution, _ in INSTALLED.values()}
    for tier in (Tier("support", (), matrix.sqlalchemy, matrix.pytest_asyncio, matrix.pytest), *matrix.tiers):
        for axis, (distribution, _) in INSTALLED.items():
            found[distribution].update(v for v in getattr(tier, axis) if not locking.is_exact(v))
    return {name: sorted(values, key=_key) for name, values in found.items()}


_TOP = {"axes", "run", "databases", "subjects", "pins", "excludes", "tiers"}


class _Validator:
    """Turns the parsed TOML into a :class:`Matrix`, failing on the first problem with its line."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def fail(self, path: Path_, problem: str, value: Optional[str] = None) -> AxesError:
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
        line = _line_of(self.lines, path, value)
        return AxesError(f"{self.source}:{line}: {key or '(top level)'}: {problem}")

    def matrix(self, data: Mapping[str, Any]) -> Matrix:
        self.known_keys(data, (), _TOP)
        axes = self.table(data, ("axes",), required=True)
        self.known_keys(axes, ("axes",), set(AXES))
        pythons = self.versions(axes, ("axes", "python"), _PYTHON, "3.N")
        sqlalchemy = self.versions(axes, ("axes", "sqlalchemy"), _VERSION, "X.Y")
        pytest_asyncio = self.versions(axes, ("axes", "pytest_asyncio"), _VERSION, "X.Y")
        pytest = self.versions(axes, ("axes", "pytest"), _VERSION, "X.Y") if "pytest" in axes else ()
        values = {"python": pythons, "sqlalchemy": sqlalchemy, "pytest_asyncio": pytest_asyncio, "pytest": pytest}
        databases = self.databases(data)
        subjects = self.subjects(data)
        excludes = tuple(
            self.exclude(entry, ("excludes", i), values, {s.name for s in subjects})
            for i, entry in enumerate(self.array(data, "excludes"))
        )
        pins = tuple(self.pin(entry, ("pins", i), values) for i, entry in enumerate(self.array(data, "pins")))
        tiers = tuple(self.tier(entry, ("tiers", i), bool(pytest)) for i, entry in enumerate(self.array(data, "tiers")))
        return Matrix(
            pythons, sqlalchemy, pytest_asyncio, databases, subjects, excludes, pins, self.run(data), pytest, tiers
        )

    # generic shapes

    def known_keys(self, table: Mapping[str, Any], path: Path_, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def table(self, data: Mapping[str, Any], path: Path_, *, required: bool = False) -> Mapping[str, Any]:
        value = data.get(path[-1])
        if value is None:
            if required:
                raise self.fail(path, "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table")
        return value

    def array(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
            raise self.fail((key,), f"must be an array of tables ([[{key}]])")
        return value

    def string(self, table: Mapping[str, Any], path: Path_, *, required: bool = True) -> Optional[str]:
        value = table.get(path[-1])
        if value is None:
            if required:
                raise self.fail(path, "missing key")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be a non-empty string")
        return value

    def strings(self, table: Mapping[str, Any], path: Path_, *, allow_single: bool = False) -> tuple[str, ...]:
        value = table.get(path[-1])
        if value is None:
            raise self.fail(path, "missing key")
        if allow_single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, "must be a list of strings")
        if not value:
            raise self.fail(path, "is empty: give at least one value")
        seen: set[str] = set()
        for item in value:
            if item in seen:
                raise self.fail(path, f"duplicate value {item!r}", value=item)
            seen.add(item)
        return tuple(value)

    def versions(self, table: Mapping[str, Any], path: Path_, pattern: re.Pattern[str], shape: str) -> tuple[str, ...]:
        found = self.strings(table, path)
        for item in found:
            if not pattern.fullmatch(item):
                raise self.fail(path, f"bad version {item!r}: give a release series like {shape!r}", value=item)
        return found

    # sections

    def run(self, data: Mapping[str, Any]) -> RunSettings:
        run = self.table(data, ("run",))
        self.known_keys(run, ("run",), {"scenario_timeout", "subject_timeout"})
        settings = {}
        for key, value in run.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise self.fail(("run", key), "must be a positive integer (seconds)")
            settings[key] = value
        return RunSettings(**settings)

    def databases(self, data: Mapping[str, Any]) -> tuple[Database, ...]:
        entries = self.array(data, "databases")
        if not entries:
            raise self.fail(("databases",), "is empty: define at least one [[databases]]")
        found: list[Database] = []
        for i, entry in enumerate(entries):
            path: Path_ = ("databases", i)
            self.known_keys(entry, path, {"name", "kind", "drivers", "image", "offline_image"})
            name = self.name(entry, (*path, "name"))
            if name in {d.name for d in found}:
                raise self.fail((*path, "name"), f"duplicate database {name!r}")
            kind = self.string(entry, (*path, "kind"))
            if kind not in KINDS:
                raise self.fail((*path, "kind"), f"unknown kind {kind!r} (one of: {', '.join(KINDS)})")
            drivers = self.strings(entry, (*path, "drivers"))
            for driver in drivers:
                speaks = DRIVERS.get(driver, (None,))[0]
                if speaks != kind:
                    known = [d for d, (k, _) in DRIVERS.items() if k == kind]
                    raise self.fail(
                        (*path, "drivers"),
                        f"driver {driver!r} is not a {kind} driver (known: {known})",
                        value=driver,
                    )
            image = self.string(entry, (*path, "image"), required=kind != "sqlite")
            offline = self.string(entry, (*path, "offline_image"), required=False)
            if kind == "sqlite" and (image or offline):
                raise self.fail((*path, "image" if image else "offline_image"), "sqlite is embedded: it has no image")
            found.append(Database(name, kind, drivers, image, offline))
        return tuple(found)

    def subjects(self, data: Mapping[str, Any]) -> tuple[Subject, ...]:
        entries = self.array(data, "subjects")
        if not entries:
            raise self.fail(("subjects",), "is empty: define at least one [[subjects]]")
        found: list[Subject] = []
        for i, entry in enumerate(entries):
            path: Path_ = ("subjects", i)
            self.known_keys(entry, path, {"name", "requirement"})
            name = self.name(entry, (*path, "name"))
            if name in {s.name for s in found}:
                raise self.fail((*path, "name"), f"duplicate subject {name!r}")
            requirement = self.string(entry, (*path, "requirement"), required=False)
            if requirement is not None:
                self.requirement(requirement, (*path, "requirement"))
            found.append(Subject(name, requirement))
        return tuple(found)

    def name(self, table: Mapping[str, Any], path: Path_) -> str:
        name = self.string(table, path)
        assert name is not None
        if not _NAME.fullmatch(name):
            raise self.fail(path, f"bad name {name!r}: use lower-case letters, digits, '.', '-' and '_'")
        return name

    def requirement(self, text: str, path: Path_) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            Requirement(text)
        except InvalidRequirement as exc:
            first_line = str(exc).splitlines()[0]
            raise self.fail(path, f"bad requirement {text!r}: {first_line}", value=text) from None

    def selector(
        self, entry: Mapping[str, Any], path: Path_, values: Mapping[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        chosen = {}
        for axis in AXES:
            if axis in entry:
                picked = self.strings(entry, (*path, axis), allow_single=True)
                for item in picked:
                    if item not in values[axis]:
                        raise self.fail(
                            (*path, axis),
                            f"{item!r} is not a value of axes.{axis} {list(values[axis])}",
                            value=item,
                        )
                chosen[axis] = picked
        return chosen

    def exclude(
        self, entry: Mapping[str, Any], path: Path_, values: Mapping[str, tuple[str, ...]], subjects: set[str]
    ) -> Exclude:
        self.known_keys(entry, path, {*AXES, "subject", "reason"})
        chosen = self.selector(entry, path, values)
        subject: tuple[str, ...] = ()
        if "subject" in entry:
            subject = self.strings(entry, (*path, "subject"), allow_single=True)
            for name in subject:
                if name not in subjects:
                    raise self.fail((*path, "subject"), f"unknown subject {name!r}", value=name)
        if not chosen and not subject:
            raise self.fail(path, "selects every cell: give at least one of python, sqlalchemy, pytest_asyncio")
        reason = self.string(entry, (*path, "reason"))
        assert reason is not None
        return Exclude(**chosen, reason=reason, subject=subject)

    def tier(self, entry: Mapping[str, Any], path: Path_, has_pytest: bool) -> Tier:
        kind = self.string(entry, (*path, "tier"))
        if kind not in locking.TIERS:
            raise self.fail((*path, "tier"), f"unknown tier {kind!r} (one of: {', '.join(locking.TIERS)})")
        allowed = {"tier", "python"} if kind == "canary" else {"tier", *AXES}
        if not has_pytest:
            allowed.discard("pytest")
        self.known_keys(entry, path, allowed)
        if kind == "canary" and "python" not in entry:
            raise self.fail(path, "a canary tier must list its python")
        shapes = {"python": (_PYTHON, "3.N"), "sqlalchemy": (_VERSION, "X.Y"), "pytest_asyncio": (_VERSION, "X.Y")}
        shapes["pytest"] = (_VERSION, "X.Y")
        chosen = {axis: self.versions(entry, (*path, axis), *shapes[axis]) for axis in AXES if axis in entry}
        assert kind is not None
        return Tier(kind, **chosen)

    def pin(self, entry: Mapping[str, Any], path: Path_, values: Mapping[str, tuple[str, ...]]) -> Pin:
        self.known_keys(entry, path, {*AXES, "requirements", "reason"})
        chosen = self.selector(entry, path, values)
        requirements = self.strings(entry, (*path, "requirements"))
        for requirement in requirements:
            self.requirement(requirement, (*path, "requirements"))
        reason = self.string(entry, (*path, "reason"))
        assert reason is not None
        return Pin(**chosen, requirements=requirements, reason=reason)


# --- locating a key in the TOML text ------------------------------------------------------------------------

_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")


def _line_of(lines: Sequence[str], path: Path_, value: Optional[str] = None) -> int:
    """1-based line of ``path`` (and of ``value`` inside it, for a duplicate or bad list item).

    A small scan instead of a TOML parser with positions: the file is written by people in the plain
    ``[table]`` / ``[[array]]`` / ``key = value`` style, which is all this needs to follow.
    """
    table = str(path[0]) if path else ""
    index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
    keys = [part for part in path[1:] if isinstance(part, str)]
    key = keys[0] if keys else None
    if not table:
        return 1
    start = _section_start(lines, table, index)
    if start is None:
        # A top-level key written as `key = ...` outside any table, or a missing table: point at the top.
        for number, line in enumerate(lines):
            if re.match(rf"\s*{re.escape(table)}\s*=", line):
                return number + 1
        return 1
    if key is None:
        return start + 1
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if _HEADER.match(line):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            if value is None:
                return number + 1
            return _value_line(lines, number, value) + 1
    return start + 1


def _section_start(lines: Sequence[str], table: str, index: Optional[int]) -> Optional[int]:
    seen = -1
    for number, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and match.group(2) == table:
            if index is None:
                return number
            seen += 1
            if seen == index:
                return number
    return None


def _value_line(lines: Sequence[str], key_line: int, value: str) -> int:
    """The line holding the last occurrence of ``"value"`` in a (possibly multi-line) array: for a duplicate
    that is the second one, which is the one to delete."""
    quoted = (f'"{value}"', f"'{value}'")
    found = key_line
    depth = 0
    for number in range(key_line, len(lines)):
        line = lines[number]
        if number > key_line and (_HEADER.match(line) or (depth <= 0 and re.match(r"\s*[A-Za-z0-9_-]+\s*=", line))):
            break
        if any(q in line for q in quoted):
            found = number
        depth += line.count("[") - line.count("]")
        if depth <= 0 and number >= key_line and "]" in line:
            break
    return found
