"""The append-only audit tables and their queries (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from services.audit.domain import Batch, ChainHead, ChainRow, Entry, Message, plan
from services.runtime.db import BigId, insert_rows, sqlite_time, utc

metadata = MetaData()

audit_events = Table(
    "audit_events",
    metadata,
    # Ingestion order across both chains: the keyset for paging.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("stream", String(32), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("stream_seq", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("type", String(200), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream", "position", name="uq_audit_events_stream_position"),
    UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    Index("ix_audit_events_subject", "subject"),
    Index("ix_audit_events_type", "type"),
    Index("ix_audit_events_time", "time"),
)

# Where each stream has been read to, written in the same transaction as the entries, so the
# store is its own consumer cursor: a crash can neither skip nor repeat a message.
audit_cursor = Table(
    "audit_cursor",
    metadata,
    Column("stream", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class EventFilter:
    subject: str | None = None
    subject_prefixes: tuple[str, ...] = ()  # an aggregate and its children: `p` or `p/...`
    type: str | None = None
    actor: str | None = None
    stream: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def head(self, stream: str) -> ChainHead:
        t = audit_events
        query = (select(t.c.position, t.c.hash).where(t.c.stream == stream)
                 .order_by(t.c.position.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return ChainHead(row.position, row.hash) if row else ChainHead()

    def snapshot(self, stream: str) -> tuple[int, ChainHead]:
        """Cursor and head in one statement, so they describe the same cut of the stream."""
        t = audit_events
        last = t.select().where(t.c.stream == stream).order_by(t.c.position.desc()).limit(1).subquery()
        query = select(
            select(audit_cursor.c.last_seq).where(audit_cursor.c.stream == stream).scalar_subquery(),
            select(last.c.position).scalar_subquery(),
            select(last.c.hash).scalar_subquery(),
        )
        with self.engine.connect() as conn:
            seq, position, digest = conn.execute(query).one()
        return seq or 0, ChainHead(position, digest) if position else ChainHead()

    def cursor(self, stream: str) -> int:
        with self.engine.connect() as conn:
            value = conn.scalar(select(audit_cursor.c.last_seq).where(audit_cursor.c.stream == stream))
        return value or 0

    def chained_ids(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        with self.engine.connect() as conn:
            found = conn.scalars(select(audit_events.c.event_id).where(audit_events.c.event_id.in_(ids)))
            return set(found)

    def append(self, stream: str, batch: Batch) -> None:
        """Entries and the new cursor in one transaction."""
        with self.engine.begin() as conn:
            if batch.entries:
                _insert_entries(conn, batch.entries)
            moved = conn.execute(update(audit_cursor).where(audit_cursor.c.stream == stream)
                                 .values(last_seq=batch.last_seq))
            if moved.rowcount == 0:
                conn.execute(insert(audit_cursor).values(stream=stream, last_seq=batch.last_seq))

    def append_planned(self, stream: str, head: ChainHead, messages: list[Message],
                       batch: Batch) -> Batch:
        """Write a batch planned after `head`; returns what was written.

        Re-published events are rare, so the unique event id finds them: on a conflict, look
        those ids up and chain the batch without them.
        """
        try:
            self.append(stream, batch)
        except IntegrityError:
            known = self.chained_ids([e.event_id for e in batch.entries])
            batch = plan(head, messages, known)
            self.append(stream, batch)
        return batch

    def chain(self, stream: str) -> Iterator[ChainRow]:
        t = audit_events
        query = (select(t.c.position, t.c.payload, t.c.prev_hash, t.c.hash)
                 .where(t.c.stream == stream).order_by(t.c.position))
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=5000).execute(query):
                yield ChainRow(row.position, bytes(row.payload), row.prev_hash, row.hash)

    def streams(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.scalars(select(audit_events.c.stream).distinct().order_by("stream")))

    def count(self, stream: str) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).where(audit_events.c.stream == stream)) or 0

    def events(self, f: EventFilter, limit: int, after_id: int = 0) -> tuple[list[dict], int | None]:
        """One page in ingestion order, and the cursor for the next page (None at the end)."""
        t = audit_events
        query = select(t).where(t.c.id > after_id)
        if f.subject:
            query = query.where(t.c.subject == f.subject)
        if f.subject_prefixes:
            query = query.where(or_(*(
                or_(t.c.subject == p, t.c.subject.startswith(p + "/", autoescape=True))
                for p in f.subject_prefixes)))
        for column, value in ((t.c.type, f.type), (t.c.actor, f.actor), (t.c.stream, f.stream)):
            if value:
                query = query.where(column == value)
        if f.since:
            query = query.where(t.c.time >= f.since)
        if f.until:
            query = query.where(t.c.time < f.until)
        query = query.order_by(t.c.id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_public(r) for r in rows], (rows[-1].id if more else None)


_COLUMNS = ("stream", "position", "stream_seq", "event_id", "type", "subject", "time", "actor",
            "payload", "prev_hash", "hash")


def _insert_entries(conn: Connection, entries: list[Entry]) -> None:
    sqlite = conn.dialect.name == "sqlite"
    insert_rows(conn, "audit_events", _COLUMNS, [
        (e.stream, e.position, e.stream_seq, e.event_id, e.type, e.subject,
         sqlite_time(e.time) if sqlite else e.time, e.actor, e.payload, e.prev_hash, e.hash)
        for e in entries
    ])


def _public(row) -> dict:
    return {
        "stream": row.stream, "position": row.position, "stream_seq": row.stream_seq,
        "event_id": row.event_id, "type": row.type, "subject": row.subject, "time": utc(row.time),
        "actor": row.actor, "prev_hash": row.prev_hash, "hash": row.hash,
        "event": json.loads(row.payload),
    }
