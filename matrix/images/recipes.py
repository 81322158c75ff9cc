"""What each offline image holds: a Debian suite and packages, an entrypoint, the config `docker import` applies.

The image names are the ``offline_image`` values of ``matrix/axes.toml``; each is tagged with the server version it
really runs, which the build checks against the installed package. Debian's suites carry one version each:
bookworm PostgreSQL 15 and MariaDB 10.11, trixie PostgreSQL 17 and MariaDB 11.8, sid PostgreSQL 18 and MySQL 9.7.
A root filesystem of a newer suite than the host's is fine: only the container runs its libc.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from matrix.debian import digest

ENTRYPOINTS = Path(__file__).parent / "entrypoints"
ENTRYPOINT_PATH = "usr/local/bin/docker-entrypoint.sh"
# Bumped when the build procedure itself changes in a way that must rebuild every image.
BUILD_FORMAT = 1

# Removed from every root filesystem after debootstrap: documentation and apt's indexes (about 200 MB) that no
# container needs.
COMMON_PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)


@dataclass(frozen=True)
class Recipe:
    image: str  # the tag, e.g. "greenlight-offline/postgresql:15": the tag is the server's version series
    suite: str  # the Debian suite debootstrapped, e.g. "bookworm", "trixie", "sid"
    packages: tuple[str, ...]  # given to `debootstrap --include`
    server_package: str  # the package whose installed version must match the tag (checked after debootstrap)
    entrypoint: str  # file name under entrypoints/
    changes: tuple[str, ...]  # Dockerfile instructions for `docker import --change`
    prune: tuple[str, ...] = ()  # paths (relative to the root filesystem) removed after install

    @property
    def slug(self) -> str:
        """A file-system-safe name for the cached root filesystem, e.g. ``postgresql-15``."""
        repository, _, tag = self.image.partition(":")
        return f"{repository.rsplit('/', 1)[-1]}-{tag or 'latest'}"

    @property
    def version(self) -> str:
        """The server version series the image is tagged with, e.g. ``17`` or ``11.8``."""
        return self.image.partition(":")[2]

    def rootfs_key(self, mirror: str) -> str:
        """What the cached debootstrap output depends on; a change re-runs debootstrap."""
        return digest({"suite": self.suite, "mirror": mirror, "packages": self.packages, "format": BUILD_FORMAT})

    def image_key(self, mirror: str) -> str:
        """What the image depends on; stored as a label so an up-to-date image is never rebuilt."""
        script = (ENTRYPOINTS / self.entrypoint).read_bytes()
        return digest(
            {
                "rootfs": self.rootfs_key(mirror),
                "prune": COMMON_PRUNE + self.prune,
                "changes": self.changes,
                "entrypoint": hashlib.sha256(script).hexdigest(),
            }
        )


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENTRYPOINT = f'ENTRYPOINT ["/{ENTRYPOINT_PATH}"]'


def _postgresql(major: int, suite: str) -> Recipe:
    return Recipe(
        image=f"greenlight-offline/postgresql:{major}",
        suite=suite,
        packages=(f"postgresql-{major}", f"postgresql-client-{major}"),
        server_package=f"postgresql-{major}",
        entrypoint="postgresql.sh",
        changes=(
            _ENTRYPOINT,
            'CMD ["postgres"]',
            # The version's own bin/ first: psql, pg_ctl and initdb without Debian's perl wrappers.
            f"ENV PATH=/usr/lib/postgresql/{major}/bin:{_PATH}",
            "ENV PGDATA=/var/lib/postgresql/data",
            "ENV LANG=C.UTF-8",
            "EXPOSE 5432",
        ),
        # Debian's package creates a "main" cluster; the entrypoint makes its own in $PGDATA.
        prune=(f"var/lib/postgresql/{major}/main", f"etc/postgresql/{major}/main"),
    )


def _mariadb(version: str, suite: str) -> Recipe:
    return Recipe(
        image=f"greenlight-offline/mariadb:{version}",
        suite=suite,
        packages=("mariadb-server", "mariadb-client"),
        server_package="mariadb-server",
        entrypoint="mariadb.sh",
        changes=(
            _ENTRYPOINT,
            'CMD ["mariadbd"]',
            f"ENV PATH={_PATH}",
            "ENV LANG=C.UTF-8",
            "EXPOSE 3306",
        ),
        # The package initialised a data directory during install; the entrypoint initialises its own, with the
        # users and passwords the container is started with.
        prune=("var/lib/mysql",),
    )


POSTGRESQL_15 = _postgresql(15, "bookworm")
POSTGRESQL_17 = _postgresql(17, "trixie")
POSTGRESQL_18 = _postgresql(18, "sid")
MARIADB_10_11 = _mariadb("10.11", "bookworm")
MARIADB_11_8 = _mariadb("11.8", "trixie")
MYSQL_9_7 = Recipe(
    image="greenlight-offline/mysql:9.7",
    suite="sid",
    packages=("mysql-server", "mysql-client"),
    server_package="mysql-server",
    entrypoint="mysql.sh",
    changes=(
        _ENTRYPOINT,
        'CMD ["mysqld"]',
        f"ENV PATH={_PATH}",
        "ENV LANG=C.UTF-8",
        "EXPOSE 3306",
    ),
    # As for MariaDB: the entrypoint initialises the data directory with the container's users and passwords.
    # The port file is what the package's postinst writes when 3306 is taken on the building host (by a local
    # server: debootstrap's chroot shares the host's network).
    prune=("var/lib/mysql", "etc/mysql/mysql.conf.d/99-port-backoff.cnf"),
)

RECIPES: tuple[Recipe, ...] = (POSTGRESQL_15, POSTGRESQL_17, POSTGRESQL_18, MARIADB_10_11, MARIADB_11_8, MYSQL_9_7)

# The images the project's own Docker tests start (tests/matrix/test_images_docker.py, test_provision_docker.py,
# test_chaos.py, test_bench.py, test_faults.py): one per entrypoint, the bookworm ones where there is a choice
# (the host's own suite, the quickest to build). `.ci/docker.sh` builds only these; `nox -s images` builds all.
TESTED: tuple[Recipe, ...] = (POSTGRESQL_15, MARIADB_10_11, MYSQL_9_7)
