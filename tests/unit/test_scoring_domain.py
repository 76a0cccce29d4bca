"""Scoring rules without I/O: routing, feature checks, decisions, reason codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts.registry.api import DecisionPolicy, FeatureSpec, VersionPublic
from contracts.scoring.api import DeploymentSpec
from services.scoring import domain
from services.scoring.models import Estimator, LinearExplainer, SubstitutionExplainer, build_explainer
from tests.scoring_helpers import (
    RISKY,
    SCHEMA,
    boosted_pipeline,
    linear_pipeline,
    profile,
    training_data,
    version_metadata,
)

SPECS = [FeatureSpec(**s) for s in SCHEMA]


def test_a_5_percent_canary_takes_5_percent_of_20000_entities_and_each_keeps_its_route():
    deployment = DeploymentSpec(champion=1, canary={"version": 2, "percent": 5})
    ids = [f"applicant-{i}" for i in range(20_000)]
    # act
    routes = [domain.route("credit-default", i, deployment) for i in ids]
    # check: 5 % ± 0.6 %, the canary's version, and the same answer on every call
    share = sum(r == (2, "canary") for r in routes) / len(ids)
    assert abs(share - 0.05) <= 0.006, share
    assert {r for r in routes} == {(2, "canary"), (1, "champion")}
    assert [domain.route("credit-default", i, deployment) for i in ids[:2000]] == routes[:2000]


def test_without_a_canary_the_champion_takes_everything_and_0_and_100_percent_are_exact():
    ids = [f"e{i}" for i in range(1000)]
    assert {domain.route("m", i, DeploymentSpec(champion=3)) for i in ids} == {(3, "champion")}
    none = DeploymentSpec(champion=3, canary={"version": 4, "percent": 0})
    every = DeploymentSpec(champion=3, canary={"version": 4, "percent": 100})
    assert {domain.route("m", i, none)[1] for i in ids} == {"champion"}
    assert {domain.route("m", i, every)[1] for i in ids} == {"canary"}


def test_deployment_versions_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        DeploymentSpec(champion=1, canary={"version": 2, "percent": 5}, shadow=[2])


def test_a_named_version_decides_unless_rejected_retired_or_without_a_decision_policy():
    def version(status: str, **metadata) -> VersionPublic:
        return VersionPublic(name="m", version=3, status=status, artifact_sha256="ab" * 32, artifact_size=1,
                             artifact_format="skops", metadata={**version_metadata(), **metadata},
                             registered_at="2026-01-01T00:00:00Z", registered_by="user:a", aliases=[])

    # check: a candidate still under review may be named; what model risk refused or what left
    # service may not; nor a version that cannot turn a score into a decision
    assert [domain.why_not_pinned(version(s)) for s in ("registered", "validated", "approved", "deployed")] \
        == [None] * 4
    assert domain.why_not_pinned(version("rejected")) == "is rejected: it decides nothing"
    assert domain.why_not_pinned(version("retired")) == "is retired: it decides nothing"
    assert "has no decision_policy" in domain.why_not_pinned(version("approved", decision_policy=None))


def test_attributes_must_be_among_the_models_protected_attributes():
    protected = {"sex", "age_group"}
    assert domain.check_attributes(protected, {"sex": "female", "age_group": "25-34"}) == []
    # act: a feature's name and an undeclared attribute beside a declared one
    problems = domain.check_attributes(protected, {"sex": "female", "race": "x", "age": "30"})
    # check: each undeclared name once, sorted, saying what the model declares
    assert [(p.kind, p.feature) for p in problems] == [("attribute", "age"), ("attribute", "race")]
    assert str(problems[1]) == ("attribute 'race' is not a protected attribute of the model (it declares: "
                                "age_group, sex)")
    assert "(it declares: none)" in str(domain.check_attributes(set(), {"sex": "female"})[0])


def test_valid_features_have_no_problems():
    assert domain.check_features(SPECS, {"income": 1, "debt_ratio": 0.5, "age": 30.0, "purpose": "car"}) == []


def test_every_offending_feature_is_named_once_with_what_is_wrong():
    features = {"income": "a lot", "debt_ratio": 9.0, "age": 30.5, "purpose": "yacht", "shoe_size": 44}
    # act
    problems = {p.feature: p.problem for p in domain.check_features(SPECS[:3] + SPECS[3:], features)}
    # check
    assert problems == {
        "income": "must be a float, got a string",
        "debt_ratio": "= 9.0 is above the schema maximum 5.0",
        "age": "must be an int, got 30.5",
        "purpose": "= 'yacht' is not a known category (business, car, education, other)",
        "shoe_size": "is not in the version's feature schema",
    }


@pytest.mark.parametrize("value,problem", [
    (math.nan, "is NaN; send a finite number"),
    (math.inf, "is infinite; send a finite number"),
    (-math.inf, "is infinite; send a finite number"),
    (None, "is null; send a float"),
    (True, "must be a float, got a bool"),
    (-1, "= -1 is below the schema minimum 0.0"),
    ([1], "must be a float, got a list"),
])
def test_numbers_must_be_finite_typed_and_in_range(value, problem):
    features = {"income": value, "debt_ratio": 1.0, "age": 30, "purpose": "car"}
    assert [str(p) for p in domain.check_features(SPECS, features)] == [f"feature 'income' {problem}"]


def test_the_quick_check_of_valid_requests_agrees_with_every_check_on_random_requests():
    # check_features skips building problems when every value is plainly valid (the hot path):
    # it must find a problem wherever the full checks do.
    import random

    rng = random.Random(3)
    values = [0, 1, -1, 7, 2**53 - 1, 2**53, -(2**60), 0.0, -0.0, 0.5, 3.0, 1e300, math.nan, math.inf,
              -math.inf, True, False, None, "car", "yacht", "", [1], {"a": 1}, 2.5, 5.0, 5.5, -0.1]
    specs = [FeatureSpec(name="f", dtype="float"), FeatureSpec(name="i", dtype="int"),
             FeatureSpec(name="b", dtype="bool"), FeatureSpec(name="s", dtype="string"),
             *SPECS]
    quick = 0
    for _ in range(20_000):
        schema = rng.sample(specs, rng.randint(1, 3))
        features = {spec.name: rng.choice(values) for spec in schema if rng.random() < 0.95}
        if rng.random() < 0.05:
            features["extra"] = 1.0
        found = domain.check_features(schema, features)
        assert found == domain._problems(schema, features), (schema, features)
        quick += not found
    assert quick > 1000  # the valid case was drawn often enough to test the quick path


def test_missing_features_are_named():
    problems = domain.check_features(SPECS, {"income": 1.0})
    missing = ("debt_ratio", "age", "purpose")
    assert [str(p) for p in problems] == [f"feature '{n}' is missing" for n in missing]


@pytest.mark.parametrize("use_case,expected", [
    ("credit", ["approve", "review", "review", "decline", "decline"]),
    ("fraud", ["allow", "review", "review", "block", "block"]),
])
def test_the_policy_turns_the_adverse_probability_into_a_decision(use_case, expected):
    policy = DecisionPolicy(review_at=0.35, decline_at=0.6)
    assert [domain.decide(policy, use_case, s) for s in (0.1, 0.35, 0.5, 0.6, 0.99)] == expected
    assert domain.is_adverse(use_case, expected[-1]) and not domain.is_adverse(use_case, expected[0])


def test_linear_impacts_are_summed_back_to_their_feature_and_only_adverse_ones_become_reasons():
    impacts = domain.linear_impacts([1.0, 2.0, -1.0, 0.5], [1, 1, 0, 3], [0, 0.5, 0.2, 1],
                                    ["purpose", "purpose", "income", "age"])
    assert impacts == pytest.approx({"purpose": 2.0, "income": 0.2, "age": 1.0})
    reasons = domain.principal_reasons({**impacts, "debt_ratio": -3.0, "x": 0.1, "y": 0.05},
                                       {"purpose": "car", "income": 1, "age": 2, "debt_ratio": 3,
                                        "x": 0, "y": 0})
    assert [r.feature for r in reasons] == ["purpose", "age", "income", "x"]  # at most 4, positive only


def _estimator(kind: str) -> Estimator:
    model = linear_pipeline() if kind == "linear" else boosted_pipeline()
    return Estimator(SPECS, model, 1)


def test_the_linear_explanation_adds_up_to_the_models_log_odds_against_the_training_mean():
    parts = _estimator("linear")
    explainer = build_explainer(parts, profile())
    assert isinstance(explainer, LinearExplainer)
    # check: z̄ is the training data's mean in the model's input space (one-hot columns: frequencies)
    x, _ = training_data()
    assert np.allclose(explainer.z_ref, explainer.transform(x).mean(axis=0), atol=1e-9)
    # check: Σ impacts = logit(x) − logit(z̄), exactly: the reasons are the model's own arithmetic
    row = domain.model_row(SPECS, RISKY)
    impacts = explainer.impacts(row, 0.0)
    lr = linear_pipeline()[-1]
    logit = float(linear_pipeline().decision_function(np.array([row], dtype=object))[0])
    at_reference = float(lr.intercept_[0] + lr.coef_[0] @ explainer.z_ref)
    assert sum(impacts.values()) == pytest.approx(logit - at_reference)
    assert set(impacts) == {"income", "debt_ratio", "age", "purpose"}
    # check: the risky applicant's reasons: high debt, low income, business purpose, young
    reasons = domain.principal_reasons(impacts, RISKY)
    assert {r.feature for r in reasons} == {"debt_ratio", "income", "purpose", "age"}


def test_other_models_are_explained_by_substituting_each_feature_with_its_reference():
    parts = _estimator("boosted")
    explainer = build_explainer(parts, profile())
    assert isinstance(explainer, SubstitutionExplainer)
    row = domain.model_row(SPECS, RISKY)
    score = float(parts.scores([row])[0])
    # act
    impacts = explainer.impacts(row, score)
    # check: each impact is the score drop when that one feature takes its median / mode
    for j, spec in enumerate(SPECS):
        substituted = list(row)
        substituted[j] = explainer.reference[j]
        assert impacts[spec.name] == pytest.approx(score - float(parts.scores([substituted])[0]))
    assert explainer.reference[3] == "car"  # the most frequent purpose
    assert max(impacts, key=impacts.get) in {"debt_ratio", "income"}
