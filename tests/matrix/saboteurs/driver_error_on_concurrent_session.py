"""Gather over one AsyncSession failing with the driver's error instead of SQLAlchemy's clean one, as before 2.0's
guard against concurrent use: asyncpg's "cannot perform operation: another operation is in progress"."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from sqlalchemy import exc
from sqlalchemy.orm import session as orm_session

ANOTHER_OPERATION = "cannot perform operation: another operation is in progress"


def pytest_configure(config: pytest.Config) -> None:
    # Removing the guard alone is not enough: the tasks then share the connection one statement at a time and get
    # right results, which the scenario accepts. Where the guard refuses the second task, it fails as the driver did.
    guarded = orm_session.SessionTransaction._connection_for_bind

    @functools.wraps(guarded)
    def driver_error_instead(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return guarded(self, *args, **kwargs)
        except exc.InvalidRequestError as refused:
            raise exc.InterfaceError(None, None, Exception(ANOTHER_OPERATION)) from refused

    orm_session.SessionTransaction._connection_for_bind = driver_error_instead
