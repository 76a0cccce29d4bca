"""The registry service: `uvicorn services.registry.app:create_app --factory`."""

from __future__ import annotations

from fastapi import FastAPI, Request

from services.registry import api, store
from services.registry.domain import Kind, RuleViolation
from services.runtime.errors import problem_response
from services.runtime.service import build_app
from services.runtime.settings import Settings, get_settings

STATUS = {
    Kind.conflict: (409, "Conflict"),
    Kind.forbidden: (403, "Forbidden"),
    Kind.invalid: (422, "Unprocessable Content"),
}


def create_app(settings: Settings | None = None) -> FastAPI:
    app = build_app(
        "registry",
        settings or get_settings(),
        title="modelgov registry",
        description="Models, versions, content-addressed scanned artifacts, model cards, lifecycle "
        "and aliases. Every change is an event on stream GOVERNANCE.",
        routers=[api.router],
        outbox=store.outbox,
    )

    @app.exception_handler(RuleViolation)
    async def _rule_violation(request: Request, exc: RuleViolation):
        status, title = STATUS[exc.kind]
        return problem_response(request, status, title, exc.message)

    return app
