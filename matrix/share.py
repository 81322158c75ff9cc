"""Across cells: the keys under which a subject's scenario results are shared, handed to its scenario run.

A scenario declared without ``pytest_asyncio`` and ``pytest`` in its ``depends`` (``core.NOT_RUNNER``) gives the
same result in every cell that installed the same versions of everything else: so its result is stored once
(``build/shared/``, next to the results directory, so ``GREENLIGHT_BUILD`` moves it) and reused by every other
cell with the same key, recorded there with ``ran_in`` (:mod:`matrix.scenarios.share` claims, waits and reuses
inside the scenario run). The key is the cell cache's (:func:`matrix.cache.cache_key`, the one hasher) over:

* the EXACT installed versions of the cell's environment (every distribution, and the interpreter's exact version),
  minus the distributions of the runner axes the scenario does not depend on;
* the subject, the sources digest (scenarios, plugin, watch), the servers' identities and extra pytest arguments;
* the scenario id and the database/driver, as the result's place under the key.

Only subjects without a plugin of their own or with this repository's share (:func:`runner_agnostic`). With
``--fresh`` the key also names the run, so only this run's cells share with each other. ``--no-share`` (or
``GREENLIGHT_NO_SHARE=1``) turns sharing off, to compare.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from matrix import cache, contract
from matrix.axes import Matrix, Subject
from matrix.scenarios.share import key_dir

# The runner axes a scenario may leave out, and the distributions that carry them.
RUNNER_DISTRIBUTIONS = {"pytest_asyncio": "pytest-asyncio", "pytest": "pytest"}


def store_dir(results: Path) -> Path:
    return results.parent / "shared"


def enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    return not contract.flag(contract.NO_SHARE, environ)


def runner_agnostic(subject: Subject) -> bool:
    """Whether the subject adds nothing of its own between pytest-asyncio and a function-scoped test: no plugin
    (``none``), or this repository's, whose hookup on each pytest and pytest-asyncio version the scenarios that depend
    on them check in every cell. A comparison plugin from PyPI hooks pytest's fixtures and pytest-asyncio's loops in
    ways nobody here vouches for (pytest-green-light 0.2.0 fails every test's set-up under pytest 9 and
    pytest-asyncio 1.4, scenarios that pass under 8.4 included): its runs are never shared."""
    return subject.requirement is None or subject.is_local


def keys(
    versions: Mapping[str, str],
    subject: Subject,
    sources_digest: str,
    servers: Sequence[str],
    pytest_args: Sequence[str] = (),
    run_id: Optional[str] = None,
) -> dict[str, str]:
    """One key per non-empty set of runner axes left out ('pytest', 'pytest_asyncio' or both, comma-joined)."""
    found: dict[str, str] = {}
    axes = sorted(RUNNER_DISTRIBUTIONS)
    for size in range(1, len(axes) + 1):
        for left_out in itertools.combinations(axes, size):
            dropped = {RUNNER_DISTRIBUTIONS[a] for a in left_out}
            kept = {name: version for name, version in versions.items() if name not in dropped}
            scope = {"shared": ",".join(left_out), **({"run": run_id} if run_id else {})}
            found[",".join(left_out)] = cache.cache_key(kept, sources_digest, servers, subject, pytest_args, scope)
    return found


def config(
    matrix: Matrix,
    cell_id: str,
    subject: Subject,
    versions: Mapping[str, str],
    results: Path,
    pytest_args: Sequence[str] = (),
    run_id: str = "",
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[dict[str, Any]]:
    """``GREENLIGHT_SHARE`` for one subject's scenario run, or None when sharing is off."""
    if not enabled(environ) or not versions.get("python") or not runner_agnostic(subject):
        return None
    fresh = cache.fresh_requested(environ)
    digest = cache.source_digest()
    servers = cache.server_identities(matrix, environ)
    found = keys(versions, subject, digest, servers, pytest_args, run_id if fresh else None)
    # A claimer runs one scenario at a time (pytest-timeout stops it at the scenario timeout, the watchdog kills a
    # hang at twice that): past this, the waiting run runs the scenario itself rather than wait on.
    wait = 2.0 * matrix.run.scenario_timeout + 30.0
    return {"dir": str(store_dir(results)), "cell": cell_id, "keys": found, "wait": wait}


def forget(shared: Optional[Mapping[str, Any]], pairs: Iterable[tuple[str, str]]) -> int:
    """Remove what this cell stored for (database, driver) pairs whose server failed mid-run: those results are the
    fault's, and no other cell may reuse them. Returns how many were removed."""
    if not shared:
        return 0
    removed = 0
    targets = {f"{name}-{driver}.json" for name, driver in pairs}
    for key in shared["keys"].values():
        for path in key_dir(Path(shared["dir"]), key).glob("*/*.json"):
            if path.name not in targets:
                continue
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("ran_in") == shared["cell"]:
                    path.unlink()
                    removed += 1
            except (OSError, ValueError):
                continue
    return removed


def reused(result: Mapping[str, Any]) -> int:
    """How many of a results document's scenario entries are another cell's run."""
    return sum(1 for s in result.get("scenarios") or [] if s.get("ran_in"))
