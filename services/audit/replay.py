"""Replay: rebuild a stream's chain into a fresh store and compare heads with the live one.

The work splits over two processes: this one reads the stream (nats-py's delivery is most of a
core), a child plans and writes the chain into the fresh store, so each gets a core of its own.
Both run the same planning code as the live consumer, so the same stream gives the same chain.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing

from nats.js import JetStreamContext

from services.audit.builder import build_chain
from services.audit.domain import ChainHead
from services.audit.messaging import Gap, read_batches
from services.audit.store import AuditStore

log = logging.getLogger(__name__)


async def rebuild(js: JetStreamContext, live: AuditStore, fresh_url: str, stream: str) -> dict:
    """Replay `stream` from its first message into the store at `fresh_url` (migrated, empty),
    up to where `live` has read it."""
    live_seq, live_head = await asyncio.to_thread(live.snapshot, stream)
    info = await js.stream_info(stream)
    until = min(live_seq, info.state.last_seq)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    builder = context.Process(target=build_chain, args=(fresh_url, stream, theirs), daemon=True,
                              name=f"audit-replay-{stream}")
    builder.start()
    try:
        sent = 0
        while until >= max(info.state.first_seq, 1) and sent < until:
            try:
                async for messages in read_batches(js, stream, sent + 1, until_seq=until):
                    await asyncio.to_thread(ours.send, messages)
                    sent = messages[-1].stream_seq
                break
            except Gap as exc:
                log.info("replay of %s resumes after %d: %s", stream, sent, exc)
        await asyncio.to_thread(ours.send, None)
        position, digest = await asyncio.to_thread(ours.recv)
    finally:
        await asyncio.to_thread(builder.join, 30)
        if builder.is_alive():
            builder.kill()
    rebuilt = ChainHead(position, digest)
    return {
        "stream": stream, "live_head": live_head.hash, "rebuilt_head": rebuilt.hash,
        "live_count": live_head.position, "rebuilt_count": rebuilt.position,
        "read_to_seq": until, "match": live_head == rebuilt,
    }
