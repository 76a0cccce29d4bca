"""Events the scoring service publishes: decisions, shadow predictions, deployments, refusals."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from contracts.envelope import EventData
from contracts.scoring.api import Canary, ReasonCode, Route


class DecisionMade(EventData):
    """One scored request: what was asked, what the model said, what was decided, by which version.

    Subject `decision/<decision_id>`; stream DECISIONS, NATS subject `dec.<model>.decision_made`.
    """

    event_type: ClassVar[str] = "modelgov.scoring.decision.made.v1"
    decision_id: str
    model: str
    version: int
    route: Route
    entity_id: str
    inputs: dict[str, Any]
    # Protected-attribute values sent beside the features (not model inputs), for fairness
    # monitoring; absent from events recorded before the field existed.
    attributes: dict[str, str] = Field(default_factory=dict)
    score: float
    decision: str
    reason_codes: list[ReasonCode]
    trace_id: str | None
    latency_ms: float


class ShadowPredictionMade(EventData):
    """A shadow version's answer to a request already decided by the champion or canary."""

    event_type: ClassVar[str] = "modelgov.scoring.shadow_prediction.made.v1"
    decision_id: str
    model: str
    version: int
    entity_id: str
    score: float
    decision: str
    trace_id: str | None
    latency_ms: float


class DeploymentChanged(EventData):
    """A model's champion, canary or shadow versions changed. Subject `deployment/<model>`."""

    event_type: ClassVar[str] = "modelgov.scoring.deployment.changed.v1"
    model: str
    champion: int
    canary: Canary | None
    shadow: list[int]
    previous_champion: int | None


class RequestsRefused(EventData):
    """How many score requests for a model were refused in a period, by reason: the operations
    error rate monitoring reports (refused requests make no decision event). Subject
    `refusals/<model>`; stream DECISIONS, `dec.<model>.requests_refused`. Published per replica."""

    event_type: ClassVar[str] = "modelgov.scoring.requests.refused.v1"
    model: str
    since: datetime
    until: datetime
    counts: dict[str, int]
    total: int


class ArtifactRejected(EventData):
    """A version's artifact was refused at load: its bytes are not the ones the registry recorded."""

    event_type: ClassVar[str] = "modelgov.scoring.artifact.rejected.v1"
    model: str
    version: int
    expected_sha256: str
    actual_sha256: str
    reason: str


ALL: list[type[EventData]] = [DecisionMade, ShadowPredictionMade, DeploymentChanged, ArtifactRejected,
                              RequestsRefused]
