"""matrix/refresh.py (``nox -s axes``) and matrix/lock.py, without a network.

``data/pypi_metadata.json`` is *recorded* data: what the package index answered on 2026-12 for sqlalchemy,
pytest-asyncio, pytest and greenlet (every release with its Requires-Python, and the Requires-Dist of each release
the refresh chose), written by ``python -m matrix.refresh --record tests/matrix/data/pypi_metadata.json``. Replaying
it keeps these tests offline and deterministic while PyPI moves on; re-record it when the axes change.
"""

from __future__ import annotations

import json
from pathlib import Path

from matrix import axes, axes_file, lock, refresh

DATA = Path(__file__).with_name("data") / "pypi_metadata.json"
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "matrix" / "axes.toml"

PYPROJECT = """\
[project]
name = "x"
dependencies = ["pytest>=7.4", {sqlalchemy}, "greenlet>=1.0"]

[dependency-groups]
tests = ["pytest-asyncio>=0.21", {{ include-group = "other" }}]
"""


def recorded() -> refresh.RecordedSource:
    return refresh.RecordedSource.from_file(DATA)


def write_pyproject(tmp_path: Path, sqlalchemy: str = '"sqlalchemy>=1.4.24"') -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT.format(sqlalchemy=sqlalchemy))
    return path


def lock_for(tmp_path: Path, sqlalchemy: str = '"sqlalchemy>=1.4.24"') -> tuple[axes.Matrix, dict]:
    matrix = axes_file.load(SHIPPED, definition_only=True)
    data, problems = refresh.build_lock(matrix, write_pyproject(tmp_path, sqlalchemy), recorded())
    assert problems == []
    return matrix, data


def test_chooses_floor_and_newest_per_series_from_the_metadata(tmp_path: Path) -> None:
    _, data = lock_for(tmp_path)
    sqlalchemy = data["packages"]["sqlalchemy"]
    assert sqlalchemy["series"] == {
        "1.4": {"floor": "1.4.24", "newest": "1.4.54"},
        "2.0": {"floor": "2.0.0", "newest": "2.0.58"},
        "2.1": {"floor": "2.1.0", "newest": "2.1.9"},
    }
    # the recording holds 2.1.0b3 and 2.1.0rc2: a pre-release is never a series' newest, nor the canary's once
    # a release is newer
    assert sqlalchemy["newest"] == "2.1.9"
    assert sqlalchemy["pre"] is None
    assert sqlalchemy["releases"]["2.1.9"]["requires_python"] == ">=3.11"
    asyncio = data["packages"]["pytest-asyncio"]
    assert asyncio["series"]["1.4"]["newest"] == "1.4.1.post1"  # a post-release is a release
    assert asyncio["releases"]["1.4.0"]["requires"] == {"pytest": "<10,>=8.4"}
    assert data["packages"]["pytest"]["series"]["7.4"] == {"floor": "7.4.0", "newest": "7.4.4"}
    assert data["claims"]["sqlalchemy"] == ">=1.4.24"


def test_floor_follows_the_claim_in_pyproject(tmp_path: Path) -> None:
    """The floor is read from pyproject.toml at run time: raising the claim moves the floor cells."""
    # e.g. a floor per series, written as two requirements (a release satisfying either is claimed)
    claim = "\"sqlalchemy>=1.4.53,<2; python_version < '4'\", \"sqlalchemy>=2.0.31; python_version >= '3'\""
    _, data = lock_for(tmp_path, claim)
    series = data["packages"]["sqlalchemy"]["series"]
    assert series["1.4"]["floor"] == "1.4.53"
    assert series["2.0"]["floor"] == "2.0.31"
    assert series["2.1"]["floor"] == "2.1.0"


def test_same_metadata_writes_the_same_file(tmp_path: Path) -> None:
    _, first = lock_for(tmp_path)
    _, second = lock_for(tmp_path)
    assert refresh.render(first) == refresh.render(second)
    assert list(json.loads(refresh.render(first))) == sorted(first)  # sorted keys, no timestamp


def test_shipped_lock_is_what_the_recording_gives() -> None:
    """The committed lock and the recording were taken together: replaying it reproduces the lock exactly."""
    matrix = axes_file.load(SHIPPED, definition_only=True)
    data, _ = refresh.build_lock(matrix, ROOT / "pyproject.toml", recorded())
    data["source"] = json.loads((ROOT / "matrix" / "axes.lock.json").read_text())["source"]
    assert refresh.render(data) == (ROOT / "matrix" / "axes.lock.json").read_text()


def test_metadata_turns_impossible_cells_into_exclusions(tmp_path: Path) -> None:
    matrix, data = lock_for(tmp_path)
    matrix = axes_file.load(SHIPPED, definition_only=True)
    import dataclasses

    matrix = dataclasses.replace(matrix, lock=lock.from_data(data))
    reason = matrix.excluded_reason(axes.Cell("3.10", "2.1", "1.5", "9"))
    assert reason == (
        "sqlalchemy 2.1.9 requires Python >=3.11 (its Requires-Python on PyPI); no Python 3.10 release satisfies it"
    )
    reason = matrix.excluded_reason(axes.Cell("3.12", "2.1", "1.4", "7.4"))
    assert reason is not None
    assert "pytest-asyncio 1.4.1.post1 requires pytest>=8.4 (its declared dependency on PyPI)" in reason
    assert "this cell's pytest is 7.4.4" in reason
    assert matrix.excluded_reason(axes.Cell("3.12", "2.1", "1.4", "8.4")) is None
    assert matrix.requirements(axes.Cell("3.12", "2.1", "1.5", "9"))[:3] == [
        "sqlalchemy[asyncio]==2.1.9",
        "pytest-asyncio==1.5.0",
        "pytest==9.2.0",
    ]


def test_check_resolved_rejects_pre_releases_and_other_series() -> None:
    labels = {"sqlalchemy": "2.1", "pytest-asyncio": "1.5"}
    good = {"sqlalchemy": "2.1.9", "pytest-asyncio": "1.5.0", "pytest": "9.2.0", "greenlet": "3.5.6"}
    exact = {"sqlalchemy": "2.1.9", "pytest-asyncio": "1.5.0"}
    assert lock.check_resolved("support", labels, exact, good) == []
    beta = dict(good, sqlalchemy="2.1.0b3")
    problems = lock.check_resolved("support", labels, {"sqlalchemy": None, "pytest-asyncio": None}, beta)
    assert problems == [
        "sqlalchemy resolved to 2.1.0b3, a pre-release: a support cell never runs one (only the canary tier does)"
    ]
    assert lock.check_resolved("canary", {"sqlalchemy": lock.PRE}, {"sqlalchemy": "2.1.0b3"}, beta) == []
    other = dict(good, sqlalchemy="2.0.58")
    assert lock.check_resolved("support", labels, {}, other) == [
        "sqlalchemy resolved to 2.0.58, outside the label's series 2.1"
    ]
    assert "but the label 2.1 locks 2.1.9" in lock.check_resolved("support", labels, exact, other)[0]
    greenlet_rc = dict(good, greenlet="4.0.0rc1")
    assert "greenlet resolved to 4.0.0rc1, a pre-release" in lock.check_resolved("floor", labels, exact, greenlet_rc)[0]


def test_python_fits_requires_python() -> None:
    assert not lock.python_fits("3.10", ">=3.11")
    assert lock.python_fits("3.10", ">=3.10.1")
    assert not lock.python_fits("3.14", "<3.14")
    assert lock.python_fits("3.15", None)
