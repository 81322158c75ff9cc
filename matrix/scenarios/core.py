"""Scenario declarations: a stable id, a category, what it checks, and what "works" means per axis values.

A scenario is a pytest test decorated with :func:`scenario`. Its expectation is declared next to it and resolved
against the cell (Python, SQLAlchemy, pytest-asyncio, subject) and the database/driver of each run, so that the
recorder can compute a verdict instead of anybody judging it by eye. This module imports nothing from pytest so
that the catalogue (README table) can be rendered from it without running anything.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, TypeVar, Union

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from matrix.rules import PASS_OR

F = TypeVar("F", bound=Callable[..., Any])

CATEGORIES = (
    "context",
    "gather",
    "fixture-styles",
    "implicit-io",
    "transactions",
    "driver-specifics",
    "teardown-hygiene",
)
_ID = re.compile(r"^([a-z-]+)/[a-z0-9][a-z0-9-]*$")
# Axis keys a rule may test; the version ones take specifiers like ">=2.0,<2.1", the others exact values.
VERSION_AXES = ("python", "sqlalchemy", "pytest_asyncio", "pytest")
VALUE_AXES = ("subject", "driver", "database")
# What a scenario's result may depend on (``depends=``); "database" means the database and its driver. A scenario
# that does not depend on the database runs once per cell, on the first database whose dialect this SQLAlchemy
# has, and that result stands for every other database of the cell (recorded with ``ran_on``: the drill-down
# says so). Default: everything.
DEPENDS = ("python", "sqlalchemy", "pytest_asyncio", "pytest", "subject", "database")
# For scenarios about pytest-asyncio's modes, loops and fixture scopes, anyio's marker or the plugin's own
# report: what they check happens in pytest and the event loop, whatever database the inner test talks to.
NOT_DATABASE = tuple(axis for axis in DEPENDS if axis != "database")
# The test runner's axes: pytest-asyncio owns the loop and its lifetime, fixture scopes, cancellation at the end of a
# loop scope (1.1) and loop factories (1.4); pytest owns collection, warnings and unraisable-exception handling.
RUNNER_AXES = ("pytest_asyncio", "pytest")
# For scenarios whose one function-scoped async test with sync fixtures checks SQLAlchemy, the driver or the
# database: the same inputs give the same result whatever pytest-asyncio and pytest are, so the runner runs them
# once per distinct value of the rest across cells (matrix.share) and records ``ran_in`` where it reuses one.
NOT_RUNNER = tuple(axis for axis in DEPENDS if axis not in RUNNER_AXES)
# What a rule on a key tests, as a ``depends`` axis: a rule on an axis means the result depends on it.
RULE_AXIS = {
    **{axis: axis for axis in VERSION_AXES},
    "subject": "subject",
    "driver": "database",
    "database": "database",
}


def version_matches(actual: str, spec: str) -> bool:
    """True when version ``actual`` satisfies the PEP 440 specifier ``spec`` (e.g. '>=0.23,<1'), pre-releases
    included (a canary cell's versions are compared like any other). ``packaging`` decides, so '==2.0' means
    2.0.0 (not every 2.0.x: write '>=2.0,<2.1' for a series)."""
    try:
        specifiers = SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise ValueError(f"bad version specifier {spec!r}: {exc}") from None
    try:
        version = Version(actual)
    except InvalidVersion:
        return False
    return specifiers.contains(version, prereleases=True)


@dataclass(frozen=True)
class Axes:
    """The values an expectation may depend on, for one run of one scenario."""

    python: str
    sqlalchemy: str
    pytest_asyncio: str
    subject: str
    driver: str = ""
    database: str = ""  # the database kind: sqlite, postgresql or mysql
    pytest: str = ""  # pytest's version ("": unknown, which no version specifier matches)

    def with_target(self, *, driver: str, database: str) -> Axes:
        return replace(self, driver=driver, database=database)


@functools.cache  # read in every scenario's setup; what is installed does not change during a run
def _installed(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0"


def current_axes(environ: Mapping[str, str] = os.environ) -> Axes:
    """Axes of this process: versions as installed (exact, so rules can be precise), subject from the cell."""
    cell = json.loads(environ.get("GREENLIGHT_CELL") or "{}")
    return Axes(
        python="{}.{}.{}".format(*sys.version_info[:3]),
        sqlalchemy=_installed("sqlalchemy"),
        pytest_asyncio=_installed("pytest-asyncio"),
        subject=str(cell.get("subject", "none")),
        pytest=_installed("pytest"),
    )


@dataclass(frozen=True)
class Expect:
    """One expectation: ``pass``, ``raises:<qualified exception name>``, ``pass or raises:<name>``, or not
    applicable (recorded as skipped)."""

    kind: str  # "pass" | "raises" | "n/a"
    detail: str = ""  # exception name for "raises", reason for "n/a"
    or_pass: bool = False  # "raises" only: a pass counts too (see pass_or_raises)

    def __str__(self) -> str:
        if self.kind == "pass":
            return "pass"
        if self.kind == "raises":
            return f"{PASS_OR if self.or_pass else ''}raises:{self.detail}"
        return f"n/a ({self.detail})"


PASS = Expect("pass")


def raises(*qualified_names: str) -> Expect:
    """Expect this exception (or a subclass), named as the recorder names it: 'sqlalchemy.exc.MissingGreenlet'.

    Several names mean any of them is the clean outcome (written 'raises:A|B'): used where the same fault
    reaches the user as either of two documented errors, depending on timing.
    """
    if not qualified_names:
        raise ValueError("raises() needs at least one exception name")
    return Expect("raises", "|".join(qualified_names))


def pass_or_raises(*qualified_names: str) -> Expect:
    """Right results or one of these clean errors, whichever the timing gives: for races the scenario only asks to
    end cleanly (never a hang, never wrong values). Written 'pass or raises:A'."""
    return replace(raises(*qualified_names), or_pass=True)


def not_applicable(reason: str) -> Expect:
    """The scenario does not apply for these axis values; it is skipped with ``reason``."""
    return Expect("n/a", reason)


Condition = Union[str, Sequence[str]]


@dataclass(frozen=True)
class Rule:
    """``expect`` applies when every condition holds (version specifiers, or one of the listed values)."""

    conditions: tuple[tuple[str, Condition], ...]
    expect: Expect

    def matches(self, axes: Axes) -> bool:
        for key, wanted in self.conditions:
            actual = getattr(axes, key)
            if key in VERSION_AXES:
                assert isinstance(wanted, str)
                if not version_matches(actual, wanted):
                    return False
            elif actual not in ((wanted,) if isinstance(wanted, str) else tuple(wanted)):
                return False
        return True

    def describe(self) -> str:
        parts = []
        for key, wanted in self.conditions:
            if key in VERSION_AXES:
                parts.append(f"{key}{wanted}")
            else:
                values = (wanted,) if isinstance(wanted, str) else tuple(wanted)
                parts.append(f"{key}={'|'.join(values)}")
        return " and ".join(parts)


def when(*, expect: Expect, **conditions: Condition) -> Rule:
    """A rule: ``when(python="<3.10", expect=raises("RuntimeError"))``."""
    for key in conditions:
        if key not in VERSION_AXES + VALUE_AXES:
            raise ValueError(f"unknown axis {key!r}; use one of {VERSION_AXES + VALUE_AXES}")
    for key in VERSION_AXES:
        if key in conditions:
            version_matches("1", str(conditions[key]))  # validates the specifier now, not during a run
    return Rule(tuple(conditions.items()), expect)


@dataclass(frozen=True)
class Scenario:
    id: str
    checks: str
    expect: Expect = PASS
    unless: tuple[Rule, ...] = field(default_factory=tuple)
    # Relies on implicit IO being served (lazy loads, expired attributes, await_only in sync code): without a
    # greenlet portal (subject "none") it raises MissingGreenlet, and the suite's own tests check exactly that.
    implicit_io: bool = False
    depends: tuple[str, ...] = DEPENDS

    @property
    def per_database(self) -> bool:
        """Whether the scenario runs on every database of the cell (or once, standing for all of them)."""
        return "database" in self.depends

    @property
    def runner_free(self) -> tuple[str, ...]:
        """The test runner's axes this scenario does not depend on: across cells that differ only in those, one
        run of it stands for all (see :mod:`matrix.share`)."""
        return tuple(axis for axis in RUNNER_AXES if axis not in self.depends)

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]

    def resolve(self, axes: Axes) -> Expect:
        """The first matching rule wins; otherwise the default expectation."""
        for rule in self.unless:
            if rule.matches(axes):
                return rule.expect
        return self.expect

    def describe(self) -> str:
        """The expectation per axis values, as the README catalogue shows it."""
        text = str(self.expect)
        for rule in self.unless:
            text += f"; {rule.expect} when {rule.describe()}"
        return text


REGISTRY: dict[str, Scenario] = {}
ATTRIBUTE = "__greenlight_scenario__"


def scenario(
    id: str,
    *,
    checks: str,
    expect: Expect = PASS,
    unless: Sequence[Rule] = (),
    implicit_io: bool = False,
    depends: Sequence[str] = DEPENDS,
) -> Callable[[F], F]:
    """Declare a pytest test as the scenario ``id`` ('category/name'); see the module docstring."""
    match = _ID.match(id)
    if match is None or match.group(1) not in CATEGORIES:
        raise ValueError(f"scenario id {id!r} must be '<category>/<name>' with a category from {CATEGORIES}")
    unknown = set(depends) - set(DEPENDS)
    if unknown:
        raise ValueError(f"scenario {id!r}: unknown axes in depends: {sorted(unknown)} (use {DEPENDS})")
    ruled = {RULE_AXIS[key] for rule in unless for key, _ in rule.conditions}
    if "database" in ruled and "database" not in depends:
        raise ValueError(f"scenario {id!r} has rules on the database or driver, so it depends on the database")
    if ruled - set(depends):
        raise ValueError(f"scenario {id!r} has rules on {sorted(ruled - set(depends))}, so it depends on them")
    if implicit_io and "pytest_asyncio" not in depends:
        # The portal that serves implicit IO is put on the loops pytest-asyncio makes (loop factories, scopes).
        raise ValueError(f"scenario {id!r} relies on implicit IO, so it depends on pytest_asyncio")
    declared = Scenario(id, " ".join(checks.split()), expect, tuple(unless), implicit_io, tuple(depends))
    known = REGISTRY.get(id)
    if known is not None and known != declared:
        raise ValueError(f"scenario id {id!r} is declared twice")
    REGISTRY[id] = declared

    def mark(function: F) -> F:
        setattr(function, ATTRIBUTE, declared)
        return function

    return mark


def scenario_of(function: object) -> Scenario | None:
    return getattr(function, ATTRIBUTE, None)
