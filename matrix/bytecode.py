"""Compiled bytecode shared by every cell's environment: each installed file compiled once per interpreter series.

Every cell has an environment of its own, and the bytecode cache (``PYTHONPYCACHEPREFIX``, see
:func:`matrix.paths.cache_bytecode`) is keyed by the source's path, so every cell compiled pytest, SQLAlchemy and
the drivers again: about 2.5 of a SQLite cell's 13-16 CPU-s (measured, one cell, its part of the cache removed or
not). uv installs each file as a hard link into its cache, so a release's files are the same inode in every
environment that installed it. After a cell, :func:`harvest` keeps the bytecode its processes wrote, keyed by the
source's inode; before the next cell's subjects start, :func:`seed` links it to that environment's place in the
cache.

Python still checks every cached file against its source (the source's mtime and size, recorded inside: the same
inode's), recompiles one that does not match, and fixes the code's file name on load: a wrong link costs a
compile, never a wrong result.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from matrix import paths

STORE = paths.BUILD / "pycache-by-inode"


def cache_tag(python_version: str) -> str:
    """CPython's tag in cached file names (``sys.implementation.cache_tag``): ``3.12.1`` -> ``cpython-312``."""
    major, minor = python_version.split(".")[:2]
    return f"cpython-{major}{minor}"


def prefix(environ: Mapping[str, str] = os.environ) -> Optional[Path]:
    value = environ.get("PYTHONPYCACHEPREFIX")
    return Path(value) if value else None


def _stored(source: os.stat_result, tail: str) -> str:
    return f"{source.st_dev}-{source.st_ino}.{tail}"


def _mirror(cache: Path, directory: Path) -> Path:
    """Where Python caches the bytecode of ``directory``'s sources (an absolute, resolved path) under ``cache``."""
    return cache / directory.relative_to(directory.anchor)


def _compiled_from(pyc: Path, source: os.stat_result) -> bool:
    """Whether ``pyc`` records ``source``'s mtime and size (a timestamp-checked file: what Python writes)."""
    try:
        with open(pyc, "rb") as handle:
            header = handle.read(16)
    except OSError:
        return False
    if len(header) < 16:
        return False
    flags, mtime, size = struct.unpack("<III", header[4:16])
    return flags == 0 and mtime == int(source.st_mtime) & 0xFFFFFFFF and size == source.st_size & 0xFFFFFFFF


def harvest(root: Path, cache: Path, store: Path = STORE) -> int:
    """Keep, by source inode, the bytecode cached for the sources under ``root``; returns how many were new."""
    store.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    added = 0
    for directory, _, files in os.walk(_mirror(cache, root)):
        sources = Path(root.anchor) / Path(directory).relative_to(cache)
        for name in files:
            stem, _, tail = name.partition(".")  # __init__.cpython-312.pyc -> __init__, cpython-312.pyc
            if not tail.endswith(".pyc"):
                continue
            try:
                source = os.stat(sources / f"{stem}.py")
                if not _compiled_from(Path(directory) / name, source):
                    continue
                os.link(Path(directory) / name, store / _stored(source, tail))
                added += 1
            except OSError:  # kept already, or its source is gone
                continue
    return added


def seed(root: Path, cache: Path, tag: str, store: Path = STORE) -> int:
    """Link the kept bytecode of every source under ``root`` (a new environment) into its place under ``cache``,
    replacing what was cached there; returns how many."""
    if not store.is_dir():
        return 0
    kept = set(os.listdir(store))
    root = root.resolve()
    mirror = _mirror(cache, root)
    shutil.rmtree(mirror, ignore_errors=True)  # what an earlier environment at this path had, maybe other files
    linked = 0
    for directory, _, files in os.walk(root):
        place = mirror / Path(directory).relative_to(root)
        for name in files:
            if not name.endswith(".py"):
                continue
            try:
                stored = _stored(os.stat(os.path.join(directory, name)), f"{tag}.pyc")
            except OSError:
                continue
            if stored not in kept:
                continue
            try:
                place.mkdir(parents=True, exist_ok=True)
                os.link(store / stored, place / f"{name[:-3]}.{tag}.pyc")
                linked += 1
            except OSError:  # already cached there
                continue
    return linked
