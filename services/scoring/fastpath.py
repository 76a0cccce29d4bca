"""POST /v1/score/{model}, the hottest route, answered ahead of the framework's per-request work.

Measured with py-spy (one-row requests, c=16): FastAPI's telemetry middleware, routing,
dependency injection, exception middleware, body parsing and response_model serialization took
over half of a decision's CPU, the decision itself a quarter. ScoringApp hands that one route to
this handler first, which uses the same parts the FastAPI route does: the same role check, the
same JSON parsing and ScoreRequest validation, decide(), problem_response() and the service's
HTTP metrics, and opens the server span itself (continuing the caller's traceparent), as FastAPI's
telemetry would. Anything out of the ordinary (a missing or wrong token, a body that is not a
valid ScoreRequest, a content type other than JSON) goes on to the framework with the body as it
came, so callers get exactly the errors it gives. The FastAPI route stays registered: /docs,
OpenAPI and those cases.
"""

from __future__ import annotations

import json
import logging
import re
import time

from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.requests import Request

from contracts.scoring.api import ScoreRequest
from services.runtime.auth import require
from services.runtime.errors import Problem, internal_error, problem_response
from services.runtime.telemetry import context_from, tracer
from services.scoring import api
from services.scoring.body import TooLarge, read_body, refuse_too_large, replay

log = logging.getLogger(__name__)
ROUTE = "/v1/score/{model}"
_PATH = re.compile(r"/v1/score/([^/]+)")
_authorize = require(*api.SCORER_ROLES)


class ScoreFastPath:
    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        """Answer the request and return None; or return the receive() to hand it on with."""
        found = (scope["type"] == "http" and scope["method"] == "POST"
                 and _PATH.fullmatch(scope["path"]))
        if not found:
            return receive
        started = time.perf_counter()
        try:
            body = await read_body(scope, receive, self.limit)
        except TooLarge:
            await refuse_too_large(scope, send, self.limit)
            return None
        if body is None:
            return None  # the client went away
        receive = replay(body, receive)
        scope["app"] = self.app
        request = Request(scope, receive)
        parsed = _parse(request, body)
        if parsed is None:
            return receive
        try:
            who = await _authorize(request)
        except Problem:
            return receive
        with tracer.start_as_current_span(
            f"POST {ROUTE}", context=context_from(request.headers.get("traceparent")),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": ROUTE, "url.path": scope["path"]},
        ) as span:
            status, payload, headers = await _decide(request, who, found.group(1), parsed)
            span.set_attribute("http.response.status_code", status)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.app.state.metrics.observe("POST", ROUTE, status, time.perf_counter() - started)
        return None


async def _decide(request: Request, who, model: str, parsed: ScoreRequest):
    try:
        [response] = await api.decide(request, who, model, [parsed], batch=False)
        return 200, response.model_dump_json().encode(), [(b"content-type", b"application/json")]
    except Problem as exc:
        answer = problem_response(request, exc.status, exc.title, exc.detail, exc.headers, **exc.extra)
    except Exception:  # noqa: BLE001 - a bug: logged, and answered as the app's handler answers it
        log.exception("unhandled error on POST %s", request.url.path)
        answer = internal_error(request)
    headers = [(k, v) for k, v in answer.raw_headers if k != b"content-length"]
    return answer.status_code, answer.body, headers


def _parse(request: Request, body: bytes) -> ScoreRequest | None:
    """The ScoreRequest FastAPI would build from this body (json.loads, then validation in
    Python mode, as it does), or None when it would answer an error instead."""
    media = request.headers.get("content-type")
    if media is not None and media.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        return ScoreRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):  # JSONDecodeError is a ValueError
        return None
