"""``python -m matrix.images [--force] [--only NAME ...] [--tested] [--cache-dir DIR]``: build the offline images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matrix.images import RECIPES, ImageBuildError, build_all
from matrix.images.recipes import TESTED

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matrix.images", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when the image is up to date")
    parser.add_argument("--only", action="append", metavar="NAME", help=f"one of: {', '.join(r.slug for r in RECIPES)}")
    parser.add_argument(
        "--tested",
        action="store_true",
        help=f"only the images the project's own tests start ({', '.join(r.slug for r in TESTED)}; what CI builds)",
    )
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "images")
    args = parser.parse_args(argv)
    try:
        only = [*(args.only or ()), *(r.slug for r in TESTED if args.tested)] or None
        build_all(args.cache_dir, only=only, force=args.force)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
