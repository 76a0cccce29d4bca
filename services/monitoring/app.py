"""The monitoring service: `uvicorn services.monitoring.app:create_app --factory`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.monitoring import api, store
from services.monitoring.messaging import Monitor, decision_consumer
from services.runtime.service import Runtime, build_app
from services.runtime.settings import Settings, get_settings


async def start_background(runtime: Runtime) -> None:
    consumer = decision_consumer(runtime.bus, runtime.engine)
    monitor = Monitor(runtime.settings, runtime.engine)
    runtime.extras.update(consumer=consumer, monitor=monitor, tasks=[
        asyncio.create_task(consumer.run(), name="monitoring-decisions"),
        asyncio.create_task(monitor.run(), name="monitoring-evaluator"),
    ])


async def stop_background(runtime: Runtime) -> None:
    tasks = runtime.extras.get("tasks", [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if "monitor" in runtime.extras:
        await runtime.extras["monitor"].close()


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app(
        "monitoring",
        settings or get_settings(),
        title="modelgov monitoring",
        description="Outcomes in; drift, data quality, performance, fairness and operations figures "
        "per model, version and window out; alerts and retrain triggers as events.",
        routers=[api.router],
        outbox=store.outbox,
        on_start=[start_background],
        on_stop=[stop_background],
    )
