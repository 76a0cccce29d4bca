"""The FastAPI factory every service shares: settings, db, migrations, bus, outbox relay."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine, Table

from services.runtime import migrate
from services.runtime.auth import TokenBook
from services.runtime.bus import Bus
from services.runtime.db import make_engine
from services.runtime.errors import document_problems, install_error_handlers
from services.runtime.health import HttpMetrics, MetricsMiddleware
from services.runtime.health import router as health_router
from services.runtime.heap import settle_heap
from services.runtime.outbox import Relay
from services.runtime.settings import Settings
from services.runtime.telemetry import setup_tracing

Hook = Callable[["Runtime"], Awaitable[None]]


@dataclass
class Runtime:
    """What a running service holds; handlers reach it as `request.app.state.runtime`."""

    name: str
    settings: Settings
    engine: Engine
    bus: Bus
    relay: Relay | None = None
    extras: dict = field(default_factory=dict)


def build_app(
    name: str,
    settings: Settings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    outbox: Table | None = None,
    on_start: Sequence[Hook] = (),
    on_stop: Sequence[Hook] = (),
    app_class: type[FastAPI] = FastAPI,
) -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    setup_tracing(settings, name)
    url = settings.database_url(name)
    engine = make_engine(url)
    bus = Bus(settings, name)
    runtime = Runtime(name, settings, engine, bus)
    if outbox is not None:
        runtime.relay = Relay(engine, outbox, bus, settings.outbox_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        migrate.upgrade(name, url)
        await bus.start()
        if runtime.relay:
            await runtime.relay.start()
        for hook in on_start:
            await hook(runtime)
        settle_heap(full=True)
        try:
            yield
        finally:
            for hook in reversed(on_stop):
                await hook(runtime)
            if runtime.relay:
                await runtime.relay.stop()
            await bus.close()
            engine.dispose()

    # One server span per request carries the trace id into events. FastAPI's extra spans per
    # operation, its OpenTelemetry HTTP metrics (Prometheus counts requests here) and its
    # OpenTelemetry error logs (no logger provider is set up; errors go to the log) cost more CPU
    # per scoring request than the model does.
    app = app_class(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  telemetry={"operation_spans": False, "metrics": False, "logs": False})
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.tokens = TokenBook.from_file(settings.tokens_path)
    app.state.metrics = HttpMetrics(name)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health_router)
    for router in routers:
        app.include_router(router)
    document_problems(app)
    return app
