"""The NATS client protocol on a connection of our own, for the two hot paths nats-py is too
slow for: reading a stream (jetstream_reader) and publishing decisions (jetstream_publisher).

nats-py spends 20–27 µs of Python per message it receives (its protocol parser, a header dict, a
Msg object, a queue and a task per subscription) and as much again per request it sends. These
connections cut whole buffers of frames instead and hand each message to one method. nats-py
keeps the main connection (reconnection, stream and consumer management); a wire connection
opens with its credentials and carries only the traffic of one inbox.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from urllib.parse import ParseResult

from nats.aio.client import Client
from nats.errors import Error as NatsError

from services.runtime.bus import without_credentials

CRLF = b"\r\n"
DEFAULT_PORT = 4222
STATUS = b"NATS/1.0 "  # a status frame's header block starts so; a data message's with b"NATS/1.0\r\n"
# Waits in services/runtime use asyncio.timeout(), not asyncio.wait_for(): on Python 3.11 wait_for
# returns normally when what it awaits completes in the same loop turn as a cancel of its caller,
# so the cancel is lost (CPython gh-86296, fixed in 3.12), and a consumer cancelled at shutdown
# as a heartbeat came in read on forever (seen as a hung test teardown).


class WireError(NatsError):
    """A wire connection could not be opened, or is gone."""


class WireParser(ABC):
    """Cuts what the server sends a buffer at a time; a subclass's `message()` takes each MSG /
    HMSG (the reader's deliveries, the publisher's acks). Pure: bytes in; frames to send back
    (PONG) in `outgoing`."""

    def __init__(self) -> None:
        # An incomplete frame's pieces, joined once `_need` bytes have come (a large message
        # arrives in many reads: joining at every read would copy it over and over).
        self._pieces: list[bytes] = []
        self._have = self._need = 0
        self.outgoing: list[bytes] = []
        self.pongs = 0
        self.error: str | None = None  # what the server said went wrong, if it did
        self.info: dict = {}  # the server's INFO (max_payload among it)

    @abstractmethod
    def message(self, parts: list[bytes], buf: bytes, body: int, headers: int, total: int) -> None:
        """One message: `parts` its control line split on spaces (`MSG <subject> <sid> [reply]
        <size>`, HMSG with the header size before the total), its header block at
        buf[body:body + headers], its payload up to body + total."""

    def feed(self, data: bytes) -> None:
        if self._pieces:
            self._pieces.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._pieces)
        buf, pos, end = data, 0, len(data)
        need = 1  # bytes the incomplete frame at `pos` needs, at least
        while (eol := buf.find(CRLF, pos)) >= 0:
            op = buf[pos:pos + 4]
            if op == b"HMSG" or op == b"MSG ":
                parts = buf[pos:eol].split(b" ")
                body, total = eol + 2, int(parts[-1])
                if body + total + 2 > end:
                    need = body + total + 2 - pos  # the frame's body has not all arrived
                    break
                self.message(parts, buf, body, int(parts[-2]) if op == b"HMSG" else 0, total)
                pos = body + total + 2
                continue
            if op == b"PING":
                self.outgoing.append(b"PONG\r\n")
            elif op == b"PONG":
                self.pongs += 1
            elif op == b"-ERR":
                self.error = buf[pos + 5:eol].decode(errors="replace").strip(" '")
            elif op == b"INFO":
                self.info = json.loads(buf[pos + 5:eol])
            pos = eol + 2  # +OK: nothing to do
        rest = end - pos
        self._pieces = [buf[pos:]] if rest else []
        self._have, self._need = rest, max(need, rest + 1)


class WireProtocol(asyncio.Protocol):
    """Feeds the parser, answers what it asks to send, and wakes whoever waits on `arrived`."""

    def __init__(self, parser: WireParser) -> None:
        self.parser = parser
        self.transport: asyncio.Transport | None = None
        self.arrived = asyncio.Event()
        self.lost: str | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.parser.outgoing:
            self.transport.write(b"".join(self.parser.outgoing))
            self.parser.outgoing.clear()
        self.arrived.set()

    def connection_lost(self, exc) -> None:
        self.lost = f"the connection closed ({exc or 'by the server'})"
        self.arrived.set()


async def open_connection(nc: Client, protocol: WireProtocol, inbox: bytes, name: str,
                          what: str = "connection") -> None:
    """Connect `protocol` to the server `nc` uses, with its credentials, subscribed to `inbox`
    (a subject, wildcards allowed); returns once the server has confirmed the subscription, so
    no message to it can be missed. `what` names the connection in errors."""
    url: ParseResult | None = nc.connected_url
    if url is None:
        raise WireError("the NATS client is not connected")
    where = without_credentials(url.geturl())
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            await loop.create_connection(lambda: protocol, url.hostname, url.port or DEFAULT_PORT)
    except (OSError, TimeoutError) as exc:
        raise WireError(f"cannot open a {what} to {where}: {exc!r}") from exc
    options = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
               "protocol": 1, "lang": "python3", "name": name}
    if url.username and url.password:
        options.update(user=url.username, **{"pass": url.password})
    elif url.username:
        options["auth_token"] = url.username
    protocol.transport.write(b"CONNECT " + json.dumps(options).encode() + CRLF
                             + b"SUB " + inbox + b" 1\r\nPING\r\n")
    # The server handles frames in order: its PONG means CONNECT and SUB were accepted.
    parser = protocol.parser
    try:
        async with asyncio.timeout(5):
            while not (parser.pongs or parser.error or protocol.lost):
                protocol.arrived.clear()
                await protocol.arrived.wait()
    except TimeoutError:
        pass  # answered below
    except BaseException:  # cancelled while waiting: the half-open connection is not kept
        protocol.transport.close()
        raise
    if not parser.pongs or parser.error or protocol.lost:
        protocol.transport.close()
        why = parser.error or protocol.lost or "no answer in 5 s"
        raise WireError(f"{where} refused the {what}: {why}")
