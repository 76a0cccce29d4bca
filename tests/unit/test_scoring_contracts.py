"""Scoring's contracts evolve backwards-compatibly: decision.made gained `attributes` and the route
`direct`; every event recorded before still validates, and requests without attributes too."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from contracts.catalog import SCHEMA_DIR
from contracts.scoring.api import ScoreRequest
from contracts.scoring.events import DecisionMade

# A decision.made payload as scoring recorded it before either change.
RECORDED_BEFORE = {
    "decision_id": "0196a000-0000-7000-8000-000000000001", "model": "credit-default", "version": 1,
    "route": "canary", "entity_id": "applicant-42", "inputs": {"income": 1000.0, "purpose": "car"},
    "score": 0.71, "decision": "decline",
    "reason_codes": [{"feature": "income", "value": 1000.0, "impact": 0.5}],
    "trace_id": None, "latency_ms": 1.2,
}


def test_a_decision_recorded_before_attributes_still_validates_with_none():
    decision = DecisionMade.model_validate(RECORDED_BEFORE)
    assert decision.attributes == {} and decision.route == "canary"


def test_the_schema_only_adds_an_optional_field_and_a_route():
    schema = json.loads((SCHEMA_DIR / f"{DecisionMade.event_type}.json").read_text())
    data = schema["$defs"]["DecisionMade"]
    # check: attributes is optional, string to string; the routes are the old ones plus direct
    assert "attributes" in data["properties"] and "attributes" not in data["required"]
    assert data["properties"]["attributes"]["additionalProperties"] == {"type": "string"}
    assert set(data["required"]) == set(RECORDED_BEFORE)
    assert data["properties"]["route"]["enum"] == ["champion", "canary", "direct"]


def test_a_request_without_attributes_is_as_before_and_attribute_values_are_short_strings():
    assert ScoreRequest(entity_id="a", features={"x": 1}).attributes == {}
    tagged = ScoreRequest(entity_id="a", features={}, attributes={"sex": "female"})
    assert tagged.attributes == {"sex": "female"}
    for bad in ({"sex": 1}, {"sex": ""}, {"sex": "x" * 65}, {"": "x"}):
        with pytest.raises(ValidationError):
            ScoreRequest(entity_id="a", features={}, attributes=bad)
