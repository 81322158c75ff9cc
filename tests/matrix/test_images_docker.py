"""The built offline images keep the official images' contract (``--run-docker``; built by ``nox -s images``).

testcontainers' own ``PostgresContainer`` and ``MySqlContainer`` start them unchanged, with a non-default user,
password and database, and those credentials -- and only those -- get in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pg8000.dbapi
import pymysql
import pytest

from matrix.images import RECIPES, build_all
from matrix.images.build import DEFAULT_MIRROR, image_label
from matrix.images.recipes import MARIADB, POSTGRESQL
from matrix.provision import engine

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr@t:/?#%'\"\\"


@pytest.fixture(scope="module", autouse=True)
def images_built() -> None:
    client, reason = engine.connect()
    if client is None:
        pytest.fail(f"--run-docker was given, but {reason} (start it with .ci/docker.sh)")
    client.close()
    for recipe in RECIPES:
        if image_label(recipe.image) is None:
            pytest.fail(f"the offline image {recipe.image} is missing: build it with `nox -s images`")
    engine.configure_testcontainers()


def run(image: str, *command: str, env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    flags = [f"--env={e}" for e in env]
    return subprocess.run(
        ["docker", "run", "--rm", *flags, image, *command], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("image", "tools"),
    [(POSTGRESQL.image, "sh psql pg_isready initdb postgres"), (MARIADB.image, "sh mysql mariadb mariadbd")],
)
def test_images_have_a_shell_and_the_clients(image: str, tools: str) -> None:
    done = run(image, "sh", "-c", f"for t in {tools}; do command -v $t || exit 1; done")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.split()) == len(tools.split())


@pytest.mark.parametrize(
    ("image", "message"),
    [(POSTGRESQL.image, "POSTGRES_PASSWORD is not set"), (MARIADB.image, "MYSQL_ROOT_PASSWORD is not set")],
)
def test_no_password_is_refused_like_the_official_images(image: str, message: str) -> None:
    done = run(image)
    assert done.returncode == 1
    assert message in done.stderr


def test_postgres_container_runs_unchanged_with_the_env_contract() -> None:
    from matrix.provision._tc import PostgresContainer

    with PostgresContainer(POSTGRESQL.image, username="alice", password=SECRET, dbname="shop", driver=None) as pg:
        host, port = pg.get_container_host_ip(), int(pg.get_exposed_port(5432))
        assert host == "127.0.0.1"
        connection = pg8000.dbapi.connect(user="alice", password=SECRET, host=host, port=port, database="shop")
        cursor = connection.cursor()
        cursor.execute("SELECT current_user, current_database(), current_setting('is_superuser')")
        assert cursor.fetchone() == ["alice", "shop", "on"]
        connection.close()
        with pytest.raises(pg8000.dbapi.DatabaseError, match="password authentication failed"):
            pg8000.dbapi.connect(user="alice", password="wrong", host=host, port=port, database="shop")


def test_mysql_container_runs_unchanged_with_the_env_contract() -> None:
    from matrix.provision._tc import MySqlContainer

    with MySqlContainer(
        MARIADB.image, username="bob", password=SECRET, root_password="root-" + SECRET, dbname="shop"
    ) as my:
        host, port = my.get_container_host_ip(), int(my.get_exposed_port(3306))
        connection = pymysql.connect(host=host, port=port, user="bob", password=SECRET, database="shop")
        with connection.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER(), DATABASE()")
            assert cursor.fetchone() == ("bob@%", "shop")
            cursor.execute("SHOW DATABASES")
            assert {row[0] for row in cursor.fetchall()} == {"information_schema", "shop"}  # nothing else
        connection.close()
        root = pymysql.connect(host=host, port=port, user="root", password="root-" + SECRET)
        root.close()
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host=host, port=port, user="root", password=SECRET)


def test_a_second_build_finds_the_images_up_to_date() -> None:
    for recipe in RECIPES:
        if image_label(recipe.image) != recipe.image_key(DEFAULT_MIRROR):
            pytest.fail(f"{recipe.image} was built from another recipe: rebuild it with `nox -s images`")
    results = build_all(ROOT / "build" / "images", log=lambda line: None)
    assert [r.action for r in results] == ["up-to-date", "up-to-date"]
    assert sum(r.seconds for r in results) < 10
