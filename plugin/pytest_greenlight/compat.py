"""The one place that knows how SQLAlchemy, greenlet and asyncio differ between versions, and every private name
the portal reaches for.

What the portal needs from SQLAlchemy: ``await_only``/``await_`` must hand the awaitable to the portal's greenlet.
SQLAlchemy has had two contracts for that (see ``PortalGreenlet``); the portal answers both and ``check_contract``
proves at start-up that the installed version's ``await_only`` reaches it, so no version number decides.
What it needs from asyncio (``asyncio_internals``): the Python ``_run_once`` of asyncio's own loops and the
current-task slot (``_enter_task``/``_leave_task``); a loop without them is served by the per-step portal instead.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any, cast

from packaging.version import InvalidVersion, Version

MIN_SQLALCHEMY = Version("1.4.24")
MIN_PYTEST_ASYNCIO = Version("0.21")

NO_GREENLET = (
    "pytest-greenlight needs the 'greenlet' package, which SQLAlchemy installs only with its asyncio extra.\n"
    "Install it with:  pip install 'sqlalchemy[asyncio]'   (or:  pip install greenlet)"
)


class UnsupportedEnvironment(Exception):
    """An installed package is missing or too old; the message names what to install."""


def greenlet_base() -> type[Any]:
    try:
        from greenlet import greenlet
    except ImportError:  # the portal module is imported lazily; hooks.py turns this into a usage error first
        return object
    return greenlet  # type: ignore[no-any-return]


_REAL_PARENT: Any = getattr(greenlet_base(), "parent", None)  # greenlet's own attribute, under the property


def real_parent(glet: Any) -> Any:
    """``glet``'s parent greenlet, read through greenlet's own attribute (PortalGreenlet overrides ``parent``)."""
    return _REAL_PARENT.__get__(glet) if _REAL_PARENT is not None else None


def installed_version(distribution: str) -> Version | None:
    try:
        return Version(metadata.version(distribution))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return None


def sqlalchemy_greenlet_class() -> type[Any]:
    """SQLAlchemy's own greenlet class (``_AsyncIoGreenlet``), or raise UnsupportedEnvironment."""
    if _sqlalchemy_class:
        return _sqlalchemy_class[0]
    cls = _find_sqlalchemy_greenlet_class()
    _sqlalchemy_class.append(cls)
    return cls


_sqlalchemy_class: list[type[Any]] = []


def _find_sqlalchemy_greenlet_class() -> type[Any]:
    try:
        import greenlet  # noqa: F401
    except ImportError as exc:
        raise UnsupportedEnvironment(NO_GREENLET) from exc
    sqlalchemy = installed_version("sqlalchemy")
    if sqlalchemy is None:
        raise UnsupportedEnvironment(
            f"pytest-greenlight needs SQLAlchemy:  pip install 'sqlalchemy[asyncio]>={MIN_SQLALCHEMY}'"
        )
    if sqlalchemy < MIN_SQLALCHEMY:
        raise UnsupportedEnvironment(
            f"pytest-greenlight needs SQLAlchemy >= {MIN_SQLALCHEMY} (asyncio support); found {sqlalchemy}.\n"
            "Upgrade with:  pip install -U 'sqlalchemy[asyncio]'"
        )
    try:  # SQLAlchemy 2.1+
        from sqlalchemy.util.concurrency import _concurrency_shim  # type: ignore[attr-defined,unused-ignore]

        cls: type[Any] = _concurrency_shim._AsyncIoGreenlet
        return cls
    except (ImportError, AttributeError):
        pass
    try:  # SQLAlchemy 1.4 / 2.0
        from sqlalchemy.util import _concurrency_py3k  # type: ignore[attr-defined,unused-ignore]

        cls = _concurrency_py3k._AsyncIoGreenlet
        return cls
    except (ImportError, AttributeError) as exc:
        raise UnsupportedEnvironment(CONTRACT_BROKEN.format(sqlalchemy=sqlalchemy, detail=exc)) from exc


CONTRACT_BROKEN = """\
pytest-greenlight cannot serve implicit IO with SQLAlchemy {sqlalchemy}: its await_only() did not hand the awaitable
to the portal's greenlet ({detail}). Please report this with your SQLAlchemy version; meanwhile run with
-p no:greenlight, or install a SQLAlchemy the compatibility matrix lists as working."""


class PortalGreenlet(greenlet_base()):  # type: ignore[misc]
    """The base of every greenlet the portal runs user code in; it answers SQLAlchemy's greenlet contract.

    SQLAlchemy's ``await_only`` has had two contracts, and this class answers both, so no version number decides:

    * 1.4.53+, 2.0.31+, 2.1: the current greenlet must have ``__sqlalchemy_greenlet_provider__`` true, and the
      awaitable goes to ``current.parent.switch()``;
    * earlier releases: the current greenlet must be an instance of ``_AsyncIoGreenlet`` (``isinstance``, which
      consults ``__class__``), and the awaitable goes to ``current.driver.switch()``.

    Subclasses say when they serve (``greenlight_serving``) and what receives the awaitable (``greenlight_exit``).
    ``check_contract`` proves at start-up that the installed SQLAlchemy's ``await_only`` reaches it.
    """

    def __init__(self, run: Callable[..., Any], parent: Any) -> None:
        super().__init__(run, parent)
        self.gr_context = parent.gr_context  # as SQLAlchemy's own class does: a new greenlet's context is empty

    def greenlight_serving(self) -> bool:
        return True

    def greenlight_exit(self) -> Any:
        return _REAL_PARENT.__get__(self)

    @property
    def __sqlalchemy_greenlet_provider__(self) -> bool:
        return self.greenlight_serving()

    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        return sqlalchemy_greenlet_class() if self.greenlight_serving() else type(self)

    @property
    def parent(self) -> Any:  # type: ignore[override,unused-ignore]
        return self.greenlight_exit()

    @parent.setter
    def parent(self, value: Any) -> None:
        _REAL_PARENT.__set__(self, value)

    @property
    def driver(self) -> Any:
        return self.greenlight_exit()

    @driver.setter
    def driver(self, value: Any) -> None:
        pass  # SQLAlchemy before 1.4.53/2.0.31 sets it in _AsyncIoGreenlet.__init__; the property answers instead

    @driver.deleter
    def driver(self) -> None:
        pass


