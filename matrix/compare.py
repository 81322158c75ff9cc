"""Compare two runs' verdicts, entry for entry: ``python -m matrix.compare RESULTS_A RESULTS_B``.

Made to check that sharing results across cells (``matrix.share``) changes no verdict: run the same cells with
``--no-share`` into one build directory and without it into another, then compare their ``results`` directories.
Every (cell, subject, scenario, database, driver) is compared by status and verdict; the exit status is 1 when any
differs or is missing on one side. Entries reused from another cell (``ran_in``) are counted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

Entry = tuple[str, str, str, str, str]  # cell, subject, scenario, database, driver


@dataclass
class Run:
    verdicts: dict[Entry, str] = field(default_factory=dict)
    statuses: dict[tuple[str, str], str] = field(default_factory=dict)  # (cell, subject) -> status
    reused: int = 0


def load(results: Path) -> Run:
    run = Run()
    for path in sorted(results.glob("*__*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        cell, subject = document["cell"]["id"], document["subject"]["name"]
        run.statuses[(cell, subject)] = document["status"]
        for scenario in document.get("scenarios") or []:
            key = (cell, subject, scenario["id"], scenario["database"], scenario["driver"])
            run.verdicts[key] = scenario["verdict"]
            run.reused += bool(scenario.get("ran_in"))
    return run


def differences(a: Run, b: Run) -> list[str]:
    found = [f"{c} {s}: status {a.statuses.get((c, s))} vs {b.statuses.get((c, s))}"
             for c, s in sorted(set(a.statuses) | set(b.statuses))
             if a.statuses.get((c, s)) != b.statuses.get((c, s))]  # fmt: skip
    for key in sorted(set(a.verdicts) | set(b.verdicts)):
        if a.verdicts.get(key) != b.verdicts.get(key):
            found.append(f"{' '.join(key)}: {a.verdicts.get(key, '(missing)')} vs {b.verdicts.get(key, '(missing)')}")
    return found


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    a, b = (load(Path(p)) for p in argv)
    found = differences(a, b)
    for name, run in zip(argv, (a, b), strict=True):
        print(f"{name}: {len(run.statuses)} results files, {len(run.verdicts)} entries, {run.reused} reused (ran_in)")
    print(f"{len(found)} difference(s)")
    for line in found[:50]:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
