"""The ingestor's pipelined writes on both backends: re-published events never shift the chain."""

from __future__ import annotations

import pytest

from services.audit.domain import Message, verify
from services.audit.messaging import Ingestor
from services.audit.store import AuditStore, EventFilter
from services.runtime import migrate
from services.runtime.db import make_engine
from tests.factories import model_created


@pytest.fixture
def store(db_url):
    migrate.upgrade("audit", db_url)
    engine = make_engine(db_url)
    yield AuditStore(engine)
    engine.dispose()


def as_messages(events, first_seq):
    return [Message("GOVERNANCE", first_seq + i, "gov.registry.model.created", e.canonical_bytes())
            for i, e in enumerate(events)]


async def test_a_republished_event_in_a_later_batch_is_dropped_and_later_batches_follow(store):
    a, b, c, d = (model_created(f"m-{x}") for x in "abcd")
    ingestor = Ingestor(store, "GOVERNANCE")
    # act: batch 2 repeats `a`; batch 3 is planned while batch 2 is still being written
    await ingestor.ingest(as_messages([a], 1))
    await ingestor.ingest(as_messages([a, b], 2))
    await ingestor.ingest(as_messages([c, d], 4))
    await ingestor.flush()
    # check: a, b, c, d once each at positions 1..4, the cursor at the last stream sequence
    chain = list(store.chain("GOVERNANCE"))
    ids, _ = store.events(EventFilter(), limit=10)
    assert [i["event_id"] for i in ids] == [a.id, b.id, c.id, d.id]
    assert [r.position for r in chain] == [1, 2, 3, 4] and verify(chain).ok
    assert store.cursor("GOVERNANCE") == 5 and ingestor.appended == 4
