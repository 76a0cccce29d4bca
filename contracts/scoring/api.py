"""Scoring HTTP request and response models: scores, decisions, deployments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.registry.api import Version

# champion / canary: routed by the deployment; direct: the request named its version
# (`/v2/models/{model}/versions/{version}/infer`), whatever the deployment says.
Route = Literal["champion", "canary", "direct"]
# Numbers, strings and booleans travel as JSON; the version's feature_schema judges them, so a
# mistyped value is reported by feature name (422) rather than by pydantic's generic message.
FeatureValue = Any
# Protected-attribute values are group labels ("female", "25-34"), not free text.
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
AttributeValue = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_ATTRIBUTES = 50  # as many as a model may declare


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScoreRequest(Strict):
    entity_id: str = Field(min_length=1, max_length=200,
                           description="the applicant, card or account: the sticky routing key")
    features: dict[str, FeatureValue] = Field(description="feature name → value, as in the "
                                                          "deployed version's feature_schema")
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES,
        description="protected attribute → value (e.g. sex, age_group), each among the model's "
                    "protected_attributes in the registry: recorded on the decision.made event for "
                    "fairness monitoring, never given to the model")


class ReasonCode(Strict):
    """One principal reason for an adverse decision (ECOA / Reg B adverse-action notice)."""

    feature: str
    value: FeatureValue = Field(description="the applicant's value of the feature")
    impact: float = Field(description="how far this feature pushed toward the adverse outcome: "
                                      "log-odds for linear models, score points otherwise")


class ScoreResponse(Strict):
    decision_id: str = Field(description="also the id of its decision.made event")
    score: float = Field(description="probability of the adverse outcome (default, fraud)")
    decision: str = Field(description="credit: approve|review|decline; fraud: allow|review|block")
    model_version: int
    route: Route
    reason_codes: list[ReasonCode] = Field(default_factory=list,
                                           description="up to 4, on adverse decisions only")


class ScoreBatchRequest(Strict):
    items: list[ScoreRequest] = Field(min_length=1)


class ScoreBatchResponse(Strict):
    items: list[ScoreResponse]


class Canary(Strict):
    version: Version
    percent: float = Field(ge=0, le=100, description="share of entity ids routed to the canary")


class DeploymentSpec(Strict):
    """What serves a model: the champion, optionally a canary share, and shadow versions."""

    champion: Version
    canary: Canary | None = None
    shadow: list[Version] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _distinct(self) -> DeploymentSpec:
        versions = [self.champion, *([self.canary.version] if self.canary else []), *self.shadow]
        if len(set(versions)) != len(versions):
            raise ValueError(f"champion, canary and shadow versions must be distinct: got {versions}")
        if any(v <= 0 for v in self.shadow):
            raise ValueError("shadow versions must be positive")
        return self


class DeploymentPublic(DeploymentSpec):
    model: str
    updated_at: datetime
    updated_by: str
