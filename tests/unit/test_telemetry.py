"""Trace ids travel with every event whether spans are exported or not."""

from __future__ import annotations

import re

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Tracer, TracerProvider

from services.runtime import telemetry
from services.runtime.settings import Settings
from services.runtime.telemetry import (
    MAX_LINKS,
    batch_span,
    context_from,
    current_traceparent,
    provider_for,
    provider_tracer,
    sampler_for,
)

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


def test_a_recorded_batch_span_links_to_the_trace_of_each_event_that_carries_one(tracer_provider):
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    events = [(CALLER, {"messaging.message.id": "e1"}), (None, {}), ("not-a-traceparent", {}),
              (other, {"messaging.message.id": "e4"})]
    with batch_span("audit append GOVERNANCE", events) as span:
        assert span.is_recording()
    # check: one link per event with a valid traceparent, naming the event
    assert [(link.context.trace_id, dict(link.attributes)) for link in span.links] == [
        (int(CALLER.split("-")[1], 16), {"messaging.message.id": "e1"}),
        (int(other.split("-")[1], 16), {"messaging.message.id": "e4"}),
    ]


def test_an_unrecorded_batch_span_does_not_read_the_events_traceparents(tracer_provider):
    def events():
        raise AssertionError("traceparents read for a span nobody records")
        yield

    unsampled = context.attach(context_from(CALLER[:-2] + "00"))  # within an unsampled trace
    try:
        with batch_span("audit append GOVERNANCE", events()) as span:
            assert not span.is_recording()
    finally:
        context.detach(unsampled)


def test_modelgovs_provider_keeps_a_link_for_every_event_of_a_full_batch():
    tracer = provider_for(Settings(otel_exporter="none"), "audit").get_tracer("test")
    with tracer.start_as_current_span("audit append DECISIONS", context=context_from(CALLER)) as span:
        for i in range(MAX_LINKS):
            span.add_link(trace.SpanContext(i + 1, i + 1, is_remote=True))
    # check: a batch of 1,000 events keeps all 1,000 links (the SDK's default keeps 128)
    assert MAX_LINKS == 1000 and len(span.links) == MAX_LINKS


def test_the_hot_paths_tracer_is_the_installed_providers_own_not_the_proxy(tracer_provider):
    assert isinstance(provider_tracer(), Tracer) and not isinstance(telemetry.tracer, Tracer)
    with provider_tracer().start_as_current_span("POST /v1/score/{model}",
                                                 context=context_from(CALLER)) as span:
        assert span.get_span_context().trace_id == int(CALLER.split("-")[1], 16)
