"""Scoring's tally of refused requests: what each requests.refused event will count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.scoring.metrics import ScoringMetrics


def test_refusals_are_tallied_per_model_and_reason_and_a_tally_is_taken_once():
    metrics = ScoringMetrics(CollectorRegistry())
    for model, reason in [("credit", "invalid_features"), ("credit", "invalid_features"),
                          ("credit", "too_large"), ("fraud", "model_failed"), ("ghost", "not_deployed")]:
        metrics.refused(model, reason)
    # check: a model scoring does not serve is counted for Prometheus only
    assert metrics.take_refused() == {"credit": {"invalid_features": 2, "too_large": 1},
                                      "fraud": {"model_failed": 1}}
    assert metrics.take_refused() == {}
    assert metrics.errors.labels("ghost", "not_deployed")._value.get() == 1


def test_a_tally_that_could_not_be_recorded_counts_toward_the_next():
    metrics = ScoringMetrics(CollectorRegistry())
    metrics.refused("credit", "too_large")
    lost = metrics.take_refused()
    metrics.refused("credit", "too_large")
    metrics.give_back(lost)
    assert metrics.take_refused() == {"credit": {"too_large": 2}}
