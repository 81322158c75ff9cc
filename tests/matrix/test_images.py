"""The offline image recipes and the parts of the build that need neither root nor Docker."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from matrix.axes_file import load
from matrix.images import RECIPES, ImageBuildError, build_all
from matrix.images.build import _remove_tree, check_server_version
from matrix.images.recipes import ENTRYPOINTS, MARIADB_11_8, POSTGRESQL_15, TESTED

ROOT = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"


def test_every_offline_image_in_axes_toml_has_a_recipe() -> None:
    matrix = load(ROOT / "matrix" / "axes.toml")
    wanted = {d.offline_image for d in matrix.databases if d.offline_image}
    assert wanted, "axes.toml maps no database to an offline image"
    assert wanted <= {r.image for r in RECIPES}


def test_every_database_row_names_one_server_version_and_no_stand_in() -> None:
    # postgresql-17 runs postgres:17 or greenlight-offline/postgresql:17, never another version's image; and no
    # two rows share an image (the run would record the second as not-run "same server as ...").
    official = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb"}
    matrix = load(ROOT / "matrix" / "axes.toml")
    servers = [d for d in matrix.databases if d.kind != "sqlite"]
    assert servers
    for database in servers:
        family, _, version = database.name.partition("-")
        assert database.image == f"{official[family]}:{version}", database
        assert database.offline_image == f"greenlight-offline/{family}:{version}", database
    assert len({d.offline_image for d in servers}) == len(servers)
    assert len({d.image for d in servers}) == len(servers)


def test_slugs_name_the_cache_directories() -> None:
    assert [r.slug for r in RECIPES] == [
        "postgresql-15",
        "postgresql-17",
        "postgresql-18",
        "mariadb-10.11",
        "mariadb-11.8",
        "mysql-9.7",
    ]
    assert [r.suite for r in RECIPES] == ["bookworm", "trixie", "sid", "bookworm", "trixie", "sid"]
    # CI builds one image per entrypoint, the bookworm one where there is a choice.
    assert {r.entrypoint for r in TESTED} == {r.entrypoint for r in RECIPES}


def test_the_image_key_follows_everything_the_image_is_made_of() -> None:
    base = POSTGRESQL_15.image_key(MIRROR)
    assert base == POSTGRESQL_15.image_key(MIRROR)  # stable
    assert POSTGRESQL_15.image_key("http://mirror.example/debian") != base
    assert dataclasses.replace(POSTGRESQL_15, packages=("postgresql-15",)).image_key(MIRROR) != base
    assert dataclasses.replace(POSTGRESQL_15, suite="trixie").image_key(MIRROR) != base
    assert dataclasses.replace(POSTGRESQL_15, changes=("EXPOSE 1",)).image_key(MIRROR) != base
    assert dataclasses.replace(POSTGRESQL_15, entrypoint="mariadb.sh").image_key(MIRROR) != base
    # ...but only the suite, the package list and the mirror force a new debootstrap.
    assert dataclasses.replace(POSTGRESQL_15, changes=()).rootfs_key(MIRROR) == POSTGRESQL_15.rootfs_key(MIRROR)
    assert dataclasses.replace(POSTGRESQL_15, suite="sid").rootfs_key(MIRROR) != POSTGRESQL_15.rootfs_key(MIRROR)
    # Two recipes with the same packages from different suites are different images (MariaDB 10.11 and 11.8).
    assert len({r.rootfs_key(MIRROR) for r in RECIPES}) == len(RECIPES)


def test_the_build_refuses_a_server_of_another_series_than_the_tag(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)

    def installed(version: str) -> None:
        status.write_text(
            "Package: mariadb-client\nStatus: install ok installed\nVersion: 1:99.1\n\n"
            f"Package: mariadb-server\nStatus: install ok installed\nVersion: {version}\n"
        )

    installed("1:11.8.9+ds-0+deb13u1")
    assert check_server_version(MARIADB_11_8, tmp_path) == "1:11.8.9+ds-0+deb13u1"
    installed("1:11.80.1-1")  # 11.80 is not of the 11.8 series
    with pytest.raises(ImageBuildError, match=r"installed mariadb-server 1:11\.80\.1-1, not the 11\.8 series"):
        check_server_version(MARIADB_11_8, tmp_path)
    status.write_text("Package: postgresql-15\nStatus: deinstall ok config-files\nVersion: 15.1-1\n")
    with pytest.raises(ImageBuildError, match="did not install postgresql-15"):
        check_server_version(POSTGRESQL_15, tmp_path)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.slug)
def test_entrypoints_are_valid_posix_sh(recipe: object) -> None:
    script = ENTRYPOINTS / recipe.entrypoint  # type: ignore[attr-defined]
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert script.read_text().startswith("#!/bin/sh\n")


def test_unknown_image_names_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"unknown image in \['nope'\]; known: postgresql-15"):
        build_all(tmp_path, only=["nope"])


def test_remove_tree_unmounts_instead_of_deleting_through_a_mount(tmp_path: Path) -> None:
    # A debootstrap that died can leave host directories mounted inside its target (/proc, /dev...); removing
    # the target must unmount them, never delete what they show.
    target = tmp_path / "rootfs"
    (target / "dev").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    mounted = subprocess.run(["mount", "--bind", str(outside), str(target / "dev")], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {mounted.stderr.strip()}")
    try:
        assert (target / "dev" / "keep").exists()
        _remove_tree(target)
    finally:
        subprocess.run(["umount", str(target / "dev")], capture_output=True)
    assert not target.exists()
    assert (outside / "keep").read_text() == "precious"
