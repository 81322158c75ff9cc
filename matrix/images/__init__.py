"""Offline database images for machines with no registry: testcontainers-compatible, from Debian packages.

``nox -s images`` (or ``python -m matrix.images``) builds them; ``matrix/axes.toml`` maps databases to them
with ``offline_image``. :mod:`matrix.images.recipes` says what each holds, :mod:`matrix.images.build` how.
"""

from matrix.images.build import BuildResult, ImageBuildError, build_all
from matrix.images.recipes import RECIPES, Recipe

__all__ = ["RECIPES", "BuildResult", "ImageBuildError", "Recipe", "build_all"]
