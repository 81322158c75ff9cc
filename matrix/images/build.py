"""Build the offline images: `debootstrap --variant=minbase` a Debian root file system, `tar | docker import`.

No registry is needed, only a Debian mirror (``GREENLIGHT_DEBIAN_MIRROR``, default deb.debian.org) and root.
Both expensive steps are cached under ``cache_dir``: the debootstrap output per recipe (re-used until its
package list changes) and the downloaded .deb files; an image whose ``greenlight.recipe`` label matches the
recipe is not touched at all. A lock makes concurrent builds (two CI jobs) wait for each other, not collide.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from matrix import debian
from matrix.debian import DEFAULT_MIRROR as DEFAULT_MIRROR  # named here by the image tests
from matrix.debian import DebootstrapError
from matrix.debian import remove_tree as _remove_tree
from matrix.images.recipes import COMMON_PRUNE, ENTRYPOINT_PATH, ENTRYPOINTS, RECIPES, Recipe

LABEL = "greenlight.recipe"
_MARKER = ".greenlight-rootfs"
IMPORT_TIMEOUT = 600

Log = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """A build could not run or failed; the message says which step and why."""


@dataclass(frozen=True)
class BuildResult:
    image: str
    action: str  # "up-to-date" | "built"
    seconds: float
    debootstrap_seconds: Optional[float] = None  # None: the cached root filesystem was re-used
    import_seconds: Optional[float] = None

    def describe(self) -> str:
        if self.action == "up-to-date":
            return f"{self.image}: up to date ({self.seconds:.1f} s)"
        rootfs = (
            "cached root filesystem"
            if self.debootstrap_seconds is None
            else f"debootstrap {self.debootstrap_seconds:.0f} s"
        )
        return f"{self.image}: built in {self.seconds:.0f} s ({rootfs}, import {self.import_seconds:.0f} s)"


def build_all(
    cache_dir: Path,
    *,
    only: Optional[Iterable[str]] = None,
    force: bool = False,
    mirror: Optional[str] = None,
    log: Log = print,
) -> list[BuildResult]:
    """Build every recipe (or those whose image or slug is in ``only``) that is missing or out of date."""
    wanted = set(only) if only is not None else None
    recipes = [r for r in RECIPES if wanted is None or r.image in wanted or r.slug in wanted]
    if wanted is not None and len(recipes) != len(wanted):
        known = ", ".join(f"{r.slug} ({r.image})" for r in RECIPES)
        raise ImageBuildError(f"unknown image in {sorted(wanted)}; known: {known}")
    mirror = debian.mirror(mirror)
    _check_tools()
    cache_dir = cache_dir.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)

    # The builds run in threads: one line at a time, or print()'s line and its newline interleave.
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            log(line)

    def one(recipe: Recipe) -> BuildResult:
        result = build_one(recipe, cache_dir, force=force, mirror=mirror, log=say)
        say(result.describe())
        return result

    # In parallel: dpkg spends much of a debootstrap waiting on the disk, so two overlap well.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(recipes)))
    with debian.exclusive_lock(cache_dir / "build.lock"), pool:
        return list(pool.map(one, recipes))


def build_one(recipe: Recipe, cache_dir: Path, *, force: bool, mirror: str, log: Log) -> BuildResult:
    start = time.perf_counter()
    key = recipe.image_key(mirror)
    if not force and image_label(recipe.image) == key:
        return BuildResult(recipe.image, "up-to-date", time.perf_counter() - start)
    rootfs, debootstrap_seconds = _rootfs(recipe, cache_dir, mirror, log)
    entrypoint = rootfs / ENTRYPOINT_PATH
    entrypoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ENTRYPOINTS / recipe.entrypoint, entrypoint)
    entrypoint.chmod(0o755)
    log(f"{recipe.image}: importing {rootfs} into Docker")
    import_start = time.perf_counter()
    previous = _image_id(recipe.image)
    _import(rootfs, recipe.image, (*recipe.changes, f"LABEL {LABEL}={key}"))
    if previous and previous != _image_id(recipe.image):
        # The replaced image is now untagged; remove it unless a container still uses it (then docker refuses).
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False)
    now = time.perf_counter()
    return BuildResult(recipe.image, "built", now - start, debootstrap_seconds, now - import_start)


def image_label(image: str) -> Optional[str]:
    """The recipe key of a local image, or None when the image does not exist (or was not built here)."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        if "No such image" in done.stderr or "No such object" in done.stderr:
            return None
        raise ImageBuildError(f"`docker image inspect {image}` failed: {done.stderr.strip()}")
    labels = json.loads(done.stdout or "null") or {}
    return labels.get(LABEL)


