"""The registry over HTTP, on SQLite and PostgreSQL, publishing through a real NATS JetStream.

Every bad request answers 4xx problem+json with a detail saying what to fix, and writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import nats
import pytest
from fastapi.testclient import TestClient
from nats.js.errors import NotFoundError
from sqlalchemy import select

from contracts.envelope import parse_event
from services.registry import store
from services.registry.app import create_app
from services.runtime.bus import MSG_ID
from tests.conftest import bearer
from tests.registry_helpers import (
    approve,
    create_model,
    malicious_pickle,
    metadata,
    model_body,
    move,
    pickle_bytes,
    reference_profile,
    register,
    skops_bytes,
)

LIMIT = 64 * 1024
EVENT = "modelgov.registry."


@pytest.fixture
def client(db_url, nats_server, settings_factory):
    settings = settings_factory(nats_server.url, registry_database_url=db_url, max_artifact_bytes=LIMIT)
    with TestClient(create_app(settings)) as client:
        yield client


def outbox(client) -> list:
    """The events the service committed, oldest first."""
    with client.app.state.runtime.engine.connect() as conn:
        rows = conn.execute(select(store.outbox).order_by(store.outbox.c.id)).all()
    return [(row, parse_event(row.payload)) for row in rows]


def outbox_types(client) -> list[str]:
    return [event.type.removeprefix(EVENT) for _, event in outbox(client)]


def stored_artifacts(client) -> list:
    root = client.app.state.settings.artifacts / "sha256"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def leftover_uploads(client) -> list:
    tmp = client.app.state.settings.artifacts / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


def assert_problem(response, status: int, detail: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert detail in body["detail"], body["detail"]
    return body


async def read_governance(url: str, count: int, timeout: float = 10) -> list:
    """Wait until stream GOVERNANCE holds `count` messages, then read them in order."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if (await js.stream_info("GOVERNANCE")).state.messages >= count:
                        break
                except NotFoundError:
                    pass  # the service has not created the stream yet
                await asyncio.sleep(0.05)
        return [await js.get_msg("GOVERNANCE", seq) for seq in range(1, count + 1)]
    finally:
        await nc.close()


