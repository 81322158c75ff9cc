"""Where the workflow tools are and how to run them: actionlint, shellcheck, zizmor, nox, .github/scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
GROUP_HINT = "it comes with the 'workflows' dependency group (part of 'tests'): uv pip install --group tests"


def find_tool(name: str) -> str:
    """A console script of this environment (even when its bin/ is not on PATH), else one on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"`{name}` not found; {GROUP_HINT}")
    return found


def nox_command() -> list[str]:
    if importlib.util.find_spec("nox") is not None:
        return [sys.executable, "-m", "nox"]
    return [find_tool("nox")]


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # No token reaches the tools: zizmor would otherwise try online audits with it.
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    # nox lists sessions with the packages of this environment instead of building its script-mode
    # environment from the noxfile's PEP 723 block (`nox -s tests` sets this for its children anyway).
    env["NOX_SCRIPT_MODE"] = "none"
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def actionlint(root: Path) -> list[dict[str, Any]]:
    """actionlint's errors for every workflow in ``root/.github/workflows`` (shellcheck on, pyflakes off)."""
    files = [str(p.relative_to(root)) for p in sorted((root / ".github" / "workflows").glob("*.yml"))]
    assert files, f"no workflows under {root}"
    result = run(
        [
            find_tool("actionlint"),
            "-no-color",
            "-format",
            "{{json .}}",
            "-shellcheck",
            find_tool("shellcheck"),
            "-pyflakes=",
            *files,
        ],
        cwd=root,
    )
    # Exit 1 means "found problems"; anything else non-zero is the tool failing, which must not read as clean.
    assert result.returncode in (0, 1), f"actionlint failed to run ({result.returncode}): {result.stderr}"
    errors: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return errors


def zizmor(root: Path) -> list[dict[str, Any]]:
    """zizmor's findings for ``root/.github`` at the strictest persona, without network access."""
    result = run(
        [
            find_tool("zizmor"),
            "--offline",
            "--persona",
            "auditor",
            "--format",
            "json",
            "--no-progress",
            ".github",
        ],
        cwd=root,
    )
    # 0 = clean, 10-14 = findings by severity; 1/2 = zizmor itself failed (bad input, crash).
    assert result.returncode == 0 or 10 <= result.returncode <= 14, (
        f"zizmor failed to run ({result.returncode}): {result.stderr[-2000:]}"
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def load_script(name: str) -> ModuleType:
    """Import ``.github/scripts/<name>.py`` (not a package: the workflows run it as a plain file)."""
    path = GITHUB / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_gh_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
