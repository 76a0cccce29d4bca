"""The decisions' publishing connection on a real nats-server: acks, refusals, limits, outages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import nats
import pytest

from contracts.streams import DECISIONS
from deploy.servers import NatsServer
from services.runtime.bus import MSG_ID, Bus, BusUnavailable
from services.runtime.jetstream_publisher import JetStreamPublisher, PublishFailed
from services.runtime.settings import Settings


@contextlib.asynccontextmanager
async def publishing(url: str) -> AsyncIterator[tuple[JetStreamPublisher, Bus]]:
    bus = Bus(Settings(nats_url=url), "test")  # creates GOVERNANCE and DECISIONS
    await bus.start()
    assert await bus.wait_ready(10)
    publisher = JetStreamPublisher(bus)
    try:
        yield publisher, bus
    finally:
        publisher.close()
        await bus.close()


async def stored(url: str) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    last = (await js.stream_info(DECISIONS)).state.last_seq
    messages = [await js.get_msg(DECISIONS, seq) for seq in range(1, last + 1)]
    await nc.close()
    return messages


async def test_concurrent_publishes_return_once_stored_each_with_its_id_headers_and_bytes(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        payloads = {f"id-{i}": b'{"n": %d, "text": "a\r\nb"}' % i for i in range(300)}
        # act: 300 publishes at once, every third with a trace header
        await asyncio.gather(*(
            publisher.publish("dec.m.made", payload, msg_id,
                              {"traceparent": f"00-{i:032x}-{i:016x}-01"} if i % 3 == 0 else None)
            for i, (msg_id, payload) in enumerate(payloads.items())))
    # check: each is in the stream once, exact bytes, its msg id and trace header
    got = await stored(nats_server.url)
    assert len(got) == 300
    assert {m.headers[MSG_ID]: m.data for m in got} == payloads
    traced = [m for m in got if m.headers and "traceparent" in m.headers]
    assert len(traced) == 100 and all(m.headers["traceparent"].startswith("00-") for m in traced)


async def test_a_repeat_of_a_msg_id_is_acked_and_stored_once(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        await publisher.publish("dec.m.made", b"first", "same-id")
        await publisher.publish("dec.m.made", b"again", "same-id")  # the server drops it: acked
    assert [m.data for m in await stored(nats_server.url)] == [b"first"]


async def test_refusals_say_why_and_leave_the_connection_working(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        with pytest.raises(PublishFailed, match="no stream takes this subject"):
            await publisher.publish("nostream.here", b"x", "a", timeout=10)
        limit = 1024 * 1024  # nats-server's default max_payload
        with pytest.raises(PublishFailed, match=f"over the server's limit of {limit}"):
            await publisher.publish("dec.m.made", b"x" * limit, "b", timeout=10)
        for subject, headers in (("dec.m made", None), ("dec.m\r\n.made", None),
                                 ("dec.m.made", {"traceparent": "x\r\nPUB y 1"}),
                                 ("dec.m.made", {"traceparent": "x\ny"})):
            with pytest.raises(PublishFailed, match="would break the protocol's framing"):
                await publisher.publish(subject, b"x", "d", headers, timeout=10)
        await publisher.publish("dec.m.made", b"still fine", "c", timeout=10)
    assert [m.data for m in await stored(nats_server.url)] == [b"still fine"]


async def test_an_outage_fails_publishes_at_once_and_the_connection_reopens_after_it(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        await publisher.publish("dec.m.made", b"before", "1")
        # act: the server goes while a publish waits for its ack
        waiting = asyncio.create_task(publisher.publish("dec.m.made", b"in flight", "2", timeout=30))
        await asyncio.sleep(0)
        began = time.monotonic()
        nats_server.stop()
        # check: it fails when the connection drops, not when its 30 s timeout would
        with pytest.raises(PublishFailed):
            await waiting
        assert time.monotonic() - began < 15
        with pytest.raises((PublishFailed, BusUnavailable)):  # while the server is down
            await publisher.publish("dec.m.made", b"during", "3", timeout=30)
        nats_server.start()
        assert await bus.wait_ready(10)
        await asyncio.wait_for(bus.reconnected_since(0), 15)
        # check: publishing works again once the bus is back (the reopen is throttled to 1/s)
        deadline = time.monotonic() + 15
        while True:
            try:
                await publisher.publish("dec.m.made", b"after", "4", timeout=10)
                break
            except PublishFailed:
                assert time.monotonic() < deadline, "the publishing connection never reopened"
                await asyncio.sleep(0.2)
    data = [m.data for m in await stored(nats_server.url)]
    assert data[0] == b"before" and data[-1] == b"after" and b"during" not in data


class OneConnectionNats(NatsServer):
    """A server that takes a single client connection."""

    def config_text(self) -> str:
        return super().config_text() + "max_connections: 1\n"


async def test_without_a_connection_of_its_own_it_publishes_through_the_bus_client(tmp_path):
    server = OneConnectionNats(tmp_path / "nats", sync_always=False).start()
    try:
        async with publishing(server.url) as (publisher, bus):
            # act: the publisher's own connection would be the server's second
            await publisher.publish("dec.m.made", b"through nats-py", "1", timeout=10)
            assert publisher._connection is None
        assert [m.data for m in await stored(server.url)] == [b"through nats-py"]
    finally:
        server.stop()


class CountingTransport:
    """The connection's transport, counting the writes that reach it."""

    def __init__(self, transport) -> None:
        self.transport, self.writes = transport, 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


async def test_the_publishes_of_one_loop_turn_leave_in_one_write(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        await publisher.publish("dec.m.made", b"opens the connection", "0")
        connection = publisher._connection
        counting = connection.transport = CountingTransport(connection.transport)
        # act: 50 publishes started in the same turn
        await asyncio.gather(*(publisher.publish("dec.m.made", b"%d" % i, f"id-{i}")
                               for i in range(1, 51)))
    # check: one write carried all 50, and each was acked and stored
    assert counting.writes == 1
    assert len(await stored(nats_server.url)) == 51


async def test_closing_while_the_connection_opens_leaves_none_open(nats_server):
    async with publishing(nats_server.url) as (publisher, bus):
        waiting = asyncio.create_task(publisher.publish("dec.m.made", b"at shutdown", "1", timeout=10))
        await asyncio.sleep(0)  # it waits for the connection to open
        publisher.close()
        # check: the publish is not lost (the bus's client carries it) and nothing was left open
        await waiting
        await asyncio.sleep(0.2)
        assert publisher._connection is None and publisher._opening is None
    assert [m.data for m in await stored(nats_server.url)] == [b"at shutdown"]
