"""matrix/axes.py: the shipped axes.toml, expansion into cells, and one clear error per kind of invalid
file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from matrix import axes, axes_file

SHIPPED = Path(axes.__file__).with_name("axes.toml")

SMALL = """\
[axes]
python = ["3.10", "3.12"]
sqlalchemy = ["1.4", "2.1"]
pytest_asyncio = ["0.21", "1"]

[run]
scenario_timeout = 30

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[databases]]
name = "postgresql-17"
kind = "postgresql"
drivers = ["asyncpg", "psycopg"]
image = "postgres:17"
offline_image = "greenlight-offline/postgresql:15"

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."

[[subjects]]
name = "none"

[[subjects]]
name = "other"
requirement = "pytest-green-light==0.2.0"

[[pins]]
pytest_asyncio = "0.21"
requirements = ["pytest<9"]
reason = "0.21 breaks on pytest 9"

[[excludes]]
python = "3.10"
sqlalchemy = ["2.1"]
reason = "not on 3.10"

[[excludes]]
subject = "other"
sqlalchemy = "1.4"
reason = "other needs SQLAlchemy 2"
"""


def error_of(text: str) -> str:
    with pytest.raises(axes_file.AxesError) as caught:
        axes_file.parse(text, "axes.toml")
    return str(caught.value)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``needle`` (what the error must point at)."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def test_shipped_file_loads_and_expands() -> None:
    matrix = axes_file.load(SHIPPED)
    assert matrix.pythons == ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")
    assert matrix.sqlalchemy == ("1.4", "2.0", "2.1")
    assert matrix.pytest_asyncio == ("0.21", "0.23", "0.24", "0.26", "1.0", "1.1", "1.4", "1.5")
    assert matrix.pytest == ("8.4", "9")
    assert matrix.lock is not None, "matrix/axes.lock.json is missing: run `nox -s axes`"
    assert [s.name for s in matrix.subjects] == ["greenlight", "none", "pytest-green-light"]
    assert {d.name: d.drivers for d in matrix.databases} == {
        "sqlite": ("aiosqlite",),
        "postgresql-15": ("asyncpg", "psycopg"),
        "postgresql-17": ("asyncpg", "psycopg"),
        "postgresql-18": ("asyncpg", "psycopg"),
        "mysql-9.7": ("aiomysql", "asyncmy"),
        "mariadb-10.11": ("aiomysql", "asyncmy"),
        "mariadb-11.8": ("aiomysql", "asyncmy"),
    }
    plans = axes.expand(matrix)
    by_tier = {tier: [p for p in plans if p.cell.tier == tier] for tier in ("support", "floor", "canary", "legacy")}
    # the product (6 x 3 x 8), pytest 8.4 next to 9 for 1.4/1.5 (4), floors (2 Pythons x 3 series), one canary,
    # no legacy Python (the plugin requires >= 3.10): the count the README states
    counts = {tier: len(found) for tier, found in by_tier.items()}
    assert counts == {"support": 148, "floor": 6, "canary": 1, "legacy": 0}
    ids = [p.cell.id for p in plans]
    assert {"py3.15-sa2.1-pa1.5-pt9", "py3.14-sa1.4-pa0.21-pt8.4", "py3.15-canary"} <= set(ids)
    # SQLAlchemy 2.1 needs Python >= 3.11: excluded on 3.10 with the metadata as the reason, never a beta
    for plan in plans:
        if plan.cell.python == "3.10" and plan.cell.sqlalchemy.startswith("2.1"):
            assert "requires Python >=3.11" in (plan.excluded_reason or ""), plan
    # pytest-asyncio 0.21 gets pytest 8.4 (the pin), 1.4 and 1.5 the newest pytest their metadata allows
    support = {(p.cell.python, p.cell.sqlalchemy, p.cell.pytest_asyncio, p.cell.pytest) for p in by_tier["support"]}
    assert {("3.12", "2.0", "0.21", "8.4"), ("3.12", "2.0", "1.5", "9")} <= support
    # floors are exact releases, read from the lock (which read pyproject.toml's claim)
    floors = {p.cell.sqlalchemy for p in by_tier["floor"]}
    assert len(floors) == 3
    assert all(floor.count(".") == 2 for floor in floors)
    # every cell with SQLAlchemy 1.4 keeps greenlight and none, and drops only the comparison plugin
    for plan in plans:
        if plan.cell.sqlalchemy.startswith("1.4.") or plan.cell.sqlalchemy == "1.4":
            assert plan.subject_reason("pytest-green-light") is not None
            if not plan.excluded_reason:
                assert plan.subject_reason("greenlight") is None


def test_expand_small_file() -> None:
    matrix = axes_file.parse(SMALL)
    plans = {p.cell.id: p for p in axes.expand(matrix)}
    assert list(plans) == [
        "py3.10-sa1.4-pa0.21",
        "py3.10-sa1.4-pa1",
        "py3.10-sa2.1-pa0.21",
        "py3.10-sa2.1-pa1",
        "py3.12-sa1.4-pa0.21",
        "py3.12-sa1.4-pa1",
        "py3.12-sa2.1-pa0.21",
        "py3.12-sa2.1-pa1",
    ]
    assert plans["py3.10-sa2.1-pa1"].excluded_reason == "not on 3.10"
    assert plans["py3.12-sa2.1-pa1"].excluded_reason is None
    assert plans["py3.12-sa1.4-pa1"].subject_reason("other") == "other needs SQLAlchemy 2"
    assert plans["py3.12-sa1.4-pa1"].subject_reason("none") is None
    assert plans["py3.12-sa2.1-pa1"].subject_excludes == ()
    # a cell-wide exclusion applies to every subject
    assert plans["py3.10-sa2.1-pa0.21"].subject_reason("none") == "not on 3.10"
    assert matrix.run.scenario_timeout == 30
    assert matrix.run.subject_timeout == axes.RunSettings().subject_timeout


def test_requirements_take_latest_patch_and_pins() -> None:
    matrix = axes_file.parse(SMALL)
    assert matrix.requirements(axes.Cell("3.12", "2.1", "1")) == [
        "sqlalchemy[asyncio]==2.1.*",
        "pytest-asyncio==1.*",
        *axes.BASE_REQUIREMENTS,
    ]
    assert matrix.requirements(axes.Cell("3.12", "1.4", "0.21"))[-1] == "pytest<9"


def test_subjects() -> None:
    matrix = axes_file.parse(SMALL)
    greenlight, none, other = matrix.subjects
    assert greenlight.is_local
    assert greenlight.distribution == "pytest-greenlight"
    assert none.requirement is None
    assert none.distribution is None
    assert not none.is_local
    assert other.distribution == "pytest-green-light"
    assert not other.is_local


def test_cell_ids_round_trip() -> None:
    cell = axes.Cell("3.12", "2.1", "0.21")
    assert cell.id == "py3.12-sa2.1-pa0.21"
    assert axes.parse_cell_id(cell.id) == cell
    with pytest.raises(ValueError, match="not a cell id"):
        axes.parse_cell_id("py3.12-sa2.1")


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        pytest.param(
            "[run]",
            "[rnu]",
            "[rnu]",
            r"rnu: unknown key \(allowed: axes, databases",
            id="unknown-top-level-table",
        ),
        pytest.param(
            'sqlalchemy = ["1.4", "2.1"]',
            'sqlalchemy = ["1.4", "2.1"]\ndjango = ["5.0"]',
            "django",
            r"axes\.django: unknown key",
            id="unknown-axis",
        ),
        pytest.param(
            'name = "postgresql-17"',
            'name = "postgresql-17"\ncolour = "blue"',
            "colour",
            r"databases\[1\]\.colour: unknown key",
            id="unknown-database-key",
        ),
        pytest.param(
            'reason = "not on 3.10"',
            'reason = "not on 3.10"\nwhy = "typo"',
            "why =",
            r"excludes\[0\]\.why: unknown key",
            id="unknown-exclude-key",
        ),
        pytest.param(
            'sqlalchemy = ["1.4", "2.1"]',
            'sqlalchemy = ["1.4", "2.x"]',
            "2.x",
            r"axes\.sqlalchemy: bad version '2\.x'",
            id="bad-version",
        ),
        pytest.param(
            'pytest_asyncio = ["0.21", "1"]',
            'pytest_asyncio = [">=0.21", "1"]',
            ">=0.21",
            r"axes\.pytest_asyncio: bad version '>=0\.21'",
            id="specifier-instead-of-version",
        ),
        pytest.param(
            'python = ["3.10", "3.12"]',
            'python = ["3.10", "312"]',
            "312",
            r"axes\.python: bad version '312'",
            id="bad-python",
        ),
        pytest.param(
            'pytest_asyncio = ["0.21", "1"]',
            "pytest_asyncio = []",
            "pytest_asyncio",
            r"is empty",
            id="empty-axis",
        ),
        pytest.param(
            'python = ["3.10", "3.12"]',
            'python = ["3.10", "3.12", "3.10"]',
            "python =",
            r"axes\.python: duplicate value '3\.10'",
            id="duplicate-value",
        ),
        pytest.param(
            'python = ["3.10", "3.12"]',
            'python = [\n  "3.10",\n  "3.12",\n  "3.12",\n]',
            ('"3.12",', 2),
            r"axes\.python: duplicate value '3\.12'",
            id="duplicate-value-multiline",
        ),
        pytest.param(
            'drivers = ["asyncpg", "psycopg"]',
            'drivers = ["asyncpg", "aiomysql"]',
            '"aiomysql"',
            r"databases\[1\]\.drivers: driver 'aiomysql' is not a postgresql driver",
            id="driver-of-wrong-kind",
        ),
        pytest.param('kind = "postgresql"', 'kind = "oracle"', "oracle", r"unknown kind 'oracle'", id="unknown-kind"),
        pytest.param(
            'image = "postgres:17"\n',
            "",
            ("[[databases]]", 2),
            r"databases\[1\]\.image: missing key",
            id="no-image",
        ),
        pytest.param(
            'name = "none"',
            'name = "greenlight"',
            ('name = "greenlight"', 2),
            r"duplicate subject",
            id="duplicate-subject",
        ),
        pytest.param(
            'requirement = "pytest-green-light==0.2.0"',
            'requirement = "pytest-green-light=>0.2"',
            "=>0.2",
            r"subjects\[2\]\.requirement: bad requirement",
            id="bad-requirement",
        ),
        pytest.param(
            'requirements = ["pytest<9"]',
            'requirements = ["pytest<<9"]',
            "pytest<<9",
            r"pins\[0\]\.requirements: bad requirement",
            id="bad-pin",
        ),
        pytest.param(
            'python = "3.10"',
            'python = "3.8"',
            '"3.8"',
            r"'3\.8' is not a value of axes\.python",
            id="exclude-typo",
        ),
        pytest.param(
            'subject = "other"',
            'subject = "othr"',
            "othr",
            r"unknown subject 'othr'",
            id="exclude-unknown-subject",
        ),
        pytest.param(
            'reason = "not on 3.10"\n',
            "",
            "[[excludes]]",
            r"excludes\[0\]\.reason: missing key",
            id="no-reason",
        ),
        pytest.param(
            'python = "3.10"\nsqlalchemy = ["2.1"]\n',
            "",
            "[[excludes]]",
            r"excludes\[0\]: selects every cell",
            id="exclude-everything",
        ),
        pytest.param(
            "scenario_timeout = 30",
            "scenario_timeout = -1",
            "scenario_timeout",
            r"positive integer",
            id="bad-timeout",
        ),
    ],
)
def test_invalid_file_names_key_and_line(old: str, new: str, needle: str | tuple[str, int], expected: str) -> None:
    assert old in SMALL
    text = SMALL.replace(old, new, 1)
    message = error_of(text)
    # one line, "<file>:<line>: <key>: <problem>", pointing at the offending line
    assert "\n" not in message
    match = re.fullmatch(r"axes\.toml:(\d+): (.+)", message)
    assert match, message
    text_needle, occurrence = needle if isinstance(needle, tuple) else (needle, 1)
    assert int(match.group(1)) == line_of(text, text_needle, occurrence), message
    assert re.search(expected, match.group(2)), message


def test_toml_syntax_error_names_line() -> None:
    message = error_of(SMALL.replace('kind = "sqlite"', 'kind = "sqlite', 1))
    assert message.startswith("axes.toml: invalid TOML:")
    line = line_of(SMALL, 'kind = "sqlite"')
    assert f"line {line}" in message


def test_missing_axes_table() -> None:
    message = error_of(SMALL.replace("[axes]", "[axis]", 1))
    assert "axis: unknown key" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(axes_file.AxesError, match="cannot read the matrix definition"):
        axes_file.load(tmp_path / "absent.toml")


def test_load_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "axes.toml"
    path.write_text(SMALL.replace('"3.12"]', '"3.12", "3.12"]', 1))
    with pytest.raises(axes_file.AxesError, match=rf"^{re.escape(str(path))}:2: axes\.python: duplicate value"):
        axes_file.load(path)
