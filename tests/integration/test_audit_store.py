"""The audit store on SQLite and a real PostgreSQL: append-only, chained, verifiable."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.audit.domain import ChainHead, Message, plan, verify
from services.audit.store import AuditStore, EventFilter
from tests.factories import model_created


def append(store: AuditStore, events, start_seq=1, stream="GOVERNANCE"):
    msgs = [Message(stream, start_seq + i, "gov.registry.model.created", e.canonical_bytes())
            for i, e in enumerate(events)]
    batch = plan(store.head(stream), msgs, store.chained_ids([e.id for e in events]))
    store.append(stream, batch)
    return batch


def test_appended_entries_read_back_in_order_with_cursor_and_head(audit_store):
    first = append(audit_store, [model_created("m-a"), model_created("m-b")])
    append(audit_store, [model_created("m-c")], start_seq=3)
    # check: head, cursor and chain agree
    assert audit_store.head("GOVERNANCE").position == 3
    assert audit_store.cursor("GOVERNANCE") == 3
    assert audit_store.snapshot("GOVERNANCE") == (3, audit_store.head("GOVERNANCE"))
    chain = list(audit_store.chain("GOVERNANCE"))
    assert [r.position for r in chain] == [1, 2, 3]
    assert chain[1].prev_hash == first.entries[0].hash
    assert verify(chain).ok
    # check: the other stream is an empty chain of its own
    assert audit_store.head("DECISIONS") == ChainHead() and audit_store.cursor("DECISIONS") == 0


def test_events_filter_by_subject_prefix_and_page(audit_store):
    append(audit_store, [model_created("credit-default"), model_created("credit-default-2"),
                   model_created("fraud")])
    items, nxt = audit_store.events(EventFilter(subject_prefixes=("model/credit-default",)), limit=10)
    # check: the prefix matches the model and its children, not a longer name
    assert [i["subject"] for i in items] == ["model/credit-default"]
    page1, cursor = audit_store.events(EventFilter(), limit=2)
    page2, end = audit_store.events(EventFilter(), limit=2, after_id=cursor)
    assert len(page1) == 2 and len(page2) == 1 and end is None
    assert page1[0]["event"]["data"]["name"] == "credit-default"


def test_update_and_delete_are_refused_by_the_database(audit_store):
    append(audit_store, [model_created()])
    with audit_store.engine.connect() as conn:
        for sql in ("UPDATE audit_events SET actor = 'user:mallory'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(sql))
            conn.rollback()
    assert audit_store.count("GOVERNANCE") == 1


def test_a_row_changed_with_the_trigger_bypassed_is_named_by_verify(audit_store):
    append(audit_store, [model_created(f"m{i:02d}") for i in range(5)])
    # act: an attacker with DBA rights bypasses the trigger and edits entry 4
    with audit_store.engine.begin() as conn:
        if audit_store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE audit_events SET payload = :p WHERE position = 4"),
                     {"p": model_created("evil").canonical_bytes()})
    verdict = verify(audit_store.chain("GOVERNANCE"))
    # check: verification fails and names position 4
    assert not verdict.ok and verdict.first_broken_position == 4 and verdict.count == 5
