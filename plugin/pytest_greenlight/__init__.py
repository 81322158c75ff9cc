"""pytest-greenlight: run async SQLAlchemy tests inside a real greenlet portal."""

from __future__ import annotations

__version__ = "0.1.0"

from .fixtures import LoopEngines, greenlight_engine
from .implicit_io import ImplicitIOError
from .local import GreenThreadLocal
from .portal import in_portal, install, run_in_portal

__all__ = [
    "GreenThreadLocal",
    "ImplicitIOError",
    "LoopEngines",
    "__version__",
    "greenlight_engine",
    "in_portal",
    "install",
    "run_in_portal",
]
