"""Deployments as the scoring hot path reads them: cached, re-read within the TTL, put at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import create_engine

from contracts.scoring.api import DeploymentSpec
from services.scoring import store
from services.scoring.api import DeploymentCache


def _engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'scoring.db'}")
    store.metadata.create_all(engine)
    return engine


def _set(engine, champion: int, exists: bool) -> None:
    """What another replica's PUT does to the shared row."""
    with engine.begin() as conn:
        store.put_deployment(conn, "fraud", DeploymentSpec(champion=champion), datetime.now(UTC),
                             "user:ops", exists=exists)


async def test_another_replicas_change_is_seen_within_the_ttl(tmp_path):
    engine = _engine(tmp_path)
    cache = DeploymentCache(engine, ttl=0.3)
    # check: no row yet is remembered as no row, then a new row shows within the TTL
    assert await cache.get("fraud") is None
    _set(engine, 1, exists=False)
    assert await cache.get("fraud") is None
    await asyncio.sleep(0.35)
    assert (await cache.get("fraud")).champion == 1
    # check: a change elsewhere is not seen at once, and is seen after the TTL
    _set(engine, 2, exists=True)
    assert (await cache.get("fraud")).champion == 1
    await asyncio.sleep(0.35)
    assert (await cache.get("fraud")).champion == 2


async def test_a_put_on_this_replica_applies_at_once_and_stale_requests_share_one_read(tmp_path):
    engine = _engine(tmp_path)
    _set(engine, 1, exists=False)
    cache = DeploymentCache(engine, ttl=60)
    first = await cache.get("fraud")
    _set(engine, 2, exists=True)
    with engine.connect() as conn:
        cache.put("fraud", store.get_deployment(conn, "fraud"))
    # check: the replica that stored it routes by it immediately
    assert (await cache.get("fraud")).champion == 2 != first.champion
    # check: 16 requests for a stale model make one read between them
    cache.ttl = 0
    reads = 0
    read = cache._read

    async def counted(model):
        nonlocal reads
        reads += 1
        return await read(model)

    cache._read = counted
    got = await asyncio.gather(*(cache.get("fraud") for _ in range(16)))
    assert {d.champion for d in got} == {2} and reads == 1
