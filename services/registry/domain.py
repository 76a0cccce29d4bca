"""Registry rules: the version lifecycle, who may move it, and what an alias may point at.

Pure: no I/O, no clock, no SQLAlchemy. Each command checks its rules and returns the one event
that records the change, or raises `RuleViolation` saying what to fix.

Lifecycle (what a model-risk reviewer expects from an SR 11-7 style process):

    registered ──▶ validated ──▶ approved ──▶ deployed
                       └───────▶ rejected
    any status but retired ──▶ retired        (retired is terminal)

- `validated`: data_scientist or service (a pipeline checked the artifact against its metadata);
- `approved` / `rejected`: model_risk or compliance, and never the principal who registered the
  version (four eyes); only a validated version is reviewed;
- `deployed`: service or operator, and only from approved;
- `retired`: operator, service or admin, from any status but retired, once no alias points at the
  version (scoring resolves aliases: move or remove them first, each change its own event).
A rejected version can only be retired: a fix is a new version.

Aliases (`champion`, `challenger`, ...): `champion` points only at an approved or deployed
version; no alias points at a rejected or retired one. A workflow (role service) moves an alias
with approval `evidence`; an admin may break glass with a `reason`. Setting an alias to the
version it already names changes nothing and records nothing (a retried workflow step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts.envelope import EventData
from contracts.registry.api import ModelCreate, VersionMetadata, VersionPublic, VersionStatus
from contracts.registry.events import (
    TRANSITION_EVENTS,
    ModelAliasRemoved,
    ModelAliasSet,
    ModelCreated,
    ModelVersionRegistered,
)
from services.runtime.auth import Principal, Role

S = VersionStatus

NEXT: dict[VersionStatus, frozenset[VersionStatus]] = {
    S.registered: frozenset({S.validated, S.retired}),
    S.validated: frozenset({S.approved, S.rejected, S.retired}),
    S.approved: frozenset({S.deployed, S.retired}),
    S.rejected: frozenset({S.retired}),
    S.deployed: frozenset({S.retired}),
    S.retired: frozenset(),
}

MOVERS: dict[VersionStatus, frozenset[Role]] = {
    S.validated: frozenset({Role.data_scientist, Role.service}),
    S.approved: frozenset({Role.model_risk, Role.compliance}),
    S.rejected: frozenset({Role.model_risk, Role.compliance}),
    S.deployed: frozenset({Role.service, Role.operator}),
    S.retired: frozenset({Role.operator, Role.service, Role.admin}),
}
FOUR_EYES = frozenset({S.approved, S.rejected})

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CHAMPION = "champion"
CHAMPION_TARGETS = frozenset({S.approved, S.deployed})
NO_ALIAS_TARGETS = frozenset({S.rejected, S.retired})


class Kind(StrEnum):
    conflict = "conflict"  # the current state does not allow it (409)
    forbidden = "forbidden"  # this principal may not do it (403)
    invalid = "invalid"  # the request itself is wrong (422)


class RuleViolation(Exception):
    """A command broke a registry rule; `kind` says how, the message says what to fix."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Step:
    """One entry of a version's lifecycle history."""

    status: VersionStatus
    at: datetime
    actor: str
    comment: str = ""


@dataclass(frozen=True)
class Artifact:
    sha256: str
    size: int
    format: str


def create_model(command: ModelCreate) -> ModelCreated:
    return ModelCreated(**command.model_dump(mode="json"))


def register_version(
    name: str, version: int, artifact: Artifact, metadata: VersionMetadata
) -> ModelVersionRegistered:
    return ModelVersionRegistered(
        name=name,
        version=version,
        artifact_sha256=artifact.sha256,
        artifact_size=artifact.size,
        artifact_format=artifact.format,
        metadata=metadata,
    )


