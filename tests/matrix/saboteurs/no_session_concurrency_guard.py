"""SQLAlchemy 1.4's AsyncSession, without 2.0's guard against concurrent use: no clean InvalidRequestError."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import session as orm_session


def pytest_configure(config: pytest.Config) -> None:
    # The guard is the state-change decorator around _connection_for_bind; __wrapped__ is the bare method.
    guarded = orm_session.SessionTransaction._connection_for_bind
    orm_session.SessionTransaction._connection_for_bind = guarded.__wrapped__
