"""The audit service: FastAPI factory and the consumers it runs."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.audit import api
from services.audit.jobs import ReplayJobs
from services.audit.messaging import LiveConsumer
from services.audit.replay import ReplayWorker
from services.audit.store import AuditStore
from services.runtime.service import Runtime, build_app
from services.runtime.settings import Settings, get_settings

DESCRIPTION = """Append-only, hash-chained copy of every modelgov event (one chain per stream),
rebuilt from the NATS JetStream log alone. Read-only for regulators; replay for admins."""


async def _start_consumers(runtime: Runtime) -> None:
    store = AuditStore(runtime.engine)
    runtime.extras["store"] = store
    runtime.extras["replayer"] = replayer = ReplayWorker()
    runtime.extras["replay_jobs"] = ReplayJobs()
    await asyncio.to_thread(replayer.start)
    runtime.extras["consumers"] = [
        asyncio.create_task(LiveConsumer(store, stream, runtime.bus).run(), name=f"audit-{stream}")
        for stream in api.STREAMS
    ]


async def _stop_consumers(runtime: Runtime) -> None:
    for task in runtime.extras.get("consumers", []):
        task.cancel()
    await asyncio.gather(*runtime.extras.get("consumers", []), return_exceptions=True)
    if jobs := runtime.extras.get("replay_jobs"):
        await jobs.close()
    if replayer := runtime.extras.get("replayer"):
        await asyncio.to_thread(replayer.close)


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app(
        "audit", settings or get_settings(), title="modelgov audit", description=DESCRIPTION,
        routers=[api.router], on_start=[_start_consumers], on_stop=[_stop_consumers],
    )
