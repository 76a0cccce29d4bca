"""The replay's writer process: chains the batches it is sent into a fresh store.

A module of its own so that the spawned process imports only the store and the chain rules,
not the NATS client and the web stack (half a second of start-up on the replay's clock).
"""

from __future__ import annotations

import gc
from multiprocessing.connection import Connection

from services.audit.domain import plan
from services.audit.store import AuditStore
from services.runtime.db import make_engine


def build_chain(url: str, stream: str, feed: Connection) -> None:
    """Chain each batch sent on `feed` into the store at `url`; answer the final head."""
    # Everything this process keeps lives as long as it does, and each batch's objects die by
    # reference counting: cyclic collections would only re-scan the imported modules.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    store = AuditStore(make_engine(url, scratch=True))
    head = store.head(stream)
    while (messages := feed.recv()) is not None:
        head = store.append_planned(stream, head, messages, plan(head, messages, set())).head
    feed.send((head.position, head.hash))
    store.engine.dispose()
