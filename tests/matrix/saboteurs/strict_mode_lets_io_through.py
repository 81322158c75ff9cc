"""Strict mode that never refuses: implicit IO is served even under @pytest.mark.greenlight(strict=True)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_greenlight import implicit_io

_record = implicit_io.Recorder.__call__


def _record_without_refusing(self: implicit_io.Recorder, step_greenlet: Any) -> Any:
    self.strict = False  # the plugin sets it again from the marker before each test
    return _record(self, step_greenlet)


def pytest_configure(config: pytest.Config) -> None:
    implicit_io.Recorder.__call__ = _record_without_refusing
