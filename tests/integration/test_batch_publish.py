"""Atomic batch publishing on a real JetStream: one batch per loop turn, each id stored once."""

from __future__ import annotations

import asyncio

import pytest

from contracts.streams import DECISIONS, GOVERNANCE
from services.runtime.batch_publish import BATCH_ID, BATCH_MIN, BatchPublisher, Outgoing
from services.runtime.bus import Bus
from services.runtime.settings import Settings
from tests.nats_helpers import stream_messages


def outgoing(prefix: str, n: int, subject: str = "dec.credit.decision_made") -> list[Outgoing]:
    return [Outgoing(subject, f'{{"n":{i}}}'.encode(), f"{prefix}-{i}", {"traceparent": f"tp-{i}"})
            for i in range(n)]


@pytest.fixture
async def bus(nats_server):
    bus = Bus(Settings(nats_url=nats_server.url), "test")
    await bus.start()
    assert await bus.wait_ready(10)
    yield bus
    await bus.close()


def stored(url: str, stream: str = DECISIONS) -> list:
    return stream_messages(url, stream)


async def test_what_one_loop_turn_publishes_is_one_batch_acked_once(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5, batch_min=2)
    # three requests' events in the same turn, one of them with two events (decision + shadow)
    sent = [outgoing("a", 1), outgoing("b", 2), outgoing("c", 1)]
    results = await asyncio.gather(*(publisher.publish(ms) for ms in sent))

    assert results == [[True], [True, True], [True]]
    assert (publisher.batches, publisher.batched) == (1, 4)
    messages = await asyncio.to_thread(stored, nats_server.url)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ["a-0", "b-0", "b-1", "c-0"]
    assert len({m.headers[BATCH_ID] for m in messages}) == 1
    assert [m.headers["traceparent"] for m in messages] == ["tp-0", "tp-0", "tp-1", "tp-0"]


async def test_a_lone_message_is_published_alone(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5, batch_min=2)

    assert await publisher.publish(outgoing("solo", 1)) == [True]
    assert (publisher.batches, publisher.batched) == (0, 0)
    [message] = await asyncio.to_thread(stored, nats_server.url)
    assert BATCH_ID not in message.headers and message.headers["Nats-Msg-Id"] == "solo-0"


async def test_a_batch_is_worth_its_fixed_cost_only_from_batch_min_messages_on(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5)  # BATCH_MIN: a handful go one by one

    few = await asyncio.gather(*(publisher.publish(outgoing(f"few{i}", 1)) for i in range(BATCH_MIN - 1)))
    assert few == [[True]] * (BATCH_MIN - 1) and publisher.batches == 0
    enough = await asyncio.gather(*(publisher.publish(outgoing(f"many{i}", 1)) for i in range(BATCH_MIN)))
    assert enough == [[True]] * BATCH_MIN and (publisher.batches, publisher.batched) == (1, BATCH_MIN)

    messages = await asyncio.to_thread(stored, nats_server.url)
    assert [BATCH_ID in m.headers for m in messages] == [False] * (BATCH_MIN - 1) + [True] * BATCH_MIN


async def test_a_batch_holding_a_stored_id_is_refused_whole_then_each_is_stored_once(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5, batch_min=2)
    assert await publisher.publish(outgoing("x", 1)) == [True]  # x-0 stored on its own

    # x-0 again (a spooled event re-sent) with two new ones: the server refuses the batch
    again = outgoing("x", 1) + outgoing("y", 2)
    results = await asyncio.gather(publisher.publish(again[:1]), publisher.publish(again[1:]))

    assert results == [[True], [True, True]]
    assert publisher.batches == 0  # refused, so published one by one
    ids = [m.headers["Nats-Msg-Id"] for m in await asyncio.to_thread(stored, nats_server.url)]
    assert sorted(ids) == ["x-0", "y-0", "y-1"]


async def test_a_stream_that_takes_no_batches_gets_each_message_alone(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5, batch_min=2)
    gov = [outgoing("g", 1, "gov.registry.model.created"), outgoing("h", 1, "gov.registry.model.created")]

    results = await asyncio.gather(*(publisher.publish(ms) for ms in gov))

    assert results == [[True], [True]] and publisher.batches == 0
    ids = [m.headers["Nats-Msg-Id"] for m in await asyncio.to_thread(stored, nats_server.url, GOVERNANCE)]
    assert sorted(ids) == ["g-0", "h-0"]


@pytest.mark.parametrize("batch_min", [2, 100])
async def test_with_nats_gone_nothing_is_acked_and_the_caller_keeps_every_event(nats_server, bus, batch_min):
    publisher = BatchPublisher(bus, timeout=1, batch_min=batch_min)
    nats_server.stop()

    results = await asyncio.wait_for(
        asyncio.gather(*(publisher.publish(ms) for ms in [outgoing("d", 2), outgoing("e", 1)])), 10)

    assert results == [[False, False], [False]]


async def test_many_concurrent_publishers_fill_large_batches_and_lose_nothing(nats_server, bus):
    publisher = BatchPublisher(bus, timeout=5)

    async def client(k: int) -> list[bool]:
        acked = []
        for i in range(20):
            acked += await publisher.publish(outgoing(f"c{k}-{i}", 1))
        return acked

    results = await asyncio.gather(*(client(k) for k in range(64)))

    assert all(all(r) for r in results)
    ids = [m.headers["Nats-Msg-Id"] for m in await asyncio.to_thread(stored, nats_server.url)]
    assert len(ids) == len(set(ids)) == 64 * 20
    assert publisher.batched / publisher.batches > 8  # requests that waited together travel together
