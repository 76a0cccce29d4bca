"""Monitoring's figures for one window, as they go into alert events and reports.

Every figure's definition is in the docstring of the function that computes it
(services/monitoring/{drift,quality,performance,fairness}.py). A figure that is undefined for the
window (no values, one class, a zero denominator) is None, never NaN.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.monitoring.base import Figure


class FeatureDrift(Figure):
    """One feature (or the score) of a window against the reference profile."""

    feature: str
    kind: Literal["numeric", "categorical"]
    n_reference: int = Field(description="reference values the test used (numeric: the profile's sample)")
    n_current: int = Field(description="present values in the window")
    psi: float | None = Field(description="population stability index over the reference bins / categories")
    ks_statistic: float | None = Field(description="two-sample KS statistic (numeric)")
    ks_pvalue: float | None = Field(
        description="two-sided KS p-value, as scipy.stats.ks_2samp with the policy's ks_method (numeric)")
    wasserstein_norm: float | None = Field(description="Wasserstein distance / reference std (numeric)")
    chi2_pvalue: float | None = Field(description="chi-square p-value of the window's category counts "
                                                  "against the reference shares (categorical)")
    drifted: bool
    reason: str = Field(description="which tests decided, with their figures and thresholds")


class DriftFigures(Figure):
    features: list[FeatureDrift]
    score: FeatureDrift | None = Field(description="the score's drift, when scores were given")
    alpha_corrected: float = Field(description="the per-test significance level: alpha / tests")
    drifted_features: list[str] = Field(description="input features that drifted (not the score)")


class FeatureQuality(Figure):
    feature: str
    missing_rate: float | None = Field(description="missing values / window values")
    out_of_range_rate: float | None = Field(
        description="present values outside the schema's [min, max] / present values (numeric)")
    unseen_categories: list[str] = Field(description="categories not in the schema, most frequent first "
                                                     "(at most 20)")
    unseen_rate: float | None = Field(
        description="present values not among the schema's categories / present values (string)")
    degraded: bool
    reason: str


class PerformanceFigures(Figure):
    count: int = Field(description="labelled decisions")
    positives: int = Field(description="of which label 1 (the adverse outcome: default, fraud)")
    auc: float | None = Field(description="ROC AUC; None with a single class")
    precision: float | None = Field(description="positives among score ≥ threshold")
    recall: float | None = Field(description="share of positives with score ≥ threshold")
    false_positive_rate: float | None = Field(description="share of negatives with score ≥ threshold")
    brier: float | None = Field(description="mean squared difference between score and label")
    ece: float | None = Field(description="expected calibration error over equal-width score bins")
    threshold: float = Field(description="the decision threshold the rates are taken at")


class GroupFairness(Figure):
    group: str
    count: int = Field(description="decisions in the group")
    adverse_rate: float = Field(description="share of adverse decisions (decline / block)")
    true_positive_rate: float | None = Field(
        description="share of favourable decisions among the group's truly good (label 0)")
    eligible: bool = Field(description="count ≥ the policy's min_group_size: part of the verdict")


class AttributeFairness(Figure):
    attribute: str
    groups: list[GroupFairness]
    demographic_parity_difference: float | None = Field(
        description="highest − lowest selection (favourable) rate over eligible groups")
    disparate_impact_ratio: float | None = Field(
        description="lowest / highest selection rate over eligible groups")
    equal_opportunity_difference: float | None = Field(
        description="highest − lowest true-positive rate over eligible groups with truly good members")
    violated: bool
    reason: str
