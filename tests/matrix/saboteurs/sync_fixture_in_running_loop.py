"""Sync fixtures of async tests set up from inside a running event loop, where asyncio.run refuses to start."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from typing import Any

import pytest


def _plain_function(function: Any) -> bool:
    return inspect.isfunction(function) and not (
        inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function)
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    original = fixturedef.func
    if not (
        _plain_function(original) and request.scope == "function" and inspect.iscoroutinefunction(request.function)
    ):
        return (yield)

    def inside_a_running_loop(*args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return original(*args, **kwargs)

        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(call())
        finally:
            loop.close()

    fixturedef.func = inside_a_running_loop
    try:
        return (yield)
    finally:
        fixturedef.func = original
