"""The backbone end to end, in process: registry → outbox → JetStream → audit chain.

Both services run with their real lifespans against a real nats-server, on SQLite and on a real
PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.audit.app import create_app as create_audit
from services.registry.app import create_app as create_registry
from tests.conftest import bearer
from tests.nats_helpers import stream_messages
from tests.registry_helpers import approve, create_model, register
from tests.waiting import wait_for


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, nats_server, settings_factory, make_db_url):
    settings = settings_factory(
        nats_server.url,
        registry_database_url=make_db_url(request.param, "registry"),
        audit_database_url=make_db_url(request.param, "audit"),
    )
    with TestClient(create_registry(settings)) as registry, TestClient(create_audit(settings)) as audit:
        yield registry, audit


def governance_events(url: str) -> list[dict]:
    return [json.loads(m.data) | {"_msg_id": m.headers.get("Nats-Msg-Id")}
            for m in stream_messages(url, "GOVERNANCE", "gov.registry.")]


def audit_events(audit: TestClient) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = audit.get("/v1/audit/events", params=params, headers=bearer("regulator")).json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items


def test_each_change_is_one_event_in_jetstream_and_the_same_events_chained_in_audit(nats_server, stack):
    registry, audit = stack
    # act: create a model, register a version, validate and approve it
    assert create_model(registry).status_code == 201
    assert register(registry).status_code == 201
    approve(registry, 1)
    # check: exactly four events, one per change, Nats-Msg-Id = event id
    expected_types = [
        "modelgov.registry.model.created.v1",
        "modelgov.registry.model_version.registered.v1",
        "modelgov.registry.model_version.validated.v1",
        "modelgov.registry.model_version.approved.v1",
    ]
    events = wait_for(lambda: (e := governance_events(nats_server.url)) and len(e) >= 4 and e)
    time.sleep(0.3)  # nothing more may arrive
    events = governance_events(nats_server.url)
    assert [e["type"] for e in events] == expected_types
    assert all(e["_msg_id"] == e["id"] for e in events)
    assert all(e["traceparent"].startswith("00-") for e in events)  # each request's trace travels
    assert events[1]["actor"] == "user:local-data_scientist"
    assert events[3]["actor"] == "user:local-model_risk"
    # check: the audit store holds the same events, in order, chained, verified
    chained = wait_for(lambda: (a := audit_events(audit)) and len(a) == 4 and a)
    assert [c["event_id"] for c in chained] == [e["id"] for e in events]
    assert [c["position"] for c in chained] == [1, 2, 3, 4]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(chained, chained[1:], strict=False))
    report = audit.get("/v1/audit/verify", headers=bearer("regulator")).json()
    assert report["ok"] and report["streams"][0]["head_hash"] == chained[-1]["hash"]
    history = audit.get("/v1/audit/models/credit-default/history", headers=bearer("regulator"))
    assert [e["type"] for e in history.json()["events"]] == expected_types


def test_registering_50_versions_while_nats_is_down_loses_and_duplicates_nothing(nats_server, stack):
    registry, audit = stack
    assert create_model(registry).status_code == 201
    wait_for(lambda: len(audit_events(audit)) == 1)
    # act: NATS goes down; 50 registrations happen; NATS comes back
    nats_server.stop()
    statuses = [register(registry).status_code for _ in range(50)]
    assert statuses == [201] * 50, Counter(statuses)
    assert registry.get("/readyz").status_code == 503
    nats_server.start()
    # check: 51 events in the stream and in the audit chain, each id exactly once, in order
    chained = wait_for(lambda: (a := audit_events(audit)) and len(a) >= 51 and a, timeout=60)
    time.sleep(1.0)
    chained = audit_events(audit)
    in_stream = governance_events(nats_server.url)
    ids = [e["id"] for e in in_stream]
    assert len(ids) == 51 and len(set(ids)) == 51
    assert [c["event_id"] for c in chained] == ids
    versions = [e["data"]["version"] for e in in_stream[1:]]
    assert versions == list(range(1, 51))
    assert audit.get("/v1/audit/verify", headers=bearer("regulator")).json()["ok"]
    wait_for(lambda: registry.get("/readyz").status_code == 200)


@pytest.fixture(scope="module")
def spans(tracer_provider):
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


def test_one_trace_links_the_request_the_publish_and_the_audit_write(spans, stack):
    registry, audit = stack
    spans.clear()
    # act: a client request carrying its own trace context
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = registry.post(
        "/v1/models", headers={**bearer("data_scientist"), "traceparent": parent},
        json={"name": "traced-model", "owner": "risk", "use_case": "credit", "risk_tier": "low"},
    )
    assert response.status_code == 201
    wait_for(lambda: any(s.name == "audit append GOVERNANCE" for s in spans.get_finished_spans()))
    finished = {s.name: s for s in spans.get_finished_spans()}
    request_span = finished["POST /v1/models"]
    publish_span = finished["publish gov.registry.model.created"]
    audit_span = finished["audit append GOVERNANCE"]
    # check: the publish continues the request's trace, below its server span
    trace_id = int("0af7651916cd43dd8448eb211c80319c", 16)
    assert request_span.context.trace_id == publish_span.context.trace_id == trace_id
    parent_of = {s.context.span_id: s.parent.span_id for s in spans.get_finished_spans() if s.parent}
    ancestors, current = [], publish_span.context.span_id
    while current in parent_of:
        current = parent_of[current]
        ancestors.append(current)
    assert request_span.context.span_id in ancestors
    # check: the audit write's span links the event's context, in the request's trace
    chained = audit.get("/v1/audit/events", params={"subject": "model/traced-model"},
                        headers=bearer("regulator")).json()["items"]
    link = next(k for k in audit_span.links
                if k.attributes["messaging.message.id"] == chained[0]["event_id"])
    assert (link.context.trace_id, link.context.span_id) == (trace_id, publish_span.parent.span_id)
