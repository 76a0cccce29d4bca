"""Scoring's Prometheus metrics, per model, version and route, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("modelgov_scoring_decisions_total", "Decisions returned",
                                ["model", "version", "route", "decision"], registry=registry)
        self.latency = Histogram("modelgov_scoring_decision_seconds",
                                 "From request to durable decision, per row",
                                 ["model", "version", "route"], buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self.errors = Counter("modelgov_scoring_errors_total", "Score requests refused or failed",
                              ["model", "reason"], registry=registry)
        self.loads = Counter("modelgov_scoring_model_loads_total", "Version loads into the cache",
                             ["model", "version", "outcome"], registry=registry)
        self.spooled = Counter("modelgov_scoring_events_spooled_total",
                               "Events written to the outbox because JetStream did not ack in time",
                               ["model"], registry=registry)
        self.shadows = Counter("modelgov_scoring_shadow_predictions_total", "Shadow predictions",
                               ["model", "version", "outcome"], registry=registry)
