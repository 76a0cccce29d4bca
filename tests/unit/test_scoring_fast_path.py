"""The compiled StandardScaler → LogisticRegression path gives sklearn's own scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from contracts.registry.api import FeatureSpec
from services.scoring.exact import ScaledLogistic
from services.scoring.models import Estimator, adverse_index
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


# -- gradient-boosted trees -----------------------------------------------------------------------


def _boosted(labels: tuple[str, str] | None = None):
    """A HistGradientBoostingClassifier trained with missing values, so its nodes send NaN both
    ways, and rows that hit a threshold exactly, or carry NaN or ±infinity."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _data(3)
    x[np.random.default_rng(3).random(x.shape) < 0.05] = np.nan
    if labels:
        y = np.where(y == 1, *labels)
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=31, random_state=0).fit(x, y)
    rows = _data(4)[0][:400]
    nodes = np.concatenate([p[0].nodes for p in model._predictors])
    splits = nodes[~nodes["is_leaf"].astype(bool)]
    assert set(splits["missing_go_to_left"]) == {0, 1}  # NaN goes left at some nodes, right at others
    rows[:20, splits[0]["feature_idx"]] = splits[0]["num_threshold"]  # x == threshold goes left
    rows[20:40, 4] = np.nan
    rows[40:45, 7] = np.inf
    rows[45:50, 7] = -np.inf
    return model, rows


@pytest.mark.parametrize("labels", [None, ("bad", "good")],
                         ids=["adverse is 1", "adverse is 'bad', classes_[0]"])
def test_boosted_trees_score_exactly_as_predict_proba_for_one_row_and_for_many(labels):
    from services.scoring.exact import BoostedTrees, fast_scorer

    model, rows = _boosted(labels)
    adverse = adverse_index(model)
    assert adverse == (0 if labels else 1)
    fast = fast_scorer(model, NUMERIC, adverse)
    assert isinstance(fast, BoostedTrees)
    expected = model.predict_proba(rows)[:, adverse]
    # check: bit for bit, one row at a time (the hot path) and in batches up to the crossover
    singles = np.array([fast.scores(rows[i:i + 1])[0] for i in range(len(rows))])
    assert np.array_equal(singles, expected)
    for size in (2, 7, BoostedTrees.MAX_ROWS):
        batched = np.concatenate([fast.scores(rows[i:i + size]) for i in range(0, len(rows), size)])
        assert np.array_equal(batched, expected), size
    # check: past the crossover it is sklearn's own call; through Estimator the same numbers
    assert np.array_equal(fast.scores(rows), expected)
    parts = Estimator(NUMERIC, model, adverse, fast)
    assert np.array_equal(parts.scores(rows[:9].tolist()), expected[:9])


def test_boosted_trees_that_sklearn_would_treat_otherwise_keep_sklearn():
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from services.scoring.exact import fast_scorer

    x, y = _data()
    # check: three classes, a regressor, categorical features, a pipeline with strings
    three = HistGradientBoostingClassifier(max_iter=5).fit(x, y + (x[:, 0] > x[:, 0].mean()))
    assert fast_scorer(three, NUMERIC, 1) is None
    assert fast_scorer(HistGradientBoostingRegressor(max_iter=5).fit(x, y), NUMERIC, 1) is None
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0])
    x_cat = x.copy()
    x_cat[:, 0] = np.abs(x_cat[:, 0]).astype(int) % 5
    assert fast_scorer(categorical.fit(x_cat, y), NUMERIC, 1) is None
    assert fast_scorer(boosted_pipeline(), [FeatureSpec(**s) for s in SCHEMA], 1) is None
    # check: a schema with a string feature keeps sklearn for either model type
    with_string = [*NUMERIC[:29], FeatureSpec(name="purpose", dtype="string")]
    assert fast_scorer(HistGradientBoostingClassifier(max_iter=5).fit(x, y), with_string, 1) is None
    assert fast_scorer(ESTIMATORS["scaled"]().fit(x, y), with_string, 1) is None
    # check: a schema of another width than the model's input
    assert fast_scorer(HistGradientBoostingClassifier(max_iter=5).fit(x, y), NUMERIC[:29], 1) is None
    # check: fitted attributes laid out otherwise (another sklearn) fall back instead of failing
    odd = HistGradientBoostingClassifier(max_iter=5).fit(x, y)
    odd._predictors = [[object()]]
    assert fast_scorer(odd, NUMERIC, 1) is None


def test_a_boosted_model_loaded_from_its_skops_file_takes_the_exact_path():
    import skops.io

    from services.scoring.exact import BoostedTrees, fast_scorer
    from services.scoring.models import load_artifact

    model, rows = _boosted()
    loaded = load_artifact(skops.io.dumps(model), "skops")
    fast = fast_scorer(loaded, NUMERIC, 1)
    assert isinstance(fast, BoostedTrees)
    assert np.array_equal(np.concatenate([fast.scores(rows[i:i + 1]) for i in range(60)]),
                          model.predict_proba(rows[:60])[:, 1])
