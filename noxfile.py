# /// script
# requires-python = ">=3.9"
# dependencies = [
#     "nox>=2025.10", "testcontainers>=4.8", "filelock>=3.12", "tomli>=2; python_version<'3.11'",
#     "pg8000>=1.29", "pymysql>=1.1", "jinja2>=3.1", "markupsafe>=2.1",
# ]
# ///
"""Sessions only: each one is a thin call into matrix/ or reports/ (see README "How it fits together")."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))
from matrix.paths import cache_bytecode  # noqa: E402  (needs ROOT on sys.path)

nox.needs_version = ">=2025.10"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint"]
# uv cannot download interpreters on our machines; nox must use the ones that exist.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
# One id per `nox` invocation, set by the top-level process and inherited by `nox -j` workers: the provisioner
# ties containers to it (removed when this pid ends) and every results file of the run carries the run id.
os.environ.setdefault("GREENLIGHT_INVOCATION", str(os.getpid()))
os.environ.setdefault("GREENLIGHT_RUN_ID", time.strftime("%Y-%m-%dT%H:%M:%SZ-", time.gmtime()) + f"{os.getpid():x}")
# Bytecode cached under build/pycache for every process a session starts (the tests' inner pytest runs, the matrix's
# cells), even where the machine sets PYTHONDONTWRITEBYTECODE; matrix/paths.py says why.
cache_bytecode(os.environ)

# The stacks the plugin's tests run on. "floor" is the exact lowest patch of everything the plugin claims (see
# pyproject.toml and README "Supported versions"); "lowest-direct" lets uv pick the lowest versions pyproject allows;
# "oldest" and "newest" are the newest patches of the oldest and the newest series. The matrix, report and workflow
# tests exercise our own tooling (each cell builds its own environment), so they run once, on "newest".
FLOOR = ["pytest-asyncio==0.21.0", "pytest==7.4.0", "anyio==4.0.0", "greenlet==1.1.3"]  # greenlet: Python 3.11's
STACKS = {
    "floor": ["sqlalchemy[asyncio]==1.4.24", *FLOOR],
    "floor-sa2.0": ["sqlalchemy[asyncio]==2.0.0", *FLOOR],
    "floor-sa2.1": ["sqlalchemy[asyncio]==2.1.0", *FLOOR],
    "oldest": ["sqlalchemy[asyncio]==1.4.*", "pytest-asyncio==0.21.*", "pytest==7.4.*", "anyio==4.0.*"],
    "newest": ["sqlalchemy[asyncio]==2.1.*", "pytest-asyncio==1.*", "pytest==9.*", "anyio>=4"],
}
STACK_TESTS = {"newest": ["tests"]}
PLUGIN_TESTS = ["tests/plugin"]
# Every stack's run on pytest-xdist workers (one per core); tests/conftest.py groups the tests so a worker takes a
# whole file (its module fixtures are made once) and every docker-marked test runs on one worker. `-- -n 0` turns
# it off (the last -n wins).
PYTEST = ["--durations=15", "-n", "auto", "--dist", "loadgroup"]
# The plugin's tests on the newest stack with interpreters this machine may lack. A python3.X on PATH (setup-python)
# is used as it is; otherwise Debian sid's, in a runtime root (matrix/runtime.py: needs root; README "Development").
# "py3.10": the oldest Python the plugin supports, with pytest-asyncio 1.x (whose contexts take another path there).
RUNTIME_STACKS = {"py3.10": "3.10", "py3.14": "3.14", "py3.15": "3.15"}
PYTHON_STACK_REQUIREMENTS = {
    "py3.10": ["sqlalchemy[asyncio]==2.0.*", "pytest-asyncio==1.*", "pytest==8.4.*", "anyio>=4"],
}


@nox.session
@nox.parametrize("stack", [*STACKS, "lowest-direct", *RUNTIME_STACKS])
def tests(session: nox.Session, stack: str) -> None:
    """Run the project's tests: the plugin's on each stack (newest also on Python 3.14 and 3.15); all on newest."""
    if stack in RUNTIME_STACKS:
        _tests_on_python(session, RUNTIME_STACKS[stack], PYTHON_STACK_REQUIREMENTS.get(stack, STACKS["newest"]))
        return
    if stack == "lowest-direct":
        # uv resolves the plugin's dependencies and its tests' to the lowest versions pyproject.toml allows.
        session.install("--resolution", "lowest-direct", "--group", "plugin-tests", "-e", ".")
    elif stack == "newest":
        session.install("--group", "tests", "-e", ".", *STACKS[stack])
    else:
        session.install("--group", "plugin-tests", "-e", ".", *STACKS[stack])
    session.run("pytest", *PYTEST, *(session.posargs or STACK_TESTS.get(stack, PLUGIN_TESTS)))


def _tests_on_python(session: nox.Session, version: str, requirements: list[str]) -> None:
    """The plugin's tests on Python ``version`` in a venv of its own (inside the session's, which nox renews)."""
    import shutil

    from matrix import runtime

    venv = Path(session.virtualenv.location) / f"python{version}"
    python = shutil.which(f"python{version}")
    prefix: list[str] = []
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin{os.pathsep}{os.environ.get('PATH', '')}"}
    if python is None:
        cache = ROOT / "build" / "runtimes"
        try:
            root = runtime.build_root(cache, log=session.log)
            env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:{runtime.BASE_ENV['PATH']}"}
            env["UV_CACHE_DIR"] = str(cache / "uv-cache")  # in the repository: bound, and uv can hardlink from it
            # The repository, and the venv's directory too when --envdir moves it out.
            binds = [ROOT] if venv.resolve().is_relative_to(ROOT.resolve()) else [ROOT, venv.parent]
            prefix = runtime.command_prefix(root, cwd=ROOT, env=env, binds=binds, uv=nox.virtualenv.UV)
        except runtime.RuntimeRootError as exc:
            session.error(f"python{version} is not on PATH and its runtime root is not available: {exc}")
        python = runtime.interpreter(version)
    session.run(*prefix, "uv", "venv", "--clear", "--quiet", "--python", python, str(venv), external=True)
    pip = [*prefix, "uv", "pip", "install", "--python", str(venv / "bin" / "python")]
    # plugin-tests, as on the floor stacks: only tests/plugin runs here (no browser, matrix or workflow tools).
    session.run(*pip, "--group", "plugin-tests", "-e", ".", *requirements, external=True)
    pytest = [str(venv / "bin" / "python"), "-m", "pytest", *PYTEST, *(session.posargs or PLUGIN_TESTS)]
    session.run(*prefix, *pytest, env=None if prefix else env, external=True)


@nox.session(name="bench-portal", default=False)
def bench_portal(session: nox.Session) -> None:
    """Print the portal's cost per suspension and on a SQLite ORM workload, against plain asyncio."""
    session.install("-e", ".", "sqlalchemy[asyncio]", "aiosqlite")
    session.run("python", "benchmarks/portal_overhead.py")


