"""Incremental matrix runs: a cell re-uses its previous result when nothing that decides it has changed.

What decides a (cell, subject) result, and so goes into its cache key:

* the versions the cell *would* install, resolved by ``uv pip compile`` against the cell's own interpreter
  without installing anything (measured: about 1-2 s, against 2-6 s for ``uv pip install --dry-run`` into the
  environment), plus that interpreter's exact version;
* the scenario suite, the plugin's source and the scenario-run plumbing (``matrix/watch.py``), hashed by content;
* every database's server: the image that would be started (name and local image id, via the provisioner's own
  image choice), or a hash of the ``GREENLIGHT_*_URL`` it would use, or "no server";
* the subject's requirement and any extra pytest arguments (``-- -k lazy`` runs fewer scenarios).

Only ``completed`` results are re-used: a crash, an infrastructure error or an install failure may be transient.
A re-used file is rewritten with the current ``run_id`` (so the run's summary and the report count it), and
``timings.reused`` says how long the check took; everything else is kept as the run that produced it wrote it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from matrix import axes, collect
from matrix.axes import Cell, Matrix, Subject
from matrix.interpreter import HOST, Interpreter
from matrix.paths import ROOT

# Content that decides the scenario outcomes besides installed versions (directories are hashed *.py-wise).
SOURCES = (ROOT / "matrix" / "scenarios", ROOT / "plugin" / "pytest_greenlight", ROOT / "matrix" / "watch.py")
FRESH_ENV = "GREENLIGHT_FRESH"  # "1": ignore previous results (set by `nox -s matrix -- --fresh`)
REUSABLE = frozenset({"completed"})


@dataclass(frozen=True)
class Resolution:
    """The resolver's answer for a cell: exact versions, or why it could not say (then nothing is re-used)."""

    versions: Optional[dict[str, str]]
    seconds: float
    error: Optional[str] = None


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def plugin_dependencies(root: Path = ROOT) -> list[str]:
    """The local plugin's own requirements: resolved with the cell instead of building the plugin's wheel."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the noxfile's script metadata installs tomli there
        import tomli as tomllib
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project.get("dependencies", []))


def cell_requirements(matrix: Matrix, cell: Cell, root: Path = ROOT) -> list[str]:
    """Everything ``run.install_cell`` installs, except the plugin itself (its source is hashed)."""
    drivers = {axes.DRIVERS[driver][1] for db in matrix.databases for driver in db.drivers}
    return [*matrix.requirements(cell), *plugin_dependencies(root), *sorted(drivers)]


def parse_compiled(text: str) -> dict[str, str]:
    """``name==version`` lines of ``uv pip compile`` output -> normalized name: version."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" not in line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        name = name.split("[", 1)[0].strip().lower().replace("_", "-").replace(".", "-")
        found[name] = version.split(";", 1)[0].strip()
    return dict(sorted(found.items()))


# A resolution is re-used for this long when its inputs are unchanged (requirements, interpreter): every exact
# version the matrix names comes from axes.lock.json, so within a day only an unpinned dependency of a dependency
# could move, and the next day's check sees it. This is what makes a warm run of the whole matrix seconds.
RESOLUTION_TTL = 24 * 3600


def _interpreter_identity(python: Path, via: Interpreter = HOST) -> str:
    """The interpreter behind ``python`` (the cell's base interpreter or its venv's): resolved path and mtime (in a
    runtime root: the root, whose directory name carries its recipe's key, and the path there)."""
    if via.root is not None:
        return f"{via.identity}:{python}"
    try:
        real = Path(python).resolve()
        return f"{real}:{real.stat().st_mtime_ns}"
    except OSError:
        return str(python)


