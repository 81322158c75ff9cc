"""testcontainers' database classes, wherever this version keeps them.

testcontainers 4.9+ moved them to ``testcontainers.community`` and made the old modules warn on import,
which the test suite turns into errors; older releases only have the old modules.
"""

from __future__ import annotations

import warnings

from matrix.provision.engine import configure_testcontainers

configure_testcontainers()

try:
    from testcontainers.community.mysql import MySqlContainer
    from testcontainers.community.postgres import PostgresContainer
except ImportError:  # testcontainers < 4.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.mysql import MySqlContainer  # type: ignore[no-redef,unused-ignore]
        from testcontainers.postgres import PostgresContainer  # type: ignore[no-redef,unused-ignore]

__all__ = ["MySqlContainer", "PostgresContainer"]
