"""The "existing server" path (GREENLIGHT_POSTGRES_URL / GREENLIGHT_MYSQL_URL) against the local servers.

PostgreSQL at 127.0.0.1:5432 (trust auth, database test) and MariaDB at 127.0.0.1:3306 (root, no password).
No container is started here; the per-cell databases are created and dropped on those servers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from matrix.axes import Database
from matrix.provision import Provisioner, Server, Unavailable, admin
from tests.matrix.admin_tls import tls_of_admin_and_default

pytestmark = pytest.mark.local_servers

LOCAL_URLS = {
    "GREENLIGHT_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "GREENLIGHT_MYSQL_URL": "mysql://root@127.0.0.1:3306/test",
}
POSTGRES = Database("postgresql-17", "postgresql", ("asyncpg",), "postgres:17", None)
MARIADB = Database("mariadb-11", "mysql", ("aiomysql",), "mariadb:11", None)
DRIVER = {"postgresql": "asyncpg", "mysql": "aiomysql"}
# The password of a throwaway MariaDB account: every character URLs and SQL treat specially.
NASTY = "p@ss:/?#%w'\"rd\\ x"
# Cell keys unique to this run: other runs of this suite may use the same servers at the same time.
RUN = uuid.uuid4().hex[:8]


@pytest.fixture
def provisioner(tmp_path: Path) -> Provisioner:
    prov = Provisioner(tmp_path / "state", invocation=f"t-{uuid.uuid4().hex[:8]}", environ=LOCAL_URLS)
    yield prov
    prov.release_all()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def query(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", [POSTGRES, MARIADB], ids=["postgresql", "mariadb"])
def test_url_server_is_acquired_with_its_real_version(provisioner: Provisioner, database: Database) -> None:
    got = provisioner.acquire(database)
    assert isinstance(got, Server), got
    assert got.source == "url"
    assert got.name == database.name
    assert got.container_id is None
    version_query = "SHOW server_version" if database.kind == "postgresql" else "SELECT VERSION()"
    [(reported,)] = run(query(got.url(DRIVER[database.kind], got.admin_database or ""), version_query))
    assert str(reported).startswith(got.server_version or "?")


@pytest.mark.parametrize("database", [POSTGRES, MARIADB], ids=["postgresql", "mariadb"])
def test_admin_connections_use_tls_exactly_when_the_drivers_default_would(
    provisioner: Provisioner, database: Database
) -> None:
    """Neither local server offers TLS: the admin connection falls back to plain, as the drivers' default does."""
    server = provisioner.acquire(database)
    assert isinstance(server, Server), server
    assert tls_of_admin_and_default(server) == (False, False)
    assert tls_of_admin_and_default(server) == (False, False)  # the refusal remembered, the same answer


@pytest.mark.parametrize("database", [POSTGRES, MARIADB], ids=["postgresql", "mariadb"])
def test_cell_databases_are_fresh_isolated_and_dropped(provisioner: Provisioner, database: Database) -> None:
    server = provisioner.acquire(database)
    assert isinstance(server, Server), server
    driver = DRIVER[database.kind]
    with (
        provisioner.cell_database(server, f"cell-a-{RUN}") as a,
        provisioner.cell_database(server, f"cell-b-{RUN}") as b,
    ):
        assert a != b
        assert {a, b} <= set(admin.list_databases(server))
        run(query(server.url(driver, a), "CREATE TABLE marker (n INTEGER)"))
        run(query(server.url(driver, a), "INSERT INTO marker VALUES (42)"))
        assert run(query(server.url(driver, a), "SELECT n FROM marker")) == [(42,)]
        with pytest.raises(Exception, match="marker"):  # cell b never sees cell a's table
            run(query(server.url(driver, b), "SELECT n FROM marker"))
    assert not {a, b} & set(admin.list_databases(server))


def test_a_leftover_database_is_replaced_and_an_error_still_drops(provisioner: Provisioner) -> None:
    server = provisioner.acquire(POSTGRES)
    assert isinstance(server, Server), server
    name = admin.database_name(server.name, f"cell-left-{RUN}")
    admin.create_database(server, name)  # as if a killed run had left it behind
    run(query(server.url("asyncpg", name), "CREATE TABLE stale (n INTEGER)"))
    seen: list[list[tuple[object, ...]]] = []

    def failing_run() -> None:
        with provisioner.cell_database(server, f"cell-left-{RUN}") as got:
            assert got == name
            seen.append(
                run(query(server.url("asyncpg", got), "SELECT tablename FROM pg_tables WHERE tablename = 'stale'"))
            )
            raise RuntimeError("scenario run failed")

    with pytest.raises(RuntimeError, match="scenario run failed"):
        failing_run()
    assert seen == [[]]  # the leftover (with its table) was replaced by a fresh database
    assert name not in admin.list_databases(server)


