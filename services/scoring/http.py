"""uvicorn's httptools protocol, writing each connection's output once per event-loop turn.

uvicorn writes a response's status line and headers, then its body, each straight to the socket:
two send() calls and two TCP segments for every decision, and a client that reads the head and
the body as they come wakes twice. This protocol gives uvicorn's request cycle a transport that
holds what is written during one turn of the event loop and sends it at the end of the turn in
one call; everything else about the transport (closing, flow control, addresses) is the socket's.
Scoring runs with it: `uvicorn services.scoring.app:create_app --factory --http
services.scoring.http:HttpToolsOneWrite` (`make up`, the bench, the compose and Kubernetes files).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnWriter:
    """A transport whose writes within one turn of the loop reach the socket as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data if type(data) is bytes else bytes(data))  # the caller may reuse its buffer

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._held:
            data, self._held = b"".join(self._held), []
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()  # what was written before close() is sent, as by the socket's own close()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HttpToolsOneWrite(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(TurnWriter(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
