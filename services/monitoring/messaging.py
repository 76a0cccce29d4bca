"""What monitoring consumes and publishes, and the loop that turns windows into alerts.

Consumes `dec.*.decision_made` (stream DECISIONS) with a durable consumer, one transaction per
fetched batch. Publishes through the outbox: outcome.recorded (DECISIONS, `dec.<model>.…`), and
on GOVERNANCE the alerts (drift.detected, data_quality.degraded, performance.degraded,
fairness.violated), retrain.triggered / retrain.start_attempted and policy.changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection, Engine, insert, select, update

from contracts.envelope import CloudEvent, EventData
from contracts.monitoring.api import MonitoringPolicy
from contracts.monitoring.events import (
    DriftDetected,
    OutcomeRecorded,
    RetrainStartAttempted,
    RetrainTriggered,
    Window,
)
from contracts.scoring.events import DecisionMade, RequestsRefused
from contracts.streams import DECISIONS
from services.monitoring import domain, store
from services.monitoring.retrain import RetrainStarter
from services.runtime.bus import Bus
from services.runtime.causes import Cause
from services.runtime.consumer import DurableConsumer
from services.runtime.outbox import enqueue
from services.runtime.registry_client import registry_http
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

ACTOR = "service:monitoring"
CONSUMER = "monitoring"


def subject_of(data: EventData) -> str:
    if isinstance(data, OutcomeRecorded):
        return f"decision/{data.decision_id}"
    version = getattr(data, "version", None)
    if version is not None and not isinstance(data, RetrainTriggered | RetrainStartAttempted):
        return f"model/{data.model}/version/{version}"
    return f"model/{data.model}"


def record(conn: Connection, data: EventData, cause: Cause) -> CloudEvent:
    """Add an event to the open transaction's outbox."""
    made = cause.event(data, subject_of(data))
    enqueue(conn, store.outbox, made, model=getattr(data, "model", None))
    return made


def service_cause(now: datetime | None = None, correlationid: str | None = None) -> Cause:
    return Cause(actor=ACTOR, time=now or datetime.now(UTC), correlationid=correlationid)


def policy_of(conn: Connection, model: str) -> MonitoringPolicy:
    row = store.get_policy(conn, model)
    return MonitoringPolicy.model_validate(row.policy) if row else MonitoringPolicy()


# --- decisions in -------------------------------------------------------------------------------

def take_traffic(conn: Connection, events: list[CloudEvent]) -> None:
    """Store a batch of decisions (counted into each version's open window) and refusal tallies."""
    for e in events:
        if e.type == RequestsRefused.event_type:
            tally = RequestsRefused.model_validate(e.data)
            conn.execute(insert(store.refusals).values(
                event_id=e.id, model=tally.model, since=tally.since, until=tally.until,
                total=tally.total, counts=tally.counts))
    made = [(DecisionMade.model_validate(e.data), e.time) for e in events
            if e.type == DecisionMade.event_type]
    if not made:
        return
    pairs = {(d.model, d.version) for d, _ in made}
    open_ = store.open_windows(conn, pairs)
    policies = {m: policy_of(conn, m) for m in {m for m, _ in pairs}}
    new: set[tuple[str, int]] = set()
    rows = []
    for d, at in made:
        key = (d.model, d.version)
        window = open_.get(key)
        if window is None:
            index = store.last_index(conn, *key) + 1  # a window closed earlier in this batch is saved
            window = {"model": d.model, "version": d.version, "index": index, "state": "open",
                      "start": at, "end": None, "decisions": 0, "labelled": 0, "closed_by": None,
                      "labels_seen": 0, "report": None}
            open_[key] = window
            new.add(key)
        window["decisions"] += 1
        rows.append({"decision_id": d.decision_id, "model": d.model, "version": d.version,
                     "window_index": window["index"], "route": d.route, "made_at": at,
                     "score": d.score, "decision": d.decision, "latency_ms": d.latency_ms,
                     "inputs": d.inputs, "attributes": d.attributes})
        if window["decisions"] >= policies[d.model].window_size:
            window.update(state="closed", end=at, closed_by="count")
            store.save_window(conn, window, key in new)
            new.discard(key)
            del open_[key]
    for key, window in open_.items():
        store.save_window(conn, window, key in new)
    store.insert_decisions(conn, rows)


def decision_consumer(bus: Bus, engine: Engine) -> DurableConsumer:
    """Stored events are keyed by their event id (a decision's id is its event's id), so the
    decisions and refusals tables are the processed-ids check."""
    return DurableConsumer(bus, engine, None, name=CONSUMER, stream=DECISIONS,
                           subjects=["dec.*.decision_made", "dec.*.requests_refused"],
                           handle_batch=take_traffic, batch=1000, known=store.known_events)


# --- outcomes in --------------------------------------------------------------------------------

