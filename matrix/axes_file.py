"""Read ``matrix/axes.toml`` (and the lock beside it) into a validated :class:`matrix.axes.Matrix`.

Any problem in the file raises :class:`AxesError` with one message that names the file, the line and the key;
nothing is run from an invalid file. Like :mod:`matrix.axes`, imported by ``noxfile.py`` at import time: the
standard library, ``tomli`` on Python < 3.11, and ``packaging`` only.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from matrix import lock as locking
from matrix.axes import AXES, DEFAULT_PATH, DRIVERS, KINDS, Database, Exclude, Matrix, Pin, RunSettings, Subject, Tier
from matrix.lock import Lock, LockError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on the older interpreters nox may run on
    import tomli as tomllib

_PYTHON = re.compile(r"3\.\d{1,2}")
_VERSION = re.compile(r"\d+(\.\d+){0,2}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")

Path_ = tuple[Union[str, int], ...]


class AxesError(ValueError):
    """An invalid axes file. ``str(error)`` is the whole message: ``<file>:<line>: <key>: <problem>``."""


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
