"""A runner that sets up async fixtures for async tests only: a sync test gets the unawaited coroutine."""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    original = fixturedef.func
    if not (
        inspect.iscoroutinefunction(original)
        and request.scope == "function"
        and not inspect.iscoroutinefunction(request.function)
    ):
        return (yield)

    def unmarked(*args: Any, **kwargs: Any) -> Any:  # not a pytest_asyncio.fixture: pytest-asyncio leaves it alone
        return original(*args, **kwargs)

    fixturedef.func = unmarked
    try:
        return (yield)
    finally:
        fixturedef.func = original
