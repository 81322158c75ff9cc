"""Scenarios that need a pytest configuration of their own (a mode, a loop scope, a fixture layout) run a nested
``python -m pytest`` in a temporary directory, with the same explicit plugins as the outer run
(``GREENLIGHT_PLUGIN_ARGS``) and the scenario's database in ``GREENLIGHT_NESTED_DB``.

The files of a nested run are real modules in ``matrix/scenarios/layouts`` (see its ``__init__``), copied into
the temporary directory under the names pytest collects there.

A nested run is reported like any other scenario: when an inner test fails, :class:`NestedFailure` carries the inner
exception's names, so the recorder records e.g. ``sqlalchemy.exc.MissingGreenlet`` rather than a wrapper.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix import contract
from matrix.scenarios import forkserver
from matrix.scenarios.core import current_axes, version_matches
from matrix.scenarios.support import Target, missing_dialect, own_database, representative, targets

REPO = Path(__file__).resolve().parents[2]
LAYOUTS = Path(__file__).with_name("layouts")
# Shared by the inner modules: tables for the outer scenario's database, dropped when the inner module ends.
INNER_CONFTEST = LAYOUTS / "inner_conftest.py"
BASE_PLUGINS = ["-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin", "-p", "pytest_timeout"]
INNER_TIMEOUT = 10  # per inner test
# A whole nested run (several inner modules, one database, under "none" with its failures) can take longer than
# one scenario's 60 s on a busy machine: nested scenarios carry @pytest.mark.timeout(NESTED_TIMEOUT) instead, which
# stays below the matrix runner's stall limit (twice the scenario timeout).
WALL_TIMEOUT = 100
NESTED_TIMEOUT = WALL_TIMEOUT + 10


class NestedFailure(Exception):
    """An inner test did not pass; ``recorded_names`` are the inner exception's qualified names and bases."""

    def __init__(self, message: str, names: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.recorded_names = list(names) or [
            "matrix.scenarios.nested.NestedFailure",
            "Exception",
            "BaseException",
        ]
        self.recorded_message = message


@dataclass(frozen=True)
class NestedResult:
    returncode: int
    entries: list[dict[str, Any]]
    output: str
    ids: dict[str, str]  # inner parameter id ("DB0") -> target id ("sqlite-aiosqlite")

    def for_target(self, db: Target) -> NestedResult:
        """Entries of the inner tests run on ``db``, plus those tied to no database (collection errors)."""
        mine = {inner for inner, outer in self.ids.items() if outer == db.id}
        params = re.compile(r"\[(.*)\]$")

        def belongs(nodeid: str) -> bool:
            found = params.search(nodeid)
            tokens = set(found.group(1).split("-")) & set(self.ids) if found else set()
            return not tokens or bool(tokens & mine)

        if not mine:
            raise NestedFailure(f"{db.id} was not part of the nested run (its dialect is missing?)")
        return NestedResult(self.returncode, [e for e in self.entries if belongs(e["nodeid"])], self.output, self.ids)

    def for_module(self, filename: str) -> NestedResult:
        """Entries of one inner module (a group runs several)."""
        entries = [e for e in self.entries if e["nodeid"].split("::")[0] == filename]
        return NestedResult(self.returncode, entries, self.output, self.ids)

    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["outcome"] == "failed"]

    def passed(self) -> list[str]:
        return [e["nodeid"] for e in self.entries if e["when"] == "call" and e["outcome"] == "passed"]

    def require(self, passed: int) -> None:
        """Raise the first inner failure, or :class:`NestedFailure` unless exactly ``passed`` inner tests passed."""
        for failure in self.failures():
            where = f"{failure['nodeid']} ({failure['when']})"
            raise NestedFailure(f"{where}: {failure['message'] or failure['longrepr'][-1500:]}", failure["names"])
        if len(self.passed()) != passed:
            skipped = [e for e in self.entries if e["outcome"] == "skipped"]
            detail = skipped[0]["longrepr"][-500:] if skipped else self.output[-1500:]
            raise NestedFailure(f"{len(self.passed())} of {passed} inner tests passed: {detail}")


# Runs last (pytest collects files in name order): session-scoped finalizers then fail in its teardown, not in the
# teardown of whichever scenario module happened to run last.
_LAST = "test_zzz_session_end.py"
_LAST_MODULE = LAYOUTS / "session_end.py"


