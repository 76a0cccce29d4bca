"""The runtime's durable consumer on real JetStream: once per event id, poison to dead letters."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from contracts.streams import GOVERNANCE
from services.runtime.bus import Bus
from services.runtime.consumer import DurableConsumer, Reject, processed_table
from services.runtime.db import make_engine
from services.runtime.settings import Settings
from tests.factories import model_created
from tests.nats_helpers import publish_events, publish_raw, stream_messages


@pytest.fixture
def tables(db_url):
    metadata = MetaData()
    processed = processed_table(metadata)
    seen = Table("seen", metadata, Column("event_id", String(64), primary_key=True),
                 Column("name", String(64)))
    engine = make_engine(db_url)
    metadata.create_all(engine)
    yield engine, processed, seen
    engine.dispose()


async def run_until(consumer: DurableConsumer, predicate, timeout=15.0) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_each_event_takes_effect_once_and_poison_is_dead_lettered(nats_server, tables):
    engine, processed, seen = tables
    good, other, refused = model_created("m-a"), model_created("m-b"), model_created("m-refused")

    def handle(conn, event):
        if event.data["name"] == "m-refused":
            raise Reject("model m-refused is on the deny list")
        conn.execute(insert(seen).values(event_id=event.id, name=event.data["name"]))

    # arrange: a good event, garbage, the same event re-published under a new msg id, a refusal
    await asyncio.to_thread(publish_events, nats_server.url, [good])
    await asyncio.to_thread(publish_raw, nats_server.url, "gov.x.y.z", b"garbage", "g-1")
    await asyncio.to_thread(publish_raw, nats_server.url, "gov.registry.model.created",
                            good.canonical_bytes(), "again")
    await asyncio.to_thread(publish_events, nats_server.url, [refused, other])
    bus = Bus(Settings(nats_url=nats_server.url), "test")
    await bus.start()
    consumer = DurableConsumer(bus, engine, processed, name="tester", stream=GOVERNANCE,
                               subjects=["gov.registry.>", "gov.x.>"], handle=handle)
    # act
    await run_until(consumer, lambda: consumer.handled == 2 and consumer.deadlettered == 2)
    await bus.close()
    # check: effects once each, in order; two dead letters with their reasons
    with engine.connect() as conn:
        assert list(conn.scalars(select(seen.c.name))) == ["m-a", "m-b"]
    letters = await asyncio.to_thread(stream_messages, nats_server.url, GOVERNANCE,
                                      "gov.deadletter.tester")
    reasons = [m.headers["Modelgov-Reason"] for m in letters]
    assert len(reasons) == 2
    assert reasons[0] == "not a modelgov CloudEvent: Invalid JSON: expected value at line 1 column 1"
    assert reasons[1] == "model m-refused is on the deny list"


async def test_a_handler_keyed_by_event_id_needs_no_processed_rows(nats_server, tables):
    engine, processed, seen = tables
    good, other = model_created("m-a"), model_created("m-b")

    def handle_batch(conn, events):
        conn.execute(insert(seen), [{"event_id": e.id, "name": e.data["name"]} for e in events])

    def known(conn, ids):
        return set(conn.scalars(select(seen.c.event_id).where(seen.c.event_id.in_(ids))))

    # arrange: an event, the same event re-published under a new msg id, another
    await asyncio.to_thread(publish_events, nats_server.url, [good])
    await asyncio.to_thread(publish_raw, nats_server.url, "gov.registry.model.created",
                            good.canonical_bytes(), "again")
    await asyncio.to_thread(publish_events, nats_server.url, [other])
    bus = Bus(Settings(nats_url=nats_server.url), "test")
    await bus.start()
    consumer = DurableConsumer(bus, engine, None, name="keyed", stream=GOVERNANCE,
                               subjects=["gov.registry.>"], handle_batch=handle_batch, known=known)
    # act
    await run_until(consumer, lambda: consumer.handled == 2)
    await asyncio.sleep(0.3)  # time for a wrongly repeated effect to land
    await bus.close()
    # check: each effect once (the repeat would break seen's primary key), no processed rows
    with engine.connect() as conn:
        assert list(conn.scalars(select(seen.c.name))) == ["m-a", "m-b"]
        assert list(conn.scalars(select(processed.c.event_id))) == []
    with pytest.raises(ValueError, match="processed-ids table or the handler's `known`"):
        DurableConsumer(bus, engine, processed, name="both", stream=GOVERNANCE, subjects=[],
                        handle_batch=handle_batch, known=known)
