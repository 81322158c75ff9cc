"""pytest wiring only: options, marker, hooks and the terminal summary. The work is in portal.py."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Optional

import pytest

from . import __version__, compat, diagnostics, verified

if TYPE_CHECKING:
    from .baseline import Baseline
    from .concurrent_use import ConcurrentUse
    from .connection_use import ConnectionUse
    from .engines import EngineTracker
    from .implicit_io import Recorder

STRICT_HELP = "fail tests at each place where the portal served implicit IO (it raises MissingGreenlet in production)"
MARKER_HELP = (
    "greenlight(enabled=True, strict=None): turn the greenlight portal off for a test (enabled=False), "
    "or make its implicit IO fail (strict=True) / allowed (strict=False)"
)

_recorder_key: pytest.StashKey[Recorder] = pytest.StashKey()
_undo_key: pytest.StashKey[Callable[[], None]] = pytest.StashKey()
_baseline_key: pytest.StashKey[Optional[Baseline]] = pytest.StashKey()
_written_key: pytest.StashKey[str] = pytest.StashKey()
_engines_key: pytest.StashKey[EngineTracker] = pytest.StashKey()
_concurrent_key: pytest.StashKey[ConcurrentUse] = pytest.StashKey()
_connections_key: pytest.StashKey[ConnectionUse] = pytest.StashKey()
WORKER_OUTPUT = "greenlight_sites"  # a pytest-xdist worker's sites, in config.workeroutput


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("greenlight", "greenlight: run async SQLAlchemy tests inside a greenlet portal")
    group.addoption("--greenlight-strict", action="store_true", default=None, help=STRICT_HELP)
    parser.addini("greenlight_strict", type="bool", default=False, help=STRICT_HELP)
    group.addoption("--greenlight-baseline", metavar="FILE", default=None, help=diagnostics.BASELINE_HELP)
    parser.addini("greenlight_baseline", default="", help=diagnostics.BASELINE_HELP + " (relative to the ini file)")
    group.addoption(
        "--greenlight-baseline-update", action="store_true", default=False, help=diagnostics.BASELINE_UPDATE_HELP
    )
    parser.addini("greenlight_dispose_engines", type="bool", default=False, help=diagnostics.DISPOSE_ENGINES_HELP)
    group.addoption("--greenlight-compat", action="store_true", default=False, help=verified.COMPAT_HELP)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> Optional[int]:
    # Like --fixtures: answer and exit before the session (and before pytest_configure's checks, which a user asking
    # "does my combination work?" may be about to fail).
    if not config.getoption("--greenlight-compat"):
        return None
    status, lines = verified.compat_report()
    print("\n".join(lines))
    return status


def _strict_default(config: pytest.Config) -> bool:
    option = config.getoption("--greenlight-strict")
    if option is not None:
        return bool(option)
    baseline = config.stash.get(_baseline_key, None)
    if baseline is not None:  # the ratchet is strict mode for every site it does not know; updating serves them all
        return not config.getoption("--greenlight-baseline-update")
    return bool(config.getini("greenlight_strict"))


def _load_baseline(config: pytest.Config) -> Optional[Baseline]:
    from pathlib import Path

    from .baseline import Baseline

    update = bool(config.getoption("--greenlight-baseline-update"))
    option = config.getoption("--greenlight-baseline")
    ini = str(config.getini("greenlight_baseline") or "")
    if option:
        path = Path(config.invocation_params.dir, option)
    elif ini:
        path = Path(config.inipath.parent if config.inipath else config.rootpath, ini)
    elif update:
        raise pytest.UsageError(diagnostics.BASELINE_UPDATE_WITHOUT_FILE)
    else:
        return None
    return Baseline.load(path, str(config.rootpath), missing_ok=update)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        compat.sqlalchemy_greenlet_class()
        compat.check_contract()
    except compat.UnsupportedEnvironment as error:
        raise pytest.UsageError(str(error)) from None
    problem = compat.check_pytest_asyncio()
    if problem is not None:
        raise pytest.UsageError(problem)
    from . import portal
    from .baseline import BaselineError
    from .implicit_io import Recorder

    try:
        baseline = config.stash[_baseline_key] = _load_baseline(config)
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None
    recorder = Recorder(strict=_strict_default(config))
    if baseline is not None and not config.getoption("--greenlight-baseline-update"):
        recorder.allow = baseline.known
    config.stash[_recorder_key] = recorder
    portal.settings.on_implicit_io = recorder
    from .engines import EngineTracker

    tracker = config.stash[_engines_key] = EngineTracker(
        dispose=bool(config.getini("greenlight_dispose_engines")), rootdir=str(config.rootpath)
    )
    tracker.install()
    from .concurrent_use import ConcurrentUse
    from .connection_use import ConnectionUse

    concurrent = config.stash[_concurrent_key] = ConcurrentUse(rootdir=str(config.rootpath))
    concurrent.install()
    connections = config.stash[_connections_key] = ConnectionUse(rootdir=str(config.rootpath))
    connections.install()
    # Every loop that creates a task while a test runs gets the portal, however it was made (the event-loop policy,
    # pytest-asyncio's loop factories, anyio's backend options, asyncio.Runner in the test).
    config.stash[_undo_key] = portal.serve_new_loops()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _recorder_key not in config.stash:
        return  # configure refused to start (clear usage error): nothing to undo
    from . import portal

    config.stash[_undo_key]()
    config.stash[_engines_key].uninstall()
    config.stash[_concurrent_key].uninstall()
    config.stash[_connections_key].uninstall()
    portal.settings.on_implicit_io = None
    portal.settings.enabled = True


def pytest_report_header(config: pytest.Config) -> list[str]:
    mode = "strict (implicit IO fails)" if _strict_default(config) else "report (implicit IO is listed at the end)"
    baseline = config.stash.get(_baseline_key, None)
    if baseline is not None and config.getoption("--greenlight-baseline-update"):
        mode = f"baseline update (implicit IO is served and written to {baseline})"
    elif baseline is not None and _strict_default(config):
        mode = f"strict with the baseline {baseline} ({len(baseline.keys)} known site(s) are served)"
    return [f"greenlight {__version__}: portal on, mode {mode}; {compat.describe_versions()}", verified.header()]


def _marker_options(item: pytest.Item) -> tuple[bool, bool | None]:
    marker = item.get_closest_marker("greenlight")
    if marker is None:
        return True, None
    unknown = set(marker.kwargs) - {"enabled", "strict"}
    if marker.args or unknown:
        raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.greenlight(enabled=..., strict=...)")
    strict = marker.kwargs.get("strict")
    return bool(marker.kwargs.get("enabled", True)), None if strict is None else bool(strict)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    # Fixture setup, the call and teardown all happen inside this protocol, so the switches cover all three.
    from . import portal

    recorder = item.config.stash[_recorder_key]
    tracker = item.config.stash[_engines_key]
    enabled, strict = _marker_options(item)
    portal.settings.enabled = enabled
    recorder.current_test = tracker.current_test = item.nodeid
    recorder.strict = _strict_default(item.config) if strict is None else strict
    try:
        yield
    finally:
        portal.settings.enabled = True
        recorder.current_test = tracker.current_test = None
        recorder.strict = _strict_default(item.config)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, None, None]:
    # The engine tracker names the fixture being set up when an engine opens a connection.
    fixtures = request.config.stash[_engines_key].fixtures
    fixtures.append((fixturedef.argname, str(fixturedef.scope)))
    try:
        yield
    finally:
        fixtures.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    refused_in = item.config.stash[_recorder_key].refused_in
    if outcome.excinfo is None and item.nodeid in refused_in:
        # Strict mode refused implicit IO and the code under test swallowed the exception: the test still fails,
        # with the same exception, raised from the call as any failure is.
        from .implicit_io import swallowed_refusal

        error = swallowed_refusal(refused_in[item.nodeid])
        if hasattr(outcome, "force_exception"):  # pluggy >= 1.1
            outcome.force_exception(error)
        else:
            raise error


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and call.excinfo is not None:
        from . import portal

        explanation = diagnostics.explain(call.excinfo.value, portal_enabled=portal.settings.enabled)
        if explanation is None or explanation is diagnostics.DIFFERENT_LOOP:
            # A connection checked out on another loop than it was opened on is the cause even when the error's
            # text does not say so (SQLAlchemy 2.1.0 reports the failed rollback that follows it instead).
            explanation = _name_the_loops(item) or explanation
        # Two tasks on one session, or on one connection without a session: name them (SQLAlchemy's message names
        # neither).
        explanation = (
            item.config.stash[_concurrent_key].explain(call.excinfo.value)
            or item.config.stash[_connections_key].explain(call.excinfo.value)
            or explanation
        )
        if explanation is not None:
            report.sections.append(("greenlight: why this failed", explanation))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    recorder = config.stash.get(_recorder_key, None)
    if recorder is None:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller merges the sites (pytest_testnodedown)
        workeroutput[WORKER_OUTPUT] = recorder.to_records()
        return
    baseline = config.stash[_baseline_key]
    if baseline is not None and config.getoption("--greenlight-baseline-update"):
        added, removed = baseline.update(recorder.served)
        config.stash[_written_key] = diagnostics.BASELINE_WRITTEN.format(
            count=len(baseline.keys), path=baseline, added=added, removed=removed
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist (controller): a worker finished; one merged result holds every worker's sites once."""
    recorder = node.config.stash.get(_recorder_key, None)
    records = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if recorder is not None and records:
        recorder.merge_records(records)


