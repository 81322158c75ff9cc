"""asyncio_default_fixture_loop_scope=module with tests on their own loops: the fixture's session closes its
connection from a loop the connection does not belong to."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    getini = config.getini

    def module_loop_for_fixtures(name: str) -> Any:
        return "module" if name == "asyncio_default_fixture_loop_scope" else getini(name)

    config.getini = module_loop_for_fixtures
