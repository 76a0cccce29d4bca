"""Scoring against the real registry (uvicorn, real HTTP) and a real nats-server, on SQLite and
PostgreSQL: every response is one decision.made event in stream DECISIONS, and NATS outages,
shadows, canaries, tampered artifacts and bad input never break that."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from services.runtime.outbox import pending_count
from services.runtime.settings import Settings
from services.scoring.store import outbox
from tests.conftest import bearer
from tests.nats_helpers import stream_messages
from tests.scoring_helpers import (
    RISKY,
    SAFE,
    applicant,
    deploy,
    register_versions,
    score,
    scoring_stack,
)
from tests.waiting import wait_for

MODEL = "credit-default"
BODY_LIMIT = 64 * 1024
BATCH_LIMIT = 50


def stack_settings(backend: str, nats_server, settings_factory, make_db_url) -> Settings:
    return settings_factory(
        nats_server.url,
        registry_database_url=make_db_url(backend, "registry"),
        scoring_database_url=make_db_url(backend, "scoring"),
        scoring_max_body_bytes=BODY_LIMIT, scoring_max_batch=BATCH_LIMIT,
        scoring_publish_timeout_seconds=1.0,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, nats_server, settings_factory, make_db_url):
    """The registry on a real port, scoring in-process."""
    settings = stack_settings(request.param, nats_server, settings_factory, make_db_url)
    with scoring_stack(settings) as (registry, scoring):
        yield registry, scoring, settings


@pytest.fixture(params=["sqlite", "postgres"])
def live(request, nats_server, settings_factory, make_db_url):
    """The registry and scoring each under uvicorn on a real port; httpx clients on both."""
    settings = stack_settings(request.param, nats_server, settings_factory, make_db_url)
    with scoring_stack(settings, live=True) as (registry, scoring):
        yield registry, scoring


@pytest.fixture
def deployed(stack):
    """Versions 1 (logistic regression) and 2 (gradient boosting), approved; 1 is the champion."""
    registry, scoring, settings = stack
    assert register_versions(registry) == [1, 2]
    response = deploy(scoring, {"champion": 1})
    assert response.status_code == 200, response.text
    return stack


def decisions(url: str, verb: str = "decision_made") -> list[dict]:
    return [json.loads(m.data) | {"_msg_id": m.headers.get("Nats-Msg-Id")}
            for m in stream_messages(url, "DECISIONS", f"dec.{MODEL}.{verb}")]


def test_each_response_is_exactly_one_decision_event_holding_what_was_decided(nats_server, deployed):
    _, scoring, _ = deployed
    # act: 20 applicants, among them a clearly risky and a clearly safe one
    features = [RISKY, SAFE] + [applicant(i) for i in range(18)]
    responses = [score(scoring, f"app-{i}", f) for i, f in enumerate(features)]
    # check: every answer names the champion, declines carry 1-4 reasons, the others none
    assert [r.status_code for r in responses] == [200] * 20
    bodies = [r.json() for r in responses]
    assert {(b["model_version"], b["route"]) for b in bodies} == {(1, "champion")}
    assert bodies[0]["decision"] == "decline" and bodies[1]["decision"] == "approve"
    for b in bodies:
        assert (1 <= len(b["reason_codes"]) <= 4) if b["decision"] == "decline" else b["reason_codes"] == []
    assert {r["feature"] for r in bodies[0]["reason_codes"]} <= {"income", "debt_ratio", "age", "purpose"}
    # check: the stream holds one event per response, with its id, inputs and outcome
    events = decisions(nats_server.url)
    assert sorted(e["id"] for e in events) == sorted(b["decision_id"] for b in bodies)
    by_id = {e["id"]: e for e in events}
    for b, f in zip(bodies, features, strict=True):
        e = by_id[b["decision_id"]]
        assert e["_msg_id"] == e["id"] and e["subject"] == f"decision/{e['id']}"
        assert e["type"] == "modelgov.scoring.decision.made.v1" and e["actor"] == "user:local-scoring_client"
        data = e["data"]
        assert data["inputs"] == f and data["score"] == b["score"] and data["decision"] == b["decision"]
        assert data["reason_codes"] == b["reason_codes"] and data["version"] == 1
        assert data["route"] == "champion" and len(data["trace_id"]) == 32
    # check: metrics per model, version and route
    metrics = scoring.get("/metrics").text
    assert 'modelgov_scoring_decisions_total{decision="decline",model="credit-default",route="champion",' \
           'version="1"}' in metrics
    assert 'modelgov_scoring_model_loads_total{model="credit-default",outcome="loaded",version="1"} 1.0' \
           in metrics


def test_a_batch_is_one_event_per_item(nats_server, deployed):
    _, scoring, _ = deployed
    items = [{"entity_id": f"b-{i}", "features": applicant(i)} for i in range(10)]
    response = scoring.post(f"/v1/score/{MODEL}/batch", json={"items": items}, headers=bearer("service"))
    assert response.status_code == 200, response.text
    ids = [item["decision_id"] for item in response.json()["items"]]
    assert sorted(e["id"] for e in decisions(nats_server.url)) == sorted(ids)


def test_protected_attributes_ride_on_the_decision_event_and_never_reach_the_model(nats_server, deployed):
    _, scoring, _ = deployed
    attributes = {"sex": "female", "age_group": "25-34"}

    def post(body: dict, batch: bool = False):
        return scoring.post(f"/v1/score/{MODEL}" + ("/batch" if batch else ""), json=body,
                            headers=bearer("scoring_client"))

    def answer(body: dict) -> dict:
        return {k: v for k, v in body.items() if k != "decision_id"}

    # act: the same applicant with and without attributes; a batch with and without
    plain = score(scoring, "p-1", RISKY).json()
    tagged = post({"entity_id": "p-1", "features": RISKY, "attributes": attributes})
    assert tagged.status_code == 200, tagged.text
    items = [{"entity_id": "b-1", "features": SAFE, "attributes": {"sex": "male"}},
             {"entity_id": "b-2", "features": SAFE}]
    batch = post({"items": items}, batch=True)
    assert batch.status_code == 200, batch.text
    # check: the same answer either way (the model never sees them), and none in the response
    assert answer(tagged.json()) == answer(plain) and "attributes" not in tagged.json()
    # check: the events hold them apart from the inputs; without any, an empty object
    events = {e["id"]: e["data"] for e in decisions(nats_server.url)}
    recorded = events[tagged.json()["decision_id"]]
    assert recorded["attributes"] == attributes and recorded["inputs"] == RISKY
    assert events[plain["decision_id"]]["attributes"] == {}
    assert [events[i["decision_id"]]["attributes"] for i in batch.json()["items"]] == [{"sex": "male"}, {}]
    # bad: names the model does not declare protected (a feature's name among them): one 422 each
    bad = post({"entity_id": "x", "features": SAFE, "attributes": {"race": "x", "age": "30", "sex": "f"}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"] == [
        {"row": None, "attribute": name, "problem": "is not a protected attribute of the model (it "
                                                    "declares: age_group, sex)"} for name in ("age", "race")]
    assert "attribute 'race' is not a protected attribute" in bad.json()["detail"]
    assert "protected_attributes (GET /v1/models/credit-default" in bad.json()["detail"]
    # bad: with a feature problem, in a batch row: both named, by row
    rows = [items[0], {"entity_id": "y", "features": {**SAFE, "age": 5}, "attributes": {"colour": "red"}}]
    mixed = post({"items": rows}, batch=True)
    assert mixed.status_code == 422
    assert "items[1]: feature 'age'" in mixed.json()["detail"]
    assert "items[1]: attribute 'colour'" in mixed.json()["detail"]
    # bad: values are short strings
    for value, words in ((1, "attributes.sex: Input should be a valid string"),
                         ("x" * 65, "attributes.sex: String should have at most 64 characters"),
                         ("", "attributes.sex: String should have at least 1 character")):
        refused = post({"entity_id": "x", "features": SAFE, "attributes": {"sex": value}})
        assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
    # check: none of the refused requests decided anything
    time.sleep(0.3)
    assert len(decisions(nats_server.url)) == 4


def test_bad_requests_are_refused_by_rule_naming_what_to_fix_and_decide_nothing(nats_server, stack):
    registry, scoring, _ = stack
    # unknown model: 404; a model without a champion: 409 saying how to set one
    unknown = score(scoring, "a", SAFE, name="no-such-model")
    assert unknown.status_code == 404 and "does not exist" in unknown.json()["detail"]
    # a name no model can have (fuzzing found a control character answered 500): 422 naming it
    for name in ("Credit_Default", "%13"):
        for path in (f"/v1/score/{name}", f"/v1/score/{name}/batch"):
            odd = scoring.post(path, json={"entity_id": "a", "features": SAFE}, headers=bearer("service"))
            assert odd.status_code == 422 and "path.model: String should match" in odd.json()["detail"]
        odd = scoring.get(f"/v1/deployments/{name}", headers=bearer("operator"))
        assert odd.status_code == 422 and "path.model" in odd.json()["detail"]
    register_versions(registry)
    no_champion = score(scoring, "a", SAFE)
    assert no_champion.status_code == 409
    assert f"PUT /v1/deployments/{MODEL}" in no_champion.json()["detail"]
    assert deploy(scoring, {"champion": 1}).status_code == 200
    # missing, extra, mistyped, out of range, unknown category: one 422 naming each
    bad = score(scoring, "a", {"income": "lots", "debt_ratio": 7, "purpose": "yacht", "colour": "red"})
    assert bad.status_code == 422, bad.text
    named = {e["feature"] for e in bad.json()["errors"]}
    assert named == {"income", "debt_ratio", "age", "purpose", "colour"}
    for word in ("'age' is missing", "'colour' is not in", "'income' must be a float", "maximum 5",
                 "'yacht' is not a known category"):
        assert word in bad.json()["detail"]
    # NaN and Infinity (JSON extensions some clients send)
    raw = ('{"entity_id": "a", "features": {"income": NaN, "debt_ratio": Infinity, "age": 30, '
           '"purpose": "car"}}')
    nan = scoring.post(f"/v1/score/{MODEL}", content=raw, headers={**bearer("scoring_client"),
                                                                     "content-type": "application/json"})
    assert nan.status_code == 422 and "'income' is NaN" in nan.json()["detail"]
    assert "'debt_ratio' is infinite" in nan.json()["detail"]
    # integers its record could not hold exactly, or no float could (both were 500s)
    for value in (2**53, -(10**400)):
        huge = score(scoring, "a", {**SAFE, "income": value})
        assert huge.status_code == 422, huge.text
        assert "'income' is an integer beyond ±(2**53 - 1)" in huge.json()["detail"]
    # a batch row is named by its index
    rows = [{"entity_id": "x", "features": SAFE}, {"entity_id": "y", "features": {**SAFE, "age": 5}}]
    batch = scoring.post(f"/v1/score/{MODEL}/batch", json={"items": rows}, headers=bearer("service"))
    assert batch.status_code == 422 and "items[1]: feature 'age'" in batch.json()["detail"]
    # too many rows, too many bytes: 413
    many = [{"entity_id": f"e{i}", "features": SAFE} for i in range(BATCH_LIMIT + 1)]
    assert scoring.post(f"/v1/score/{MODEL}/batch", json={"items": many},
                        headers=bearer("service")).status_code == 413
    huge = score(scoring, "a", {**SAFE, "padding": "x" * (BODY_LIMIT + 1)})
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
    # not JSON, no token, a scoring client steering deployments
    assert scoring.post(f"/v1/score/{MODEL}", content="{", headers={
        **bearer("scoring_client"), "content-type": "application/json"}).status_code == 422
    assert scoring.post(f"/v1/score/{MODEL}", json={"entity_id": "a", "features": SAFE}).status_code == 401
    assert deploy(scoring, {"champion": 1}, role="scoring_client").status_code == 403
    # check: none of those decided anything
    time.sleep(0.3)
    assert decisions(nats_server.url) == []


def test_deployments_admit_only_existing_approved_versions_and_each_change_is_an_event(nats_server, stack):
    registry, scoring, _ = stack
    register_versions(registry, kinds=("linear", "boosted"), approved=False)
    # act / check: unapproved champion 409, a version that does not exist 422, an unknown model 404
    assert deploy(scoring, {"champion": 1}).status_code == 409
    missing = deploy(scoring, {"champion": 1, "shadow": [9]})
    assert missing.status_code in (409, 422)
    assert deploy(scoring, {"champion": 1}, name="nope").status_code == 404
    for spec in ({"champion": 2**31}, {"champion": 1, "shadow": [0]},
                 {"champion": 1, "canary": {"version": 2**63, "percent": 5}}):
        out_of_range = deploy(scoring, spec)
        assert out_of_range.status_code == 422 and "Input should be" in out_of_range.json()["detail"], spec
    from tests.registry_helpers import approve

    approve(registry, 1)
    assert deploy(scoring, {"champion": 1, "shadow": [9]}).status_code == 422
    set_ = deploy(scoring, {"champion": 1, "canary": {"version": 2, "percent": 10}}, role="service")
    assert set_.status_code == 409 and "version 2" in set_.json()["detail"]  # the canary is not approved
    approve(registry, 2)
    set_ = deploy(scoring, {"champion": 1, "canary": {"version": 2, "percent": 10}}, role="service")
    assert set_.status_code == 200, set_.text
    again = deploy(scoring, {"champion": 1, "canary": {"version": 2, "percent": 10}})
    assert again.status_code == 200  # unchanged: no second event
    got = scoring.get(f"/v1/deployments/{MODEL}", headers=bearer("regulator")).json()
    assert got["champion"] == 1 and got["canary"] == {"version": 2, "percent": 10.0}
    assert got["updated_by"] == "service:local-service"
    # check: exactly one DeploymentChanged on GOVERNANCE
    changed = wait_for(lambda: stream_messages(nats_server.url, "GOVERNANCE", "gov.scoring.deployment"))
    time.sleep(0.3)
    changed = stream_messages(nats_server.url, "GOVERNANCE", "gov.scoring.deployment")
    assert len(changed) == 1
    event = json.loads(changed[0].data)
    assert event["subject"] == f"deployment/{MODEL}" and event["data"]["canary"]["version"] == 2


def test_a_canary_takes_its_share_and_every_entity_keeps_its_route(deployed):
    _, scoring, _ = deployed
    assert deploy(scoring, {"champion": 1, "canary": {"version": 2, "percent": 50}}).status_code == 200
    ids = [f"entity-{i}" for i in range(40)]
    first = [score(scoring, i, SAFE).json() for i in ids]
    second = [score(scoring, i, SAFE).json() for i in ids]
    routes = [(b["route"], b["model_version"]) for b in first]
    assert set(routes) == {("champion", 1), ("canary", 2)}
    assert [(b["route"], b["model_version"]) for b in second] == routes


def test_a_shadow_version_changes_no_response_and_its_predictions_are_recorded(nats_server, deployed):
    _, scoring, _ = deployed
    people = [(f"s-{i}", applicant(i)) for i in range(12)] + [("risky", RISKY)]

    def answers():
        out = [score(scoring, e, f).json() for e, f in people]
        return out, [{k: v for k, v in b.items() if k != "decision_id"} for b in out]

    _, without = answers()
    # act: version 2 shadows the champion
    assert deploy(scoring, {"champion": 1, "shadow": [2]}).status_code == 200
    shadowed, with_shadow = answers()
    # check: identical answers; one shadow event per shadowed decision, from version 2
    assert with_shadow == without
    ids = {b["decision_id"] for b in shadowed}
    events = wait_for(
        lambda: (s := decisions(nats_server.url, "shadow_prediction_made")) and len(s) >= 13 and s)
    assert {e["data"]["decision_id"] for e in events} == ids and len(events) == 13
    assert {e["data"]["version"] for e in events} == {2}
    assert all(e["type"] == "modelgov.scoring.shadow_prediction.made.v1" for e in events)


def _tamper(settings, sha256: str) -> None:
    path = Path(settings.artifacts) / "sha256" / sha256[:2] / sha256
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_artifact_is_refused_before_loading_and_an_event_says_so(nats_server, stack):
    registry, scoring, settings = stack
    register_versions(registry, kinds=("linear",))
    sha = registry.get(f"/v1/models/{MODEL}/versions/1", headers=bearer("service")).json()["artifact_sha256"]
    _tamper(settings, sha)
    # act
    refused = deploy(scoring, {"champion": 1})
    # check: 409 naming the version and both digests; nothing deployed
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "version 1 of model 'credit-default' refused" in detail and sha in detail
    assert scoring.get(f"/v1/deployments/{MODEL}", headers=bearer("operator")).status_code == 404
    # check: an ArtifactRejected event on GOVERNANCE
    found = wait_for(lambda: stream_messages(nats_server.url, "GOVERNANCE", "gov.scoring.artifact.rejected"))
    event = json.loads(found[0].data)
    assert event["subject"] == f"model/{MODEL}/version/1"
    assert event["data"]["expected_sha256"] == sha and event["data"]["actual_sha256"] != sha


def test_nats_down_during_continuous_scoring_fails_no_request_and_loses_or_duplicates_no_event(
    nats_server, deployed
):
    _, scoring, _ = deployed
    answered: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            r = score(scoring, f"c{n}-{i}", applicant(i))
            if r.status_code == 200:
                answered.append(r.json()["decision_id"])
            else:
                failures.append(r.status_code)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(answered) >= 20)
    # act: NATS stops for 10 s while the clients keep scoring
    nats_server.stop()
    during = len(answered)
    # check: readiness says so, in the inference protocol's shape (400) as on /readyz (503)
    not_ready = wait_for(lambda: (r := scoring.get("/v2/health/ready")).status_code == 400 and r)
    assert not_ready.json() == {"ready": False, "error": "not ready: nats unreachable"}
    assert scoring.get("/readyz").status_code == 503
    time.sleep(10)
    nats_server.start()
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    # check: nothing failed, decisions kept coming during the outage
    assert failures == [] and len(answered) > during + 5
    # check: after the restart the stream holds exactly one decision.made per response
    wait_for(lambda: len(decisions(nats_server.url)) >= len(answered), timeout=60)
    time.sleep(1)
    ids = [e["id"] for e in decisions(nats_server.url)]
    assert len(ids) == len(set(ids)) and set(ids) == set(answered)
    # check: the outage was real: some decisions went through the outbox, and it is drained
    spooled = [line for line in scoring.get("/metrics").text.splitlines()
               if line.startswith("modelgov_scoring_events_spooled_total{")]
    assert spooled and float(spooled[0].split()[-1]) > 0
    wait_for(lambda: pending_count(scoring.app.state.runtime.engine, outbox) == 0)


def test_swapping_the_champion_under_load_fails_no_request_and_every_answer_names_its_version(
    nats_server, live
):
    registry, scoring = live
    assert register_versions(registry) == [1, 2]
    assert deploy(scoring, {"champion": 1}).status_code == 200
    answered: list[tuple[str, int]] = []  # (decision id, model version)
    failures: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=scoring.base_url, headers=bearer("scoring_client"), timeout=30) as http:
            i = 0
            while not stop.is_set():
                try:
                    r = http.post(f"/v1/score/{MODEL}", json={"entity_id": f"h{n}-{i}",
                                                             "features": applicant(i)})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code == 200:
                    answered.append((r.json()["decision_id"], r.json()["model_version"]))
                else:
                    failures.append(f"{r.status_code} {r.text}")
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(answered) >= 40)
        # act: the champion goes 1 → 2 → 1 while four clients score
        for champion in (2, 1):
            assert deploy(scoring, {"champion": champion}).status_code == 200
            swapped = len(answered)
            wait_for(lambda s=swapped: len(answered) >= s + 40)
    finally:
        stop.set()
        for t in threads:
            t.join()
    # check: no request failed, and both versions answered
    assert failures == []
    assert {v for _, v in answered} == {1, 2}
    # check: each answer's version is the one its decision.made event records
    wait_for(lambda: len(decisions(nats_server.url)) >= len(answered), timeout=60)
    recorded = {e["id"]: e["data"]["version"] for e in decisions(nats_server.url)}
    assert len(recorded) == len(answered)
    assert all(recorded[d] == v for d, v in answered)


def test_the_score_route_continues_the_callers_trace_and_counts_in_http_metrics(nats_server, deployed):
    """POST /v1/score/{model} is answered by a lean handler ahead of the framework (fastpath.py):
    it must keep what the framework gave the route."""
    _, scoring, _ = deployed
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**bearer("scoring_client"), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
               "x-correlation-id": "loan-file-77"}
    response = scoring.post(f"/v1/score/{MODEL}", headers=headers,
                            json={"entity_id": "app-traced", "features": SAFE})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    # check: the decision event carries the caller's trace and correlation id
    [event] = [e for e in decisions(nats_server.url) if e["id"] == response.json()["decision_id"]]
    assert event["data"]["trace_id"] == trace_id and event["traceparent"].split("-")[1] == trace_id
    assert event["correlationid"] == "loan-file-77"
    # check: what the lean handler hands on gets the framework's own answers, and decides nothing
    body = json.dumps({"entity_id": "app-handed-on", "features": SAFE})
    as_text = scoring.post(f"/v1/score/{MODEL}", content=body,
                           headers={**headers, "content-type": "text/plain"})
    assert as_text.status_code == 422 and as_text.headers["content-type"] == "application/problem+json"
    wrong_role = scoring.post(f"/v1/score/{MODEL}", content=body,
                              headers={**bearer("regulator"), "content-type": "application/json"})
    assert wrong_role.status_code == 403 and "scoring_client" in wrong_role.json()["detail"]
    # a decision is durable before its response, so one made here would be in the stream by now
    assert not [e for e in decisions(nats_server.url) if e["data"]["entity_id"] == "app-handed-on"]
    # check: counted under its route, as every other route is, errors included
    scoring.post(f"/v1/score/{MODEL}", headers=headers, json={"entity_id": "x", "features": {}})
    scoring.post("/v1/score/no-such-model", headers=headers, json={"entity_id": "x", "features": SAFE})
    metrics = scoring.get("/metrics").text
    for status, count in (("200", 1), ("403", 1), ("404", 1), ("422", 2)):
        assert ('modelgov_http_requests_total{method="POST",route="/v1/score/{model}",'
                f'service="scoring",status="{status}"}} {count}.0') in metrics, status



def test_the_oip_infer_routes_are_answered_by_the_same_lean_handler(nats_server, deployed):
    """POST /v2/models/{model}[/versions/{version}]/infer goes through fastpath.py too (through
    FastAPI an OIP decision cost twice /v1's CPU): what it answers, and what it hands on."""
    _, scoring, _ = deployed
    seen = []
    fast_path = scoring.app.fast_path

    async def spy(scope, receive, send):
        handed_on = await fast_path(scope, receive, send)
        seen.append("handed on" if handed_on is not None else "answered")
        return handed_on

    scoring.app.fast_path = spy
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {**bearer("scoring_client"), "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
               "content-type": "application/json"}
    inputs = [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
              for k, v in SAFE.items()]
    body = json.dumps({"inputs": inputs, "parameters": {"entity_ids": ["oip-fast"]}})

    def infer(path, **extra):
        seen.clear()
        return scoring.post(path, content=body, headers={**headers, **extra}), seen[-1]

    # check: decided by the lean handler, the caller's trace carried into the event
    answer, by = infer(f"/v2/models/{MODEL}/infer")
    assert answer.status_code == 200 and by == "answered", answer.text
    decision_id = {o["name"]: o["data"] for o in answer.json()["outputs"]}["decision_id"][0]
    [event] = [e for e in decisions(nats_server.url) if e["id"] == decision_id]
    assert event["data"]["entity_id"] == "oip-fast" and event["data"]["trace_id"] == trace_id
    pinned, by = infer(f"/v2/models/{MODEL}/versions/2/infer")
    assert pinned.status_code == 200 and by == "answered", pinned.text
    # check: its errors are the protocol's error objects, as the FastAPI routes give them
    unknown, by = infer("/v2/models/no-such-model/infer")
    assert (unknown.status_code, by) == (404, "answered") and "does not exist" in unknown.json()["error"]
    # check: a version out of range and a role that may not score go on to FastAPI, deciding nothing
    huge, by = infer(f"/v2/models/{MODEL}/versions/99999999999/infer")
    assert (huge.status_code, by) == (400, "handed on") and "version" in huge.json()["error"]
    refused, by = infer(f"/v2/models/{MODEL}/infer", **bearer("regulator"))
    assert (refused.status_code, by) == (403, "handed on") and "scoring_client" in refused.json()["error"]
    assert len([e for e in decisions(nats_server.url) if e["data"]["entity_id"] == "oip-fast"]) == 2
    # check: counted under their routes, as FastAPI's telemetry counts them
    metrics = scoring.get("/metrics").text
    counted = [("/v2/models/{model}/infer", "200"), ("/v2/models/{model}/versions/{version}/infer", "200"),
               ("/v2/models/{model}/infer", "404")]
    for route, status in counted:
        assert (f'modelgov_http_requests_total{{method="POST",route="{route}",service="scoring",'
                f'status="{status}"}} 1.0') in metrics, (route, status)