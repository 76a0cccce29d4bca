"""RFC 9457 problem+json for every error: a clear `detail`, never a bare 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from rfc8785 import CanonicalizationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a request to answer with problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request, status: int, title: str, detail: str, headers=None, **extra
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": request.url.path, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def internal_error(request: Request) -> JSONResponse:
    """A bug's answer: problem+json 500 (the details go to the log, not the caller)."""
    return problem_response(request, 500, "Internal Server Error",
                            "an unexpected error occurred; it has been logged")


def describe_validation(errors: list[dict]) -> str:
    """One line per offending field: where it is and what is wrong with it."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx", {}).get("error", "")
            parts.append(f"the request body is not valid JSON ({ctx})".replace(" ()", ""))
        else:
            parts.append(f"{loc or 'body'}: {msg}")
    return "; ".join(parts)


# RFC 9457 problem details as every error here is written; in each service's OpenAPI so that a
# client generated from it reads errors as they come (FastAPI documents its own 422 shape).
PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what is wrong, and what to change"},
        "instance": {"type": "string", "description": "the request's path"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "one entry per offending field or feature, where there are several"},
    },
}
_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document_problems(app: FastAPI) -> None:
    """Make the app's OpenAPI say what its errors are: problem+json, for 422 and the rest.

    An operation that documents its own `default` response answers errors its own way (scoring's
    Open Inference Protocol routes: `{"error": ...}`, 400 for bad input): it keeps its documents,
    and FastAPI's 422, which it never sends, is dropped."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "default" in responses:
                    responses.pop("422", None)
                    continue
                if "422" in responses:
                    responses["422"] = {"description": "the request is invalid; detail says how",
                                        "content": _PROBLEM}
                responses.setdefault("default", {"description": "an error (problem details)",
                                                 "content": _PROBLEM})
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        return problem_response(request, 422, "Unprocessable Content", describe_validation(errors),
                                errors=_jsonable(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return problem_response(request, exc.status_code, _title(exc.status_code), detail,
                                getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError):
        # The database refused a value the request carried (PostgreSQL: a NUL character in text,
        # a number past its column): the caller's to mend, and the transaction rolled back.
        return problem_response(request, 422, "Unprocessable Content", unstorable(exc))

    @app.exception_handler(CanonicalizationError)
    async def _uncanonical(request: Request, exc: CanonicalizationError):
        # Only a caller's value can be one: the services make no such numbers themselves.
        return problem_response(request, 422, "Unprocessable Content", uncanonical(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error(request)


def unstorable(exc: DataError) -> str:
    """What the database said, without the statement; a NUL character said plainly."""
    said = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
    if "NUL" in said:
        return ("a text value contains the NUL character (U+0000), which the database cannot store; "
                f"remove it ({said})")
    return f"a value cannot be stored: {said}; nothing was changed"


def uncanonical(exc: CanonicalizationError) -> str:
    return (f"a number in the request cannot be recorded exactly ({exc}): events are RFC 8785 JSON, "
            "whose integers lie within ±(2**53 - 1) and whose numbers are finite; send it within "
            "those bounds (or as a string)")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _jsonable(errors: list[dict]) -> list[dict]:
    out = []
    for e in errors:
        ctx = e.get("ctx")
        out.append({**e, "ctx": {k: str(v) for k, v in ctx.items()}} if ctx else e)
    return out
