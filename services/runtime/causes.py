"""Who and what caused a change: the envelope attributes every event of one request shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request

from contracts.envelope import CloudEvent, EventData, make_event
from services.runtime.auth import Principal
from services.runtime.telemetry import current_traceparent

CORRELATION_HEADER = "x-correlation-id"


@dataclass(frozen=True)
class Cause:
    actor: str
    time: datetime
    correlationid: str | None = None
    traceparent: str | None = None

    def event(self, data: EventData, subject: str, event_id: str | None = None) -> CloudEvent:
        return make_event(data, subject=subject, actor=self.actor, time=self.time,
                          correlationid=self.correlationid, traceparent=self.traceparent,
                          event_id=event_id)


def cause_of(request: Request, who: Principal, now: datetime | None = None) -> Cause:
    """The request's principal, the caller's correlation id, and the current trace."""
    return Cause(
        actor=who.actor,
        time=now or datetime.now(UTC),
        correlationid=request.headers.get(CORRELATION_HEADER) or None,
        traceparent=current_traceparent(),
    )
