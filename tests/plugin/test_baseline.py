"""The strict-mode ratchet (--greenlight-baseline): known sites are served, new ones fail, fixed ones are reported."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_greenlight import baseline
from pytest_greenlight.implicit_io import Site

from .conftest import BASE_PLUGINS, GREENLIGHT, MODELS, PYTEST_ASYNCIO_VERSION, Runner

# A project as users have it: application code in app/, tests in tests/, the baseline next to pyproject.toml.
PYPROJECT = """
[tool.pytest.ini_options]
asyncio_mode = "strict"
pythonpath = ["."]
greenlight_baseline = "greenlight-baseline.json"
{extra}
"""

SERVICE = """
def first_email(user):
    return user.addresses[0].email      # lazy load in application code


def greeting(user):
    return "hello " + user.name         # refresh of an expired attribute, when called after commit()
"""

CONFTEST = """
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from app.models import URL, Base, fresh_tables

@pytest_asyncio.fixture
async def session():
    engine = create_async_engine(URL)
    await fresh_tables(engine)
    async with AsyncSession(engine) as session:
        yield session
    await engine.dispose()
"""

TESTS = """
import pytest
from sqlalchemy import select
from app.models import User
from app.service import first_email, greeting

@pytest.mark.asyncio
async def test_email(session):
    user = (await session.execute(select(User))).scalar_one()
    assert first_email(user) == "a@example.invalid"

@pytest.mark.asyncio
async def test_greeting(session):
    user = (await session.execute(select(User))).scalar_one()
    await session.commit()
    assert greeting(user) == "hello alice"

@pytest.mark.asyncio
async def test_name_in_test(session):
    user = (await session.execute(select(User))).scalar_one()
    await session.commit()
    assert user.name == "alice"           # refresh in the test itself
"""

EDITED_SERVICE = """
# An unrelated edit above every site: the line numbers move, the baseline still knows the sites.


def first_email(user):
    return user.addresses[0].email      # lazy load in application code


def greeting(user):
    return "hello " + user.name         # refresh of an expired attribute, when called after commit()


def address_count(user):
    return len(user.addresses)          # NEW implicit IO
