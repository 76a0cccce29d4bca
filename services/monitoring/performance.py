"""How well a version's scores rank and are calibrated on the decisions whose outcome is known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from contracts.monitoring.figures import PerformanceFigures


def performance(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float,
                n_bins: int = 10) -> PerformanceFigures:
    """Figures over the rows with a label (1 = the adverse outcome: default, fraud) and a score
    (the model's probability of that outcome); a row is flagged when score ≥ threshold.
    - ROC AUC = (R₁ − P(P + 1)/2) / (P·N): the Mann–Whitney form, R₁ the sum of the positives'
      ranks among all scores with tied scores sharing their average rank; the probability that a
      random positive outscores a random negative, ties counting one half (sklearn's
      roc_auc_score). None unless both classes are present.
    - precision = flagged positives / flagged; recall = flagged positives / positives;
      false-positive rate = flagged negatives / negatives (None when the denominator is 0).
    - Brier score = mean (score − label)².
    - expected calibration error = Σ_b (n_b / n) · |mean label_b − mean score_b| over `n_bins`
      equal-width score bins, bin b = [b/B, (b + 1)/B) (the last one closed at 1): the gap
      between predicted and observed adverse-outcome rate, weighted by bin size.
    """
    y, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels for {len(s)} scores")
    known = np.isfinite(y) & np.isfinite(s)
    y, s = y[known], s[known]
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    n, positives = len(y), int(y.sum())
    negatives = n - positives
    flagged = s >= threshold
    true_pos, false_pos = int(np.count_nonzero(flagged & (y == 1))), int(np.count_nonzero(flagged & (y == 0)))
    return PerformanceFigures(
        count=n, positives=positives,
        auc=_auc(y, s, positives, negatives),
        precision=true_pos / (true_pos + false_pos) if true_pos + false_pos else None,
        recall=true_pos / positives if positives else None,
        false_positive_rate=false_pos / negatives if negatives else None,
        brier=float(np.mean((s - y) ** 2)) if n else None,
        ece=_ece(y, s, n_bins) if n else None,
        threshold=threshold,
    )


def _auc(y: np.ndarray, s: np.ndarray, positives: int, negatives: int) -> float | None:
    if not positives or not negatives:
        return None
    # average ranks are multiples of 1/2, so their sum is exact in float64 up to ~10^7 rows
    rank_sum = float(rankdata(s)[y == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _ece(y: np.ndarray, s: np.ndarray, n_bins: int) -> float:
    bins = np.minimum((np.clip(s, 0, 1) * n_bins).astype(np.int64), n_bins - 1)
    # n_b/n · |mean label_b − mean score_b| = |Σ_b label − Σ_b score| / n
    observed = np.bincount(bins, weights=y, minlength=n_bins)
    predicted = np.bincount(bins, weights=s, minlength=n_bins)
    return float(np.abs(observed - predicted).sum() / len(y))