def test_url_databases_are_recorded_for_the_reaper_while_they_exist(provisioner: Provisioner) -> None:
    server = provisioner.acquire(MARIADB)
    assert isinstance(server, Server), server
    with provisioner.cell_database(server, f"cell-rec-{RUN}") as name:
        recorded = [e["name"] for r in provisioner.state.read_all().values() for e in r.get("databases", [])]
        assert recorded == [name]
    recorded = [e["name"] for r in provisioner.state.read_all().values() for e in r.get("databases", [])]
    assert recorded == []


def test_unreachable_url_is_unavailable_with_a_reason_and_no_password(tmp_path: Path) -> None:
    url = "postgresql://postgres:" + "s%40cr%3At%2F%3F%23%25" + "@127.0.0.1:1/test"
    prov = Provisioner(tmp_path, invocation="t-unreachable", environ={"GREENLIGHT_POSTGRES_URL": url})
    got = prov.acquire(POSTGRES)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith("GREENLIGHT_POSTGRES_URL is set, but: cannot connect to postgresql server")
    assert "127.0.0.1:1" in got.reason
    assert "s@cr:t" not in got.reason
    assert "s%40cr" not in got.reason


@pytest.fixture
def nasty_mariadb_account() -> str:
    """A MariaDB account whose password holds URL- and SQL-special characters, allowed to manage gl_ databases."""
    root = Server("local", "mysql", port=3306, user="root", source="url")
    user = f"gl_{uuid.uuid4().hex[:8]}"
    escaped = NASTY.replace("\\", "\\\\").replace("'", "''")
    run(query(root.url("aiomysql", "test"), f"CREATE USER '{user}'@'%' IDENTIFIED BY '{escaped}'"))
    run(query(root.url("aiomysql", "test"), f"GRANT ALL ON `gl\\_%`.* TO '{user}'@'%'"))
    run(query(root.url("aiomysql", "test"), f"GRANT SELECT ON `test`.* TO '{user}'@'%'"))
    yield user
    run(query(root.url("aiomysql", "test"), f"DROP USER '{user}'@'%'"))


def test_url_special_password_works_end_to_end_and_is_never_logged(
    tmp_path: Path, nasty_mariadb_account: str, caplog: pytest.LogCaptureFixture
) -> None:
    from urllib.parse import quote

    caplog.set_level(logging.DEBUG)
    url = f"mysql://{nasty_mariadb_account}:{quote(NASTY, safe='')}@127.0.0.1:3306/test"
    prov = Provisioner(tmp_path, invocation="t-nasty", environ={"GREENLIGHT_MYSQL_URL": url})
    server = prov.acquire(MARIADB)
    assert isinstance(server, Server), server
    assert server.password == NASTY
    with prov.cell_database(server, f"cell-nasty-{RUN}") as name:
        assert run(query(server.url("aiomysql", name), "SELECT DATABASE()")) == [(name,)]
        assert NASTY not in server.redacted_url("aiomysql", name)
    prov.release_all()
    logged = caplog.text + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert NASTY not in logged
    assert quote(NASTY, safe="") not in logged
    # A wrong password is refused by the server, and the refusal does not echo it either.
    wrong = Provisioner(tmp_path, invocation="t-wrong", environ={"GREENLIGHT_MYSQL_URL": url.replace("p%40", "q%40")})
    refused = wrong.acquire(MARIADB)
    assert isinstance(refused, Unavailable)
    assert "Access denied" in refused.reason
    assert "q@ss" not in refused.reason


# A process that is its own invocation: creates a cell database on the URL server, reports it, and hangs.
HOLDER = """
import os, sys, time
from pathlib import Path
from matrix.axes import Database
from matrix.provision import Provisioner
prov = Provisioner(Path(sys.argv[1]), environ={"GREENLIGHT_POSTGRES_URL": sys.argv[2]})
server = prov.acquire(Database("postgresql-17", "postgresql", ("asyncpg",), None, None))
with prov.cell_database(server, sys.argv[3]) as name:
    print(prov.invocation, name, flush=True)
    time.sleep(600)
"""


def test_reaper_drops_url_databases_of_a_sigkilled_invocation(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), LOCAL_URLS["GREENLIGHT_POSTGRES_URL"], f"held-{RUN}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        invocation, name = proc.stdout.readline().split()
        server = Server("check", "postgresql", port=5432, user="postgres", source="url", admin_database="test")
        assert name in admin.list_databases(server)
        proc.send_signal(signal.SIGKILL)  # its `with` never exits: only the reaper can drop the database
        deadline = time.monotonic() + 30
        while name in admin.list_databases(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert name not in admin.list_databases(server)
        assert f"dropped database {name}" in (tmp_path / f"reaper-{invocation}.log").read_text()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close() if proc.stdout else None
