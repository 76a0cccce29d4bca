"""The reference profile of a model version, computed once from its training and holdout data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from contracts.monitoring.profile import CategoricalProfile, GroupRate, NumericProfile, ReferenceProfile
from contracts.registry.api import FeatureSpec
from services.monitoring.columns import bin_counts, category_counts, is_numeric, present_numbers
from services.monitoring.fairness import group_counts


def build_profile(
    columns: Mapping[str, Sequence],
    feature_schema: Sequence[dict | FeatureSpec],
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    adverse: Sequence[bool] | np.ndarray | None = None,
    decision_threshold: float | None = None,
    bins: int = 10,
    sample_size: int = 1000,
    seed: int = 0,
) -> ReferenceProfile:
    """The profile monitoring compares live traffic against.

    `columns` holds one sequence per feature of `feature_schema` (the reference rows, e.g. the
    training set): float and int features get a NumericProfile, string and bool ones a
    CategoricalProfile. `scores`, `labels` (1 = adverse outcome), `adverse` (the decision was a
    decline / block) and each attribute's `groups` describe the same rows as each other (e.g. the
    holdout), which may differ from the feature rows. `adverse` defaults to
    score ≥ decision_threshold. `bins` quantile bins and a sorted sample of at most `sample_size`
    values (seeded by `seed`) per numeric feature; see NumericProfile. None and NaN are missing.
    The samples dominate the profile's JSON: ~19 bytes a value, so 20 numeric features at the
    default 1,000 take ~380 kB in the version's metadata and its registered event (the registry
    refuses metadata over MODELGOV_MAX_METADATA_BYTES, 512 KiB, below NATS's 1 MiB message limit).
    A 1,000-value reference detects a 0.5 sd shift in a 1,000-decision window at p < 1e-10.
    """
    specs = [s if isinstance(s, FeatureSpec) else FeatureSpec.model_validate(s) for s in feature_schema]
    absent = [s.name for s in specs if s.name not in columns]
    if absent:
        raise ValueError(f"no reference column for feature(s): {', '.join(absent)}")
    lengths = {len(columns[s.name]) for s in specs}
    if len(lengths) > 1:
        raise ValueError(f"reference columns differ in length: {sorted(lengths)}")
    features = {s.name: numeric_profile(columns[s.name], bins, sample_size, seed) if is_numeric(s)
                else categorical_profile(columns[s.name]) for s in specs}
    scores = np.asarray(scores, dtype=float)
    if adverse is None and decision_threshold is not None:
        adverse = scores >= decision_threshold
    known = None if labels is None else present_numbers(labels)[0]
    return ReferenceProfile(
        rows=lengths.pop() if lengths else 0,
        features=features,
        score=numeric_profile(scores, bins, sample_size, seed),
        label_rate=float(known.mean()) if known is not None and len(known) else None,
        groups=_group_rates(groups or {}, adverse, labels),
        decision_threshold=decision_threshold,
    )


def numeric_profile(values: Sequence | np.ndarray, bins: int = 10, sample_size: int = 1000,
                    seed: int = 0) -> NumericProfile:
    """Moments (std with ddof=0), inner edges at the reference's 1/bins … (bins−1)/bins quantiles
    (numpy's default linear interpolation; equal edges merged, so a feature with few distinct
    values gets fewer bins), each bin's share, and a sorted sample drawn without replacement by a
    generator seeded with `seed` (all values when there are no more than `sample_size`)."""
    present, n = present_numbers(values)
    if not len(present):
        return NumericProfile(count=0, missing=n)
    present.sort()
    edges = np.unique(_quantiles(present, np.arange(1, bins) / bins))
    if len(present) > sample_size:
        pick = np.random.default_rng(seed).choice(len(present), size=sample_size, replace=False)
        sample = present[np.sort(pick)]  # indices into sorted values: sorted indices give a sorted sample
    else:
        sample = present
    return NumericProfile(
        count=len(present), missing=n - len(present),
        min=float(present[0]), max=float(present[-1]), mean=_within(present.mean(), present),
        median=float(_quantiles(present, np.array([0.5]))[0]), std=float(present.std()),
        edges=edges.tolist(), proportions=(bin_counts(present, edges) / len(present)).tolist(),
        sample=sample.tolist(),
    )


def _quantiles(ascending: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile's default (linear) method on values already sorted, without its partition."""
    h = (len(ascending) - 1) * q
    low = np.floor(h).astype(np.int64)
    a, b = ascending[low], ascending[np.minimum(low + 1, len(ascending) - 1)]
    t = h - low
    # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)


def _within(mean: float, present: np.ndarray) -> float:
    # the float mean of equal values can land an ulp outside [min, max]
    return float(min(max(mean, present[0]), present[-1]))


def categorical_profile(values: Sequence | np.ndarray) -> CategoricalProfile:
    """Each category's share of the present values (categories sorted by name)."""
    counts, missing = category_counts(values)
    total = sum(counts.values())
    return CategoricalProfile(count=total, missing=missing,
                              frequencies={c: counts[c] / total for c in sorted(counts)})


def _group_rates(groups: Mapping[str, Sequence], adverse, labels) -> dict[str, dict[str, GroupRate]]:
    if groups and adverse is None:
        raise ValueError("group rates need the reference decisions: pass adverse or decision_threshold")
    return {attribute: {g: GroupRate(count=c.count, adverse_rate=c.adverse_rate, label_rate=c.label_rate,
                                     true_positive_rate=c.true_positive_rate)
                        for g, c in group_counts(values, adverse, labels).items()}
            for attribute, values in groups.items()}
