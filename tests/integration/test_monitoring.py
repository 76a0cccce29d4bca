"""Monitoring on real NATS with the registry and scoring: outcomes in, windows evaluated against
the version's reference profile, alerts and retrain triggers out (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from deploy.servers import free_port
from tests.conftest import bearer
from tests.monitoring_helpers import FEATURES, MODEL, draw, monitoring_stack, requests_for, score_all
from tests.nats_helpers import stream_messages
from tests.waiting import wait_for

NOW = datetime(2026, 11, 1, tzinfo=UTC).isoformat()


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, settings_factory, nats_server, make_db_url):
    # Nothing listens on this Temporal port: triggers must stay pending, never reach a developer's
    # running stack.
    backend = request.param
    return settings_factory(nats_server.url, registry_database_url=make_db_url(backend, "registry"),
                            scoring_database_url=make_db_url(backend, "scoring"),
                            monitoring_database_url=make_db_url(backend, "monitoring"),
                            temporal_address=f"127.0.0.1:{free_port()}",
                            monitoring_evaluate_interval_seconds=0.2, scoring_refusal_tally_seconds=0.2)


def events(url: str, subject: str, stream: str = "GOVERNANCE") -> list[dict]:
    return [json.loads(m.data) for m in stream_messages(url, stream, subject)]


def windows_evaluated(monitoring, n: int):
    report = monitoring.get(f"/v1/monitoring/{MODEL}/report", headers=bearer("model_risk")).json()
    return report if len(report.get("windows", [])) >= n else None


def test_drift_alert_names_exactly_the_shifted_features_and_unshifted_windows_raise_none(
        settings, nats_server):
    with monitoring_stack(settings) as (_, scoring, monitoring):
        policy = {"window_size": 1000, "window_seconds": 3600}  # default thresholds
        assert monitoring.put(f"/v1/monitoring/{MODEL}/policy", json=policy,
                              headers=bearer("model_risk")).status_code == 200
        # a count its event could not carry exactly was a 500 (fuzzing found it): 422, unchanged
        odd = monitoring.put(f"/v1/monitoring/{MODEL}/policy", headers=bearer("model_risk"),
                             json={**policy, "retrain_after_positive_labels": 2**57})
        assert odd.status_code == 422 and "retrain_after_positive_labels" in odd.json()["detail"]
        # arrange: three windows drawn from the training distribution: no alert may follow; five
        # refused requests (a feature missing) in the first window
        calm = requests_for(draw(3000, seed=10), "calm")
        score_all(scoring, calm[:500])
        for i in range(5):
            bad = scoring.post(f"/v1/score/{MODEL}", headers=bearer("scoring_client"), json={
                "entity_id": f"bad-{i}", "features": {f: 1.0 for f in FEATURES[1:]}})
            assert bad.status_code == 422
        time.sleep(1.0)  # the replica's tally (every 0.2 s here) goes out before the next decisions
        score_all(scoring, calm[500:])
        report = wait_for(lambda: windows_evaluated(monitoring, 3), timeout=60)
        assert events(nats_server.url, "gov.monitoring.drift.detected") == []
        # check: the operations error rate counts the refused requests in the window they fell in
        first = next(w for w in report["windows"] if w["index"] == 1)
        assert (first["refused"], first["error_rate"]) == (5, round(5 / 1005, 6))
        assert sum(w["refused"] for w in report["windows"]) == 5
        # act: a fourth window with five features moved by half a standard deviation
        shifted = FEATURES[:5]
        score_all(scoring, requests_for(draw(1000, seed=11, shift_sd=dict.fromkeys(shifted, 0.5)),
                                        "shifted"))
        full = time.monotonic()
        alerts = wait_for(lambda: events(nats_server.url, "gov.monitoring.drift.detected"), timeout=60)
        # check: within 60 s of the window filling, one alert naming exactly those features
        assert time.monotonic() - full < 60
        assert len(alerts) == 1
        data = alerts[0]["data"]
        assert sorted(data["drifted_features"]) == shifted
        assert data["window"]["index"] == 4 and data["window"]["decisions"] == 1000
        assert alerts[0]["subject"] == f"model/{MODEL}/version/1"
        # check: the alert triggered a retrain, recorded and pending while Temporal is away
        triggered = wait_for(lambda: events(nats_server.url, "gov.monitoring.retrain.triggered"))
        assert [t["data"]["workflow_id"] for t in triggered] == [f"retrain-{MODEL}-drift-v1-w4"]
        report = monitoring.get(f"/v1/monitoring/{MODEL}/report", headers=bearer("regulator")).json()
        assert report["triggers"][0]["status"] == "pending"
        assert "could not start" in report["triggers"][0]["detail"]
        # check: the HTML report draws the drifted features
        page = monitoring.get(f"/v1/monitoring/{MODEL}/report?format=html", headers=bearer("regulator"))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert all(f"<h3>{f}</h3>" in page.text for f in shifted)
        # check: of a known model, a version no store can hold is a 422 (it answered 500)
        for query in (f"report?version={2**31}", f"compare?baseline=1&candidate={2**63}"):
            odd = monitoring.get(f"/v1/monitoring/{MODEL}/{query}", headers=bearer("regulator"))
            assert odd.status_code == 422 and "less than or equal to 2147483647" in odd.json()["detail"]
        odd = monitoring.get("/v1/monitoring/Credit_Default/report", headers=bearer("regulator"))
        assert odd.status_code == 422 and "path.model" in odd.json()["detail"]


def test_outcomes_per_item_statuses_idempotent_duplicates_and_clear_errors(settings, nats_server):
    with monitoring_stack(settings) as (_, scoring, monitoring):
        decided = score_all(scoring, requests_for(draw(5, seed=3), "o"))
        ids = [d["decision_id"] for d in decided]
        wait_for(lambda: monitoring.post("/v1/outcomes", json={
            "decision_id": ids[4], "label": 0, "observed_at": NOW}, headers=bearer("service")
        ).status_code == 201, timeout=30)
        # act: a batch with new, unknown, repeated and conflicting outcomes
        batch = {"outcomes": [
            {"decision_id": ids[0], "label": 1, "observed_at": NOW},
            {"decision_id": "no-such-decision", "label": 0, "observed_at": NOW},
            {"decision_id": ids[1], "label": True, "observed_at": NOW},
            {"decision_id": ids[4], "label": 0, "observed_at": NOW},
            {"decision_id": ids[4], "label": 1, "observed_at": NOW},
        ]}
        response = monitoring.post("/v1/outcomes", json=batch, headers=bearer("scoring_client"))
        # check: 207 with a status per item; the unknown id is a 404 item, the rest accepted
        assert response.status_code == 207, response.text
        body = response.json()
        assert [(r["status"], r["code"]) for r in body["results"]] == [
            ("recorded", 201), ("not_found", 404), ("recorded", 201), ("duplicate", 200), ("conflict", 409)]
        assert "no-such-decision" in body["results"][1]["detail"]
        assert (body["recorded"], body["duplicates"], body["failed"]) == (2, 1, 2)
        # check: the same batch again records nothing new
        again = monitoring.post("/v1/outcomes", json={"outcomes": batch["outcomes"][:1]},
                                headers=bearer("service"))
        assert again.status_code == 200 and again.json()["duplicates"] == 1
        # check: a single unknown outcome is a 404 problem; malformed labels are 422
        single = monitoring.post("/v1/outcomes", json={"decision_id": "nope", "label": 1,
                                                        "observed_at": NOW}, headers=bearer("service"))
        assert single.status_code == 404
        assert single.headers["content-type"] == "application/problem+json"
        for label in (2, "yes", -1, 0.5, None):
            bad = monitoring.post("/v1/outcomes", json={"decision_id": ids[2], "label": label,
                                                         "observed_at": NOW}, headers=bearer("service"))
            assert bad.status_code == 422, (label, bad.text)
            assert "label" in bad.json()["detail"]
        naive = monitoring.post("/v1/outcomes", json={"decision_id": ids[2], "label": 1,
                                                       "observed_at": "2026-11-01T00:00:00"},
                                headers=bearer("service"))
        assert naive.status_code == 422 and "observed_at" in naive.json()["detail"]
        # check: roles
        assert monitoring.post("/v1/outcomes", json=batch, headers=bearer("regulator")).status_code == 403
        assert monitoring.post("/v1/outcomes", json=batch).status_code == 401
        # check: exactly one outcome.recorded per recorded outcome, on the decisions' stream
        wait_for(lambda: len(events(nats_server.url, f"dec.{MODEL}.outcome_recorded", "DECISIONS")) >= 3)
        time.sleep(0.5)  # time for a wrongly repeated event to arrive
        recorded = events(nats_server.url, f"dec.{MODEL}.outcome_recorded", "DECISIONS")
        assert sorted(e["data"]["decision_id"] for e in recorded) == sorted([ids[0], ids[1], ids[4]])
