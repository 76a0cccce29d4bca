"""The hottest routes, answered ahead of the framework's per-request work: POST /v1/score/{model}
and the Open Inference Protocol's POST /v2/models/{model}[/versions/{version}]/infer.

Measured with py-spy (one-row requests, c=16): FastAPI's telemetry middleware, routing,
dependency injection, exception middleware, body parsing and response_model serialization took
over half of a decision's CPU, the decision itself a quarter (an OIP request through FastAPI:
2.1 ms of scoring CPU against /v1's fast 1.0). ScoringApp hands these routes to this handler
first, which uses the same parts the FastAPI routes do: the same role check, the same parsing and
validation, decide() (oip.infer_rows() for v2), the same error answers (problem_response(); the
protocol's error object for v2) and the service's HTTP metrics, and opens the server span itself
(continuing the caller's traceparent), as FastAPI's telemetry would. Anything out of the ordinary
that would be answered before deciding (a name no model can have, a missing or wrong token, a
body that is not a valid ScoreRequest or a content type other than JSON on v1, a version number
out of range on v2) goes on to the framework with the body as it came, so callers get exactly
the errors it gives. The FastAPI routes stay registered: /docs, OpenAPI and those cases.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import Response

from contracts.registry.api import MAX_VERSION, NAME_PATTERN
from contracts.scoring.api import ScoreRequest
from services.runtime.auth import Principal, require
from services.runtime.errors import Problem, internal_error, problem_response
from services.runtime.telemetry import context_from, provider_tracer
from services.scoring import api, oip
from services.scoring.body import TooLarge, read_body, refuse_too_large, replay

log = logging.getLogger(__name__)
ROUTE = "/v1/score/{model}"
INFER = "/v2/models/{model}/infer"
INFER_VERSION = "/v2/models/{model}/versions/{version}/infer"
# Only a name a model can have: any other goes to the framework, whose route answers 422.
_NAME = NAME_PATTERN.removeprefix("^").removesuffix("$")
_SCORE = re.compile(rf"/v1/score/({_NAME})")
_INFER = re.compile(rf"/v2/models/({_NAME})(?:/versions/([^/]+))?/infer")
_authorize = require(*api.SCORER_ROLES)

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, headers (no content-length)


class ScoreFastPath:
    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit
        self.tracer = provider_tracer()  # the app is built after setup_tracing

    async def __call__(self, scope, receive, send):
        """Answer the request and return None; or return the receive() to hand it on with."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return receive
        path = scope["path"]
        if found := _SCORE.fullmatch(path):
            route = ROUTE
        elif found := _INFER.fullmatch(path):
            route = INFER_VERSION if found.group(2) is not None else INFER
        else:
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
        answer = _score(request, body, found) if route == ROUTE else _infer(request, body, found)
        if answer is None:
            return receive
        try:
            who = await _authorize(request)
        except Problem:
            return receive
        with self.tracer.start_as_current_span(
            f"POST {route}", context=context_from(request.headers.get("traceparent")),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": route, "url.path": path},
        ) as span:
            status, payload, headers = await _answered(request, answer, who)
            span.set_attribute("http.response.status_code", status)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.app.state.metrics.observe("POST", route, status, time.perf_counter() - started)
        return None


Decider = Callable[[Principal], Awaitable[Answer]]


def _score(request: Request, body: bytes, found: re.Match) -> Decider | None:
    """/v1/score's decision for this request, or None when FastAPI would answer an error instead."""
    parsed = _parse(request, body)
    if parsed is None:
        return None

    async def decide(who: Principal) -> Answer:
        [response] = await api.decide(request, who, found.group(1), [parsed], batch=False)
        return 200, response.model_dump_json().encode(), [(b"content-type", b"application/json")]

    return decide


def _infer(request: Request, body: bytes, found: re.Match) -> Decider | None:
    """The OIP infer routes' decision, or None for a version FastAPI's path check would refuse."""
    model, given = found.groups()
    version = None
    if given is not None:
        if not (given.isascii() and given.isdigit()) or not 1 <= int(given) <= MAX_VERSION:
            return None
        version = int(given)

    async def decide(who: Principal) -> Answer:
        try:
            return _parts(await oip.infer_rows(model, request, who, version, body))
        except Problem as exc:
            return _parts(oip.error_of(exc))

    return decide


async def _answered(request: Request, decide: Decider, who: Principal) -> Answer:
    try:
        return await decide(who)
    except Problem as exc:
        return _parts(problem_response(request, exc.status, exc.title, exc.detail, exc.headers, **exc.extra))
    except Exception:  # noqa: BLE001 - a bug: logged, and answered as the app's handler answers it
        log.exception("unhandled error on POST %s", request.url.path)
        return _parts(internal_error(request))


def _parts(response: Response) -> Answer:
    return response.status_code, response.body, [(k, v) for k, v in response.raw_headers
                                                  if k != b"content-length"]


def _parse(request: Request, body: bytes) -> ScoreRequest | None:
    """The ScoreRequest FastAPI would build from this body, or None to let FastAPI answer it.
    FastAPI runs json.loads and then validates in Python mode; pydantic's own JSON parser builds
    the same request at under a third of the cost (the same values, types included, for every
    body both accept: unit-tested). What it refuses and json.loads might take (a byte-order
    mark, UTF-16) goes to FastAPI, which decides it or names what is wrong exactly as before."""
    media = request.headers.get("content-type")
    if media is not None and media.split(";", 1)[0].strip().lower() != "application/json":
        return None
    try:
        return ScoreRequest.model_validate_json(body)
    except (ValueError, RecursionError):  # a ValidationError is a ValueError
        return None