def test_the_life_of_a_model_from_creation_to_champion(client, nats_server):
    # arrange: a model, and two versions of it (a pickle, then a skops file)
    created = create_model(client)
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "user:local-data_scientist"
    first = register(client, artifact=pickle_bytes())
    second = register(client, artifact=skops_bytes(), role="service")
    assert (first.status_code, second.status_code) == (201, 201), first.text + second.text
    assert first.json() == {"version": 1, "artifact_sha256": hashlib.sha256(pickle_bytes()).hexdigest(),
                            "status": "registered"}
    assert second.json()["version"] == 2

    # act: review version 1 and make it champion; version 2 becomes challenger, then is withdrawn
    approve(client, 1)
    deployed = move(client, 1, "deployed", "service", comment="rollout-credit-default-v1")
    champion = client.put("/v1/models/credit-default/aliases/champion",
                          json={"version": 1, "evidence": "review-credit-default-v1"},
                          headers=bearer("service"))
    challenger = client.put("/v1/models/credit-default/aliases/challenger",
                            json={"version": 2, "reason": "manual canary"}, headers=bearer("admin"))
    removed = client.delete("/v1/models/credit-default/aliases/challenger", headers=bearer("service"))

    # check the state reads back
    assert deployed.json()["status"] == "deployed"
    assert champion.json() == {"name": "credit-default", "alias": "champion", "version": 1}
    assert (challenger.status_code, removed.status_code) == (200, 204)
    model = client.get("/v1/models/credit-default", headers=bearer("regulator")).json()
    assert (model["latest_version"], model["aliases"]) == (2, {"champion": 1})
    versions = client.get("/v1/models/credit-default/versions", headers=bearer("model_risk")).json()
    assert [(v["version"], v["status"], v["artifact_format"], v["aliases"]) for v in versions] == [
        (1, "deployed", "pickle", ["champion"]), (2, "registered", "skops", [])]
    assert client.get("/v1/models/credit-default/aliases/champion", headers=bearer("operator")).json()[
        "version"] == 1
    assert [m["name"] for m in client.get("/v1/models", headers=bearer("compliance")).json()] == [
        "credit-default"]

    # check the artifact comes back byte for byte, with its digest
    artifact = client.get("/v1/models/credit-default/versions/2/artifact", headers=bearer("operator"))
    digest = hashlib.sha256(skops_bytes()).digest()
    assert artifact.content == skops_bytes()
    assert artifact.headers["etag"] == f'"sha256:{digest.hex()}"'
    assert artifact.headers["digest"] == f"sha-256={base64.b64encode(digest).decode()}"
    assert 'filename="credit-default-v2.skops"' in artifact.headers["content-disposition"]

    # check the model card tells a reviewer what matters, in markdown and HTML
    card = client.get("/v1/models/credit-default/versions/1/card", headers=bearer("regulator"))
    assert card.headers["content-type"].startswith("text/markdown")
    for fact in ("# Model card: credit-default version 1", "| risk tier | high |", "| rows | 200 |",
                 "| income | float |", "| auc | 0.91 |", "demographic_parity_difference",
                 "| review from score | 0.4 |", "| approved |", "meets policy", "| aliases | champion |",
                 "| reference profile | 200 rows; 3 numeric and 0 categorical features |"):
        assert fact in card.text, fact
    html = client.get("/v1/models/credit-default/versions/1/card?format=html", headers=bearer("regulator"))
    assert html.headers["content-type"].startswith("text/html")
    assert "<h2>Lifecycle history</h2>" in html.text and "user:local-model_risk" in html.text

    # check each change wrote exactly one event, of the right type, about the right subject
    events = outbox(client)
    assert [e.type.removeprefix(EVENT) for _, e in events] == [
        "model.created.v1", "model_version.registered.v1", "model_version.registered.v1",
        "model_version.validated.v1", "model_version.approved.v1", "model_version.deployed.v1",
        "model_alias.set.v1", "model_alias.set.v1", "model_alias.removed.v1"]
    assert [e.subject for _, e in events][::3] == [
        "model/credit-default", "model/credit-default/version/1", "model/credit-default/alias/champion"]
    assert [e.actor for _, e in events][4:8] == [
        "user:local-model_risk", "service:local-service", "service:local-service", "user:local-admin"]
    assert events[4][1].data["from_status"] == "validated"
    assert events[7][1].data == {"name": "credit-default", "alias": "challenger", "version": 2,
                                 "previous_version": None, "evidence": None, "reason": "manual canary"}

    # check the relay published them all to GOVERNANCE, once each, as the bytes committed
    messages = asyncio.run(read_governance(nats_server.url, len(events)))
    assert [(m.headers[MSG_ID], m.data, m.subject) for m in messages] == [
        (row.event_id, row.payload, row.subject) for row, _ in events]
    assert messages[1].subject == "gov.registry.model_version.registered"


def test_the_callers_correlation_id_travels_on_the_event(client):
    create_model(client)
    registered = client.post(
        "/v1/models/credit-default/versions",
        files={"artifact": ("m.pkl", pickle_bytes()), "metadata": (None, json.dumps(metadata()))},
        headers={**bearer("service"), "X-Correlation-Id": "retrain-credit-default-42"},
    )
    assert registered.status_code == 201
    assert outbox(client)[-1][1].correlationid == "retrain-credit-default-42"


# -- bad requests -----------------------------------------------------------------------------


def test_malformed_json_is_refused(client):
    response = client.post("/v1/models", content=b'{"name": "credit-default",',
                           headers={**bearer("data_scientist"), "content-type": "application/json"})
    assert_problem(response, 422, "the request body is not valid JSON")
    assert outbox_types(client) == []


