"""Performance figures: the same numbers as scikit-learn, and None where they are undefined."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score

from services.monitoring.performance import performance


def outcomes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to two decimals, so that many scores tie across the classes."""
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(np.clip(rng.normal(0.3 + 0.25 * labels, 0.2), 0, 1), 2)
    return labels, scores


@pytest.mark.parametrize("n", [10, 500, 20_000])
def test_auc_precision_recall_and_brier_equal_scikit_learn(n):
    labels, scores = outcomes(np.random.default_rng(n), n)
    # act
    figures = performance(labels, scores, threshold=0.5)
    # check
    flagged = (scores >= 0.5).astype(int)
    assert abs(figures.auc - roc_auc_score(labels, scores)) <= 1e-12
    assert figures.precision == pytest.approx(precision_score(labels, flagged), abs=1e-12)
    assert figures.recall == pytest.approx(recall_score(labels, flagged), abs=1e-12)
    assert figures.brier == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)
    negatives = labels == 0
    assert figures.false_positive_rate == pytest.approx(flagged[negatives].mean(), abs=1e-12)
    assert (figures.count, figures.positives) == (n, labels.sum())


def test_ece_is_the_size_weighted_gap_between_mean_score_and_outcome_rate_per_bin():
    # bin [0.1, 0.2): scores 0.1, 0.1, labels 0, 1 → gap |0.5 − 0.1| = 0.4, weight 2/5
    # bin [0.9, 1.0]: scores 0.9, 1.0, 0.95, labels 1, 1, 0 → gap |2/3 − 0.95| = 0.2833…, weight 3/5
    figures = performance([0, 1, 1, 1, 0], [0.1, 0.1, 0.9, 1.0, 0.95], threshold=0.5)
    # check
    assert figures.ece == pytest.approx(0.4 * 2 / 5 + abs(2 / 3 - 0.95) * 3 / 5, abs=1e-12)


def test_a_single_class_has_no_auc_and_nothing_flagged_has_no_precision():
    # act
    figures = performance([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], threshold=0.5)
    # check
    assert (figures.auc, figures.precision, figures.recall) == (None, None, None)
    assert figures.false_positive_rate == 0.0 and figures.brier == pytest.approx(0.075)


def test_no_labelled_rows_gives_counts_of_zero_and_no_figures():
    figures = performance([], [], threshold=0.5)
    assert (figures.count, figures.auc, figures.brier, figures.ece) == (0, None, None, None)


def test_labels_other_than_0_and_1_are_refused():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        performance([0, 2], [0.1, 0.2], threshold=0.5)
