"""Retrain triggers on a real Temporal dev server: the same trigger twice is one workflow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from contracts.monitoring.events import RetrainTriggered
from deploy.servers import TemporalDevServer
from services.monitoring import messaging, store
from services.monitoring.retrain import RetrainStarter
from services.runtime import migrate
from services.runtime.db import make_engine


@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal") / "temporal.db", headless=True).start()
    yield server
    server.stop()


def triggered(workflow_id: str) -> RetrainTriggered:
    return RetrainTriggered(model="card-fraud", version=1, trigger="drift", workflow_id=workflow_id,
                            reason="drift in window 4 of v1: f0", evidence_event_id=None,
                            positive_labels=None)


async def test_the_same_trigger_twice_starts_one_workflow_and_says_no_worker_serves_it(
        temporal, settings_factory, nats_server):
    settings = settings_factory(nats_server.url, temporal_address=temporal.address)
    starter = RetrainStarter(settings)
    workflow_id = f"retrain-card-fraud-drift-v1-w{datetime.now(UTC):%H%M%S%f}"
    # act: start it twice, as a repeated trigger or a retried start would
    first = await starter.start(workflow_id, "card-fraud", 1, triggered(workflow_id).model_dump(mode="json"))
    second = await starter.start(workflow_id, "card-fraud", 1, triggered(workflow_id).model_dump(mode="json"))
    # check: one workflow; the second attempt is told it already runs
    assert (first.outcome, second.outcome) == ("started", "already_started")
    assert first.run_id and second.run_id == first.run_id
    client = await starter.client()
    found = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    assert len(found) == 1
    # check: with no worker on the task queue, the attempt says so plainly
    assert first.workers_polling == 0
    assert "no worker polls task queue 'governance'" in first.detail
    # check: operators can find it by model in the UI / CLI
    by_model = [w async for w in client.list_workflows('ModelName = "card-fraud"')]
    assert workflow_id in {w.id for w in by_model}


def test_a_trigger_is_recorded_once_per_workflow_id(db_url):
    migrate.upgrade("monitoring", db_url)
    engine = make_engine(db_url)
    cause = messaging.service_cause()
    # act: the same evidence triggers twice
    for _ in range(2):
        with engine.begin() as conn:
            messaging.trigger(conn, triggered("retrain-card-fraud-drift-v1-w9"), cause)
    # check: one trigger row and one retrain.triggered event in the outbox
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(store.triggers)) == 1
        assert conn.scalar(select(func.count()).select_from(store.outbox)) == 1
    engine.dispose()
