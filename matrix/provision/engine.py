"""The Docker engine: configure testcontainers for machines like ours; say exactly why there is no engine."""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path
from typing import Any, Optional

# testcontainers reads these when it is imported, so they are set before any import of it.
# - Ryuk: its image cannot be pulled without a registry; this package's reaper removes containers instead.
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
    host = docker_host()
    # Before importing the docker package (a tenth of a CPU-s): every cell's nox process asks.
    if host.startswith("unix://") and not Path(host[len("unix://") :]).exists():
        return None, f"no Docker engine answers at {host}: the socket does not exist"
    try:
        import docker
    except ImportError as exc:
        return None, f"the docker Python package is missing ({exc}); install testcontainers"
    client = None
    try:
        client = docker.from_env(timeout=PING_TIMEOUT)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, a bad DOCKER_HOST...
        if client is not None:
            client.close()
        _collect_leaked_sockets()
        return None, f"no Docker engine answers at {host}: {_short(exc)}"
    return client, None


def _collect_leaked_sockets() -> None:
    """docker-py leaves the socket of a failed connection open; collect it now, without a ResourceWarning.

    Left to the garbage collector, it warns at some random later point (an error under our test settings).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
