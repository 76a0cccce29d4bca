"""Scoring's HTTP protocol: what uvicorn writes in one turn of the loop leaves in one write."""

from __future__ import annotations

import asyncio

from services.scoring.http import TurnWriter


class Socket:
    """A transport that records each write (and when it was closed)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_after: int | None = None
        self.peer = ("127.0.0.1", 5000)

    def write(self, data: bytes) -> None:
        assert self.closed_after is None, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed_after is not None

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str):
        return self.peer if name == "peername" else None


async def test_a_turn_s_writes_reach_the_socket_as_one_in_order():
    socket = Socket()
    writer = TurnWriter(socket, asyncio.get_running_loop())
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    body = bytearray(b"ok")
    writer.write(body)
    body[:] = b"XX"  # a caller reusing its buffer does not change what was written
    assert socket.writes == [] and writer.get_write_buffer_size() == 40
    await asyncio.sleep(0)  # the turn ends
    assert socket.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    writer.write(b"next")
    await asyncio.sleep(0)
    assert socket.writes[1:] == [b"next"]


async def test_close_sends_what_was_written_first_and_the_rest_is_the_socket_s():
    socket = Socket()
    writer = TurnWriter(socket, asyncio.get_running_loop())
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    writer.close()
    await asyncio.sleep(0)
    assert socket.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and socket.closed_after == 1
    assert writer.get_extra_info("peername") == ("127.0.0.1", 5000) and writer.is_closing()
