"""Durable pull consumers: explicit ack, exactly-once effects by event id, dead letters.

Each event is handled in one database transaction together with a `processed_events` row
(consumer, event_id): a re-delivery or a re-publication finds the row and is only acked. What
cannot be parsed, or what the handler rejects, goes to `gov.deadletter.<name>` with the reason,
then is acked, so one poison message never stalls the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, String, Table, insert, select

from contracts.envelope import CloudEvent, parse_event
from contracts.streams import deadletter_subject
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.telemetry import context_from, tracer

log = logging.getLogger(__name__)

Handler = Callable[[Connection, CloudEvent], None]


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
        self, bus: Bus, engine: Engine, processed: Table, *, name: str, stream: str,
        subjects: Sequence[str], handle: Handler, batch: int = 100, ack_wait: float = 30,
    ) -> None:
        self.bus, self.engine, self.processed = bus, engine, processed
        self.name, self.stream, self.subjects = name, stream, list(subjects)
        self.handle, self.batch, self.ack_wait = handle, batch, ack_wait
        self.handled = 0
        self.deadlettered = 0

    async def run(self) -> None:
        while True:
            try:
                await self.bus.wait_ready()
                js = self.bus.jetstream()
                config = api.ConsumerConfig(
                    durable_name=self.name, ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait, filter_subjects=self.subjects, max_ack_pending=1000,
                )
                await js.add_consumer(self.stream, config)  # create, or keep the existing one
                psub = await js.pull_subscribe_bind(self.name, self.stream)
                while True:
                    try:
                        msgs = await psub.fetch(self.batch, timeout=1)
                    except NatsTimeout:
                        continue
                    for msg in msgs:
                        await self._one(msg)
            except asyncio.CancelledError:
                raise
            except (NatsError, BusUnavailable) as exc:
                log.info("consumer %s restarts: %s", self.name, exc)
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - e.g. database down: back off, keep going
                log.exception("consumer %s failed; retrying", self.name)
                await asyncio.sleep(1)

    async def _one(self, msg) -> None:
        try:
            event = parse_event(msg.data)
        except (ValidationError, ValueError) as exc:
            await self._deadletter(msg, f"not a modelgov CloudEvent: {exc.errors()[0]['msg']}"
                                   if isinstance(exc, ValidationError) else str(exc))
            return
        with tracer.start_as_current_span(f"consume {msg.subject}", kind=SpanKind.CONSUMER,
                                          context=context_from(event.traceparent)):
            try:
                await asyncio.to_thread(self._apply, event)
            except Reject as exc:
                await self._deadletter(msg, str(exc))
                return
            except Exception:
                log.exception("consumer %s: handling %s failed; redelivering", self.name, event.id)
                await msg.nak(delay=1)
                return
        await msg.ack()

    def _apply(self, event: CloudEvent) -> None:
        """The handler's effects and the processed-id row commit together, or not at all."""
        t = self.processed
        with self.engine.begin() as conn:
            seen = conn.scalar(select(t.c.event_id).where(
                t.c.consumer == self.name, t.c.event_id == event.id))
            if seen:
                return
            self.handle(conn, event)
            conn.execute(insert(t).values(consumer=self.name, event_id=event.id,
                                          processed_at=datetime.now(UTC)))
        self.handled += 1

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