def test_an_invalid_model_is_refused_field_by_field(client):
    response = client.post("/v1/models", json={"name": "Credit Default", "owner": "x", "use_case": "loans",
                                               "risk_tier": "high"}, headers=bearer("data_scientist"))
    body = assert_problem(response, 422, "name: String should match pattern")
    assert "use_case: Input should be 'credit', 'fraud' or 'other'" in body["detail"]


def test_an_unknown_model_is_a_404_that_says_how_to_create_it(client):
    expected = "model 'nope' does not exist; create it with POST /v1/models"
    assert_problem(client.get("/v1/models/nope", headers=bearer("regulator")), 404, expected)
    assert_problem(register(client, "nope"), 404, expected)
    assert_problem(client.get("/v1/models/nope/versions", headers=bearer("regulator")), 404, expected)
    assert stored_artifacts(client) == []


def test_an_unknown_version_is_a_404(client):
    create_model(client)
    for path in ("", "/artifact", "/card"):
        response = client.get(f"/v1/models/credit-default/versions/7{path}", headers=bearer("operator"))
        assert_problem(response, 404, "version 7 of model 'credit-default' does not exist")
    assert_problem(move(client, 7, "validated", "data_scientist"), 404, "version 7 of model 'credit-default'")


def test_a_name_or_version_no_model_can_have_is_a_422_naming_it(client):
    # Fuzzing found both answered 500: a version past the stores' 32-bit integer overflowed the
    # database driver. The routes now bound them as the registration does.
    create_model(client)
    too_big = "path.version: Input should be less than or equal to 2147483647"
    for path in ("", "/artifact", "/card"):
        response = client.get(f"/v1/models/credit-default/versions/{2**63}{path}", headers=bearer("operator"))
        assert_problem(response, 422, too_big)
    assert_problem(move(client, 2**31, "validated", "data_scientist"), 422, too_big)
    alias = client.put("/v1/models/credit-default/aliases/champion", json={"version": 2**31},
                       headers=bearer("service"))
    assert_problem(alias, 422, "version: Input should be less than or equal to 2147483647")
    for name in ("Credit_Default", "%10"):
        response = client.get(f"/v1/models/{name}/versions", headers=bearer("operator"))
        assert_problem(response, 422, "path.name: String should match pattern")


def test_text_the_database_cannot_store_is_a_422_and_keeps_nothing(client, db_url):
    # PostgreSQL's text holds no NUL character (SQLite's does): that was a 500 there.
    body = {**model_body("nul-in-text"), "description": "credit\u0000default"}
    response = client.post("/v1/models", json=body, headers=bearer("data_scientist"))
    if not db_url.startswith("postgresql"):
        assert response.status_code == 201, response.text
        return
    assert_problem(response, 422, "contains the NUL character (U+0000)")
    assert client.get("/v1/models/nul-in-text", headers=bearer("operator")).status_code == 404


def test_a_duplicate_model_name_is_a_conflict(client):
    create_model(client)
    assert_problem(create_model(client), 409, "model 'credit-default' already exists")
    assert outbox_types(client) == ["model.created.v1"]


def test_a_version_without_its_artifact_is_refused(client):
    create_model(client)
    response = client.post("/v1/models/credit-default/versions",
                           files={"metadata": (None, json.dumps(metadata()))},
                           headers=bearer("data_scientist"))
    assert_problem(response, 422, "multipart part 'artifact' is missing")
    assert_problem(register(client, artifact=b""), 422, "multipart part 'artifact' is empty")
    response = client.post("/v1/models/credit-default/versions", json=metadata(), headers=bearer("service"))
    assert_problem(response, 415, "send multipart/form-data")
    assert outbox_types(client) == ["model.created.v1"]


