"""Server URLs and names: quoting, redaction, parsing of GREENLIGHT_*_URL, per-cell database names."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from matrix.provision import Server
from matrix.provision.admin import database_name
from matrix.provision.server import redact
from matrix.provision.urls import BadServerUrl, server_from_url

NASTY = "p@ss:/?#%w'\"rd\\ x"


def test_url_quotes_the_password_so_sqlalchemy_reads_it_back() -> None:
    server = Server("postgresql-17", "postgresql", port=5433, user="us@er", password=NASTY)
    url = server.url(driver="asyncpg", database="gl_cell")
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+asyncpg"
    assert (parsed.username, parsed.password) == ("us@er", NASTY)
    assert (parsed.host, parsed.port, parsed.database) == ("127.0.0.1", 5433, "gl_cell")


def test_redacted_url_and_repr_never_hold_the_password() -> None:
    server = Server("mariadb-11", "mysql", port=3306, user="root", password=NASTY)
    redacted = server.redacted_url(driver="aiomysql", database="gl_cell")
    assert redacted == "mysql+aiomysql://root:***@127.0.0.1:3306/gl_cell"
    assert "p@ss" not in repr(server)
    assert "password" not in repr(server)


def test_redact_removes_raw_and_quoted_forms() -> None:
    server = Server("x", "postgresql", password=NASTY)
    text = f"raw {NASTY} quoted {server.url('asyncpg', 'db')}"
    cleaned = redact(text, [NASTY])
    assert "p@ss" not in cleaned
    assert "p%40ss" not in cleaned
    assert cleaned.count("***") == 2


def test_server_from_url_reads_every_part() -> None:
    server = server_from_url("postgresql-17", "postgresql", "postgresql+asyncpg://bob:s%40cret%2F@db.example:6543/base")
    assert (server.user, server.password, server.host, server.port) == ("bob", "s@cret/", "db.example", 6543)
    assert server.admin_database == "base"
    assert server.source == "url"
    assert server.name == "postgresql-17"


def test_server_from_url_defaults() -> None:
    pg = server_from_url("p", "postgresql", "postgresql://127.0.0.1")
    my = server_from_url("m", "mysql", "mysql://127.0.0.1")
    assert (pg.user, pg.port, pg.admin_database) == ("postgres", 5432, "postgres")
    assert (my.user, my.port, my.admin_database) == ("root", 3306, None)


@pytest.mark.parametrize(
    ("kind", "url", "message"),
    [
        ("postgresql", "mysql://root@127.0.0.1/test", "GREENLIGHT_POSTGRES_URL must start with postgresql://"),
        ("mysql", "postgresql://x@127.0.0.1/test", "GREENLIGHT_MYSQL_URL must start with mysql://"),
        ("postgresql", "postgresql:///test", "GREENLIGHT_POSTGRES_URL names no host"),
        ("mysql", "mysql://root@127.0.0.1:port/test", "GREENLIGHT_MYSQL_URL is not a valid URL"),
    ],
)
def test_bad_urls_name_the_variable(kind: str, url: str, message: str) -> None:
    with pytest.raises(BadServerUrl, match="^" + message.replace("+", r"\+")):
        server_from_url("x", kind, url)


def test_database_names_are_valid_distinct_and_bounded() -> None:
    a = database_name("postgresql-13", "py3.12-sa2.1-pa1__greenlight")
    b = database_name("postgresql-17", "py3.12-sa2.1-pa1__greenlight")
    assert a == "gl_postgresql_13__py3_12_sa2_1_pa1__greenlight"
    assert a != b  # two axes databases may share one container
    long_a = database_name("postgresql-17", "x" * 100 + "a")
    long_b = database_name("postgresql-17", "x" * 100 + "b")
    assert len(long_a) <= 63
    assert long_a != long_b
