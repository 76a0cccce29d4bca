"""Events the monitoring service publishes: outcomes, alerts, retrain triggers, policy changes.

Outcomes travel with decisions (`dec.<model>.outcome_recorded`, stream DECISIONS: the same
record-keeping period); alerts and triggers are governance events on the model
(`model/<name>/version/<v>` or `model/<name>`), so they show in the model's audit history.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from contracts.envelope import EventData
from contracts.monitoring.api import MonitoringPolicy
from contracts.monitoring.figures import (
    AttributeFairness,
    DriftFigures,
    FeatureQuality,
    PerformanceFigures,
)


class Window(BaseModel):
    """Which decisions an alert's figures were computed over."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    closed_by: Literal["count", "time"]
    start: datetime
    end: datetime
    decisions: int
    labelled: int


class OutcomeRecorded(EventData):
    """The observed outcome of a decision. Subject `decision/<decision_id>`."""

    event_type: ClassVar[str] = "modelgov.monitoring.outcome.recorded.v1"
    decision_id: str
    model: str
    version: int
    label: int
    observed_at: datetime


class DriftDetected(EventData):
    """A window's inputs or scores moved away from the version's reference profile."""

    event_type: ClassVar[str] = "modelgov.monitoring.drift.detected.v1"
    model: str
    version: int
    window: Window
    drifted_features: list[str]
    score_drifted: bool
    figures: DriftFigures


class DataQualityDegraded(EventData):
    """A window's inputs break the feature schema more often than the policy allows."""

    event_type: ClassVar[str] = "modelgov.monitoring.data_quality.degraded.v1"
    model: str
    version: int
    window: Window
    features: list[str]
    figures: list[FeatureQuality]


class PerformanceDegraded(EventData):
    """A window's labelled decisions show the model doing worse than the policy allows."""

    event_type: ClassVar[str] = "modelgov.monitoring.performance.degraded.v1"
    model: str
    version: int
    window: Window
    reasons: list[str]
    reference_auc: float | None
    figures: PerformanceFigures


class FairnessViolated(EventData):
    """A window's decisions treat a protected group worse than the policy allows."""

    event_type: ClassVar[str] = "modelgov.monitoring.fairness.violated.v1"
    model: str
    version: int
    window: Window
    attributes: list[str]
    figures: list[AttributeFairness]


class RetrainTriggered(EventData):
    """Evidence asked for a new version. `workflow_id` is derived from (model, trigger, window), so
    the same evidence can never start a second RetrainWorkflow. Subject `model/<name>`."""

    event_type: ClassVar[str] = "modelgov.monitoring.retrain.triggered.v1"
    model: str
    version: int
    trigger: Literal["drift", "positive_labels"]
    workflow_id: str
    reason: str
    evidence_event_id: str | None
    positive_labels: int | None


class RetrainStartAttempted(EventData):
    """What Temporal said when monitoring started the trigger's RetrainWorkflow."""

    event_type: ClassVar[str] = "modelgov.monitoring.retrain.start_attempted.v1"
    model: str
    workflow_id: str
    outcome: Literal["started", "already_started"]
    run_id: str | None
    task_queue: str
    workers_polling: int
    detail: str


class PolicyChanged(EventData):
    """A model's monitoring policy was set. Subject `model/<name>`."""

    event_type: ClassVar[str] = "modelgov.monitoring.policy.changed.v1"
    model: str
    policy: MonitoringPolicy


ALL: list[type[EventData]] = [
    OutcomeRecorded, DriftDetected, DataQualityDegraded, PerformanceDegraded, FairnessViolated,
    RetrainTriggered, RetrainStartAttempted, PolicyChanged,
]
