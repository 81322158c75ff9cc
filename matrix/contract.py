"""The one definition of the ``GREENLIGHT_*`` environment contract between the matrix's stages.

Every variable a stage hands to another (noxfile -> cell -> scenario run -> nested run) is named here once, with
a typed reader; modules import the name and the reader instead of spelling the literal. Standard library only: the
scenario suite imports this module inside each cell's environment.

Who sets what:

=========================  ==================================  ===================================================
variable                   set by                              read by
=========================  ==================================  ===================================================
``GREENLIGHT_INVOCATION``  noxfile (top-level nox process)     provisioner (containers tied to it), progress
``GREENLIGHT_RUN_ID``      noxfile                             every results file (``run_id``)
``GREENLIGHT_FRESH``       noxfile (``-- --fresh``)            cache
``GREENLIGHT_SMOKE``       noxfile (``-- --smoke``)            noxfile (the cells it lists), ``nox -j`` workers
``GREENLIGHT_NO_SHARE``    noxfile (``-- --no-share``), user   cell runner (no reuse across cells: for comparison)
``GREENLIGHT_AXES``        the user                            noxfile (read once; cells get their plan)
``GREENLIGHT_BUILD``       the user                            paths
``GREENLIGHT_*_URL``       the user                            provisioner (never reaches the scenario run)
``GREENLIGHT_CELL``        cell runner                         scenario suite (the subject and the cell's axes)
``GREENLIGHT_DATABASES``   cell runner                         scenario suite (targets, with URLs)
``GREENLIGHT_PLUGIN_ARGS`` cell runner                         nested runs (the same ``-p`` plugins)
``GREENLIGHT_SCENARIO_OUT`` cell runner                        recorder (one JSON line per result)
``GREENLIGHT_SHARE``       cell runner                         recorder (share store: dir, cell, keys, wait)
``GREENLIGHT_WATCH_OUT``   watchdog                            ``matrix.watch`` (start/end lines)
``GREENLIGHT_WATCH_PLAN``  watchdog                            ``matrix.watch`` (what to skip, what hung)
``GREENLIGHT_NESTED_DBS``  nested runner                       the inner conftest
``GREENLIGHT_PROBE_OUT``   nested runner                       ``matrix.scenarios.probe``
``GREENLIGHT_FORKSERVER``  cell runner                         nested runner (the cell's fork server's socket)
=========================  ==================================  ===================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Optional

INVOCATION = "GREENLIGHT_INVOCATION"
RUN_ID = "GREENLIGHT_RUN_ID"
FRESH = "GREENLIGHT_FRESH"
SMOKE = "GREENLIGHT_SMOKE"
NO_SHARE = "GREENLIGHT_NO_SHARE"
AXES = "GREENLIGHT_AXES"
BUILD = "GREENLIGHT_BUILD"
POSTGRES_URL = "GREENLIGHT_POSTGRES_URL"
MYSQL_URL = "GREENLIGHT_MYSQL_URL"
IMAGE_PREFIX = "GREENLIGHT_IMAGE_"
CELL = "GREENLIGHT_CELL"
DATABASES = "GREENLIGHT_DATABASES"
PLUGIN_ARGS = "GREENLIGHT_PLUGIN_ARGS"
SCENARIO_OUT = "GREENLIGHT_SCENARIO_OUT"
SHARE = "GREENLIGHT_SHARE"
WATCH_OUT = "GREENLIGHT_WATCH_OUT"
WATCH_PLAN = "GREENLIGHT_WATCH_PLAN"
NESTED_DBS = "GREENLIGHT_NESTED_DBS"
PROBE_OUT = "GREENLIGHT_PROBE_OUT"
FORKSERVER = "GREENLIGHT_FORKSERVER"

# Server URLs reach the scenario run only through GREENLIGHT_DATABASES; these must not leak into it.
SCRUBBED = (POSTGRES_URL, MYSQL_URL, "PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def _env(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def flag(name: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """A yes/no variable: set and not ``0`` means yes."""
    return _env(environ).get(name, "") not in ("", "0")


def text(name: str, environ: Optional[Mapping[str, str]] = None, default: str = "") -> str:
    return _env(environ).get(name) or default


def json_value(name: str, environ: Optional[Mapping[str, str]] = None, default: Any = None) -> Any:
    """A JSON-valued variable (``default`` when unset or empty)."""
    raw = _env(environ).get(name)
    return json.loads(raw) if raw else default


def cell(environ: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """``GREENLIGHT_CELL``: the cell's axes and the subject of this scenario run."""
    return dict(json_value(CELL, environ, {}))


def databases(environ: Optional[Mapping[str, str]] = None) -> Optional[list[dict[str, str]]]:
    """``GREENLIGHT_DATABASES``: the (name, kind, driver, url) of every target, or None when unset."""
    found = json_value(DATABASES, environ)
    return None if found is None else [dict(d) for d in found]


def plugin_args(environ: Optional[Mapping[str, str]] = None) -> Optional[list[str]]:
    found = json_value(PLUGIN_ARGS, environ)
    return None if found is None else [str(a) for a in found]


def share(environ: Optional[Mapping[str, str]] = None) -> Optional[dict[str, Any]]:
    """``GREENLIGHT_SHARE``: where results shared across cells live and this run's keys (None: not shared)."""
    found = json_value(SHARE, environ)
    return None if not found else dict(found)


def watch_plan(environ: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    return dict(json_value(WATCH_PLAN, environ, {}))


def scenario_env(
    base: Mapping[str, str],
    *,
    cell: Mapping[str, Any],
    databases: list[dict[str, str]],
    plugin_args: list[str],
    scenario_out: str,
    share: Optional[Mapping[str, Any]] = None,
) -> dict[str, str]:
    """The environment of one scenario run: ``base`` without the scrubbed variables, plus the contract."""
    env = {k: v for k, v in base.items() if k not in SCRUBBED}
    env[CELL] = json.dumps(dict(cell))
    env[DATABASES] = json.dumps(databases)
    env[PLUGIN_ARGS] = json.dumps(plugin_args)
    env[SCENARIO_OUT] = scenario_out
    if share:
        env[SHARE] = json.dumps(dict(share))
    else:
        env.pop(SHARE, None)
    return env