def check_contract() -> None:
    """Prove that SQLAlchemy's ``await_only`` hands an awaitable to a PortalGreenlet; raise UnsupportedEnvironment."""
    if _contract_checked:
        return
    from greenlet import GreenletExit, getcurrent

    try:
        from sqlalchemy.util import await_ as await_only  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # SQLAlchemy < 2.1
        from sqlalchemy.util import await_only

    sentinel = object()  # not a coroutine: await_only has nothing to close if it refuses
    probe = PortalGreenlet(lambda: await_only(cast(Any, sentinel)), getcurrent())
    try:
        received = probe.switch()
    except Exception as exc:  # MissingGreenlet: this SQLAlchemy did not recognise the greenlet
        raise UnsupportedEnvironment(
            CONTRACT_BROKEN.format(sqlalchemy=installed_version("sqlalchemy"), detail=exc)
        ) from exc
    if received is not sentinel:
        raise UnsupportedEnvironment(
            CONTRACT_BROKEN.format(sqlalchemy=installed_version("sqlalchemy"), detail=f"it switched with {received!r}")
        )
    probe.throw(GreenletExit)
    _contract_checked.append(True)


_contract_checked: list[bool] = []


def check_pytest_asyncio() -> str | None:
    """Return a message when the installed pytest-asyncio is older than we support (None when fine or absent)."""
    found = installed_version("pytest-asyncio")
    if found is not None and found < MIN_PYTEST_ASYNCIO:
        return (
            f"pytest-greenlight supports pytest-asyncio >= {MIN_PYTEST_ASYNCIO}; found {found}.\n"
            "Upgrade with:  pip install -U pytest-asyncio"
        )
    return None


def describe_versions() -> str:
    parts = []
    for dist in ("sqlalchemy", "greenlet", "pytest-asyncio", "anyio"):
        found = installed_version(dist)
        if found is not None:
            parts.append(f"{dist} {found}")
    return ", ".join(parts)


# Session(join_transaction_mode=...) arrived in SQLAlchemy 2.0.
HAS_JOIN_TRANSACTION_MODE = (installed_version("sqlalchemy") or Version("0")) >= Version("2.0")


# -- asyncio internals the loop-level portal relies on (loop_portal.py); any missing one means the per-step portal --

# BaseEventLoop._run_once runs ``for i in range(ntodo): handle = self._ready.popleft()``: a parked stack resumes
# inside that loop, so the portal reads both locals to top the ready queue up (loop_portal.top_up_ready_queue).
RUN_ONCE_LOCALS = ("ntodo", "i")


def loop_portal_unsupported(loop: Any) -> str | None:
    """Why ``loop`` cannot be driven by the loop-level portal (None when it can): checked when a loop is attached."""
    import asyncio

    run_once = getattr(loop, "_run_once", None)
    code = getattr(getattr(run_once, "__func__", None), "__code__", None)
    if code is None:
        return f"{type(loop).__qualname__} has no Python _run_once (a compiled loop such as uvloop)"
    if not set(RUN_ONCE_LOCALS) <= set(code.co_varnames):
        return f"{type(loop).__qualname__}._run_once does not have the locals {RUN_ONCE_LOCALS} the portal resumes"
    if not hasattr(loop, "__dict__"):
        return f"{type(loop).__qualname__} has no instance dict to hold the portal"
    for name in ("_ready", "_stopping"):  # the ready queue a resumed iteration pops, the flag run_forever checks
        if not hasattr(loop, name):
            return f"{type(loop).__qualname__} has no {name}"
    for name in ("_enter_task", "_leave_task"):
        if not callable(getattr(asyncio.tasks, name, None)):
            return f"asyncio.tasks.{name} is missing (the current-task slot a parked task leaves)"
    return None


def enter_task(loop: Any, task: Any) -> None:
    import asyncio

    asyncio.tasks._enter_task(loop, task)  # type: ignore[attr-defined,unused-ignore]


def leave_task(loop: Any, task: Any) -> None:
    import asyncio

    asyncio.tasks._leave_task(loop, task)  # type: ignore[attr-defined,unused-ignore]


def current_task_class() -> type[Any]:
    """The class ``loop.create_task`` instantiates now: ``asyncio.tasks.Task``, looked up at call time as asyncio
    does, because tools replace it (the asyncio.Runner backport for Python < 3.11 does, to run a task in a given
    contextvars context)."""
    import asyncio

    return asyncio.tasks.Task  # type: ignore[no-any-return,unused-ignore]


HAS_CANCELLING = hasattr(__import__("asyncio").Task, "cancelling")  # Task.cancelling()/uncancel(): Python 3.11+
