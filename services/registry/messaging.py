"""What the registry publishes: one event per change, enqueued in the change's own transaction.

Subjects name the aggregate: `model/<name>`, `model/<name>/version/<v>`,
`model/<name>/alias/<alias>`. The registry consumes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from sqlalchemy import Connection

from contracts.envelope import CloudEvent, EventData, make_event
from contracts.registry.events import ModelAliasRemoved, ModelAliasSet, ModelCreated
from services.registry import store
from services.runtime.auth import Principal
from services.runtime.outbox import enqueue
from services.runtime.telemetry import current_traceparent

CORRELATION_HEADER = "x-correlation-id"


@dataclass(frozen=True)
class Origin:
    """Who and what caused a change: the envelope attributes every event of a request shares."""

    actor: str
    time: datetime
    correlationid: str | None = None
    traceparent: str | None = None


def origin(request: Request, who: Principal, now: datetime) -> Origin:
    return Origin(
        actor=who.actor,
        time=now,
        correlationid=request.headers.get(CORRELATION_HEADER) or None,
        traceparent=current_traceparent(),
    )


def subject_of(data: EventData) -> str:
    """The aggregate an event is about."""
    name = data.name  # type: ignore[attr-defined] - every registry event names its model
    if isinstance(data, ModelCreated):
        return f"model/{name}"
    if isinstance(data, ModelAliasSet | ModelAliasRemoved):
        return f"model/{name}/alias/{data.alias}"
    return f"model/{name}/version/{data.version}"  # type: ignore[attr-defined]


def record(conn: Connection, cause: Origin, data: EventData) -> CloudEvent:
    """Wrap `data` in its envelope and add it to the open transaction's outbox."""
    event = make_event(
        data,
        subject=subject_of(data),
        actor=cause.actor,
        time=cause.time,
        correlationid=cause.correlationid,
        traceparent=cause.traceparent,
    )
    enqueue(conn, store.outbox, event)
    return event


def published(request: Request) -> None:
    """After commit: wake the outbox relay so the events leave now, not at its next poll."""
    relay = request.app.state.runtime.relay
    if relay is not None:
        relay.notify()