"""


# The fix for the lazy load in first_email(): load the addresses up front.
FIX = (
    "    from sqlalchemy.orm import selectinload\n"
    "    loaded = select(User).options(selectinload(User.addresses)).execution_options(populate_existing=True)\n"
    "    user = (await session.execute(loaded)).scalar_one()\n"
)


def _project(runner: Runner) -> Path:
    root = runner.pytester.path
    extra = 'asyncio_default_fixture_loop_scope = "function"' if PYTEST_ASYNCIO_VERSION >= (0, 24) else ""
    (root / "pyproject.toml").write_text(PYPROJECT.format(extra=extra))
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    # pytest-xdist workers each get their own tables and SQLite file.
    worker = 'os.environ.get("PYTEST_XDIST_WORKER", "")'
    models = MODELS.replace('os.environ["GL_SUFFIX"]', f'os.environ["GL_SUFFIX"] + {worker}')
    models = models.replace(
        'os.environ["GL_URL"]', f'os.environ["GL_URL"].replace("test.db", "test" + {worker} + ".db")'
    )
    (root / "app" / "models.py").write_text(models)
    (root / "app" / "service.py").write_text(SERVICE)
    (root / "tests").mkdir()
    (root / "tests" / "conftest.py").write_text(CONFTEST)
    (root / "tests" / "test_users.py").write_text(TESTS)
    return root


def _run(runner: Runner, *args: str, plugin: bool = True) -> pytest.RunResult:
    plugins = BASE_PLUGINS + (GREENLIGHT if plugin else ())
    return runner.pytester.runpytest_subprocess(*plugins, "-p", "no:cacheprovider", "-p", "no:randomly", *args)


def _sites(root: Path) -> list[dict[str, str]]:
    data = json.loads((root / "greenlight-baseline.json").read_text())
    assert data["greenlight_baseline"] == 1
    return list(data["sites"])


WRITTEN = [
    {
        "file": "app/service.py",
        "function": "first_email",
        "trigger": "lazy load of User.addresses",
        "code": "return user.addresses[0].email      # lazy load in application code",
    },
    {
        "file": "app/service.py",
        "function": "greeting",
        "trigger": "refresh of expired attribute User.name",
        "code": 'return "hello " + user.name         # refresh of an expired attribute, when called after commit()',
    },
    {
        "file": "tests/test_users.py",
        "function": "test_name_in_test",
        "trigger": "refresh of expired attribute User.name",
        "code": 'assert user.name == "alice"           # refresh in the test itself',
    },
]


@pytest.mark.timeout(900)  # eight inner runs: slow on a loaded machine
def test_ratchet_on_a_project_layout(runner: Runner) -> None:
    root = _project(runner)

    # Without a baseline file the ratchet refuses to guess: it says how to write one.
    missing = _run(runner)
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(
        ["*baseline file *greenlight-baseline.json does not exist*", "*--greenlight-baseline-update*"]
    )

    # 1. Write the baseline from the whole suite: every site is served and written, sorted, one per line.
    written = _run(runner, "--greenlight-baseline-update")
    written.assert_outcomes(passed=3)
    written.stdout.fnmatch_lines(["*wrote 3 site(s) to the baseline *greenlight-baseline.json (3 added, 0 removed)"])
    assert _sites(root) == WRITTEN
    text = (root / "greenlight-baseline.json").read_text()
    assert text.count("\n") == 8  # header, three sites, footer: one line each, so a diff shows one line a site

    # Known sites pass as they are (strict mode for everything else) ...
    known = _run(runner)
    known.assert_outcomes(passed=3)
    known.stdout.fnmatch_lines(["*greenlight *strict with the baseline *greenlight-baseline.json (3 known site(s)*"])
    known.stdout.fnmatch_lines(["*3 known site(s) from the baseline*were served*"])
    # ... and without the plugin the same suite fails at those sites.
    _run(runner, plugin=False).assert_outcomes(failed=3)

    # 2. Fix one site (load the addresses up front), add a new one, and edit above the others.
    (root / "app" / "service.py").write_text(EDITED_SERVICE)
    tests = TESTS.replace(
        "    assert first_email(user) == ",
        FIX + "    assert first_email(user) == ",
    ) + textwrap.dedent(
        """
        @pytest.mark.asyncio
        async def test_count(session):
            from app.service import address_count
            user = (await session.execute(select(User))).scalar_one()
            assert address_count(user) == 1
        """
    )
    (root / "tests" / "test_users.py").write_text(tests)
    ratchet = _run(runner)
    # The run fails on the new site only, with strict mode's explanation ...
    ratchet.assert_outcomes(passed=3, failed=1)
    ratchet.stdout.fnmatch_lines(["*FAILED tests/test_users.py::test_count*"])
    ratchet.stdout.fnmatch_lines(
        ["*greenlight strict mode: implicit IO at */app/service.py:14 (lazy load of User.addresses)*"]
    )
    # ... the moved sites are still known, and the fixed one is reported so the file can shrink.
    ratchet.stdout.fnmatch_lines(
        [
            "*greenlight: implicit IO 1 refused by strict mode*",
            "  app/service.py:10: refresh of expired attribute User.name (in *::test_greeting, known: in the baseline)",
            "  tests/test_users.py:*: refresh of expired attribute User.name (in *::test_name_in_test, known: in the*",
            "  app/service.py:14: lazy load of User.addresses (in *::test_count, refused: the test failed)",
            "*greenlight: baseline*",
            "2 known site(s) from the baseline *greenlight-baseline.json were served*",
            "Sites not in the baseline failed where they happened*",
            "1 site(s) in the baseline *greenlight-baseline.json no longer occur*",
            "  app/service.py::first_email: lazy load of User.addresses: `return user.addresses*.email *`",
            "Shrink the file after a run of the whole suite:  pytest --greenlight-baseline-update",
        ]
    )

    # 3. Accept the new site and drop the fixed one: the diff of the file is one line out, one line in.
    _run(runner, "--greenlight-baseline-update").assert_outcomes(passed=4)
    assert _sites(root) == [
        {**WRITTEN[0], "function": "address_count", "code": "return len(user.addresses)          # NEW implicit IO"},
        *WRITTEN[1:],
    ]
    _run(runner).assert_outcomes(passed=4)


@pytest.mark.timeout(900)
def test_ratchet_with_xdist_workers(runner: Runner) -> None:
    pytest.importorskip("xdist")
    root = _project(runner)
    xdist = ("-p", "xdist", "-n", "2")
    # Written by two workers: the same file as one process writes, every site once.
    _run(runner, *xdist, "--greenlight-baseline-update").assert_outcomes(passed=3)
    assert _sites(root) == WRITTEN

    (root / "app" / "service.py").write_text(EDITED_SERVICE)
    (root / "tests" / "test_users.py").write_text(
        TESTS.replace(
            "    assert first_email(user) == ",
            FIX + "    assert first_email(user) == ",
        )
        + "\n@pytest.mark.asyncio\nasync def test_count(session):\n"
        "    from app.service import address_count\n"
        "    user = (await session.execute(select(User))).scalar_one()\n"
        "    assert address_count(user) == 1\n"
    )
    result = _run(runner, *xdist)
    result.assert_outcomes(passed=3, failed=1)
    # One merged summary on the controller: each site once, the gone one reported, the new one refused.
    result.stdout.fnmatch_lines(
        [
            "*greenlight: implicit IO 1 refused by strict mode*",
            "3 place(s) relied on implicit IO*",
            "*2 known site(s) from the baseline*",
            "1 site(s) in the baseline *no longer occur*",
            "  app/service.py::first_email: lazy load of User.addresses*",
        ]
    )
    _run(runner, *xdist, "--greenlight-baseline-update").assert_outcomes(passed=4)
    assert len(_sites(root)) == 3


def test_update_needs_a_file(runner: Runner) -> None:
    _project(runner)
    (runner.pytester.path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nasyncio_mode = 'strict'\n")
    result = _run(runner, "--greenlight-baseline-update")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--greenlight-baseline-update needs the file to write*"])


def test_an_unreadable_file_is_a_usage_error(runner: Runner) -> None:
    root = _project(runner)
    (root / "greenlight-baseline.json").write_text("{not json")
    result = _run(runner, "--greenlight-baseline", "greenlight-baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot read the baseline file*"])


def _site(tmp_path: Path, line: str, lineno: int = 2, qualname: str = "Checks.test_x") -> Site:
    source = tmp_path / "tests" / "test_a.py"
    source.parent.mkdir(exist_ok=True)
    source.write_text("\n" * (lineno - 1) + f"    {line}\n")
    return Site(str(source), lineno, qualname.rpartition(".")[2], "lazy load of User.addresses", qualname)


def test_the_key_ignores_line_numbers_not_the_code(tmp_path: Path) -> None:
    first = baseline.key_of(_site(tmp_path, "user.addresses", lineno=2), str(tmp_path))
    moved = baseline.key_of(_site(tmp_path, "user.addresses", lineno=40), str(tmp_path))
    assert (
        first
        == moved
        == baseline.Key("tests/test_a.py", "Checks.test_x", "lazy load of User.addresses", "user.addresses")
    )
    changed = baseline.key_of(_site(tmp_path, "len(user.addresses)"), str(tmp_path))
    assert changed != first


def test_plain_names_match_qualified_ones() -> None:
    # A baseline written before Python 3.11 (code objects had no qualified name) matches on 3.11+ and back.
    qualified = baseline.Key("t.py", "Checks.test_x", "trigger", "code")
    assert qualified.matches(baseline.Key("t.py", "test_x", "trigger", "code"))
    assert baseline.Key("t.py", "test_x", "trigger", "code").matches(qualified)
    assert not qualified.matches(baseline.Key("t.py", "Other.test_x", "trigger", "code"))
    assert not qualified.matches(baseline.Key("t.py", "test_y", "trigger", "code"))


def test_the_file_is_sorted_and_stable() -> None:
    keys = [
        baseline.Key("b.py", "f", "t", "x"),
        baseline.Key("a.py", "g", "t", 'say("é")'),
        baseline.Key("a.py", "f", "t", "y"),
    ]
    text = baseline.dumps(keys)
    assert text == baseline.dumps(reversed(keys))
    assert baseline.loads(text, "file") == frozenset(keys)
    assert [json.loads(line.rstrip(","))["file"] for line in text.splitlines()[3:6]] == ["a.py", "a.py", "b.py"]
    assert baseline.dumps([]) == '{\n  "greenlight_baseline": 1,\n  "sites": []\n}\n'


METHOD = """
import pytest
from sqlalchemy import select
from app.models import User

class Checks:
    async def first_email(self, session):
        user = (await session.execute(select(User))).scalar_one()
        return user.addresses[0].email

@pytest.mark.asyncio
async def test_method(session):
    assert await Checks().first_email(session) == "a@example.invalid"
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="code objects carry a qualified name from Python 3.11")
def test_sites_carry_the_qualified_name(runner: Runner) -> None:
    root = _project(runner)
    (root / "tests" / "test_users.py").write_text(METHOD)
    _run(runner, "--greenlight-baseline-update").assert_outcomes(passed=1)
    assert [site["function"] for site in _sites(root)] == ["Checks.first_email"]
