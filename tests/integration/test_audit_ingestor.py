"""The ingestor's pipelined writes on both backends: re-published events never shift the chain."""

from __future__ import annotations

from services.audit.domain import Message, verify
from services.audit.messaging import Ingestor
from services.audit.store import EventFilter
from tests.factories import model_created


def as_messages(events, first_seq):
    return [Message("GOVERNANCE", first_seq + i, "gov.registry.model.created", e.canonical_bytes())
            for i, e in enumerate(events)]


async def test_a_republished_event_in_a_later_batch_is_dropped_and_later_batches_follow(audit_store):
    a, b, c, d = (model_created(f"m-{x}") for x in "abcd")
    ingestor = Ingestor(audit_store, "GOVERNANCE")
    # act: batch 2 repeats `a`; batch 3 is planned while batch 2 is still being written
    await ingestor.ingest(as_messages([a], 1))
    await ingestor.ingest(as_messages([a, b], 2))
    await ingestor.ingest(as_messages([c, d], 4))
    await ingestor.flush()
    # check: a, b, c, d once each at positions 1..4, the cursor at the last stream sequence
    chain = list(audit_store.chain("GOVERNANCE"))
    ids, _ = audit_store.events(EventFilter(), limit=10)
    assert [i["event_id"] for i in ids] == [a.id, b.id, c.id, d.id]
    assert [r.position for r in chain] == [1, 2, 3, 4] and verify(chain).ok
    assert audit_store.cursor("GOVERNANCE") == 5 and ingestor.appended == 4
