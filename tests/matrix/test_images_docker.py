"""The built offline images keep the official images' contract (``--run-docker``; built by ``nox -s images``).

testcontainers' own ``PostgresContainer`` and ``MySqlContainer`` start them unchanged, with a non-default user,
password and database, and those credentials -- and only those -- get in; each image's server reports the version
its tag names. The images of ``TESTED`` (one per entrypoint, what `.ci/docker.sh` builds) must exist; the others
are checked when `nox -s images` has built them.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pg8000.dbapi
import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from matrix.images import RECIPES, Recipe, build_all
from matrix.images.build import DEFAULT_MIRROR, image_label
from matrix.images.recipes import MARIADB_10_11, MYSQL_9_7, POSTGRESQL_15, TESTED
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
    for recipe in TESTED:
        if image_label(recipe.image) is None:
            pytest.fail(
                f"the offline image {recipe.image} is missing: build it with `python -m matrix.images --tested`"
            )
    engine.configure_testcontainers()


def run(image: str, *command: str, env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    flags = [f"--env={e}" for e in env]
    return subprocess.run(
        ["docker", "run", "--rm", *flags, image, *command], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("image", "tools"),
    [
        (POSTGRESQL_15.image, "sh psql pg_isready initdb postgres"),
        (MARIADB_10_11.image, "sh mysql mariadb mariadbd"),
        (MYSQL_9_7.image, "sh mysql mysqladmin mysqld"),
    ],
)
def test_images_have_a_shell_and_the_clients(image: str, tools: str) -> None:
    done = run(image, "sh", "-c", f"for t in {tools}; do command -v $t || exit 1; done")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.split()) == len(tools.split())


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (POSTGRESQL_15.image, "POSTGRES_PASSWORD is not set"),
        (MARIADB_10_11.image, "MYSQL_ROOT_PASSWORD is not set"),
        (MYSQL_9_7.image, "MYSQL_ROOT_PASSWORD is not set"),
    ],
)
def test_no_password_is_refused_like_the_official_images(image: str, message: str) -> None:
    done = run(image)
    assert done.returncode == 1
    assert message in done.stderr


def test_postgres_container_runs_unchanged_with_the_env_contract() -> None:
    from matrix.provision._tc import PostgresContainer

    with PostgresContainer(POSTGRESQL_15.image, username="alice", password=SECRET, dbname="shop", driver=None) as pg:
        host, port = pg.get_container_host_ip(), int(pg.get_exposed_port(5432))
        assert host == "127.0.0.1"
        connection = pg8000.dbapi.connect(user="alice", password=SECRET, host=host, port=port, database="shop")
        cursor = connection.cursor()
        cursor.execute("SELECT current_user, current_database(), current_setting('is_superuser')")
        assert cursor.fetchone() == ["alice", "shop", "on"]
        connection.close()
        with pytest.raises(pg8000.dbapi.DatabaseError, match="password authentication failed"):
            pg8000.dbapi.connect(user="alice", password="wrong", host=host, port=port, database="shop")


@pytest.mark.parametrize("image", [MARIADB_10_11.image, MYSQL_9_7.image])
def test_mysql_container_runs_unchanged_with_the_env_contract(image: str) -> None:
    from matrix.provision._tc import MySqlContainer

    with MySqlContainer(image, username="bob", password=SECRET, root_password="root-" + SECRET, dbname="shop") as my:
        host, port = my.get_container_host_ip(), int(my.get_exposed_port(3306))
        connection = pymysql.connect(host=host, port=port, user="bob", password=SECRET, database="shop")
        with connection.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER(), DATABASE()")
            assert cursor.fetchone() == ("bob@%", "shop")
            cursor.execute("SHOW DATABASES")
            # nothing else (MySQL also shows performance_schema to every user)
            assert {row[0] for row in cursor.fetchall()} - {"performance_schema"} == {"information_schema", "shop"}
        connection.close()
        root = pymysql.connect(host=host, port=port, user="root", password="root-" + SECRET)
        root.close()
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host=host, port=port, user="root", password=SECRET)


async def _version(url: str) -> str:
    engine_ = create_async_engine(url)
    try:
        async with engine_.connect() as connection:
            return str((await connection.execute(text("SELECT version()"))).scalar_one())
    finally:
        await engine_.dispose()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.slug)
def test_each_image_runs_the_server_version_its_tag_names(recipe: Recipe) -> None:
    if recipe not in TESTED and image_label(recipe.image) is None:
        pytest.skip(f"{recipe.image} is not built (`nox -s images` builds it; CI builds only the tested ones)")
    from matrix.provision._tc import MySqlContainer, PostgresContainer

    container: Any
    if recipe.entrypoint == "postgresql.sh":
        container = PostgresContainer(recipe.image, username="u", password=SECRET, dbname="d", driver=None)
        scheme = "postgresql+asyncpg"
    else:
        container = MySqlContainer(recipe.image, username="u", password=SECRET, dbname="d")
        scheme = "mysql+aiomysql"
    with container:
        port = int(container.get_exposed_port(5432 if scheme.startswith("postgresql") else 3306))
        url = f"{scheme}://u:{quote(SECRET, safe='')}@127.0.0.1:{port}/d"
        version = asyncio.run(_version(url))
    # "PostgreSQL 17.12 (Debian 17.12-0+deb13u1) on x86_64...", "11.8.9-MariaDB-0+deb13u1", "9.7.4-2"
    number = version.split()[1] if version.startswith("PostgreSQL ") else version
    assert number.startswith(recipe.version + "."), version
    assert ("MariaDB" in version) == (recipe.entrypoint == "mariadb.sh"), version


def test_a_second_build_finds_the_images_up_to_date() -> None:
    built = [r for r in RECIPES if r in TESTED or image_label(r.image) is not None]
    for recipe in built:
        if image_label(recipe.image) != recipe.image_key(DEFAULT_MIRROR):
            pytest.fail(f"{recipe.image} was built from another recipe: rebuild it with `nox -s images`")
    results = build_all(ROOT / "build" / "images", only=[r.slug for r in built], log=lambda line: None)
    assert [r.action for r in results] == ["up-to-date"] * len(built)
    assert sum(r.seconds for r in results) < 10
