"""Results shared across cells (matrix/share.py, matrix/scenarios/share.py): the key, and the claim between real
processes: the claimer writes, a waiter reuses, a claimer that died is stolen from."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix import share
from matrix.axes import Subject
from matrix.scenarios import core
from matrix.scenarios.share import Store, from_env

REPO = Path(__file__).resolve().parents[2]
VERSIONS = {"python": "3.12.1", "sqlalchemy": "2.1.0", "pytest-asyncio": "1.5.0", "pytest": "9.0.1", "greenlet": "3.2"}
GREENLIGHT = Subject("greenlight", "pytest-greenlight @ .")


def keys(versions: dict[str, str] = VERSIONS, **kwargs: object) -> dict[str, str]:
    options: dict[str, object] = {"subject": GREENLIGHT, "sources_digest": "d1", "servers": ["sqlite=embedded"]}
    options.update(kwargs)
    return share.keys(versions, **options)  # type: ignore[arg-type]


BOTH = "pytest,pytest_asyncio"


def test_key_ignores_pytest_asyncio_and_pytest_only_where_the_scenario_does_not_depend_on_them() -> None:
    base = keys()
    other_pa = keys({**VERSIONS, "pytest-asyncio": "0.21.2"})
    other_pytest = keys({**VERSIONS, "pytest": "8.4.2"})
    assert other_pa[BOTH] == base[BOTH] == other_pytest[BOTH]
    assert other_pa["pytest"] != base["pytest"]  # a scenario that still depends on pytest-asyncio
    assert other_pytest["pytest_asyncio"] != base["pytest_asyncio"]


@pytest.mark.parametrize(
    "change",
    [
        {"versions": {**VERSIONS, "sqlalchemy": "2.1.1"}},
        {"versions": {**VERSIONS, "greenlet": "3.2.1"}},  # any other distribution, exactly
        {"versions": {**VERSIONS, "python": "3.12.2"}},
        {"subject": Subject("none", None)},
        {"sources_digest": "d2"},
        {"servers": ["sqlite=embedded", "postgresql-17=pg@sha256:1"]},
        {"run_id": "run-2"},  # --fresh: only this run's cells share
    ],
    ids=["sqlalchemy", "other-distribution", "python", "subject", "sources", "servers", "fresh-run"],
)
def test_key_changes_with_what_the_scenario_depends_on(change: dict[str, object]) -> None:
    versions = change.pop("versions", VERSIONS)
    assert keys(versions, **change)[BOTH] != keys()[BOTH]  # type: ignore[arg-type]


def test_no_share_turns_it_off(tmp_path: Path) -> None:
    assert share.enabled({})
    assert not share.enabled({"GREENLIGHT_NO_SHARE": "1"})


def test_a_comparison_plugin_from_pypi_is_never_shared(tmp_path: Path) -> None:
    """pytest-green-light 0.2.0 fails every set-up under pytest 9: its gather results depend on the runner."""
    assert share.runner_agnostic(GREENLIGHT)
    assert share.runner_agnostic(Subject("none", None))
    comparison = Subject("pytest-green-light", "pytest-green-light==0.2.0")
    assert not share.runner_agnostic(comparison)
    assert share.config(None, "c", comparison, VERSIONS, tmp_path) is None  # type: ignore[arg-type]


def test_rules_and_implicit_io_imply_depending_on_the_axis() -> None:
    with pytest.raises(ValueError, match="rules on \\['pytest_asyncio'\\]"):
        core.scenario(
            "gather/x-rule",
            checks="x",
            unless=[core.when(pytest_asyncio=">=1.0", expect=core.PASS)],
            depends=core.NOT_RUNNER,
        )
    with pytest.raises(ValueError, match="implicit IO"):
        core.scenario("gather/x-implicit", checks="x", implicit_io=True, depends=core.NOT_RUNNER)
    assert core.scenario("gather/x-fine", checks="x", unless=[core.when(sqlalchemy="<2", expect=core.PASS)],
                         depends=core.NOT_RUNNER)  # fmt: skip
    core.REGISTRY.pop("gather/x-fine")


def test_declared_shareable_scenarios_are_per_database_and_explicit_io() -> None:
    from matrix.scenarios import catalogue

    shared = {s.id for s in catalogue.load_all().values() if s.runner_free}
    assert {"gather/pool-timeout", "transactions/savepoint", "driver-specifics/stream-left-early"} <= shared
    assert not {s for s in shared if s.startswith(("fixture-styles/", "teardown-hygiene/", "context/"))}


# --- the claim, between real processes ----------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from matrix.scenarios.share import Store
store = Store(Path(sys.argv[1]), "cell-a", {}, 0)
place = Path(sys.argv[2])
claim = store.claim(place)
print("claimed" if claim else "refused", flush=True)
sys.stdin.readline()  # hold the claim until told (or killed)
if sys.argv[3] == "write":
    store.write(place, {"id": "gather/x", "outcome": "passed"}, ["AssertionError"])
claim.release()
print("done", flush=True)
"""


