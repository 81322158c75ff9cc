"""A cell's interpreter: where it comes from, and how every process of the cell is started with it.

A ``python3.X`` on PATH wins (pyenv here, setup-python on GitHub Actions). Otherwise, for the Pythons Debian
carries and this host lacks (3.14, 3.15), the cell runs in the runtime root of :mod:`matrix.runtime`: then every
process started with the cell's interpreter (``uv venv``, ``uv pip``, the version probes, the scenario runs and
what they start in turn) goes through :meth:`Interpreter.command`, which prefixes the root's command line. The root
shares the host's network namespace (only ``unshare --mount``): loopback servers and containers' published ports
answer inside it at the same addresses.

Standard library only: the noxfile imports it (through :mod:`matrix.progress`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from matrix import contract, debian, runtime, selection
from matrix.paths import BUILD, ROOT

# Host variables that mean the same inside a root (by prefix); the rest name host paths (PATH, HOME, PYENV_*) or
# host libraries (LD_*) and would mislead the root's processes.
_KEPT_PREFIXES = ("GREENLIGHT_", "PYTEST", "PYTHON", "COVERAGE_", "SQLALCHEMY", "UV_")
_KEPT = ("VIRTUAL_ENV",)
# The cells' uv cache when they run in a root: in the repository (bound), so uv hardlinks from it into the cells'
# environments (also in the repository) instead of copying; a cache outside would be another mount, and links
# cannot cross mounts.
UV_CACHE = runtime.CACHE_DIR / "uv-cache"
# What the enter script binds besides the given directories (matrix/enter_root.sh): seen inside at the same path.
ALWAYS_BOUND = ("/tmp",)


@dataclass(frozen=True)
class Interpreter:
    """The cell's base interpreter. ``root`` None: the host's, found on PATH; else the runtime root it lives in."""

    version: str  # the axis value, e.g. "3.15"
    executable: str  # its path where it runs: "/usr/bin/python3.12" on the host, "/usr/bin/python3.15" in a root
    root: Optional[Path] = None
    binds: tuple[str, ...] = ()  # host directories the root's processes see at their own paths

    @property
    def source(self) -> str:
        """Where it came from, as results record it: ``PATH /usr/bin/python3.12`` or ``runtime root debian-sid
        python3.15``."""
        if self.root is None:
            return f"PATH {self.executable}"
        return f"runtime root debian-{runtime.PYTHONS.suite} {Path(self.executable).name}"

    @property
    def identity(self) -> str:
        """What a resolution made for this interpreter depends on (the cache memoizes by it)."""
        if self.root is None:
            return str(self.executable)
        return f"{self.root.name}:{self.executable}"  # the root's directory name carries its recipe's key

    def uv(self) -> list[str]:
        """How to call uv: the host's, or the one the root gets bound at /usr/local/bin/uv."""
        if self.root is None:
            found = shutil.which("uv")
            return [found] if found else [sys.executable, "-m", "uv"]
        return ["uv"]

    def command(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> tuple[list[str], dict[str, str]]:
        """``argv`` and the environment to start it with (``env``: the host-side environment, default this
        process's). On the host both are unchanged; for a root, the argv gets the root's prefix and the
        environment is translated (:func:`root_environment`) and handed over as the process's own, not on the
        command line (it holds database URLs)."""
        env = dict(os.environ if env is None else env)
        if self.root is None:
            return list(argv), env
        prefix = runtime.command_prefix(self.root, cwd=ROOT, binds=[Path(b) for b in self.binds], inherit_env=True)
        return [*prefix, *argv], root_environment(env, self.binds)

    def run(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None, **kwargs: Any) -> Any:
        """``subprocess.run`` of ``argv`` with this interpreter's :meth:`command` (keyword arguments passed on)."""
        command, environment = self.command(argv, env)
        return subprocess.run(command, env=environment, **kwargs)


def root_environment(env: Mapping[str, str], binds: Sequence[str] = ()) -> dict[str, str]:
    """``env`` as a root's process gets it: the variables that keep their meaning there, PATH reduced to its
    entries inside ``binds`` (the cell environment's bin) followed by the root's own, and the cells' uv cache."""
    kept = {k: v for k, v in env.items() if k.startswith(_KEPT_PREFIXES) or k in _KEPT}
    seen = [*binds, *ALWAYS_BOUND]
    inside = [p for p in env.get("PATH", "").split(os.pathsep) if p and any(_within(p, b) for b in seen)]
    kept["PATH"] = os.pathsep.join([*inside, runtime.BASE_ENV["PATH"]])
    kept["UV_CACHE_DIR"] = str(UV_CACHE)
    kept["UV_PYTHON_DOWNLOADS"] = "never"
    return runtime.root_env(kept)


def _within(path: Union[str, Path], directory: Union[str, Path]) -> bool:
    return Path(path).resolve().is_relative_to(Path(directory).resolve())


def binds_for(*paths: Path) -> tuple[str, ...]:
    """The repository plus each of ``paths`` not already inside it or inside /tmp (bound by the enter script)."""
    binds: list[str] = [str(ROOT.resolve())]
    for path in paths:
        resolved = Path(path).resolve()
        if not any(_within(resolved, b) for b in [*binds, *ALWAYS_BOUND]):
            binds.append(str(resolved))
    return tuple(binds)


def runtime_versions() -> tuple[str, ...]:
    """The Pythons a runtime root can provide ("3.14", "3.15")."""
    return tuple(name.removeprefix("python") for name in runtime.PYTHONS.interpreters)


def find(
    version: str,
    *,
    env_dir: Path,
    log: Callable[[str], None] = print,
    cache_dir: Path = runtime.CACHE_DIR,
) -> Union[Interpreter, str]:
    """The cell's interpreter, or why there is none (the ``interpreter-missing`` reason).

    PATH first; then the runtime root (built on first use: about 3 minutes, once; needs root and debootstrap).
    ``env_dir``: the cell's environment, bound into the root with the repository and ``build/``.
    """
    found = shutil.which(f"python{version}")
    if found is not None:
        return Interpreter(version, behind_launcher(found))
    if version not in runtime_versions():
        return f"Python interpreter {version} not found on this machine"
    try:
        root = runtime.build_root(cache_dir, log=log)
    except runtime.RuntimeRootError as exc:
        return f"Python interpreter {version} not found on PATH, and its runtime root is not available: {exc}"
    return Interpreter(version, runtime.interpreter(version), root, binds_for(env_dir, BUILD))


def behind_launcher(path: str) -> str:
    """The interpreter that ``path`` stands for, asked once per run (the answer is kept in build/progress for the
    run's other cells and ``nox -j`` workers). A launcher script (pyenv's and asdf's shims) execs another: uv
    queries and starts the cell's interpreter several times, and through pyenv's shim each time is a dozen short
    processes (about 0.2 CPU-s a cell). A virtual environment's interpreter (nox's own script environment is first
    on PATH for the Python nox runs on) has a base interpreter: results then say what ran, not the environment nox
    happened to be in."""
    try:
        key = f"{path}:{os.stat(path).st_mtime_ns}"  # a launcher rewritten during the run is asked again
    except OSError:
        return path
    memo = _launcher_memo()
    known = _read_memo(memo)
    if key in known:
        return known[key]
    real = _ask_base(path)
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        temp = memo.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({**_read_memo(memo), key: real}), encoding="utf-8")
        os.replace(temp, memo)  # two workers writing at once may drop one answer: that one is asked again
    return real


