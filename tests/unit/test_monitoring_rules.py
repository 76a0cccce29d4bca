"""Monitoring's pure rules: windows, alerts from figures, retrain ids, the canary gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.monitoring.api import Latency, MonitoringPolicy
from contracts.monitoring.events import Window
from contracts.monitoring.figures import (
    AttributeFairness,
    DriftFigures,
    FeatureDrift,
    PerformanceFigures,
)
from services.monitoring import domain

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = Window(index=3, closed_by="count", start=T0, end=T0 + timedelta(minutes=5), decisions=1000,
                labelled=400)
REFERENCE = domain.Reference(feature_schema=[], profile=None, decision_threshold=0.8,
                             protected_attributes=["sex"], reference_auc=0.80)


def drift(*drifted: str) -> DriftFigures:
    features = [FeatureDrift(feature=f, kind="numeric", n_reference=5000, n_current=1000, psi=0.3,
                             ks_statistic=0.2, ks_pvalue=1e-12, wasserstein_norm=0.5, chi2_pvalue=None,
                             drifted=f in drifted, reason="…") for f in ("f0", "f1", "f2")]
    return DriftFigures(features=features, score=None, alpha_corrected=0.05 / 3,
                        drifted_features=list(drifted))


def figures(**changes) -> domain.Figures:
    base = dict(decisions=1000, labelled=400, drift=drift(), quality=[], performance=None, fairness=[],
                latency=Latency(p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, max_ms=9.0),
                decision_rates={"allow": 1.0})
    return domain.Figures(**{**base, **changes})


def performance(auc: float, count: int = 400, ece: float = 0.02) -> PerformanceFigures:
    return PerformanceFigures(count=count, positives=40, auc=auc, precision=0.5, recall=0.5,
                              false_positive_rate=0.05, brier=0.1, ece=ece, threshold=0.8)


def test_a_window_closes_by_time_once_its_seconds_are_up():
    policy = MonitoringPolicy(window_seconds=60)
    assert not domain.time_is_up(T0, T0 + timedelta(seconds=59), policy)
    assert domain.time_is_up(T0, T0 + timedelta(seconds=60), policy)


def test_retrain_ids_are_derived_from_the_evidence():
    assert domain.drift_workflow_id("card-fraud", 2, 7) == "retrain-card-fraud-drift-v2-w7"
    # the 5,000th and 10,000th positive labels are one trigger each, however they are counted
    assert domain.positive_label_milestones(4990, 5010, 5000) == [5000]
    assert domain.positive_label_milestones(0, 10_000, 5000) == [5000, 10_000]
    assert domain.positive_label_milestones(5000, 9999, 5000) == []
    assert domain.labels_workflow_id("card-fraud", 10_000) == "retrain-card-fraud-labels-10000"


def test_drift_alert_names_the_drifted_features_once_per_window():
    fig = figures(drift=drift("f0", "f2"))
    # act
    raised = domain.alerts("card-fraud", 1, WINDOW, fig, REFERENCE, MonitoringPolicy(), set())
    again = domain.alerts("card-fraud", 1, WINDOW, fig, REFERENCE, MonitoringPolicy(),
                          {a.event_type for a in raised})
    # check
    assert [type(a).__name__ for a in raised] == ["DriftDetected"]
    assert raised[0].drifted_features == ["f0", "f2"] and raised[0].window == WINDOW
    assert again == []


def test_no_alert_when_nothing_crosses_a_threshold():
    fig = figures(performance=performance(auc=0.79))
    assert domain.alerts("card-fraud", 1, WINDOW, fig, REFERENCE, MonitoringPolicy(), set()) == []


def test_performance_degrades_on_auc_drop_floor_or_calibration_with_enough_labels():
    policy = MonitoringPolicy()
    assert domain.performance_reasons(performance(auc=0.74), 0.80, policy) == [
        "AUC 0.7400 is 0.0600 below the reference 0.8000 (allowed drop 0.05)"]
    floor = domain.performance_reasons(performance(auc=0.60), None, policy)
    assert floor[0].startswith("AUC 0.6000 is below")
    assert "calibration" in domain.performance_reasons(performance(auc=0.8, ece=0.3), 0.8, policy)[0]
    # too few labels to judge
    assert domain.performance_reasons(performance(auc=0.5, count=50), 0.8, policy) == []


def test_fairness_violation_is_an_alert_naming_the_attribute():
    unfair = AttributeFairness(attribute="sex", groups=[], demographic_parity_difference=0.2,
                               disparate_impact_ratio=0.7, equal_opportunity_difference=None,
                               violated=True, reason="disparate impact 0.7 < 0.8")
    raised = domain.alerts("credit", 1, WINDOW, figures(fairness=[unfair]), REFERENCE,
                           MonitoringPolicy(), set())
    assert [(type(a).__name__, a.attributes) for a in raised] == [("FairnessViolated", ["sex"])]


def test_the_canary_gate_fails_on_auc_drop_and_names_why():
    policy = MonitoringPolicy()
    baseline = figures(performance=performance(auc=0.80))
    candidate = figures(performance=performance(auc=0.70))
    reasons, auc_diff, ratio = domain.gate(baseline, candidate, policy)
    assert auc_diff == -0.1 and ratio == 1.0
    assert reasons == ["candidate AUC 0.7000 is 0.1000 below the baseline's"]
    # check: a candidate that holds up passes
    assert domain.gate(baseline, figures(performance=performance(auc=0.79)), policy)[0] == []
    # check: too little traffic on the candidate is a reason too
    few = figures(decisions=10, performance=performance(auc=0.80))
    assert "the candidate made 10 decisions" in domain.gate(baseline, few, policy)[0][0]
