"""Data quality of a window's inputs against the version's feature schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from contracts.monitoring.figures import FeatureQuality
from contracts.monitoring.policy import QualityPolicy
from contracts.registry.api import FeatureSpec
from services.monitoring.columns import category_counts, is_numeric, present_numbers

MAX_UNSEEN_LISTED = 20


def data_quality(feature_schema: Sequence[dict | FeatureSpec], current: Mapping[str, Sequence],
                 policy: QualityPolicy) -> list[FeatureQuality]:
    """Per schema feature, over the window's n rows (a feature absent from `current` is all missing):
    - missing rate = missing values / n (None, NaN; for numeric features also ±inf and non-numbers);
    - out-of-range rate = present values below the schema's min or above its max / present values
      (numeric features; None when there are no present values);
    - unseen rate = present values not among the schema's categories / present values (string
      features with categories); unseen_categories lists the most frequent of them.
    Degraded when a rate exceeds the policy's maximum. Rates are None when the window is empty."""
    specs = [s if isinstance(s, FeatureSpec) else FeatureSpec.model_validate(s) for s in feature_schema]
    rows = max((len(v) for v in current.values()), default=0)
    return [_feature(spec, current.get(spec.name, [None] * rows), policy) for spec in specs]


def _feature(spec: FeatureSpec, values: Sequence, policy: QualityPolicy) -> FeatureQuality:
    n = len(values)
    out_of_range = unseen_rate = None
    unseen: list[str] = []
    if is_numeric(spec):
        present, _ = present_numbers(values)
        missing = n - len(present)
        if len(present):
            low = -np.inf if spec.min is None else spec.min
            high = np.inf if spec.max is None else spec.max
            out_of_range = float(np.count_nonzero((present < low) | (present > high)) / len(present))
    else:
        counts, missing = category_counts(values)
        total = n - missing
        if total and spec.categories is not None:
            known = set(spec.categories)
            others = {c: k for c, k in counts.items() if c not in known}
            unseen = sorted(others, key=lambda c: (-others[c], c))[:MAX_UNSEEN_LISTED]
            unseen_rate = sum(others.values()) / total
    missing_rate = missing / n if n else None
    checks = [("missing", missing_rate, policy.max_missing_rate),
              ("out of range", out_of_range, policy.max_out_of_range_rate),
              ("unseen categories", unseen_rate, policy.max_unseen_rate)]
    problems = [f"{what} {rate:.3g} > {limit:g}" for what, rate, limit in checks
                if rate is not None and rate > limit]
    reason = "; ".join(problems) or ("no values in the window" if not n else "within policy")
    return FeatureQuality(feature=spec.name, missing_rate=missing_rate, out_of_range_rate=out_of_range,
                          unseen_categories=unseen, unseen_rate=unseen_rate, degraded=bool(problems),
                          reason=reason)