@nox.session(default=False)
def coverage(session: nox.Session) -> None:
    """Measure the plugin's coverage (greenlet-aware, inner pytest runs included); fail under the floor."""
    session.install("--group", "plugin-tests", "--group", "coverage", "-e", ".", *STACKS["newest"])
    session.run("coverage", "erase")
    # [tool.coverage] in pyproject.toml: concurrency greenlet+thread, patch subprocess, the floor (fail_under).
    tests = session.posargs or [*PLUGIN_TESTS, "-n", "auto"]  # xdist workers are subprocesses: measured too
    session.run("coverage", "run", "-m", "pytest", *tests)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", "--include=plugin/pytest_greenlight/*")


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff and types with mypy (strict on the plugin)."""
    session.install("--group", "lint", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


# The matrix: one session per cell of matrix/axes.toml (its exact versions: matrix/axes.lock.json), listed by
# `nox -l` as e.g. matrix(py3.12-sa2.1-pa1.5-pt9); select with -p 3.12, -k "sa2_1 and pa1_5" or -k floor (tags:
# each label and the tier) or -t matrix. Arguments after -- go to the scenario run (e.g. -- -k lazy).
# Data flows one way: axes.toml is read here, once; each cell's session gets its cell and this matrix.
from matrix import axes, axes_file, contract, progress  # noqa: E402  (needs ROOT on sys.path, set above)

AXES_FILE = Path(contract.text(contract.AXES, default=str(axes.DEFAULT_PATH)))
try:
    MATRIX: axes.Matrix | None = axes_file.load(AXES_FILE)
except axes_file.AxesError as error:
    MATRIX = None
    print(f"greenlight: {error}\ngreenlight: the matrix sessions are off until it is fixed", file=sys.stderr)
    AXES_ERROR = str(error)

# `nox -s matrix -- --fresh` (ignore previous results), `-- --smoke` (newest value of each axis only) and
# `-- --no-share` (every scenario runs in every cell, no reuse across cells: to compare) are matrix options, not
# pytest's: environment variables carry them to the cells and to `nox -j` workers.
_POSARGS = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
_NOX_ARGS = sys.argv[: sys.argv.index("--")] if "--" in sys.argv else sys.argv
for _flag, _variable in (("--fresh", contract.FRESH), ("--smoke", contract.SMOKE), ("--no-share", contract.NO_SHARE)):
    if _flag in _POSARGS:
        os.environ[_variable] = "1"

if MATRIX is not None:
    if contract.flag(contract.SMOKE):
        from matrix.run import smoke

        MATRIX = smoke(MATRIX)
    progress.install(MATRIX)
    # Tiers give each Python its own cells, so the Python is a parameter; the id is the cell id.
    CELL_PARAMS = [
        nox.param(c.python, c.sqlalchemy, c.pytest_asyncio, c.pytest, c.tier, id=c.id, tags=c.tags)
        for c in MATRIX.cells()
    ]

    # venv_backend="none": the cell makes its one uv environment itself (in nox's env dir), so a missing
    # interpreter is a result the runner records, not a line of nox's log.
    @nox.session(allow_parallel=True, tags=["matrix"], venv_backend="none")
    @nox.parametrize(("python", "sqlalchemy", "pytest_asyncio", "pytest", "tier"), CELL_PARAMS)
    def matrix(session: nox.Session, sqlalchemy: str, pytest_asyncio: str, pytest: str, tier: str) -> None:
        """One matrix cell: install it, run the scenarios per subject and database, write build/results/."""
        from matrix import run

        assert MATRIX is not None
        cell = axes.Cell(str(session.python), sqlalchemy, pytest_asyncio, pytest, tier)
        # The first cell of the run says what will not run, and why; the cells do not repeat it.
        announced = progress.cell_start(session, MATRIX)
        fail_on_missing = run.missing_interpreters_fail(_NOX_ARGS)
        outcome = run.run_session(session, cell, MATRIX, fail_on_missing=fail_on_missing, announced=announced)
        progress.cell_done(session, outcome)  # time left; a plugin regression in the support set fails the run
        if outcome.error:
            session.error(outcome.error)
        if outcome.skipped:
            session.skip(outcome.skipped)

else:

    @nox.session(venv_backend="none", tags=["matrix"])
    def matrix(session: nox.Session) -> None:
        """The matrix (matrix/axes.toml is invalid: this session only reports why)."""
        session.error(AXES_ERROR)


@nox.session(name="axes", venv_backend="none", default=False)
def refresh_axes(session: nox.Session) -> None:
    """Choose the matrix's exact versions from PyPI metadata and write matrix/axes.lock.json."""
    from matrix import refresh

    if refresh.main(session.posargs, log=session.log) != 0:
        session.error("matrix/axes.lock.json is out of date: run `nox -s axes`")


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Build the HTML compatibility report, badge and docs table from build/results/."""
    session.install("--group", "report")
    session.run("python", "-m", "reports", *session.posargs)


@nox.session(venv_backend="none", default=False)
def images(session: nox.Session) -> None:
    """Build the offline PostgreSQL, MariaDB and MySQL images from Debian packages (needs root and Docker)."""
    from matrix.images import ImageBuildError, build_all

    try:
        build_all(ROOT / "build" / "images", only=session.posargs or None, log=session.log)
    except ImageBuildError as exc:
        session.error(str(exc))


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Time cells cold (-j 1, -j auto) and warm, per-cell costs, uv vs pip, container starts, portal cost."""
    from matrix import bench as matrix_bench

    if matrix_bench.main(session.posargs) != 0:
        session.error("a benchmarked matrix run failed (its log is in build/bench/)")