def _name_the_loops(item: pytest.Item) -> Optional[str]:
    crossing = item.config.stash[_engines_key].crossings.get(item.nodeid)
    if crossing is None:
        return None
    scope = crossing.opened.fixture[1] if crossing.opened.fixture else "session"
    return diagnostics.different_loop(
        crossing.opened.loop,
        crossing.opened.describe(),
        crossing.used.loop,
        crossing.used.describe(),
        _test_loop_scope(item),
        scope,
    )


def _test_loop_scope(item: pytest.Item) -> str:
    """The loop scope pytest-asyncio gives the test: its marker's, else the ini default, else function."""
    marker = item.get_closest_marker("asyncio")
    scope = (marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")) if marker is not None else None
    if not scope:
        try:
            scope = item.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio before 0.26 has no such key
            scope = None
    return str(scope or "function")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    recorder = config.stash.get(_recorder_key, None)
    if recorder is None:
        return
    baseline = config.stash.get(_baseline_key, None)
    tracker = config.stash[_engines_key]
    if tracker.undisposed:
        terminalreporter.section(diagnostics.UNDISPOSED_TITLE.format(count=len(tracker.undisposed)))
        for origin, url in tracker.undisposed:
            terminalreporter.line(
                diagnostics.UNDISPOSED_LINE.format(url=url, loop=origin.loop, origin=origin.describe())
            )
        terminalreporter.line(diagnostics.UNDISPOSED_DISPOSED if tracker.dispose else diagnostics.UNDISPOSED_FIX)
    if recorder.sites:
        _list_sites(terminalreporter, config, recorder, baseline)
    if baseline is not None:
        from .baseline import summary

        terminalreporter.section("greenlight: baseline")
        for line in summary(baseline, recorder, written=config.stash.get(_written_key, None)):
            terminalreporter.line(line)


def _list_sites(terminalreporter: Any, config: pytest.Config, recorder: Recorder, baseline: Optional[Baseline]) -> None:
    refused_sites = recorder.refused
    refused = len(refused_sites)
    title = "served by the portal" if not refused else f"{refused} refused by strict mode"
    terminalreporter.section(f"greenlight: implicit IO {title}")
    terminalreporter.line(
        f"{len(recorder.sites)} place(s) relied on implicit IO; each raises MissingGreenlet outside the tests."
    )
    rootdir = str(config.rootpath)
    for site, tests in recorder.sites.items():
        where = tests[0] + (f" and {len(tests) - 1} more" if len(tests) > 1 else "") if tests else "outside a test"
        outcome = ", refused: the test failed" if site in refused_sites else ""
        if not outcome and baseline is not None and baseline.known(site):
            outcome = ", known: in the baseline"
        terminalreporter.line(f"  {site.location(rootdir)}: {site.trigger} (in {where}{outcome})")
    if baseline is not None:
        return  # the baseline section says what to do
    if refused < len(recorder.sites):
        terminalreporter.line("Make them fail with --greenlight-strict; see the README's 'Strict mode' for the fixes.")
    else:
        terminalreporter.line("Each failed where it happened; see the README's 'Strict mode' for the fixes.")
