"""Durable pull consumers: explicit ack, exactly-once effects by event id, dead letters.

Each fetched batch is handled in one database transaction together with its `processed_events`
rows (consumer, event_id): a re-delivery or a re-publication finds the row and is only acked. One
transaction per batch, not per event, is what lets a consumer keep up with thousands of decisions
a second on SQLite (each commit fsyncs). What cannot be parsed, or what the handler rejects, goes
to `gov.deadletter.<name>` with the reason, then is acked, so one poison message never stalls the
stream: a rejected event rolls its batch back, and the batch is redone one event at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from pydantic import ValidationError
from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, String, Table, select

from contracts.envelope import CloudEvent, parse_event
from contracts.streams import deadletter_subject
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.db import insert_rows, sqlite_time
from services.runtime.telemetry import batch_span

log = logging.getLogger(__name__)

Handler = Callable[[Connection, CloudEvent], None]
BatchHandler = Callable[[Connection, list[CloudEvent]], None]
Known = Callable[[Connection, set[str]], set[str]]  # which of these event ids took effect already


class Reject(Exception):
    """Raised by a handler for an event it can never process: it is dead-lettered."""


def processed_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


class DurableConsumer:
    def __init__(
        self, bus: Bus, engine: Engine, processed: Table | None, *, name: str, stream: str,
        subjects: Sequence[str], handle: Handler | None = None,
        handle_batch: BatchHandler | None = None, batch: int = 100, ack_wait: float = 30,
        known: Known | None = None,
    ) -> None:
        if (handle is None) == (handle_batch is None):
            raise ValueError("give a consumer either `handle` (per event) or `handle_batch`")
        if (processed is None) == (known is None):
            raise ValueError("give a consumer either a processed-ids table or the handler's `known`")
        self.bus, self.engine, self.processed = bus, engine, processed
        self.name, self.stream, self.subjects = name, stream, list(subjects)
        self.handle, self.handle_batch = handle, handle_batch
        # The handler's own unique key, when it has one, stands in for processed-id rows.
        self.known = known
        self.batch, self.ack_wait = batch, ack_wait
        self.handled = 0
        self.deadlettered = 0

    async def run(self) -> None:
        while True:
            try:
                await self.bus.wait_ready()
                js = self.bus.jetstream()
                config = api.ConsumerConfig(
                    durable_name=self.name, ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait, filter_subjects=self.subjects,
                    max_ack_pending=max(1000, 3 * self.batch),
                )
                await js.add_consumer(self.stream, config)  # create, or keep the existing one
                psub = await js.pull_subscribe_bind(self.name, self.stream)
                # The next batch is fetched while the last one is written (batches still apply in
                # order, one at a time): the fetch round trip and the commit's fsync overlap.
                applying: asyncio.Task | None = None
                try:
                    while True:
                        try:
                            msgs = await psub.fetch(self.batch, timeout=1)
                        except NatsTimeout:
                            continue
                        if applying is not None:
                            await applying
                        applying = asyncio.create_task(self._batch(msgs))
                finally:
                    if applying is not None:
                        await asyncio.gather(applying, return_exceptions=True)
            except asyncio.CancelledError:
                raise
            except (NatsError, BusUnavailable) as exc:
                log.info("consumer %s restarts: %s", self.name, exc)
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - e.g. database down: back off, keep going
                log.exception("consumer %s failed; retrying", self.name)
                await asyncio.sleep(1)

    async def _batch(self, msgs: list) -> None:
        parsed = []
        for msg in msgs:
            try:
                parsed.append((msg, parse_event(msg.data)))
            except (ValidationError, ValueError) as exc:
                await self._deadletter(msg, f"not a modelgov CloudEvent: {exc.errors()[0]['msg']}"
                                       if isinstance(exc, ValidationError) else str(exc))
        if not parsed:
            return
        with batch_span(f"consume {self.stream} x{len(parsed)}",
                        ((e.traceparent, {}) for _, e in parsed)):
            try:
                await asyncio.to_thread(self._apply, [e for _, e in parsed])
            except Reject:
                for msg, event in parsed:  # find the poison: redo the batch one by one
                    await self._one(msg, event)
                return
            except Exception:
                log.exception("consumer %s: a batch of %d failed; redelivering", self.name, len(parsed))
                for msg, _ in parsed:
                    await msg.nak(delay=1)
                return
        for msg, _ in parsed:
            await msg.ack()

    async def _one(self, msg, event: CloudEvent) -> None:
        try:
            await asyncio.to_thread(self._apply, [event])
        except Reject as exc:
            await self._deadletter(msg, str(exc))
            return
        except Exception:
            log.exception("consumer %s: handling %s failed; redelivering", self.name, event.id)
            await msg.nak(delay=1)
            return
        await msg.ack()

    def _apply(self, events: list[CloudEvent]) -> None:
        """The handler's effects and the processed-id rows commit together, or not at all."""
        t = self.processed
        with self.engine.begin() as conn:
            ids = {e.id for e in events}
            seen = self.known(conn, ids) if self.known else set(conn.scalars(select(t.c.event_id).where(
                t.c.consumer == self.name, t.c.event_id.in_(ids))))
            fresh = []
            for event in events:
                if event.id not in seen:
                    seen.add(event.id)
                    fresh.append(event)
            if not fresh:
                return
            if self.handle_batch is not None:
                self.handle_batch(conn, fresh)
            else:
                for event in fresh:
                    self.handle(conn, event)
            if t is not None:
                now = datetime.now(UTC)
                stamp = sqlite_time(now) if conn.dialect.name == "sqlite" else now
                insert_rows(conn, t.name, ("consumer", "event_id", "processed_at"),
                            [(self.name, e.id, stamp) for e in fresh])
        self.handled += len(fresh)

    async def _deadletter(self, msg, reason: str) -> None:
        meta = msg.metadata
        headers = {"Modelgov-Reason": " ".join(reason.split())[:1000],
                   "Modelgov-Stream": meta.stream, "Modelgov-Stream-Seq": str(meta.sequence.stream),
                   "Modelgov-Subject": msg.subject}
        msg_id = f"deadletter-{self.name}-{meta.stream}-{meta.sequence.stream}"
        await self.bus.publish(deadletter_subject(self.name), msg.data, msg_id, headers)
        await msg.ack()
        self.deadlettered += 1
        log.warning("consumer %s dead-lettered seq %d: %s", self.name, meta.sequence.stream, reason)
