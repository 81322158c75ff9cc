"""``python -m reports --results DIR --previous DIR --out DIR``: see reports/build.py."""

import sys

from reports.build import main

raise SystemExit(main(sys.argv[1:]))
