"""Fairness figures: fairlearn's, with y_pred = favourable decision and y_true = truly good."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    true_positive_rate,
)

from contracts.monitoring.policy import FairnessPolicy
from services.monitoring.fairness import fairness


def decisions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups a, b, c; group c declined more often; labels 1 (default) more often when declined."""
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    adverse = rng.random(n) < np.where(group == "c", 0.45, 0.25)
    labels = (rng.random(n) < np.where(adverse, 0.5, 0.1)).astype(int)
    return group, adverse, labels


@pytest.mark.parametrize("n", [300, 5000])
def test_parity_impact_and_opportunity_equal_fairlearn(n):
    group, adverse, labels = decisions(np.random.default_rng(n), n)
    # act
    (sex,) = fairness({"sex": group.tolist()}, adverse, labels, FairnessPolicy(min_group_size=1))
    # check: fairlearn on favourable (not adverse) decisions and truly good (label 0) applicants
    y_true, y_pred = 1 - labels, (~adverse).astype(int)
    assert abs(sex.demographic_parity_difference
               - demographic_parity_difference(y_true, y_pred, sensitive_features=group)) <= 1e-9
    assert abs(sex.disparate_impact_ratio
               - demographic_parity_ratio(y_true, y_pred, sensitive_features=group)) <= 1e-9
    assert abs(sex.equal_opportunity_difference
               - equal_opportunity_difference(y_true, y_pred, sensitive_features=group)) <= 1e-9
    by_group = MetricFrame(metrics=true_positive_rate, y_true=y_true, y_pred=y_pred,
                           sensitive_features=group).by_group
    assert {g.group: g.true_positive_rate for g in sex.groups} == pytest.approx(by_group.to_dict(), abs=1e-9)


def test_a_group_selected_at_less_than_four_fifths_of_the_best_violates_the_policy():
    group = ["a"] * 100 + ["b"] * 100
    adverse = [False] * 90 + [True] * 10 + [False] * 60 + [True] * 40  # selected 0.9 vs 0.6
    # act
    (attribute,) = fairness({"age_group": group}, adverse, None, FairnessPolicy())
    # check
    assert attribute.violated and attribute.disparate_impact_ratio == pytest.approx(0.6 / 0.9)
    assert attribute.reason.startswith("disparate impact 0.667 < 0.8 ('b' 0.600 vs 'a' 0.900")
    assert attribute.equal_opportunity_difference is None  # no labels, no true-positive rates


def test_groups_below_the_minimum_size_are_reported_but_do_not_decide():
    group = ["a"] * 100 + ["b"] * 100 + ["tiny"] * 5
    adverse = [False] * 80 + [True] * 20 + [False] * 78 + [True] * 22 + [True] * 5
    # act
    (attribute,) = fairness({"sex": group}, adverse, None, FairnessPolicy(min_group_size=30))
    # check: 'tiny' (all declined) would break the four-fifths rule, but it has 5 decisions
    tiny = next(g for g in attribute.groups if g.group == "tiny")
    assert (tiny.count, tiny.adverse_rate, tiny.eligible) == (5, 1.0, False)
    assert not attribute.violated and attribute.demographic_parity_difference == pytest.approx(0.02)
    assert "not judged, fewer than 30 decisions: tiny" in attribute.reason


def test_unlabelled_rows_count_for_selection_and_rows_without_a_group_are_left_out():
    group = ["a", "a", "b", "b", None]
    adverse = [False, True, False, False, True]
    labels = [0, None, 0, 0, 1]
    # act
    (attribute,) = fairness({"sex": group}, adverse, labels, FairnessPolicy(min_group_size=1))
    # check: a selects 1 of 2 (label unknown for the declined one), b 2 of 2
    assert [(g.group, g.count, g.adverse_rate, g.true_positive_rate) for g in attribute.groups] == [
        ("a", 2, 0.5, 1.0), ("b", 2, 0.0, 1.0)]
    assert attribute.equal_opportunity_difference == 0.0


def test_one_eligible_group_is_not_judged():
    (attribute,) = fairness({"sex": ["a"] * 40}, [True] * 40, [1] * 40, FairnessPolicy())
    assert attribute.demographic_parity_difference is None and not attribute.violated
    assert attribute.reason == "not judged: 1 group(s) with at least 30 decisions"
