"""Pre-warming: each replica loads the versions its deployments name before a request needs them.

What asks for a pass (`messaging.ReplicaFeed` delivers the events, to every replica):
- start-up, and every (re)subscription to the feed: every deployment in the store;
- `deployment.changed` (from any replica): that model's deployment, read again from the store,
  which says what serves now (so an event that arrives late or twice loads nothing stale);
  the replica's cached deployment is then re-read, so it routes by the change once warm rather
  than within the deployment TTL;
- `model_alias.set` in the registry: the version it names is likely to serve next (a rollout
  moves `challenger` / `champion`); it is loaded only into spare cache room, never evicting a
  loaded version;
- a readiness probe for a version (`GET /v2/models/{m}/versions/{v}/ready`): that version.

Requests are coalesced per model and served by one background task, one load at a time. A version
that cannot load (registry unreachable, tampered or unsafe artifact) is logged and counted, and a
tampered one recorded as `artifact.rejected`, exactly as on the request path (the loader does
both); the pass goes on with the next version, and nothing here can stop the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from sqlalchemy import Engine

from contracts.scoring.api import DeploymentPublic
from services.runtime.heap import settle_heap
from services.scoring import store
from services.scoring.api import DeploymentCache
from services.scoring.models import LoadError, ModelLoader

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0  # after a pass failed outright (the database unreachable), try it again


class Prewarmer:
    def __init__(self, engine: Engine, loader: ModelLoader, deployments: DeploymentCache) -> None:
        self.engine, self.loader, self.deployments = engine, loader, deployments
        self._everything = False
        self._models: set[str] = set()  # deployments to warm
        self._spare: dict[str, set[int]] = {}  # versions to load into spare room only
        self._wanted: dict[str, set[int]] = {}  # versions to load
        self._wake = asyncio.Event()
        self.passes = 0

    def everything(self) -> None:
        self._everything = True
        self._wake.set()

    def deployment(self, model: str) -> None:
        self._models.add(model)
        self._wake.set()

    def aliased(self, model: str, version: int) -> None:
        self._spare.setdefault(model, set()).add(version)
        self._wake.set()

    def versions(self, model: str, versions: Iterable[int]) -> None:
        self._wanted.setdefault(model, set()).update(versions)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            everything, models, spare, wanted = self._everything, self._models, self._spare, self._wanted
            self._everything, self._models, self._spare, self._wanted = False, set(), {}, {}
            try:
                await self._pass(everything, models, spare, wanted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down: keep the work, retry
                log.warning("pre-warm pass failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc,
                            RETRY_SECONDS)
                self._everything |= everything
                self._models |= models
                for model, versions in spare.items():
                    self._spare.setdefault(model, set()).update(versions)
                for model, versions in wanted.items():
                    self._wanted.setdefault(model, set()).update(versions)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            if everything and self.passes == 0:
                settle_heap(full=True)  # after start-up's loads, as the loader does after each
            self.passes += 1

    async def _pass(self, everything: bool, models: set[str], spare: dict[str, set[int]],
                    wanted: dict[str, set[int]]) -> None:
        if everything:
            deployed = await asyncio.to_thread(self._all)
            # the versions that decide first, then the shadows: when the cache is too small for
            # all of them, the deciding ones are the last loaded, so the last evicted
            await self._load([(d.model, v) for d in deployed for v in deciding(d)])
            await self._load([(d.model, v) for d in deployed for v in d.shadow])
        for model in sorted(models):
            found = await asyncio.to_thread(self._one, model)
            if found is not None:
                await self._load([(model, v) for v in [*deciding(found), *found.shadow]])
            await self.deployments.refresh(model)
        await self._load([(m, v) for m, versions in wanted.items() for v in sorted(versions)])
        for model, versions in spare.items():
            for version in sorted(versions):
                if self.loader.cached(model, version) is None and self.loader.has_room():
                    await self._load([(model, version)])

    async def _load(self, versions: list[tuple[str, int]]) -> None:
        for model, version in versions:
            try:
                await self.loader.get(model, version)
            except LoadError as exc:
                log.warning("pre-warm of %s v%s failed: %s", model, version, exc.detail)
            except Exception:  # noqa: BLE001 - a bug in one load must not stop the others
                log.exception("pre-warm of %s v%s failed", model, version)

    def _all(self) -> list[DeploymentPublic]:
        with self.engine.connect() as conn:
            return store.list_deployments(conn)

    def _one(self, model: str) -> DeploymentPublic | None:
        with self.engine.connect() as conn:
            return store.get_deployment(conn, model)


def deciding(deployment: DeploymentPublic) -> list[int]:
    return [deployment.champion, *([deployment.canary.version] if deployment.canary else [])]
