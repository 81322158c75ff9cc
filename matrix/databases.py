"""A cell's databases: servers acquired once per cell (concurrently), a fresh database per subject run, and each
(database, driver) target's typed status (ok | not-run | infra-error) with its reason."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matrix.axes import Database, Matrix


@dataclass
class Target:
    """One (database, driver) the cell was meant to use, and what happened to it."""

    database: Database
    driver: str
    status: str = "ok"  # ok | not-run | infra-error
    reason: Optional[str] = None
    server_version: Optional[str] = None

    def entry(self) -> dict[str, Any]:
        return {
            "name": self.database.name,
            "driver": self.driver,
            "status": self.status,
            "reason": self.reason,
            "server_version": self.server_version,
        }


class Databases:
    """Servers for one cell: acquired once, with a fresh database per subject run."""

    def __init__(self, matrix: Matrix, state_dir: Path, work: Path, failed_drivers: Mapping[str, str]) -> None:
        self.work = work
        self._lock = threading.Lock()
        self.servers: dict[str, Any] = {}
        self.secrets: set[str] = set()
        self.targets: list[Target] = []
        self.seconds = 0.0
        start = time.perf_counter()
        provisioner, why_not = _provisioner(state_dir)
        got: dict[str, tuple[str, Optional[str], Optional[str]]] = {}
        servers = [db for db in matrix.databases if db.kind != "sqlite"]
        for database in matrix.databases:
            if database.kind == "sqlite":
                got[database.name] = ("ok", None, None)  # version: from the cell's own sqlite3 module
            elif provisioner is None:
                got[database.name] = ("not-run", why_not, None)
        if provisioner is not None and servers:
            # Containers start concurrently (each image behind its own file lock): the cell waits for the
            # slowest server, not for the sum of them.
            with ThreadPoolExecutor(max_workers=len(servers)) as pool:
                acquired = list(pool.map(lambda db: self._acquire(provisioner, db), servers))
            got.update({db.name: found for db, found in zip(servers, acquired, strict=True)})
        got.update(self._one_run_per_server(matrix))
        for database in matrix.databases:
            status, reason, version = got[database.name]
            for driver in database.drivers:
                target = Target(database, driver, status, reason, version)
                if status == "ok" and driver in failed_drivers:
                    last = " ".join(failed_drivers[driver].strip().splitlines()[-3:])
                    target.status = "not-run"
                    target.reason = f"driver {driver} could not be installed in this cell: {last}"
                self.targets.append(target)
        self.provisioner = provisioner
        self.seconds = time.perf_counter() - start

    def drivers_to_run(self) -> list[str]:
        """The drivers of the targets the cell's runs use (a server that is not run needs none)."""
        return sorted({t.driver for t in self.targets if t.status == "ok"})

    def _acquire(self, provisioner: Any, database: Database) -> tuple[str, Optional[str], Optional[str]]:
        try:
            got = provisioner.acquire(database)
        except Exception as exc:  # a Docker or server fault is an infrastructure error of this database only
            return "infra-error", f"provisioning {database.name} failed: {type(exc).__name__}: {exc}", None
        from matrix.provision import Unavailable

        if isinstance(got, Unavailable):
            return "not-run", str(got.reason), None
        self.servers[database.name] = got
        if got.password:
            self.secrets.add(str(got.password))
        return "ok", None, got.server_version

    def _one_run_per_server(self, matrix: Matrix) -> dict[str, tuple[str, Optional[str], Optional[str]]]:
        """One URL per kind (every PostgreSQL row on one GREENLIGHT_POSTGRES_URL), or one image given to two
        databases (a GREENLIGHT_IMAGE_* override), gives several databases the same server. It runs once, under
        the name that fits it best; running it again would only repeat that run under a wrong label, so the others
        are not-run and say why. The shipped axes.toml gives every row an image of its own version, so with
        containers this never triggers (tests/matrix/test_images.py checks it)."""
        by_address: dict[tuple[str, str, int], list[str]] = {}
        for database in matrix.databases:
            server = self.servers.get(database.name)
            if server is not None:
                by_address.setdefault((server.kind, server.host, server.port), []).append(database.name)
        dropped: dict[str, tuple[str, Optional[str], Optional[str]]] = {}
        for names in by_address.values():
            server = self.servers[names[0]]
            keep = max(names, key=lambda name: _fit(name, server.server_version))
            for name in names:
                if name != keep:
                    del self.servers[name]
                    dropped[name] = ("not-run", f"same server as {keep} ({_server_label(server)}), which ran", None)
        return dropped

    def set_sqlite_version(self, version: Optional[str]) -> None:
        for target in self.targets:
            if target.database.kind == "sqlite":
                target.server_version = version

    @contextlib.contextmanager
    def for_run(self, key: str) -> Iterator[list[dict[str, str]]]:
        """The ``GREENLIGHT_DATABASES`` list for one subject run: fresh databases, dropped afterwards."""
        with contextlib.ExitStack() as stack:
            listed: list[dict[str, str]] = []
            fresh: dict[str, str] = {}
            for target in self.targets:
                if target.status != "ok":
                    continue
                database = target.database
                if database.kind == "sqlite":
                    path = self.work / f"{key}.db"
                    path.unlink(missing_ok=True)
                    url = f"sqlite+aiosqlite:///{path}"
                else:
                    server = self.servers[database.name]
                    if database.name not in fresh:
                        # The invocation is part of the name: two runs sharing one server (two CI jobs, two
                        # people, one GREENLIGHT_POSTGRES_URL) would otherwise drop each other's database.
                        unique = f"{key}__{self.provisioner.invocation}"
                        try:
                            fresh[database.name] = stack.enter_context(self.provisioner.cell_database(server, unique))
                        except Exception as exc:
                            self._infra_error(database, f"creating the cell's database failed: {exc}")
                            continue
                    url = server.url(driver=target.driver, database=fresh[database.name])
                listed.append({"name": database.name, "kind": database.kind, "driver": target.driver, "url": url})
            yield listed

    def _infra_error(self, database: Database, reason: str) -> None:
        for target in self.targets:
            if target.database is database:
                target.status, target.reason = "infra-error", reason

    def check_servers(self) -> list[str]:
        with self._lock:  # subjects run concurrently and each checks after its run
            return self._check_servers()

    def _check_servers(self) -> list[str]:
        """After a run: a server that no longer answers (its container was killed or died, the engine stopped)
        turns its database into an infrastructure error, so what its scenarios recorded is not blamed on the
        subject. Returns the names of the databases lost."""
        from matrix.provision import admin

        lost: list[str] = []
        for name, server in list(self.servers.items()):
            try:
                admin.server_version(server)
            except Exception as exc:
                database = next(t.database for t in self.targets if t.database.name == name)
                self._infra_error(database, f"{name} stopped answering during the run: {type(exc).__name__}: {exc}")
                del self.servers[name]  # later subject runs of this cell do not try it again
                lost.append(name)
        return lost

    def lost_pairs(self) -> set[tuple[str, str]]:
        """(database, driver) pairs whose server failed mid-run: their scenario lines are not results."""
        return {(t.database.name, t.driver) for t in self.targets if t.status == "infra-error"}


