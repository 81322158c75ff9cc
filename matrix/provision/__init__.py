"""Database servers for the matrix: containers started once per `nox` invocation, or servers named by URL.

    prov = Provisioner(state_dir=Path("build/provision"))
    got = prov.acquire(database)                  # Server | Unavailable(reason)
    with prov.cell_database(got, cell_key) as name:
        url = got.url(driver="asyncpg", database=name)

Modules, one job each: ``server`` (what is handed out), ``urls`` (GREENLIGHT_*_URL), ``engine`` (Docker and
the testcontainers environment), ``containers`` (start one image), ``admin`` (create/drop databases),
``state`` (files shared between processes), ``reaper`` (cleanup once the invocation is gone), ``provisioner``
(all of them together).
"""

from matrix.provision.provisioner import Provisioner
from matrix.provision.server import Server, Unavailable

__all__ = ["Provisioner", "Server", "Unavailable"]