def _ask_base(path: str) -> str:
    try:
        probe = [path, "-c", "import sys; print(getattr(sys, '_base_executable', None) or sys.executable)"]
        real = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return path  # as it is: uv runs it the same way, only slower
    return real if real and os.access(real, os.X_OK) else path


def _launcher_memo() -> Optional[Path]:
    run = contract.text(contract.RUN_ID)
    return selection.interpreters_path(run, BUILD / "progress") if run else None


def _read_memo(memo: Optional[Path]) -> dict[str, str]:
    try:
        found = json.loads(memo.read_text(encoding="utf-8")) if memo is not None else {}
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def available(version: str, cache_dir: Path = runtime.CACHE_DIR) -> bool:
    """Whether a cell of Python ``version`` can get an interpreter here, without building anything: on PATH, or
    in a runtime root that is built or can be (root, and debootstrap or apt-get to install it)."""
    if shutil.which(f"python{version}"):
        return True
    if version not in runtime_versions():
        return False
    return runtime.is_built(cache_dir) or (
        os.geteuid() == 0 and bool(debian.debootstrap_path() or shutil.which("apt-get"))
    )


# Processes started on the host as they are: the default wherever a function takes the interpreter to start with.
HOST = Interpreter(f"{sys.version_info.major}.{sys.version_info.minor}", sys.executable)
