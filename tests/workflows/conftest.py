"""Fixtures for the workflow tests: broken copies of .github/ that prove each check can fail."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.workflows.tools import GITHUB


@pytest.fixture
def broken_copy(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """Copy .github/ to a temporary repository root, replacing ``old`` by ``new`` once in one workflow."""

    def make(workflow: str, old: str, new: str) -> Path:
        shutil.copytree(GITHUB, tmp_path / ".github")
        path = tmp_path / ".github" / "workflows" / workflow
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} no longer appears in {workflow}: update this test's mutation"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return tmp_path

    return make
