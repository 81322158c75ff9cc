"""matrix/interpreter.py: a cell's Python from PATH, else from the runtime root, and commands started with it.

Real parts: a real executable on a real PATH, a real (marker-only) root cache directory, the real enter script's
command line. The run of a real 3.15 cell through a built root is in test_runtime.py (it needs root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from matrix import interpreter, runtime
from matrix.interpreter import HOST, Interpreter

ROOT = Path(__file__).resolve().parents[2]
BASE = getattr(sys, "_base_executable", None) or sys.executable  # the interpreter below this test's venv


def cached_root(cache: Path) -> Path:
    """A root cache directory that build_root takes for a built one (its marker carries the recipe's key)."""
    key = runtime.PYTHONS.key(runtime.debian.mirror())
    target = cache / f"pythons-{key}"
    target.mkdir(parents=True)
    (target / ".greenlight-runtime").write_text(json.dumps({"key": key}))
    return target


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holding only a directory of our own: no python3.X there unless a test puts one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_a_python_on_path_wins_over_the_runtime_root(tmp_path: Path, empty_path: Path) -> None:
    fake = empty_path / "python3.15"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    cached_root(tmp_path / "cache")  # a built root is there, and still not used
    found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
    assert found == Interpreter("3.15", str(fake))
    assert isinstance(found, Interpreter)
    assert found.source == f"PATH {fake}"
    assert interpreter.available("3.15", tmp_path / "nothing-built")


def test_a_launcher_script_on_path_gives_way_to_the_interpreter_it_starts(tmp_path: Path, empty_path: Path) -> None:
    """pyenv's shims are such scripts: uv would run the shim (a dozen processes) each time it asks the interpreter."""
    launcher = empty_path / "python3.15"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
    assert found == Interpreter("3.15", BASE)  # the launcher starts this test's venv, whose base it gives
    # A launcher that does not answer is used as it is.
    launcher.write_text("#!/bin/sh\nexit 3\n")
    assert interpreter.behind_launcher(str(launcher)) == str(launcher)


def test_a_run_asks_a_launcher_once_for_all_its_cells(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm run re-uses its cells without starting anything: asking pyenv's shim per cell cost it a third more."""
    asked = tmp_path / "asked"
    launcher = empty_path / "python3.15"
    launcher.write_text(f'#!/bin/sh\necho once >> "{asked}"\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setattr(interpreter, "BUILD", tmp_path / "build")
    monkeypatch.setenv("GREENLIGHT_RUN_ID", "run-1")
    for _ in range(3):
        found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
        assert found == Interpreter("3.15", BASE)
    assert asked.read_text().split() == ["once"]
    monkeypatch.setenv("GREENLIGHT_RUN_ID", "run-2")  # the next run asks again: pyenv may point elsewhere by then
    interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
    assert asked.read_text().split() == ["once", "once"]


def test_a_virtual_environments_interpreter_on_path_gives_way_to_its_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nox puts its own script environment's bin first on PATH: a cell of that Python must not say it ran there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "bin" / "python3.15").symlink_to("python")
    monkeypatch.setenv("PATH", str(venv / "bin"))
    found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
    assert isinstance(found, Interpreter)
    # The base's own path, not the link on PATH nor the environment's (whose link leads to the same file).
    assert Path(found.executable).parent == Path(BASE).parent


def test_without_one_on_path_the_cell_gets_the_runtime_roots(tmp_path: Path, empty_path: Path) -> None:
    target = cached_root(tmp_path / "cache")
    found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=lambda line: None)
    assert isinstance(found, Interpreter)
    assert (found.root, found.executable) == (target, "/usr/bin/python3.15")
    assert found.source == "runtime root debian-sid python3.15"
    assert found.binds[0] == str(ROOT)
    # The root sees the repository, and the cell's environment and build/ where they are not inside it or /tmp.
    outside = Path("/srv/envs/matrix-py3-15")
    assert interpreter.binds_for(outside, ROOT / "build", tmp_path / "build") == (str(ROOT), str(outside))
    assert interpreter.available("3.15", tmp_path / "cache")


def test_without_either_the_reason_says_why_the_root_is_not_there(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: the root cannot be built
    found = interpreter.find("3.15", env_dir=tmp_path / "env", cache_dir=tmp_path / "cache", log=pytest.fail)
    assert isinstance(found, str)
    assert found.startswith(
        "Python interpreter 3.15 not found on PATH, and its runtime root is not available: "
        "runtime root pythons: building it needs root"
    )
    assert not interpreter.available("3.15", tmp_path / "cache")
    # A Python no root carries: the reason is what it always was.
    assert (
        interpreter.find("3.99", env_dir=tmp_path, log=pytest.fail)
        == "Python interpreter 3.99 not found on this machine"
    )
    assert not interpreter.available("3.99")


def test_commands_run_as_they_are_on_the_host_and_through_the_prefix_in_a_root(tmp_path: Path) -> None:
    argv, env = HOST.command(["python", "-V"], {"PATH": "/x", "HOME": "/home/me"})
    assert (argv, env) == (["python", "-V"], {"PATH": "/x", "HOME": "/home/me"})

    venv_bin = tmp_path / "env" / "bin"
    root = Interpreter("3.15", "/usr/bin/python3.15", tmp_path / "root", interpreter.binds_for(tmp_path / "env"))
    url = "postgresql+asyncpg://u:s3cret@127.0.0.1:5432/test"
    host_env = {
        "PATH": f"{venv_bin}:/root/.pyenv/shims:/usr/bin",
        "HOME": "/home/me",
        "PYENV_VERSION": "3.11.7",
        "LD_PRELOAD": "/lib/x.so",
        "GREENLIGHT_DATABASES": json.dumps([{"url": url}]),
        "VIRTUAL_ENV": str(venv_bin.parent),
        "PYTHONPATH": str(ROOT),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    argv, env = root.command(["python", "-m", "pytest"], host_env)
    separator = argv.index("--", 5)
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[separator + 1 :] == ["--inherit-env", "python", "-m", "pytest"]
    assert not [item for item in argv if "s3cret" in item]  # the URL's password stays off the command line
    assert env["GREENLIGHT_DATABASES"] == host_env["GREENLIGHT_DATABASES"]
    assert env["PATH"] == f"{venv_bin}:{runtime.BASE_ENV['PATH']}"  # the venv's bin, then the root's own
    assert env["HOME"] == "/root"
    assert "PYENV_VERSION" not in env
    assert "LD_PRELOAD" not in env
    assert env["UV_CACHE_DIR"] == str(interpreter.UV_CACHE)
    assert (env["VIRTUAL_ENV"], env["PYTHONPATH"]) == (host_env["VIRTUAL_ENV"], str(ROOT))
    assert root.uv() == ["uv"]
