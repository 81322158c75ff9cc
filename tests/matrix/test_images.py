"""The offline image recipes and the parts of the build that need neither root nor Docker."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from matrix.axes import load
from matrix.images import RECIPES, ImageBuildError, build_all
from matrix.images.build import _remove_tree
from matrix.images.recipes import ENTRYPOINTS, POSTGRESQL

ROOT = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"


def test_every_offline_image_in_axes_toml_has_a_recipe() -> None:
    matrix = load(ROOT / "matrix" / "axes.toml")
    wanted = {d.offline_image for d in matrix.databases if d.offline_image}
    assert wanted, "axes.toml maps no database to an offline image"
    assert wanted <= {r.image for r in RECIPES}


def test_slugs_name_the_cache_directories() -> None:
    assert [r.slug for r in RECIPES] == ["postgresql-15", "mariadb-10.11"]


def test_the_image_key_follows_everything_the_image_is_made_of() -> None:
    base = POSTGRESQL.image_key(MIRROR)
    assert base == POSTGRESQL.image_key(MIRROR)  # stable
    assert POSTGRESQL.image_key("http://mirror.example/debian") != base
    assert dataclasses.replace(POSTGRESQL, packages=("postgresql-15",)).image_key(MIRROR) != base
    assert dataclasses.replace(POSTGRESQL, changes=("EXPOSE 1",)).image_key(MIRROR) != base
    assert dataclasses.replace(POSTGRESQL, entrypoint="mariadb.sh").image_key(MIRROR) != base
    # ...but only the package list and mirror force a new debootstrap.
    assert dataclasses.replace(POSTGRESQL, changes=()).rootfs_key(MIRROR) == POSTGRESQL.rootfs_key(MIRROR)


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
