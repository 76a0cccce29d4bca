"""Registry HTTP request and response models."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.monitoring.profile import ReferenceProfile

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
FEATURE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Versions are stored as 32-bit integers (PostgreSQL `integer`): a larger number names none, and
# must be refused as such rather than overflow the database driver.
MAX_VERSION = 2**31 - 1
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RiskTier(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


class VersionStatus(StrEnum):
    registered = "registered"
    validated = "validated"
    approved = "approved"
    rejected = "rejected"
    deployed = "deployed"
    retired = "retired"


class ModelCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and '-'")
    description: str = Field("", max_length=4000)
    owner: str = Field(min_length=1, max_length=200)
    use_case: Literal["credit", "fraud", "other"]
    risk_tier: RiskTier
    protected_attributes: list[str] = Field(default_factory=list, max_length=50)


class ModelPublic(ModelCreate):
    created_at: datetime
    created_by: str
    latest_version: int | None
    aliases: dict[str, int]


class FeatureSpec(Strict):
    name: str = Field(pattern=FEATURE_PATTERN)
    dtype: Literal["float", "int", "string", "bool"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        numeric = self.dtype in ("float", "int")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"feature {self.name!r}: min/max apply to float or int features only")
        if self.categories is not None and self.dtype != "string":
            raise ValueError(f"feature {self.name!r}: categories apply to string features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is greater than max {self.max}")
        return self


class TrainingData(Strict):
    fingerprint: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the data")
    rows: int = Field(gt=0)
    profile: ReferenceProfile | None = Field(
        None, description="what monitoring compares live traffic against "
                          "(services.monitoring.reference.build_profile computes it)")

    @field_validator("profile", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # {} was this field's default before the profile had a schema: versions registered
        # without a profile since then must still read back
        return None if value == {} else value


class DecisionPolicy(Strict):
    """Turns a score (probability of the adverse outcome) into a decision."""

    review_at: float = Field(ge=0, le=1, description="score from which a case goes to review")
    decline_at: float = Field(ge=0, le=1, description="score from which it is declined / blocked")

    @model_validator(mode="after")
    def _ordered(self) -> DecisionPolicy:
        if self.review_at > self.decline_at:
            raise ValueError("review_at must not exceed decline_at")
        return self


class VersionMetadata(Strict):
    feature_schema: list[FeatureSpec] = Field(min_length=1, max_length=5000)
    training_data: TrainingData
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    fairness: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    code_ref: str | None = Field(None, max_length=500)
    decision_policy: DecisionPolicy | None = None

    @field_validator("feature_schema")
    @classmethod
    def _unique(cls, value: list[FeatureSpec]) -> list[FeatureSpec]:
        seen: set[str] = set()
        for feature in value:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} appears twice")
            seen.add(feature.name)
        return value

    @field_validator("metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"metrics must be finite numbers: {', '.join(bad)}")
        return value


class VersionPublic(Strict):
    name: str
    version: int
    status: VersionStatus
    artifact_sha256: str
    artifact_size: int
    artifact_format: str
    metadata: VersionMetadata
    registered_at: datetime
    registered_by: str
    aliases: list[str]


class VersionCreated(Strict):
    version: int
    artifact_sha256: str
    status: VersionStatus


class TransitionRequest(Strict):
    to: VersionStatus
    comment: str = Field("", max_length=4000)


class AliasSet(Strict):
    version: Version
    evidence: str | None = Field(
        None, max_length=4000, description="approval evidence (a workflow id, a review record)"
    )
    reason: str | None = Field(None, max_length=4000, description="why: required for break-glass")


class AliasPublic(Strict):
    name: str
    alias: str
    version: int
