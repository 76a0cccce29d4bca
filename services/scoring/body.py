"""Request bodies on the scoring routes: read once, within a size limit, and handed on."""

from __future__ import annotations

import json

from services.runtime.errors import PROBLEM_JSON


class TooLarge(Exception):
    """The body is over the limit (or declared so)."""


async def read_body(scope, receive, limit: int) -> bytes | None:
    """The whole body; None when the client went away first. Raises TooLarge past `limit` bytes,
    before reading anything when Content-Length already says so."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def replay(body: bytes, receive):
    """A receive() that hands the already-read body on once, then listens to the client again."""
    replayed = False

    async def again():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def refuse_too_large(scope, send, limit: int) -> None:
    detail = f"the request body is larger than {limit} bytes; send fewer rows per request"
    if scope["path"].startswith("/v2/"):  # the Open Inference Protocol's error shape
        doc, media_type = {"error": detail}, "application/json"
    else:
        doc = {"type": "about:blank", "title": "Content Too Large", "status": 413, "detail": detail,
               "instance": scope["path"]}
        media_type = PROBLEM_JSON
    payload = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", media_type.encode()),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """413 for a request body over `limit` bytes under one of `prefixes`, before anything parses it."""

    def __init__(self, app, limit: int, prefixes: tuple[str, ...]) -> None:
        self.app, self.limit, self.prefixes = app, limit, prefixes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.limit)
        except TooLarge:
            await refuse_too_large(scope, send, self.limit)
            return
        if body is not None:
            await self.app(scope, replay(body, receive), send)
