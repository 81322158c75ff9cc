"""Offline database images for machines with no registry: testcontainers-compatible, built from Debian packages.

``nox -s images`` (or ``python -m matrix.images``) builds them; ``matrix/axes.toml`` maps databases to them with
``offline_image``. See :mod:`matrix.images.recipes` for what each holds and :mod:`matrix.images.build` for how.
"""

from matrix.images.build import BuildResult, ImageBuildError, build_all
from matrix.images.recipes import RECIPES, Recipe

__all__ = ["RECIPES", "BuildResult", "ImageBuildError", "Recipe", "build_all"]
