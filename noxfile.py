# /// script
# requires-python = ">=3.9"
# dependencies = ["nox>=2025.10", "testcontainers>=4.8", "filelock>=3.12", "tomli>=2; python_version<'3.11'"]
# ///
"""Sessions only: each one is a thin call into matrix/ or reports/ (see README "How it fits together")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

nox.needs_version = ">=2025.10"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint"]
# uv cannot download interpreters on our machines; nox must use the ones that exist.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

# The oldest and the newest supported stacks; `tests` runs the suite on both.
STACKS = {
    "oldest": ["sqlalchemy[asyncio]==1.4.*", "pytest-asyncio==0.21.*", "pytest==7.4.*", "anyio==4.0.*"],
    "newest": ["sqlalchemy[asyncio]==2.1.*", "pytest-asyncio==1.*", "pytest==9.*", "anyio>=4"],
}


@nox.session
@nox.parametrize("stack", list(STACKS))
def tests(session: nox.Session, stack: str) -> None:
    """Run the project's own tests on the oldest and the newest supported stack."""
    session.install("--group", "tests", "-e", ".", *STACKS[stack])
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff and types with mypy (strict on the plugin)."""
    session.install("--group", "lint", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