def record_outcomes(conn: Connection, items: list, cause: Cause, now: datetime) -> list[tuple]:
    """Record outcomes; returns (status, code, detail) per item, in order.

    A known decision gets its label once (outcome.recorded); the same label again is a no-op;
    a different label is a conflict (outcomes are facts, never edited)."""
    ids = {i.decision_id for i in items}
    d, o = store.decisions, store.outcomes
    known = {r.decision_id: r for r in conn.execute(
        select(d.c.decision_id, d.c.model, d.c.version, d.c.window_index).where(d.c.decision_id.in_(ids)))}
    labels = {r.decision_id: r.label for r in conn.execute(
        select(o.c.decision_id, o.c.label).where(o.c.decision_id.in_(ids)))}
    results, positives, labelled = [], defaultdict(int), defaultdict(int)
    for item in items:
        label = int(item.label)
        decision = known.get(item.decision_id)
        if decision is None:
            results.append(("not_found", 404, f"no decision {item.decision_id!r} has reached "
                            "monitoring: check the id from the score response; a decision made "
                            "seconds ago may still be on its way, so retry shortly"))
            continue
        if item.decision_id in labels:
            if labels[item.decision_id] == label:
                results.append(("duplicate", 200, "this outcome was already recorded"))
            else:
                results.append(("conflict", 409, f"decision {item.decision_id!r} already has label "
                                f"{labels[item.decision_id]}; outcomes are never changed"))
            continue
        labels[item.decision_id] = label
        conn.execute(insert(o).values(decision_id=item.decision_id, model=decision.model,
                                      version=decision.version, label=label,
                                      observed_at=item.observed_at, recorded_at=now))
        record(conn, OutcomeRecorded(decision_id=item.decision_id, model=decision.model,
                                     version=decision.version, label=label,
                                     observed_at=item.observed_at), cause)
        labelled[(decision.model, decision.version, decision.window_index)] += 1
        positives[(decision.model, decision.version)] += label
        results.append(("recorded", 201, None))
    for (model, version, index), n in labelled.items():
        w = store.windows
        conn.execute(update(w).where(store.window_key(model, version, index))
                     .values(labelled=w.c.labelled + n))
    for (model, version), n in positives.items():
        if n:
            _count_positives(conn, model, version, n, cause)
    return results


def _count_positives(conn: Connection, model: str, version: int, n: int, cause: Cause) -> None:
    """Every `retrain_after_positive_labels` new positives trigger a retrain, once each."""
    c = store.label_counters
    before = conn.scalar(select(c.c.positives).where(c.c.model == model))
    if before is None:
        conn.execute(insert(c).values(model=model, positives=n))
        before = 0
    else:
        conn.execute(update(c).where(c.c.model == model).values(positives=before + n))
    every = policy_of(conn, model).retrain_after_positive_labels
    for milestone in domain.positive_label_milestones(before, before + n, every):
        trigger(conn, RetrainTriggered(
            model=model, version=version, trigger="positive_labels",
            workflow_id=domain.labels_workflow_id(model, milestone),
            reason=f"{milestone} positive outcomes recorded for {model} ({every} since the last "
                   f"label trigger)", evidence_event_id=None, positive_labels=milestone), cause)


def trigger(conn: Connection, data: RetrainTriggered, cause: Cause) -> None:
    """Record a trigger (and its event) unless its workflow id was already triggered."""
    t = store.triggers
    if conn.scalar(select(t.c.workflow_id).where(t.c.workflow_id == data.workflow_id)):
        return
    conn.execute(insert(t).values(
        workflow_id=data.workflow_id, model=data.model, version=data.version, reason=data.reason,
        input=data.model_dump(mode="json"), status="pending", detail=None, attempts=0,
        created_at=cause.time))
    record(conn, data, cause)


# --- the evaluation loop ------------------------------------------------------------------------

