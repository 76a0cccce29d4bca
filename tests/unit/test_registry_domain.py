"""The registry's rules: lifecycle, who may move it (four eyes), and what aliases may name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.registry.api import VersionMetadata, VersionPublic, VersionStatus
from contracts.registry.events import (
    ModelAliasRemoved,
    ModelAliasSet,
    ModelVersionApproved,
    ModelVersionRetired,
    ModelVersionValidated,
)
from services.registry import domain
from services.registry.domain import Kind, RuleViolation
from services.runtime.auth import Principal, Role
from tests.registry_helpers import metadata

S = VersionStatus
ALICE = Principal("alice", frozenset({Role.data_scientist}))
BOB_RISK = Principal("bob", frozenset({Role.model_risk}))
CAROL_COMPLIANCE = Principal("carol", frozenset({Role.compliance}))
OPS = Principal("ops", frozenset({Role.operator}))
WORKFLOW = Principal("review-credit-v3", frozenset({Role.service}))
ROOT = Principal("root", frozenset({Role.admin}))
REGULATOR = Principal("reg", frozenset({Role.regulator}))


def version(status: VersionStatus, registered_by: str = "user:alice", aliases=()) -> VersionPublic:
    return VersionPublic(
        name="credit-default", version=3, status=status, artifact_sha256="0" * 64, artifact_size=10,
        artifact_format="skops", metadata=VersionMetadata.model_validate(metadata()),
        registered_at=datetime(2025, 1, 1, tzinfo=UTC), registered_by=registered_by, aliases=list(aliases),
    )


def violation(call) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        call()
    return caught.value


class TestLifecycle:
    def test_the_happy_path_emits_one_event_per_step(self):
        # check each step names the status it left
        validated = domain.transition(version(S.registered), S.validated, ALICE, "checks pass")
        assert isinstance(validated, ModelVersionValidated)
        assert (validated.from_status, validated.comment) == (S.registered, "checks pass")
        approved = domain.transition(version(S.validated), S.approved, BOB_RISK)
        assert isinstance(approved, ModelVersionApproved)
        assert domain.transition(version(S.approved), S.deployed, WORKFLOW).from_status == S.approved
        assert isinstance(domain.transition(version(S.deployed), S.retired, OPS), ModelVersionRetired)

    @pytest.mark.parametrize("start", [S.registered, S.validated, S.approved, S.rejected, S.deployed])
    def test_any_status_but_retired_can_be_retired(self, start):
        assert domain.transition(version(start), S.retired, ROOT).from_status == start

    @pytest.mark.parametrize(("start", "to"), [
        (S.registered, S.approved),  # skipping validation
        (S.registered, S.deployed),
        (S.validated, S.deployed),  # deployed only from approved
        (S.rejected, S.approved),  # a fix is a new version
        (S.retired, S.validated),  # retired is final
    ])
    def test_skipping_or_reversing_a_step_is_a_conflict(self, start, to):
        who = Principal("x", frozenset(Role))
        err = violation(lambda: domain.transition(version(start, "user:someone-else"), to, who))
        # check the message says where the version is and where it may go
        assert err.kind == Kind.conflict
        assert f"is {start} and cannot become {to}" in err.message

    def test_moving_to_the_current_status_is_a_conflict(self):
        err = violation(lambda: domain.transition(version(S.validated), S.validated, ALICE))
        assert err.kind == Kind.conflict
        assert err.message == "version 3 of model 'credit-default' is already validated"

    def test_registered_is_not_a_transition(self):
        err = violation(lambda: domain.transition(version(S.validated), S.registered, ALICE))
        assert err.kind == Kind.invalid

    @pytest.mark.parametrize(("to", "start", "who"), [
        (S.validated, S.registered, BOB_RISK),
        (S.approved, S.validated, ALICE),
        (S.approved, S.validated, WORKFLOW),
        (S.rejected, S.validated, OPS),
        (S.deployed, S.approved, ALICE),
        (S.retired, S.deployed, ALICE),
        (S.approved, S.validated, REGULATOR),
    ])
    def test_each_step_has_its_roles(self, to, start, who):
        err = violation(lambda: domain.transition(version(start), to, who))
        assert err.kind == Kind.forbidden
        assert err.message.startswith(f"moving a version to {to} needs one of the roles:")

    @pytest.mark.parametrize("to", [S.approved, S.rejected])
    def test_four_eyes_the_registrant_never_reviews_their_own_version(self, to):
        # arrange: bob holds model_risk but registered this version himself
        own = version(S.validated, registered_by="user:bob")
        err = violation(lambda: domain.transition(own, to, BOB_RISK))
        assert err.kind == Kind.forbidden
        assert "four eyes: user:bob registered version 3" in err.message
        # check another reviewer may
        assert domain.transition(own, to, CAROL_COMPLIANCE).from_status == S.validated

    def test_a_version_named_by_an_alias_cannot_be_retired(self):
        err = violation(lambda: domain.transition(version(S.deployed, aliases=["champion"]), S.retired, OPS))
        assert err.kind == Kind.conflict
        assert "still named by alias(es) champion; move or remove them first" in err.message


class TestAliases:
    def test_a_workflow_sets_champion_with_evidence(self):
        event = domain.set_alias("champion", version(S.approved), 2, WORKFLOW, "rollout-credit-v3", None)
        assert event == ModelAliasSet(name="credit-default", alias="champion", version=3, previous_version=2,
                                      evidence="rollout-credit-v3", reason=None)

    def test_an_admin_breaks_glass_with_a_reason(self):
        event = domain.set_alias("champion", version(S.deployed), None, ROOT, None, "incident 42: roll back")
        assert (event.reason, event.previous_version) == ("incident 42: roll back", None)

    def test_pointing_an_alias_where_it_already_points_records_nothing(self):
        assert domain.set_alias("champion", version(S.deployed), 3, WORKFLOW, "retry", None) is None

    @pytest.mark.parametrize(("who", "evidence", "reason", "kind", "says"), [
        (WORKFLOW, None, None, Kind.invalid, "send 'evidence'"),
        (WORKFLOW, "   ", "why", Kind.invalid, "send 'evidence'"),
        (ROOT, "some-evidence", None, Kind.invalid, "break-glass alias change needs a 'reason'"),
        (ALICE, "e", "r", Kind.forbidden, "aliases are changed by a workflow"),
        (BOB_RISK, "e", "r", Kind.forbidden, "aliases are changed by a workflow"),
    ])
    def test_who_may_set_an_alias(self, who, evidence, reason, kind, says):
        target = version(S.approved)
        err = violation(lambda: domain.set_alias("challenger", target, None, who, evidence, reason))
        assert err.kind == kind
        assert says in err.message

    @pytest.mark.parametrize("status", [S.registered, S.validated])
    def test_champion_needs_an_approved_or_deployed_version(self, status):
        err = violation(lambda: domain.set_alias("champion", version(status), None, WORKFLOW, "wf", None))
        assert err.kind == Kind.conflict
        assert f"'champion' must point at an approved or deployed version; version 3 of model " \
               f"'credit-default' is {status}" == err.message
        # check other aliases may name it (a challenger under validation)
        assert domain.set_alias("challenger", version(status), None, WORKFLOW, "wf", None).version == 3

    @pytest.mark.parametrize("status", [S.rejected, S.retired])
    def test_no_alias_names_a_rejected_or_retired_version(self, status):
        err = violation(lambda: domain.set_alias("shadow", version(status), None, ROOT, None, "why"))
        assert err.kind == Kind.conflict
        assert err.message.endswith(f"cannot point at version 3 of model 'credit-default': it is {status}")

    @pytest.mark.parametrize("alias", ["Champion", "1st", "-x", "a" * 64, "has space", ""])
    def test_alias_names_follow_the_pattern(self, alias):
        err = violation(lambda: domain.set_alias(alias, version(S.approved), None, WORKFLOW, "wf", None))
        assert err.kind == Kind.invalid
        assert f"alias '{alias}' is not valid" in err.message

    def test_removal_by_a_workflow_or_by_an_admin_with_a_reason(self):
        assert domain.remove_alias("credit-default", "challenger", 4, WORKFLOW, None) == ModelAliasRemoved(
            name="credit-default", alias="challenger", previous_version=4, reason=None)
        assert domain.remove_alias("credit-default", "champion", 3, ROOT, "retire").reason == "retire"
        # check break-glass without a reason is refused
        err = violation(lambda: domain.remove_alias("credit-default", "champion", 3, ROOT, ""))
        assert err.kind == Kind.invalid
