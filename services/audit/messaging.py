"""Reads GOVERNANCE and DECISIONS in stream order into the hash chains, live and on replay.

The store is its own cursor (audit_cursor, same transaction as the entries), so the consumer is
an ordered, ephemeral JetStream consumer started at the store's last sequence + 1: a crash or a
NATS outage resumes exactly where the committed chain ends, and chain order is stream order.
(A durable consumer with acks would redeliver a lost message after later ones, out of order.)
The deliveries come through services.runtime.jetstream_reader, three to four times cheaper per
message than nats-py's subscription: reading was most of the audit's CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.streams import deadletter_subject, stream_specs
from services.audit.domain import Batch, ChainHead, Message, plan
from services.audit.store import AuditStore
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.jetstream_reader import OrderedReader
from services.runtime.telemetry import batch_span

log = logging.getLogger(__name__)

CONSUMER_NAME = "audit"
BATCH = 1000
LINGER_STEPS, LINGER_STEP_SECONDS = 4, 0.005  # at most 20 ms added to an event's way in
IDLE_CHECK_SECONDS = 5.0


def stream_filter(stream: str) -> str:
    return next(spec.subjects[0] for spec in stream_specs() if spec.name == stream)


class Gap(RuntimeError):
    """A message was skipped on the way (e.g. dropped by a slow client): re-read from the cursor."""


async def read_batches(
    nc: Client, stream: str, start_seq: int, until_seq: int | None = None,
    batch: int = BATCH, idle_check=None,
) -> AsyncIterator[list[Message]]:
    """Yield the stream's messages from `start_seq` (to `until_seq`) in order, in batches.

    Every stream sequence is accounted for: a jump that is not a deleted message raises Gap, so
    a message lost between server and client can never leave a hole in a chain.
    """
    js = nc.jetstream()
    expected = None if start_seq <= 1 else start_seq  # a stream may begin past 1 (retention)
    async with OrderedReader(nc, stream, stream_filter(stream), start_seq) as reader:
        while True:
            # Linger briefly for a full batch: each commit fsyncs, so few large ones beat many.
            deliveries = await reader.take(batch, IDLE_CHECK_SECONDS, LINGER_STEPS,
                                           LINGER_STEP_SECONDS)
            if not deliveries:
                if idle_check is not None:
                    await idle_check()
                continue
            out = []
            for seq, subject, payload in deliveries:
                if expected is not None and seq > expected:
                    await _check_deleted(js, stream, expected, seq)
                expected = seq + 1
                if until_seq is None or seq <= until_seq:
                    out.append(Message(stream, seq, subject, payload))
            if out:
                yield out
            if until_seq is not None and expected > until_seq:
                return


async def _check_deleted(js: JetStreamContext, stream: str, first: int, upto: int) -> None:
    for seq in range(first, upto):
        try:
            await js.get_msg(stream, seq)
        except NotFoundError:
            continue  # deleted or expired from the stream: nothing to chain
        raise Gap(f"{stream}: message {seq} was not delivered before {upto}")


class Stalled(RuntimeError):
    """The stream holds more than the subscription delivered: resubscribe from the cursor."""


class Ingestor:
    """Chains batches of one stream into a store; dead-letters what is not an event."""

    def __init__(self, store: AuditStore, stream: str, bus: Bus | None = None) -> None:
        self.store = store
        self.stream = stream
        self.bus = bus  # None on replay: the live consumer already reported those messages
        self._head: ChainHead | None = None  # where the planned batches end
        self._committed: ChainHead | None = None  # where the store's chain ends
        self._writing: asyncio.Task | None = None
        self.appended = 0

    async def ingest(self, messages: list[Message]) -> Batch:
        """Plan a batch while the previous one is still being written; writes stay in order.

        Planning is pure Python on the loop; writing runs in a thread, where SQLite and psycopg
        release the GIL, so receiving, planning and writing overlap.
        """
        if self._head is None:
            self._head = self._committed = await asyncio.to_thread(self.store.head, self.stream)
        batch = plan(self._head, messages, set())
        if self.bus is not None:
            for rejected in batch.rejected:
                await self._deadletter(rejected.message, rejected.reason)
        await self.flush()
        if self._committed != self._head:  # the last write dropped re-published events
            batch = plan(self._committed, messages, set())
        self._head = batch.head
        self._writing = asyncio.create_task(self._write(messages, batch))
        return batch

    async def flush(self) -> None:
        """Wait for the write under way; its failure is raised here."""
        if self._writing is not None:
            task, self._writing = self._writing, None
            await task

    async def _write(self, messages: list[Message], batch: Batch) -> None:
        linked = ((e.traceparent, {"messaging.message.id": e.event_id}) for e in batch.entries)
        with batch_span(f"audit append {self.stream}", linked) as span:
            span.set_attribute("modelgov.audit.entries", len(batch.entries))
            batch = await asyncio.to_thread(self.store.append_planned, self.stream,
                                            self._committed, messages, batch)
        self._committed = batch.head
        self.appended += len(batch.entries)

    async def _deadletter(self, msg: Message, reason: str) -> None:
        headers = {
            "Modelgov-Reason": " ".join(reason.split())[:1000],
            "Modelgov-Stream": msg.stream,
            "Modelgov-Stream-Seq": str(msg.stream_seq),
            "Modelgov-Subject": msg.subject,
        }
        msg_id = f"deadletter-{CONSUMER_NAME}-{msg.stream}-{msg.stream_seq}"
        await self.bus.publish(deadletter_subject(CONSUMER_NAME), msg.payload, msg_id, headers)
        log.warning("dead-lettered %s seq %d: %s", msg.stream, msg.stream_seq, reason)


@dataclass
class LiveConsumer:
    """Keeps one stream's chain up to date, across NATS outages and restarts."""

    store: AuditStore
    stream: str
    bus: Bus

    async def run(self) -> None:
        while True:
            try:
                # A fresh ingestor re-reads the chain's head from the store on every (re)start.
                ingestor = Ingestor(self.store, self.stream, self.bus)
                await self.bus.wait_ready()
                nc, js = self.bus.client(), self.bus.jetstream()
                start = await asyncio.to_thread(self.store.cursor, self.stream) + 1

                async def idle_check(js=js) -> None:
                    info = await js.stream_info(self.stream)
                    done = await asyncio.to_thread(self.store.cursor, self.stream)
                    if info.state.last_seq > done:
                        raise Stalled(f"{self.stream} at {info.state.last_seq}, chain at {done}")

                async for messages in read_batches(nc, self.stream, start, idle_check=idle_check):
                    await ingestor.ingest(messages)
            except asyncio.CancelledError:
                raise
            except (NatsError, BusUnavailable, Stalled, Gap, TimeoutError) as exc:
                log.info("audit consumer for %s restarts: %s", self.stream, exc)
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - e.g. the database is down: retry, never give up
                log.exception("audit consumer for %s failed; retrying", self.stream)
                await asyncio.sleep(1)
