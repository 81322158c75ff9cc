"""Runtime roots: Debian root filesystems holding interpreters this host lacks, and running commands inside them.

Debian's ``sid`` has ``python3.14`` and ``python3.15``, built against a newer libc than the host's, so they never
go on the host: :func:`build_root` debootstraps them into a root of their own, cached under ``build/runtimes/`` by a
hash of the recipe (suite, packages, mirror, format), so an unchanged recipe is re-used at once; a lock makes a
second build wait for the first. :func:`command_prefix` / :func:`run_in_root` run a command in a root, as root:

* in a private mount namespace (``unshare --mount``), so every mount below vanishes with the command, however it
  ends (failure, Ctrl-C, SIGKILL): nothing is ever mounted into the root in the host's namespace, so nothing there
  can leave the host's /tmp or the repository mounted inside a cache directory that is later removed;
* with /proc, /dev, /tmp and the repository bind-mounted at the same paths as on the host (paths in output match),
  the host's network namespace (loopback database servers, PyPI), resolver configuration and CA bundle (the one
  pip is configured with), and the host's uv binary as ``/usr/local/bin/uv``;
* with a clean environment: :data:`BASE_ENV` plus what the caller gives (the host's paths mean nothing inside).

Standard library only: the noxfile imports it.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

from matrix import debian
from matrix.debian import DebootstrapError, Log
from matrix.paths import ROOT

CACHE_DIR = ROOT / "build" / "runtimes"
ENTER_SCRIPT = Path(__file__).with_name("enter_root.sh")
# Bumped when what build_root does after debootstrap changes in a way that must rebuild every root.
FORMAT = 1
_MARKER = ".greenlight-runtime"
CA_IN_ROOT = "/etc/ssl/certs/ca-certificates.crt"
UV_IN_ROOT = "/usr/local/bin/uv"
# Mount points the enter script binds host files onto: regular files in every root (made by build_root).
_FILE_MOUNTS = ("etc/resolv.conf", CA_IN_ROOT.lstrip("/"), UV_IN_ROOT.lstrip("/"))
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SSL_CERT_FILE": CA_IN_ROOT,
    "PIP_CERT": CA_IN_ROOT,
    "UV_PYTHON_DOWNLOADS": "never",
}
# Host variables that keep their meaning inside a root.
PASSED_THROUGH = ("TERM", "FORCE_COLOR", "NO_COLOR", "CI", "GITHUB_ACTIONS")
APT_PACKAGES = ("debootstrap", "debian-archive-keyring")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


class RuntimeRootError(RuntimeError):
    """A runtime root could not be built or entered; the message names the step and why."""


@dataclasses.dataclass(frozen=True)
class RootRecipe:
    name: str  # names the cache directory, e.g. "pythons" -> build/runtimes/pythons-<key>/
    suite: str  # the Debian suite debootstrapped
    packages: tuple[str, ...]  # given to `debootstrap --include`
    interpreters: tuple[str, ...] = ()  # commands checked after the build: "python3.15" -> `python3.15 --version`

    def key(self, mirror: str) -> str:
        """What the root depends on; a change builds a new root (the old one is removed)."""
        return debian.digest({"suite": self.suite, "packages": self.packages, "mirror": mirror, "format": FORMAT})


# No -dev packages and no compiler: every package the tests install has a wheel for 3.14 and 3.15 (checked with
# `uv pip compile --only-binary :all:`), and headers alone build nothing. -venv makes `python3.X -m venv` work.
PYTHONS = RootRecipe(
    name="pythons",
    suite="sid",
    packages=("python3.14", "python3.14-venv", "python3.15", "python3.15-venv", "ca-certificates"),
    interpreters=("python3.14", "python3.15"),
)


def interpreter(version: str) -> str:
    """The path of Python ``version`` (e.g. "3.15") inside a :data:`PYTHONS` root."""
    return f"/usr/bin/python{version}"


def build_root(
    cache_dir: Path = CACHE_DIR,
    *,
    recipe: RootRecipe = PYTHONS,
    mirror: Optional[str] = None,
    force: bool = False,
    log: Log = print,
) -> Path:
    """The root of ``recipe``, built if its cache is missing or stale; re-used as it is otherwise (about 0 s).

    Needs root and debootstrap (installed with apt-get when missing); raises :class:`RuntimeRootError` naming the
    failing step. ``force`` rebuilds (sid moves on; an unchanged recipe never picks up newer packages by itself).
    """
    mirror = debian.mirror(mirror)
    cache_dir = cache_dir.resolve()
    key = recipe.key(mirror)
    target = cache_dir / f"{recipe.name}-{key}"
    if not force and _complete(target, key):
        return target
    if os.geteuid() != 0:
        raise RuntimeRootError(
            f"runtime root {recipe.name}: building it needs root (debootstrap, chroot and mount do); run as root, "
            f"or put {' and '.join(recipe.interpreters) or 'the interpreters'} on PATH to use them directly"
        )
    with debian.exclusive_lock(cache_dir / f"{recipe.name}.lock"):
        if not force and _complete(target, key):  # built by the process we waited for
            log(f"runtime root {recipe.name}: built meanwhile by another process: {target}")
            return target
        _ensure_debootstrap(log)
        start = time.perf_counter()
        staging = target.with_name(target.name + ".partial")
        debian.remove_tree(staging)
        what = f"runtime root {recipe.name} ({recipe.suite})"
        try:
            seconds = debian.debootstrap(
                staging,
                suite=recipe.suite,
                packages=recipe.packages,
                mirror=mirror,
                debs=cache_dir / "debs" / recipe.name,
                logfile=cache_dir / "logs" / f"{recipe.name}-debootstrap.log",
                what=what,
                log=log,
            )
        except DebootstrapError as exc:
            raise RuntimeRootError(f"step 'debootstrap' failed: {exc}") from None
        try:
            _make_mount_points(staging)
            versions = _check_interpreters(staging, recipe)
        except RuntimeRootError:
            debian.remove_tree(staging)
            raise
        (staging / _MARKER).write_text(
            json.dumps({"key": key, "recipe": dataclasses.asdict(recipe), "versions": versions})
        )
        # Roots of an older recipe of this name: nothing uses them any more (a run in progress keeps its files
        # open; its mounts are in its own namespace, so removing the directory cannot reach through them).
        for old in cache_dir.glob(f"{recipe.name}-*"):
            if old.is_dir() and old != staging:
                debian.remove_tree(old)
        staging.rename(target)
        found = ", ".join(f"{name} {version}" for name, version in versions.items())
        log(f"{what}: built in {time.perf_counter() - start:.0f} s (debootstrap {seconds:.0f} s): {found}; {target}")
        return target


def is_built(cache_dir: Path = CACHE_DIR, *, recipe: RootRecipe = PYTHONS, mirror: Optional[str] = None) -> bool:
    """Whether the root of ``recipe`` is built and current (then :func:`build_root` returns it at once)."""
    mirror = debian.mirror(mirror)
    key = recipe.key(mirror)
    return _complete(cache_dir.resolve() / f"{recipe.name}-{key}", key)


def root_env(env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment of a command in a root: :data:`BASE_ENV`, the :data:`PASSED_THROUGH` host variables, then
    ``env``. The values travel on the command line (``env -i NAME=VALUE``): pass no secrets."""
    result = dict(BASE_ENV)
    result.update({name: os.environ[name] for name in PASSED_THROUGH if name in os.environ})
    result.update(env or {})
    return result


