"""Drift of a window's features and scores from a version's reference profile.

A numeric feature drifts when its two-sample KS test is significant at alpha / k (Bonferroni over
the k tests of the window) AND its normed Wasserstein distance reaches the policy's threshold; a
categorical one when its chi-square test is significant at alpha / k AND its PSI reaches the
threshold. Each window column is sorted once; the KS statistic, the Wasserstein distance and the
PSI bin counts all come from that sorted array and the profile's sorted sample in O(n) after the
sort, so a 100,000-row window costs a few milliseconds per feature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import chi2, kstwo

# The exact two-sample KS distribution scipy.stats.ks_2samp itself uses: reusing it (scipy is pinned)
# is what makes our p-values scipy's, to the last bit, without ks_2samp's own re-sort of both samples.
from scipy.stats._stats_py import _attempt_exact_2kssamp

from contracts.monitoring.figures import DriftFigures, FeatureDrift
from contracts.monitoring.policy import DriftPolicy
from contracts.monitoring.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from services.monitoring.columns import bin_counts, category_counts, present_numbers

SCORE = "score"
EXACT_MAX_N = 10_000  # ks_2samp(method="auto") is exact when neither sample is larger
STD_FLOOR = 0.001  # Evidently's floor for the Wasserstein norm: a constant reference is not a 0 divisor
EMPTY_SHARE = 1e-4  # the share an empty PSI bin counts as (Evidently's convention, see fill_empty)

NO_FIGURES = dict.fromkeys(("psi", "ks_statistic", "ks_pvalue", "wasserstein_norm", "chi2_pvalue"))
Window = np.ndarray | dict[str, int]  # sorted present numbers, or category counts


def feature_drift(reference: ReferenceProfile, current: Mapping[str, Sequence], policy: DriftPolicy,
                  scores: Sequence[float] | np.ndarray | None = None) -> DriftFigures:
    """Drift of each profiled feature in `current` (feature → the window's values), and of the
    window's `scores` against the reference score distribution when given. Features or scores with
    fewer than `policy.min_samples` present values (or absent, or without reference values) are
    reported untested; k counts the tests run, so alpha_corrected = alpha / k."""
    windows = {name: _window(profile, current.get(name, ())) for name, profile in reference.features.items()}
    score = None if scores is None else _window(reference.score, scores)
    tests = sum(_testable(reference.features[name], w, policy) for name, w in windows.items())
    tests += score is not None and _testable(reference.score, score, policy)
    alpha = policy.alpha / max(tests, 1)

    def figure(name: str, profile: NumericProfile | CategoricalProfile, window: Window) -> FeatureDrift:
        if _testable(profile, window, policy):
            return _judge(name, profile, window, alpha, policy)
        return _untested(name, profile, window, name not in current and window is not score, policy)

    features = [figure(name, profile, windows[name]) for name, profile in reference.features.items()]
    return DriftFigures(features=features,
                        score=None if score is None else figure(SCORE, reference.score, score),
                        alpha_corrected=alpha, drifted_features=[f.feature for f in features if f.drifted])


def _window(profile: NumericProfile | CategoricalProfile, values: Sequence) -> Window:
    if isinstance(profile, CategoricalProfile):
        return category_counts(values)[0]
    present, _ = present_numbers(values)
    present.sort()
    return present


def _size(window: Window) -> int:
    return sum(window.values()) if isinstance(window, dict) else len(window)


def _testable(profile: NumericProfile | CategoricalProfile, window: Window, policy: DriftPolicy) -> bool:
    return profile.count > 0 and _size(window) >= policy.min_samples


def _untested(name: str, profile, window: Window, absent: bool, policy: DriftPolicy) -> FeatureDrift:
    n = _size(window)
    reason = ("not tested: absent from the window" if absent
              else "not tested: the reference has no values" if profile.count == 0
              else f"not tested: {n} present values, fewer than min_samples {policy.min_samples}")
    return FeatureDrift(**NO_FIGURES, feature=name, kind=profile.kind, n_reference=_reference_size(profile),
                        n_current=n, drifted=False, reason=reason)


def _reference_size(profile: NumericProfile | CategoricalProfile) -> int:
    return len(profile.sample) if isinstance(profile, NumericProfile) else profile.count


def _judge(name: str, profile, window: Window, alpha: float, policy: DriftPolicy) -> FeatureDrift:
    n = _size(window)
    if isinstance(profile, CategoricalProfile):
        shares, counts = _category_shares(profile, window)
        p, size = chi_square(shares * n, counts), psi(shares, counts / n)
        tests = (_significant("chi-square", p, alpha), _effect("PSI", size, policy.psi_threshold))
        figures = {"psi": size, "chi2_pvalue": p}
    else:
        sample = np.asarray(profile.sample)
        d, p = ks_test(sample, window, policy.ks_method)
        distance = wasserstein(sample, window) / max(profile.std, STD_FLOOR)
        size = psi(np.asarray(profile.proportions), bin_counts(window, profile.edges) / n)
        tests = (_significant("KS", p, alpha), _effect("normed Wasserstein", distance,
                                                        policy.wasserstein_threshold))
        figures = {"psi": size, "ks_statistic": d, "ks_pvalue": p, "wasserstein_norm": distance}
    (significant, why_p), (large, why_size) = tests
    link = " and " if significant == large else " but "
    return FeatureDrift(**(NO_FIGURES | figures), feature=name, kind=profile.kind,
                        n_reference=_reference_size(profile), n_current=n,
                        drifted=significant and large, reason=why_p + link + why_size)


def _significant(test: str, p: float, alpha: float) -> tuple[bool, str]:
    return p < alpha, f"{test} p = {p:.3g} {'<' if p < alpha else '≥'} {alpha:.3g}"


def _effect(measure: str, value: float, threshold: float) -> tuple[bool, str]:
    return value >= threshold, f"{measure} {value:.3g} {'≥' if value >= threshold else '<'} {threshold:g}"


def _category_shares(profile: CategoricalProfile, window: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference shares and window counts over the categories seen in either (reference first)."""
    keys = [*profile.frequencies, *(k for k in window if k not in profile.frequencies)]
    shares = np.array([profile.frequencies.get(k, 0.0) for k in keys])
    return shares, np.array([window.get(k, 0) for k in keys], dtype=float)


# -- the statistics -------------------------------------------------------------------------------


def ks_test(reference: np.ndarray, current: np.ndarray, method: str = "auto") -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov–Smirnov test of two SORTED samples: (D, p), exactly as
    scipy.stats.ks_2samp(reference, current, method=method) gives them.

    D = sup_x |F_ref(x) − F_cur(x)| over the empirical CDFs. F_ref − F_cur only rises at reference
    values, and F_cur − F_ref only rises at window values up to the next reference value, so D is
    the largest of: F_ref − F_cur at each reference value, F_cur − F_ref just below each reference
    value, and 0: four binary searches of the reference sample, the same counts and divisions
    scipy makes. p: the exact distribution when method is "exact" (or "auto" with both samples
    ≤ 10,000), scipy's own code, D rounded to the lattice of attainable values as scipy does;
    otherwise the asymptotic kstwo.sf(D, round(n·m / (n + m))).
    """
    n1, n2 = len(reference), len(current)
    below_r = np.searchsorted(reference, reference, side="left")
    upto_r = np.searchsorted(reference, reference, side="right")
    below_c = np.searchsorted(current, reference, side="left")
    upto_c = np.searchsorted(current, reference, side="right")
    d = max(float(np.max(upto_r / n1 - upto_c / n2)), float(np.max(below_c / n2 - below_r / n1)), 0.0)
    g = math.gcd(n1, n2)
    exact = (max(n1, n2) <= EXACT_MAX_N if method == "auto"
             else method == "exact" and n1 // g < np.iinfo(np.int32).max / (n2 // g))
    if exact:
        done, d_exact, p = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
        if done:
            return float(d_exact), float(np.clip(p, 0, 1))
        d = d_exact  # scipy, too, goes on with the rounded statistic
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(d), float(np.clip(kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance between the empirical distributions of two SORTED samples, the
    figure scipy.stats.wasserstein_distance(u, v) gives: ∫ |F_u − F_v| dx, summed over the gaps
    between consecutive values of the merged sample. The merge inserts the (small) reference sample
    into the window by binary search. After the first k merged values, c of them from u,
    n·m·(F_u − F_v) = c·m − (k − c)·n: a running sum of +m per value from u and −n per value from
    v, whole numbers that float64 holds exactly."""
    n, m = len(u), len(v)
    before = np.searchsorted(v, u)  # u[i] goes before v[before[i]]: its merged slot is before[i] + i
    merged = np.insert(v, before, u)
    slots = before + np.arange(n)
    cdf_gap = np.full(n + m - 1, -float(n))  # the last merged value opens no gap
    cdf_gap[slots[slots < n + m - 1]] = m
    np.cumsum(cdf_gap, out=cdf_gap)
    np.abs(cdf_gap, out=cdf_gap)
    return float(np.dot(np.diff(merged), cdf_gap) / (n * m))


def fill_empty(shares: np.ndarray) -> np.ndarray:
    """Shares with the empty ones (0) replaced, so that ln(r / c) is finite: by 0.0001, or by a
    millionth of the smallest non-empty share when that is itself ≤ 0.0001 (Evidently 0.7's
    convention, so that our PSI of categories is its PSI)."""
    if shares.all():
        return shares
    smallest = shares[shares > 0].min()
    return np.where(shares > 0, shares, smallest / 1e6 if smallest <= EMPTY_SHARE else EMPTY_SHARE)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index Σ (r − c) · ln(r / c) over the bins (numeric: the reference's
    quantile bins; categorical: the categories seen in either), r and c the reference and window
    shares, empty shares filled as fill_empty says."""
    r, c = fill_empty(reference), fill_empty(current)
    return float(np.sum((r - c) * np.log(r / c)))


def chi_square(expected: np.ndarray, observed: np.ndarray) -> float:
    """p-value of Pearson's chi-square goodness-of-fit test of the window's category counts against
    the counts the reference shares predict (n × share), k − 1 degrees of freedom over the k
    categories seen in either: scipy.stats.chisquare(observed, expected). A category the reference
    never saw has expected count 0: the statistic is infinite and p = 0."""
    if np.any((expected == 0) & (observed > 0)):
        return 0.0
    if len(observed) < 2:
        return 1.0  # one category on both sides: nothing can differ
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return float(chi2.sf(statistic, len(observed) - 1))
