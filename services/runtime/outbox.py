"""Transactional outbox: the state change and its event commit together; a relay publishes later.

The relay publishes rows in insertion order, waits for JetStream's PubAck, and only then marks
them sent. A crash between the two re-publishes the row: the server drops it inside its duplicate
window (Nats-Msg-Id = event id) and consumers drop it by event id after that. So a NATS outage
delays events but never loses or duplicates them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from opentelemetry.trace import SpanKind
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from contracts.envelope import CloudEvent
from contracts.streams import subject_for
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.db import BigId
from services.runtime.telemetry import context_from, current_traceparent, tracer

log = logging.getLogger(__name__)



def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("subject", String(255), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("traceparent", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True)),
        Index("ix_outbox_unsent", "sent_at", "id"),
    )


def enqueue(conn: Connection, table: Table, event: CloudEvent, model: str | None = None) -> None:
    """Add the event to the caller's open transaction: it is published iff the change commits."""
    conn.execute(
        insert(table).values(
            event_id=event.id,
            subject=subject_for(event.type, model),
            payload=event.canonical_bytes(),
            traceparent=event.traceparent,
            created_at=datetime.now(UTC),
        )
    )


def pending_count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).where(table.c.sent_at.is_(None))) or 0


class Relay:
    """Publishes outbox rows to JetStream in order; woken after each commit, polls as a backstop."""

    def __init__(self, engine: Engine, table: Table, bus: Bus, batch: int = 256) -> None:
        self.engine = engine
        self.table = table
        self.bus = bus
        self.batch = batch
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.published = 0
        self._stopping = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        # Python 3.11's wait_for swallows a cancel that races a wake-up (notify right before
        # shutdown), leaving stop() waiting forever; the flag ends the loop either way.
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def notify(self) -> None:
        """Safe from any thread: handlers run in FastAPI's thread pool."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.flush_once()
            except BusUnavailable:
                sent = 0
            except Exception:  # noqa: BLE001 - the relay must outlive any single failure
                log.exception("outbox relay failed; retrying")
                sent = 0
            if sent:
                continue  # more may be waiting
            self._wake.clear()
            try:
                async with asyncio.timeout(0.5):  # not wait_for: see nats_wire.py
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def flush_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were published and marked."""
        if not self.bus.connected:
            return 0
        rows = await asyncio.to_thread(self._unsent)
        done: list[int] = []
        try:
            for row in rows:
                await self._publish(row)
                done.append(row.id)
        finally:
            if done:
                await asyncio.to_thread(self._mark_sent, done)
                self.published += len(done)
        return len(done)

    async def _publish(self, row) -> None:
        with tracer.start_as_current_span(
            f"publish {row.subject}", context=context_from(row.traceparent), kind=SpanKind.PRODUCER
        ) as span:
            span.set_attribute("messaging.system", "nats")
            span.set_attribute("messaging.destination.name", row.subject)
            span.set_attribute("messaging.message.id", row.event_id)
            headers = {"traceparent": current_traceparent() or ""}
            await self.bus.publish(row.subject, row.payload, row.event_id, headers)

    def _unsent(self):
        t = self.table
        query = (
            select(t.c.id, t.c.event_id, t.c.subject, t.c.payload, t.c.traceparent)
            .where(t.c.sent_at.is_(None))
            .order_by(t.c.id)
            .limit(self.batch)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def _mark_sent(self, ids: list[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(self.table).where(self.table.c.id.in_(ids)).values(sent_at=datetime.now(UTC))
            )
