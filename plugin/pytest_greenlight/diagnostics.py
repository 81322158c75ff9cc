"""Explanations added to failures whose cause is async plumbing, not the code under test.

Each message is a module constant so tests can check that the right one is attached (``explain`` picks it).
"""

from __future__ import annotations

import inspect
import os
import re
from types import TracebackType
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .implicit_io import Site

PRODUCTION_FIXES = """\
How to fix it in the code (production has no portal):
  * load what you need up front: select(User).options(selectinload(User.addresses))
  * await attributes explicitly: class Base(AsyncAttrs, DeclarativeBase), then `await user.awaitable_attrs.addresses`
  * keep attributes after commit: async_sessionmaker(engine, expire_on_commit=False)
  * run sync helpers that do IO through the session: `await session.run_sync(helper)`"""

STRICT_REFUSAL = (
    """\
greenlight strict mode: implicit IO at {location} ({trigger}).
This line raises MissingGreenlet outside the tests, where no greenlet portal serves it.
"""
    + PRODUCTION_FIXES
)

MISSING_GREENLET_PORTAL_OFF = (
    """\
MissingGreenlet means sync code tried database IO (a lazy load, the refresh of an attribute expired by commit(), or
a helper calling await_only) outside SQLAlchemy's greenlet. The greenlight portal was OFF for this test
(@pytest.mark.greenlight(enabled=False) or -p no:greenlight), so nothing served it.
"""
    + PRODUCTION_FIXES
)

SWALLOWED_REFUSAL = (
    """\
greenlight strict mode refused implicit IO at {location} ({trigger}), and the code under test caught the
MissingGreenlet it raised there. The test fails anyway: in production that line fails the same way.
"""
    + PRODUCTION_FIXES
)

MISSING_GREENLET_OUTSIDE_PORTAL = (
    """\
MissingGreenlet was raised even though the greenlight portal was on: the IO happened outside the event loop's
tasks, e.g. in a thread (run_in_executor, to_thread), in a sync test or sync fixture, or in a __del__/GC callback.
Do that IO in async code (await the async API), or pass the work through `await session.run_sync(fn)`.
"""
    + PRODUCTION_FIXES
)

MISSING_GREENLET_LOOP_WITHOUT_PORTAL = (
    """\
MissingGreenlet was raised in async code running in a task that the greenlight portal does not serve: its event
loop has no portal. The plugin gives one to every asyncio loop that creates a task during a test; a loop of another
class (uvloop), a task created before the loop got it, or a loop whose task factory was replaced afterwards
(loop.set_task_factory) is not served.
Give the loop the portal where you make it (a loop factory, asyncio.Runner(loop_factory=...)):
    loop = uvloop.new_event_loop(); pytest_greenlight.install(loop)
"""
    + PRODUCTION_FIXES
)

DIFFERENT_LOOP = """\
An asyncio object (an engine's pooled connection, a lock, a future) was created on one event loop and used on
another. Usual cause: an engine or session fixture with a wider scope than the event loop its tests run on — e.g. a
session-scoped engine with function-scoped loops.
Fix: give the fixture and its tests the same loop scope (pytest-asyncio >= 0.24: loop_scope="session" on both), or
use pytest_greenlight.greenlight_engine(url), which keeps one engine per event loop and disposes each on its own
loop."""

LOOP_CLOSED = """\
"Event loop is closed": a connection or engine outlived the event loop it was created on, and its cleanup ran after
that loop closed (often at garbage collection or in a wider-scoped fixture's teardown).
Fix: `await engine.dispose()` in the same fixture that created the engine, on the same loop; or use
pytest_greenlight.greenlight_engine(url), which disposes each loop's engine just before that loop closes."""

CONCURRENT_OPERATION = """\
"another operation is in progress": two tasks used ONE connection at the same time — typically asyncio.gather() over
one AsyncSession or AsyncConnection. An AsyncSession is not safe for concurrent use.
Fix: give each concurrent task its own session: `async with async_sessionmaker(engine)() as session:` inside the
task, or run the statements one after another."""

CONCURRENT_USE_NAMED = """\
Two tasks used ONE AsyncSession at the same time (SQLAlchemy's message names neither):
  {first} began {first_what} on it at {first_where}, and was still inside it;
  {second} started another operation on it at {second_where}, which failed:
    {error}
An AsyncSession (its transaction and its connection) serves one task at a time: asyncio.gather() over one session
is the usual cause.
Fix: give each concurrent task its own session (`async with async_sessionmaker(engine)() as session:` inside the
task), or await the operations one after another."""

