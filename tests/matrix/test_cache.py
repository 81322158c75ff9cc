"""matrix/cache.py: real resolutions with uv, real files, and a real `nox -s matrix` run re-used, then forced."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from matrix import axes, axes_file, cache, collect, run
from tests.matrix.nox_env import clean_environ

ROOT = Path(__file__).resolve().parents[2]
THIS_PYTHON = Path(sys.executable)

SQLITE_ONLY = """\
[axes]
python = ["{python}"]
sqlalchemy = ["2.0"]
pytest_asyncio = ["1"]

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[databases]]
name = "postgresql-17"
kind = "postgresql"
drivers = ["asyncpg"]
image = "postgres:17"

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."

[[subjects]]
name = "none"
"""


def small_matrix(tmp_path: Path) -> axes.Matrix:
    path = tmp_path / "axes.toml"
    path.write_text(SQLITE_ONLY.format(python=f"{sys.version_info[0]}.{sys.version_info[1]}"))
    return axes_file.load(path)


# --- resolving without installing ---------------------------------------------------------------------------


def test_resolve_asks_uv_for_exact_versions_for_this_interpreter() -> None:
    resolved = cache.resolve(THIS_PYTHON, ["iniconfig==2.0.0", "pluggy>=1,<2"])
    assert resolved.error is None
    assert resolved.versions is not None
    assert resolved.versions["iniconfig"] == "2.0.0"
    assert resolved.versions["pluggy"].startswith("1.")
    assert resolved.versions["python"] == platform.python_version()


def test_resolve_reports_an_impossible_cell_instead_of_a_key() -> None:
    resolved = cache.resolve(THIS_PYTHON, ["iniconfig==0.0.0.0.1"])
    assert resolved.versions is None
    assert resolved.error
    assert "iniconfig" in resolved.error


def test_parse_compiled_normalizes_names_and_drops_comments_and_markers() -> None:
    text = "Foo_Bar.baz==1.2 ; python_version < '4'\n# comment\n-e file:///x\npsycopg[binary]==3.2.1  # via x\n"
    assert cache.parse_compiled(text) == {"foo-bar-baz": "1.2", "psycopg": "3.2.1"}


def test_cell_requirements_cover_what_the_runner_installs(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    cell = matrix.cells()[0]
    wanted = cache.cell_requirements(matrix, cell)
    assert set(matrix.requirements(cell)) <= set(wanted)
    assert {"aiosqlite", "asyncpg"} <= set(wanted)  # every driver of every database
    assert any(r.startswith("greenlet") for r in wanted)  # the plugin's own dependencies, from pyproject.toml


# --- what goes into the key ---------------------------------------------------------------------------------


def test_source_digest_follows_content_and_ignores_bytecode(tmp_path: Path) -> None:
    package = tmp_path / "scenarios"
    package.mkdir()
    (package / "test_a.py").write_text("x = 1\n")
    before = cache.source_digest([package])
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "test_a.cpython-311.pyc").write_bytes(b"junk")
    assert cache.source_digest([package]) == before
    (package / "test_a.py").write_text("x = 2\n")
    assert cache.source_digest([package]) != before


def test_every_input_changes_the_key() -> None:
    subject = axes.Subject("greenlight", "pytest-greenlight @ .")
    base = ({"sqlalchemy": "2.0.1", "python": "3.11.7"}, "digest", ["sqlite=embedded"], subject, ())
    key = cache.cache_key(*base)
    assert key.startswith("sha256:")
    assert key == cache.cache_key(*base)
    variants = [
        ({"sqlalchemy": "2.0.2", "python": "3.11.7"}, *base[1:]),
        (base[0], "other-digest", *base[2:]),
        (*base[:2], ["sqlite=embedded", "postgresql-17=img@sha256:1"], *base[3:]),
        (*base[:3], axes.Subject("none", None), ()),
        (*base[:4], ("-k", "lazy")),
        (*base, {"shared": "pytest,pytest_asyncio"}),  # matrix.share's keys: never a cell's
    ]
    assert len({cache.cache_key(*v) for v in variants} | {key}) == len(variants) + 1


def test_server_identity_of_a_url_never_holds_the_password(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    secret = "pa:ss@word"
    environ = {"GREENLIGHT_POSTGRES_URL": f"postgresql://postgres:{secret}@127.0.0.1:5432/test"}
    identities = cache.server_identities(matrix, environ)
    assert identities[0] == "sqlite=embedded"
    assert identities[1].startswith("postgresql-17=url:")
    assert secret not in "".join(identities)
    other = {"GREENLIGHT_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5433/test"}
    assert cache.server_identities(matrix, other)[1] != identities[1]


def test_server_identity_without_an_engine_says_so(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    os_environ = dict(os.environ)
    try:  # docker-py reads DOCKER_HOST from the process environment
        os.environ["DOCKER_HOST"] = environ["DOCKER_HOST"]
        os.environ.pop("GREENLIGHT_POSTGRES_URL", None)
        assert cache.server_identities(matrix, environ)[1] == "postgresql-17=no-engine"
    finally:
        os.environ.clear()
        os.environ.update(os_environ)


# --- previous results ---------------------------------------------------------------------------------------


def stored(tmp_path: Path, status: str, key: str) -> Path:
    result = collect.build_result(
        run_id="run-1",
        cell={"id": "py3.11-sa2.0-pa1", "python": "3.11", "sqlalchemy": "2.0", "pytest_asyncio": "1"},
        subject={"name": "none", "requirement": None},
        status=status,
        reason=None,
        versions={"python": "3.11.7"},
        databases=[],
        lines=[],
        cache_key=key,
        timings={"pytest": 12.5},
    )
    return collect.write_result(result, tmp_path)


@pytest.mark.parametrize(
    ("status", "key", "reused"),
    [("completed", "k1", True), ("completed", "k2", False), ("crashed", "k1", False), ("install-failed", "k1", False)],
)
def test_only_a_completed_result_under_the_same_key_is_reused(
    tmp_path: Path, status: str, key: str, reused: bool
) -> None:
    stored(tmp_path, status, key)
    found = cache.previous(tmp_path, "py3.11-sa2.0-pa1", "none", "k1")
    assert (found is not None) is reused


def test_a_result_with_a_database_infra_error_is_not_reused(tmp_path: Path) -> None:
    path = stored(tmp_path, "completed", "k1")
    document = json.loads(path.read_text())
    assert cache.previous(tmp_path, "py3.11-sa2.0-pa1", "none", "k1") is not None
    document["databases"] = [{"name": "postgresql-17", "driver": "asyncpg", "status": "infra-error", "reason": "x"}]
    path.write_text(json.dumps(document))
    assert cache.previous(tmp_path, "py3.11-sa2.0-pa1", "none", "k1") is None


def test_a_broken_results_file_is_not_reused(tmp_path: Path) -> None:
    stored(tmp_path, "completed", "k1").write_text("{not json")
    assert cache.previous(tmp_path, "py3.11-sa2.0-pa1", "none", "k1") is None


def test_reuse_rewrites_the_run_id_and_keeps_the_rest(tmp_path: Path) -> None:
    path = stored(tmp_path, "completed", "k1")
    before = json.loads(path.read_text())
    cache.reuse(before, tmp_path, "run-2", 1.25)
    after = json.loads(path.read_text())
    assert after["run_id"] == "run-2"
    assert after["timings"] == {"pytest": 12.5, "reused": 1.25}
    assert {k: v for k, v in after.items() if k not in ("run_id", "timings")} == {
        k: v for k, v in before.items() if k not in ("run_id", "timings")
    }


def test_fresh_flag_and_runner_flags_stay_out_of_pytest() -> None:
    assert cache.fresh_requested({"GREENLIGHT_FRESH": "1"})
    assert not cache.fresh_requested({"GREENLIGHT_FRESH": "0"})
    assert not cache.fresh_requested({})
    assert run.scenario_args(["--fresh", "-k", "lazy", "--smoke", "--no-share"]) == ("-k", "lazy")


def test_smoke_preset_is_the_newest_value_of_each_axis_on_this_machine(tmp_path: Path) -> None:
    matrix = axes_file.load(axes.DEFAULT_PATH)
    smoke = run.smoke(matrix, have_python=lambda version: version not in ("3.14", "3.15"))
    assert [c.id for c in smoke.cells()] == ["py3.13-sa2.1-pa1.5-pt9"]
    everything = run.smoke(matrix, have_python=lambda version: True)
    assert [c.id for c in everything.cells()] == ["py3.15-sa2.1-pa1.5-pt9"]


# --- end to end: nox -s matrix, twice, then --fresh ---------------------------------------------------------


def nox(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("nox") is None:
        pytest.skip("nox is not installed in this environment")
    env = clean_environ()
    env.pop("VIRTUAL_ENV", None)
    env.update(
        GREENLIGHT_AXES=str(tmp_path / "axes.toml"),
        GREENLIGHT_BUILD=str(tmp_path / "build"),
        UV_PYTHON_DOWNLOADS="never",
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",  # SQLite only: no container may start
        NO_COLOR="1",
    )
    command = ["nox", "-f", str(ROOT / "noxfile.py"), "--envdir", str(tmp_path / "envs"), "-s", "matrix", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)


def results(tmp_path: Path) -> dict[str, dict]:
    directory = tmp_path / "build" / "results"
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def test_a_warm_rerun_reuses_and_fresh_forces_a_run(tmp_path: Path) -> None:
    small_matrix(tmp_path)
    cold = nox(tmp_path, "--", "-k", "lazy_load_in_test")
    assert cold.returncode == 0, cold.stderr[-3000:]
    first = results(tmp_path)
    assert len(first) == 2
    assert all(r["status"] == "completed" for r in first.values())
    assert all("reused" not in r["timings"] for r in first.values())

    warm = nox(tmp_path, "--", "-k", "lazy_load_in_test")
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "re-used 2 result(s)" in warm.stderr
    second = results(tmp_path)
    for name, result in second.items():
        assert "reused" in result["timings"]
        assert result["run_id"] != first[name]["run_id"]
        assert result["cache_key"] == first[name]["cache_key"]
        assert result["scenarios"] == first[name]["scenarios"]
    # the cache check must not go through the installer or pytest
    assert "installing into" not in warm.stderr

    forced = nox(tmp_path, "--", "--fresh", "-k", "lazy_load_in_test")
    assert forced.returncode == 0, forced.stderr[-3000:]
    third = results(tmp_path)
    assert all("reused" not in r["timings"] for r in third.values())
    assert all(r["cache_key"] == first[n]["cache_key"] for n, r in third.items())  # same inputs, same key

    other = nox(tmp_path, "--", "-k", "lazy_load_in_fixture or lazy_load_in_test")  # other arguments: new key
    assert other.returncode == 0, other.stderr[-3000:]
    fourth = results(tmp_path)
    assert all("reused" not in r["timings"] for r in fourth.values())
    assert all(r["cache_key"] != first[n]["cache_key"] for n, r in fourth.items())
