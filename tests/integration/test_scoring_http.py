"""Scoring's HTTP protocol in a real uvicorn server: HTTP/1.1 as uvicorn's own protocol speaks it."""

from __future__ import annotations

import asyncio

import uvicorn

from deploy.servers import free_port
from deploy.stack import SCORING_HTTP
from services.scoring.http import HttpToolsOneWrite, TurnWriter


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    answer = b"%s %s %d" % (scope["method"].encode(), scope["path"].encode(), len(body))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    return status, headers, await reader.readexactly(int(headers[b"content-length"]))


async def test_keep_alive_pipelining_expect_continue_and_close_work_as_with_uvicorn_s_own():
    port = free_port()
    assert SCORING_HTTP[0] == "--http"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=SCORING_HTTP[1],
                                           lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # two requests in one write, on one keep-alive connection
        writer.write(b"POST /v1/score/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = await read_response(reader), await read_response(reader)
        assert first[0] == b"HTTP/1.1 200 OK" and first[2] == b"POST /v1/score/a 3"
        assert second[2] == b"GET /readyz 0" and b"date" in second[1]
        [connection] = server.server_state.connections  # check: served by the one-write protocol
        assert type(connection) is HttpToolsOneWrite and type(connection.transport) is TurnWriter
        # a client that waits for 100 Continue gets it, then its answer
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hi")
        assert (await read_response(reader))[2] == b"POST /x 2"
        # Connection: close is answered, then the server closes
        writer.write(b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        last = await read_response(reader)
        assert last[2] == b"GET /bye 0" and last[1][b"connection"] == b"close"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        server.should_exit = True
        await serving