EVENT_LOOP_REMOVED = """\
pytest-asyncio 1.0 removed the `event_loop` fixture. The migration, in two lines:
    loop = asyncio.get_running_loop()            # in the async test or fixture, instead of an event_loop argument
    @pytest.mark.asyncio(loop_scope="session")   # instead of an event_loop fixture overridden with a wider scope
(its async fixtures likewise: @pytest_asyncio.fixture(scope="session", loop_scope="session"))."""

LOOP_SCOPE_MISMATCH = """\
A {scope}-scoped async fixture was set up with function-scoped event loops: its loop would close after the first
test, taking the fixture's connections with it. The migration, in two lines (pytest-asyncio >= 0.24):
    @pytest_asyncio.fixture(scope="{scope}", loop_scope="{scope}")   # the fixture runs on a {scope}-wide loop
    @pytest.mark.asyncio(loop_scope="{scope}")                       # and so do the tests that use it
(pytest-asyncio 0.21-0.23: override the event_loop fixture with scope="{scope}"). Or keep a loop per test and make
the engine with pytest_greenlight.greenlight_engine(url, scope="{scope}"), which gives each loop its own engine."""

# pytest's ScopeMismatch for pytest-asyncio's loop fixture (0.21-0.23: event_loop; 1.x: its function-scoped runner).
_SCOPE_MISMATCH = re.compile(
    r"ScopeMismatch: You tried to access the function scoped fixture (?:event_loop|_function_scoped_runner) "
    r"with a (\w+) scoped request object"
)

# (substring of "<qualified exception type>: <message>", explanation); first match wins.
_PATTERNS = (
    ("attached to a different loop", DIFFERENT_LOOP),
    ("different event loop", DIFFERENT_LOOP),
    ("Event loop is closed", LOOP_CLOSED),
    ("another operation is in progress", CONCURRENT_OPERATION),
    (
        "This session is provisioning a new connection; concurrent operations are not permitted",
        CONCURRENT_OPERATION,
    ),
    (
        "/isce)",
        CONCURRENT_OPERATION,
    ),  # SQLAlchemy's error code for an illegal state change (concurrent session use)
)


def _format_site(template: str, site: Optional[Site]) -> str:
    if site is None:
        return template.format(location="(unknown location)", trigger="await_only() in sync code")
    return template.format(location=site.location(), trigger=site.trigger)


def strict_refusal(site: Optional[Site]) -> str:
    return _format_site(STRICT_REFUSAL, site)


def swallowed_refusal(site: Optional[Site]) -> str:
    return _format_site(SWALLOWED_REFUSAL, site)


# A thread's or a finalizer's frames start in one of these: the IO there ran outside any task.
_THREAD_ENTRY_FILES = ("threading.py", "thread.py")


def raised_in_task(chain: list[BaseException]) -> bool:
    """Whether the last exception of ``chain`` was raised by sync code called from a coroutine in the same thread.

    An exception's traceback holds only the frames it unwound before it was caught (SQLAlchemy wraps MissingGreenlet
    in a StatementError), so the stack is the tracebacks of the chain from the outermost exception in. Walked from
    the innermost frame outwards: a coroutine frame means a task was running the code; the entry of a worker thread
    (concurrent.futures, threading) before it means the IO ran in that thread.
    """
    frames = []
    for error in chain:
        tb: Optional[TracebackType] = error.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
    for frame in reversed(frames):
        if os.path.basename(frame.f_code.co_filename) in _THREAD_ENTRY_FILES:
            return False
        if frame.f_code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE):
            return True
    return False


