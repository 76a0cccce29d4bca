"""The ordered stream reader on a real nats-server: order, flow control, credentials, failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import nats
import pytest
from nats.js import api

from deploy.servers import NatsServer
from services.runtime.jetstream_reader import DeliveryLost, OrderedReader


async def fill(nc, count: int, size: int = 100, start: int = 0) -> None:
    """Stream T (subjects t.>): every third message on t.other, the others on t.main; payloads
    name their index; every second one carries headers, the others none."""
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="T", subjects=["t.>"]))
    futures = []
    for i in range(start, start + count):
        subject = "t.other" if i % 3 == 2 else "t.main"
        payload = f"{i:08d}".encode().ljust(size, b".")
        headers = {"Nats-Msg-Id": f"m{i}"} if i % 2 else None
        futures.append(await js.publish_async(subject, payload, headers=headers))
    await asyncio.gather(*futures)


async def read_all(reader: OrderedReader, until: int) -> list:
    out = []
    while not out or out[-1][0] < until:
        got = await reader.take(500, idle_seconds=5)
        assert got, f"nothing more after {out[-1][0] if out else 'the start'}"
        out += got
    return out


async def test_reads_its_subjects_in_stream_order_from_the_sequence_asked(nats_server):
    nc = await nats.connect(nats_server.url)
    await fill(nc, 3000)
    async with OrderedReader(nc, "T", "t.main", start_seq=1001) as reader:
        got = await read_all(reader, until=2999)  # the last t.main message
    await nc.close()
    # check: exactly the t.main messages from sequence 1001 on, in order, bytes intact
    wanted = [i + 1 for i in range(1000, 3000) if i % 3 != 2]
    assert [seq for seq, _, _ in got] == wanted
    assert all(subject == "t.main" for _, subject, _ in got)
    assert all(payload[:8] == f"{seq - 1:08d}".encode() and len(payload) == 100
               for seq, _, payload in got)


async def test_a_slow_reader_holds_only_a_flow_control_window_however_long_the_stream(nats_server):
    nc = await nats.connect(nats_server.url)
    await fill(nc, 12_000, size=1000)  # 12 MB
    async with OrderedReader(nc, "T", "t.>", start_seq=1) as reader:
        first = await reader.take(100, idle_seconds=5)
        await asyncio.sleep(1.0)  # the caller is busy; the server must wait for it
        held = len(reader._parser.deliveries)
        rest = await read_all(reader, until=12_000)
    await nc.close()
    # check: a few MB at most were delivered ahead of the caller, and nothing was lost
    assert 0 < held < 5000, held
    assert [seq for seq, _, _ in first + rest] == list(range(1, 12_001))


async def test_the_consumer_removed_under_the_reader_is_reported_not_waited_on(nats_server):
    nc = await nats.connect(nats_server.url)
    await fill(nc, 10)
    async with OrderedReader(nc, "T", "t.>", start_seq=1) as reader:
        assert len(await read_all(reader, until=10)) == 10  # take() may hand them over in parts
        await nc.jetstream().delete_consumer("T", reader._consumer)
        started = time.monotonic()
        # check: the heartbeats stop, and the reader says so within a few seconds
        with pytest.raises(DeliveryLost, match="no heartbeat"):
            await reader.take(100, idle_seconds=30)
        assert time.monotonic() - started < 6
    await nc.close()


async def test_nats_going_away_under_the_reader_is_reported_at_once(nats_server):
    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    await fill(nc, 10)
    async with OrderedReader(nc, "T", "t.>", start_seq=1) as reader:
        assert len(await read_all(reader, until=10)) == 10  # take() may hand them over in parts
        nats_server.stop()
        with pytest.raises(DeliveryLost, match="connection closed"):
            await reader.take(100, idle_seconds=30)
    await nc.close()


async def test_an_idle_stream_gives_an_empty_take_after_the_idle_time(nats_server):
    nc = await nats.connect(nats_server.url)
    await fill(nc, 5)
    async with OrderedReader(nc, "T", "t.>", start_seq=6) as reader:
        started = time.monotonic()
        assert await reader.take(100, idle_seconds=1.5) == []
        assert 1.5 <= time.monotonic() - started < 4
        await fill(nc, 1, start=5)  # check: what is published next is delivered
        assert [seq for seq, _, _ in await reader.take(100, idle_seconds=5)] == [6]
    await nc.close()


@dataclass
class GuardedNats(NatsServer):
    """A server that wants a user and password (and may take only so many connections)."""

    max_connections: int = 0

    def config_text(self) -> str:
        limit = f"max_connections: {self.max_connections}\n" if self.max_connections else ""
        return (super().config_text() + limit
                + 'authorization { user: "audit", password: "s3cret" }\n')


async def test_the_credentials_in_the_client_url_open_the_delivery_connection(tmp_path):
    server = GuardedNats(tmp_path / "nats", sync_always=False).start()
    try:
        nc = await nats.connect(f"nats://audit:s3cret@127.0.0.1:{server.port}")
        await fill(nc, 20)
        async with OrderedReader(nc, "T", "t.>", start_seq=1) as reader:
            assert len(await read_all(reader, until=20)) == 20
        await nc.close()
    finally:
        server.stop()


async def test_a_refused_delivery_connection_says_why_without_the_password(tmp_path):
    server = GuardedNats(tmp_path / "nats", sync_always=False, max_connections=1).start()
    try:
        nc = await nats.connect(f"nats://audit:s3cret@127.0.0.1:{server.port}")
        await fill(nc, 1)
        # act: the reader's own connection would be the server's second
        with pytest.raises(DeliveryLost, match="refused the delivery connection") as refused:
            async with OrderedReader(nc, "T", "t.>", start_seq=1):
                pass
        assert "s3cret" not in str(refused.value) and "maximum connections" in str(refused.value)
        await nc.close()
    finally:
        server.stop()
