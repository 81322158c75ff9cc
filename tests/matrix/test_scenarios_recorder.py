"""The scenario machinery on its own: expectations resolved per axis values, verdicts, exception names,
redaction, timeouts, and nested runs reporting the inner exception."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from matrix.scenarios.core import (
    PASS,
    Axes,
    Scenario,
    current_axes,
    not_applicable,
    pass_or_raises,
    raises,
    version_matches,
    when,
)
from matrix.scenarios.recorder import exception_names, qualified_name, verdict
from matrix.scenarios.support import redact

REPO = Path(__file__).resolve().parents[2]
AXES = Axes(python="3.9.18", sqlalchemy="1.4.54", pytest_asyncio="0.21.2", subject="none", driver="asyncpg")


@pytest.mark.parametrize(
    ("version", "spec", "matches"),
    [
        ("3.9.18", "<3.10", True),
        ("3.10.0", "<3.10", False),
        ("0.26.0", "<1.0", True),
        ("1.0.0", "<1.0", False),
        ("1.5.0", ">=1", True),
        ("0.23.8", ">=0.23,<0.24", True),
        ("0.24.0", ">=0.23,<0.24", False),
        ("2.1.0b1", ">=2.0", True),  # pre-releases are versions like any other (canary cells)
        ("2.1.0b1", "==2.1", False),  # PEP 440 (packaging): ==2.1 is 2.1.0 exactly ...
        ("2.0.36", "==2.0", False),
        ("2.0.36", "==2.0.*", True),  # ... a series is written with a wildcard
        ("1.4.1.post1", ">=1.4,<1.5", True),
    ],
)
def test_version_specifiers(version: str, spec: str, matches: bool) -> None:
    assert version_matches(version, spec) is matches


def test_bad_specifier_is_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match="bad version specifier"):
        when(python="~3.9", expect=PASS)
    with pytest.raises(ValueError, match="unknown axis"):
        when(os="linux", expect=PASS)


def test_first_matching_rule_wins_and_default_applies_otherwise() -> None:
    declared = Scenario(
        "gather/x",
        "checks",
        expect=raises("sqlalchemy.exc.InvalidRequestError"),
        unless=(
            when(pytest_asyncio="<0.24", expect=not_applicable("old")),
            when(sqlalchemy="<2.0", expect=PASS),
        ),
    )
    assert declared.resolve(AXES).kind == "n/a"
    newer = Axes("3.12.1", "1.4.54", "1.5.0", "greenlight", "aiosqlite", "sqlite")
    assert declared.resolve(newer) == PASS
    newest = Axes("3.12.1", "2.1.9", "1.5.0", "greenlight", "aiosqlite", "sqlite")
    assert str(declared.resolve(newest)) == "raises:sqlalchemy.exc.InvalidRequestError"
    assert declared.describe() == (
        "raises:sqlalchemy.exc.InvalidRequestError; n/a (old) when pytest_asyncio<0.24; pass when sqlalchemy<2.0"
    )


def test_a_rule_on_pytest_tests_the_installed_pytest() -> None:
    """teardown-hygiene/dispose-on-wrong-loop's aiomysql rule: unraisable warnings fail teardown before pytest 8.4."""
    rule = when(driver="aiomysql", pytest="<8.4", expect=raises("pytest.PytestUnraisableExceptionWarning"))
    old = Axes("3.10.13", "2.0.0", "0.21.0", "none", "aiomysql", "mysql", pytest="7.4.0")
    assert rule.matches(old)
    assert not rule.matches(replace(old, pytest="8.4.2"))
    assert not rule.matches(replace(old, pytest=""))  # unknown: no specifier matches
    assert current_axes({}).pytest == pytest.__version__
    assert current_axes({}).with_target(driver="asyncpg", database="postgresql").pytest == pytest.__version__


def test_value_rules_accept_one_of_several() -> None:
    rule = when(driver=("aiomysql", "asyncmy"), database="mysql", expect=PASS)
    assert rule.matches(Axes("3.12", "2.1", "1.5", "none", "asyncmy", "mysql"))
    assert not rule.matches(Axes("3.12", "2.1", "1.5", "none", "asyncpg", "postgresql"))


@pytest.mark.parametrize(
    ("expect", "outcome", "names", "result"),
    [
        (PASS, "passed", [], "works"),
        (PASS, "failed", ["sqlalchemy.exc.MissingGreenlet"], "broken"),
        (PASS, "timeout", ["Failed"], "broken"),
        (
            raises("sqlalchemy.exc.InvalidRequestError"),
            "failed",
            ["x.Sub", "sqlalchemy.exc.InvalidRequestError"],
            "works",
        ),
        (raises("sqlalchemy.exc.InvalidRequestError"), "passed", [], "broken"),
        (raises("RuntimeError"), "failed", ["AssertionError", "Exception"], "broken"),
        (raises("RuntimeError"), "error", ["RuntimeError"], "works"),
        # a race whose two clean endings both count: right results, or the named error
        (pass_or_raises("sqlalchemy.exc.InvalidRequestError"), "passed", [], "works"),
        (
            pass_or_raises("sqlalchemy.exc.InvalidRequestError"),
            "failed",
            ["sqlalchemy.exc.InvalidRequestError"],
            "works",
        ),
        (pass_or_raises("sqlalchemy.exc.InvalidRequestError"), "failed", ["AssertionError"], "broken"),
        (pass_or_raises("sqlalchemy.exc.InvalidRequestError"), "timeout", ["Failed"], "broken"),
        (PASS, "skipped", [], "skipped"),
    ],
)
def test_verdict(expect, outcome: str, names: list[str], result: str) -> None:
    assert verdict(expect, outcome, names) == result


