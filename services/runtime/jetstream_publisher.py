"""Publishes to JetStream and awaits each PubAck over a connection of its own: scoring's decisions.

A decision's response waits for its PubAck, so each one costs a publish and an ack. Through
nats-py (`js.publish`: a request with its own inbox token, future, `wait_for`, flusher wake-up,
then the ack through its parser, a Msg, a subscription queue and task, `json.loads` and a PubAck
dataclass) that took ~0.4 ms of a scoring process's CPU per decision on the 2-core VM, a third of
it all. Here a publish is one HPUB frame appended to the frames of this loop turn (written
together), a future and a timer; an ack is found by its inbox token in the buffer cut by
nats_wire and resolves its future.

The same guarantees as `Bus.publish`: the event is durable once `publish()` returns (the stream
acked it); a failure (no stream for the subject, the stream's error, no ack within the timeout, the
connection lost, a message over the server's limit) raises `PublishFailed` and the caller keeps the
event (scoring's outbox). The msg id header lets the server drop a repeat of a publish that landed
after all. The connection opens on first use and again after it is lost, at most once a second;
while it cannot be opened (a TLS-only server: this connection is plain TCP; a connection limit),
publishes go through the bus's nats-py client, as they did before this module.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

from services.runtime.bus import MSG_ID, Bus, BusUnavailable
from services.runtime.nats_wire import CRLF, STATUS, WireError, WireParser, WireProtocol, open_connection

RECONNECT_SECONDS = 1.0  # the least time between attempts to open the connection
_HEADERS = b"NATS/1.0\r\n"


def _frameable(subject: str, block: bytes, fields: int) -> bool:
    """No space or control character in the subject, no line break in a header but the ones the
    block is built with: either would end the frame early, the server would close the
    connection, and every pending publish fail."""
    lines = fields + 2  # the NATS/1.0 line, each header, the blank line
    return (subject.isprintable() and " " not in subject and subject != ""
            and block.count(b"\n") == lines and block.count(b"\r") == lines)


class PublishFailed(WireError):
    """No PubAck: the message may or may not be stored; publish it again with the same msg id."""


Outcome = tuple[bytes, str | None]  # (inbox token, None when acked, else what went wrong)


class AckParser(WireParser):
    """The replies to our publishes: a PubAck's JSON, a JetStream error's, or a status (503: no
    stream listens on the subject)."""

    def __init__(self, inbox_prefix: bytes) -> None:
        super().__init__()
        self._skip = len(inbox_prefix)
        self.outcomes: list[Outcome] = []

    def message(self, parts: list[bytes], buf: bytes, body: int, headers: int, total: int) -> None:
        token = parts[1][self._skip:]
        if headers and buf[body:body + 9] == STATUS:
            status = buf[body + 9:buf.find(CRLF, body)].decode(errors="replace").strip()
            why = "no stream takes this subject" if status.startswith("503") else f"status {status}"
            self.outcomes.append((token, why))
            return
        reply = buf[body + headers:body + total]
        self.outcomes.append((token, _error(reply) if b'"error"' in reply else None))


def _error(reply: bytes) -> str:
    try:
        error = json.loads(reply)["error"]
        return f"JetStream refused it: {error.get('description', error)} (code {error.get('code')})"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"JetStream answered {reply[:200]!r}"


class _Connection(WireProtocol):
    """One connection and the publishes awaiting their acks on it."""

    def __init__(self, prefix: bytes, on_lost: Callable[[_Connection], None]) -> None:
        super().__init__(AckParser(prefix))
        self.prefix, self.on_lost = prefix, on_lost
        self.pending: dict[bytes, asyncio.Future] = {}
        self.frames: list[bytes] = []  # this loop turn's publishes, written together

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        outcomes = self.parser.outcomes
        if outcomes:
            self.parser.outcomes = []
            for token, why in outcomes:
                future = self.pending.pop(token, None)
                if future is None or future.done():
                    continue  # it timed out before the ack came
                if why is None:
                    future.set_result(None)
                else:
                    future.set_exception(PublishFailed(why))

    def flush(self) -> None:
        frames, self.frames = self.frames, []
        if self.lost is None:
            self.transport.write(b"".join(frames))

    def expire(self, token: bytes, timeout: float) -> None:
        future = self.pending.pop(token, None)
        if future is not None and not future.done():
            future.set_exception(PublishFailed(f"no PubAck within {timeout} s"))

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(PublishFailed(f"no PubAck: {self.lost}"))
        self.on_lost(self)


class JetStreamPublisher:
    """`await publish(...)` returns once JetStream has acked the message; see the module."""

    def __init__(self, bus: Bus, name: str = "modelgov-publisher") -> None:
        self.bus, self.name = bus, name
        self._connection: _Connection | None = None
        self._opening: asyncio.Future | None = None
        self._next_attempt = 0.0
        self._serial = 0

    async def publish(self, subject: str, payload: bytes, msg_id: str,
                      headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        conn = self._connection
        if conn is None:
            try:
                conn = await self._open()
            except PublishFailed:
                # No connection of our own (a server that wants TLS, or refuses a second
                # connection): the bus's own client carries it, at its cost.
                await self.bus.publish(subject, payload, msg_id, headers, timeout)
                return
        if conn.lost is not None:  # lost while this caller waited for it to open
            raise PublishFailed(f"no PubAck: {conn.lost}")
        fields = {MSG_ID: msg_id, **(headers or {})}
        block = b"".join([_HEADERS, *[b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in fields.items()],
                          CRLF])
        if not _frameable(subject, block, len(fields)):
            raise PublishFailed(f"{subject!r} or a header of it would break the protocol's framing")
        size = len(block) + len(payload)
        limit = conn.parser.info.get("max_payload", 1 << 20)
        if size > limit:
            raise PublishFailed(f"the message ({size} bytes) is over the server's limit of {limit}")
        self._serial += 1
        token = b"%d" % self._serial
        loop = asyncio.get_running_loop()
        if not conn.frames:
            loop.call_soon(conn.flush)
        conn.frames.append(b"HPUB %s %s%s %d %d\r\n%s%s\r\n" % (
            subject.encode(), conn.prefix, token, len(block), size, block, payload))
        future = conn.pending[token] = loop.create_future()
        timer = loop.call_later(timeout, conn.expire, token, timeout)
        try:
            await future
        finally:
            timer.cancel()

    def _lost(self, conn: _Connection) -> None:
        if self._connection is conn:
            self._connection = None

    async def _open(self) -> _Connection:
        """The connection, opened by one caller while the others wait for it."""
        if self._opening is None:
            if time.monotonic() < self._next_attempt:
                raise PublishFailed("the publishing connection is down; it is re-opened shortly")
            self._opening = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._opening)  # a caller cancelled leaves it to the others
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # this caller was cancelled
            raise PublishFailed("the publisher was closed while its connection opened") from None

    async def _connect(self) -> _Connection:
        self._next_attempt = time.monotonic() + RECONNECT_SECONDS
        conn = _Connection(f"_INBOX.{uuid.uuid4().hex}.".encode(), self._lost)
        try:
            await open_connection(self.bus.client(), conn, conn.prefix + b"*", self.name,
                                  "publishing connection")
        except (WireError, BusUnavailable) as exc:
            raise PublishFailed(str(exc)) from exc
        finally:
            self._opening = None
        self._connection = conn
        return conn

    def close(self) -> None:
        if self._opening is not None:  # not to be left open once it connects
            self._opening.cancel()
            self._opening = None
        if self._connection is not None:
            self._connection.transport.close()  # connection_lost fails what is pending
