"""Columns of reference or window values as numpy arrays: numbers, category counts, bin counts.

A value is missing when it is None or NaN; in a numeric feature also when it is ±inf or not a
number at all ("abc"): it can take no place on the number line. The same rules hold for the
reference profile, drift and data quality, so their counts agree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from contracts.registry.api import FeatureSpec

NUMERIC_DTYPES = frozenset({"float", "int"})


def is_numeric(spec: FeatureSpec) -> bool:
    return spec.dtype in NUMERIC_DTYPES


def present_numbers(values: Sequence | np.ndarray) -> tuple[np.ndarray, int]:
    """The finite values as a new float64 array, and how many values there were in all."""
    try:
        x = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):  # a stray string or object: convert value by value
        x = np.fromiter((_number(v) for v in values), float, len(values))
    return x[np.isfinite(x)], len(x)


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def category_counts(values: Sequence | np.ndarray) -> tuple[dict[str, int], int]:
    """Count of each category (the value as str) among the present values, and the missing count."""
    counts: dict[str, int] = {}
    missing = 0
    # Counter hashes each value once in C; the per-category loop below is over distinct values only
    for value, n in Counter(values.tolist() if isinstance(values, np.ndarray) else values).items():
        if value is None or value != value:  # None, or NaN (the one value unequal to itself)
            missing += n
            continue
        key = str(value)
        counts[key] = counts.get(key, 0) + n
    return counts, missing


def bin_counts(sorted_values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Values in each bin (-inf, e1], (e1, e2], …, (ek, inf) of sorted values: len(edges) + 1 counts."""
    at_or_below = np.searchsorted(sorted_values, np.asarray(edges, dtype=float), side="right")
    return np.diff(at_or_below, prepend=0, append=len(sorted_values))
