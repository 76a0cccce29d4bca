"""Events the registry publishes: one past-tense event per change of a model or version."""

from __future__ import annotations

from typing import ClassVar

from contracts.envelope import EventData
from contracts.registry.api import RiskTier, VersionMetadata, VersionStatus


class ModelCreated(EventData):
    event_type: ClassVar[str] = "modelgov.registry.model.created.v1"
    name: str
    description: str
    owner: str
    use_case: str
    risk_tier: RiskTier
    protected_attributes: list[str]


class ModelVersionRegistered(EventData):
    event_type: ClassVar[str] = "modelgov.registry.model_version.registered.v1"
    name: str
    version: int
    artifact_sha256: str
    artifact_size: int
    artifact_format: str
    metadata: VersionMetadata


class _Transitioned(EventData):
    name: str
    version: int
    from_status: VersionStatus
    comment: str = ""


class ModelVersionValidated(_Transitioned):
    event_type: ClassVar[str] = "modelgov.registry.model_version.validated.v1"


class ModelVersionApproved(_Transitioned):
    event_type: ClassVar[str] = "modelgov.registry.model_version.approved.v1"


class ModelVersionRejected(_Transitioned):
    event_type: ClassVar[str] = "modelgov.registry.model_version.rejected.v1"


class ModelVersionDeployed(_Transitioned):
    event_type: ClassVar[str] = "modelgov.registry.model_version.deployed.v1"


class ModelVersionRetired(_Transitioned):
    event_type: ClassVar[str] = "modelgov.registry.model_version.retired.v1"


TRANSITION_EVENTS: dict[VersionStatus, type[_Transitioned]] = {
    VersionStatus.validated: ModelVersionValidated,
    VersionStatus.approved: ModelVersionApproved,
    VersionStatus.rejected: ModelVersionRejected,
    VersionStatus.deployed: ModelVersionDeployed,
    VersionStatus.retired: ModelVersionRetired,
}


class ModelAliasSet(EventData):
    event_type: ClassVar[str] = "modelgov.registry.model_alias.set.v1"
    name: str
    alias: str
    version: int
    previous_version: int | None
    evidence: str | None
    reason: str | None


class ModelAliasRemoved(EventData):
    event_type: ClassVar[str] = "modelgov.registry.model_alias.removed.v1"
    name: str
    alias: str
    previous_version: int
    reason: str | None


ALL: list[type[EventData]] = [
    ModelCreated,
    ModelVersionRegistered,
    *TRANSITION_EVENTS.values(),
    ModelAliasSet,
    ModelAliasRemoved,
]
