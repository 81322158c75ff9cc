"""matrix/bytecode.py with a real interpreter: bytecode one environment compiled is what another one loads.

Two "environments" hold the same file as hard links (as uv installs them from its cache); each imports it with a
bytecode cache prefix, as the matrix's processes do.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from matrix import bytecode

SOURCE = "def where():\n    return where.__code__.co_filename\n"


def import_module(environment: Path, cache: Path, *, write: bool) -> str:
    """Import ``mod`` from ``environment`` in a fresh interpreter (verbose); returns its stderr and stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-v", "-c", "import mod; print('where', mod.where())"],
        cwd=environment,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr + done.stdout


def environments(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "env1", tmp_path / "env2"
    first.mkdir()
    second.mkdir()
    (first / "mod.py").write_text(SOURCE, encoding="utf-8")
    os.link(first / "mod.py", second / "mod.py")  # one inode, two places: what uv's hard links give
    return first, second


def test_an_environment_loads_what_another_compiled_and_reports_its_own_file(tmp_path: Path) -> None:
    first, second = environments(tmp_path)
    cache, store = tmp_path / "cache", tmp_path / "store"
    tag = bytecode.cache_tag(platform.python_version())
    import_module(first, cache, write=True)
    assert bytecode.harvest(first, cache, store) == 1
    assert bytecode.seed(second, cache, tag, store) == 1
    output = import_module(second, cache, write=False)
    linked = cache / second.resolve().relative_to("/") / f"mod.{tag}.pyc"
    assert f"code object from '{linked}'" in output, output  # loaded, not compiled again
    assert f"where {second.resolve() / 'mod.py'}" in output  # tracebacks name this environment's file


def test_a_copy_is_not_seeded(tmp_path: Path) -> None:
    """Only the same inode is the same file: a copy (another release, say) compiles its own."""
    first, _ = environments(tmp_path)
    copy = tmp_path / "env3"
    copy.mkdir()
    (copy / "mod.py").write_text(SOURCE, encoding="utf-8")
    cache, store = tmp_path / "cache", tmp_path / "store"
    import_module(first, cache, write=True)
    assert bytecode.harvest(first, cache, store) == 1
    assert bytecode.seed(copy, cache, bytecode.cache_tag(platform.python_version()), store) == 0


def test_bytecode_older_than_its_source_is_not_kept(tmp_path: Path) -> None:
    first, _ = environments(tmp_path)
    cache, store = tmp_path / "cache", tmp_path / "store"
    import_module(first, cache, write=True)
    stat = (first / "mod.py").stat()
    os.utime(first / "mod.py", (stat.st_atime, stat.st_mtime + 10))  # the source changed after it was compiled
    assert bytecode.harvest(first, cache, store) == 0
