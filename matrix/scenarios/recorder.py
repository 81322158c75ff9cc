"""pytest plugin (``-p matrix.scenarios.recorder``): one JSON line per (scenario, database, driver).

Each line is exactly a ``scenarios[]`` entry of ``reports/SCHEMA.md``. Outcome, exception and verdict are computed
here from what pytest saw, against the expectation declared next to the scenario and resolved for this cell and
driver. Lines are appended and flushed one by one to ``GREENLIGHT_SCENARIO_OUT`` so a crash or a hang loses nothing
that finished. Every database password is replaced by ``***`` and long texts are capped.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from matrix.scenarios import share
from matrix.scenarios.core import Expect, current_axes, scenario_of
from matrix.scenarios.support import Target, missing_dialect, redact, targets

CAP = 4000
TIMEOUT_PREFIX = "Timeout ("  # pytest-timeout fails a test with "Timeout (>60.0s) from pytest-timeout."


def qualified_name(cls: type) -> str:
    """The public dotted name of an exception class: 'asyncpg.exceptions._base.InterfaceError' is re-exported
    by 'asyncpg.exceptions', so that is the name; builtins are bare ('RuntimeError')."""
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        candidate = ".".join(parts[:end])
        if any(piece.startswith("_") for piece in parts[:end]):
            break
        try:
            if getattr(importlib.import_module(candidate), cls.__qualname__, None) is cls:
                return f"{candidate}.{cls.__qualname__}"
        except ImportError:
            continue
    return f"{module}.{cls.__qualname__}"


def unwrap(exc: BaseException) -> BaseException:
    """SQLAlchemy wraps a non-DBAPI error raised while executing a statement (MissingGreenlet from a lazy load on
    most drivers) in a plain ``StatementError``; the wrapped error is what the scenario is about. ``DBAPIError``
    subclasses are kept: they are the clean, documented form of a driver error."""
    while type(exc).__name__ == "StatementError" and type(exc).__module__ == "sqlalchemy.exc":
        orig = getattr(exc, "orig", None)
        if not isinstance(orig, BaseException):
            break
        exc = orig
    return exc


def exception_names(exc: BaseException) -> list[str]:
    """Names of the exception and its bases (a nested run reports the inner exception's names instead)."""
    inner = getattr(exc, "recorded_names", None)
    if inner:
        return list(inner)
    exc = unwrap(exc)
    names = [qualified_name(cls) for cls in type(exc).__mro__ if issubclass(cls, BaseException)]
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        # An exception group (pytest 9 raises one for several unraisable warnings): what it is about is the
        # first leaf, so that leads; the group's own names follow for rules that want the group itself.
        return [*exception_names(inner[0]), *names]
    return names


def cap(text: str) -> str:
    text = redact(text)
    return text if len(text) <= CAP else text[: CAP - 20] + "\n… [truncated]"


def cap_tail(text: str) -> str:
    """Tracebacks are most useful at their end: keep the last part."""
    text = redact(text)
    return text if len(text) <= CAP else "[truncated] …\n" + text[-(CAP - 20) :]


@dataclass
class _Phase:
    when: str
    outcome: str
    duration: float
    names: list[str] = field(default_factory=list)
    message: str = ""
    traceback: str = ""


def _phase(report: pytest.TestReport, excinfo: Optional[pytest.ExceptionInfo[BaseException]]) -> _Phase:
    phase = _Phase(report.when or "call", report.outcome, report.duration)
    if report.skipped:
        longrepr = report.longrepr
        phase.message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    elif report.failed and excinfo is not None:
        phase.names = exception_names(excinfo.value)
        phase.message = str(getattr(excinfo.value, "recorded_message", "") or unwrap(excinfo.value))
        phase.traceback = report.longreprtext
    return phase


def compute_outcome(phases: list[_Phase]) -> _Phase:
    """The phase that decides the outcome: the first that failed or skipped, else the call."""
    for phase in phases:
        if phase.outcome != "passed":
            return phase
    return next((p for p in phases if p.when == "call"), phases[-1])


def outcome_name(phase: _Phase) -> str:
    if phase.outcome == "skipped":
        return "skipped"
    if phase.outcome == "passed":
        return "passed"
    if phase.message.startswith(TIMEOUT_PREFIX) and "pytest-timeout" in phase.message:
        return "timeout"
    return "failed" if phase.when == "call" else "error"


def verdict(expect: Expect, outcome: str, names: list[str]) -> str:
    """``works`` when the outcome matches the expectation (a pass, or the named exception or a subclass)."""
    if outcome == "skipped":
        return "skipped"
    if expect.or_pass and outcome == "passed":
        return "works"  # pass_or_raises: right results are one of its clean endings
    if expect.kind == "pass":
        return "works" if outcome == "passed" else "broken"
    if expect.kind == "raises":
        wanted = set(expect.detail.split("|"))
        return "works" if outcome in ("failed", "error") and wanted & set(names) else "broken"
    return "broken"  # an n/a scenario that ran anyway did not do what the catalogue says


def _declared_target(item: pytest.Item) -> tuple[Any, Optional[Target]]:
    params = getattr(item, "callspec", None)
    target = params.params.get("db") if params is not None else None
    return scenario_of(getattr(item, "obj", None)), target if isinstance(target, Target) else None


class Recorder:
    def __init__(self, path: Optional[str], store: Optional[share.Store] = None) -> None:
        self.path = path
        self.axes = current_axes()
        self.phases: dict[str, list[_Phase]] = {}
        self.store = store
        self.claims: dict[str, tuple[Path, share.Claim]] = {}  # nodeid -> place, claim: this run writes them
        self.waiting: list[tuple[pytest.Item, Path]] = []  # claimed by another run: waited for at the end

    def place(self, item: pytest.Item) -> Optional[Path]:
        """Where the item's result is shared across cells, or None (not shared)."""
        declared, target = _declared_target(item)
        if self.store is None or declared is None or target is None or not declared.per_database:
            return None  # a scenario that stands for every database of its cell depends on the cell's databases
        return self.store.place(declared.id, declared.runner_free, target.id)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Shared scenarios: reuse what is stored, claim what is free (run here), put off what another run holds."""
        if self.store is None:
            return
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            place = self.place(item)
            if place is None:
                kept.append(item)
                continue
            if self.reuse(item, place):
                dropped.append(item)
                continue
            claim = self.store.claim(place)
            if claim is not None and self.reuse(item, place):  # written between the look and the claim
                claim.release()
                dropped.append(item)
            elif claim is not None:
                self.claims[item.nodeid] = (place, claim)
                kept.append(item)
            else:
                dropped.append(item)
                self.waiting.append((item, place))
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, None]:
        """After this run's own scenarios: wait for each claim another run held, then reuse its result, or run the
        scenario here when that run died (its claim is free and it wrote nothing) or never let go in time."""
        outcome = yield
        if self.store is None or outcome.excinfo is not None:
            return
        for item, place in self.waiting:
            if session.shouldfail or session.shouldstop:
                return
            claim = self.store.wait_claim(place)
            if self.reuse(item, place):
                if claim is not None:
                    claim.release()
                continue
            if claim is not None:
                self.claims[item.nodeid] = (place, claim)
            item.ihook.pytest_runtest_protocol(item=item, nextitem=None)

    def reuse(self, item: pytest.Item, place: Path) -> bool:
        """Record the stored result of another cell's run as this cell's (verdict against this cell's expectation),
        with ``ran_in``; False when nothing is stored."""
        stored = share.Store.read(place)
        declared, target = _declared_target(item)
        if stored is None or declared is None or target is None:
            return False
        entry = dict(stored["entry"])
        expect = declared.resolve(self.axes.with_target(driver=target.driver, database=target.kind))
        names = [str(n) for n in stored.get("names") or []]
        entry.update(
            expected="n/a" if expect.kind == "n/a" else str(expect),
            verdict=verdict(expect, str(entry.get("outcome")), names),
            duration=0.0,
            ran_in=str(stored.get("ran_in")),
        )
        self.write(entry)
        return True

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        declared, target = _declared_target(item)
        if declared is None or target is None:
            return
        phases = self.phases.setdefault(item.nodeid, [])
        phases.append(_phase(report, call.excinfo))
        if report.when == "teardown":  # pytest always runs teardown, also after a failed or skipped setup
            phases = self.phases.pop(item.nodeid)
            entry = self.entry(declared, target, phases)
            self.write(entry)
            self.share(item.nodeid, entry, compute_outcome(phases).names)
            if not declared.per_database:
                for other in targets():
                    if other.id != target.id:  # by id: the target that ran has a SQLite file of its own
                        self.write(self.stands_for(declared, entry, target, other))

    def entry(self, declared: Any, target: Target, phases: list[_Phase]) -> dict[str, Any]:
        expect = declared.resolve(self.axes.with_target(driver=target.driver, database=target.kind))
        deciding = compute_outcome(phases)
        outcome = outcome_name(deciding)
        return {
            "id": declared.id,
            "category": declared.category,
            "database": target.name,
            "driver": target.driver,
            "checks": declared.checks,
            "expected": "n/a" if expect.kind == "n/a" else str(expect),
            "outcome": outcome,
            "exception": deciding.names[0] if deciding.names else None,
            "verdict": verdict(expect, outcome, deciding.names),
            "duration": round(sum(p.duration for p in phases), 4),
            "message": cap(deciding.message) if deciding.message else None,
            "traceback": cap_tail(deciding.traceback) if deciding.traceback else None,
        }

    def stands_for(self, declared: Any, entry: dict[str, Any], ran: Target, other: Target) -> dict[str, Any]:
        """The result of a scenario that does not depend on the database, for another database of the cell:
        the same outcome, marked ``ran_on`` (a driver whose dialect this SQLAlchemy lacks is skipped, as it
        would have been)."""
        missing = missing_dialect(other)
        if missing:
            expect = declared.resolve(self.axes.with_target(driver=other.driver, database=other.kind))
            return {
                **entry,
                "database": other.name,
                "driver": other.driver,
                "expected": "n/a" if expect.kind == "n/a" else str(expect),
                "outcome": "skipped",
                "exception": None,
                "verdict": "skipped",
                "duration": 0.0,
                "message": missing,
                "traceback": None,
            }
        return {
            **entry,
            "database": other.name,
            "driver": other.driver,
            "duration": 0.0,
            "ran_on": f"{ran.name}/{ran.driver}",
        }

    def share(self, nodeid: str, entry: dict[str, Any], names: list[str]) -> None:
        """Store a claimed scenario's result for other cells, then let go of the claim. A timeout is not stored: on
        a busy machine it may be the machine's, and each cell finds out for itself."""
        held = self.claims.pop(nodeid, None)
        if held is None or self.store is None:
            return
        place, claim = held
        try:
            if entry["outcome"] != "timeout":
                self.store.write(place, entry, names)
        finally:
            claim.release()

    def write(self, entry: dict[str, Any]) -> None:
        if not self.path:
            return
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            out.flush()


def pytest_configure(config: pytest.Config) -> None:
    recorder = Recorder(os.environ.get("GREENLIGHT_SCENARIO_OUT"), share.from_env())
    config.pluginmanager.register(recorder, "greenlight-recorder")
