"""Monitoring HTTP request and response models: outcomes, policies, reports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from contracts.monitoring.figures import (
    AttributeFairness,
    DriftFigures,
    FeatureQuality,
    PerformanceFigures,
)
from contracts.monitoring.policy import DriftPolicy, FairnessPolicy, PerformancePolicy, QualityPolicy

MAX_OUTCOMES = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutcomeIn(Strict):
    """What actually happened after a decision: the label the model's score predicts."""

    decision_id: str = Field(min_length=1, max_length=64, description="from the score response")
    label: Literal[0, 1] | StrictBool = Field(
        description="1 (or true) when the adverse outcome happened: default, fraud, chargeback")
    observed_at: AwareDatetime = Field(description="when it was observed (RFC 3339 with offset)")


class OutcomeBatch(Strict):
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)


OutcomeStatus = Literal["recorded", "duplicate", "not_found", "conflict"]


class OutcomeResult(Strict):
    index: int = Field(description="position in the request")
    decision_id: str
    status: OutcomeStatus
    code: int = Field(description="HTTP status this item would have on its own: 201, 200, 404, 409")
    detail: str | None = None


class OutcomeReport(Strict):
    recorded: int
    duplicates: int
    failed: int
    results: list[OutcomeResult]


class MonitoringPolicy(Strict):
    """Per-model windows, thresholds and retrain triggers; every field has a default."""

    window_size: StrictInt = Field(1000, ge=20, le=1_000_000,
                                   description="a window closes once it holds this many decisions")
    window_seconds: float = Field(300, gt=0, le=30 * 24 * 3600,
                                  description="…or this long after its first decision; one with "
                                              "fewer than drift.min_samples gets no drift figures")
    drift: DriftPolicy = DriftPolicy()
    quality: QualityPolicy = QualityPolicy()
    performance: PerformancePolicy = PerformancePolicy()
    fairness: FairnessPolicy = FairnessPolicy()
    retrain_on_drift: bool = Field(True, description="a drift alert starts RetrainWorkflow")
    retrain_after_positive_labels: StrictInt = Field(
        5000, ge=1, le=1_000_000_000,
        description="every this many newly labelled positives start RetrainWorkflow")


class PolicyPublic(Strict):
    model: str
    policy: MonitoringPolicy
    updated_at: datetime | None
    updated_by: str | None


class Latency(Strict):
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class Histogram(Strict):
    """Reference and current shares over the reference's bins (numeric) or categories."""

    bins: list[str]
    reference: list[float]
    current: list[float]


class WindowReport(Strict):
    """The figures of one closed window of one version."""

    version: int
    index: int = Field(description="1, 2, 3… per version")
    closed_by: Literal["count", "time"]
    start: datetime
    end: datetime
    decisions: int
    labelled: int
    drift: DriftFigures | None
    quality: list[FeatureQuality]
    performance: PerformanceFigures | None
    fairness: list[AttributeFairness]
    latency: Latency
    decision_rates: dict[str, float] = Field(description="share of each decision in the window")
    score_mean: float | None = None
    refused: int = Field(0, description="the model's score requests refused during the window")
    error_rate: float | None = Field(None, description="refused / (decisions + refused)")
    histograms: dict[str, Histogram] = Field(
        default_factory=dict, description="drifted features (and the score): reference vs current")
    alerts: list[str] = Field(description="event types raised for this window")


class RetrainTrigger(Strict):
    workflow_id: str
    reason: str
    status: Literal["pending", "started", "already_started"]
    detail: str | None
    created_at: datetime


class MonitoringReport(Strict):
    model: str
    versions: list[int]
    windows: list[WindowReport] = Field(description="newest first")
    open_windows: dict[int, int] = Field(description="version → decisions in its open window")
    triggers: list[RetrainTrigger]
    policy: MonitoringPolicy


class VersionFigures(Strict):
    version: int
    decisions: int
    labelled: int
    score_mean: float | None
    decision_rates: dict[str, float]
    drift: DriftFigures | None
    performance: PerformanceFigures | None
    fairness: list[AttributeFairness]
    latency: Latency
    refused: int = Field(0, description="the model's score requests refused in the period")
    error_rate: float | None = Field(None, description="refused / (decisions + refused)")


class Comparison(Strict):
    """Baseline and candidate over the same period: the canary gate's figures."""

    model: str
    since: datetime
    until: datetime
    baseline: VersionFigures
    candidate: VersionFigures
    auc_difference: float | None = Field(description="candidate − baseline, on labelled decisions")
    p99_latency_ratio: float | None = Field(description="candidate p99 / baseline p99")
    passed: bool
    reasons: list[str] = Field(description="why the gate failed; empty when it passed")