@pytest.mark.parametrize(("body", "status", "detail"), [
    (b"not multipart at all", 400, "the multipart body is malformed"),
    (b'--XX\r\nContent-Disposition: form-data; name="artifact"\r\n\r\nabc', 400,
     "the multipart body ended before its closing boundary"),
    (b'--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\nabc\r\n--XX--\r\n', 422,
     "unexpected multipart part 'model'; send a file part 'artifact' and a JSON part 'metadata'"),
])
def test_a_malformed_multipart_body_is_refused(client, body, status, detail):
    create_model(client)
    response = client.post("/v1/models/credit-default/versions", content=body,
                           headers={**bearer("service"), "content-type": "multipart/form-data; boundary=XX"})
    assert_problem(response, status, detail)
    assert leftover_uploads(client) == []


def test_an_artifact_over_the_size_limit_is_refused(client):
    create_model(client)
    # act: one upload passes the Content-Length check and is cut off while streaming, one is not read
    streamed = register(client, artifact=b"\x80\x04" + b"\x00" * LIMIT)
    declared = register(client, artifact=b"\x80\x04" + b"\x00" * (LIMIT + 5 * 1024 * 1024))
    assert_problem(streamed, 413, f"the artifact is larger than the limit of {LIMIT} bytes (max_artifact")
    assert_problem(declared, 413, f"exceeds the artifact limit of {LIMIT} bytes")
    # check nothing was kept, not even a temp file
    assert stored_artifacts(client) == []
    assert leftover_uploads(client) == []


def test_metadata_too_large_for_its_event_is_refused_before_anything_is_kept(client):
    create_model(client)
    # act: 600 kB of params, more than one registered event may carry
    response = register(client, meta=metadata(params={"notes": "x" * 600_000}))
    # check: a 413 that says what to shrink; no version, no event, no artifact
    body = assert_problem(response, 413, "bytes as canonical JSON; the limit is 524,288")
    assert "MODELGOV_MAX_METADATA_BYTES" in body["detail"] and "sample_size" in body["detail"]
    assert client.get("/v1/models/credit-default/versions", headers=bearer("regulator")).json() == []
    assert outbox_types(client) == ["model.created.v1"]
    assert stored_artifacts(client) == []


@pytest.mark.parametrize(("meta", "detail"), [
    (metadata(feature_schema=[{"name": "income", "dtype": "decimal"}]),
     "metadata.feature_schema.0.dtype: Input should be 'float', 'int', 'string' or 'bool'"),
    (metadata(training_data={"fingerprint": "md5:abc", "rows": 0}),
     "metadata.training_data.fingerprint: String should match pattern"),
    ({"feature_schema": [{"name": "x", "dtype": "float"}]}, "metadata.training_data: Field required"),
    (metadata(training_data={"fingerprint": "sha256:" + "ab" * 32, "rows": 200,
                             "profile": {"positive_rate": 0.48}}),
     "metadata.training_data.profile.rows: Field required"),
    ('{"feature_schema": [', "multipart part 'metadata' is not valid JSON"),
    # numbers its event could not carry exactly (RFC 8785): found by fuzzing as 500s
    (metadata(params={"seed": 2**60}), "metadata: a number in the request cannot be recorded exactly"),
    (metadata(training_data={"fingerprint": "sha256:" + "ab" * 32, "rows": 2**60,
                             "profile": reference_profile()}),
     "metadata: a number in the request cannot be recorded exactly"),
])
def test_metadata_that_does_not_match_its_schema_is_refused(client, meta, detail):
    create_model(client)
    assert_problem(register(client, meta=meta), 422, detail)
    assert stored_artifacts(client) == []
    assert outbox_types(client) == ["model.created.v1"]


