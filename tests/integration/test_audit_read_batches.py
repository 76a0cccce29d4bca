"""The audit's stream reading on a real nats-server: every stream sequence is accounted for."""

from __future__ import annotations

import nats
import pytest

from contracts.streams import GOVERNANCE, subject_for
from services.audit import messaging
from services.audit.messaging import Gap, read_batches
from services.runtime.bus import ensure_streams
from services.runtime.settings import Settings
from tests.factories import model_created


async def stream_of(url: str, count: int):
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js, Settings(nats_url=url))
    for e in (model_created(f"m{i:03d}") for i in range(count)):
        await js.publish(subject_for(e.type), e.canonical_bytes(), headers={"Nats-Msg-Id": e.id})
    return nc


async def test_messages_deleted_from_the_stream_are_skipped_not_taken_for_a_gap(nats_server):
    nc = await stream_of(nats_server.url, 10)
    for seq in (4, 7):
        await nc.jetstream().delete_msg(GOVERNANCE, seq)
    # act: read across both holes, in batches small enough to end on one
    seen = [m.stream_seq async for batch in read_batches(nc, GOVERNANCE, 1, until_seq=10, batch=3)
            for m in batch]
    await nc.close()
    assert seen == [1, 2, 3, 5, 6, 8, 9, 10]


async def test_a_message_lost_on_the_way_is_a_gap_not_a_hole_in_the_chain(nats_server, monkeypatch):
    nc = await stream_of(nats_server.url, 10)
    take = messaging.OrderedReader.take

    async def losing_seq_5(self, *args, **kwargs):  # as if dropped between server and client
        return [d for d in await take(self, *args, **kwargs) if d[0] != 5]

    monkeypatch.setattr(messaging.OrderedReader, "take", losing_seq_5)
    with pytest.raises(Gap, match="message 5 was not delivered"):
        async for _ in read_batches(nc, GOVERNANCE, 1, until_seq=10):
            pass
    await nc.close()
