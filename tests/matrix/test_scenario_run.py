"""The environment a subject's scenario suite runs in (matrix/scenario_run.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from matrix import paths, scenario_run


def test_bytecode_is_cached_under_build_even_where_the_machine_forbids_writing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This kind of machine sets PYTHONDONTWRITEBYTECODE=1: without the cache, every subject run, fork server and
    nested run compiled pytest, SQLAlchemy and the drivers from source again (a quarter of a run's CPU)."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    python = Path(sys.executable)
    env = scenario_run.pytest_env(python, {"id": "c", "subject": "none"}, [], [], tmp_path / "out")
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == str(paths.PYCACHE)

    # What the setting does in a real interpreter: a module imported once is compiled into the prefix, not beside
    # its source (the checkout stays clean).
    prefix = tmp_path / "pycache"
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    module = tmp_path / "src" / "some_module.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n", encoding="utf-8")
    command = [sys.executable, "-c", "import some_module"]
    subprocess.run(command, cwd=module.parent, env=env, check=True)
    cached = list(prefix.rglob("some_module.*.pyc"))
    assert [path.relative_to(prefix).parent for path in cached] == [module.parent.relative_to("/")]
    assert not (module.parent / "__pycache__").exists()


def test_a_prefix_the_user_chose_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "mine"))
    env = scenario_run.pytest_env(Path(sys.executable), {"id": "c"}, [], [], tmp_path / "out")
    assert env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "mine")
