"""Contracts: schemas checked in, canonical bytes, subjects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from pydantic import ValidationError

from contracts import catalog
from contracts.envelope import parse_envelope, parse_event
from contracts.streams import stream_for, subject_for
from tests.factories import model_created

SERVICES = {"registry", "scoring", "monitoring", "audit"}


def test_checked_in_schemas_match_the_models():
    # `make schemas` regenerates them; a difference means a contract changed without its schema
    assert catalog.write("check") == []


def test_every_event_type_is_named_by_the_convention_and_has_a_schema():
    for event_type in catalog.EVENT_TYPES:
        prefix, service, *_ = event_type.split(".")
        assert prefix == "modelgov" and service in SERVICES and event_type[-3:-1] == ".v"
        schema = json.loads((catalog.SCHEMA_DIR / f"{event_type}.json").read_text())
        assert schema["properties"]["type"]["const"] == event_type


def test_canonical_bytes_are_rfc8785_and_survive_a_round_trip():
    event = model_created(correlationid="req-1")
    raw = event.canonical_bytes()
    assert raw == rfc8785.dumps(json.loads(raw))
    assert parse_event(raw) == event
    # check: absent optional extensions are left out, not sent as null
    assert b"causationid" not in raw and b'"correlationid":"req-1"' in raw


@pytest.mark.parametrize("data", [
    {"inputs": {"a": 0.5, "b": 2.0, "c": None, "d": "x"}, "nested": [{"k": None}], "big": 2**40},
    {"when": datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "raw": b"bytes", "n": float("nan")},
    {},
])
@pytest.mark.parametrize("micro", [0, 1, 123456])
def test_canonical_bytes_are_those_of_the_full_model_dump(data, micro):
    # canonical_bytes builds the envelope itself where data is already JSON; the bytes must be
    # the ones model_dump's output gives, extensions, times and data of any kind alike
    from contracts import canonical
    from contracts.envelope import AnyEvent

    traced = {"correlationid": "c", "causationid": "d", "traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
    for extensions in ({}, traced):
        event = AnyEvent(id="e1", source="modelgov/scoring", type="modelgov.scoring.decision.made.v1",
                         subject="decision/e1", time=datetime(2026, 11, 24, 21, 0, 0, micro, tzinfo=UTC),
                         data=data, actor="service:scoring", **extensions)
        assert event.canonical_bytes() == canonical.dumps(event.model_dump(mode="json", exclude_none=True))


def test_event_ids_are_time_ordered_uuid7():
    first, second = model_created(), model_created()
    assert first.id[14] == "7" and first.id < second.id


def test_times_are_normalised_to_utc_and_must_carry_a_zone():
    event = model_created()
    local = json.loads(event.canonical_bytes())
    local["time"] = (datetime.now(UTC).astimezone(timezone(timedelta(hours=2)))).isoformat()
    assert parse_event(json.dumps(local).encode()).time.tzinfo == UTC
    local["time"] = "2026-01-01T00:00:00"
    with pytest.raises(ValidationError, match="timezone"):
        parse_event(json.dumps(local).encode())


def _variants(event: dict) -> list[bytes]:
    """The event and ways of breaking it, each a message a stream could hold."""
    def changed(**fields) -> bytes:
        return json.dumps({k: v for k, v in {**event, **fields}.items() if v is not ...}).encode()
    return [
        changed(), changed(data={}), changed(data={"nested": {"x": [1, None, "y"]}}),
        changed(time="2026-01-01T02:00:00+02:00"), changed(data=...), changed(data=None),
        changed(data=[]), changed(data="x"), changed(data=1), changed(time="2026-01-01T00:00:00"),
        changed(id=""), changed(surprise=1), changed(type="other"), changed(source=...),
        b"[]", b"{", b"", *(json.dumps(event).encode()[:-1] + b',"data":' + data + b"}" for data in (
            b"{}", b'{"x":"\\ud800"}', b'{"x":' + b"[" * 300 + b"]" * 300 + b"}", b'{"x":1e999}')),
    ]


def test_the_envelope_parser_judges_messages_as_the_full_parser_does():
    event = json.loads(model_created(traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01").canonical_bytes())
    for raw in _variants(event):
        try:
            full = parse_event(raw)
        except ValidationError as exc:
            with pytest.raises(ValidationError) as envelope_error:
                parse_envelope(raw)
            assert [(e["loc"], e["type"]) for e in envelope_error.value.errors()] == \
                [(e["loc"], e["type"]) for e in exc.errors()], raw
            continue
        envelope = parse_envelope(raw)
        assert envelope.data == {}, raw  # left unbuilt: what the envelope's readers never use
        assert envelope.model_dump(exclude={"data"}) == full.model_dump(exclude={"data"}), raw


@pytest.mark.parametrize("event_type,model,subject", [
    ("modelgov.registry.model_version.registered.v1", None, "gov.registry.model_version.registered"),
    ("modelgov.scoring.decision.made.v1", "credit-default", "dec.credit-default.decision_made"),
    ("modelgov.scoring.shadow_prediction.made.v1", "credit-default",
     "dec.credit-default.shadow_prediction_made"),
    ("modelgov.scoring.deployment.changed.v1", None, "gov.scoring.deployment.changed"),
])
def test_subjects_mirror_types_and_decisions_travel_apart(event_type, model, subject):
    assert subject_for(event_type, model) == subject
    assert stream_for(subject) == ("DECISIONS" if subject.startswith("dec.") else "GOVERNANCE")
