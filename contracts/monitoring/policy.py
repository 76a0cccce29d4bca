"""Thresholds monitoring judges a window by, with defaults a model-risk officer can sign off."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.monitoring.base import Figure


class DriftPolicy(Figure):
    """A numeric feature drifts when its KS test is significant after Bonferroni correction AND the
    normed Wasserstein distance is large enough to matter; a categorical one when its chi-square
    test is significant AND its PSI is large enough. Significance alone would raise false alarms on
    large windows, where a negligible shift is highly significant."""

    alpha: float = Field(0.05, gt=0, lt=1, description=(
        "family-wise significance level: each of the k tests (features tested, plus the score) "
        "uses alpha / k (Bonferroni)"))
    wasserstein_threshold: float = Field(0.2, ge=0, description=(
        "minimum practical effect for a numeric feature: Wasserstein distance / reference std "
        "(population std, floored at 0.001). 0.2, not Evidently's 0.1: between a 1,000-decision "
        "window and a 1,000-value reference sample, 0.1 is within sampling noise often enough to "
        "raise a false alarm in about one calm window in ten"))
    psi_threshold: float = Field(0.2, ge=0, description=(
        "minimum practical effect for a categorical feature: PSI over its categories "
        "(0.1–0.2 moderate, ≥ 0.2 significant shift, the credit-risk convention)"))
    min_samples: int = Field(200, ge=1, description=(
        "a feature is tested only when the window holds at least this many present values"))
    ks_method: Literal["asymp", "auto", "exact"] = Field("asymp", description=(
        "KS p-value method, as scipy.stats.ks_2samp's: asymp = Smirnov's asymptotic distribution "
        "(milliseconds); auto = exact when neither sample exceeds 10,000 values, up to ~0.25 s per "
        "feature on a strongly shifted 10,000-value window"))


class QualityPolicy(Figure):
    """The share of bad inputs a window may hold, per feature."""

    max_missing_rate: float = Field(0.05, ge=0, le=1, description=(
        "share of the window's values that are missing (None, NaN, not a number)"))
    max_out_of_range_rate: float = Field(0.01, ge=0, le=1, description=(
        "share of present numeric values outside the feature schema's [min, max]"))
    max_unseen_rate: float = Field(0.01, ge=0, le=1, description=(
        "share of present string values not among the feature schema's categories"))


class PerformancePolicy(Figure):
    """How well a version must still rank and calibrate once outcomes arrive."""

    min_auc: float = Field(0.65, ge=0, le=1, description="lowest acceptable ROC AUC")
    max_auc_drop: float = Field(0.05, ge=0, le=1, description=(
        "largest acceptable fall of ROC AUC below the version's reference (registry metrics.auc)"))
    max_ece: float = Field(0.1, ge=0, le=1, description="largest acceptable expected calibration error")
    min_labelled: int = Field(200, ge=1, description=(
        "labelled decisions a window needs before performance is judged"))


class FairnessPolicy(Figure):
    """How differently protected groups may be treated; 'selected' means a favourable decision."""

    min_disparate_impact: float = Field(0.8, ge=0, le=1, description=(
        "lowest acceptable ratio of the lowest to the highest group selection rate "
        "(0.8: the four-fifths rule, 29 CFR 1607.4(D))"))
    max_demographic_parity_difference: float = Field(0.1, ge=0, le=1, description=(
        "largest acceptable difference between the highest and lowest group selection rate"))
    max_equal_opportunity_difference: float = Field(0.1, ge=0, le=1, description=(
        "largest acceptable difference in selection rate among the truly good (label 0) across groups"))
    min_group_size: int = Field(30, ge=1, description=(
        "groups with fewer decisions are reported but left out of the verdict"))
