"""The hash chain's pure rules: append, skip, reject, verify."""

from __future__ import annotations

import hashlib

import pytest

from services.audit.domain import GENESIS, ChainHead, ChainRow, Message, chain_hash, plan, verify
from tests.factories import model_created


def messages(events, stream="GOVERNANCE", start=1):
    return [Message(stream, start + i, "gov.registry.model.created", e.canonical_bytes())
            for i, e in enumerate(events)]


def rows_of(batch):
    return [ChainRow(e.position, e.payload, e.prev_hash, e.hash) for e in batch.entries]


def test_each_entry_hashes_the_previous_hash_and_the_event_bytes():
    events = [model_created(f"m{i:02d}") for i in range(3)]
    batch = plan(ChainHead(), messages(events), set())
    # check: positions 1..3, linked from the genesis hash
    assert [e.position for e in batch.entries] == [1, 2, 3]
    first = batch.entries[0]
    assert first.prev_hash == GENESIS
    assert first.hash == hashlib.sha256(bytes(32) + events[0].canonical_bytes()).hexdigest()
    assert batch.entries[1].prev_hash == first.hash
    assert batch.head == ChainHead(3, batch.entries[2].hash)
    assert batch.last_seq == 3


def test_a_repeated_event_id_is_skipped_so_positions_depend_only_on_content():
    a, b = model_created("m-a"), model_created("m-b")
    once = plan(ChainHead(), messages([a, b]), set())
    repeated = plan(ChainHead(), messages([a, a, b, a]), set())
    # check: same chain whether or not the stream carries re-publications
    assert [e.hash for e in repeated.entries] == [e.hash for e in once.entries]
    assert repeated.duplicates == 2
    # check: ids already in the store are skipped too
    later = plan(once.head, messages([a, b]), {a.id, b.id})
    assert later.entries == [] and later.duplicates == 2 and later.last_seq == 2


def test_what_is_not_an_event_is_rejected_with_a_reason_and_dead_letters_are_ignored():
    good = model_created()
    msgs = [
        Message("GOVERNANCE", 1, "gov.registry.model.created", b"{not json"),
        Message("GOVERNANCE", 2, "gov.registry.model.created", b'{"id": "x"}'),
        Message("GOVERNANCE", 3, "gov.deadletter.audit", b"{not json"),
        Message("GOVERNANCE", 4, "gov.registry.model.created", good.canonical_bytes()),
    ]
    batch = plan(ChainHead(), msgs, set())
    # check: two rejected with reasons, the dead letter is neither chained nor rejected
    assert [r.message.stream_seq for r in batch.rejected] == [1, 2]
    assert "not a modelgov CloudEvent" in batch.rejected[0].reason
    assert "source" in batch.rejected[1].reason or "Field required" in batch.rejected[1].reason
    assert [e.event_id for e in batch.entries] == [good.id]
    assert batch.entries[0].position == 1 and batch.last_seq == 4


def test_verify_accepts_an_intact_chain_and_names_the_first_altered_position():
    batch = plan(ChainHead(), messages([model_created(f"m{i:02d}") for i in range(5)]), set())
    rows = rows_of(batch)
    intact = verify(rows)
    assert intact.ok and intact.count == 5 and intact.head_hash == batch.head.hash
    # act: change one byte of entry 3's event
    altered = list(rows)
    altered[2] = ChainRow(3, rows[2].payload.replace(b"m02", b"m99"), rows[2].prev_hash, rows[2].hash)
    verdict = verify(altered)
    # check: position 3 is named, the rest still counted
    assert not verdict.ok and verdict.first_broken_position == 3 and verdict.count == 5
    assert "altered" in verdict.reason


def test_verify_names_a_missing_entry():
    rows = rows_of(plan(ChainHead(), messages([model_created(f"m{i:02d}") for i in range(4)]), set()))
    verdict = verify([rows[0], rows[2], rows[3]])
    assert not verdict.ok and verdict.first_broken_position == 2
    assert "missing" in verdict.reason


def test_chain_hash_is_sha256_of_raw_prev_hash_then_bytes():
    assert chain_hash(GENESIS, b"x") == hashlib.sha256(b"\0" * 32 + b"x").hexdigest()


@pytest.mark.parametrize("mixed", [False, True], ids=["events only", "with junk and a dead letter"])
def test_a_batch_validated_by_the_replay_reader_chains_as_it_would_here(mixed):
    """Replay's reader validates each message; the builder chains what crosses the pipe."""
    import pickle

    from services.audit import builder
    from services.audit.domain import inspect

    events = [model_created(f"m-{i}", traceparent=f"00-{i + 1:032x}-{i + 1:016x}-01") for i in range(5)]
    msgs = messages([*events, events[0]])  # six: as many messages as a verdict has fields
    if mixed:
        msgs.insert(1, Message("GOVERNANCE", 9, "gov.registry.model.created", b'{"oops": 1}'))
        msgs.insert(2, Message("GOVERNANCE", 10, "gov.deadletter.audit", msgs[0].payload))
    sent = pickle.loads(pickle.dumps(builder.pack(msgs, list(map(inspect, msgs)))))
    received, verdicts = builder.unpack("GOVERNANCE", sent)
    here, there = plan(ChainHead(), msgs, set()), plan(ChainHead(), received, set(), verdicts)
    assert received == msgs
    assert there.entries == here.entries and there.head == here.head
    assert [r.reason for r in there.rejected] == [r.reason for r in here.rejected]
    assert len(here.entries) == 5 and here.duplicates == 1 and len(here.rejected) == int(mixed)
