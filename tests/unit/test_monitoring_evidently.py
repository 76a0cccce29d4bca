"""Peers agree: Evidently 0.7.23, run with our methods and thresholds, reaches our drift verdicts.

Evidently needs pandas<3, so it lives in its own venv (var/peers, `make peers`; `make test` builds
it) and runs by subprocess on the same data, handed over as an .npz file. Without that venv this
test fails: a peer check that skips is a peer check nobody runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.peers import PYTHON, run_evidently
from contracts.monitoring.policy import DriftPolicy
from services.monitoring.drift import feature_drift
from services.monitoring.reference import build_profile

REFERENCE_ROWS, WINDOW_ROWS = 3000, 2000
SHIFTS = {"x0": 0.0, "x1": 0.0, "x2": 0.0, "x3": 0.05, "x4": 0.1, "x5": 0.2, "x6": 0.5, "x7": 1.0}
CATEGORIES = ["a", "b", "c", "d"]
REFERENCE_P = [0.4, 0.3, 0.2, 0.1]
WINDOW_P = {"c0": REFERENCE_P, "c1": [0.37, 0.3, 0.22, 0.11], "c2": [0.25, 0.25, 0.25, 0.25]}


def data(rng: np.random.Generator) -> tuple[dict, dict]:
    """Numeric features shifted by 0–1 sd and categorical ones unchanged, nudged and reshuffled."""
    reference = {name: rng.normal(10, 2, REFERENCE_ROWS) for name in SHIFTS}
    window = {name: rng.normal(10 + 2 * shift, 2, WINDOW_ROWS) for name, shift in SHIFTS.items()}
    for name, p in WINDOW_P.items():
        reference[name] = rng.choice(CATEGORIES, REFERENCE_ROWS, p=REFERENCE_P)
        window[name] = rng.choice(CATEGORIES, WINDOW_ROWS, p=p)
    return reference, window


@pytest.fixture(scope="module")
def peers_venv():
    if not PYTHON.exists():
        pytest.fail(f"Evidently's venv {PYTHON.parent.parent} is missing: run `make peers` "
                    "(or `make test`, which builds it)", pytrace=False)


def test_per_feature_verdicts_and_figures_match_evidently_with_the_same_methods(peers_venv, tmp_path):
    rng = np.random.default_rng(11)
    reference, window = data(rng)
    schema = [{"name": n, "dtype": "float" if n in SHIFTS else "string"} for n in reference]
    policy = DriftPolicy(ks_method="auto")  # Evidently's ks is scipy's ks_2samp with its default method
    whole = build_profile(reference, schema, scores=rng.random(REFERENCE_ROWS), sample_size=REFERENCE_ROWS)
    sampled = build_profile(reference, schema, scores=rng.random(REFERENCE_ROWS), sample_size=1000)
    ours = feature_drift(whole, window, policy)
    np.savez(tmp_path / "data.npz", **{f"reference/{k}": v for k, v in reference.items()},
             **{f"current/{k}": v for k, v in window.items()})
    # act: Evidently's significance tests at our Bonferroni level, its effect sizes at our thresholds
    peer = run_evidently(tmp_path / "data.npz", {"categorical": list(WINDOW_P), "runs": [
        {"name": "tests", "num_method": "ks", "num_threshold": ours.alpha_corrected,
         "cat_method": "chisquare", "cat_threshold": ours.alpha_corrected},
        {"name": "effects", "num_method": "wasserstein", "num_threshold": policy.wasserstein_threshold,
         "cat_method": "psi", "cat_threshold": policy.psi_threshold},
    ]})
    tests, effects = peer["runs"]["tests"]["columns"], peer["runs"]["effects"]["columns"]
    # check: the same figures (KS and normed Wasserstein on the same values, chi-square and PSI on
    # the same categories), so the same verdict from each test and from both together
    for f in ours.features:
        p, effect = (f.ks_pvalue, f.wasserstein_norm) if f.kind == "numeric" else (f.chi2_pvalue, f.psi)
        assert abs(p - tests[f.feature]["score"]) <= 1e-9, f.feature
        assert effect == pytest.approx(effects[f.feature]["score"], rel=1e-9), f.feature
        threshold = policy.wasserstein_threshold if f.kind == "numeric" else policy.psi_threshold
        assert (p < ours.alpha_corrected, effect >= threshold) == (
            tests[f.feature]["drifted"], effects[f.feature]["drifted"]), f.feature
        assert f.drifted == (tests[f.feature]["drifted"] and effects[f.feature]["drifted"]), f.feature
    # check: both outcomes occur (0.05 and 0.1 sd are within noise at 2,000 rows), and a
    # 1,000-value reference sample decides the same
    assert ours.drifted_features == ["x5", "x6", "x7", "c2"]
    assert feature_drift(sampled, window, policy).drifted_features == ours.drifted_features
    assert peer["versions"]["evidently"] == "0.7.23"