@contextlib.contextmanager
def holder(tmp: Path, place: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the claim on ``place`` until it reads a line (then writes a result and lets go)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp), str(place), "write"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "claimed"
        try:
            yield process
        finally:
            process.kill()


def test_a_claimed_result_is_waited_for_and_reused(tmp_path: Path) -> None:
    store = Store(tmp_path, "cell-b", {}, wait=30)
    place = tmp_path / "k" / "gather__x" / "sqlite-aiosqlite.json"
    with holder(tmp_path, place) as process:
        assert store.claim(place) is None  # held by the other process
        assert store.read(place) is None
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        claim = store.wait_claim(place)
        assert claim is not None
        claim.release()
    stored = store.read(place)
    assert stored == {"ran_in": "cell-a", "entry": {"id": "gather/x", "outcome": "passed"}, "names": ["AssertionError"]}


def test_a_claimer_that_died_is_stolen_from(tmp_path: Path) -> None:
    store = Store(tmp_path, "cell-b", {}, wait=30)
    place = tmp_path / "k" / "gather__x" / "sqlite-aiosqlite.json"
    with holder(tmp_path, place) as process:
        os.kill(process.pid, signal.SIGKILL)  # dies holding the claim, nothing written
        process.wait(10)
        claim = store.wait_claim(place)
    assert claim is not None, "the kernel lets go of a dead process's claim"
    assert store.read(place) is None  # so this run runs the scenario itself
    claim.release()


def test_a_claim_never_let_go_is_waited_for_at_most_wait_seconds(tmp_path: Path) -> None:
    store = Store(tmp_path, "cell-b", {}, wait=0.5)
    place = tmp_path / "k" / "gather__x" / "sqlite-aiosqlite.json"
    with holder(tmp_path, place):
        start = time.monotonic()
        assert store.wait_claim(place) is None
        assert time.monotonic() - start < 5


def test_the_run_is_handed_its_store_through_the_contract(tmp_path: Path) -> None:
    from matrix import contract

    shared = {"dir": str(tmp_path), "cell": "c", "keys": keys(), "wait": 1.0}
    env = contract.scenario_env({}, cell={}, databases=[], plugin_args=[], scenario_out="o", share=shared)
    store = from_env(env)
    assert store is not None
    assert store.cell == "c"
    place = store.place("gather/pool-timeout", ("pytest", "pytest_asyncio"), "sqlite-aiosqlite")
    assert place is not None
    assert place.name == "sqlite-aiosqlite.json"
    assert store.place("gather/pool-timeout", (), "sqlite-aiosqlite") is None  # depends on both: never shared
    assert from_env(contract.scenario_env({}, cell={}, databases=[], plugin_args=[], scenario_out="o")) is None


def test_forget_removes_only_this_cells_results_for_failed_servers(tmp_path: Path) -> None:
    shared = {"dir": str(tmp_path), "cell": "cell-a", "keys": {BOTH: "sha256:abc"}}
    mine = Store(tmp_path, "cell-a", shared["keys"], 0)
    theirs = Store(tmp_path, "cell-b", shared["keys"], 0)
    lost = mine.place("gather/x", ("pytest", "pytest_asyncio"), "postgresql-17-asyncpg")
    kept = mine.place("gather/x", ("pytest", "pytest_asyncio"), "sqlite-aiosqlite")
    other = theirs.place("gather/y", ("pytest", "pytest_asyncio"), "postgresql-17-asyncpg")
    assert lost
    assert kept
    assert other
    mine.write(lost, {}, [])
    mine.write(kept, {}, [])
    theirs.write(other, {}, [])
    assert share.forget(shared, [("postgresql-17", "asyncpg")]) == 1
    assert not lost.exists()
    assert kept.exists()
    assert other.exists()
    assert json.loads(other.read_text())["ran_in"] == "cell-b"


# --- the comparison of two runs (python -m matrix.compare) ------------------------------------------------------


def test_compare_finds_verdicts_that_differ_between_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from matrix import collect, compare

    def write(directory: Path, *lines: dict[str, object]) -> None:
        result = collect.build_result(
            run_id="r",
            cell={"id": "py3.12-sa2.1-pa1.5-pt9"},
            subject={"name": "greenlight"},
            status="completed",
            lines=collect.Lines([dict(line) for line in lines]),
        )
        collect.write_result(result, directory)

    entry = {"id": "gather/x", "database": "sqlite", "driver": "aiosqlite", "expected": "pass", "outcome": "passed"}
    write(tmp_path / "a", entry)
    write(tmp_path / "b", {**entry, "ran_in": "py3.12-sa2.1-pa0.21-pt8.4"})
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "1 reused (ran_in)" in capsys.readouterr().out
    write(tmp_path / "b", {**entry, "outcome": "failed"})
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "gather/x sqlite aiosqlite: works vs broken" in capsys.readouterr().out
