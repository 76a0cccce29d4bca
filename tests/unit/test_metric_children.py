"""Metric children looked up once per label values; what they count is the metric's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.runtime.health import HttpMetrics
from services.runtime.labels import Children
from services.scoring.metrics import ScoringMetrics


def test_children_are_looked_up_once_per_label_values():
    calls = []

    class Metric:
        def labels(self, *values):
            calls.append(values)
            return object()

    children = Children(Metric())
    assert children("a", "b") is children("a", "b") is not children("a", "c")
    assert calls == [("a", "b"), ("a", "c")]


def test_what_the_children_count_is_scraped_from_the_metrics():
    registry = CollectorRegistry()
    http, scoring = HttpMetrics("scoring"), ScoringMetrics(registry)
    for _ in range(3):
        http.observe("POST", "/v1/score/{model}", 200, 0.002)
        scoring.decided("fraud", "2", "canary", "block", 0.002)
    assert http.registry.get_sample_value("modelgov_http_requests_total", {
        "service": "scoring", "method": "POST", "route": "/v1/score/{model}", "status": "200"}) == 3
    assert http.registry.get_sample_value("modelgov_http_request_duration_seconds_count", {
        "service": "scoring", "method": "POST", "route": "/v1/score/{model}"}) == 3
    labels = {"model": "fraud", "version": "2", "route": "canary"}
    assert registry.get_sample_value("modelgov_scoring_decisions_total", {**labels, "decision": "block"}) == 3
    assert registry.get_sample_value("modelgov_scoring_decision_seconds_count", labels) == 3
