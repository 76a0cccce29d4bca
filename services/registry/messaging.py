"""What the registry publishes: one event per change, enqueued in the change's own transaction.

Subjects name the aggregate: `model/<name>`, `model/<name>/version/<v>`,
`model/<name>/alias/<alias>`. The registry consumes nothing.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import Connection

from contracts.envelope import CloudEvent, EventData
from contracts.registry.events import ModelAliasRemoved, ModelAliasSet, ModelCreated
from services.registry import store
from services.runtime.causes import Cause
from services.runtime.outbox import enqueue


def subject_of(data: EventData) -> str:
    """The aggregate an event is about."""
    name = data.name  # type: ignore[attr-defined] - every registry event names its model
    if isinstance(data, ModelCreated):
        return f"model/{name}"
    if isinstance(data, ModelAliasSet | ModelAliasRemoved):
        return f"model/{name}/alias/{data.alias}"
    return f"model/{name}/version/{data.version}"  # type: ignore[attr-defined]


def record(conn: Connection, cause: Cause, data: EventData) -> CloudEvent:
    """Wrap `data` in its envelope and add it to the open transaction's outbox."""
    event = cause.event(data, subject_of(data))
    enqueue(conn, store.outbox, event)
    return event


def published(request: Request) -> None:
    """After commit: wake the outbox relay so the events leave now, not at its next poll."""
    relay = request.app.state.runtime.relay
    if relay is not None:
        relay.notify()
