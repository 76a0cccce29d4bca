"""What scoring publishes, and how a decision becomes durable before its response leaves.

Decisions and shadow predictions go to JetStream directly (`dec.<model>.<verb>`, Nats-Msg-Id =
event id) and the response waits for the PubAck. When NATS is unreachable, or the ack does not
come within `scoring_publish_timeout_seconds`, the same event (same id) is committed to the
outbox instead and the relay publishes it later: a publish that did land after all is dropped by
the server's duplicate window, and by consumers' processed-id check after that. Deployment
changes and artifact refusals are state changes: they go through the outbox in their transaction.

Subjects: `decision/<decision_id>` (decisions and their shadows), `deployment/<model>`,
`model/<model>/version/<v>` (artifact refusals).

Scoring consumes what changes the versions it should hold loaded: `deployment.changed` (its own,
from every replica) and the registry's `model_alias.set`, both on GOVERNANCE. Every replica must
warm itself, so each reads them through a consumer of its own (`ReplicaFeed`), not a shared
durable one that would hand each event to a single replica. The feed is an ordered consumer
(ephemeral, in memory, no acks; the client re-creates it from the next stream sequence when its
heartbeats stop, e.g. across a NATS restart, and the server deletes it when the replica is gone),
delivering what is published after it subscribes. What happened before is read from the store:
each (re)subscription warms every deployment the store holds. The effect of an event is only a
load into a cache, so a duplicate costs nothing and processed-id bookkeeping would buy nothing;
an event that cannot be parsed is logged and skipped (the audit consumer's durable copy is the
one that dead-letters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nats.errors import Error as NatsError
from nats.js import api as js_api
from pydantic import ValidationError
from sqlalchemy import Connection

from contracts.envelope import CloudEvent, EventData, parse_event
from contracts.registry.events import ModelAliasSet
from contracts.scoring.events import (
    ArtifactRejected,
    DecisionMade,
    DeploymentChanged,
    RequestsRefused,
    ShadowPredictionMade,
)
from contracts.streams import GOVERNANCE, subject_for
from services.runtime.bus import Bus, BusUnavailable
from services.runtime.causes import Cause
from services.runtime.jetstream_publisher import JetStreamPublisher
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
    if isinstance(data, RequestsRefused):
        return f"refusals/{data.model}"
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
        # Decisions go over a publishing connection of their own: nats-py's request path cost a
        # third of a decision's CPU (jetstream_publisher.py).
        self.publisher = JetStreamPublisher(runtime.bus, name=f"modelgov-scoring-{os.getpid()}")

    async def durable(self, events: list[CloudEvent], model: str) -> None:
        """Return only once every event is acked by JetStream or committed to the outbox."""
        if self.runtime.bus.connected and len(events) == 1:  # one decision: no tasks to gather
            unacked = [] if await self._acked(events[0], model) else events
        elif self.runtime.bus.connected:
            results = await asyncio.gather(*(self._acked(e, model) for e in events))
            unacked = [e for e, acked in zip(events, results, strict=True) if not acked]
        else:
            unacked = list(events)
        if unacked:
            await asyncio.to_thread(self._spool, unacked, model)
            self.metrics.spooled.labels(model).inc(len(unacked))
            self.notify()

    async def _acked(self, made: CloudEvent, model: str) -> bool:
        """Whether JetStream acked the event within the timeout (else it goes to the outbox)."""
        subject = subject_for(made.type, model)
        headers = {"traceparent": made.traceparent} if made.traceparent else None
        try:
            await self.publisher.publish(subject, made.canonical_bytes(), made.id, headers,
                                         timeout=self.timeout)
        except Exception:  # noqa: BLE001 - no ack, whatever the reason: the outbox keeps it
            return False
        return True

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


# -- what scoring consumes ----------------------------------------------------------------------

FEED_TYPES: dict[str, type[EventData]] = {t.event_type: t for t in (DeploymentChanged, ModelAliasSet)}
FEED_SUBJECTS = [subject_for(t) for t in FEED_TYPES]
FEED_HEARTBEAT_SECONDS = 2.0  # the server's idle heartbeat: two missed re-create the consumer
# An event whose change is older than this before the store was read at subscription is already
# in what that read warmed (a change commits within seconds of its event's time), and an alias that
# old is not worth a load: skipped, so a consumer re-created from the stream's start replays nothing.
SEEN_BY_THE_SCAN = timedelta(seconds=60)


class ReplicaFeed:
    """This replica's own ordered consumer of FEED_SUBJECTS; `on_subscribed` after each
    (re)subscription, `on_event` for each event that arrives after it."""

    def __init__(self, bus: Bus, on_event: Callable[[EventData], None],
                 on_subscribed: Callable[[], None]) -> None:
        self.bus, self.on_event, self.on_subscribed = bus, on_event, on_subscribed
        self.subscribed_at: datetime | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.bus.wait_ready()
                generation = self.bus.generation
                sub = await self.bus.jetstream().subscribe(
                    FEED_SUBJECTS[0], stream=GOVERNANCE, ordered_consumer=True,
                    idle_heartbeat=FEED_HEARTBEAT_SECONDS, deliver_policy=js_api.DeliverPolicy.NEW,
                    config=js_api.ConsumerConfig(filter_subjects=list(FEED_SUBJECTS)))
                try:
                    self.subscribed_at = datetime.now(UTC)
                    self.on_subscribed()
                    # A reconnection may have lost the server's ephemeral consumer: subscribe again at
                    # once rather than wait for nats-py to notice missed heartbeats.
                    drain = asyncio.create_task(self._drain(sub))
                    reconnect = asyncio.create_task(self.bus.reconnected_since(generation))
                    done, pending = await asyncio.wait({drain, reconnect},
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    for task in done:
                        task.result()  # the drain's failure, if it failed
                    log.info("scoring feed re-subscribes (reconnected, or the subscription ended)")
                finally:
                    with contextlib.suppress(Exception):  # the connection may be gone already
                        await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except (NatsError, BusUnavailable) as exc:
                log.info("scoring feed re-subscribes: %s", exc)
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - keep the feed alive whatever happened
                log.exception("scoring feed failed; re-subscribing")
                await asyncio.sleep(1)

    async def _drain(self, sub) -> None:
        async for msg in sub.messages:
            self._one(msg.data)

    def _one(self, raw: bytes) -> None:
        try:
            event = parse_event(raw)
            data = FEED_TYPES[event.type].model_validate(event.data)
        except (ValidationError, ValueError, KeyError) as exc:
            log.warning("scoring feed skipped a message it cannot read: %s", exc)
            return
        if self.subscribed_at is not None and event.time < self.subscribed_at - SEEN_BY_THE_SCAN:
            return
        self.on_event(data)


async def publish_refusals(runtime: Runtime, metrics: ScoringMetrics, every: float) -> None:
    """Every `every` seconds, this replica's tally of refused requests per model, through the
    outbox (a few rows per period, however many requests were refused)."""
    since = datetime.now(UTC)
    while True:
        await asyncio.sleep(every)
        until, tally = datetime.now(UTC), metrics.take_refused()
        if tally:
            cause = Cause(actor=ACTOR, time=until)

            def commit(tally=tally, since=since, until=until, cause=cause) -> None:
                with runtime.engine.begin() as conn:
                    for model, counts in sorted(tally.items()):
                        data = RequestsRefused(model=model, since=since, until=until, counts=counts,
                                               total=sum(counts.values()))
                        enqueue(conn, store.outbox, event(data, cause), model=model)

            try:
                await asyncio.to_thread(commit)
            except Exception:  # noqa: BLE001 - the database is down: the counts go into the next period
                log.exception("could not record refused-request counts; keeping them for the next period")
                metrics.give_back(tally)
                continue
            if runtime.relay is not None:
                runtime.relay.notify()
        since = until
