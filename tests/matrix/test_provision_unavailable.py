"""No Docker engine and no URL: the database cannot be had, and the reason says exactly why."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest

from matrix.axes import Database
from matrix.provision import Provisioner, Unavailable

POSTGRES = Database("postgresql-17", "postgresql", ("asyncpg",), "postgres:17", "greenlight-offline/postgresql:15")
MYSQL = Database("mysql-8.4", "mysql", ("aiomysql",), "mysql:8.4", None)


@pytest.mark.parametrize(
    ("database", "variable"), [(POSTGRES, "GREENLIGHT_POSTGRES_URL"), (MYSQL, "GREENLIGHT_MYSQL_URL")]
)
def test_dead_docker_socket_gives_a_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: Database, variable: str
) -> None:
    dead = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    prov = Provisioner(tmp_path / "state", invocation="t-nodocker", environ={})
    got = prov.acquire(database)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith(f"no Docker engine answers at unix://{dead}: the socket does not exist")
    assert got.reason.endswith(f", and {variable} is unset")
    assert str(got) == got.reason
    # Nothing was started, so nothing needs reaping: no state, no reaper.
    assert prov.state.read_all() == {}


def test_a_socket_that_is_not_docker_is_no_engine_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Something listens there, but it is not a Docker engine: it answers every request with garbage.
    path = tmp_path / "fake.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(b"this is not HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        got = Provisioner(tmp_path / "state", invocation="t-fake", environ={}).acquire(POSTGRES)
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith(f"no Docker engine answers at unix://{path}: ")


def test_sqlite_needs_no_server(tmp_path: Path) -> None:
    sqlite = Database("sqlite", "sqlite", ("aiosqlite",), None, None)
    with pytest.raises(ValueError, match="kind 'sqlite' needs no server"):
        Provisioner(tmp_path, invocation="t-sqlite", environ={}).acquire(sqlite)


def test_a_closed_tcp_docker_host_is_no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    got = Provisioner(tmp_path / "state", invocation="t-tcp", environ={}).acquire(MYSQL)
    assert isinstance(got, Unavailable)
    assert got.reason.startswith("no Docker engine answers at tcp://127.0.0.1:1: ")
    assert "Connection refused" in got.reason


def test_reaping_without_an_engine_keeps_the_state_for_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix.provision import Server, reaper

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'down.sock'}")
    prov = Provisioner(tmp_path, invocation="t-retry", environ={})
    with prov.state.locked("image-x") as record:  # as if a container had been started, then dockerd went down
        record["server"] = Server("x", "postgresql", container_id="abc").to_json()
    lines: list[str] = []
    result = reaper.reap("t-retry", tmp_path, lines.append)
    assert result.complete is False
    assert prov.state.directory.is_dir()
    assert lines == [
        f"cannot remove containers: no Docker engine answers at unix://{tmp_path / 'down.sock'}: "
        "the socket does not exist"
    ]
    # With nothing recorded there is nothing to wait for: the same call completes and clears the state.
    prov.state.remove()
    with prov.state.locked("reaper") as record:
        record["pid"] = 1
    assert reaper.reap("t-retry", tmp_path).complete is True
    assert not prov.state.directory.exists()