def exception_chain(error: Optional[BaseException]) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def explain(failure: BaseException, *, portal_enabled: bool) -> Optional[str]:
    """Return the explanation for the first exception in the failure's chain we recognise, or None."""
    from sqlalchemy.exc import MissingGreenlet

    from .implicit_io import ImplicitIOError

    chain = exception_chain(failure)
    for index, error in enumerate(chain):
        if isinstance(error, ImplicitIOError):
            return None  # already explains itself
        if isinstance(error, MissingGreenlet):
            if not portal_enabled:
                return MISSING_GREENLET_PORTAL_OFF
            return (
                MISSING_GREENLET_LOOP_WITHOUT_PORTAL
                if raised_in_task(chain[: index + 1])
                else MISSING_GREENLET_OUTSIDE_PORTAL
            )
        if type(error).__name__ == "FixtureLookupError" and getattr(error, "argname", None) == "event_loop":
            return EVENT_LOOP_REMOVED
        text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
        mismatch = _SCOPE_MISMATCH.search(text)
        if mismatch is not None:
            return LOOP_SCOPE_MISMATCH.format(scope=mismatch.group(1))
        for needle, message in _PATTERNS:
            if needle in text:
                return message
    return None


# -- the strict-mode ratchet (baseline.py) --

BASELINE_HELP = (
    "strict mode with a ratchet: implicit-IO sites listed in FILE are served and reported as known, new ones fail"
)
BASELINE_UPDATE_HELP = "rewrite the --greenlight-baseline file with the implicit-IO sites this run served"

BASELINE_MISSING = """\
greenlight: the baseline file {path} does not exist. Write it from a run of the whole suite:
    pytest --greenlight-baseline {path} --greenlight-baseline-update"""

BASELINE_UNREADABLE = """\
greenlight: cannot read the baseline file {path} ({error}).
Write it again from a run of the whole suite:  pytest --greenlight-baseline-update"""

BASELINE_UPDATE_WITHOUT_FILE = (
    "--greenlight-baseline-update needs the file to write: --greenlight-baseline FILE, or greenlight_baseline = FILE "
    "in the ini file"
)

BASELINE_WRITTEN = "greenlight: wrote {count} site(s) to the baseline {path} ({added} added, {removed} removed)"

BASELINE_KNOWN = "{count} known site(s) from the baseline {path} were served; new ones fail as in strict mode."

BASELINE_GONE = "{count} site(s) in the baseline {path} no longer occur (fixed, or not reached by the tests that ran):"
BASELINE_SHRINK = "Shrink the file after a run of the whole suite:  pytest --greenlight-baseline-update"

BASELINE_NEW = """\
Sites not in the baseline failed where they happened. Fix them (see the README's 'Strict mode'), or accept them
into the baseline:  pytest --greenlight-baseline-update"""


# -- engines and loops (engines.py) --

DISPOSE_ENGINES_HELP = (
    "dispose every engine still holding connections on the loop they were opened on, just before that loop closes"
)

DIFFERENT_LOOP_NAMED = """\
An engine's pooled connection was used on another event loop than the one it was opened on:
  opened on {opened_loop}, {opened};
  used on   {used_loop}, {used}; this test's loop scope is "{test_scope}".
A connection (and the engine's pool holding it) belongs to the loop that opened it.
Fix: run the fixture and the tests that use it on one loop: @pytest_asyncio.fixture(scope="{scope}",
loop_scope="{scope}") and @pytest.mark.asyncio(loop_scope="{scope}") on the tests (pytest-asyncio >= 0.24); or make
the engine with pytest_greenlight.greenlight_engine(url, scope="{scope}"), which gives each loop its own engine and
disposes each on its loop."""

UNDISPOSED_TITLE = "greenlight: {count} engine(s) not disposed before their event loop closed"
UNDISPOSED_LINE = "  {url}: first connected on {loop}, {origin}"
UNDISPOSED_FIX = """\
Their connections belonged to a loop that is gone: closing them later fails with "Event loop is closed" or leaves
"coroutine ... was never awaited" warnings. Fix: `await engine.dispose()` where the engine is made (the end of its
fixture, on the same loop), use pytest_greenlight.greenlight_engine(url), or set greenlight_dispose_engines = true."""
UNDISPOSED_DISPOSED = "greenlight_dispose_engines = true disposed them on their loop before it closed."


def different_loop(opened_loop: str, opened: str, used_loop: str, used: str, test_scope: str, scope: str) -> str:
    return DIFFERENT_LOOP_NAMED.format(
        opened_loop=opened_loop, opened=opened, used_loop=used_loop, used=used, test_scope=test_scope, scope=scope
    )


def concurrent_use(first: str, first_what: str, first_where: str, second: str, second_where: str, error: str) -> str:
    return CONCURRENT_USE_NAMED.format(
        first=first,
        first_what=first_what,
        first_where=first_where,
        second=second,
        second_where=second_where,
        error=error,
    )
