"""The strict-mode ratchet: a file of known implicit-IO sites that strict mode serves while new ones fail.

A site is keyed by its file (relative to the rootdir), the enclosing function's qualified name, the trigger and the
text of its source line, not the line number: an edit above a site leaves its key alone; an edit of the line itself
or of the function's name makes it a new site. The file is JSON with one site per line, sorted, so that a change
reads as a one-line diff. No pytest import: hooks.py hands in paths and sites.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from . import diagnostics

if TYPE_CHECKING:
    from .implicit_io import Recorder, Site

FORMAT = 1
# Before Python 3.11 a code object has no qualified name: a site there carries its plain function name.
HAS_QUALNAME = sys.version_info >= (3, 11)


class BaselineError(Exception):
    """The baseline file is missing or unreadable; the message says how to make one."""


@dataclass(frozen=True, order=True)
class Key:
    """What identifies a site in the baseline file."""

    file: str
    function: str
    trigger: str
    code: str

    def describe(self) -> str:
        return f"{self.file}::{self.function}: {self.trigger}: `{self.code}`"

    def matches(self, other: Key) -> bool:
        if (self.file, self.trigger, self.code) != (other.file, other.trigger, other.code):
            return False
        if self.function == other.function:
            return True
        # A plain name (written or read before Python 3.11) matches the last part of a qualified one.
        plain = "." not in self.function or "." not in other.function
        return plain and self.function.rpartition(".")[2] == other.function.rpartition(".")[2]


def key_of(site: Site, rootdir: str) -> Key:
    filename = site.filename
    root = rootdir.rstrip(os.sep) + os.sep
    if filename.startswith(root):
        filename = os.path.relpath(filename, rootdir)
    linecache.checkcache(site.filename)  # the text as the file is now, not as an earlier read cached it
    code = linecache.getline(site.filename, site.lineno).strip()
    return Key(filename.replace(os.sep, "/"), site.qualname or site.function, site.trigger, code)


def dumps(keys: Iterable[Key]) -> str:
    """The file's text: one site per line, sorted, so that a change to the baseline is a one-line diff."""
    lines = sorted(
        {json.dumps({"file": k.file, "function": k.function, "trigger": k.trigger, "code": k.code}) for k in keys}
    )
    sites = "[\n" + ",\n".join(f"    {line}" for line in lines) + "\n  ]" if lines else "[]"
    return f'{{\n  "greenlight_baseline": {FORMAT},\n  "sites": {sites}\n}}\n'


def loads(text: str, source: str) -> frozenset[Key]:
    try:
        data = json.loads(text)
        if data.get("greenlight_baseline") != FORMAT:
            raise ValueError(f'expected "greenlight_baseline": {FORMAT}')
        return frozenset(Key(s["file"], s["function"], s["trigger"], s["code"]) for s in data["sites"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise BaselineError(diagnostics.BASELINE_UNREADABLE.format(path=source, error=error)) from None


@dataclass
class Baseline:
    """The known sites of one file; ``allows`` is the recorder's strict-mode exception."""

    path: Path
    rootdir: str
    keys: frozenset[Key]
    _answers: dict[Site, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path, rootdir: str, *, missing_ok: bool = False) -> Baseline:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path, rootdir, frozenset())
            raise BaselineError(diagnostics.BASELINE_MISSING.format(path=path)) from None
        return cls(path, rootdir, loads(text, str(path)))

    def __str__(self) -> str:
        """The path as the user would type it: relative to the rootdir when inside it."""
        root = self.rootdir.rstrip(os.sep) + os.sep
        return os.path.relpath(self.path, self.rootdir) if str(self.path).startswith(root) else str(self.path)

    def known(self, site: Site) -> bool:
        """Whether ``site`` is in the file (the recorder asks at each implicit IO, so answers are remembered)."""
        answer = self._answers.get(site)
        if answer is None:
            key = key_of(site, self.rootdir)
            answer = self._answers[site] = key in self.keys or any(known.matches(key) for known in self.keys)
        return answer

    def gone(self, seen: Iterable[Site]) -> list[Key]:
        """The baseline's sites that no site of this run matched: fixed, or not reached by the tests that ran."""
        found = [key_of(site, self.rootdir) for site in seen]
        return sorted(key for key in self.keys if not any(key.matches(other) for other in found))

    def update(self, served: Iterable[Site]) -> tuple[int, int]:
        """Rewrite the file with the sites this run served; return (added, removed) against the old file."""
        new = {key_of(site, self.rootdir) for site in served}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(dumps(new), encoding="utf-8")
        added = sum(1 for key in new if key not in self.keys)
        removed = sum(1 for key in self.keys if key not in new)
        self.keys = frozenset(new)
        self._answers.clear()
        return added, removed


def summary(baseline: Baseline, recorder: Recorder, *, written: Optional[str]) -> list[str]:
    """The lines of the end-of-run baseline section: what was written, or what was known, new and gone."""
    if written is not None:
        return [written]
    known = {key_of(site, baseline.rootdir) for site in recorder.served if baseline.known(site)}
    lines = [diagnostics.BASELINE_KNOWN.format(count=len(known), path=baseline)]
    if recorder.refused:
        lines.append(diagnostics.BASELINE_NEW)
    gone = baseline.gone(recorder.sites)
    if gone:
        lines.append(diagnostics.BASELINE_GONE.format(count=len(gone), path=baseline))
        lines.extend(f"  {key.describe()}" for key in gone)
        lines.append(diagnostics.BASELINE_SHRINK)
    return lines