def resolve_memoized(
    python: Path, requirements: Sequence[str], memo_dir: Optional[Path], *, read: bool = True, via: Interpreter = HOST
) -> Resolution:
    """:func:`resolve`, re-using a resolution of the same requirements for the same interpreter made within
    ``RESOLUTION_TTL`` (``memo_dir``: None never re-uses; ``read=False``, as with ``--fresh``, resolves again and
    refreshes the memo)."""
    if memo_dir is None:
        return resolve(python, requirements, via)
    start = time.perf_counter()
    inputs = json.dumps({"python": _interpreter_identity(python, via), "requirements": list(requirements)})
    path = memo_dir / f"{hashlib.sha256(inputs.encode()).hexdigest()[:32]}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if read and stored.get("inputs") == inputs and time.time() - float(stored["at"]) < RESOLUTION_TTL:
            return Resolution(dict(stored["versions"]), time.perf_counter() - start)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = resolve(python, requirements, via)
    if found.versions is not None:
        memo_dir.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"inputs": inputs, "at": time.time(), "versions": found.versions}), encoding="utf-8")
        os.replace(temp, path)
    return found


def resolve(python: Path, requirements: Sequence[str], via: Interpreter = HOST) -> Resolution:
    """Resolve without installing: ``uv pip compile`` for exactly this interpreter (its markers and tags), run
    where the interpreter runs (``via``: the host or its runtime root)."""
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    command = [*via.uv(), "pip", "compile", "--python", str(python), "--no-header", "--no-annotate", "-q", "-"]
    done = via.run(command, env, input="\n".join(requirements), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return Resolution(None, seconds, (done.stderr or done.stdout).strip()[-2000:])
    versions = parse_compiled(done.stdout)
    exact = via.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=False,
    )
    versions["python"] = exact.stdout.strip() or platform.python_version()
    return Resolution(versions, time.perf_counter() - start)


def source_digest(sources: Iterable[Union[str, Path]] = SOURCES) -> str:
    """Content hash of the given files and directories (``*.py`` and ``*.ini`` in directories, caches skipped)."""
    digest = hashlib.sha256()
    for root in sorted(Path(s) for s in sources):
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".ini") and p.is_file())
        else:
            files = [root] if root.is_file() else []
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


_IDENTITIES: dict[str, list[str]] = {}