def _image_id(image: str) -> Optional[str]:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def _check_tools() -> None:
    missing = [tool for tool in ("debootstrap", "docker", "tar") if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(
            f"missing tools: {', '.join(missing)} "
            "(Debian: apt-get install debootstrap docker.io; .ci/docker.sh does it)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root: run `nox -s images` as root (CI does, via .ci/docker.sh)")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        raise ImageBuildError(f"the Docker engine does not answer: {info.stderr.strip()}")


def _rootfs(recipe: Recipe, cache_dir: Path, mirror: str, log: Log) -> tuple[Path, Optional[float]]:
    """The recipe's debootstrapped root filesystem, from the cache when its package list has not changed."""
    target = cache_dir / "rootfs" / recipe.slug
    key = recipe.rootfs_key(mirror)
    marker = target / _MARKER
    if marker.is_file() and marker.read_text().strip() == key:
        log(f"{recipe.image}: re-using the root filesystem cached in {target}")
        return target, None
    staging = target.with_name(target.name + ".partial")
    _remove_tree(staging)
    _remove_tree(target)
    try:
        seconds = debian.debootstrap(
            staging,
            suite=recipe.suite,
            packages=recipe.packages,
            mirror=mirror,
            debs=cache_dir / "debs" / recipe.slug,  # one per recipe: parallel debootstraps must not share one
            logfile=cache_dir / "logs" / f"{recipe.slug}-debootstrap.log",
            what=recipe.image,
            log=log,
        )
    except DebootstrapError as exc:
        raise ImageBuildError(str(exc)) from None
    try:
        installed = check_server_version(recipe, staging)
    except ImageBuildError:
        _remove_tree(staging)
        raise
    log(f"{recipe.image}: {recipe.suite} installed {recipe.server_package} {installed}")
    for relative in COMMON_PRUNE + recipe.prune:
        _remove_tree(staging / relative)
    staging.rename(target)
    marker.write_text(key + "\n")
    return target, seconds


def installed_version(rootfs: Path, package: str) -> Optional[str]:
    """The version of ``package`` installed in ``rootfs`` (from dpkg's status file), or None."""
    status = rootfs / "var" / "lib" / "dpkg" / "status"
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Package") == package and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None


def check_server_version(recipe: Recipe, rootfs: Path) -> str:
    """The installed server package's version, which must be of the series the image is tagged with: a suite
    that moved on (sid's MySQL going 9.8, say) stops the build instead of mislabelling the image."""
    version = installed_version(rootfs, recipe.server_package)
    if version is None:
        raise ImageBuildError(f"{recipe.image}: debootstrap did not install {recipe.server_package}")
    upstream = version.split(":", 1)[-1]  # without the epoch (MariaDB's "1:")
    if not upstream.startswith(tuple(recipe.version + separator for separator in ".-+~")):
        raise ImageBuildError(
            f"{recipe.image}: {recipe.suite} installed {recipe.server_package} {version}, not the {recipe.version}"
            f" series the image is tagged with: change the recipe in matrix/images/recipes.py (and axes.toml)"
        )
    return version


def _import(rootfs: Path, image: str, changes: tuple[str, ...]) -> None:
    """`tar -c rootfs | docker import`, streamed: the root filesystem never exists as one big file."""
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", f"--exclude=./{_MARKER}", "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        done = subprocess.run(
            ["docker", "import", *(f"--change={change}" for change in changes), "-", image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
        )
    finally:
        tar.stdout.close()
        tar_stderr = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar.wait()
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of {rootfs} failed ({tar.returncode}): {tar_stderr.strip()}")
    if done.returncode != 0:
        raise ImageBuildError(f"docker import {image} failed ({done.returncode}): {done.stderr.strip()}")
