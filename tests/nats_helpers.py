"""Talking to a test's JetStream server directly, as an outside publisher or inspector would."""

from __future__ import annotations

import asyncio

import nats

from contracts.envelope import CloudEvent
from contracts.streams import subject_for
from services.runtime.bus import ensure_streams
from services.runtime.settings import Settings


async def _publish(url: str, items: list[tuple[str, bytes, str]]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js, Settings(nats_url=url))
    for subject, payload, msg_id in items:
        await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
    await nc.close()


def publish_events(url: str, events: list[CloudEvent]) -> None:
    items = [(subject_for(e.type), e.canonical_bytes(), e.id) for e in events]
    asyncio.run(_publish(url, items))


def publish_raw(url: str, subject: str, payload: bytes, msg_id: str) -> None:
    asyncio.run(_publish(url, [(subject, payload, msg_id)]))


async def _read(url: str, stream: str, subject: str | None) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await nc.close()
        return []
    out = []
    for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):  # empty: first_seq 0
        try:
            msg = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        if subject is None or msg.subject.startswith(subject):
            out.append(msg)
    await nc.close()
    return out


def stream_messages(url: str, stream: str = "GOVERNANCE", subject: str | None = None) -> list:
    """Every message the stream holds (subject, data, headers), in stream order."""
    return asyncio.run(_read(url, stream, subject))

