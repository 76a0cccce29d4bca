"""What scoring publishes, and how a decision becomes durable before its response leaves.

Decisions and shadow predictions go to JetStream directly (`dec.<model>.<verb>`, Nats-Msg-Id =
event id) and the response waits for the PubAck. When NATS is unreachable, or the ack does not
come within `scoring_publish_timeout_seconds`, the same event (same id) is committed to the
outbox instead and the relay publishes it later: a publish that did land after all is dropped by
the server's duplicate window, and by consumers' processed-id check after that. Deployment
changes and artifact refusals are state changes: they go through the outbox in their transaction.

Subjects: `decision/<decision_id>` (decisions and their shadows), `deployment/<model>`,
`model/<model>/version/<v>` (artifact refusals). Scoring consumes nothing yet.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import Connection

from contracts.envelope import CloudEvent, EventData
from contracts.scoring.events import (
    ArtifactRejected,
    DecisionMade,
    DeploymentChanged,
    ShadowPredictionMade,
)
from contracts.streams import subject_for
from services.runtime.causes import Cause
from services.runtime.outbox import enqueue
from services.runtime.service import Runtime
from services.scoring import store
from services.scoring.metrics import ScoringMetrics

log = logging.getLogger(__name__)

ACTOR = "service:scoring"


def subject_of(data: EventData) -> str:
    if isinstance(data, DecisionMade | ShadowPredictionMade):
        return f"decision/{data.decision_id}"
    if isinstance(data, DeploymentChanged):
        return f"deployment/{data.model}"
    if isinstance(data, ArtifactRejected):
        return f"model/{data.model}/version/{data.version}"
    raise TypeError(f"scoring does not publish {type(data).__name__}")


def event(data: EventData, cause: Cause, event_id: str | None = None) -> CloudEvent:
    return cause.event(data, subject_of(data), event_id)


def record(conn: Connection, data: EventData, cause: Cause) -> CloudEvent:
    """Add a state-change event to the open transaction's outbox."""
    made = event(data, cause)
    enqueue(conn, store.outbox, made)
    return made


class Recorder:
    """Makes decision events durable: JetStream's PubAck, else a committed outbox row."""

    def __init__(self, runtime: Runtime, metrics: ScoringMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.timeout = runtime.settings.scoring_publish_timeout_seconds

    async def durable(self, events: list[CloudEvent], model: str) -> None:
        """Return only once every event is acked by JetStream or committed to the outbox."""
        if self.runtime.bus.connected:
            results = await asyncio.gather(*(self._publish(e, model) for e in events),
                                           return_exceptions=True)
            unacked = [e for e, r in zip(events, results, strict=True) if r is not None]
        else:
            unacked = list(events)
        if unacked:
            await asyncio.to_thread(self._spool, unacked, model)
            self.metrics.spooled.labels(model).inc(len(unacked))
            self.notify()

    async def _publish(self, made: CloudEvent, model: str) -> None:
        subject = subject_for(made.type, model)
        headers = {"traceparent": made.traceparent} if made.traceparent else None
        await asyncio.wait_for(
            self.runtime.bus.publish(subject, made.canonical_bytes(), made.id, headers), self.timeout)

    def _spool(self, events: list[CloudEvent], model: str) -> None:
        with self.runtime.engine.begin() as conn:
            for made in events:
                enqueue(conn, store.outbox, made, model)

    async def artifact_rejected(self, data: ArtifactRejected) -> None:
        cause = Cause(ACTOR, datetime.now(UTC))
        await asyncio.to_thread(self._commit, data, cause)
        self.notify()
        log.warning("refused version %s of %s: %s", data.version, data.model, data.reason)

    def _commit(self, data: EventData, cause: Cause) -> None:
        with self.runtime.engine.begin() as conn:
            record(conn, data, cause)

    def notify(self) -> None:
        if self.runtime.relay is not None:
            self.runtime.relay.notify()
