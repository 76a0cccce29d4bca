"""Pre-warming, on SQLite and PostgreSQL with a real registry and nats-server: the versions a
deployment names are loaded before any request needs them, on the replica that took the PUT, on
every other replica sharing its database and NATS (through each replica's own feed of
deployment.changed events), at start-up, and for a version an alias names; a version that cannot
load is refused and reported, and the service keeps serving."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from contracts.scoring.api import DeploymentSpec
from services.scoring import prewarm, store
from services.scoring.api import DeploymentCache
from services.scoring.models import ArtifactMismatch
from services.scoring.prewarm import Prewarmer
from tests.conftest import bearer
from tests.integration.test_scoring_api import MODEL, _tamper, stack_settings
from tests.nats_helpers import stream_messages
from tests.scoring_helpers import SAFE, deploy, metric, register_versions, replica, score, scoring_stack
from tests.waiting import wait_for

LOADS = "modelgov_scoring_model_loads_total"


def loaded(client, version: int) -> float | None:
    return metric(client, LOADS, model=MODEL, version=str(version), outcome="loaded")


def decided(client) -> bool:
    return "modelgov_scoring_decisions_total{" in client.get("/metrics").text


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, nats_server, settings_factory, make_db_url):
    # A long deployment TTL: another replica's change can only reach this one through its event.
    settings = stack_settings(request.param, nats_server, settings_factory, make_db_url).model_copy(
        update={"scoring_deployment_ttl_seconds": 600.0})
    with scoring_stack(settings) as (registry, scoring):
        yield registry, scoring, settings


def test_a_put_loads_every_version_it_names_before_any_request_and_start_up_loads_every_deployment(stack):
    registry, scoring, settings = stack
    assert register_versions(registry, kinds=("linear", "boosted", "linear")) == [1, 2, 3]
    # act: champion, canary and shadow in one PUT
    body = {"champion": 1, "canary": {"version": 2, "percent": 10}, "shadow": [3]}
    assert deploy(scoring, body).status_code == 200
    # check: all three are loaded, once, and nothing was scored
    assert [loaded(scoring, v) for v in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert not decided(scoring)
    # act: a replica starting on the same database
    with replica(settings, registry) as second:
        # check: it loads what the store says serves, before any request
        wait_for(lambda: [loaded(second, v) for v in (1, 2, 3)] == [1.0, 1.0, 1.0])
        assert not decided(second)
        ready = second.get(f"/v2/models/{MODEL}/ready", headers=bearer("scoring_client"))
        assert ready.status_code == 200, ready.text


def test_a_second_replica_warms_itself_on_the_first_replicas_deployment_change(stack):
    registry, first, settings = stack
    assert register_versions(registry) == [1, 2]
    with replica(settings, registry) as second:
        # act: the first replica deploys version 1
        assert deploy(first, {"champion": 1}).status_code == 200
        # check: the second replica loads it on the deployment.changed event, before any request
        wait_for(lambda: loaded(second, 1) == 1.0)
        assert loaded(second, 2) is None and not decided(second)
        assert score(second, "e-1", SAFE).json()["model_version"] == 1
        # act: the first replica swaps the champion (the second cached its deployment for 600 s)
        assert deploy(first, {"champion": 2, "shadow": [1]}).status_code == 200
        # check: the second loads version 2 with no request asking, then routes by the change at
        # once (not after its 600 s), and no request had to load anything
        wait_for(lambda: loaded(second, 2) == 1.0)
        wait_for(lambda: score(second, "e-2", SAFE).json()["model_version"] == 2)
        assert [loaded(second, v) for v in (1, 2)] == [1.0, 1.0]


def test_an_aliased_version_is_warmed_and_one_that_cannot_load_is_reported_without_harm(nats_server, stack):
    registry, scoring, settings = stack
    assert register_versions(registry, kinds=("linear", "boosted", "linear")) == [1, 2, 3]
    assert deploy(scoring, {"champion": 1}).status_code == 200
    sha = registry.get(f"/v1/models/{MODEL}/versions/2", headers=bearer("service")).json()["artifact_sha256"]
    _tamper(settings, sha)

    def alias(name: str, version: int) -> None:
        response = registry.put(f"/v1/models/{MODEL}/aliases/{name}", headers=bearer("service"),
                                json={"version": version, "evidence": "review-credit-default-v2"})
        assert response.status_code == 200, response.text

    # act: an alias names the tampered version
    alias("challenger", 2)
    # check: the warm-up refused it, counted it and recorded why, as a request would have
    found = wait_for(lambda: stream_messages(nats_server.url, "GOVERNANCE", "gov.scoring.artifact.rejected"))
    event = json.loads(found[0].data)
    assert event["subject"] == f"model/{MODEL}/version/2" and event["data"]["expected_sha256"] == sha
    assert metric(scoring, LOADS, model=MODEL, version="2", outcome="refused") == 1.0
    # check: the service is unharmed: it still decides with the champion
    assert score(scoring, "e-1", SAFE).json()["model_version"] == 1
    # act / check: an alias on a sound version loads it (the cache has room)
    alias("challenger", 3)
    wait_for(lambda: loaded(scoring, 3) == 1.0)
    assert scoring.get("/readyz").status_code == 200


def test_the_feed_survives_a_nats_restart(nats_server, settings_factory, make_db_url):
    settings = stack_settings("sqlite", nats_server, settings_factory, make_db_url).model_copy(
        update={"scoring_deployment_ttl_seconds": 600.0})
    with scoring_stack(settings) as (registry, first), replica(settings, registry) as second:
        assert register_versions(registry) == [1, 2]
        assert deploy(first, {"champion": 1}).status_code == 200
        wait_for(lambda: loaded(second, 1) == 1.0)
        # act: NATS goes away (its in-memory consumers with it) and comes back
        nats_server.stop()
        nats_server.start()
        wait_for(lambda: second.get("/readyz").status_code == 200 and first.get("/readyz").status_code == 200)
        assert deploy(first, {"champion": 2}).status_code == 200
        # check: the second replica's feed subscribed again on the reconnection and delivers the change
        wait_for(lambda: loaded(second, 2) == 1.0)
        assert score(second, "e-1", SAFE).json()["model_version"] == 2


# -- the rules, with a stand-in loader ----------------------------------------------------------


class Loader:
    """ModelLoader's surface the pre-warmer uses: an LRU of `capacity`; `refuse` raises as a
    tampered artifact does."""

    def __init__(self, capacity: int, refuse: tuple[tuple[str, int], ...] = ()) -> None:
        self.capacity, self.refuse = capacity, refuse
        self.cache: dict[tuple[str, int], bool] = {}
        self.loads: list[tuple[str, int]] = []

    async def get(self, model: str, version: int) -> None:
        if (model, version) in self.refuse:
            raise ArtifactMismatch(f"version {version} of model '{model}' refused: tampered")
        if (model, version) not in self.cache:
            self.loads.append((model, version))
        self.cache.pop((model, version), None)
        self.cache[(model, version)] = True
        while len(self.cache) > self.capacity:
            del self.cache[next(iter(self.cache))]

    def cached(self, model: str, version: int):
        return self.cache.get((model, version))

    def has_room(self) -> bool:
        return len(self.cache) < self.capacity


def _store(tmp_path, deployments: dict[str, DeploymentSpec]):
    engine = create_engine(f"sqlite:///{tmp_path / 'scoring.db'}")
    store.metadata.create_all(engine)
    with engine.begin() as conn:
        for model, spec in deployments.items():
            store.put_deployment(conn, model, spec, datetime.now(UTC), "user:ops", exists=False)
    return engine


async def _settle(prewarmer: Prewarmer, passes: int) -> None:
    for _ in range(200):
        if prewarmer.passes >= passes:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{passes} passes expected, {prewarmer.passes} made")


async def test_start_up_loads_deciding_versions_first_and_one_refusal_stops_nothing(tmp_path, caplog):
    engine = _store(tmp_path, {
        "fraud": DeploymentSpec(champion=1, canary={"version": 2, "percent": 5}, shadow=[3]),
        "credit": DeploymentSpec(champion=7),
    })
    loader = Loader(capacity=8, refuse=(("fraud", 2),))
    prewarmer = Prewarmer(engine, loader, DeploymentCache(engine, ttl=60))
    task = asyncio.create_task(prewarmer.run())
    # act
    prewarmer.everything()
    await _settle(prewarmer, 1)
    # check: champions and canaries before shadows; the refused canary logged, the rest loaded
    assert loader.loads == [("credit", 7), ("fraud", 1), ("fraud", 3)]
    assert "pre-warm of fraud v2 failed: version 2 of model 'fraud' refused: tampered" in caplog.text
    assert not task.done()
    task.cancel()


async def test_a_changed_deployment_is_read_from_the_store_and_aliases_load_only_into_spare_room(tmp_path):
    engine = _store(tmp_path, {"fraud": DeploymentSpec(champion=1, shadow=[2])})
    loader = Loader(capacity=3)
    deployments = DeploymentCache(engine, ttl=60)
    prewarmer = Prewarmer(engine, loader, deployments)
    task = asyncio.create_task(prewarmer.run())
    # act: an event about the model (whatever it said, the store says 1 and shadow 2)
    prewarmer.deployment("fraud")
    await _settle(prewarmer, 1)
    assert loader.loads == [("fraud", 1), ("fraud", 2)]
    # check: the cached deployment was re-read
    assert (await deployments.get("fraud")).champion == 1
    # act: two aliases; room for one
    prewarmer.aliased("fraud", 5)
    await _settle(prewarmer, 2)
    prewarmer.aliased("fraud", 6)
    await _settle(prewarmer, 3)
    # check: the first filled the room, the second evicted nothing
    assert loader.loads[2:] == [("fraud", 5)]
    assert set(loader.cache) == {("fraud", 1), ("fraud", 2), ("fraud", 5)}
    task.cancel()


async def test_a_pass_that_cannot_read_the_store_is_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(prewarm, "RETRY_SECONDS", 0.05)
    engine = create_engine(f"sqlite:///{tmp_path / 'scoring.db'}")  # no tables yet
    loader = Loader(capacity=8)
    prewarmer = Prewarmer(engine, loader, DeploymentCache(engine, ttl=60))
    task = asyncio.create_task(prewarmer.run())
    prewarmer.everything()
    await asyncio.sleep(0.1)
    assert prewarmer.passes == 0 and not task.done()
    # act: the store comes up
    store.metadata.create_all(engine)
    with engine.begin() as conn:
        store.put_deployment(conn, "fraud", DeploymentSpec(champion=4), datetime.now(UTC), "user:ops",
                             exists=False)
    # check: the pass it kept succeeds
    await _settle(prewarmer, 1)
    assert loader.loads == [("fraud", 4)]
    task.cancel()
