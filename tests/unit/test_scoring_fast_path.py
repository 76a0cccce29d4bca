"""The compiled StandardScaler → LogisticRegression path gives sklearn's own scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from contracts.registry.api import FeatureSpec
from services.scoring.models import Estimator, ScaledLogistic, adverse_index
from tests.scoring_helpers import SCHEMA, boosted_pipeline, linear_pipeline

NUMERIC = [FeatureSpec(name=f"f{j}", dtype="float") for j in range(30)]


def _data(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3000, 30)) * rng.uniform(0.01, 1e4, 30) + rng.uniform(-1e3, 1e3, 30)
    y = (x @ rng.normal(0, 1e-3, 30) + rng.normal(0, 1, 3000) > 0).astype(int)
    return x, y


ESTIMATORS = {
    "scaled": lambda: Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))]),
    "scaled twice, no centring": lambda: Pipeline([("a", StandardScaler(with_mean=False)),
                                                   ("b", StandardScaler()),
                                                   ("model", LogisticRegression(max_iter=1000))]),
    "bare": lambda: LogisticRegression(max_iter=1000),
}


@pytest.mark.parametrize("kind", ESTIMATORS)
@pytest.mark.parametrize("named", [False, True], ids=["adverse is 1", "adverse is 'bad', classes_[0]"])
def test_the_fast_path_scores_exactly_as_predict_proba_row_by_row_and_in_batches(kind, named):
    x, y = _data()
    if named:
        y = np.where(y == 1, "bad", "good")
    estimator = ESTIMATORS[kind]().fit(x, y)
    adverse = adverse_index(estimator)
    assert adverse == (0 if named else 1)
    fast = ScaledLogistic.of(estimator, NUMERIC, adverse)
    # check it applies, and agrees with sklearn for single rows (the hot path) and a batch
    assert fast is not None
    rows = _data(seed=9)[0][:300]
    expected = estimator.predict_proba(rows)[:, adverse]
    singles = np.array([fast.scores(rows[i:i + 1])[0] for i in range(len(rows))])
    assert np.max(np.abs(singles - expected)) <= 1e-12
    assert np.max(np.abs(fast.scores(rows) - expected)) <= 1e-12
    # check: the same shape in gives the same bits out (one row here, one row in sklearn)
    assert all(fast.scores(rows[i:i + 1])[0] == estimator.predict_proba(rows[i:i + 1])[0, adverse]
               for i in range(50))
    # check the estimator uses it and gives the same numbers through its usual entry point
    parts = Estimator(NUMERIC, estimator, adverse, fast)
    assert np.max(np.abs(parts.scores(rows.tolist()) - expected)) <= 1e-12


def test_a_non_finite_input_is_refused_as_sklearn_refuses_it():
    estimator = ESTIMATORS["scaled"]().fit(*_data())
    fast = ScaledLogistic.of(estimator, NUMERIC, 1)
    row = _data()[0][:1].copy()
    row[0, 3] = np.nan
    with pytest.raises(ValueError):
        fast.scores(row)
    with pytest.raises(ValueError):
        estimator.predict_proba(row)


def test_other_models_keep_sklearn():
    specs = [FeatureSpec(**s) for s in SCHEMA]
    # check: a column transformer with strings, and a tree model, have no fast path
    assert ScaledLogistic.of(linear_pipeline(), specs, 1) is None
    assert ScaledLogistic.of(boosted_pipeline(), specs, 1) is None
    # check: a multi-class logistic regression has none either
    x, y = _data()
    three = ESTIMATORS["scaled"]().fit(x, y + (x[:, 0] > x[:, 0].mean()))
    assert ScaledLogistic.of(three, NUMERIC, 1) is None
