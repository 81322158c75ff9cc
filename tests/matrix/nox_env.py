"""The environment for a nested `nox` run started by a test."""

from __future__ import annotations

import os


def clean_environ() -> dict[str, str]:
    """This process's environment without what the outer run would lend the nested `nox`.

    The outer nox (running these tests) must not lend its invocation, run id or database URLs. ``CI`` goes too:
    nox turns on ``--error-on-missing-interpreters`` when it is set, and the tests choose that flag explicitly.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GREENLIGHT_", "NOX_", "PYTEST_")) and k not in ("VIRTUAL_ENV", "CI")
    }
