"""Install a cell: its requirements, every driver and this checkout's plugin into the cell's environment.

Returns typed outcomes (:class:`Installed`); a resolver failure is a result (``install-failed``), and drivers that
alone break the resolution are dropped one by one (their databases become not-run with uv's message).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

from matrix import axes
from matrix.axes import Cell, Matrix, Subject
from matrix.interpreter import HOST, Interpreter
from matrix.paths import BUILD, ROOT

BASE_PLUGINS = ("pytest_asyncio.plugin", "anyio.pytest_plugin", "pytest_timeout")

_VERSIONS_SCRIPT = r"""
import importlib.metadata as m, json, platform, re
found = {"python": platform.python_version()}
for dist in m.distributions():
    name = dist.metadata["Name"]
    if name:
        found[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
try:
    import sqlite3
    sqlite = sqlite3.sqlite_version
except ImportError:
    sqlite = None
print(json.dumps({"versions": found, "sqlite": sqlite}))
"""


@dataclass
class Installed:
    ok: bool
    message: str = ""
    failed_drivers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _uv() -> list[str]:
    return HOST.uv()


def uv_install(
    python: Path, requirements: Sequence[str], *, constraints: Optional[Path] = None, via: Interpreter = HOST
) -> tuple[bool, str]:
    """``uv pip install`` into the cell's environment (``via``: where the cell's interpreter runs, the host or a
    runtime root); returns (ok, the resolver's/installer's message)."""
    command = [*via.uv(), "pip", "install", "--python", str(python), *requirements]
    if constraints is not None:
        command += ["--constraint", str(constraints)]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    done = via.run(command, env, capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def plugin_wheel(root: Path = ROOT, wheels: Path = BUILD / "wheels") -> Path:
    """This checkout's plugin as a wheel, built once per content of ``plugin/`` and ``pyproject.toml``.

    Every cell installed it editable before, which builds it with hatchling each time: 0.6-0.8 CPU-s and about
    1 s of the cell's install (measured, ``uv pip install -e .`` into a cell's environment). Cells side by side
    (``-j``) build it once between them (a file lock)."""
    from filelock import FileLock  # the noxfile's dependency: this runs in nox's process

    digest = hashlib.sha256((root / "pyproject.toml").read_bytes())
    for path in sorted((root / "plugin").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    place = wheels / digest.hexdigest()[:16]
    wheels.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{place}.lock"):
        if not place.is_dir():
            building = Path(tempfile.mkdtemp(prefix=".building-", dir=wheels))
            command = [*HOST.uv(), "build", "--wheel", "--quiet", "--out-dir", str(building), str(root)]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True)
                building.rename(place)
            finally:
                shutil.rmtree(building, ignore_errors=True)  # gone already when it became ``place``
    (wheel,) = place.glob("*.whl")
    return wheel


def install_cell(python: Path, matrix: Matrix, cell: Cell, root: Path = ROOT, *, via: Interpreter = HOST) -> Installed:
    """Install the cell; when the drivers break the resolution, keep the cell and drop only those drivers."""
    start = time.perf_counter()
    base = [*matrix.requirements(cell), str(plugin_wheel(root))]
    drivers = {driver: axes.DRIVERS[driver][1] for db in matrix.databases for driver in db.drivers}
    ok, _ = uv_install(python, [*base, *sorted(set(drivers.values()))], via=via)
    if ok:
        return Installed(True, seconds=time.perf_counter() - start)
    ok, base_message = uv_install(python, base, via=via)
    if not ok:
        return Installed(False, base_message, seconds=time.perf_counter() - start)
    # Add the drivers one at a time, always resolved together with the base and the drivers that went in.
    failed: dict[str, str] = {}
    kept: list[str] = []
    for driver, requirement in sorted(drivers.items()):
        driver_ok, driver_message = uv_install(python, [*base, *kept, requirement], via=via)
        if driver_ok:
            kept.append(requirement)
        else:
            failed[driver] = driver_message
    return Installed(True, failed_drivers=failed, seconds=time.perf_counter() - start)


def inspect_env(python: Path, via: Interpreter = HOST) -> tuple[dict[str, str], Optional[str]]:
    """Exact versions of every package in the environment (plus ``python``) and the SQLite library version."""
    done = via.run([str(python), "-c", _VERSIONS_SCRIPT], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    return dict(sorted(found["versions"].items())), found["sqlite"]


def subject_plugins(python: Path, subject: Subject) -> list[str]:
    """The modules named by the subject distribution's ``pytest11`` entry points (nothing for ``none``), read from
    the cell environment's metadata by this process (a process of the cell's interpreter cost 0.08 CPU-s)."""
    if subject.distribution is None:
        return []
    site = [str(path) for path in sorted((python.parent.parent / "lib").glob("python*/site-packages"))]
    found = next(iter(metadata.distributions(name=subject.distribution, path=site)), None)
    if found is None:
        raise metadata.PackageNotFoundError(f"{subject.distribution} is not installed in {python.parent.parent}")
    return sorted({ep.value.split(":")[0] for ep in found.entry_points if ep.group == "pytest11"})


def plugin_args(modules: Sequence[str]) -> list[str]:
    return [arg for module in (*BASE_PLUGINS, *modules) for arg in ("-p", module)]


# --- databases ----------------------------------------------------------------------------------------------
