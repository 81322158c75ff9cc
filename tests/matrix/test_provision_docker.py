"""The container lifecycle with a real Docker engine and the offline images (``--run-docker``).

Start once per invocation, shared by several processes; fresh isolated databases per cell; a container that dies
is reported; the reaper removes everything when the invocation's process is SIGKILLed; a password full of
URL-special characters works and never reaches a log. Every test leaves no container behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from matrix.axes import Database
from matrix.images.build import image_label
from matrix.images.recipes import MARIADB_10_11, MYSQL_9_7, POSTGRESQL_15
from matrix.provision import Provisioner, Server, Unavailable, admin, containers, engine
from tests.matrix.admin_tls import tls_of_admin_and_default

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
# image=None: always the offline image, even where postgres:15 happens to be present.
POSTGRES = Database("postgresql-15", "postgresql", ("asyncpg",), None, POSTGRESQL_15.image)
# Another database on the same image: two rows named for one server, which the provisioner must not start twice.
POSTGRES_TWIN = Database("postgresql-twin", "postgresql", ("asyncpg",), None, POSTGRESQL_15.image)
MARIADB = Database("mariadb-10.11", "mysql", ("aiomysql",), None, MARIADB_10_11.image)
MYSQL = Database("mysql-9.7", "mysql", ("aiomysql",), None, MYSQL_9_7.image)
DRIVER = {"postgresql": "asyncpg", "mysql": "aiomysql"}
NASTY = "p@ss:/?#%w'\"rd\\ x"

# A separate process of the same invocation: acquires one database, prints what it got, optionally stays alive.
CHILD = """
import json, os, sys, time
from pathlib import Path
from matrix.axes import Database
from matrix.provision import Provisioner, Server
state_dir, invocation, owner, kind, image, hold = sys.argv[1:7]
invocation = str(os.getpid()) if invocation == "self" else invocation
owner_pid = os.getpid() if owner == "self" else int(owner)
prov = Provisioner(Path(state_dir), invocation=invocation, owner_pid=owner_pid, environ={})
got = prov.acquire(Database("db-" + kind, kind, ("x",), None, image))
print(json.dumps({"container_id": getattr(got, "container_id", None), "reason": getattr(got, "reason", None),
                  "invocation": invocation}), flush=True)
if hold == "hold":
    time.sleep(600)
