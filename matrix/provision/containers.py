"""Start one database container with testcontainers, from the registry image or the local offline image."""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Optional

from matrix.provision.engine import configure_testcontainers
from matrix.provision.server import Server

logger = logging.getLogger(__name__)

LABEL_INVOCATION = "greenlight.invocation"
LABEL_IMAGE = "greenlight.image"
# The user and database the container is created with; per-cell databases are created beside it.
USER = {"postgresql": "greenlight", "mysql": "root"}
DATABASE = "greenlight"
PORT = {"postgresql": 5432, "mysql": 3306}


def image_override_variable(database_name: str) -> str:
    """``GREENLIGHT_IMAGE_POSTGRESQL_17`` for database ``postgresql-17``."""
    return "GREENLIGHT_IMAGE_" + re.sub(r"[^A-Z0-9]", "_", database_name.upper())


def resolve_image(client: Any, database: Any, environ: dict[str, str]) -> tuple[Optional[str], str]:
    """The image to start for ``database`` and why; ``(None, reason)`` when there is none.

    Order: the ``GREENLIGHT_IMAGE_<NAME>`` override; the registry image if it is present locally; the offline
    image if it is present locally; the registry image if it can be pulled.
    """
    variable = image_override_variable(database.name)
    override = environ.get(variable)
    if override:
        if _present(client, override) or _pull(client, override) is None:
            return override, f"{variable}={override}"
        return None, f"image {override} (from {variable}) is not present locally and cannot be pulled"
    for candidate in (database.image, database.offline_image):
        if candidate and _present(client, candidate):
            return candidate, "present locally"
    if database.image:
        error = _pull(client, database.image)
        if error is None:
            return database.image, "pulled"
        offline = (
            f"and its offline image {database.offline_image} is not built (run `nox -s images`)"
            if database.offline_image
            else f"and {database.name} has no offline_image in matrix/axes.toml"
        )
        return (
            None,
            f"image {database.image} is not present locally and cannot be pulled ({error}), {offline}",
        )
    return None, f"{database.name} names no image in matrix/axes.toml"


def start(kind: str, image: str, password: str, labels: dict[str, str]) -> Server:
    """Start ``image`` and wait until it accepts connections; the container is removed if that fails."""
    configure_testcontainers()
    container = _container(kind, image, password)
    # Published on loopback only: nothing outside this machine can reach the test server.
    container.ports[PORT[kind]] = ("127.0.0.1",)
    container.with_kwargs(labels=labels)
    start = time.perf_counter()
    try:
        container.start()
        port = int(container.get_exposed_port(PORT[kind]))
        container_id = container.get_container_id()
    except BaseException:
        _remove_quietly(container)
        raise
    seconds = time.perf_counter() - start
    logger.info("started %s as %s on 127.0.0.1:%s in %.1f s", image, container_id[:12], port, seconds)
    return Server(
        name=image,
        kind=kind,
        host="127.0.0.1",
        port=port,
        user=USER[kind],
        password=password,
        source="container",
        admin_database=DATABASE,
        container_id=container_id,
        image=image,
        start_seconds=round(seconds, 2),
    )


def status(client: Any, container_id: str) -> str:
    """Docker's state of the container ("running", "exited", ...), or "removed"."""
    import docker.errors

    try:
        return str(client.containers.get(container_id).status)
    except docker.errors.NotFound:
        return "removed"


def remove_labelled(client: Any, label: str, value: str) -> list[str]:
    """Remove every container (running or not) with ``label=value``; their short ids."""
    import docker.errors

    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{label}={value}"}):
        try:
            container.remove(force=True, v=True)
            removed.append(container.short_id)
        except docker.errors.NotFound:
            pass  # removed meanwhile by another process of the same invocation
    return removed


def _container(kind: str, image: str, password: str) -> Any:
    if kind == "postgresql":
        from matrix.provision._tc import PostgresContainer

        return PostgresContainer(image, username=USER[kind], password=password, dbname=DATABASE, driver=None)
    if kind == "mysql":
        from matrix.provision._tc import MySqlContainer

        # As root: the per-cell databases are created with this account.
        return MySqlContainer(image, username=USER[kind], password=password, dbname=DATABASE)
    raise ValueError(f"no container for database kind {kind!r}")


def _present(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _pull(client: Any, image: str) -> Optional[str]:
    """None when ``image`` was pulled, else the error (fast here: no registry resolves)."""
    repository, _, tag = image.partition(":")
    try:
        client.images.pull(repository, tag=tag or "latest")
    except Exception as exc:
        # The engine's own explanation ("... lookup registry-1.docker.io ...: no such host"), not the HTTP wrapper.
        detail = str(getattr(exc, "explanation", None) or exc)
        return detail if len(detail) <= 300 else detail[:297] + "..."
    return None


def _remove_quietly(container: Any) -> None:
    try:
        container.stop()
    except Exception as exc:  # the original error matters more; this one is only logged
        logger.warning("could not remove a container that failed to start: %s", exc)
