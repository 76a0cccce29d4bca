"""Open Inference Protocol v2 against the real scoring service on a real port, driven by a stock
client (`tritonclient.http`, unchanged): its rows take the /v1 decision path, so every row is one
decision.made event and the scores equal /v1/score's for the same rows and entity ids."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import bearer
from tests.integration.test_scoring_api import MODEL, decisions, stack_settings
from tests.registry_helpers import move, register
from tests.scoring_helpers import (
    RISKY,
    SAFE,
    SCHEMA,
    applicant,
    deploy,
    register_versions,
    scoring_stack,
    skops_of,
    version_metadata,
)
from tests.waiting import wait_for

NUMPY = {"float": np.float64, "int": np.int64, "string": np.object_}
DATATYPES = {"float": "FP64", "int": "INT64", "string": "BYTES"}


@pytest.fixture
def v2_stack(nats_server, settings_factory, make_db_url):
    """Versions 1 and 2 approved, 1 the champion; scoring on a real port; a tritonclient on it;
    yields (registry, scoring, client). A replica's view of a version's registry record is at
    most the deployment TTL old: 0.1 s here."""
    settings = stack_settings("sqlite", nats_server, settings_factory, make_db_url).model_copy(
        update={"scoring_deployment_ttl_seconds": 0.1})
    with scoring_stack(settings, live=True) as (registry, scoring):
        assert register_versions(registry) == [1, 2]
        assert deploy(scoring, {"champion": 1}).status_code == 200
        client = triton.InferenceServerClient(str(scoring.base_url).removeprefix("http://").rstrip("/"))
        try:
            yield registry, scoring, client
        finally:
            client.close()


@pytest.fixture
def v2(v2_stack):
    _, scoring, client = v2_stack
    return scoring, client


def tensors(rows: list[dict], binary: bool) -> list[triton.InferInput]:
    """One InferInput per feature of the schema, shape [N], as a tritonclient user builds them."""
    inputs = []
    for spec in SCHEMA:
        column = np.array([row[spec["name"]] for row in rows], dtype=NUMPY[spec["dtype"]])
        tensor = triton.InferInput(spec["name"], [len(rows)], DATATYPES[spec["dtype"]])
        tensor.set_data_from_numpy(column, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_a_stock_triton_client_scores_through_the_same_decision_path_as_v1(nats_server, v2, binary):
    scoring, client = v2
    auth = bearer("scoring_client")
    rows = [RISKY, SAFE] + [applicant(i) for i in range(10)]
    ids = [f"oip-{i}" for i in range(len(rows))]
    # check: health, server and model metadata as the client reads them
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready(MODEL, headers=auth)
    meta = client.get_model_metadata(MODEL, headers=auth)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == \
        [(s["name"], DATATYPES[s["dtype"]], [-1]) for s in SCHEMA]
    assert {(o["name"], o["datatype"]) for o in meta["outputs"]} >= {("score", "FP64"), ("decision", "BYTES")}
    # act: one infer request of 12 rows, entity ids as a parameter
    # (tritonclient adds its own headers to the dict it is given: hand it a copy)
    result = client.infer(MODEL, tensors(rows, binary), headers=dict(auth), parameters={"entity_ids": ids},
                          outputs=[triton.InferRequestedOutput("score", binary_data=binary),
                                   triton.InferRequestedOutput("decision", binary_data=binary)])
    # check: the same answers /v1/score/batch gives for the same rows and entity ids (a batch: row by
    # row, the matrix arithmetic may differ in the last bits)
    items = [{"entity_id": e, "features": f} for e, f in zip(ids, rows, strict=True)]
    v1 = scoring.post(f"/v1/score/{MODEL}/batch", json={"items": items}, headers=auth).json()["items"]
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert result.as_numpy("score").tolist() == [b["score"] for b in v1]
    assert [d.decode() if binary else d for d in result.as_numpy("decision").tolist()] == \
        [b["decision"] for b in v1]
    # check: the stream holds one decision.made per row (and per v1 call), named by decision_id
    v2_ids = [d.decode() if isinstance(d, bytes) else d for d in result.as_numpy("decision_id").tolist()]
    events = {e["id"]: e["data"] for e in decisions(nats_server.url)}
    assert set(events) == set(v2_ids) | {b["decision_id"] for b in v1} and len(events) == 2 * len(rows)
    for decision_id, entity, features, answer in zip(v2_ids, ids, rows, v1, strict=True):
        data = events[decision_id]
        assert data["entity_id"] == entity and data["inputs"] == features
        assert data["score"] == answer["score"] and data["reason_codes"] == answer["reason_codes"]


def test_v2_errors_are_the_protocols_error_objects_naming_what_to_fix(nats_server, v2):
    scoring, client = v2
    auth = bearer("scoring_client")
    rows = [applicant(1), {**applicant(2), "age": 5}]
    # unknown model: 404, through the client
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", tensors(rows, True), headers=dict(auth))
    assert unknown.value.status() == "404" and "does not exist" in unknown.value.message()
    # an out-of-range value and a missing feature: 400 naming the input and the row
    with pytest.raises(InferenceServerException) as bad:
        client.infer(MODEL, tensors(rows, True), headers=dict(auth))
    assert bad.value.status() == "400" and "input 'age' = 5 is below the schema minimum 18.0 (row 1)" in \
        bad.value.message()
    missing = tensors(rows, False)[:-1]
    with pytest.raises(InferenceServerException) as absent:
        client.infer(MODEL, missing, headers=dict(auth))
    assert "input 'purpose' is missing (rows 0, 1)" in absent.value.message()

    def post(body, **headers):
        return scoring.post(f"/v2/models/{MODEL}/infer", content=json.dumps(body),
                            headers={**auth, "content-type": "application/json", **headers})

    one = {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}
    short = {**one, "name": "age", "shape": [1], "data": [3]}
    binary = {**one, "data": None, "parameters": {"binary_data_size": 16}}
    cases = {
        "shape [3] but 2 values": post({"inputs": [{**one, "shape": [3]}]}),
        "different numbers of rows": post({"inputs": [one, short]}),
        "inputs: List should have at least 1 item": post({"inputs": []}),
        "a list of 2 strings": post({"inputs": [one], "parameters": {"entity_ids": ["a"]}}),
        "unknown output(s) proba": post({"inputs": [one], "outputs": [{"name": "proba"}]}),
        "binary_data_size 16": post({"inputs": [binary]}),
    }
    for words, response in cases.items():
        assert response.status_code == 400, (words, response.text)
        assert response.headers["content-type"] == "application/json" and words in response.json()["error"]
    # a name no model can have, a version past any store's (fuzzing found the name answered 500)
    for path in ("/v2/models/%10", "/v2/models/Credit_Default/ready", f"/v2/models/{MODEL}/versions/{2**31}"):
        odd = scoring.get(path, headers=auth)
        assert odd.status_code == 400 and odd.json()["error"].startswith("path."), (path, odd.text)
    odd = scoring.post("/v2/models/%1d/infer", json={"inputs": [one]}, headers=auth)
    assert odd.status_code == 400 and "path.model: String should match" in odd.json()["error"]
    # no token, a steering role without scoring: the same shape
    anonymous = httpx.post(f"{scoring.base_url}/v2/models/{MODEL}/infer", json={"inputs": [one]})
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]
    # check: none of those decided anything
    assert decisions(nats_server.url) == []


def test_one_matrix_of_rows_as_mlservers_clients_send_it_decides_as_v1(nats_server, v2):
    """MLServer's and KServe's scikit-learn servers take one [N, F] tensor (`input-0`): the same
    body works here, its columns the deciding version's features in schema order."""
    scoring, _ = v2
    auth = bearer("scoring_client")
    rows = [RISKY, SAFE] + [applicant(i) for i in range(6)]
    ids = [f"matrix-{i}" for i in range(len(rows))]
    names = [s["name"] for s in SCHEMA]
    matrix = {"name": "input-0", "shape": [len(rows), len(names)], "datatype": "BYTES",
              "data": [[row[n] for n in names] for row in rows]}

    def post(path, body):
        return scoring.post(path, content=json.dumps(body),
                            headers={**auth, "content-type": "application/json"})

    # act: the champion's rows, and the same rows pinned to version 2
    answer = post(f"/v2/models/{MODEL}/infer", {"inputs": [matrix], "parameters": {"entity_ids": ids}})
    pinned = post(f"/v2/models/{MODEL}/versions/2/infer", {"inputs": [matrix]})
    # check: /v1's answers for the same rows and entity ids, one decision.made per row
    assert answer.status_code == 200, answer.text
    items = [{"entity_id": e, "features": f} for e, f in zip(ids, rows, strict=True)]
    v1 = scoring.post(f"/v1/score/{MODEL}/batch", json={"items": items}, headers=auth).json()["items"]
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["score"] == [b["score"] for b in v1] and outputs["decision"] == [b["decision"] for b in v1]
    events = {e["id"]: e["data"] for e in decisions(nats_server.url)}
    assert [events[d]["inputs"] for d in outputs["decision_id"]] == rows
    assert pinned.status_code == 200, pinned.text
    assert {o["name"]: o["data"] for o in pinned.json()["outputs"]}["model_version"] == [2] * len(rows)
    # check: a matrix of the wrong width names the columns expected; an unknown model is a 404
    wide = post(f"/v2/models/{MODEL}/infer",
                {"inputs": [{**matrix, "shape": [len(rows) // 2, 2 * len(names)]}]})
    assert wide.status_code == 400 and "[N, 4]" in wide.json()["error"] and \
        "income, debt_ratio, age, purpose in that order" in wide.json()["error"]
    assert post("/v2/models/no-such-model/infer", {"inputs": [matrix]}).status_code == 404


def test_v2_readiness_and_metadata_follow_the_deployment(nats_server, v2):
    scoring, _ = v2
    auth = bearer("regulator")
    # a canary is a deciding version too
    assert deploy(scoring, {"champion": 1, "canary": {"version": 2, "percent": 50}}).status_code == 200
    assert scoring.get(f"/v2/models/{MODEL}", headers=auth).json()["versions"] == ["1", "2"]
    assert scoring.get(f"/v2/models/{MODEL}/ready", headers=auth).json() == {"name": MODEL, "ready": True}
    # a model that does not exist: 404 with the error object
    gone = scoring.get("/v2/models/nope/ready", headers=auth)
    assert gone.status_code == 404 and "does not exist" in gone.json()["error"]
    assert scoring.get("/v2/health/live").json() == {"live": True}
    assert scoring.get("/v2/health/ready").json() == {"ready": True}


def test_a_triton_client_names_the_version_with_model_version_and_it_decides_directly(nats_server, v2):
    scoring, client = v2
    auth = bearer("scoring_client")
    rows = [RISKY, SAFE] + [applicant(i) for i in range(4)]
    ids = [f"pin-{i}" for i in range(len(rows))]
    # version 2 shadows the champion: a pinned request is not the deployment's traffic
    assert deploy(scoring, {"champion": 1, "shadow": [2]}).status_code == 200
    # check: metadata and readiness of version 2 as the client asks for them
    meta = client.get_model_metadata(MODEL, model_version="2", headers=dict(auth))
    assert meta["name"] == MODEL and meta["versions"] == ["2"]
    assert [i["name"] for i in meta["inputs"]] == [s["name"] for s in SCHEMA]
    assert wait_for(lambda: client.is_model_ready(MODEL, model_version="2", headers=dict(auth)))
    # act: the same rows pinned to version 1 and to version 2, and through the deployment
    outputs = [triton.InferRequestedOutput("score"), triton.InferRequestedOutput("model_version")]

    def infer(version: str):
        result = client.infer(MODEL, tensors(rows, True), model_version=version, headers=dict(auth),
                              parameters={"entity_ids": ids}, outputs=outputs)
        return result.get_response()["model_version"], result.as_numpy("score").tolist()

    routed, pinned_1, pinned_2 = infer(""), infer("1"), infer("2")
    # check: each answer is from the version named; version 1 pinned answers as the champion does
    assert routed[0] == pinned_1[0] == "1" and pinned_2[0] == "2"
    assert pinned_1[1] == routed[1] and pinned_2[1] != routed[1]
    # check: one decision.made per row, route "direct" and the pinned version for the pinned ones
    events = wait_for(lambda: (e := decisions(nats_server.url)) and len(e) == 3 * len(rows) and e)
    by_route = {}
    for e in events:
        by_route.setdefault((e["data"]["route"], e["data"]["version"]), []).append(e["data"]["entity_id"])
    assert {k: sorted(v) for k, v in by_route.items()} == {
        ("champion", 1): sorted(ids), ("direct", 1): sorted(ids), ("direct", 2): sorted(ids)}
    # check: shadow predictions only for the routed rows
    shadows = wait_for(lambda: decisions(nats_server.url, "shadow_prediction_made"))
    routed_ids = {e["id"] for e in events if e["data"]["route"] == "champion"}
    assert {s["data"]["decision_id"] for s in shadows} <= routed_ids


def test_a_named_version_decides_only_if_it_exists_and_is_neither_rejected_nor_retired(nats_server, v2_stack):
    registry, scoring, client = v2_stack
    auth = bearer("scoring_client")
    rows = [applicant(1)]
    # a registered, not yet approved version may be named (a candidate under test)
    candidate = register(registry, MODEL, artifact=skops_of("boosted"), meta=version_metadata("boosted"))
    assert candidate.status_code == 201 and candidate.json()["version"] == 3
    # readiness: not loaded yet, and asking loads it
    assert not client.is_model_ready(MODEL, model_version="3", headers=dict(auth))
    wait_for(lambda: client.is_model_ready(MODEL, model_version="3", headers=dict(auth)))
    result = client.infer(MODEL, tensors(rows, False), model_version="3", headers=dict(auth))
    assert result.get_response()["model_version"] == "3"
    # a version that does not exist: 404 naming it; nor does the model
    for model, version, words in ((MODEL, "9", "version 9 of model 'credit-default' does not exist"),
                                  ("nope", "1", "model 'nope' does not exist")):
        with pytest.raises(InferenceServerException) as missing:
            client.infer(model, tensors(rows, False), model_version=version, headers=dict(auth))
        assert missing.value.status() == "404" and words in missing.value.message()
    # a rejected version: 409
    rejected = register(registry, MODEL, artifact=skops_of("linear"), meta=version_metadata("linear"))
    assert rejected.json()["version"] == 4
    assert move(registry, 4, "validated", "data_scientist").status_code == 200
    assert move(registry, 4, "rejected", "model_risk", comment="fails policy").status_code == 200
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, tensors(rows, False), model_version="4", headers=dict(auth))
    assert refused.value.status() == "409" and "version 4 of model 'credit-default' is rejected" in \
        refused.value.message()
    # a retired version: 409, not ready, and its metadata still readable
    assert move(registry, 2, "retired", "operator").status_code == 200
    time.sleep(0.2)  # the replica's record of version 2 is at most the deployment TTL (0.1 s) old
    with pytest.raises(InferenceServerException) as retired:
        client.infer(MODEL, tensors(rows, False), model_version="2", headers=dict(auth))
    assert retired.value.status() == "409" and "version 2 of model 'credit-default' is retired" in \
        retired.value.message()
    assert not client.is_model_ready(MODEL, model_version="2", headers=dict(auth))
    ready = scoring.get(f"/v2/models/{MODEL}/versions/2/ready", headers=auth)
    assert ready.status_code == 400 and "is retired" in ready.json()["error"]
    assert client.get_model_metadata(MODEL, model_version="2", headers=dict(auth))["versions"] == ["2"]
    # not a version number: 400 naming the path parameter
    bad = scoring.get(f"/v2/models/{MODEL}/versions/latest", headers=auth)
    assert bad.status_code == 400 and "version" in bad.json()["error"]
    # check: only the candidate's row was decided, directly
    events = decisions(nats_server.url)
    assert [(e["data"]["route"], e["data"]["version"]) for e in events] == [("direct", 3)]
