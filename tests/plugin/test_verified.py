"""Was this exact combination verified? The session header's line and ``pytest --greenlight-compat``.

The inner runs read a data file written here (in the format ``nox -s report`` writes: columns named in the file)
through a conftest that points the plugin at it; the rows are made from this environment's real versions, so
"verified" and "not covered" are decided by what is really installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Optional

import pytest

from pytest_greenlight import verified

from .conftest import BASE_PLUGINS, GREENLIGHT

COLUMNS = ["python", "sqlalchemy", "pytest-asyncio", "pytest", "greenlet", "database", "drivers", "verdict", "tier"]
COLUMNS += ["date", "cell"]
INSTALLED = verified.installed()
PASSING = "def test_runs():\n    assert True\n"
FAILING = "def test_would_fail():\n    assert False\n"


def data_row(versions: tuple[Optional[str], ...], database: str, verdict: str, date: str = "2026-12-01") -> list[Any]:
    drivers = [["aiosqlite", "0.22", verdict]] if database == "sqlite" else [["asyncpg", "0.32", verdict]]
    cell = [versions[0], "x", "y", "z"]
    return [*versions, database, drivers, verdict, "support", date, cell]


def write_data(path: Path, rows: list[list[Any]]) -> Path:
    data = {"format": verified.FORMAT, "version": verified.VERSION, "runs": ["r1"], "columns": COLUMNS, "rows": rows}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def other(version: Optional[str]) -> str:
    """Another release of the same x.y series than ``version``."""
    assert version is not None
    parts = version.split(".")[:2]
    return ".".join([*parts, "9999"])


def run(pytester: pytest.Pytester, data: Optional[Path], *args: str, source: str = PASSING) -> pytest.RunResult:
    """An inner run with the plugin reading ``data`` (None: the packaged file, as users have it)."""
    pytester.makepyfile(test_inner=source)
    if data is not None:
        pytester.makeconftest(f"import pytest_greenlight.verified as v\nv.DATA_FILE = v.Path({str(data)!r})\n")
    return pytester.runpytest_subprocess(*BASE_PLUGINS, *GREENLIGHT, "-p", "no:cacheprovider", *args)


@pytest.fixture(autouse=True)
def _no_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_the_header_says_this_exact_combination_was_verified(pytester: pytest.Pytester) -> None:
    rows = [data_row(INSTALLED, "sqlite", "works"), data_row(INSTALLED, "postgresql-17", "partial 9 of 10")]
    done = run(pytester, write_data(pytester.path / "verified.json", rows))
    done.assert_outcomes(passed=1)
    done.stdout.fnmatch_lines(
        [
            f"greenlight: verified by the compatibility matrix on 2026-12-01 ({verified.describe(INSTALLED)}): "
            "works on sqlite; partial 9 of 10 on postgresql-17"
        ]
    )


def test_the_header_names_the_nearest_verified_combination(pytester: pytest.Pytester) -> None:
    # The row that differs only in SQLAlchemy's patch release is nearer than the one with another Python.
    sqlalchemy_patch = (*INSTALLED[:1], other(INSTALLED[1]), *INSTALLED[2:])
    other_python = ("2.7", *INSTALLED[1:])
    rows = [data_row(other_python, "sqlite", "works"), data_row(sqlalchemy_patch, "sqlite", "broken", "2026-11-30")]
    done = run(pytester, write_data(pytester.path / "verified.json", rows))
    done.assert_outcomes(passed=1)
    done.stdout.fnmatch_lines(
        [
            f"greenlight: not covered by the compatibility matrix ({verified.describe(INSTALLED)}); nearest verified "
            f"combination, on 2026-11-30: SQLAlchemy {sqlalchemy_patch[1]} (installed: {INSTALLED[1]}), the rest the "
            "same: broken on sqlite (pytest --greenlight-compat lists them)"
        ]
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "verified.json is not in the package"),
        ('{"format": "pytest-greenlight-verified", "vers', "verified.json is unreadable (JSONDecodeError: *"),
        ('{"format": "something else"}', "verified.json is not pytest-greenlight-verified version 1"),
        ('{"format": "pytest-greenlight-verified", "version": 1, "rows": []}', "verified.json is malformed (*"),
    ],
)
def test_a_missing_or_corrupt_data_file_costs_one_line_never_the_run(
    pytester: pytest.Pytester, content: Optional[str], says: str
) -> None:
    data = pytester.path / "verified.json"
    if content is not None:
        data.write_text(content, encoding="utf-8")
    done = run(pytester, data)
    done.assert_outcomes(passed=1)
    done.stdout.fnmatch_lines([f"greenlight: no compatibility data: {says} (the matrix*"])


def test_compat_prints_the_rows_for_the_installed_versions_and_runs_no_test(pytester: pytest.Pytester) -> None:
    near = (*INSTALLED[:4], other(INSTALLED[4]))  # another greenlet release
    far = ("2.7", "0.1.0", "0.1.0", "0.1.0", "0.1.0")
    rows = [data_row(INSTALLED, "sqlite", "works"), data_row(near, "postgresql-17", "partial 9 of 10")]
    data = write_data(pytester.path / "verified.json", [*rows, data_row(far, "sqlite", "broken")])
    done = run(pytester, data, "--greenlight-compat", source=FAILING)
    assert done.ret == 0
    done.stdout.fnmatch_lines(
        [
            "greenlight: the compatibility matrix's verdicts (*verified.json; run r1)",
            f"installed: {verified.describe(INSTALLED)}; drivers: aiosqlite *, asyncpg *",
            "this combination was verified: rows marked =",
            "",
            "*Python*SQLAlchemy*pytest-asyncio*pytest*greenlet*database*drivers*verdict*tier*date",
            f"= *{INSTALLED[1]}*sqlite*aiosqlite 0.22: works*works*support*2026-12-01",
            f"~ *{near[4]}*postgresql-17*asyncpg 0.32: partial 9 of 10*partial 9 of 10*support*2026-12-01",
            "~ *2.7*0.1.0*sqlite*broken*",
        ]
    )
    assert "test_would_fail" not in done.stdout.str()
    assert "passed" not in done.stdout.str()
    assert "no tests ran" not in done.stdout.str()


def test_compat_says_when_the_combination_is_not_covered(pytester: pytest.Pytester) -> None:
    near = (*INSTALLED[:3], other(INSTALLED[3]), INSTALLED[4])  # another pytest release
    data = write_data(pytester.path / "verified.json", [data_row(near, "sqlite", "works")])
    done = run(pytester, data, "--greenlight-compat", source=FAILING)
    assert done.ret == 0
    done.stdout.fnmatch_lines(
        [
            "this combination is not covered by the matrix; the nearest verified ones are marked ~",
            f"~ *{near[3]}*sqlite*works*",
        ]
    )
    done.stdout.no_fnmatch_line("= *")


def test_compat_without_data_says_so_and_fails(pytester: pytest.Pytester) -> None:
    done = run(pytester, pytester.path / "missing.json", "--greenlight-compat", source=FAILING)
    assert done.ret == 1
    assert done.stdout.lines[-1] == (
        "greenlight: no compatibility data: missing.json is not in the package (the matrix's verdicts are in "
        "docs/compatibility.md; `nox -s report` regenerates this file)"
    )


def test_the_packaged_file_is_read(pytester: pytest.Pytester) -> None:
    """The file the package ships (as users have it): the header reads it, --greenlight-compat lists it."""
    assert verified.DATA_FILE.is_file(), "plugin/pytest_greenlight/verified.json: run `nox -s report`"
    data = verified.load()
    assert data.rows, "the packaged data file lists no verified combination"
    done = run(pytester, None)
    done.assert_outcomes(passed=1)
    header = verified.header_line(data, INSTALLED)
    assert header.startswith(("greenlight: verified by the compatibility matrix on ", "greenlight: not covered by"))
    done.stdout.fnmatch_lines([header.replace("[", "[[]")])
    listed = run(pytester, None, "--greenlight-compat")
    assert listed.ret == 0
    listed.stdout.fnmatch_lines([f"greenlight: the compatibility matrix's verdicts ({verified.DATA_FILE}; run *)"])


def test_nearest_is_the_highest_total_closeness_then_python_then_sqlalchemy() -> None:
    mine = ("3.12", "2.1.9", "1.5.0", "9.2.0", "3.5.6")
    combos = [
        ("3.11", "2.1.9", "1.5.0", "9.2.0", "3.5.6"),  # 1+3+3+3+3 = 13: only the Python differs
        ("3.12", "2.0.44", "1.5.0", "9.2.0", "3.5.6"),  # 3+1+3+3+3 = 13 as well, with the same Python: first
        ("3.12", "2.1.8", "1.4.0", "9.2.0", "3.5.6"),  # 3+2+1+3+3 = 12
        ("3.12", "2.1.8", "1.5.0", "8.4.2", "3.5.6"),  # 3+2+3+0+3 = 11
        ("3.12", "2.1.7", "1.5.0", "8.4.2", "3.5.6"),  # 11 as well, older: a tie goes to the newest
    ]
    rows = [verified.Row(c, "sqlite", (), "works", "support", "2026-12-01", ()) for c in combos]
    assert verified.nearest(rows, mine) == [combos[1], combos[0], combos[2], combos[3], combos[4]]
    assert verified.nearest([*rows, verified.Row(mine, "sqlite", (), "works", "support", "", ())], mine)[0] == mine
    assert verified.closeness("2.1.10", "2.1.9") == 2
    assert verified.closeness("2.1.0rc1", "2.1.9") == 2
    assert verified.closeness("3.0.0", "2.1.9") == 0
    assert verified.closeness(None, "2.1.9") == 0


def test_the_wheel_ships_the_data_file(tmp_path: Path) -> None:
    """pyproject's wheel target takes the package folder whole: the data file goes with the module reading it."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (nox installs it)")
    root = Path(verified.__file__).resolve().parents[2]
    subprocess.run([uv, "build", "--wheel", "-o", str(tmp_path), str(root)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("pytest_greenlight-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("pytest_greenlight/verified.json")
    assert shipped == verified.DATA_FILE.read_bytes()
