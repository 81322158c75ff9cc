"""The Docker engine: configure testcontainers for machines like ours, and say exactly why there is no engine."""

from __future__ import annotations

import os
from typing import Any, Optional

# testcontainers reads these when it is imported, so they are set before any import of it.
# - Ryuk: its image cannot be pulled without a registry; the reaper in this package removes containers instead.
# - docker_host + TC_HOST: connect to the published port on loopback, not through a 172.17.x gateway address.
TESTCONTAINERS_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TC_HOST": "127.0.0.1",
}
PING_TIMEOUT = 10


def configure_testcontainers() -> None:
    """Set the testcontainers environment unless the user set it already."""
    for name, value in TESTCONTAINERS_ENV.items():
        os.environ.setdefault(name, value)


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> tuple[Optional[Any], Optional[str]]:
    """``(client, None)`` for an engine that answers a ping, else ``(None, reason)``."""
    try:
        import docker
    except ImportError as exc:
        return None, f"the docker Python package is missing ({exc}); install testcontainers"
    try:
        client = docker.from_env(timeout=PING_TIMEOUT)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, a bad DOCKER_HOST...
        return None, f"no Docker engine answers at {docker_host()}: {_short(exc)}"
    return client, None


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