class Monitor:
    """Closes windows whose time is up, evaluates closed ones, and starts pending retrains."""

    def __init__(self, settings: Settings, engine: Engine,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings, self.engine = settings, engine
        self.registry = registry_http(settings, transport, timeout=10)
        self.starter = RetrainStarter(settings)
        self.evaluated = 0

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad tick must not stop monitoring
                log.exception("monitoring tick failed; retrying")
            await asyncio.sleep(self.settings.monitoring_evaluate_interval_seconds)

    async def tick(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        missing = await asyncio.to_thread(self._close_and_find_missing, now)
        for model, version in missing:
            await self._fetch_reference(model, version, now)
        await asyncio.to_thread(self._evaluate_ready, now)
        await self._start_pending()

    async def close(self) -> None:
        await self.registry.aclose()

    def _close_and_find_missing(self, now: datetime) -> list[tuple[str, int]]:
        w = store.windows
        with self.engine.begin() as conn:
            opened = conn.execute(select(w).where(w.c.state == "open")).all()
            policies = {m: policy_of(conn, m) for m in {r.model for r in opened}}
            for row in opened:
                if domain.time_is_up(store.as_utc(row.start), now, policies[row.model]):
                    conn.execute(update(w).where(store.window_key(row.model, row.version, row.index))
                                 .values(state="closed", end=now, closed_by="time"))
            return store.closed_without_reference(conn)

    async def _fetch_reference(self, model: str, version: int, now: datetime) -> None:
        try:
            found = await self.registry.get(f"/v1/models/{model}/versions/{version}")
            info = await self.registry.get(f"/v1/models/{model}")
        except httpx.HTTPError as exc:
            log.warning("registry unreachable for %s v%d: %s; retrying", model, version, exc)
            return
        if found.status_code != 200 or info.status_code != 200:
            log.warning("registry answered %d/%d for %s v%d; retrying", found.status_code,
                        info.status_code, model, version)
            return
        metadata = found.json()["metadata"]
        protected = info.json().get("protected_attributes", [])
        with self.engine.begin() as conn:
            if store.reference(conn, model, version) is None:
                conn.execute(insert(store.references).values(
                    model=model, version=version, metadata=metadata,
                    protected_attributes=protected, fetched_at=now))

    def _evaluate_ready(self, now: datetime) -> None:
        w = store.windows
        with self.engine.connect() as conn:
            ready = conn.execute(select(w.c.model, w.c.version, w.c.index).where(
                (w.c.state == "closed") | ((w.c.state == "evaluated") & (w.c.labelled > w.c.labels_seen))
            ).order_by(w.c.model, w.c.version, w.c.index)).all()
        for model, version, index in ready:
            with self.engine.begin() as conn:
                self._evaluate(conn, model, version, index, now)

    def _evaluate(self, conn: Connection, model: str, version: int, index: int, now: datetime) -> None:
        ref_row = store.reference(conn, model, version)
        if ref_row is None:
            return  # the registry has not answered yet
        ref = domain.Reference.from_metadata(ref_row.metadata, ref_row.protected_attributes)
        row = conn.execute(select(store.windows).where(store.window_key(model, version, index))).one()
        policy = policy_of(conn, model)
        rows = store.window_decisions(conn, model, version, index)
        refused = store.refused_between(conn, model, store.as_utc(row.start), store.as_utc(row.end))
        fig = domain.figures(ref, rows, policy, refused)
        window = Window(index=index, closed_by=row.closed_by, start=store.as_utc(row.start),
                        end=store.as_utc(row.end), decisions=fig.decisions, labelled=fig.labelled)
        raised = set((row.report or {}).get("alerts", []))
        cause = service_cause(now, correlationid=f"window-{model}-v{version}-w{index}")
        new_alerts = domain.alerts(model, version, window, fig, ref, policy, raised)
        for alert in new_alerts:
            made = record(conn, alert, cause)
            if isinstance(alert, DriftDetected) and policy.retrain_on_drift:
                trigger(conn, RetrainTriggered(
                    model=model, version=version, trigger="drift",
                    workflow_id=domain.drift_workflow_id(model, version, index),
                    reason=f"drift in window {index} of v{version}: "
                           + ", ".join(alert.drifted_features or ["score"]),
                    evidence_event_id=made.id, positive_labels=None), cause)
        alert_types = sorted(raised | {a.event_type for a in new_alerts})
        report = domain.window_report(version, window, fig, alert_types)
        conn.execute(update(store.windows).where(store.window_key(model, version, index)).values(
            state="evaluated", labels_seen=fig.labelled, report=report.model_dump(mode="json")))
        self.evaluated += 1

    async def _start_pending(self) -> None:
        t = store.triggers
        with self.engine.connect() as conn:
            pending = conn.execute(select(t).where(t.c.status == "pending")
                                   .order_by(t.c.created_at)).all()
        for row in pending:
            try:
                result = await self.starter.start(row.workflow_id, row.model, row.version, row.input)
            except Exception as exc:  # noqa: BLE001 - Temporal down or refusing: retry next tick
                detail = (f"could not start {row.workflow_id} on Temporal at "
                          f"{self.settings.temporal_address}: {type(exc).__name__}: {exc}; retrying")
                with self.engine.begin() as conn:
                    conn.execute(update(t).where(t.c.workflow_id == row.workflow_id).values(
                        attempts=t.c.attempts + 1, detail=detail[:1000]))
                log.warning(detail)
                return
            with self.engine.begin() as conn:
                conn.execute(update(t).where(t.c.workflow_id == row.workflow_id).values(
                    status=result.outcome, detail=result.detail[:1000], attempts=t.c.attempts + 1))
                record(conn, RetrainStartAttempted(
                    model=row.model, workflow_id=row.workflow_id, outcome=result.outcome,
                    run_id=result.run_id, task_queue=self.settings.temporal_task_queue,
                    workers_polling=result.workers_polling, detail=result.detail), service_cause())
            log.info(result.detail)
