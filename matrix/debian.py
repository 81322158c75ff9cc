"""Debian root filesystems made with debootstrap: the mirror, the run itself, the recipe key, safe removal, a lock.

Shared by the offline images (:mod:`matrix.images.build`) and the runtime roots (:mod:`matrix.runtime`). Standard
library only, Python 3.9: ``.ci/docker.sh`` runs the image build with any python3, before any environment exists.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "GREENLIGHT_DEBIAN_MIRROR"
# A cold debootstrap takes 1-3 minutes here; past this something hangs (a stalled mirror).
DEBOOTSTRAP_TIMEOUT = 1200

Log = Callable[[str], None]


class DebootstrapError(RuntimeError):
    """debootstrap could not run or failed; the message names what was being built, and ends with its log."""


def mirror(explicit: Optional[str] = None) -> str:
    """The Debian mirror to debootstrap from: ``explicit``, else ``GREENLIGHT_DEBIAN_MIRROR``, else deb.debian.org."""
    return explicit or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR


def digest(data: object) -> str:
    """The cache key of a recipe: a short hash of its JSON form (key order does not matter)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def debootstrap(
    target: Path,
    *,
    suite: str,
    packages: Sequence[str],
    mirror: str,
    debs: Path,
    logfile: Path,
    what: str,
    log: Log,
    timeout: float = DEBOOTSTRAP_TIMEOUT,
) -> float:
    """``debootstrap --variant=minbase --include=PACKAGES SUITE TARGET MIRROR``; returns the seconds it took.

    ``debs`` keeps the downloaded .deb files for the next run (one directory per concurrent build). On failure
    the half-built ``target`` is removed and :class:`DebootstrapError` says why, with the end of ``logfile``.
    """
    debs.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--cache-dir={debs.resolve()}",
        f"--include={','.join(packages)}",
        suite,
        str(target),
        mirror,
    ]
    log(f"{what}: {' '.join(command)} (log: {logfile})")
    start = time.perf_counter()
    with logfile.open("w") as out:
        try:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=_sbin_env(), check=False
            )
        except subprocess.TimeoutExpired:
            remove_tree(target)
            raise DebootstrapError(  # noqa: B904  (the timeout itself says nothing more)
                f"debootstrap for {what} ran over {timeout:.0f} s; see {logfile}"
            )
        except OSError as exc:
            raise DebootstrapError(f"debootstrap for {what} could not start: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        remove_tree(target)
        raise DebootstrapError(f"debootstrap for {what} failed ({done.returncode}); {logfile} ends:\n{tail}")
    return time.perf_counter() - start


def _sbin_env() -> dict[str, str]:
    """The environment with /usr/sbin and /sbin on PATH: debootstrap and the chroot it calls live there."""
    path = os.environ.get("PATH", "")
    missing = [d for d in ("/usr/sbin", "/sbin") if d not in path.split(os.pathsep)]
    return {**os.environ, "PATH": os.pathsep.join([path, *missing]) if path else os.pathsep.join(missing)}


def debootstrap_path() -> Optional[str]:
    """Where debootstrap is installed (also when /usr/sbin is not on PATH), or None."""
    return shutil.which("debootstrap", path=_sbin_env()["PATH"])


def remove_tree(path: Path) -> None:
    """Remove a (possibly half-built) root filesystem without ever following a mount out of it.

    A debootstrap that died can leave /proc or /sys mounted inside its target; those are unmounted first, and
    ``rm --one-file-system`` refuses to cross into anything still mounted.
    """
    if not path.exists() and not path.is_symlink():
        return
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing): a second builder waits here, not collides.

    fcntl rather than filelock: this runs with any python3, before any environment exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