def command_prefix(
    root: Path,
    *,
    cwd: Path,
    env: Optional[Mapping[str, str]] = None,
    binds: Sequence[Path] = (ROOT,),
    uv: Optional[str] = None,
    inherit_env: bool = False,
) -> list[str]:
    """The argv prefix that runs the command appended to it inside ``root`` (see the module docstring).

    ``binds``: host directories mounted at the same path inside (the repository by default); ``cwd`` should be in
    one of them. ``uv``: the host's uv binary (default: :func:`host_uv`). ``inherit_env``: the command keeps the
    environment the prefix is started with (give it :func:`root_env`'s; ``env`` is then ignored), so values that
    must not show in the process list (database URLs with passwords) stay off the command line.
    """
    mounts = [str(Path(path).resolve()) for path in binds]
    for name in root_env(env):
        if not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise RuntimeRootError(f"not an environment variable name: {name!r}")
    environment = ["--inherit-env"] if inherit_env else [f"{name}={value}" for name, value in root_env(env).items()]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        str(ENTER_SCRIPT),
        str(Path(root).resolve()),
        str(cwd),
        str(host_ca_bundle()),
        str(host_uv(uv)),
        *mounts,
        "--",
        *environment,
    ]


def run_in_root(
    root: Path,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Optional[Mapping[str, str]] = None,
    binds: Sequence[Path] = (ROOT,),
    timeout: Optional[float] = None,
    capture_output: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``root`` (as :func:`command_prefix` describes); never raises for its exit status."""
    command = [*command_prefix(root, cwd=cwd, env=env, binds=binds), *argv]
    return subprocess.run(command, capture_output=capture_output, text=True, timeout=timeout, check=False)


def host_ca_bundle() -> Path:
    """The CA bundle the host's pip uses (PIP_CERT, then pip.conf's ``cert``, then SSL_CERT_FILE, then Debian's):
    a machine whose HTTPS goes through an inspecting proxy needs its extra CA inside the root as well."""
    candidates = [os.environ.get("PIP_CERT")]
    config = configparser.ConfigParser()
    home = Path.home()
    # pip's own order, the later overriding the earlier: site-wide, then the user's, then PIP_CONFIG_FILE.
    files = ["/etc/xdg/pip/pip.conf", "/etc/pip.conf", str(home / ".pip/pip.conf"), str(home / ".config/pip/pip.conf")]
    config.read([*files, *([os.environ["PIP_CONFIG_FILE"]] if os.environ.get("PIP_CONFIG_FILE") else [])])
    candidates.append(config.get("global", "cert", fallback=None))
    candidates += [os.environ.get("SSL_CERT_FILE"), os.environ.get("REQUESTS_CA_BUNDLE"), CA_IN_ROOT]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise RuntimeRootError(f"no CA bundle found for the root (looked at {[c for c in candidates if c]})")


def host_uv(explicit: Optional[str] = None) -> Path:
    """The host's uv executable (an ELF binary that runs on the root's newer libc, or a static one)."""
    candidates: list[Optional[str]] = [explicit if explicit and explicit != "uv" else None]
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]

        candidates.append(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    candidates.append(str(Path(sys.executable).parent / "uv"))
    found = shutil.which("uv")
    if found and os.sep + "shims" + os.sep in found and shutil.which("pyenv"):  # a pyenv shim: the real one
        which = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True, check=False)
        candidates.append(which.stdout.strip() if which.returncode == 0 else None)
    candidates.append(found)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            with path.open("rb") as file:
                if file.read(4) == b"\x7fELF":
                    return path
    # A pyenv shim or a wrapper script cannot run inside the root: it names host paths.
    raise RuntimeRootError(
        f"no uv binary for the root (found {[c for c in candidates if c]}, none an ELF executable): "
        f"`{sys.executable} -m pip install uv`"
    )


def _complete(target: Path, key: str) -> bool:
    try:
        return bool(json.loads((target / _MARKER).read_text())["key"] == key)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _ensure_debootstrap(log: Log) -> None:
    """debootstrap and Debian's archive keyring, installed from the host's own (bookworm) sources if missing.

    The keyring matters on Ubuntu, whose debootstrap cannot verify Debian's archive without it.
    """
    if debian.debootstrap_path() and KEYRING.is_file():
        return
    if shutil.which("apt-get") is None:
        raise RuntimeRootError(f"step 'install debootstrap': no apt-get here; install {' and '.join(APT_PACKAGES)}")
    log(f"runtime roots: installing {' '.join(APT_PACKAGES)} with apt-get (host packages, from its own sources)")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        update = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, check=False)
        if update.returncode != 0:
            done = update
        else:
            done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeRootError(f"step 'install debootstrap' failed ({done.returncode}):\n{tail}")


def _make_mount_points(root: Path) -> None:
    """Regular files where the enter script binds host files. A symlink there (sid's /etc/resolv.conf may be one)
    is replaced: the host-side mount would follow it out of the root."""
    for relative in _FILE_MOUNTS:
        path = root / relative
        if path.is_symlink() or (path.exists() and not path.is_file()):
            if path.is_dir() and not path.is_symlink():
                raise RuntimeRootError(f"step 'mount points': {path} is a directory, not a file")
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch()
        if relative == UV_IN_ROOT.lstrip("/"):
            path.chmod(0o755)


def _check_interpreters(root: Path, recipe: RootRecipe) -> dict[str, str]:
    """Each interpreter's version, run in the new root: a package that installed but does not run stops here."""
    versions = {}
    for name in recipe.interpreters:
        done = subprocess.run(
            ["chroot", str(root), f"/usr/bin/{name}", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            env={"PATH": BASE_ENV["PATH"], "LANG": "C.UTF-8"},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeRootError(f"step 'check interpreters': {name} does not run in the root: {done.stderr.strip()}")
        versions[name] = done.stdout.strip()
    return versions
