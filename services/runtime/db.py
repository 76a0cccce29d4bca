"""SQLAlchemy engines for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from sqlalchemy import BigInteger, Connection, Engine, Integer, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, scratch: bool = False) -> Engine:
    """An engine with the pragmas a small service database needs.

    `scratch`: a throwaway SQLite file (a replay's rebuilt store) skips fsync; if the process dies
    the file is discarded and the replay run again.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _scratch_pragmas if scratch else _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (the API) and the writer (relay, consumer) work at once; FULL fsyncs each
    # commit so an answered request survives a power cut (writers batch, so it costs little).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _scratch_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=OFF")
    cur.execute("PRAGMA synchronous=OFF")
    cur.close()


# BIGINT on PostgreSQL, INTEGER on SQLite (only a rowid alias autoincrements there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utc(value: datetime) -> datetime:
    """A stored time as aware UTC: SQLite hands datetimes back naive, and all we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite (naive UTC, its DATETIME storage format), for raw
    inserts read back through a Table. Called per row on the audit's hot path: %-formatting takes
    two thirds of isoformat()'s time (which goes through C's vsprintf, a sixth of a row's insert
    in callgrind)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return _SQLITE_TIME % (value.year, value.month, value.day, value.hour, value.minute,
                           value.second, value.microsecond)


_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


SQLITE_ROWS_PER_INSERT = 250


def insert_rows(conn: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
    """The hot-path insert of many rows as plain DB-API tuples: a third cheaper per row than
    SQLAlchemy's per-row bind processing. On SQLite, multi-row INSERTs: sqlite3 releases the GIL
    once per statement step, so a statement per row would hand the GIL back and forth with the
    event loop's thread hundreds of times per batch. psycopg pipelines a plain executemany."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(_insert_sql(table, tuple(columns), "%s", 1), rows)
        return
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        chunk = rows[start:start + SQLITE_ROWS_PER_INSERT]
        conn.exec_driver_sql(_insert_sql(table, tuple(columns), "?", len(chunk)),
                             tuple(chain.from_iterable(chunk)))


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], mark: str, rows: int) -> str:
    values = "(" + ", ".join([mark] * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([values] * rows)
