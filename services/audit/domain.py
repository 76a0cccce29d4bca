"""Hash-chain rules, pure: what gets appended, what is skipped, and how a chain is verified.

One chain per stream. Entry n stores the event's canonical bytes and
`hash_n = sha256(bytes.fromhex(hash_{n-1}) || canonical bytes)`, with hash_0 = 64 zeros.
Positions depend only on the stream's content: a message whose event id is already chained
(re-delivered or re-published) is skipped, and so is anything that is not an event. The live
consumer and replay run this same code, so they build the same chain from the same stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from pydantic import ValidationError

from contracts.envelope import parse_envelope
from contracts.streams import DEADLETTER_PREFIX

GENESIS = "0" * 64


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    position: int = 0
    hash: str = GENESIS


class Message(NamedTuple):
    """One stream message as the consumer received it (a NamedTuple: cheap to build and pickle)."""

    stream: str
    stream_seq: int
    subject: str
    payload: bytes


class Entry(NamedTuple):
    """One chained event. A NamedTuple: built per event on the ingest path, so it must be cheap."""

    stream: str
    position: int
    stream_seq: int
    event_id: str
    type: str
    subject: str
    time: datetime
    actor: str
    payload: bytes
    prev_hash: str
    hash: str
    traceparent: str | None = None


@dataclass(frozen=True)
class Rejected:
    message: Message
    reason: str


@dataclass
class Batch:
    """What to do with a run of messages: entries to append, messages to dead-letter."""

    entries: list[Entry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    head: ChainHead = field(default_factory=ChainHead)
    last_seq: int = 0


# What the chain keeps of an event besides its bytes: (event_id, type, subject, time, actor,
# traceparent), a plain tuple, since on replay it crosses a pipe; or the reason a message is not
# an event; or None for a dead letter. See inspect().
Inspection = tuple[str, str, str, datetime, str, str | None] | str | None


def inspect(msg: Message) -> Inspection:
    """What a message is to the chain, from its bytes alone: None for a dead letter (they share
    the stream but are reports, not events), the reason it is not an event, or the fields the
    chain keeps. Pure, so it may be computed in any process (replay shares it between two)."""
    if msg.subject.startswith(DEADLETTER_PREFIX):
        return None
    try:
        event = parse_envelope(msg.payload)
    except (ValidationError, ValueError) as exc:
        return f"not a modelgov CloudEvent: {_first_error(exc)}"
    return event.id, event.type, event.subject, event.time, event.actor, event.traceparent


def plan(head: ChainHead, messages: Sequence[Message], chained_ids: set[str],
         verdicts: Sequence[Inspection] | None = None) -> Batch:
    """Chain the messages after `head`. `chained_ids`: those of their ids already in the store;
    `verdicts`: inspect() of each message, when already computed."""
    batch = Batch(head=head)
    seen = set(chained_ids)
    position, digest = head.position, head.hash
    for msg, verdict in zip(messages, verdicts if verdicts is not None else map(inspect, messages),
                            strict=True):
        batch.last_seq = max(batch.last_seq, msg.stream_seq)
        if verdict is None:
            continue
        if type(verdict) is str:
            batch.rejected.append(Rejected(msg, verdict))
            continue
        event_id, event_type, subject, time, actor, traceparent = verdict
        if event_id in seen:
            batch.duplicates += 1
            continue
        seen.add(event_id)
        prev, digest, position = digest, chain_hash(digest, msg.payload), position + 1
        batch.entries.append(Entry(
            msg.stream, position, msg.stream_seq, event_id, event_type, subject, time, actor,
            msg.payload, prev, digest, traceparent,
        ))
    batch.head = ChainHead(position, digest)
    return batch


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{loc}: {err['msg']}{more}"
    return str(exc)


@dataclass(frozen=True)
class ChainRow:
    position: int
    payload: bytes
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Verdict:
    count: int
    head_hash: str
    ok: bool
    first_broken_position: int | None = None
    reason: str | None = None


def verify(rows: Iterable[ChainRow]) -> Verdict:
    """Recompute the chain in position order; name the first position where it breaks."""
    expected_prev, count = GENESIS, 0
    broken: tuple[int, str] | None = None
    for row in rows:
        count += 1
        if broken is None:
            problem = _check(row, count, expected_prev)
            if problem:
                broken = (count, problem)
        expected_prev = row.hash
    if broken:
        return Verdict(count, expected_prev, False, *broken)
    return Verdict(count, expected_prev, True)


def _check(row: ChainRow, position: int, expected_prev: str) -> str | None:
    if row.position != position:
        return f"position {row.position} found where {position} was expected: an entry is missing"
    if row.prev_hash != expected_prev:
        return "prev_hash does not match the previous entry's hash"
    if chain_hash(row.prev_hash, row.payload) != row.hash:
        return "hash does not match sha256(prev_hash || event bytes): the entry was altered"
    return None
