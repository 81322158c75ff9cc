"""Workflow hygiene rules that actionlint and zizmor do not enforce, as functions over a parsed workflow.

Each rule returns a list of human-readable problems (empty = fine), so a test can show all of them at once and
another test can feed it a broken copy to prove the rule bites.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z` -- the comment is what Dependabot and a reviewer read.
_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?P<comment>#.*)?$")
_PINNED = re.compile(r"(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})")
_VERSION_COMMENT = re.compile(r"#\s*(?P<version>v\d+\.\d+\.\d+)\b")


def uses_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, reference, trailing comment) for every ``uses:`` line of a workflow's text."""
    for number, line in enumerate(text.splitlines(), start=1):
        match = _USES.match(line)
        if match:
            yield number, match["ref"].strip("'\""), match["comment"] or ""


def pinned_actions(text: str) -> tuple[list[str], dict[str, set[tuple[str, str]]]]:
    """Problems with pins, and action -> {(sha, version)} for the consistency check across files."""
    problems: list[str] = []
    pins: dict[str, set[tuple[str, str]]] = {}
    for number, ref, comment in uses_lines(text):
        if ref.startswith("./"):
            continue  # a local action is part of this commit already
        pinned = _PINNED.fullmatch(ref)
        version = _VERSION_COMMENT.search(comment)
        if pinned is None:
            problems.append(f"line {number}: {ref} is not pinned to a full commit SHA")
        elif version is None:
            problems.append(f"line {number}: {ref} has no '# vX.Y.Z' comment naming the pinned release")
        else:
            pins.setdefault(pinned["action"], set()).add((pinned["sha"], version["version"]))
    return problems, pins


def inconsistent_pins(pins: Mapping[str, set[tuple[str, str]]]) -> list[str]:
    """One action, one pin: two SHAs (or one SHA under two version comments) means a half-done update."""
    return [
        f"{action} is pinned differently: {sorted(found)}" for action, found in sorted(pins.items()) if len(found) > 1
    ]


def jobs(workflow: Mapping[Any, Any]) -> dict[str, Mapping[Any, Any]]:
    found = workflow.get("jobs")
    return dict(found) if isinstance(found, Mapping) else {}


def triggers(workflow: Mapping[Any, Any]) -> set[str]:
    """Event names; PyYAML (YAML 1.1) reads the key ``on`` as the boolean True."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on}
    if isinstance(on, (list, Mapping)):
        return {str(event) for event in on}
    return set()


def missing_timeouts(workflow: Mapping[Any, Any]) -> list[str]:
    """Every job needs ``timeout-minutes``: GitHub's default is 360, six hours of a hung runner."""
    return [
        f"job {name!r} has no timeout-minutes"
        for name, job in jobs(workflow).items()
        if "uses" not in job and not job.get("timeout-minutes")
    ]


def _read_only(permissions: Any) -> bool:
    if permissions in ({}, "read-all"):
        return True
    return isinstance(permissions, Mapping) and all(value in ("read", "none") for value in permissions.values())


def permission_problems(workflow: Mapping[Any, Any]) -> list[str]:
    """Least privilege: nothing (or read) at the top, and every job states exactly what it needs."""
    problems = []
    if "permissions" not in workflow:
        problems.append("no top-level permissions: the token gets the repository's default (often write-all)")
    elif not _read_only(workflow["permissions"]):
        problems.append(f"top-level permissions grant writes: {workflow['permissions']!r}")
    for name, job in jobs(workflow).items():
        if "permissions" not in job:
            problems.append(f"job {name!r} does not declare its permissions")
        elif job["permissions"] in ("write-all",):
            problems.append(f"job {name!r} asks for write-all")
    return problems


def concurrency_problems(workflow: Mapping[Any, Any]) -> list[str]:
    concurrency = workflow.get("concurrency")
    if isinstance(concurrency, str) and concurrency:
        return []
    if isinstance(concurrency, Mapping) and concurrency.get("group"):
        return []
    return ["no top-level concurrency group: overlapping runs would race each other"]


def checkout_problems(workflow: Mapping[Any, Any]) -> list[str]:
    """Checkouts keep no token in .git/config, where a later step (or an uploaded artifact) could read it."""
    problems = []
    for name, job in jobs(workflow).items():
        for index, step in enumerate(job.get("steps") or []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                options = step.get("with") or {}
                if options.get("persist-credentials") is not False:
                    problems.append(f"job {name!r} step {index}: checkout without persist-credentials: false")
    return problems


def all_problems(workflow: Mapping[Any, Any], text: str) -> list[str]:
    pin_problems, _ = pinned_actions(text)
    return [
        *pin_problems,
        *missing_timeouts(workflow),
        *permission_problems(workflow),
        *concurrency_problems(workflow),
        *checkout_problems(workflow),
    ]
