"""Chaos (issue 8): a database container is killed (`docker kill`) in the middle of a real `nox -s matrix` run.

Only that database's results of that run may be lost, marked as an infrastructure error with the reason; every
other database, the other subject, and the run itself go on; the run says what happened; no container is left.
Needs the Docker engine and the offline images (`nox -s images`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.matrix.test_faults import (
    GREENLIGHT,
    MARIADB,
    NONE,
    POSTGRESQL,
    SQLITE,
    axes_text,
    build_report,
    interrupt_mid_run,
    nox_env,
    read_or_empty,
    results,
    scenarios_by,
    start_matrix,
    this_python,
    wait_for,
)

pytestmark = pytest.mark.docker

MARIADB_IMAGE = "greenlight-offline/mariadb:10.11"


def containers(invocation: int, image: str = "") -> list[str]:
    """Ids of the containers (running or not) the given nox invocation started, optionally from one image."""
    command = ["docker", "ps", "-aq", "--filter", f"label=greenlight.invocation={invocation}"]
    if image:
        command += ["--filter", f"label=greenlight.image={image}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


def remove(invocation: int) -> None:
    """Whatever the test's own invocation left (only when an assertion already failed)."""
    for container in containers(invocation):
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True, timeout=60, check=False)


@pytest.fixture
def images() -> None:
    for image in (MARIADB_IMAGE, "greenlight-offline/postgresql:15"):
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60, check=False)
        if found.returncode != 0:
            pytest.skip(f"{image} is not built (nox -s images)")


def test_killing_a_database_container_mid_run_loses_only_its_results(tmp_path: Path, images: None) -> None:
    cell = f"py{this_python()}-sa2.0-pa1"
    env = nox_env(
        tmp_path,
        axes_text([this_python()], ["2.0"], SQLITE, POSTGRESQL, MARIADB, GREENLIGHT, NONE),
        docker=True,
        GREENLIGHT_FAULT_SLOW="10",
        # Both subjects (a cell runs them side by side), so that both are mid-run when the server dies: a subject
        # that had finished before the kill rightly keeps its results (seen once the suite got faster).
        GREENLIGHT_FAULT_SLOW_WHEN=json.dumps({}),
    )
    process = start_matrix(tmp_path, env)
    try:
        watches = [tmp_path / "build" / "cells" / cell / f"{subject}.watch" for subject in ("greenlight", "none")]

        def in_slow_test() -> bool:
            return all("test_fault_slow" in read_or_empty(watch) for watch in watches)

        wait_for("both subjects' slow test", in_slow_test, 300, process)
        [victim] = containers(process.pid, MARIADB_IMAGE)
        subprocess.run(["docker", "kill", victim], capture_output=True, timeout=60, check=True)
        process.wait(timeout=300)
        # the reaper removes the run's containers once nox has ended
        wait_for("the run's containers to be removed", lambda: not containers(process.pid), 60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        remove(process.pid)
    stderr_text = read_or_empty(tmp_path / "nox.err")
    assert process.returncode == 0, stderr_text[-3000:]

    found = results(tmp_path)
    assert sorted(found) == [f"{cell}__greenlight.json", f"{cell}__none.json"]
    hit = found[f"{cell}__greenlight.json"]
    assert hit["status"] == "completed"
    databases = {d["name"]: d for d in hit["databases"]}
    assert databases["mariadb-10.11"]["status"] == "infra-error"
    assert databases["mariadb-10.11"]["reason"].startswith("mariadb-10.11 stopped answering during the run")
    assert databases["postgresql-15"]["status"] == databases["sqlite"]["status"] == "ok"
    scenarios = scenarios_by(hit)
    # the killed server's results are marked, not blamed on the subject ...
    for scenario in ("context/lazy-load-in-test", "context/fault-query"):
        assert scenarios[(scenario, "mariadb-10.11")]["outcome"] == "not-run"
        assert scenarios[(scenario, "mariadb-10.11")]["message"] == databases["mariadb-10.11"]["reason"]
    # ... and nothing else is lost: the other databases ran every scenario, after the kill too
    for database in ("sqlite", "postgresql-15"):
        assert scenarios[("context/lazy-load-in-test", database)]["verdict"] == "works"
        assert scenarios[("context/fault-query", database)]["verdict"] == "works"
    assert hit["summary"]["broken"] == 0

    # the other subject, mid-run beside it, went on without the dead server too, and said why
    after = found[f"{cell}__none.json"]
    assert after["status"] == "completed"
    after_databases = {d["name"]: d["status"] for d in after["databases"]}
    assert after_databases == {"sqlite": "ok", "postgresql-15": "ok", "mariadb-10.11": "infra-error"}
    assert scenarios_by(after)[("context/fault-query", "postgresql-15")]["verdict"] == "works"

    # the run reports what happened, as it happens and in the end-of-run summary
    assert "mariadb-10.11 stopped answering during the run: its results are infra-error" in stderr_text
    assert "databases not run (those cells do not count as passing):" in stderr_text
    assert "mariadb-10.11 (aiomysql): mariadb-10.11 stopped answering during the run" in stderr_text

    report = build_report(tmp_path, tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "stopped answering during the run" in (tmp_path / "report" / "index.html").read_text()


def test_ctrl_c_removes_the_containers_and_keeps_what_finished(tmp_path: Path, images: None) -> None:
    cell = f"py{this_python()}-sa2.0-pa1"
    env = nox_env(
        tmp_path,
        axes_text([this_python()], ["2.0"], SQLITE, POSTGRESQL, GREENLIGHT, NONE),
        docker=True,
        GREENLIGHT_FAULT_SLOW="120",
        GREENLIGHT_FAULT_SLOW_WHEN=json.dumps({"subject": "none"}),
    )
    pid = 0
    try:
        # Ctrl-C in a terminal: SIGINT to nox's whole process group
        done, pid = interrupt_mid_run(tmp_path, env, signal.SIGINT, cell, group=True)
        wait_for("the run's containers to be removed", lambda: not containers(pid), 60)
    finally:
        if pid:
            remove(pid)
    assert done.returncode != 0
    found = results(tmp_path)
    # the subjects run concurrently: greenlight finished before Ctrl-C, or was interrupted with none
    greenlight = found[f"{cell}__greenlight.json"]
    assert greenlight["status"] == "completed" or greenlight["reason"] == "interrupted by Ctrl-C"
    ran = {d["name"]: d["status"] for d in greenlight["databases"]}
    assert ran == {"sqlite": "ok", "postgresql-15": "ok"}
    interrupted = found[f"{cell}__none.json"]
    assert interrupted["status"] == "crashed"
    assert interrupted["reason"] == "interrupted by Ctrl-C"
    # the scenarios that finished on the container before Ctrl-C are kept
    kept = scenarios_by(interrupted)
    # (without a portal, the lazy load raises MissingGreenlet: the scenario ran on the container)
    assert kept[("context/lazy-load-in-test", "postgresql-15")]["exception"] == "sqlalchemy.exc.MissingGreenlet"
    report = build_report(tmp_path, tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "interrupted by Ctrl-C" in (tmp_path / "report" / "index.html").read_text()
