"""``python -m matrix.images [--force] [--only NAME ...] [--cache-dir DIR]``: build the offline images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matrix.images import RECIPES, ImageBuildError, build_all

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matrix.images", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when the image is up to date")
    parser.add_argument("--only", action="append", metavar="NAME", help=f"one of: {', '.join(r.slug for r in RECIPES)}")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "images")
    args = parser.parse_args(argv)
    try:
        build_all(args.cache_dir, only=args.only, force=args.force)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