def _fit(name: str, server_version: Optional[str]) -> tuple[int, int]:
    """How well a database name describes the server behind it (higher is better; ties keep axes order):
    first the family (a MariaDB server is best called mariadb-*, a MySQL one not), then the major version."""
    version = (server_version or "").lower()
    family = int(("mariadb" in name) == ("mariadb" in version))
    name_major = re.search(r"-(\d+)", name)
    server_major = re.match(r"(\d+)", version)
    distance = abs(int(name_major.group(1)) - int(server_major.group(1))) if name_major and server_major else 0
    return family, -distance


def _server_label(server: Any) -> str:
    family = "PostgreSQL" if server.kind == "postgresql" else "MySQL/MariaDB"
    where = "from its URL variable" if server.source == "url" else f"image {server.image}"
    return f"{family} {server.server_version or '(version unknown)'}, {where}"


def _provisioner(state_dir: Path) -> tuple[Any, Optional[str]]:
    try:
        from matrix.provision import Provisioner
    except ImportError as exc:
        return None, f"matrix.provision is not available: {exc}"
    try:
        return Provisioner(state_dir=state_dir), None
    except Exception as exc:
        return None, f"the provisioner could not start: {type(exc).__name__}: {exc}"


# --- one pytest run -----------------------------------------------------------------------------------------


def unavailable_lines(targets: Sequence[Any], announced: Sequence[str], said: set[str]) -> list[str]:
    """One line per reason for the (database, driver) pairs that will not run, skipping pairs in ``said`` (which it
    extends) and servers in ``announced`` (the run's banner named them once for every cell)."""
    by_reason: dict[tuple[str, Optional[str]], list[str]] = {}
    for target in targets:
        where = f"{target.database.name}/{target.driver}"
        up_front = target.status == "not-run" and target.database.name in announced
        if target.status != "ok" and where not in said and not up_front:
            by_reason.setdefault((target.status, target.reason), []).append(where)
            said.add(where)
    return [f"{status}: {', '.join(pairs)}: {reason}" for (status, reason), pairs in by_reason.items()]
