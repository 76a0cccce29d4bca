"""sklearn's own scores for the model types scoring sees most, without sklearn's per-call cost.

A one-row predict_proba spends most of its time on input validation and, for gradient boosting,
on a Python loop over the trees (~1.4 ms for 100 trees, whatever the rows). These classes
compute the same numbers by the same float operations in the same order, so a decision's score
is sklearn's to the bit (unit tests compare them bit for bit). `fast_scorer()` picks one for an
estimator exactly of its shape, else returns None and scoring keeps predict_proba. They read
fitted attributes, some private to sklearn: the version is pinned, and any model these classes
do not recognise falls back to sklearn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from contracts.registry.api import FeatureSpec


class FastScorer(Protocol):
    def scores(self, x: np.ndarray) -> np.ndarray:
        """The adverse-class probability of each row of a float matrix."""


def fast_scorer(estimator: Any, schema: Sequence[FeatureSpec], adverse_index: int) -> FastScorer | None:
    """An exact path for this estimator, or None. Only for numeric features: a string column
    makes the input an object matrix, which only sklearn's own encoders may read."""
    if any(s.dtype == "string" for s in schema):
        return None
    return (ScaledLogistic.of(estimator, schema, adverse_index)
            or BoostedTrees.of(estimator, schema, adverse_index))


class ScaledLogistic:
    """predict_proba's adverse column for StandardScaler steps then a binary LogisticRegression,
    computed by the very float operations sklearn performs, in its order (scaler: x -= mean_,
    x /= scale_; then x @ coef_.T + intercept_ and expit), minus sklearn's input validation, which
    costs most of a one-row prediction. Input is already checked against the feature schema; a
    non-finite value is refused as sklearn refuses it."""

    def __init__(self, scalers: Sequence[Any], model: Any, adverse_index: int) -> None:
        self.steps = [(s.mean_ if s.with_mean else None, s.scale_ if s.with_std else None)
                      for s in scalers]
        self.coef_t = model.coef_.T
        self.intercept = model.intercept_
        self.adverse_index = adverse_index

    @classmethod
    def of(cls, estimator: Any, schema: Sequence[FeatureSpec], adverse_index: int) -> ScaledLogistic | None:
        """The fast path when `estimator` is exactly such a pipeline; else None."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps = [step for _, step in estimator.steps] if type(estimator) is Pipeline else [estimator]
        *scalers, model = steps
        if (type(model) is not LogisticRegression or len(model.classes_) != 2
                or model.coef_.shape != (1, len(schema))
                or any(type(s) is not StandardScaler for s in scalers)):
            return None
        return cls(scalers, model, adverse_index)

    def scores(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        if not np.isfinite(x).all():
            raise ValueError("Input X contains NaN or infinity.")
        x = np.array(x, dtype=np.float64)  # a copy, as the scaler's transform makes
        for mean, scale in self.steps:
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
        # One row at a time through the product, as a one-row predict_proba computes it: a matrix
        # product's rounding depends on the batch's shape, and a score must not depend on the
        # requests it was coalesced with (coalesce.py). Everything else here is elementwise.
        z = np.concatenate([x[i:i + 1] @ self.coef_t for i in range(len(x))]) if len(x) > 1 \
            else x @ self.coef_t
        p = expit((z + self.intercept).reshape(-1))
        return p if self.adverse_index == 1 else 1 - p


class BoostedTrees:
    """predict_proba's adverse column for a binary HistGradientBoostingClassifier on numeric
    features: every tree walked at once, a level per step, over one array of all their nodes.

    sklearn walks each tree in Cython (`x <= threshold` goes left; NaN goes where the node's
    `missing_go_to_left` says), adds each tree's leaf value in tree order to the baseline, and
    maps the sum through its loss's link. Here the same comparisons pick the same leaves, the sum
    is a cumulative add in the same order (np.add.accumulate is sequential), and the link is the
    model's own. The walk's cost grows with rows × trees, so past MAX_ROWS rows sklearn's loop
    (fixed cost, then cheap per row) is the faster one and scores() hands the call back to it.
    """

    MAX_ROWS = 32  # measured crossover, 100 trees of 31 leaves: ~1 ms either way at 64 rows

    def __init__(self, model: Any, adverse_index: int) -> None:
        trees = [predictors[0].nodes for predictors in model._predictors]
        sizes = [len(nodes) for nodes in trees]
        self.roots = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        nodes = np.concatenate(trees)
        own = np.arange(len(nodes), dtype=np.intp)
        leaf = nodes["is_leaf"].astype(bool)
        shift = np.repeat(self.roots, sizes)
        # A leaf is its own child, so rows that reach a leaf early stay there.
        left = np.where(leaf, own, nodes["left"].astype(np.intp) + shift)
        right = np.where(leaf, own, nodes["right"].astype(np.intp) + shift)
        self.children = np.stack([left, right], axis=1).ravel()  # [2n]: left, [2n+1]: right
        self.leaf = leaf
        self.feature = nodes["feature_idx"].astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max())
        self.baseline = 0.0 + float(model._baseline_prediction[0, 0])  # sklearn: zeros += baseline
        self.n_features = int(model.n_features_in_)
        self.loss = model._loss
        self.adverse_index = adverse_index
        self.model = model

    @classmethod
    def of(cls, estimator: Any, schema: Sequence[FeatureSpec], adverse_index: int) -> BoostedTrees | None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        if (type(estimator) is not HistGradientBoostingClassifier
                or len(getattr(estimator, "classes_", ())) != 2
                or getattr(estimator, "n_trees_per_iteration_", None) != 1
                or getattr(estimator, "_preprocessor", True) is not None  # categorical features
                or getattr(estimator, "n_features_in_", None) != len(schema)):
            return None
        try:
            if not estimator._predictors or any(p[0].nodes["is_categorical"].any()
                                                for p in estimator._predictors):
                return None
            return cls(estimator, adverse_index)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            return None  # fitted attributes not as this sklearn version lays them out

    def scores(self, x: np.ndarray) -> np.ndarray:
        if len(x) > self.MAX_ROWS:
            return self.model.predict_proba(x)[:, self.adverse_index]
        x = np.ascontiguousarray(x, dtype=np.float64)
        rows = len(x)
        values = x.ravel()
        # node index per (tree, row), flattened tree-major; each row's offset into `values`
        at = np.repeat(self.roots, rows)
        offset = np.tile(np.arange(rows, dtype=np.intp) * self.n_features, len(self.roots))
        missing = bool(np.isnan(values).any())
        for _ in range(self.depth):
            seen = values[self.feature[at] + offset]
            goes_right = ~(seen <= self.threshold[at])
            if missing:
                goes_right &= ~(np.isnan(seen) & self.missing_left[at])
            at = self.children[2 * at + goes_right]
            if self.leaf[at].all():
                break
        sums = np.empty((len(self.roots) + 1, rows))
        sums[0] = self.baseline
        sums[1:] = self.value[at].reshape(len(self.roots), rows)
        raw = np.add.accumulate(sums, axis=0)[-1]
        return self.loss.predict_proba(raw.reshape(rows, 1))[:, self.adverse_index]
