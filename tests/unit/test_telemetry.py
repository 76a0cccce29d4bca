"""Trace ids travel with every event whether spans are exported or not."""

from __future__ import annotations

import re

from opentelemetry.sdk.trace import TracerProvider

from services.runtime.telemetry import context_from, current_traceparent, sampler_for

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def tracer(exporter: str):
    return TracerProvider(sampler=sampler_for(exporter)).get_tracer("test")


def test_with_no_exporter_a_request_span_is_not_recorded_but_has_a_trace_id_events_can_carry():
    with tracer("none").start_as_current_span("POST /v1/score/{model}") as span:
        assert not span.is_recording()
        trace_id, span_id, flags = TRACEPARENT.fullmatch(current_traceparent()).groups()
    assert int(trace_id, 16) and int(span_id, 16) and int(flags, 16) & 1 == 0  # valid, unsampled


def test_with_no_exporter_a_callers_sampled_trace_is_still_recorded_and_continued():
    with tracer("none").start_as_current_span("child", context=context_from(CALLER)) as span:
        assert span.is_recording()
        trace_id, _, flags = TRACEPARENT.fullmatch(current_traceparent()).groups()
    assert trace_id == CALLER.split("-")[1] and int(flags, 16) & 1 == 1


def test_with_an_exporter_every_span_is_recorded():
    for exporter in ("console", "otlp"):
        with tracer(exporter).start_as_current_span("root") as span:
            assert span.is_recording()
