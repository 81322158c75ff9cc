"""What strict mode leaves behind when it refuses implicit IO: nothing (no "coroutine ... was never awaited")."""

from __future__ import annotations

import inspect
from typing import Any

from .conftest import Runner

# A fresh interpreter: the warning comes from the garbage collector, at the latest when the process exits.
FRESH: dict[str, Any] = {"subprocess": True} if "subprocess" in inspect.signature(Runner.run).parameters else {}

LAZY_LOAD = """
import gc
import pytest
from sqlalchemy import select
from models import User

@pytest.mark.asyncio
async def test_lazy_load(session):
    user = (await session.execute(select(User))).scalar_one()
    assert user.addresses  # strict mode refuses this lazy load

def test_after_it():
    gc.collect()  # the refused awaitable, if left open, warns here
"""


def test_a_refused_awaitable_leaves_no_never_awaited_warning(runner: Runner) -> None:
    # With aiosqlite under SQLAlchemy 2.1 the awaitable is ``cursor.__aenter__()``, which awaits the
    # ``Connection.cursor`` coroutine aiosqlite's wrapper holds: closing only the outer coroutine left that one.
    result = runner.run(LAZY_LOAD, "--greenlight-strict", "-p", "no:randomly", "-W", "error::RuntimeWarning", **FRESH)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*greenlight strict mode: implicit IO at *test_inner.py:9 (lazy load of *"])
    output = result.stdout.str() + result.stderr.str()
    assert "was never awaited" not in output
