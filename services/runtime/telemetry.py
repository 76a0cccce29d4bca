"""OpenTelemetry: one trace from an HTTP request, through the event's traceparent, to consumers.

HTTP server spans come from FastAPI's native telemetry (it continues an incoming traceparent), and
on scoring's hottest routes from its fast path, which opens them with `provider_tracer()`; this
module adds the exporter set-up and carries the context through events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.runtime.settings import Settings

_propagator = TraceContextTextMapPropagator()
TRACER_NAME = "modelgov"
# A proxy (made at import, before setup_tracing): it finds the provider's tracer on each use.
tracer = trace.get_tracer(TRACER_NAME)
# A consumer's batch span links to every event in the batch (the audit's hold up to 1,000); the
# SDK's default keeps 128 links and drops the rest.
MAX_LINKS = 1000


def setup_tracing(settings: Settings, service: str) -> None:
    """Install an SDK provider, so every request has a trace id that travels with its events
    (`traceparent`), exported or not; the exporter comes from settings. A provider set earlier
    (tests, a host application) is kept."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider_for(settings, service))


def provider_tracer() -> trace.Tracer:
    """The installed provider's own tracer, for a hot path: the proxy `tracer` wraps each span's
    context manager in one of its own (~3 of a server span's ~10 µs). Take it after setup_tracing."""
    return trace.get_tracer(TRACER_NAME)


def provider_for(settings: Settings, service: str) -> TracerProvider:
    """modelgov's SDK provider: sampler and exporter from settings, room for a batch's links."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"modelgov-{service}"}),
                              sampler=sampler_for(settings.otel_exporter),
                              span_limits=SpanLimits(max_links=MAX_LINKS))
    if settings.otel_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otel_endpoint)))
    return provider


def sampler_for(exporter: str) -> Sampler:
    """With no exporter, spans are not recorded (a request's server span costs ~60 µs recorded,
    ~20 µs not), yet each still has a trace id, which events carry; a caller's sampled trace is
    still recorded, so its sampled flag travels on."""
    return ParentBased(ALWAYS_OFF if exporter == "none" else ALWAYS_ON)


@contextmanager
def batch_span(name: str, events: Iterable[tuple[str | None, dict]]) -> Iterator[trace.Span]:
    """One consumer span for a batch, linked to the trace of each event in it, given as
    (traceparent, link attributes). The links are made only once the span is known to be
    recorded: reading a traceparent costs more than chaining its event, and an unrecorded span
    would drop them (samplers that decide by links therefore do not see them)."""
    with tracer.start_as_current_span(name, kind=SpanKind.CONSUMER) as span:
        if span.is_recording():
            for traceparent, attributes in events:
                linked = trace.get_current_span(context_from(traceparent)).get_span_context()
                if linked.is_valid:
                    span.add_link(linked, attributes)
        yield span


def current_traceparent() -> str | None:
    """The current span as a W3C traceparent, as the propagator writes it (read per decision)."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def context_from(traceparent: str | None) -> context.Context:
    return _propagator.extract({"traceparent": traceparent} if traceparent else {})
