"""Monitoring's windows on both backends: closed by count and by time, judged, and judged again
as outcomes arrive (the loop driven by hand, with the version's reference already fetched)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert, select

from contracts.envelope import make_event, new_event_id
from contracts.monitoring.api import MonitoringPolicy, OutcomeIn
from contracts.scoring.events import DecisionMade
from deploy.servers import free_port
from services.monitoring import messaging, store
from services.runtime import migrate
from services.runtime.db import make_engine
from tests.monitoring_helpers import FEATURES, MODEL, draw, fitted

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
POLICY = MonitoringPolicy(window_size=50, window_seconds=600, retrain_after_positive_labels=10)


def decisions(n: int, start: datetime) -> list:
    x, scores = draw(n, seed=5), np.random.default_rng(6).random(n)
    out = []
    for i in range(n):
        decision_id = new_event_id()
        data = DecisionMade(decision_id=decision_id, model=MODEL, version=1, route="champion",
                            entity_id=f"card-{i}", inputs=dict(zip(FEATURES, map(float, x[i]), strict=True)),
                            score=float(scores[i]), decision="block" if scores[i] >= 0.8 else "allow",
                            reason_codes=[], trace_id=None, latency_ms=1.0 + i % 5)
        out.append(make_event(data, subject=f"decision/{decision_id}", actor="service:scoring",
                              time=start + timedelta(seconds=i), event_id=decision_id))
    return out


@pytest.fixture
def monitor(db_url, settings_factory):
    migrate.upgrade("monitoring", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:  # the policy, and the reference the loop would fetch from the registry
        conn.execute(insert(store.policies).values(model=MODEL, policy=POLICY.model_dump(mode="json"),
                                                   updated_at=T0, updated_by="user:test"))
        conn.execute(insert(store.references).values(model=MODEL, version=1, metadata=fitted()[1],
                                                     protected_attributes=[], fetched_at=T0))
    settings = settings_factory(f"nats://127.0.0.1:{free_port()}",
                                temporal_address=f"127.0.0.1:{free_port()}")
    yield messaging.Monitor(settings, engine)
    engine.dispose()


def windows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(store.windows).order_by(store.windows.c.index)).all()


async def test_windows_close_by_count_then_by_time_and_are_judged_again_when_labels_arrive(monitor):
    engine = monitor.engine
    made = decisions(120, T0)
    # act: 120 decisions in two batches (a window closes inside each), then the loop runs
    with engine.begin() as conn:
        messaging.take_traffic(conn, made[:70])
    with engine.begin() as conn:
        messaging.take_traffic(conn, made[70:])
    await monitor.tick(now=T0 + timedelta(seconds=200))
    # check: two windows of 50 closed by count and judged; the third still open with 20
    rows = windows(engine)
    assert [(w.index, w.state, w.closed_by, w.decisions) for w in rows] == [
        (1, "evaluated", "count", 50), (2, "evaluated", "count", 50), (3, "open", None, 20)]
    assert rows[0].report["latency"]["max_ms"] == 5.0 and rows[0].report["drift"] is None  # < min_samples
    # act: ten minutes after its first decision, the loop closes the third by time
    await monitor.tick(now=T0 + timedelta(seconds=100 + 600))
    third = windows(engine)[2]
    assert (third.state, third.closed_by, third.decisions) == ("evaluated", "time", 20)
    # act: outcomes for window 1's decisions arrive; the next tick judges it again
    items = [OutcomeIn(decision_id=e.id, label=int(e.data["score"] > 0.5), observed_at=T0) for e in made[:50]]
    with engine.begin() as conn:
        assert {r[0] for r in messaging.record_outcomes(conn, items, messaging.service_cause(), T0)} == {
            "recorded"}
    await monitor.tick(now=T0 + timedelta(seconds=800))
    first = windows(engine)[0]
    assert (first.labelled, first.labels_seen) == (50, 50)
    performance = first.report["performance"]
    assert performance["count"] == 50 and performance["auc"] == 1.0  # labels follow the score here
    # check: every 10 positive labels are one retrain trigger, recorded once each
    positives = sum(i.label for i in items)
    with engine.connect() as conn:
        triggers = list(conn.scalars(select(store.triggers.c.workflow_id)))
    assert sorted(triggers) == sorted(f"retrain-{MODEL}-labels-{n}" for n in range(10, positives + 1, 10))
    assert len(triggers) == positives // 10 >= 2
