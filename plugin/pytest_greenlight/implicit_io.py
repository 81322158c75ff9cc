"""Record where the portal served implicit IO, and refuse it in strict mode.

Implicit IO is sync code reaching the database through ``await_only``/``await_``: a lazy load, the refresh of an
attribute expired by ``commit()``, or a helper of the user's. In production (outside the portal) each of these raises
``MissingGreenlet``; in tests the portal serves them, so we tell the user where they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Optional

import sqlalchemy
from sqlalchemy import exc as sa_exc

from . import diagnostics

_SQLALCHEMY_DIR = os.path.dirname(sqlalchemy.__file__) + os.sep
_PLUGIN_DIR = os.path.dirname(__file__) + os.sep


@dataclass(frozen=True)
class Site:
    """One place in user code that relied on implicit IO."""

    filename: str
    lineno: int
    function: str
    trigger: str  # e.g. "lazy load of User.addresses"
    qualname: str = ""  # the enclosing function's qualified name (its plain name before Python 3.11)

    def location(self, rootdir: str | None = None) -> str:
        name = self.filename
        if rootdir and name.startswith(rootdir.rstrip(os.sep) + os.sep):
            name = os.path.relpath(name, rootdir)
        return f"{name}:{self.lineno}"


class ImplicitIOError(sa_exc.MissingGreenlet):  # type: ignore[misc,unused-ignore]
    """Raised at an implicit-IO site in strict mode: the same exception production code would get."""


def swallowed_refusal(site: Optional[Site]) -> ImplicitIOError:
    """What a test fails with when strict mode refused implicit IO and the code under test caught the exception."""
    return ImplicitIOError(diagnostics.swallowed_refusal(site))


def _describe_trigger(frame: FrameType) -> str | None:
    code = frame.f_code
    if not code.co_filename.startswith(_SQLALCHEMY_DIR):
        return None
    if code.co_name == "_load_for_state" and "self" in frame.f_locals:
        return f"lazy load of {frame.f_locals['self'].parent_property}"
    if code.co_name in ("load_scalar_attributes", "_load_scalar_attributes"):  # 1.4/2.0, 2.1
        mapper = frame.f_locals.get("mapper")
        names = sorted(frame.f_locals.get("attribute_names") or ())
        owner = getattr(getattr(mapper, "class_", None), "__name__", "?")
        attrs = ", ".join(f"{owner}.{name}" for name in names) or owner
        return f"{_REFRESH}{attrs}"
    return None


_REFRESH = "refresh of expired attribute "


def _attribute_read(frame: FrameType) -> str | None:
    """``User.name`` when ``frame`` is SQLAlchemy's InstrumentedAttribute.__get__ reading that attribute."""
    if frame.f_code.co_name != "__get__" or not frame.f_code.co_filename.startswith(_SQLALCHEMY_DIR):
        return None
    attribute = frame.f_locals.get("self")
    key, owner = getattr(attribute, "key", None), getattr(attribute, "class_", None)
    return f"{owner.__name__}.{key}" if isinstance(key, str) and owner is not None else None


def _is_library_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<"):  # code with no file: SQLAlchemy 2.0.0 generates some with exec ("<string>")
        return True
    return filename.startswith((_SQLALCHEMY_DIR, _PLUGIN_DIR)) or "greenlet" in os.path.basename(filename)


def find_site(step_greenlet: Any) -> Site | None:
    """Walk the suspended greenlet's frames outwards: the trigger from SQLAlchemy's frames, the site from the user's.

    A refresh loads every expired attribute of the object at once; the site names the one the code read.
    """
    frame: FrameType | None = step_greenlet.gr_frame
    trigger: str | None = None
    while frame is not None:
        if trigger is None:
            trigger = _describe_trigger(frame)
        elif trigger.startswith(_REFRESH):
            read = _attribute_read(frame)
            if read is not None:
                trigger = _REFRESH + read
        if not _is_library_frame(frame):
            return Site(
                filename=frame.f_code.co_filename,
                lineno=frame.f_lineno,
                function=frame.f_code.co_name,
                trigger=trigger or "sync call to await_only()/await_() (e.g. a helper doing IO)",
                qualname=getattr(frame.f_code, "co_qualname", frame.f_code.co_name),
            )
        frame = frame.f_back
    return None


@dataclass
class Recorder:
    """Collects sites across a test session; the pytest layer sets ``current_test`` and ``strict`` per test."""

    current_test: Optional[str] = None
    strict: bool = False
    sites: dict[Site, list[str]] = field(default_factory=dict)  # site -> test ids, in first-seen order
    refused_in: dict[str, Optional[Site]] = field(default_factory=dict)  # test -> first site strict mode refused
    served: set[Site] = field(default_factory=set)  # sites the portal served at least once (not refused)
    # In strict mode, sites for which this returns True are served anyway (the baseline's known sites).
    allow: Optional[Callable[[Site], bool]] = None

    @property
    def refused(self) -> set[Site]:
        """Sites strict mode refused every time they were reached."""
        return set(self.sites) - self.served

    def __call__(self, step_greenlet: Any) -> BaseException | None:
        site = find_site(step_greenlet)
        if site is not None:
            tests = self.sites.setdefault(site, [])
            if self.current_test is not None and self.current_test not in tests:
                tests.append(self.current_test)
        if not self.strict or (site is not None and self.allow is not None and self.allow(site)):
            if site is not None:
                self.served.add(site)
            return None
        if self.current_test is not None:
            self.refused_in.setdefault(self.current_test, site)
        return ImplicitIOError(diagnostics.strict_refusal(site))

    def to_records(self) -> list[dict[str, Any]]:
        """The sites as plain data, for a pytest-xdist worker to hand to the controller (``workeroutput``)."""
        return [
            {**asdict(site), "tests": list(tests), "served": site in self.served} for site, tests in self.sites.items()
        ]

    def merge_records(self, records: list[dict[str, Any]]) -> None:
        """Add a worker's sites: one entry per site however many workers reached it, their tests in order."""
        for record in records:
            record = dict(record)
            tests, served = record.pop("tests"), record.pop("served")
            site = Site(**record)
            known = self.sites.setdefault(site, [])
            known.extend(test for test in tests if test not in known)
            if served:
                self.served.add(site)