"""


def child(state_dir: Path, invocation: str, owner: str, database: Database, hold: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-c", CHILD, str(state_dir), invocation, owner),
            *(database.kind, str(database.offline_image), "hold" if hold else "exit"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def labelled(client: Any, invocation: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{containers.LABEL_INVOCATION}={invocation}"})


async def _query(url: str, statement: str) -> list[tuple[Any, ...]]:
    engine_ = create_async_engine(url)
    try:
        async with engine_.begin() as connection:
            result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine_.dispose()


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    return asyncio.run(_query(url, statement))


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client, reason = engine.connect()
    if client is None:
        pytest.fail(f"--run-docker was given, but {reason} (start it with .ci/docker.sh)")
    for recipe in (POSTGRESQL_15, MARIADB_10_11, MYSQL_9_7):
        if image_label(recipe.image) is None:
            pytest.fail(f"the offline image {recipe.image} is missing: build it with `nox -s images`")
    yield client
    client.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def logs() -> Iterator[Records]:
    """Every log record of every logger (testcontainers' and docker's included) while this module runs."""
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, docker_client: Any, logs: Records) -> Iterator[Provisioner]:
    """One provisioner (one container per image) for the tests that only use servers, with a nasty password."""
    prov = Provisioner(
        tmp_path_factory.mktemp("state"),
        invocation=f"t-{uuid.uuid4().hex[:8]}",
        owner_pid=os.getpid(),
        password=NASTY,
        environ={},
    )
    yield prov
    prov.release_all()
    assert labelled(docker_client, prov.invocation) == []


@pytest.mark.parametrize("database", [POSTGRES, MARIADB, MYSQL], ids=["postgresql", "mariadb", "mysql"])
def test_container_starts_once_and_answers_with_the_nasty_password(shared: Provisioner, database: Database) -> None:
    first = shared.acquire(database)
    assert isinstance(first, Server), first
    assert (first.source, first.host, first.image) == ("container", "127.0.0.1", database.offline_image)
    assert first.password == NASTY
    again = shared.acquire(database)
    assert isinstance(again, Server)
    assert again.container_id == first.container_id
    # The password travels URL-quoted; the server accepts it, so quoting and the entrypoint's SQL escaping work.
    assert quote(NASTY, safe="") in first.url(DRIVER[database.kind], "x")
    [(one,)] = query(first.url(DRIVER[database.kind], first.admin_database or ""), "SELECT 1")
    assert one == 1
    # The version the server reports is the one the database and its image are named for.
    assert (first.server_version or "").startswith(database.name.split("-", 1)[1] + ".")


def test_admin_connections_use_tls_exactly_when_the_drivers_default_would(shared: Provisioner) -> None:
    """MySQL 9.7 offers TLS and gets it; PostgreSQL 15 and MariaDB 10.11 (Debian's packages) do not, and the admin
    connection falls back to plain: the drivers' own policy, with one SSL context instead of one per connection."""
    seen = {}
    for database in (POSTGRES, MARIADB, MYSQL):
        server = shared.acquire(database)
        assert isinstance(server, Server), server
        ours, default = tls_of_admin_and_default(server)
        assert ours == default, database.name
        seen[database.name] = ours
    assert set(seen.values()) == {True, False}, f"both ways were to be tried: {seen}"


def test_two_databases_on_one_image_share_the_container(shared: Provisioner) -> None:
    a, b = shared.acquire(POSTGRES), shared.acquire(POSTGRES_TWIN)
    assert isinstance(a, Server)
    assert isinstance(b, Server)
    assert a.container_id == b.container_id
    assert (a.name, b.name) == ("postgresql-15", "postgresql-twin")
    with shared.cell_database(a, "cell") as name_a, shared.cell_database(b, "cell") as name_b:
        assert name_a != name_b  # the same cell on both at once does not collide


@pytest.mark.parametrize("database", [POSTGRES, MARIADB, MYSQL], ids=["postgresql", "mariadb", "mysql"])
def test_cell_databases_are_fresh_isolated_and_dropped(shared: Provisioner, database: Database) -> None:
    server = shared.acquire(database)
    assert isinstance(server, Server), server
    driver = DRIVER[database.kind]
    with shared.cell_database(server, "cell-a") as a, shared.cell_database(server, "cell-b") as b:
        query(server.url(driver, a), "CREATE TABLE marker (n INTEGER)")
        query(server.url(driver, a), "INSERT INTO marker VALUES (7)")
        assert query(server.url(driver, a), "SELECT n FROM marker") == [(7,)]
        with pytest.raises(Exception, match="marker"):
            query(server.url(driver, b), "SELECT n FROM marker")
    assert not {a, b} & set(admin.list_databases(server))


def test_nothing_logged_holds_the_password(shared: Provisioner, logs: Records) -> None:
    for database in (POSTGRES, MARIADB, MYSQL):
        server = shared.acquire(database)
        assert isinstance(server, Server), server
    assert any("started greenlight-offline" in line for line in logs.lines)  # the capture does work
    logged = "\n".join(logs.lines) + "".join(p.read_text() for p in shared.state_dir.glob("*.log"))
    for form in (NASTY, quote(NASTY, safe=""), quote(NASTY, safe=" +")):
        assert form not in logged


def test_an_engine_that_stops_answering_mid_run_is_reported(
    shared: Provisioner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert isinstance(shared.acquire(MARIADB), Server)
    # From the client's side a stopped daemon is a socket nobody answers on.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'stopped.sock'}")
    got = shared.acquire(MARIADB)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith("the Docker engine stopped answering during this run: no Docker engine answers")


def test_a_missing_image_is_unavailable_and_says_how_to_build_it(tmp_path: Path, docker_client: Any) -> None:
    missing = Database(
        "postgresql-99", "postgresql", ("asyncpg",), "greenlight-test/absent:99", "greenlight-test/none:1"
    )
    got = Provisioner(tmp_path, invocation="t-missing", owner_pid=os.getpid(), environ={}).acquire(missing)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith("image greenlight-test/absent:99 is not present locally and cannot be pulled (")
    assert got.reason.endswith("and its offline image greenlight-test/none:1 is not built (run `nox -s images`)")
    assert labelled(docker_client, "t-missing") == []


def test_a_container_that_died_is_reported_not_reused(tmp_path: Path, docker_client: Any) -> None:
    prov = Provisioner(tmp_path, invocation=f"t-{uuid.uuid4().hex[:8]}", owner_pid=os.getpid(), environ={})
    try:
        server = prov.acquire(MARIADB)
        assert isinstance(server, Server), server
        docker_client.containers.get(server.container_id).kill()
        got = prov.acquire(MARIADB)
        assert isinstance(got, Unavailable)
        assert f"container {str(server.container_id)[:12]} of this run is exited" in got.reason
    finally:
        prov.release_all()
    assert labelled(docker_client, prov.invocation) == []


def test_two_processes_of_one_invocation_share_one_container(tmp_path: Path, docker_client: Any) -> None:
    invocation = f"t-{uuid.uuid4().hex[:8]}"
    # Both ask at the same moment; the lock makes one start the container and the other wait for it.
    procs = [child(tmp_path, invocation, str(os.getpid()), POSTGRES, hold=False) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
        got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert got[0]["container_id"] is not None, outputs[0][1][-2000:]
        assert got[0]["container_id"] == got[1]["container_id"]
        assert [c.id for c in labelled(docker_client, invocation)] == [got[0]["container_id"]]
        # Both processes have exited, but the invocation (this pytest process) lives: the container stays.
        time.sleep(1.5)
        assert docker_client.containers.get(got[0]["container_id"]).status == "running"
    finally:
        removed = Provisioner(tmp_path, invocation=invocation, owner_pid=os.getpid(), environ={}).release_all()
    assert len(removed) == 1
    assert labelled(docker_client, invocation) == []


def test_reaper_removes_the_containers_when_the_invocation_is_sigkilled(tmp_path: Path, docker_client: Any) -> None:
    # The child is the invocation (its own pid) and owns a running container, like a nox process would.
    proc = child(tmp_path, "self", "self", MARIADB, hold=True)
    try:
        assert proc.stdout is not None
        got = json.loads(proc.stdout.readline())
        assert got["container_id"] is not None, proc.stderr.read() if proc.stderr else ""
        assert docker_client.containers.get(got["container_id"]).status == "running"
        proc.send_signal(signal.SIGKILL)  # no atexit, no finally: only the reaper can clean up now
        # Not waited for yet: the child stays a zombie, which the reaper must also see as dead.
        deadline = time.monotonic() + 30
        while labelled(docker_client, got["invocation"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert labelled(docker_client, got["invocation"]) == []
        assert not (tmp_path / f"invocation-{got['invocation']}").exists()
        log = (tmp_path / f"reaper-{got['invocation']}.log").read_text()
        assert "has ended" in log
        assert "removed 1 container(s)" in log
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close() if proc.stdout else None
        proc.stderr.close() if proc.stderr else None
