"""The one place that knows how SQLAlchemy, greenlet and pytest-asyncio differ between versions.

What the portal needs from SQLAlchemy is small and has been stable since 1.4: ``await_only``/``await_`` switch to
``getcurrent().parent`` when the current greenlet carries ``__sqlalchemy_greenlet_provider__ = True``. SQLAlchemy's
own ``_AsyncIoGreenlet`` class sets that flag and copies the driver's contextvars context; where it lives moved
(1.4/2.0: ``sqlalchemy.util._concurrency_py3k``; 2.1: a late-import shim in ``sqlalchemy.util.concurrency``).
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any, Callable

from packaging.version import InvalidVersion, Version

MIN_SQLALCHEMY = Version("1.4.24")
MIN_PYTEST_ASYNCIO = Version("0.21")

NO_GREENLET = (
    "pytest-greenlight needs the 'greenlet' package, which SQLAlchemy installs only with its asyncio extra.\n"
    "Install it with:  pip install 'sqlalchemy[asyncio]'   (or:  pip install greenlet)"
)


class UnsupportedEnvironment(Exception):
    """An installed package is missing or too old; the message names what to install."""


def installed_version(distribution: str) -> Version | None:
    try:
        return Version(metadata.version(distribution))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return None


def _greenlet_class_from_sqlalchemy() -> type[Any]:
    """SQLAlchemy's own greenlet class: nested ``greenlet_spawn`` and ``await_only`` recognise it."""
    try:  # SQLAlchemy 2.1+
        from sqlalchemy.util.concurrency import _concurrency_shim  # type: ignore[attr-defined,unused-ignore]

        cls: type[Any] = _concurrency_shim._AsyncIoGreenlet
        return cls
    except (ImportError, AttributeError):
        pass
    from sqlalchemy.util import _concurrency_py3k  # type: ignore[attr-defined,unused-ignore]  # SQLAlchemy 1.4 / 2.0

    cls = _concurrency_py3k._AsyncIoGreenlet
    return cls


def load_greenlet_class() -> type[Any]:
    """Return the greenlet subclass the portal runs coroutine steps in, or raise UnsupportedEnvironment."""
    try:
        import greenlet
    except ImportError as exc:
        raise UnsupportedEnvironment(NO_GREENLET) from exc
    sqlalchemy = installed_version("sqlalchemy")
    if sqlalchemy is None:
        raise UnsupportedEnvironment("pytest-greenlight needs SQLAlchemy:  pip install 'sqlalchemy[asyncio]>=1.4.24'")
    if sqlalchemy < MIN_SQLALCHEMY:
        raise UnsupportedEnvironment(
            f"pytest-greenlight needs SQLAlchemy >= {MIN_SQLALCHEMY} (asyncio support); found {sqlalchemy}.\n"
            "Upgrade with:  pip install -U 'sqlalchemy[asyncio]'"
        )
    try:
        return _greenlet_class_from_sqlalchemy()
    except (ImportError, AttributeError):
        # A future SQLAlchemy moved its class again. The provider flag is the contract await_only checks.
        from greenlet import getcurrent, greenlet

        class _ProviderGreenlet(greenlet):  # type: ignore[misc,unused-ignore]
            __sqlalchemy_greenlet_provider__ = True

            def __init__(self, fn: Callable[..., Any], driver: Any) -> None:
                greenlet.__init__(self, fn, driver)
                self.gr_context = driver.gr_context

        del getcurrent
        return _ProviderGreenlet


def check_pytest_asyncio() -> str | None:
    """Return a message when the installed pytest-asyncio is older than we support (None when fine or absent)."""
    found = installed_version("pytest-asyncio")
    if found is not None and found < MIN_PYTEST_ASYNCIO:
        return (
            f"pytest-greenlight supports pytest-asyncio >= {MIN_PYTEST_ASYNCIO}; found {found}.\n"
            "Upgrade with:  pip install -U pytest-asyncio"
        )
    return None


def missing_greenlet_error() -> type[BaseException]:
    from sqlalchemy import exc

    return exc.MissingGreenlet


def describe_versions() -> str:
    parts = []
    for dist in ("sqlalchemy", "greenlet", "pytest-asyncio", "anyio"):
        found = installed_version(dist)
        if found is not None:
            parts.append(f"{dist} {found}")
    return ", ".join(parts)


HAS_TASK_CONTEXT = sys.version_info >= (3, 11)
# Session(join_transaction_mode=...) arrived in SQLAlchemy 2.0.
HAS_JOIN_TRANSACTION_MODE = (installed_version("sqlalchemy") or Version("0")) >= Version("2.0")