def own_run(layout: str) -> dict[str, Path]:
    """The files of a scenario's nested run of its own: the inner conftest and ``layouts/<layout>/inner.py`` (as
    ``test_inner.py``)."""
    return {"conftest.py": INNER_CONFTEST, "test_inner.py": LAYOUTS / layout / "inner.py"}


class NestedGroup:
    """Nested scenarios sharing one configuration: one pytest process runs all their inner modules
    (``layouts/<directory>/<name>.py``, copied as ``test_<name>.py``), and each scenario reads the results of its own
    module. Modules are added at import time, so the first scenario to run starts the process with all of them.

    A module added with ``every_database=False`` (its scenario does not depend on the database) runs on the
    representative target only (:func:`~matrix.scenarios.support.representative`); the others on every target.
    ``isolated`` groups (garbage-collection scenarios) run one process per database instead, so that one database's
    leftovers cannot surface in another's test."""

    def __init__(self, key: str, directory: Path, *, args: Sequence[str] = (), isolated: bool = False) -> None:
        self.key = key
        self.directory = directory
        self.args = [*args, "--continue-on-collection-errors"]  # one broken module must not stop the others
        self.isolated = isolated
        self.modules: dict[str, Path] = {}
        self.every_database: dict[str, bool] = {}

    def add(self, name: str, *, applies: bool = True, every_database: bool = False) -> None:
        """Register inner module ``test_<name>.py``; ``applies=False`` (the scenario is n/a here) leaves it out."""
        source = self.directory / f"{name}.py"
        if not source.is_file():
            raise FileNotFoundError(f"the nested group {self.key!r} has no layout {source}")
        if applies:
            self.modules[f"test_{name}.py"] = source
            self.every_database[f"test_{name}.py"] = every_database

    def run(self, name: str, db: Target) -> NestedResult:
        filename = f"test_{name}.py"
        if filename not in self.modules:
            raise NestedFailure(f"{filename} is not part of the nested group {self.key!r} here")
        files = {"conftest.py": INNER_CONFTEST, **self.modules, _LAST: _LAST_MODULE}
        only = {f: False for f, every in self.every_database.items() if not every}
        return run_nested(self.key, db, files, args=self.args, isolated=self.isolated, only=only).for_module(filename)


def plugin_args(environ: Mapping[str, str] = os.environ) -> list[str]:
    raw = environ.get("GREENLIGHT_PLUGIN_ARGS")
    return list(json.loads(raw)) if raw else list(BASE_PLUGINS)


def has_loop_scope() -> bool:
    """pytest-asyncio 0.24 added ``loop_scope`` (fixtures and the asyncio marker)."""
    return version_matches(current_axes().pytest_asyncio, ">=0.24")


def ini_text(mode: str = "strict", extra: str = "") -> str:
    lines = ["[pytest]", f"asyncio_mode = {mode}"]
    if has_loop_scope():
        lines.append("asyncio_default_fixture_loop_scope = function")
    return "\n".join(lines) + "\n" + extra


_RESULTS: dict[str, NestedResult] = {}
# Strict-mode layouts of several categories (fixture styles, fixture scopes) share one nested run per database.
STRICT_LAYOUTS = NestedGroup("strict-layouts", LAYOUTS / "strict")  # one process for every database


def run_nested(
    key: str,
    db: Target,
    files: Mapping[str, Path],
    *,
    ini: str | None = None,
    args: Sequence[str] = (),
    isolated: bool = False,
    every_database: bool = True,
    only: Mapping[str, bool] | None = None,
) -> NestedResult:
    """The inner results for ``db`` of the nested run ``key``.

    One run covers every target: a fresh interpreter costs seconds, so the first target's scenario runs it and
    the others read its results. ``every_database=False`` (a scenario that does not depend on the database) runs
    it on the representative target only; ``only`` does the same per inner module of a group. ``isolated``
    gives each target a process of its own instead, for scenarios about garbage collection, where one database's
    leftovers would otherwise surface in another's test.
    """
    if isolated:
        key = f"{key}@{db.id}"
    if key not in _RESULTS:
        usable = [own_database(t, f"nested.{key}") for t in targets() if not missing_dialect(t)]
        if isolated:
            usable = [db]
        elif not every_database:
            usable = [representative(usable) or db]
        with tempfile.TemporaryDirectory(prefix="greenlight-nested-") as tmp:
            _RESULTS[key] = _run(Path(tmp), usable, files, ini=ini, args=args, only=only or {})
    return _RESULTS[key].for_target(db)