def transition(version: VersionPublic, to: VersionStatus, who: Principal, comment: str = "") -> EventData:
    """Move a version along its lifecycle; returns the event naming the new status."""
    label = f"version {version.version} of model '{version.name}'"
    if to == S.registered:
        raise RuleViolation(Kind.invalid, "a version is registered by uploading it, not by a transition")
    if not who.roles & MOVERS[to]:
        raise RuleViolation(Kind.forbidden, f"moving a version to {to} needs one of the roles: "
                                            f"{_names(MOVERS[to])}")
    if version.status == to:
        raise RuleViolation(Kind.conflict, f"{label} is already {to}")
    if to not in NEXT[version.status]:
        allowed = _names(NEXT[version.status]) or "none, retired is final"
        raise RuleViolation(Kind.conflict, f"{label} is {version.status} and cannot become {to}; "
                                           f"allowed next: {allowed}")
    if to in FOUR_EYES and who.actor == version.registered_by:
        raise RuleViolation(Kind.forbidden, f"four eyes: {who.actor} registered {label} and cannot "
                                            f"review it; another model_risk or compliance reviewer must")
    if to == S.retired and version.aliases:
        raise RuleViolation(Kind.conflict, f"{label} is still named by alias(es) "
                                           f"{', '.join(sorted(version.aliases))}; move or remove them first")
    return TRANSITION_EVENTS[to](name=version.name, version=version.version, from_status=version.status,
                                 comment=comment)


def set_alias(
    alias: str,
    target: VersionPublic,
    current: int | None,
    who: Principal,
    evidence: str | None,
    reason: str | None,
) -> ModelAliasSet | None:
    """Point `alias` at `target`; None when it already points there (nothing changes)."""
    check_alias_name(alias)
    _alias_authority(who, evidence, reason, needs_evidence=True)
    label = f"version {target.version} of model '{target.name}'"
    if target.status in NO_ALIAS_TARGETS:
        raise RuleViolation(Kind.conflict, f"alias '{alias}' cannot point at {label}: it is {target.status}")
    if alias == CHAMPION and target.status not in CHAMPION_TARGETS:
        raise RuleViolation(Kind.conflict, f"'{CHAMPION}' must point at an approved or deployed version; "
                                           f"{label} is {target.status}")
    if current == target.version:
        return None
    return ModelAliasSet(name=target.name, alias=alias, version=target.version, previous_version=current,
                         evidence=_blank_to_none(evidence), reason=_blank_to_none(reason))


def remove_alias(
    name: str, alias: str, current: int, who: Principal, reason: str | None
) -> ModelAliasRemoved:
    """Remove an alias: a service may; an admin breaks glass and says why."""
    check_alias_name(alias)
    _alias_authority(who, None, reason, needs_evidence=False)
    return ModelAliasRemoved(name=name, alias=alias, previous_version=current, reason=_blank_to_none(reason))


def check_alias_name(alias: str) -> None:
    if not ALIAS_PATTERN.match(alias):
        raise RuleViolation(Kind.invalid, f"alias '{alias}' is not valid: use a lowercase letter, then up to "
                                          f"62 lowercase letters, digits, '_' or '-'")


def _alias_authority(
    who: Principal, evidence: str | None, reason: str | None, *, needs_evidence: bool
) -> None:
    if Role.service in who.roles and (_filled(evidence) or not needs_evidence):
        return
    if Role.admin in who.roles and _filled(reason):
        return
    if Role.service in who.roles:
        raise RuleViolation(Kind.invalid, "a service changes an alias with approval evidence: send "
                                          "'evidence' (the approving workflow id or review record)")
    if Role.admin in who.roles:
        raise RuleViolation(Kind.invalid, "a break-glass alias change needs a 'reason'")
    raise RuleViolation(Kind.forbidden, "aliases are changed by a workflow (role service) with approval "
                                        "evidence, or by an admin with a reason")


def _filled(text: str | None) -> bool:
    return bool(text and text.strip())


def _blank_to_none(text: str | None) -> str | None:
    return text.strip() if _filled(text) else None


def _names(items) -> str:
    return ", ".join(sorted(str(i) for i in items))
