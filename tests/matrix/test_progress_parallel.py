"""What a `nox -s matrix` run shows under `nox -j`: the time left (matrix/selection.py), and databases that no cell
can have said once, up front, not again by every cell (matrix/progress.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from matrix import selection
from matrix.selection import Done
from tests.matrix.test_run_nox import nox, this_python

AXES = """\
[axes]
python = ["{python}"]
sqlalchemy = ["2.0"]
pytest_asyncio = ["0.21", "0.23", "1"]

[[databases]]
name = "sqlite"
kind = "sqlite"
drivers = ["aiosqlite"]

[[databases]]
name = "postgresql-17"
kind = "postgresql"
drivers = ["asyncpg"]
image = "postgres:17"

[[subjects]]
name = "greenlight"
requirement = "pytest-greenlight @ ."
"""


def test_the_number_of_jobs_and_the_selection_command_come_from_the_top_level_command_line() -> None:
    assert selection.parallel_jobs(["nox", "-s", "matrix"], {}) == 1
    assert selection.parallel_jobs(["nox", "-j", "3"], {}) == 3
    assert selection.parallel_jobs(["nox", "--parallel=2"], {}) == 2
    assert selection.parallel_jobs(["nox", "-j", "auto"], {}) >= 1
    assert selection.parallel_jobs(["nox"], {"NOX_PARALLEL": "4"}) == 4
    argv = ["/x/nox", "-s", "matrix", "-j", "auto", "-p", "3.15", "-k", "sa2_1", "-R", "--report", "r.json"]
    assert selection.list_command(argv) == [
        sys.executable, "-m", "nox", "-s", "matrix", "-p", "3.15", "-k", "sa2_1", "--list", "--json"
    ]  # fmt: skip


def test_the_time_left_is_shared_among_the_jobs(tmp_path: Path) -> None:
    for cell, seconds, ran in (("a", 60, True), ("b", 1, False), ("c", 120, True)):
        selection.record_done("run-1", cell, seconds, ran, directory=tmp_path)
    done = selection.read_done("run-1", directory=tmp_path)
    assert done == [Done("a", 60.0, True), Done("b", 1.0, False), Done("c", 120.0, True)]
    runnable = ["a", "b", "c", "d", "e", "f", "g"]  # 4 left; a cell that ran takes 90 s (median; b was re-used)
    line = selection.progress_line(done, 9, runnable, 180, jobs=2)
    assert line == "progress: 3 of 9 cells done in 3.0 min, about 3.0 min left (4 cells to run, 2 at a time)"
    assert selection.progress_line(done, 9, runnable, 180, jobs=1).endswith("about 6.0 min left (4 cells to run)")
    assert selection.progress_line(done, None, None, 180) == "progress: 3 cells done in 3.0 min"
    assert selection.progress_line(done, 3, ["a", "b", "c"], 180, 2).endswith(", no cell left to run")


def test_under_nox_j_each_cell_estimates_the_time_left_and_unreachable_servers_are_said_once(tmp_path: Path) -> None:
    python = this_python()
    done = nox(tmp_path, AXES.format(python=python), "-s", "matrix", "-j", "2", "--", "-k", "lazy_load_in_test")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    progress = re.findall(r"progress: .*", output)
    assert len(progress) == 3, output[-3000:]
    # Each worker runs one cell and still knows the run selected three: the top-level process wrote the plan.
    assert all(re.match(r"progress: [123] of 3 cells done in ", line) for line in progress), progress
    # Two cells run at a time: whichever finishes first has at least one cell still to run, and estimates it.
    assert any(re.search(r", about \d+\.\d min left \([12] cells to run", line) for line in progress), progress
    assert any(line.endswith(", no cell left to run") for line in progress), progress
    # No Docker engine and no URL: said once by the banner, and no cell repeats it.
    assert len(re.findall(r"postgresql-17 will be not-run: ", output)) == 1, output[-3000:]
    # Up front: before the first cell's output, which nox -j shows only when that cell has ended.
    banner_at, first_cell_at = done.stdout.find("will be not-run: "), done.stdout.find("Running session matrix(")
    assert -1 < banner_at < first_cell_at, done.stdout[:3000]
    assert not re.search(r"\): not-run: postgresql-17", output), output[-3000:]
    assert output.count("(greenlight): completed: works ") == 3  # the per-subject verdict lines stay
    # Why the docs table is left alone, in the run's own words: every cell written, none with every database.
    why = (
        "the docs table is left alone: not a complete run (not the default matrix (--smoke or GREENLIGHT_AXES), "
        "3 of 3 cells written, 0 missing, 0 interrupted, 3 without every database or interpreter)"
    )
    assert why in output, output[-3000:]
