"""Liveness, readiness and Prometheus metrics, the same on every service."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from services.runtime.errors import problem_response
from services.runtime.labels import Children

router = APIRouter(tags=["operations"])


class HttpMetrics:
    """Per-app registry, so several services can live in one process (tests, benchmarks)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["service", "method", "route", "status"]
        self.requests = Counter("modelgov_http_requests_total", "HTTP requests", labels,
                                registry=self.registry)
        self.latency = Histogram("modelgov_http_request_duration_seconds", "HTTP latency",
                                 labels[:3], registry=self.registry)
        self.service = service
        self._requests, self._latency = Children(self.requests), Children(self.latency)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests(self.service, method, route, str(status)).inc()
        self._latency(self.service, method, route).observe(seconds)


class MetricsMiddleware:
    def __init__(self, app, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def capture(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)


@router.get("/healthz", summary="Liveness")
def healthz(request: Request) -> dict[str, str]:
    """The process is up, and which service it is (the stack launcher checks before reusing a port)."""
    return {"status": "ok", "service": request.app.state.runtime.name}


@router.get("/readyz", summary="Readiness: database and NATS reachable")
async def readyz(request: Request):
    """Ready when the service's database answers and its NATS connection is up."""
    checks = await readiness(request)
    if all(checks.values()):
        return {"status": "ready", "checks": checks}
    return problem_response(request, 503, "Service Unavailable", why_not_ready(checks), checks=checks)


async def readiness(request: Request) -> dict[str, bool]:
    """Each dependency readiness needs, and whether it answers."""
    runtime = request.app.state.runtime
    return {"database": await asyncio.to_thread(_db_ok, runtime.engine), "nats": runtime.bus.connected}


def why_not_ready(checks: dict[str, bool]) -> str:
    return f"not ready: {', '.join(k for k, ok in checks.items() if not ok)} unreachable"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


def _db_ok(engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False
