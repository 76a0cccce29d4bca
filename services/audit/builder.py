"""The replay's writer process: chains the batches it is sent into a fresh store.

A module of its own so that the spawned process imports only the store and the chain rules,
not the NATS client and the web stack. The process serves one replay after another, so it
is started once, with the service, and a replay never waits for an interpreter to start.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from itertools import repeat
from multiprocessing.connection import Connection

from services.audit.domain import Inspection, Message, plan
from services.audit.store import AuditStore
from services.runtime.db import make_engine

READY = "ready"


def pack(messages: list[Message], verdicts: list[Inspection]) -> list[list]:
    """A batch as it crosses the pipe: columns, which pickle in a fraction of the time a list of
    tuples takes (the verdicts' datetimes most of all): [seqs, subjects, payloads, verdicts,
    by_field], the verdicts a column per field when every message is an event (as good as
    always), else a list."""
    columns = [[m.stream_seq for m in messages], [m.subject for m in messages],
               [m.payload for m in messages]]
    if all(type(v) is tuple for v in verdicts):
        return [*columns, [list(field) for field in zip(*verdicts, strict=True)], True]
    return [*columns, verdicts, False]


def unpack(stream: str, columns: list) -> tuple[list[Message], Iterable[Inspection]]:
    seqs, subjects, payloads, verdicts, by_field = columns
    messages = list(map(Message, repeat(stream), seqs, subjects, payloads))
    return messages, zip(*verdicts, strict=True) if by_field else verdicts


def serve(feed: Connection) -> None:
    """Answer READY, then run jobs until sent None: a job is `(url, stream)`, then that stream's
    batches as pack() makes them, then None; its answer is the final head."""
    # What this process keeps lives as long as it does, and each batch's objects die by
    # reference counting: cyclic collections would only re-scan the imported modules.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    feed.send(READY)
    while (job := feed.recv()) is not None:
        feed.send(build_chain(*job, feed))


def build_chain(url: str, stream: str, feed: Connection) -> tuple[int, str]:
    store = AuditStore(make_engine(url, scratch=True))
    try:
        head = store.head(stream)
        while (columns := feed.recv()) is not None:
            messages, verdicts = unpack(stream, columns)
            planned = plan(head, messages, set(), verdicts)
            head = store.append_planned(stream, head, messages, planned).head
        return head.position, head.hash
    finally:
        store.engine.dispose()