def server_identities(matrix: Matrix, environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """What server each database would get, decided the way the provisioner decides it, without starting one.
    Asked once per process and configuration (a sequential run of every cell asks the engine once, not 161
    times: 0.19 s each)."""
    environ = dict(os.environ if environ is None else environ)
    relevant = {k: v for k, v in environ.items() if k.startswith(("GREENLIGHT_", "DOCKER_"))}
    memo = json.dumps([[(d.name, d.kind, d.image, d.offline_image) for d in matrix.databases], relevant], default=str)
    if memo not in _IDENTITIES:
        _IDENTITIES[memo] = _server_identities(matrix, environ)
    return list(_IDENTITIES[memo])


def _server_identities(matrix: Matrix, environ: dict[str, str]) -> list[str]:
    from matrix.provision.urls import URL_ENV

    identities: list[str] = []
    client: Any = None
    client_reason: Optional[str] = None
    try:
        for database in matrix.databases:
            if database.kind == "sqlite":
                identities.append(f"{database.name}=embedded")
                continue
            url = environ.get(URL_ENV.get(database.kind, ""), "")
            if url:  # the URL holds a password: only its hash goes into the key
                identities.append(f"{database.name}=url:{hashlib.sha256(url.encode()).hexdigest()[:16]}")
                continue
            if client is None and client_reason is None:
                from matrix.provision import engine

                client, client_reason = engine.connect()
            if client is None:
                identities.append(f"{database.name}=no-engine")
                continue
            identities.append(f"{database.name}={local_image(client, database, environ)}")
    finally:
        if client is not None:
            client.close()
    return identities


def local_image(client: Any, database: Any, environ: Mapping[str, str]) -> str:
    """``name@id`` of the image the provisioner would start, in its order (override, registry image, offline
    image), looking only at local images: a pull would make the check slow, and a pulled image changes the key
    of the next run anyway."""
    from matrix.provision.containers import image_override_variable

    for candidate in (environ.get(image_override_variable(database.name)), database.image, database.offline_image):
        if not candidate:
            continue
        try:
            return f"{candidate}@{client.images.get(candidate).id}"
        except Exception:  # docker.errors.ImageNotFound, or an engine hiccup: try the next candidate
            continue
    return f"no-local-image:{database.image}"


def cache_key(
    versions: Mapping[str, str],
    sources_digest: str,
    servers: Sequence[str],
    subject: Subject,
    pytest_args: Sequence[str] = (),
    scope: Optional[Mapping[str, str]] = None,
) -> str:
    """The one hasher of what decides a result: a cell's (this module) or a shared scenario's (``matrix.share``,
    which narrows ``versions`` and names the ``scope``)."""
    payload: dict[str, Any] = {
        "versions": dict(sorted(versions.items())),
        "sources": sources_digest,
        "servers": sorted(servers),
        "subject": [subject.name, subject.requirement],
        "pytest_args": list(pytest_args),
    }
    if scope:
        payload["scope"] = dict(scope)
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def previous(results: Path, cell_id: str, subject: str, key: str) -> Optional[dict[str, Any]]:
    """The stored result for (cell, subject) if it completed under exactly this key."""
    path = collect.result_path(results, cell_id, subject)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("cache_key") != key or stored.get("status") not in REUSABLE:
        return None
    if any(isinstance(db, dict) and db.get("status") == "infra-error" for db in stored.get("databases") or []):
        return None  # a server failed mid-run: that part of the result is the fault's, so run it again
    return stored


def reuse(stored: Mapping[str, Any], results: Path, run_id: str, check_seconds: float) -> Path:
    """Rewrite a stored result as part of this run (new ``run_id``; ``timings.reused`` = the check's cost)."""
    result = dict(stored)
    result["run_id"] = run_id
    timings = dict(result.get("timings") or {})
    timings["reused"] = round(check_seconds, 3)
    result["timings"] = timings
    return collect.write_result(result, results)


def fresh_requested(environ: Optional[Mapping[str, str]] = None) -> bool:
    return (os.environ if environ is None else environ).get(FRESH_ENV, "") not in ("", "0")


class CellCache:
    """Keys for one cell's subjects, computed once before anything is installed."""

    def __init__(
        self,
        matrix: Matrix,
        cell: Cell,
        python: Path,
        pytest_args: Sequence[str] = (),
        environ: Optional[Mapping[str, str]] = None,
        memo_dir: Optional[Path] = None,
        via: Interpreter = HOST,
    ) -> None:
        start = time.perf_counter()
        requirements = cell_requirements(matrix, cell)
        self.resolution = resolve_memoized(python, requirements, memo_dir, read=not fresh_requested(environ), via=via)
        self.digest = source_digest()
        self.servers = server_identities(matrix, environ)
        self.pytest_args = tuple(pytest_args)
        self.seconds = time.perf_counter() - start

    def key(self, subject: Subject) -> Optional[str]:
        if self.resolution.versions is None:
            return None
        return cache_key(self.resolution.versions, self.digest, self.servers, subject, self.pytest_args)

    def reusable(self, results: Path, cell_id: str, subjects: Sequence[Subject]) -> Optional[dict[str, Any]]:
        """Every subject's stored result, or None when any one must run (then the cell runs as a whole)."""
        found: dict[str, Any] = {}
        for subject in subjects:
            key = self.key(subject)
            stored = previous(results, cell_id, subject.name, key) if key else None
            if stored is None:
                return None
            found[subject.name] = stored
        return found


def installed_key(
    cell_cache: Optional[CellCache],
    versions: Mapping[str, str],
    subject: Subject,
    matrix: Matrix,
    pytest_args: Sequence[str],
) -> str:
    """The key :class:`CellCache` checks before installing; when what got installed differs from what it resolved
    (a driver dropped, a release in between), the same hasher over what got installed (the plugin among
    it), which no resolution matches."""
    resolved = cell_cache.resolution.versions if cell_cache is not None else None
    key = cell_cache.key(subject) if cell_cache is not None else None
    if key is not None and resolved is not None and all(versions.get(n) == v for n, v in resolved.items()):
        return key
    digest = cell_cache.digest if cell_cache is not None else source_digest()
    servers = cell_cache.servers if cell_cache is not None else server_identities(matrix)
    return cache_key(versions, digest, servers, subject, pytest_args)
