"""The GitHub Actions workflows pass actionlint (with shellcheck), zizmor and the project's hygiene rules.

Each check runs once on the real ``.github/`` and once on a copy broken on purpose, so a check that silently
stopped checking (a tool not finding the files, a rule never matching) fails here instead of passing forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflows import hygiene
from tests.workflows.tools import GITHUB, ROOT, WORKFLOWS, actionlint, load_script, nox_command, run, zizmor

BrokenCopy = Callable[[str, str, str], Path]

CHECKOUT = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0"


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def describe_actionlint(errors: list[dict[str, Any]]) -> str:
    return "\n".join(f"{e['filepath']}:{e['line']}:{e['column']}: [{e['kind']}] {e['message']}" for e in errors)


def describe_zizmor(findings: list[dict[str, Any]]) -> str:
    lines = []
    for finding in findings:
        where = finding["locations"][0]
        path = where["symbolic"]["key"]["Local"]["verbatim_path"]
        row = where["concrete"]["location"]["start_point"]["row"] + 1
        lines.append(f"{path}:{row}: [{finding['ident']}] {finding['desc']}")
    return "\n".join(lines)


def test_the_workflows_exist() -> None:
    # Every other test iterates over WORKFLOWS; an empty glob would make them all pass vacuously.
    assert {"ci.yml", "nightly.yml"} <= {p.name for p in WORKFLOWS}


# ---- actionlint (expressions, job graph, types) + shellcheck on every run: script


def test_actionlint_finds_nothing() -> None:
    errors = actionlint(ROOT)
    assert errors == [], describe_actionlint(errors)


@pytest.mark.parametrize(
    ("workflow", "old", "new", "kind"),
    [
        pytest.param(
            "nightly.yml",
            "needs.plan.outputs.matrix",
            "needs.plan.outputs.matirx",
            "expression",
            id="bad-output",
        ),
        pytest.param("ci.yml", "run: nox -s lint", "run: cd $RUNNER_TEMP && nox -s lint", "shellcheck", id="sh"),
        pytest.param("ci.yml", "timeout-minutes: 15", "timeout-minutes: fifteen", "syntax-check", id="type"),
    ],
)
def test_actionlint_catches_a_broken_workflow(
    broken_copy: BrokenCopy, workflow: str, old: str, new: str, kind: str
) -> None:
    errors = actionlint(broken_copy(workflow, old, new))
    assert kind in {e["kind"] for e in errors}, describe_actionlint(errors) or "actionlint found nothing"


# ---- zizmor (security: injection, permissions, pins, credentials), strictest persona, offline


def test_zizmor_finds_nothing() -> None:
    findings = zizmor(ROOT)
    assert findings == [], describe_zizmor(findings)


@pytest.mark.parametrize(
    ("workflow", "old", "new", "audit"),
    [
        pytest.param("ci.yml", CHECKOUT, "actions/checkout@v5", "unpinned-uses", id="unpinned"),
        pytest.param("ci.yml", "permissions: {}\n", "", "excessive-permissions", id="no-permissions"),
        pytest.param(
            "nightly.yml",
            "permissions: {}\n",
            "permissions: write-all\n",
            "excessive-permissions",
            id="write-all",
        ),
        pytest.param(
            "ci.yml",
            "        with:\n          persist-credentials: false\n",
            "",
            "artipacked",
            id="credentials",
        ),
        pytest.param(
            "ci.yml",
            "run: nox -s lint",
            'run: echo "${{ github.event.pull_request.title }}"',
            "template-injection",
            id="injection",
        ),
        pytest.param("ci.yml", "  pull_request:\n", "  pull_request_target:\n", "dangerous-triggers", id="trigger"),
        pytest.param(
            "ci.yml",
            " # zizmor: ignore[unpinned-images] (series tag on purpose, see above)",
            "",
            "unpinned-images",
            id="ignore-removed",
        ),
    ],
)
def test_zizmor_catches_a_broken_workflow(
    broken_copy: BrokenCopy, workflow: str, old: str, new: str, audit: str
) -> None:
    root = broken_copy(workflow, old, new)
    if audit == "excessive-permissions" and "permissions: {}" in old:
        # Without a top-level block zizmor still accepts jobs that declare their own; take one job's away too.
        path = root / ".github" / "workflows" / workflow
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("    permissions:\n      contents: read\n", "", 1), encoding="utf-8")
    findings = zizmor(root)
    assert audit in {f["ident"] for f in findings}, describe_zizmor(findings) or "zizmor found nothing"


def test_every_zizmor_ignore_says_why() -> None:
    """An ignore without a reason is an open finding in disguise."""
    for path in WORKFLOWS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if "zizmor: ignore[" not in line:
                continue
            after = line.split("]", 1)[1].strip()
            before = lines[number - 2].strip() if number > 1 else ""
            assert after or before.startswith("#"), f"{path.name}:{number}: zizmor ignore without a reason"


# ---- the project's own hygiene rules


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_hygiene(path: Path) -> None:
    problems = hygiene.all_problems(load(path), path.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


def test_each_action_has_one_pin_everywhere() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in WORKFLOWS:
        for action, found in hygiene.pinned_actions(path.read_text(encoding="utf-8"))[1].items():
            pins.setdefault(action, set()).update(found)
    assert hygiene.inconsistent_pins(pins) == []
    assert "actions/checkout" in pins, "the pin parser found no actions at all"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("    timeout-minutes: 15\n", "", "has no timeout-minutes", id="timeout"),
        pytest.param(CHECKOUT, "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8", "no '# vX.Y.Z'", id="pin"),
        pytest.param(CHECKOUT, "actions/checkout@v5.0.0", "not pinned to a full commit SHA", id="tag"),
        pytest.param("concurrency:\n  group:", "x-concurrency:\n  group:", "no top-level concurrency", id="concur"),
        pytest.param("permissions: {}\n", "permissions: write-all\n", "top-level permissions grant", id="perm"),
        pytest.param("    permissions:\n      contents: read\n", "", "does not declare its permissions", id="job-perm"),
        pytest.param(
            "          persist-credentials: false\n",
            "          persist-credentials: true\n",
            "persist-credentials: false",
            id="checkout",
        ),
    ],
)
def test_hygiene_catches_a_broken_workflow(broken_copy: BrokenCopy, old: str, new: str, expected: str) -> None:
    path = broken_copy("ci.yml", old, new) / ".github" / "workflows" / "ci.yml"
    problems = hygiene.all_problems(load(path), path.read_text(encoding="utf-8"))
    assert any(expected in p for p in problems), problems


def test_inconsistent_pins_are_caught() -> None:
    other = "actions/checkout@" + "0" * 40 + " # v5.0.1"
    text = f"steps:\n  - uses: {CHECKOUT}\n  - uses: {other}\n"
    assert hygiene.pinned_actions(text)[0] == []
    assert hygiene.inconsistent_pins(hygiene.pinned_actions(text)[1]) != []


# ---- the workflows match the noxfile and the scripts they call


def nox_sessions_named_in_workflows() -> set[str]:
    names = set()
    for path in WORKFLOWS:
        for match in re.finditer(r"\bnox (?:-l --json )?-s ([\w.-]+)", path.read_text(encoding="utf-8")):
            names.add(match.group(1))
    return names


def test_every_nox_session_a_workflow_runs_exists() -> None:
    """A renamed session would otherwise only show up as a red nightly run."""
    names = nox_sessions_named_in_workflows()
    assert {"lint", "tests", "matrix", "report"} <= names
    for name in sorted(names):
        result = run([*nox_command(), "-l", "--json", "-s", name], cwd=ROOT)
        assert result.returncode == 0, f"nox -s {name}: {result.stderr[-1500:]}"
        listed = json.loads(result.stdout)
        assert listed, f"nox -s {name} lists nothing"
        assert all(s["name"] == name for s in listed), listed


def test_the_triggers() -> None:
    assert {"push", "pull_request"} <= hygiene.triggers(load(GITHUB / "workflows" / "ci.yml"))
    assert hygiene.triggers(load(GITHUB / "workflows" / "nightly.yml")) == {"schedule", "workflow_dispatch"}


def test_the_nightly_downloads_what_the_cells_upload() -> None:
    """Cell artifacts are named by nox_matrix.py; the report job collects them by that prefix."""
    nightly = load(GITHUB / "workflows" / "nightly.yml")
    cell_steps = nightly["jobs"]["cell"]["steps"]
    upload = next(s for s in cell_steps if "upload-artifact" in str(s.get("uses")))
    assert upload["with"]["name"] == "${{ matrix.artifact }}"
    assert upload["with"]["path"] == "build/results"
    nox_matrix = load_script("nox_matrix")
    prefix = nox_matrix.artifact_name(nox_matrix.Cell("matrix-3.14(sa2.1-pa1)", "3.14", ()))
    download = next(s for s in nightly["jobs"]["report"]["steps"] if "download-artifact" in str(s.get("uses")))
    pattern = download["with"]["pattern"]
    assert pattern.endswith("*")
    assert prefix.startswith(pattern[:-1]), (pattern, prefix)
    assert download["with"]["merge-multiple"] is True


def test_only_publishing_jobs_can_write() -> None:
    """Only the deploy and docs-pr jobs may write, and each grant is the one their action needs."""
    writes = {}
    for path in WORKFLOWS:
        for name, job in hygiene.jobs(load(path)).items():
            granted = {k for k, v in (job.get("permissions") or {}).items() if v == "write"}
            if granted:
                writes[f"{path.name}:{name}"] = granted
    assert writes == {
        "nightly.yml:deploy": {"pages", "id-token"},
        "nightly.yml:docs-pr": {"contents", "pull-requests"},
    }