def test_the_reference_profile_is_validated_at_registration_and_read_back_as_sent(client):
    create_model(client)
    profile = reference_profile()
    broken = {**profile, "features": {**profile["features"], "income": {
        **profile["features"]["income"], "proportions": profile["features"]["income"]["proportions"][1:]}}}
    # act
    refused = register(client, meta=metadata(training_data={"fingerprint": "sha256:" + "ab" * 32, "rows": 200,
                                                            "profile": broken}))
    accepted = register(client)
    # check: the monitoring contract's own message, and the profile comes back unchanged
    assert_problem(refused, 422, "metadata.training_data.profile.features.income.numeric: Value error, "
                                 "proportions needs len(edges) + 1 = 10 entries, not 9")
    assert accepted.status_code == 201
    version = client.get("/v1/models/credit-default/versions/1", headers=bearer("model_risk")).json()
    assert version["metadata"]["training_data"]["profile"] == profile


def test_a_pickle_that_calls_os_system_is_refused_and_not_kept(client):
    create_model(client)
    body = assert_problem(register(client, artifact=malicious_pickle()), 422,
                          "artifact refused: pickle references untrusted global posix.system")
    assert body["title"] == "Artifact refused"
    assert (stored_artifacts(client), leftover_uploads(client)) == ([], [])
    assert client.get("/v1/models/credit-default", headers=bearer("admin")).json()["latest_version"] is None


def test_lifecycle_rules_answer_409_and_403(client):
    create_model(client)
    register(client)
    # check: skipping validation, approving one's own role-less way, champion on an unapproved version
    assert_problem(move(client, 1, "approved", "model_risk"), 409,
                   "version 1 of model 'credit-default' is registered and cannot become approved")
    assert_problem(move(client, 1, "validated", "operator"), 403,
                   "moving a version to validated needs one of the roles: data_scientist, service")
    response = client.put("/v1/models/credit-default/aliases/champion",
                          json={"version": 1, "evidence": "wf"}, headers=bearer("service"))
    assert_problem(response, 409, "'champion' must point at an approved or deployed version")
    response = client.put("/v1/models/credit-default/aliases/champion", json={"version": 1},
                          headers=bearer("admin"))
    assert_problem(response, 422, "a break-glass alias change needs a 'reason'")
    response = client.put("/v1/models/credit-default/aliases/Champion!",
                          json={"version": 1, "evidence": "wf"}, headers=bearer("service"))
    assert_problem(response, 422, "alias 'Champion!' is not valid")
    response = client.get("/v1/models/credit-default/aliases/Champion!", headers=bearer("regulator"))
    assert_problem(response, 422, "alias 'Champion!' is not valid: use a lowercase letter")
    assert_problem(client.delete("/v1/models/credit-default/aliases/champion", headers=bearer("service")),
                   404, "alias 'champion' is not set on model 'credit-default'")
    assert outbox_types(client) == ["model.created.v1", "model_version.registered.v1"]


# -- who may do what --------------------------------------------------------------------------


def test_a_regulator_reads_but_never_writes(client):
    create_model(client)
    register(client)
    assert client.get("/v1/models/credit-default/versions/1", headers=bearer("regulator")).status_code == 200
    for response in (
        create_model(client, "another-model", role="regulator"),
        register(client, role="regulator"),
        move(client, 1, "validated", "regulator"),
        client.put("/v1/models/credit-default/aliases/champion", json={"version": 1, "reason": "r"},
                   headers=bearer("regulator")),
        client.delete("/v1/models/credit-default/aliases/champion", headers=bearer("regulator")),
    ):
        assert_problem(response, 403, "this action needs one of the roles")


def test_a_scoring_client_cannot_touch_the_registry(client):
    create_model(client)
    assert_problem(register(client, role="scoring_client"), 403, "this action needs one of the roles")
    for path in ("/v1/models", "/v1/models/credit-default", "/v1/models/credit-default/versions"):
        assert_problem(client.get(path, headers=bearer("scoring_client")), 403, "needs one of the roles")


def test_without_a_token_the_answer_is_401(client):
    response = client.get("/v1/models")
    assert_problem(response, 401, "send 'Authorization: Bearer <token>'")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(client.post("/v1/models/credit-default/versions"), 401, "Bearer")
