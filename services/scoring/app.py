"""The scoring service: `uvicorn services.scoring.app:create_app --factory
--http services.scoring.http:HttpToolsOneWrite` (that protocol sends each response in one write;
uvicorn's own serves the same, slower)."""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
from fastapi import FastAPI

from contracts.envelope import EventData
from contracts.registry.events import ModelAliasSet
from contracts.scoring.events import DeploymentChanged
from services.runtime.service import Runtime, build_app
from services.runtime.settings import Settings, get_settings
from services.scoring import api, oip, store
from services.scoring.body import BodyLimit
from services.scoring.fastpath import ScoreFastPath
from services.scoring.messaging import Recorder, ReplicaFeed, publish_refusals
from services.scoring.metrics import ScoringMetrics
from services.scoring.models import ModelLoader
from services.scoring.prewarm import Prewarmer

DESCRIPTION = """Online decisions for credit and fraud models: champion / canary / shadow routing
by a sticky hash of the entity id, every decision a `decision.made` event made durable (JetStream
PubAck, else the outbox) before the response is sent."""


def create_app(settings: Settings | None = None,
               registry_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """`registry_transport` lets a test talk to an in-process registry; by default, HTTP."""
    settings = settings or get_settings()

    async def start(runtime: Runtime) -> None:
        metrics = app.state.scoring_metrics
        recorder = Recorder(runtime, metrics)
        runtime.extras["recorder"] = recorder
        deployments = api.DeploymentCache(runtime.engine, settings.scoring_deployment_ttl_seconds)
        runtime.extras["deployments"] = deployments
        loader = ModelLoader(settings, metrics, recorder.artifact_rejected, registry_transport)
        runtime.extras["loader"] = loader
        metrics.watch_coalescing(loader.loaded)
        prewarmer = Prewarmer(runtime.engine, loader, deployments)
        runtime.extras["prewarmer"] = prewarmer
        prewarmer.everything()  # start-up: whatever the store says serves, NATS or not
        feed = ReplicaFeed(runtime.bus, on_event=partial(_changed, prewarmer),
                           on_subscribed=prewarmer.everything)
        runtime.extras["feed"] = feed
        runtime.extras["background"] = [
            asyncio.create_task(prewarmer.run(), name="scoring-prewarm"),
            asyncio.create_task(feed.run(), name="scoring-feed"),
            asyncio.create_task(publish_refusals(runtime, metrics, settings.scoring_refusal_tally_seconds),
                                name="scoring-refusals"),
        ]

    async def stop(runtime: Runtime) -> None:
        background = runtime.extras["background"]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if (shadows := runtime.extras.get("shadows")) is not None:
            await shadows.close(timeout=5)  # let answered decisions' shadows finish, briefly
        await runtime.extras["loader"].close()
        runtime.extras["recorder"].publisher.close()

    app = build_app("scoring", settings, title="modelgov scoring", description=DESCRIPTION,
                    routers=[api.router, oip.router], outbox=store.outbox, on_start=[start], on_stop=[stop],
                    app_class=ScoringApp)
    app.state.scoring_metrics = ScoringMetrics(app.state.metrics.registry)
    app.add_middleware(BodyLimit, limit=settings.scoring_max_body_bytes,
                       prefixes=("/v1/score", "/v2/models"))
    app.fast_path = ScoreFastPath(app, settings.scoring_max_body_bytes)
    return app


class ScoringApp(FastAPI):
    """FastAPI, with POST /v1/score/{model} and the OIP infer routes offered to a lean handler
    ahead of its whole stack (services/scoring/fastpath.py says why and how it keeps the routes'
    behaviour)."""

    fast_path: ScoreFastPath | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.fast_path is not None:
            receive = await self.fast_path(scope, receive, send)
            if receive is None:
                return  # answered
        await super().__call__(scope, receive, send)


def _changed(prewarmer: Prewarmer, data: EventData) -> None:
    """What a feed event asks of this replica's cache."""
    if isinstance(data, DeploymentChanged):
        prewarmer.deployment(data.model)
    elif isinstance(data, ModelAliasSet):
        prewarmer.aliased(data.name, data.version)
