"""Runtime roots (matrix/runtime.py): the recipe key, the command line, and a real root running Python 3.15.

The real checks build the root when it is not cached yet (about 3 minutes, once; then re-used from build/runtimes/)
and so run only as root with debootstrap present or installable by apt-get.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from matrix import debian, runtime
from matrix.runtime import PYTHONS

ROOT = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not (debian.debootstrap_path() or shutil.which("apt-get")),
    reason="building a runtime root needs root, and debootstrap (or apt-get to install it)",
)


def can_build(test: Callable[..., None]) -> Callable[..., None]:
    """Runs as root only; the first such test may build the root (a cold debootstrap: up to its own timeout)."""
    return needs_root(pytest.mark.timeout(debian.DEBOOTSTRAP_TIMEOUT + 300)(test))


def test_the_recipe_key_follows_suite_packages_and_mirror() -> None:
    base = PYTHONS.key(MIRROR)
    assert base == PYTHONS.key(MIRROR)  # stable
    assert dataclasses.replace(PYTHONS, packages=(*PYTHONS.packages, "gcc")).key(MIRROR) != base
    assert dataclasses.replace(PYTHONS, packages=PYTHONS.packages[:-1]).key(MIRROR) != base
    assert dataclasses.replace(PYTHONS, suite="trixie").key(MIRROR) != base
    assert PYTHONS.key("http://mirror.example/debian") != base
    # What is only checked after the build does not decide what gets built.
    assert dataclasses.replace(PYTHONS, interpreters=()).key(MIRROR) == base


def test_a_complete_cached_root_is_returned_without_building(tmp_path: Path) -> None:
    # Works as any user: a root whose marker carries the recipe's key is never rebuilt (nor debootstrap looked for).
    target = tmp_path / f"pythons-{PYTHONS.key(MIRROR)}"
    target.mkdir()
    (target / ".greenlight-runtime").write_text(f'{{"key": "{PYTHONS.key(MIRROR)}"}}')
    start = time.perf_counter()
    assert runtime.build_root(tmp_path, mirror=MIRROR, log=pytest.fail) == target
    assert time.perf_counter() - start < 0.5


def test_an_incomplete_root_is_not_taken_for_a_built_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A directory without the marker (a build that died) must be rebuilt; as a non-root user that is refused, and
    # the message says what to do instead.
    (tmp_path / f"pythons-{PYTHONS.key(MIRROR)}").mkdir()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(runtime.RuntimeRootError, match=r"needs root .* put python3\.14 and python3\.15 on PATH"):
        runtime.build_root(tmp_path, mirror=MIRROR, log=lambda line: None)


def test_a_missing_debootstrap_is_installed_with_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh machine has no debootstrap (and no package lists): install it, running apt-get update only if needed.
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(
        f'#!/bin/sh\necho "$*" >>{calls}\n[ "$1" = update ] || [ -e {tmp_path}/updated ] || exit 100\n'
        f'[ "$1" != update ] || touch {tmp_path}/updated\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setattr(debian, "debootstrap_path", lambda: None)
    logged: list[str] = []
    runtime._ensure_debootstrap(logged.append)
    assert calls.read_text().splitlines() == [
        "install -y -q --no-install-recommends debootstrap debian-archive-keyring",
        "update -q",
        "install -y -q --no-install-recommends debootstrap debian-archive-keyring",
    ]
    assert logged == [
        "runtime roots: installing debootstrap debian-archive-keyring with apt-get (host packages, "
        "from its own sources)"
    ]
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package debootstrap' >&2\nexit 100\n")
    with pytest.raises(runtime.RuntimeRootError, match=r"(?s)step 'install debootstrap' failed \(100\):.*Unable"):
        runtime._ensure_debootstrap(logged.append)


def test_the_command_line_passes_a_clean_environment_and_the_binds(tmp_path: Path) -> None:
    prefix = runtime.command_prefix(tmp_path, cwd=ROOT, env={"VIRTUAL_ENV": "/v"}, binds=[ROOT])
    assert prefix[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    separator = prefix.index("--", 5)
    assert prefix[7:separator] == [str(tmp_path.resolve()), str(ROOT), *prefix[9:11], str(ROOT)]
    env = prefix[separator + 1 :]
    assert "VIRTUAL_ENV=/v" in env
    assert "UV_PYTHON_DOWNLOADS=never" in env
    assert not [item for item in env if item.startswith(("PYENV", "PIP_FIND_LINKS", "LD_"))]
    with pytest.raises(runtime.RuntimeRootError, match="not an environment variable name"):
        runtime.command_prefix(tmp_path, cwd=ROOT, env={"A B": "x"})


def test_the_enter_script_is_valid_posix_sh() -> None:
    done = subprocess.run(["sh", "-n", str(runtime.ENTER_SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        return runtime.build_root(ROOT / "build" / "runtimes", log=print)
    except runtime.RuntimeRootError as exc:
        pytest.fail(f"the runtime root could not be built: {exc}")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix + "/")]


@can_build
def test_python_3_15_runs_in_the_root_and_sees_the_repository_at_its_own_path(root: Path) -> None:
    script = "import os, platform, sys; print(platform.python_version()); print(os.getcwd()); print(sys.executable)"
    done = runtime.run_in_root(
        root, [runtime.interpreter("3.15"), "-c", script], cwd=ROOT / "tests", env={}, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    version, cwd, executable = done.stdout.split()
    assert version.startswith("3.15.")
    assert executable == "/usr/bin/python3.15"
    assert cwd == str(ROOT / "tests")
    done = runtime.run_in_root(
        root, ["cat", str(Path(__file__).relative_to(ROOT))], cwd=ROOT, env={}, capture_output=True, timeout=60
    )
    assert done.stdout == Path(__file__).read_text(), done.stderr
    # The host's python3.15, if any, is not what ran: the root's libc is newer than the host's.
    done = runtime.run_in_root(root, ["ldd", "--version"], cwd=ROOT, env={}, capture_output=True, timeout=60)
    host = subprocess.run(["ldd", "--version"], capture_output=True, text=True)
    assert done.stdout.splitlines()[0] != host.stdout.splitlines()[0]


@can_build
def test_the_root_reaches_loopback_tmp_and_uv(root: Path, tmp_path: Path) -> None:
    (tmp_path / "from-host").write_text("hello")
    script = (
        "import pathlib, socket, sys; print(pathlib.Path(sys.argv[1]).read_text());"
        " socket.create_connection(('127.0.0.1', 5432), timeout=5).close(); print('loopback')"
    )
    done = runtime.run_in_root(
        root,
        [runtime.interpreter("3.14"), "-c", script, str(tmp_path / "from-host")],
        cwd=ROOT,
        env={},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "loopback"]
    done = runtime.run_in_root(root, ["uv", "--version"], cwd=ROOT, env={}, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uv ")


@can_build
def test_nothing_is_mounted_in_the_hosts_namespace_during_or_after_a_run(root: Path) -> None:
    # The mounts live in the command's own namespace: the host never sees them, even while it runs, and a failing
    # or killed command leaves none behind.
    seen: list[list[str]] = []
    command = [*runtime.command_prefix(root, cwd=ROOT, env={}), "sleep", "30"]
    running = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the enter script has mounted everything by now
        seen.append(_mounts_under(root))
        still_running = running.poll() is None
    finally:
        running.kill()
        _, stderr = running.communicate()
    assert still_running, stderr
    assert seen == [[]]
    failed = runtime.run_in_root(root, ["sh", "-c", "exit 3"], cwd=ROOT, env={}, timeout=60)
    assert failed.returncode == 3
    assert _mounts_under(root) == []


@can_build
@pytest.mark.skipif(bool(shutil.which("python3.15")), reason="python3.15 is on PATH: the cell would not use the root")
def test_a_python_3_15_cell_runs_in_the_root_and_records_its_interpreter(root: Path, tmp_path: Path) -> None:
    # `nox -s matrix` on a one-cell SQLite matrix of Python 3.15, which this host lacks: uv venv, uv pip install,
    # the version probes and the scenario run all go through the root, and the results say so.
    from tests.matrix.test_run_nox import nox

    axes_text = """\
[axes]
python = ["3.15"]
sqlalchemy = ["2.0"]
pytest_asyncio = ["1"]

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."
"""
    done = nox(tmp_path, axes_text, "-s", "matrix", "--", "-k", "lazy_load_in_test")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Python 3.15 from the runtime root debian-sid python3.15" in done.stderr
    document = json.loads((tmp_path / "build" / "results" / "py3.15-sa2.0-pa1__greenlight.json").read_text())
    assert document["status"] == "completed", document["reason"]
    assert document["interpreter"]["source"] == "runtime root debian-sid python3.15"
    assert document["interpreter"]["version"] == document["versions"]["python"]
    assert document["versions"]["python"].startswith("3.15.")
    assert [(s["id"], s["verdict"]) for s in document["scenarios"]] == [("context/lazy-load-in-test", "works")]
    assert document["databases"][0]["server_version"]  # the root's own SQLite library answered
