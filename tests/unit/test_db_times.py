"""Times written by raw inserts read back exactly as SQLAlchemy's own writes would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from services.runtime.db import sqlite_time


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 24, 4, 30, 5, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds
    datetime(2026, 11, 24, 6, 30, 5, 7, tzinfo=timezone(timedelta(hours=2))),  # not UTC
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
])
def test_a_raw_insert_stores_a_time_as_sqlalchemy_does_on_sqlite(value):
    stored_by_sqlalchemy = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert sqlite_time(value) == stored_by_sqlalchemy(value.astimezone(UTC).replace(tzinfo=None))
