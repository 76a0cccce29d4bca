"""Reads a JetStream stream in order, fast: an ordered push consumer whose deliveries come over a
connection of their own (nats_wire) and are parsed a buffer at a time.

Why not nats-py's `subscribe(ordered_consumer=True)`: per message it runs its protocol parser, a
header dict, a Msg object, a pending queue and a callback, 20–27 µs of Python here, which made
reading the log the audit's bottleneck (live ingest and replay). Cutting whole buffers of frames
costs ~5 µs a message (read path ×3–4: 131,500–200,000 messages/s against nats-py's
37,900–53,000, on the 2-core VM). nats-py still does the rest: it creates and deletes the
consumer over its own connection; this connection carries nothing but the deliveries and the
replies they ask for.

The consumer is what nats-py's ordered consumer creates (ephemeral, in memory, no acks, flow
control, idle heartbeats). Flow control is answered only once the caller has taken every message
sent before the request, so the server never runs further ahead than its flow-control window,
and the memory held here stays bounded however slow the caller is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import api

from services.runtime.nats_wire import CRLF, STATUS, WireError, WireParser, WireProtocol, open_connection

HEARTBEAT_SECONDS = 1.0
MISSED_HEARTBEATS = 3  # silence this long means the consumer or the connection is gone
_STALLED = b"Nats-Consumer-Stalled:"

Delivery = tuple[int, str, bytes]  # (stream sequence, subject, payload)


class DeliveryLost(WireError):
    """The delivery connection or its consumer is gone: read again from where the caller is."""


def stream_seq(reply: bytes) -> int:
    """The stream sequence from a JetStream ack subject, v1 ($JS.ACK.<stream>.<consumer>.<n>.
    <stream seq>...) or v2 (with domain and account hash after $JS.ACK)."""
    tokens = reply.split(b".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


class DeliveryParser(WireParser):
    """A push consumer's deliveries, and the flow-control requests and heartbeats among them."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: deque[Delivery] = deque()
        self.parsed = 0  # data messages parsed so far
        self.flow_requests: deque[tuple[int, bytes]] = deque()  # (answer once taken, reply subject)

    def message(self, parts: list[bytes], buf: bytes, body: int, headers: int, total: int) -> None:
        reply = parts[3] if len(parts) == (6 if headers else 5) else b""
        if headers and buf[body:body + 9] == STATUS:
            self._status(buf[body:body + headers], reply)
        else:
            self.parsed += 1
            self.deliveries.append((stream_seq(reply), parts[1].decode(),
                                    buf[body + headers:body + total]))

    def _status(self, block: bytes, reply: bytes) -> None:
        code = block[9:12]
        if code == b"100":
            if reply:  # a flow-control request
                self.flow_requests.append((self.parsed, reply))
            elif (at := block.find(_STALLED)) >= 0:  # a heartbeat saying a response was missed
                subject = block[at + len(_STALLED):block.find(CRLF, at)].strip()
                self.outgoing.append(b"PUB " + subject + b" 0\r\n\r\n")
        else:  # e.g. 409 Consumer Deleted
            self.error = block.split(CRLF, 1)[0].decode(errors="replace")


class OrderedReader:
    """One ordered pass over a stream from `start_seq`; use as `async with`, then `take()`."""

    def __init__(self, nc: Client, stream: str, filter_subject: str, start_seq: int) -> None:
        self.nc, self.stream, self.filter_subject = nc, stream, filter_subject
        self.start_seq = max(start_seq, 1)
        self._parser = DeliveryParser()
        self._protocol: WireProtocol | None = None
        self._consumer: str | None = None

    async def __aenter__(self) -> OrderedReader:
        inbox = f"_INBOX.{uuid.uuid4().hex}".encode()
        self._protocol = WireProtocol(self._parser)
        try:
            await open_connection(self.nc, self._protocol, inbox, "modelgov-stream-reader",
                                  "delivery connection")
        except WireError as exc:
            raise DeliveryLost(str(exc)) from exc
        try:
            config = api.ConsumerConfig(
                deliver_subject=inbox.decode(), filter_subject=self.filter_subject,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_seq,
                ack_policy=api.AckPolicy.NONE, max_deliver=1, flow_control=True,
                idle_heartbeat=HEARTBEAT_SECONDS, mem_storage=True, num_replicas=1,
                inactive_threshold=300.0,  # the server removes it if this process dies
            )
            info = await self.nc.jetstream().add_consumer(self.stream, config)
        except BaseException:
            self._protocol.transport.close()
            raise
        self._consumer = info.name
        return self

    async def __aexit__(self, *exc) -> None:
        self._protocol.transport.close()
        if self._consumer is not None and self.nc.is_connected:
            try:
                await self.nc.jetstream().delete_consumer(self.stream, self._consumer)
            except (NatsError, TimeoutError):
                pass  # its inactive threshold removes it

    async def take(self, most: int, idle_seconds: float, linger_steps: int = 0,
                   linger_seconds: float = 0.0) -> list[Delivery]:
        """Up to `most` deliveries in stream order; [] after `idle_seconds` with none. With some
        but fewer than `most` at hand, waits up to `linger_steps` × `linger_seconds` for more."""
        parser, protocol = self._parser, self._protocol
        waited_since = time.monotonic()
        while not parser.deliveries:
            self._check()
            protocol.arrived.clear()
            silence = HEARTBEAT_SECONDS * MISSED_HEARTBEATS
            try:
                async with asyncio.timeout(silence):  # not wait_for: see nats_wire.py
                    await protocol.arrived.wait()
            except TimeoutError:
                raise DeliveryLost(f"no heartbeat from {self.stream} for {silence:.0f} s") from None
            if not parser.deliveries and time.monotonic() - waited_since >= idle_seconds:
                self._check()
                return []
        for _ in range(linger_steps):
            if len(parser.deliveries) >= most:
                break
            await asyncio.sleep(linger_seconds)
        queue = parser.deliveries
        out = [queue.popleft() for _ in range(min(most, len(queue)))]
        self._answer_flow_control()
        return out

    def _answer_flow_control(self) -> None:
        taken = self._parser.parsed - len(self._parser.deliveries)
        requests = self._parser.flow_requests
        while requests and requests[0][0] <= taken:
            self._protocol.transport.write(b"PUB " + requests.popleft()[1] + b" 0\r\n\r\n")

    def _check(self) -> None:
        if self._parser.error:
            raise DeliveryLost(f"{self.stream}: the server said {self._parser.error}")
        if self._protocol.lost:
            raise DeliveryLost(f"{self.stream}: {self._protocol.lost}")
