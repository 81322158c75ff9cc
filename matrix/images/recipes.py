"""What each offline image holds: Debian packages, an entrypoint, the config `docker import` applies.

The image names are the ``offline_image`` values of ``matrix/axes.toml``. Debian bookworm ships PostgreSQL 15
and MariaDB 10.11, so those stand in for every server version of their family on machines with no registry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

ENTRYPOINTS = Path(__file__).parent / "entrypoints"
SUITE = "bookworm"
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
    image: str  # the tag, e.g. "greenlight-offline/postgresql:15"
    packages: tuple[str, ...]  # given to `debootstrap --include`
    entrypoint: str  # file name under entrypoints/
    changes: tuple[str, ...]  # Dockerfile instructions for `docker import --change`
    prune: tuple[str, ...] = ()  # paths (relative to the root filesystem) removed after install

    @property
    def slug(self) -> str:
        """A file-system-safe name for the cached root filesystem, e.g. ``postgresql-15``."""
        repository, _, tag = self.image.partition(":")
        return f"{repository.rsplit('/', 1)[-1]}-{tag or 'latest'}"

    def rootfs_key(self, mirror: str) -> str:
        """What the cached debootstrap output depends on; a change re-runs debootstrap."""
        return _digest({"suite": SUITE, "mirror": mirror, "packages": self.packages, "format": BUILD_FORMAT})

    def image_key(self, mirror: str) -> str:
        """What the image depends on; stored as a label so an up-to-date image is never rebuilt."""
        script = (ENTRYPOINTS / self.entrypoint).read_bytes()
        return _digest(
            {
                "rootfs": self.rootfs_key(mirror),
                "prune": COMMON_PRUNE + self.prune,
                "changes": self.changes,
                "entrypoint": hashlib.sha256(script).hexdigest(),
            }
        )


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENTRYPOINT = f'ENTRYPOINT ["/{ENTRYPOINT_PATH}"]'

POSTGRESQL = Recipe(
    image="greenlight-offline/postgresql:15",
    packages=("postgresql-15", "postgresql-client-15"),
    entrypoint="postgresql.sh",
    changes=(
        _ENTRYPOINT,
        'CMD ["postgres"]',
        # The version's own bin/ first: psql, pg_ctl and initdb without Debian's perl wrappers.
        f"ENV PATH=/usr/lib/postgresql/15/bin:{_PATH}",
        "ENV PGDATA=/var/lib/postgresql/data",
        "ENV LANG=C.UTF-8",
        "EXPOSE 5432",
    ),
    # Debian's package creates a "main" cluster; the entrypoint makes its own in $PGDATA.
    prune=("var/lib/postgresql/15/main", "etc/postgresql/15/main"),
)

MARIADB = Recipe(
    image="greenlight-offline/mariadb:10.11",
    packages=("mariadb-server", "mariadb-client"),
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

RECIPES: tuple[Recipe, ...] = (POSTGRESQL, MARIADB)