def test_an_expectation_that_also_accepts_a_pass_says_so() -> None:
    assert (
        str(pass_or_raises("sqlalchemy.exc.InvalidRequestError")) == "pass or raises:sqlalchemy.exc.InvalidRequestError"
    )
    assert str(raises("sqlalchemy.exc.InvalidRequestError")) == "raises:sqlalchemy.exc.InvalidRequestError"


def test_exception_names_are_public_and_unwrapped() -> None:
    import sqlalchemy.exc

    assert qualified_name(RuntimeError) == "RuntimeError"
    assert qualified_name(sqlalchemy.exc.MissingGreenlet) == "sqlalchemy.exc.MissingGreenlet"
    # A lazy load's MissingGreenlet arrives wrapped in a plain StatementError on most drivers.
    wrapped = sqlalchemy.exc.StatementError("msg", "SELECT 1", {}, sqlalchemy.exc.MissingGreenlet("inner"))
    assert exception_names(wrapped)[0] == "sqlalchemy.exc.MissingGreenlet"
    # DBAPIError subclasses are the documented form of a driver error: kept as they are.
    dbapi = sqlalchemy.exc.InterfaceError("SELECT 1", {}, OSError("x"))
    assert exception_names(dbapi)[0] == "sqlalchemy.exc.InterfaceError"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is built in from Python 3.11")
def test_exception_group_is_named_after_its_first_leaf() -> None:
    group = ExceptionGroup("two", [pytest.PytestUnraisableExceptionWarning("a"), ValueError("b")])  # noqa: F821
    names = exception_names(group)
    assert names[0] == "pytest.PytestUnraisableExceptionWarning"
    assert "ExceptionGroup" in names


def test_redact_hides_configured_passwords_and_any_url_password() -> None:
    env = {"GREENLIGHT_DATABASES": json.dumps([{"name": "pg", "kind": "postgresql", "driver": "asyncpg",
                                                "url": "postgresql+asyncpg://u:p%40ss@127.0.0.1:1/d"}])}  # fmt: skip
    text = "connect to postgresql+asyncpg://u:p%40ss@127.0.0.1:1/d failed; password was p@ss; mysql://r:zz@h/x"
    out = redact(text, env)
    for secret in ("p@ss", "p%40ss", "zz"):
        assert secret not in out
    assert "postgresql+asyncpg://u:***@127.0.0.1:1/d" in out
    assert "mysql://r:***@h/x" in out


SMALL_SUITE_CONFTEST = """
from matrix.scenarios.conftest import models, pytest_generate_tests, pytest_runtest_setup  # noqa: F401
"""

SMALL_SUITE = """
import asyncio
import time

import pytest

from matrix.scenarios.core import raises, scenario


@scenario("gather/t-hang", checks="sleeps past the per-scenario timeout")
def test_hang(db):
    time.sleep(30)


@scenario("gather/t-leak", checks="an error whose message carries the URL", expect=raises("RuntimeError"))
def test_leak(db):
    raise RuntimeError(f"could not use {db.url}")


@scenario("gather/t-assert", checks="a plain assertion failure")
def test_assert(db):
    assert 1 + 1 == 3
"""


def test_recorder_records_timeouts_and_never_writes_passwords(tmp_path: Path) -> None:
    """A real pytest run of a tiny suite: the hanging scenario is recorded as a timeout, the password is gone."""
    (tmp_path / "conftest.py").write_text(SMALL_SUITE_CONFTEST)
    (tmp_path / "test_small.py").write_text(textwrap.dedent(SMALL_SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    url = f"sqlite+aiosqlite://user:s3cret-pw@/{tmp_path}/x.db"
    out = tmp_path / "out.jsonl"
    env = {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": str(REPO),
        "GREENLIGHT_DATABASES": json.dumps([{"name": "sqlite", "kind": "sqlite", "driver": "aiosqlite", "url": url}]),
        "GREENLIGHT_SCENARIO_OUT": str(out),
    }
    command = [sys.executable, "-m", "pytest", str(tmp_path), "-p", "matrix.scenarios.recorder", "-p", "pytest_timeout"]
    # 8 s, not less: under a loaded machine a short limit also cut t-leak's first database connection (seen at
    # load average 20), and t-hang sleeps 30 s whatever the limit.
    done = subprocess.run(
        [*command, "--timeout=8", "-q"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    lines = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert lines["gather/t-hang"]["outcome"] == "timeout"
    assert lines["gather/t-hang"]["verdict"] == "broken"
    assert lines["gather/t-leak"]["verdict"] == "works"
    assert lines["gather/t-leak"]["exception"] == "RuntimeError"
    assert "***" in lines["gather/t-leak"]["message"]
    assert lines["gather/t-assert"]["exception"] == "AssertionError"
    assert lines["gather/t-assert"]["verdict"] == "broken"
    assert "s3cret-pw" not in out.read_text()
