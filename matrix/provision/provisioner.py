"""The Provisioner: one server per database kind/image per `nox` invocation, shared by all its processes."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from matrix.provision import admin, containers, engine, reaper
from matrix.provision.server import Server, Unavailable, redact
from matrix.provision.state import InvocationState
from matrix.provision.urls import URL_ENV, BadServerUrl, server_from_url

logger = logging.getLogger("matrix.provision")

KINDS = ("postgresql", "mysql")
# Every generated password holds URL-special characters: quoting is exercised on every run, not in one test.
PASSWORD_SUFFIX = "-@:/?#%"


class Provisioner:
    """Hands out database servers for matrix cells; safe to create in many processes of one invocation.

    ``invocation`` (default: ``$GREENLIGHT_INVOCATION``, else this process's pid) groups everything started;
    ``owner_pid`` (default: the invocation, when it is a pid) is the process whose end triggers the reaper.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        invocation: Optional[str] = None,
        owner_pid: Optional[int] = None,
        password: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.invocation = invocation or self.environ.get("GREENLIGHT_INVOCATION") or str(os.getpid())
        if owner_pid is None:
            owner_pid = int(self.invocation) if self.invocation.isdigit() else os.getpid()
        self.owner_pid = owner_pid
        self.state_dir = Path(state_dir)
        self.state = InvocationState(self.state_dir, self.invocation)
        self._password = password
        engine.configure_testcontainers()

    # --- servers ----------------------------------------------------------------------------------------

    def acquire(self, database: Any) -> Union[Server, Unavailable]:
        """A server for ``database`` (an ``axes.Database``: postgresql or mysql), or why there is none."""
        if database.kind not in KINDS:
            raise ValueError(f"{database.name}: kind {database.kind!r} needs no server (only {', '.join(KINDS)})")
        variable = URL_ENV[database.kind]
        url = self.environ.get(variable)
        if url:
            return self._from_url(database, variable, url)
        client, reason = engine.connect()
        if client is None:
            if any(record.get("server") for record in self.state.read_all().values()):
                # Containers of this run exist, so there was an engine: it died or stopped mid-run.
                return Unavailable(f"the Docker engine stopped answering during this run: {reason}")
            return Unavailable(f"{reason}, and {variable} is unset")
        try:
            image, why = containers.resolve_image(client, database, dict(self.environ))
            if image is None:
                return Unavailable(why)
            with self.state.locked(f"image-{image}") as record:
                got = self._reuse(client, record, image)
                if got is None:
                    got = self._start(database.kind, image, record)
        finally:
            client.close()
        if isinstance(got, Unavailable):
            return got
        return Server.from_json({**got.to_json(), "name": database.name})

    def _from_url(self, database: Any, variable: str, url: str) -> Union[Server, Unavailable]:
        try:
            server = server_from_url(database.name, database.kind, url)
            version = admin.server_version(server)
        except (BadServerUrl, admin.AdminError) as exc:
            return Unavailable(redact(f"{variable} is set, but: {exc}", _url_secrets(url)))
        return Server.from_json({**server.to_json(), "server_version": version})

    def _reuse(self, client: Any, record: dict[str, Any], image: str) -> Union[Server, Unavailable, None]:
        """The container this invocation already started from ``image``, if it is still running."""
        if record.get("failure"):
            return Unavailable(record["failure"])
        if not record.get("server"):
            return None
        server = Server.from_json(record["server"])
        status = containers.status(client, str(server.container_id))
        if status == "running":
            return server
        # It stopped or died mid-run: later cells must not wait for it, nor pretend it is there.
        record["failure"] = f"the {image} container {str(server.container_id)[:12]} of this run is {status}"
        return Unavailable(record["failure"])

    def _start(self, kind: str, image: str, record: dict[str, Any]) -> Union[Server, Unavailable]:
        self._ensure_reaper()
        password = self._password or secrets.token_urlsafe(12) + PASSWORD_SUFFIX
        labels = {containers.LABEL_INVOCATION: self.invocation, containers.LABEL_IMAGE: image}
        try:
            server = containers.start(kind, image, password, labels)
            server = Server.from_json({**server.to_json(), "server_version": admin.server_version(server)})
        except Exception as exc:
            reason = redact(f"starting {image} failed: {type(exc).__name__}: {exc}", [password])
            record["failure"] = reason[:2000]
            # A half-started container must not outlive this call.
            client, _ = engine.connect()
            if client is not None:
                with contextlib.suppress(Exception):
                    for container in client.containers.list(
                        all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]}
                    ):
                        container.remove(force=True, v=True)
                client.close()
            return Unavailable(record["failure"])
        record["server"] = server.to_json()
        return server

    # --- per-cell databases -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def cell_database(self, server: Server, cell_key: str) -> Iterator[str]:
        """A fresh, empty database for one cell on ``server``; dropped afterwards, also on error."""
        name = admin.database_name(server.name, cell_key)
        admin.drop_database(server, name)  # left over by a run that was killed before it could drop it
        admin.create_database(server, name)
        remember = server.source == "url"  # a container's databases go with the container
        try:
            if remember:
                self._ensure_reaper()
                self._record_database(server, name, add=True)
            yield name
        finally:
            try:
                admin.drop_database(server, name)
            except admin.AdminError as exc:
                # Not raised: it would hide the run's own outcome. A container's databases go with it; a URL
                # server's stay recorded, and the reaper drops them when the run ends.
                logger.warning("could not drop database %s on %s: %s", name, server.name, exc)
            else:
                if remember:
                    self._record_database(server, name, add=False)

    def _record_database(self, server: Server, name: str, *, add: bool) -> None:
        """Databases on URL servers are recorded, so the reaper drops them if this process dies first."""
        with self.state.locked(f"databases-{os.getpid()}") as record:
            entries = [e for e in record.get("databases", []) if e["name"] != name]
            if add:
                entries.append({"name": name, "server": server.to_json()})
            record["databases"] = entries

    # --- lifecycle --------------------------------------------------------------------------------------

    def release_all(self) -> list[str]:
        """Remove every container of this invocation and what it recorded, and stand its reaper down.

        Returns the removed containers' short ids. The provisioner stays usable: a later :meth:`acquire`
        starts a new container and a new reaper.
        """
        with self.state.locked("reaper") as record:
            pid = record.get("pid")
        result = reaper.reap(self.invocation, self.state_dir, log=lambda line: logger.info("release_all: %s", line))
        if result.complete and pid and reaper.process_start_time(pid) is not None:
            # Nothing is left to watch. (If something is, the reaper stays and retries when the run ends.)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return result.removed

    def _ensure_reaper(self) -> None:
        with self.state.locked("reaper") as record:
            pid = record.get("pid")
            if pid and reaper.process_start_time(pid) is not None:
                return
            record["pid"] = reaper.spawn(self.invocation, self.owner_pid, self.state_dir)
            logger.info("reaper %s watches pid %s for invocation %s", record["pid"], self.owner_pid, self.invocation)


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            return [password, unquote(password)]
    return []