def _run(
    directory: Path,
    usable: list[Target],
    files: Mapping[str, Path],
    *,
    ini: str | None,
    args: Sequence[str],
    only: Mapping[str, bool],
) -> NestedResult:
    """Copy ``files`` (name there -> layout file) into ``directory`` and run pytest there in a fresh interpreter."""
    (directory / "pytest.ini").write_text(ini if ini is not None else ini_text(), encoding="utf-8")
    for name, source in files.items():
        shutil.copyfile(source, directory / name)
    probe = directory / "probe.jsonl"
    env = {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "GREENLIGHT_PROBE_OUT": str(probe),
        "GREENLIGHT_NESTED_DBS": json.dumps(
            [{"name": t.name, "kind": t.kind, "driver": t.driver, "url": t.url} for t in usable]
        ),
        # Inner modules that run on the first target only (their scenario does not depend on the database).
        "GREENLIGHT_NESTED_FIRST_ONLY": json.dumps(sorted(name for name, every in only.items() if not every)),
    }
    env.pop("GREENLIGHT_SCENARIO_OUT", None)  # the inner run must not write outer results
    args = [
        str(directory),
        "-c",
        str(directory / "pytest.ini"),
        "--rootdir",
        str(directory),
        "-p",
        "no:cacheprovider",
        "-p",
        "matrix.scenarios.probe",
        *plugin_args(),
        f"--timeout={INNER_TIMEOUT}",
        "-q",
        "--tb=native",  # the probe reads names and messages; pytest's source-rendering tracebacks cost ~40% here
        *args,
    ]
    returncode, output = _pytest(directory, args, env)
    entries = []
    if probe.exists():
        entries = [json.loads(line) for line in probe.read_text(encoding="utf-8").splitlines() if line]
    ids = {f"DB{index}": target.id for index, target in enumerate(usable)}
    return NestedResult(returncode, entries, output, ids)


_SERVER: list[tuple[subprocess.Popen[bytes], str]] = []


def start_server() -> None:
    _server()


def _server() -> str | None:
    """The socket of the fork server (:mod:`matrix.scenarios.forkserver`) nested runs are forked from: the cell's,
    or, outside the matrix runner (the project's tests, a developer's run), one this process starts."""
    given = contract.text(contract.FORKSERVER)
    if given:
        return given
    if _SERVER:  # a server that died sends nested runs back to fresh interpreters
        server, path = _SERVER[0]
        return path if server.poll() is None else None
    path = forkserver.socket_path()
    atexit.register(shutil.rmtree, os.path.dirname(path), True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(
        [sys.executable, "-m", "matrix.scenarios.forkserver", "--serve", path], stdin=subprocess.PIPE, env=env
    )
    _SERVER.append((server, path))  # it ends when this process does (its stdin closes)
    return path if forkserver.wait_listening(path, server) else None


def _pytest(directory: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``pytest args`` in ``directory``: forked from the fork server (libraries already imported), or a fresh
    interpreter when there is none. Returns (exit status, output); -1 when it outlived WALL_TIMEOUT."""
    output = directory / "nested-output.txt"
    path = _server()
    if path is not None:
        with open(output, "wb") as out, open(os.devnull, "rb") as nothing:
            fds = (nothing.fileno(), out.fileno(), out.fileno())
            returncode = forkserver.request(path, str(directory), args, env, fds, timeout=WALL_TIMEOUT)
        if returncode is not None:
            text = output.read_text(encoding="utf-8", errors="replace")
            if returncode == -1:
                text = f"nested pytest still running after {WALL_TIMEOUT}s: {text[-3000:]!r}"
            return returncode, text
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=WALL_TIMEOUT,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:  # recorded for every target as a hang
        return -1, f"nested pytest still running after {WALL_TIMEOUT}s: {expired.output!r}"


def inner_targets() -> list[tuple[str, Target]]:
    """Inside a nested run: (pytest id, target) for each database of the outer run."""
    raw = json.loads(os.environ["GREENLIGHT_NESTED_DBS"])
    return [(f"DB{i}", Target(d["name"], d["kind"], d["driver"], d["url"])) for i, d in enumerate(raw)]
