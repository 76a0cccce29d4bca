"""The reference profile: what build_profile computes, and what the contract refuses."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from contracts.canonical import dumps
from contracts.monitoring.profile import NumericProfile, ReferenceProfile
from contracts.registry.api import FeatureSpec
from services.monitoring.reference import build_profile

SCHEMA = [FeatureSpec(name="income", dtype="float"), FeatureSpec(name="children", dtype="int"),
          {"name": "purpose", "dtype": "string"}, {"name": "online", "dtype": "bool"}]


def applicants(rng: np.random.Generator, n: int) -> dict[str, list]:
    income = rng.lognormal(10, 0.5, n).tolist()
    income[:10] = [None] * 5 + [float("nan")] * 5
    return {"income": income, "children": rng.integers(0, 4, n).tolist(),
            "purpose": [*rng.choice(["car", "home"], n - 3).tolist(), None, None, "car"],
            "online": (rng.random(n) < 0.3).tolist()}


def test_numeric_features_get_decile_bins_moments_and_a_seeded_sorted_sample():
    rng = np.random.default_rng(1)
    columns = applicants(rng, 8000)
    # act
    profile = build_profile(columns, SCHEMA, scores=rng.random(8000), sample_size=1000, seed=7)
    # check: missing counted, deciles as edges, a tenth of the values in each bin
    income = profile.features["income"]
    present = np.array([v for v in columns["income"][10:]])
    assert (income.count, income.missing) == (7990, 10)
    assert income.edges == pytest.approx(np.quantile(present, np.arange(1, 10) / 10).tolist())
    assert income.proportions == pytest.approx([0.1] * 10, abs=2e-4)
    assert (income.mean, income.std) == pytest.approx((present.mean(), present.std()))
    # check: the sample is sorted, drawn from the values, and the same for the same seed
    assert len(income.sample) == 1000 and income.sample == sorted(income.sample)
    assert set(income.sample) <= set(present.tolist())
    again = build_profile(columns, SCHEMA, scores=rng.random(8000), sample_size=1000, seed=7)
    assert again.features["income"].sample == income.sample


def test_few_distinct_values_merge_equal_edges_into_fewer_bins():
    rng = np.random.default_rng(2)
    # act
    children = build_profile(applicants(rng, 2000), SCHEMA, scores=rng.random(2000)).features["children"]
    # check: 0..3 children → edges at most {0, 1, 2, 3}, strictly increasing
    assert set(children.edges) <= {0.0, 1.0, 2.0, 3.0} and children.edges == sorted(set(children.edges))
    assert len(children.proportions) == len(children.edges) + 1
    assert sum(children.proportions) == pytest.approx(1)


def test_string_and_bool_features_get_category_shares_of_the_present_values():
    rng = np.random.default_rng(3)
    columns = applicants(rng, 1000)
    # act
    profile = build_profile(columns, SCHEMA, scores=rng.random(1000))
    # check
    purpose, online = profile.features["purpose"], profile.features["online"]
    assert (purpose.kind, purpose.count, purpose.missing) == ("categorical", 998, 2)
    assert purpose.frequencies["car"] == columns["purpose"].count("car") / 998
    assert set(online.frequencies) == {"False", "True"}


def test_group_rates_come_from_the_holdout_decisions_labels_and_groups():
    scores = np.array([0.9, 0.2, 0.7, 0.1, 0.8, 0.3])
    labels = [1, 0, 0, 0, 1, 1]
    sex = ["f", "f", "f", "m", "m", "m"]
    # act: adverse = score ≥ 0.6
    profile = build_profile({"income": [1.0, 2.0]}, SCHEMA[:1], scores=scores, labels=labels,
                            groups={"sex": sex}, decision_threshold=0.6)
    # check: f: declined 2 of 3; its truly good (label 0) are rows 1 and 2, one approved
    f, m = profile.groups["sex"]["f"], profile.groups["sex"]["m"]
    assert (f.count, f.adverse_rate, f.label_rate, f.true_positive_rate) == pytest.approx(
        (3, 2 / 3, 1 / 3, 0.5))
    assert (m.adverse_rate, m.true_positive_rate) == pytest.approx((1 / 3, 1.0))
    assert profile.label_rate == 0.5 and profile.decision_threshold == 0.6
    assert profile.score.count == 6 and profile.rows == 2


def test_a_profile_survives_canonical_json_and_validation_unchanged():
    rng = np.random.default_rng(4)
    profile = build_profile(applicants(rng, 3000), SCHEMA, scores=rng.random(3000))
    # act
    again = ReferenceProfile.model_validate_json(dumps(profile.model_dump(mode="json")))
    # check
    assert again == profile


def test_group_rates_without_decisions_are_refused():
    with pytest.raises(ValueError, match="adverse or decision_threshold"):
        build_profile({"income": [1.0]}, SCHEMA[:1], scores=[0.5], groups={"sex": ["f"]})


def valid_numeric() -> dict:
    return {"kind": "numeric", "count": 4, "missing": 0, "min": 1.0, "max": 4.0, "mean": 2.5,
            "median": 2.5, "std": 1.118, "edges": [2.0, 3.0], "proportions": [0.5, 0.25, 0.25],
            "sample": [1.0, 2.0, 3.0, 4.0]}


@pytest.mark.parametrize("change,message", [
    ({"proportions": [0.5, 0.5]}, "proportions needs len(edges) + 1 = 3 entries, not 2"),
    ({"edges": [3.0, 2.0]}, "edges must be strictly increasing"),
    ({"proportions": [0.5, 0.25, 0.2]}, "proportions must sum to 1"),
    ({"proportions": [1.5, -0.25, -0.25]}, "less than or equal to 1"),
    ({"mean": float("nan")}, "finite number"),
    ({"sample": [4.0, 1.0]}, "sample must be sorted"),
    ({"min": None}, "required when count > 0"),
])
def test_an_inconsistent_numeric_profile_is_refused_with_a_clear_message(change, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        NumericProfile.model_validate({**valid_numeric(), **change})


def test_feature_counts_must_add_up_to_the_rows_and_rates_lie_in_0_1():
    body = {"rows": 5, "features": {"x": valid_numeric()}, "score": valid_numeric()}
    with pytest.raises(ValidationError, match="count \\+ missing = 4, but the profile describes 5 rows"):
        ReferenceProfile.model_validate(body)
    body["rows"] = 4
    with pytest.raises(ValidationError, match="groups.sex.f.adverse_rate"):
        ReferenceProfile.model_validate({**body, "groups": {"sex": {"f": {"count": 3, "adverse_rate": 1.2}}}})
    assert ReferenceProfile.model_validate(json.loads(json.dumps(body))).rows == 4
