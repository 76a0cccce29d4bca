"""Decision events travel to JetStream in atomic batches when enough arrive together.

A stream that syncs every write (`sync_interval: always`, ARCHITECTURE.md) stores one message at a
time, each with its fsync: measured here, 0.6-0.9 ms per message, so 1,100-1,800 messages/s per
stream however many publish at once. An atomic batch (ADR-50, nats-server >= 2.12, stream option
`allow_atomic`) is stored whole or not at all, with one fsync and one PubAck, but on a file stream
the server stages it first, which costs ~4 ms whatever its size (measured: a batch of 1, 2 or 8
takes 4.3-4.6 ms, of 64 about 8 ms, with or without sync). So a batch pays from about eight
messages on: fewer go one by one, at once, as before.

Groups form by themselves under load (group commit): what is published while a batch awaits its
ack goes as the next batch when that ack comes, and what arrives in one turn of the event loop
(e.g. the requests of one coalesced model call) travels together. A message alone, or a handful,
never waits for anyone.

Every message keeps its `Nats-Msg-Id`, so the server's duplicate window covers batched messages as
well. The server refuses a batch whole when any of its ids is already stored (error 10201), and
when it takes no batch now (stream without `allow_atomic`, 50 batches in flight): then each
message is published on its own, and the duplicate window drops what the stream already holds. A
batch that got no answer within the timeout counts as not acked: the caller keeps its events (the
outbox) and publishes them again later, with the same ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass

from services.runtime.bus import MSG_ID, Bus

log = logging.getLogger(__name__)

BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
MAX_MESSAGES = 500  # per batch; the server takes at most 1,000
BATCH_MIN = 8  # smaller groups go one by one (the docstring says why)
IN_FLIGHT = 1  # batches awaiting their ack, per publisher: the next one gathers what comes meanwhile


@dataclass(frozen=True, slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] | None = None


class BatchPublisher:
    def __init__(self, bus: Bus, timeout: float, batch_min: int = BATCH_MIN,
                 in_flight: int = IN_FLIGHT) -> None:
        self.bus = bus
        self.timeout = timeout
        self.batch_min = batch_min
        self.in_flight = in_flight
        self._pending: deque[tuple[list[Outgoing], asyncio.Future]] = deque()
        self._sending: set[asyncio.Task] = set()  # batches awaiting their ack
        self._tasks: set[asyncio.Task] = set()
        self.batches = self.batched = 0  # atomic batches acked, and the messages in them

    def publish(self, messages: list[Outgoing]) -> asyncio.Future:
        """Resolves to whether JetStream acked each message (list[bool]); the messages travel
        with whatever else is published before they can be sent."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((messages, future))
        if len(self._pending) == 1 and len(self._sending) < self.in_flight:
            loop.call_soon(self._flush)
        return future

    def _flush(self, _done: asyncio.Task | None = None) -> None:
        """Send what is pending unless a batch is in flight: then the batch's end sends it
        (group commit), with what else arrived meanwhile. Fewer than `batch_min` go one by one."""
        if _done is not None:
            self._sending.discard(_done)
        while self._pending and len(self._sending) < self.in_flight:
            group: list[tuple[list[Outgoing], asyncio.Future]] = []
            count = 0
            while self._pending and (not group or count + len(self._pending[0][0]) <= MAX_MESSAGES):
                messages, future = self._pending.popleft()
                group.append((messages, future))
                count += len(messages)
            batch = count >= self.batch_min
            task = asyncio.create_task(self._send(group, batch), name="publish")
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)
            if batch:
                self._sending.add(task)
                task.add_done_callback(self._flush)

    async def _send(self, group: list[tuple[list[Outgoing], asyncio.Future]], batch: bool) -> None:
        messages = [m for ms, _ in group for m in ms]
        try:
            if batch:
                acked = await self._atomic(messages)
            elif len(messages) == 1:
                acked = [await self._alone(messages[0])]
            else:
                acked = list(await asyncio.gather(*(self._alone(m) for m in messages)))
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception:  # a bug here must not leave requests waiting forever
            log.exception("publishing a batch of %d failed", len(messages))
            acked = [False] * len(messages)
        start = 0
        for ms, future in group:
            if not future.done():  # its request may have gone meanwhile
                future.set_result(acked[start:start + len(ms)])
            start += len(ms)

    async def _alone(self, m: Outgoing) -> bool:
        try:
            await self.bus.publish(m.subject, m.payload, m.msg_id, m.headers, timeout=self.timeout)
        except Exception:  # noqa: BLE001 - no ack, whatever the reason: the caller keeps it
            return False
        return True

    async def _atomic(self, messages: list[Outgoing]) -> list[bool]:
        batch_id, last = uuid.uuid4().hex, len(messages)
        try:
            self.bus.jetstream()  # raises while NATS is unreachable
            nc = self.bus.nc
            for seq, m in enumerate(messages, 1):
                headers = {MSG_ID: m.msg_id, BATCH_ID: batch_id, BATCH_SEQUENCE: str(seq),
                           **(m.headers or {})}
                if seq < last:  # errors, if any, come back on the commit
                    await nc.publish(m.subject, m.payload, headers=headers)
                else:
                    headers[BATCH_COMMIT] = "1"
                    reply = await nc.request(m.subject, m.payload, timeout=self.timeout,
                                             headers=headers)
        except Exception:  # noqa: BLE001 - no answer: maybe stored, maybe not; the caller keeps them
            return [False] * last
        ack = _json(reply.data)
        if "error" not in ack and ack.get("batch") == batch_id and ack.get("count") == last:
            self.batches, self.batched = self.batches + 1, self.batched + last
            return [True] * last
        log.info("atomic batch of %d refused (%s); publishing them one by one",
                 last, ack.get("error", ack))
        return list(await asyncio.gather(*(self._alone(m) for m in messages)))


def _json(data: bytes) -> dict:
    try:
        parsed = json.loads(data)
    except ValueError:
        return {"error": f"not a PubAck: {data[:80]!r}"}
    return parsed if isinstance(parsed, dict) else {"error": f"not a PubAck: {data[:80]!r}"}
