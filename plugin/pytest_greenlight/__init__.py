"""pytest-greenlight: run async SQLAlchemy tests inside a real greenlet portal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use, so that a missing greenlet surfaces as the plugin's own clear message (see compat.py)
# rather than as an ImportError while pytest loads the plugin.
_PUBLIC = {
    "GreenThreadLocal": "local",
    "ImplicitIOError": "implicit_io",
    "LoopEngines": "fixtures",
    "greenlight_engine": "fixtures",
    "in_portal": "portal",
    "install": "portal",
    "run_in_portal": "portal",
}

if TYPE_CHECKING:
    from .fixtures import LoopEngines, greenlight_engine
    from .implicit_io import ImplicitIOError
    from .local import GreenThreadLocal
    from .portal import in_portal, install, run_in_portal


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_greenlight' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


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
