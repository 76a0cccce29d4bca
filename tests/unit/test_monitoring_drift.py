"""Drift figures: the same numbers as scipy, and verdicts that need significance and size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from contracts.monitoring.policy import DriftPolicy
from services.monitoring.drift import chi_square, feature_drift, fill_empty, ks_test, psi, wasserstein
from services.monitoring.reference import build_profile

SCHEMA = [{"name": "income", "dtype": "float"}, {"name": "age", "dtype": "int"},
          {"name": "purpose", "dtype": "string", "categories": ["car", "home", "other"]}]


def samples(rng: np.random.Generator, kind: str, n1: int, n2: int, shift: float) -> tuple[np.ndarray, ...]:
    """Two sorted samples: continuous (no ties) or small integers (many ties, within and across)."""
    if kind == "ties":
        a, b = rng.integers(0, 8, n1), rng.integers(0, 8, n2) + (rng.random(n2) < shift)
    else:
        a, b = rng.normal(0, 1, n1), rng.normal(shift, 1, n2)
    return np.sort(a.astype(float)), np.sort(b.astype(float))


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("n1,n2,shift", [
    (1, 1, 0.0), (7, 3, 0.5), (50, 50, 0.0), (200, 350, 0.3), (1000, 999, 0.1),
    (5000, 3000, 0.05), (5000, 10_000, 0.02),  # exact: both ≤ 10,000
    (5000, 10_001, 0.03), (5000, 40_000, 0.0), (3000, 60_000, 0.2),  # asymptotic
])
def test_ks_statistic_and_p_value_equal_scipy_ks_2samp(kind, n1, n2, shift):
    rng = np.random.default_rng(n1 * 7 + n2)
    reference, current = samples(rng, kind, n1, n2, shift)
    # act
    d, p = ks_test(reference, current)
    # check: scipy's own figures for method="auto", to 1e-9 (in practice: bit for bit)
    expected = stats.ks_2samp(reference, current)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert abs(p - expected.pvalue) <= 1e-9


@pytest.mark.parametrize("method", ["exact", "asymp"])
def test_ks_methods_other_than_auto_equal_scipy_too(method):
    rng = np.random.default_rng(3)
    reference, current = samples(rng, "ties", 800, 1300, 0.2)
    # act
    d, p = ks_test(reference, current, method)
    # check
    expected = stats.ks_2samp(reference, current, method=method)
    assert (d, p) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-9)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("n1,n2,shift", [(1, 1, 0.0), (3, 8, 1.0), (500, 500, 0.2), (5000, 100_000, 0.1)])
def test_wasserstein_equals_scipy_wasserstein_distance(kind, n1, n2, shift):
    rng = np.random.default_rng(n1 + n2)
    u, v = samples(rng, kind, n1, n2, shift)
    # act
    distance = wasserstein(u, v)
    # check
    assert distance == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-15)


def test_psi_fills_empty_shares_as_evidently_does_and_is_zero_for_equal_shares():
    reference, current = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.4, 0.3, 0.2, 0.1])
    # act
    value = psi(reference, current)
    # check: the empty reference share counts as 0.0001
    r = np.array([0.5, 0.3, 0.2, 1e-4])
    assert value == pytest.approx(float(np.sum((r - current) * np.log(r / current))), rel=1e-12)
    assert psi(current, current) == 0.0
    # check: below 0.0001, an empty share becomes a millionth of the smallest one
    assert fill_empty(np.array([0.99995, 0.00005, 0.0]))[2] == pytest.approx(5e-11)


def test_chi_square_p_value_equals_scipy_and_an_unseen_category_gives_zero():
    expected, observed = np.array([400.0, 300.0, 200.0, 100.0]), np.array([380.0, 330.0, 190.0, 100.0])
    # act / check
    assert chi_square(expected, observed) == pytest.approx(stats.chisquare(observed, expected).pvalue,
                                                           abs=1e-12)
    assert chi_square(np.array([500.0, 500.0, 0.0]), np.array([499.0, 500.0, 1.0])) == 0.0


def reference_and_window(rng: np.random.Generator, rows: int = 4000, window: int = 3000,
                         income_shift: float = 0.0, purpose_p=(0.5, 0.3, 0.2)):
    ref = {"income": rng.normal(50_000, 10_000, rows), "age": rng.integers(18, 80, rows),
           "purpose": rng.choice(["car", "home", "other"], rows, p=[0.5, 0.3, 0.2])}
    cur = {"income": rng.normal(50_000 + income_shift * 10_000, 10_000, window),
           "age": rng.integers(18, 80, window),
           "purpose": rng.choice(["car", "home", "other"], window, p=purpose_p)}
    return build_profile(ref, SCHEMA, scores=rng.random(rows), sample_size=5000), cur


def test_a_shifted_numeric_and_a_shifted_categorical_feature_drift_and_the_rest_do_not():
    profile, window = reference_and_window(np.random.default_rng(1), income_shift=0.5,
                                           purpose_p=(0.3, 0.3, 0.4))
    # act
    figures = feature_drift(profile, window, DriftPolicy())
    # check: Bonferroni over the 3 features tested, and reasons that name the deciding figures
    assert figures.alpha_corrected == pytest.approx(0.05 / 3)
    assert figures.drifted_features == ["income", "purpose"]
    income, age, purpose = figures.features
    assert income.reason.startswith("KS p = ") and "normed Wasserstein" in income.reason
    assert purpose.chi2_pvalue < 1e-6 and purpose.psi >= 0.2 and purpose.ks_pvalue is None
    assert not age.drifted and age.ks_pvalue > figures.alpha_corrected


@pytest.mark.parametrize("method", ["asymp", "auto"])
def test_a_reported_ks_p_value_is_what_scipy_gives_for_the_profile_sample_and_the_window(method):
    profile, window = reference_and_window(np.random.default_rng(8), rows=8000, income_shift=0.1)
    # act
    income = feature_drift(profile, window, DriftPolicy(ks_method=method)).features[0]
    # check: what a reviewer reproduces from the registry's profile and the window's values
    expected = stats.ks_2samp(profile.features["income"].sample, window["income"], method=method)
    assert (income.ks_statistic, income.ks_pvalue) == pytest.approx((expected.statistic, expected.pvalue),
                                                                     abs=1e-12)
    assert income.n_reference == 5000 and income.n_current == 3000


def test_a_small_shift_in_a_large_window_is_significant_but_too_small_to_raise_an_alarm():
    # 0.07 sd against the reference's 5,000-value sample: KS is significant, the effect is not
    profile, window = reference_and_window(np.random.default_rng(2), rows=20_000, window=100_000,
                                           income_shift=0.07)
    # act
    figures = feature_drift(profile, window, DriftPolicy())
    # check
    income = figures.features[0]
    assert income.ks_pvalue < figures.alpha_corrected and income.wasserstein_norm < 0.1
    assert not income.drifted and " but normed Wasserstein" in income.reason


def test_score_drift_is_one_more_test_in_the_bonferroni_family():
    rng = np.random.default_rng(3)
    profile, window = reference_and_window(rng)
    # act
    figures = feature_drift(profile, window, DriftPolicy(), scores=rng.random(3000) ** 2)
    # check
    assert figures.alpha_corrected == pytest.approx(0.05 / 4)
    assert figures.score.feature == "score" and figures.score.drifted
    assert figures.drifted_features == []  # the score is reported apart from the inputs


def test_an_empty_window_tests_nothing_and_says_why():
    profile, _ = reference_and_window(np.random.default_rng(4))
    # act
    figures = feature_drift(profile, {"income": [], "age": [], "purpose": []}, DriftPolicy(), scores=[])
    # check
    assert figures.drifted_features == [] and not figures.score.drifted
    assert all(f.reason == "not tested: 0 present values, fewer than min_samples 200"
               for f in [*figures.features, figures.score])
    assert figures.alpha_corrected == 0.05


def test_all_missing_and_absent_features_are_reported_untested_and_leave_the_family():
    profile, window = reference_and_window(np.random.default_rng(5))
    window["income"] = [None] * 1500 + [float("nan")] * 1500
    del window["purpose"]
    # act
    figures = feature_drift(profile, window, DriftPolicy())
    # check
    income, age, purpose = figures.features
    assert income.n_current == 0 and income.ks_pvalue is None and not income.drifted
    assert purpose.reason == "not tested: absent from the window"
    assert figures.alpha_corrected == 0.05 and age.ks_pvalue is not None


def test_a_constant_reference_feature_is_normed_by_the_floor_and_any_move_drifts():
    rng = np.random.default_rng(6)
    schema = [{"name": "flag", "dtype": "float"}]
    profile = build_profile({"flag": np.ones(1000)}, schema, scores=rng.random(1000))
    # act
    same = feature_drift(profile, {"flag": np.ones(500)}, DriftPolicy()).features[0]
    moved = feature_drift(profile, {"flag": np.r_[np.ones(400), np.zeros(100)]}, DriftPolicy()).features[0]
    # check: std 0 → the norm is 0.001 (Evidently's floor), no division by zero
    assert profile.features["flag"].std == 0.0 and profile.features["flag"].edges == [1.0]
    assert (same.drifted, same.wasserstein_norm, same.ks_statistic) == (False, 0.0, 0.0)
    assert moved.drifted and moved.wasserstein_norm == pytest.approx(0.2 / 0.001)


def test_window_values_may_be_lists_with_none_strings_and_numpy_arrays():
    profile, window = reference_and_window(np.random.default_rng(7))
    as_lists = {"income": [*window["income"].tolist(), None, "n/a"], "age": window["age"].tolist(),
                "purpose": [*window["purpose"].tolist(), None]}
    # act
    from_lists, from_arrays = (feature_drift(profile, w, DriftPolicy()) for w in (as_lists, window))
    # check: missing and non-numeric values are dropped, the figures are the arrays' figures
    assert from_lists == from_arrays
