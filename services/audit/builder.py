"""The replay's writer process: chains the batches it is sent into a fresh store.

A module of its own so that the spawned process imports only the store and the chain rules,
not the NATS client and the web stack. The process serves one replay after another, so it
is started once, with the service, and a replay never waits for an interpreter to start.
"""

from __future__ import annotations

import gc
from itertools import repeat
from multiprocessing.connection import Connection

from services.audit.domain import Message, plan
from services.audit.store import AuditStore
from services.runtime.db import make_engine

READY = "ready"


def serve(feed: Connection) -> None:
    """Answer READY, then run jobs until sent None: a job is `(url, stream)`, then that stream's
    batches as `[seqs, subjects, payloads]` columns (plus, for some, each message's inspect()
    verdict), then None; its answer is the final head."""
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
            seqs, subjects, payloads, *verdicts = columns  # verdicts: when the reader inspected
            messages = list(map(Message, repeat(stream), seqs, subjects, payloads))
            planned = plan(head, messages, set(), verdicts[0] if verdicts else None)
            head = store.append_planned(stream, head, messages, planned).head
        return head.position, head.hash
    finally:
        store.engine.dispose()
